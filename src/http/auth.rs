//! Who may read `/metrics`: basic auth (bcrypt), bearer tokens (SHA-256), per-principal organization
//! scopes; and the throttle on failed attempts.

use axum::http::HeaderValue;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// The demo password: public, so the daemon refuses it anywhere but on loopback.
pub const DEMO_PASSWORD: &str = "hestyna-demo";

/// How long a verified password is remembered (as a SHA-256 of it), so that a scrape every few seconds
/// does not pay bcrypt each time.
const CACHE_TTL: Duration = Duration::from_secs(600);

/// Why a request was refused. The names are label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization` header.
    Missing,
    /// An `Authorization` header that does not parse.
    Malformed,
    /// Basic auth with a user nobody configured.
    UnknownUser,
    /// Basic auth with a wrong password.
    WrongPassword,
    /// A bearer token that matches none.
    BadToken,
    /// The client's address is outside `allowed_networks`.
    ForbiddenNetwork,
    /// Too many failures from this address lately.
    RateLimited,
}

impl AuthFailure {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::UnknownUser => "unknown_user",
            AuthFailure::WrongPassword => "wrong_password",
            AuthFailure::BadToken => "bad_token",
            AuthFailure::ForbiddenNetwork => "forbidden_network",
            AuthFailure::RateLimited => "rate_limited",
        }
    }
}

/// Who is asking, and what they may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The user or token name (`anonymous` when no credentials are configured).
    pub principal: String,
    /// The organizations whose series it may see; `None`: all series, self metrics included.
    pub organizations: Option<Arc<BTreeSet<String>>>,
}

/// Credentials and scopes.
pub struct Authenticator {
    users: BTreeMap<String, String>,
    /// (name, SHA-256 of the token).
    tokens: Vec<(String, [u8; 32])>,
    scopes: BTreeMap<String, Arc<BTreeSet<String>>>,
    /// A hash of a random password at the users' highest cost, verified for unknown users so that the
    /// answer takes as long as for a known user with a wrong password.
    dummy: String,
    /// user -> (SHA-256 of the password that verified, when).
    cache: parking_lot::Mutex<HashMap<String, ([u8; 32], Instant)>>,
}

/// The cost of a bcrypt hash (`$2b$12$...` -> 12).
fn cost_of(hash: &str) -> Option<u32> {
    hash.split('$').nth(2)?.parse().ok()
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Parses a SHA-256 given as 64 hex digits.
pub fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Authenticator {
    /// Users (name -> bcrypt hash), tokens (name -> SHA-256), scopes (principal -> organizations).
    pub fn new(
        users: BTreeMap<String, String>,
        tokens: Vec<(String, [u8; 32])>,
        scopes: BTreeMap<String, BTreeSet<String>>,
    ) -> Self {
        let dummy = match users.values().filter_map(|h| cost_of(h)).max() {
            Some(cost) => {
                let secret: [u8; 16] = rand::random();
                bcrypt::hash(secret, cost.clamp(4, 31)).unwrap_or_default()
            }
            None => String::new(),
        };
        Authenticator {
            users,
            tokens,
            scopes: scopes.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
            dummy,
            cache: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// Whether any credentials are required.
    pub fn requires_credentials(&self) -> bool {
        !self.users.is_empty() || !self.tokens.is_empty()
    }

    /// Whether bearer tokens are accepted.
    pub fn accepts_tokens(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// The users whose password is the public demo password.
    pub fn demo_users(&self) -> Vec<String> {
        self.users
            .iter()
            .filter(|(_, hash)| bcrypt::verify(DEMO_PASSWORD, hash).unwrap_or(false))
            .map(|(user, _)| user.clone())
            .collect()
    }

    fn access(&self, principal: &str) -> Access {
        Access {
            principal: principal.to_owned(),
            organizations: self.scopes.get(principal).cloned(),
        }
    }

    /// Checks the `Authorization` header.
    pub async fn authenticate(
        &self,
        authorization: Option<&HeaderValue>,
    ) -> Result<Access, AuthFailure> {
        if !self.requires_credentials() {
            return Ok(Access {
                principal: "anonymous".into(),
                organizations: None,
            });
        }
        let value = authorization.ok_or(AuthFailure::Missing)?;
        let text = value.to_str().map_err(|_| AuthFailure::Malformed)?;
        let (scheme, rest) = text.split_once(' ').ok_or(AuthFailure::Malformed)?;
        if scheme.eq_ignore_ascii_case("bearer") && !self.tokens.is_empty() {
            let presented = sha256(rest.trim().as_bytes());
            // Compare with every token, in constant time each, so timing says nothing about which.
            let mut found = None;
            for (name, hash) in &self.tokens {
                if bool::from(hash.ct_eq(&presented)) {
                    found = Some(name);
                }
            }
            return found
                .map(|name| self.access(name))
                .ok_or(AuthFailure::BadToken);
        }
        if !scheme.eq_ignore_ascii_case("basic") || self.users.is_empty() {
            return Err(AuthFailure::Malformed);
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .map_err(|_| AuthFailure::Malformed)?;
        let decoded = String::from_utf8(decoded).map_err(|_| AuthFailure::Malformed)?;
        let (user, password) = decoded.split_once(':').ok_or(AuthFailure::Malformed)?;
        let presented = sha256(password.as_bytes());
        if let Some((cached, at)) = self.cache.lock().get(user) {
            if at.elapsed() < CACHE_TTL && bool::from(cached.ct_eq(&presented)) {
                return Ok(self.access(user));
            }
        }
        let hash = self.users.get(user).cloned();
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.clone());
        let password = password.to_owned();
        // bcrypt is deliberately slow: keep it off the async workers.
        let ok =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        match (known, ok) {
            (true, true) => {
                self.cache
                    .lock()
                    .insert(user.to_owned(), (presented, Instant::now()));
                Ok(self.access(user))
            }
            (true, false) => Err(AuthFailure::WrongPassword),
            (false, _) => Err(AuthFailure::UnknownUser),
        }
    }
}

/// Counts failed attempts per client address; past `max` failures within `window`, the address is
/// refused with 429 until the window has passed.
pub struct FailureLimiter {
    max: u32,
    window: Duration,
    seen: parking_lot::Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl FailureLimiter {
    /// At most `max` failures per `window` and address.
    pub fn new(max: u32, window: Duration) -> Self {
        FailureLimiter {
            max,
            window,
            seen: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// `Some(seconds to wait)` when the address is refused now.
    pub fn blocked(&self, ip: IpAddr) -> Option<u64> {
        let seen = self.seen.lock();
        let (count, since) = seen.get(&ip)?;
        let elapsed = since.elapsed();
        (*count >= self.max && elapsed < self.window)
            .then(|| (self.window - elapsed).as_secs().max(1))
    }

    /// Records a failure.
    pub fn failed(&self, ip: IpAddr) {
        let mut seen = self.seen.lock();
        // Bounded: forget old windows once the table grows.
        if seen.len() > 10_000 {
            let window = self.window;
            seen.retain(|_, (_, since)| since.elapsed() < window);
        }
        let entry = seen.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= self.window {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(u: &str, p: &str) -> HeaderValue {
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        HeaderValue::from_str(&format!("Basic {v}")).unwrap()
    }

    #[tokio::test]
    async fn users_tokens_and_scopes() {
        let users = [("alice".to_string(), bcrypt::hash("s3cret", 4).unwrap())].into();
        let token = "tok-123456";
        let tokens = vec![("grafana".to_string(), sha256(token.as_bytes()))];
        let scopes = [("grafana".to_string(), ["acme".to_string()].into())].into();
        let auth = Authenticator::new(users, tokens, scopes);
        assert_eq!(
            cost_of(&auth.dummy),
            Some(4),
            "the dummy hash costs what the users' hashes cost"
        );
        let alice = auth
            .authenticate(Some(&header("alice", "s3cret")))
            .await
            .unwrap();
        assert_eq!(
            (alice.principal.as_str(), alice.organizations),
            ("alice", None)
        );
        // The second time comes from the cache.
        assert!(auth.cache.lock().contains_key("alice"));
        assert!(auth
            .authenticate(Some(&header("alice", "s3cret")))
            .await
            .is_ok());
        assert_eq!(
            auth.authenticate(Some(&header("alice", "wrong"))).await,
            Err(AuthFailure::WrongPassword)
        );
        assert_eq!(
            auth.authenticate(Some(&header("mallory", "s3cret"))).await,
            Err(AuthFailure::UnknownUser)
        );
        assert_eq!(auth.authenticate(None).await, Err(AuthFailure::Missing));
        assert_eq!(
            auth.authenticate(Some(&HeaderValue::from_static("Basic !!")))
                .await,
            Err(AuthFailure::Malformed)
        );
        assert_eq!(
            auth.authenticate(Some(&HeaderValue::from_static("Basic ZGVtbw==")))
                .await,
            Err(AuthFailure::Malformed)
        );
        let bearer = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        let grafana = auth.authenticate(Some(&bearer)).await.unwrap();
        assert_eq!(
            grafana.organizations.as_deref(),
            Some(&["acme".to_string()].into())
        );
        assert_eq!(
            auth.authenticate(Some(&HeaderValue::from_static("Bearer nope")))
                .await,
            Err(AuthFailure::BadToken)
        );
        assert!(auth.demo_users().is_empty());
    }

    #[test]
    fn the_limiter_blocks_after_repeated_failures() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..2 {
            limiter.failed(ip);
        }
        assert_eq!(limiter.blocked(ip), None);
        limiter.failed(ip);
        assert!(limiter.blocked(ip).is_some_and(|s| s <= 60));
        assert_eq!(limiter.blocked("192.0.2.8".parse().unwrap()), None);
    }

    #[test]
    fn sha256_hex() {
        let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        assert_eq!(parse_sha256(hex), Some(sha256(b"test")));
        assert_eq!(parse_sha256("abc"), None);
    }
}
