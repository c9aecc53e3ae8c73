//! Who may read `/metrics`: basic auth (bcrypt), bearer tokens (SHA-256), per-principal organization
//! scopes; and the throttle on failed attempts.
//!
//! Under attack: bcrypt runs at most [`bcrypt_permits`] at a time, process-wide; an attempt that needs
//! bcrypt is recorded as a failure before it runs (and forgiven if it succeeds), so one address can
//! have at most the throttle's allowance of verifications in flight; a throttled address is refused
//! anything that would need bcrypt, but credentials that can be checked without it (a bearer token, a
//! password verified before and remembered) still get in, so a brute-forcer behind the same NAT as
//! Prometheus does not lock Prometheus out. Addresses are counted IPv4 by address and IPv6 by /64.

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

/// How many bcrypt verifications may run at once: half the cores the process may use, at least one,
/// so that a flood of attempts leaves the rest for scrapes.
pub fn bcrypt_permits() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// The address failures are counted under: IPv4 (and IPv4-mapped IPv6) by address, IPv6 by its /64
/// (one host's share of a network).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(v6) & !((1u128 << 64) - 1),
        )),
        v4 => v4,
    }
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
    /// answer takes as long as for a known user with a wrong password. Made when first needed, or by
    /// [`Authenticator::warm`] when a listener starts: commands that serve nothing do no bcrypt work.
    dummy: Arc<std::sync::OnceLock<String>>,
    /// The users' highest bcrypt cost (`None`: no users, no dummy).
    dummy_cost: Option<u32>,
    /// user -> (SHA-256 of the password that verified, when).
    cache: parking_lot::Mutex<HashMap<String, ([u8; 32], Instant)>>,
}

/// The dummy hash, made on first use at `cost` (empty without users: nothing verifies against it).
fn dummy_hash(dummy: &std::sync::OnceLock<String>, cost: Option<u32>) -> &str {
    dummy.get_or_init(|| match cost {
        Some(cost) => {
            let secret: [u8; 16] = rand::random();
            bcrypt::hash(secret, cost.clamp(4, 31)).unwrap_or_default()
        }
        None => String::new(),
    })
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
        let dummy_cost = users.values().filter_map(|h| cost_of(h)).max();
        Authenticator {
            users,
            tokens,
            scopes: scopes.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
            dummy: Default::default(),
            dummy_cost,
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

    /// Makes the dummy hash now (bcrypt work: call it off the async workers, when a listener starts),
    /// so that the first unknown user is answered in the same time as the others.
    pub fn warm(&self) {
        dummy_hash(&self.dummy, self.dummy_cost);
    }

    /// The users whose password is the public demo password.
    pub fn demo_users(&self) -> Vec<String> {
        self.users
            .iter()
            .filter(|(_, hash)| bcrypt::verify(DEMO_PASSWORD, hash).unwrap_or(false))
            .map(|(user, _)| user.clone())
            .collect()
    }

    /// The organizations `principal` is limited to (`None`: everything).
    pub fn scope(&self, principal: &str) -> Option<&BTreeSet<String>> {
        self.scopes.get(principal).map(|s| &**s)
    }

    fn access(&self, principal: &str) -> Access {
        Access {
            principal: principal.to_owned(),
            organizations: self.scopes.get(principal).cloned(),
        }
    }

    /// Checks the `Authorization` header of a request from `client`, recording failures in `limiter`;
    /// `bcrypt` bounds the verifications running at once. A throttled client gets
    /// [`AuthFailure::RateLimited`] for anything but credentials checked without bcrypt.
    pub async fn authenticate(
        &self,
        authorization: Option<&HeaderValue>,
        limiter: &FailureLimiter,
        client: IpAddr,
        bcrypt: &tokio::sync::Semaphore,
    ) -> Result<Access, AuthFailure> {
        if !self.requires_credentials() {
            return Ok(Access {
                principal: "anonymous".into(),
                organizations: None,
            });
        }
        let attempt = Attempt {
            limiter,
            client,
            bcrypt,
        };
        match self.check(authorization, attempt).await {
            Ok(access) => Ok(access),
            Err(Refused::Recorded(reason)) => Err(reason),
            Err(Refused::Cheap(reason)) => {
                let throttled = limiter.blocked(client).is_some();
                limiter.failed(client);
                Err(if throttled {
                    AuthFailure::RateLimited
                } else {
                    reason
                })
            }
        }
    }

    async fn check(
        &self,
        authorization: Option<&HeaderValue>,
        attempt: Attempt<'_>,
    ) -> Result<Access, Refused> {
        use Refused::Cheap;
        let value = authorization.ok_or(Cheap(AuthFailure::Missing))?;
        let malformed = Cheap(AuthFailure::Malformed);
        let text = value.to_str().map_err(|_| malformed)?;
        let (scheme, rest) = text.split_once(' ').ok_or(malformed)?;
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
                .ok_or(Cheap(AuthFailure::BadToken));
        }
        if !scheme.eq_ignore_ascii_case("basic") || self.users.is_empty() {
            return Err(malformed);
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .map_err(|_| malformed)?;
        let decoded = String::from_utf8(decoded).map_err(|_| malformed)?;
        let (user, password) = decoded.split_once(':').ok_or(malformed)?;
        let presented = sha256(password.as_bytes());
        if let Some((cached, at)) = self.cache.lock().get_mut(user) {
            if at.elapsed() < CACHE_TTL && bool::from(cached.ct_eq(&presented)) {
                // Remembered for as long as it keeps being used.
                *at = Instant::now();
                return Ok(self.access(user));
            }
        }
        self.verify(user, password, presented, attempt).await
    }

    /// The bcrypt verification, recorded as a failure before it runs and forgiven if it succeeds.
    async fn verify(
        &self,
        user: &str,
        password: &str,
        presented: [u8; 32],
        Attempt {
            limiter,
            client,
            bcrypt,
        }: Attempt<'_>,
    ) -> Result<Access, Refused> {
        if limiter.blocked(client).is_some() {
            return Err(Refused::Recorded(AuthFailure::RateLimited));
        }
        limiter.failed(client);
        let hash = self.users.get(user).cloned();
        let known = hash.is_some();
        let (dummy, cost) = (self.dummy.clone(), self.dummy_cost);
        let password = password.to_owned();
        let Ok(_permit) = bcrypt.acquire().await else {
            return Err(Refused::Recorded(AuthFailure::RateLimited));
        };
        // bcrypt is deliberately slow: keep it off the async workers.
        let ok = tokio::task::spawn_blocking(move || {
            let hash = hash.unwrap_or_else(|| dummy_hash(&dummy, cost).to_owned());
            bcrypt::verify(password, &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        match (known, ok) {
            (true, true) => {
                limiter.forgive(client);
                self.cache
                    .lock()
                    .insert(user.to_owned(), (presented, Instant::now()));
                Ok(self.access(user))
            }
            (true, false) => Err(Refused::Recorded(AuthFailure::WrongPassword)),
            (false, _) => Err(Refused::Recorded(AuthFailure::UnknownUser)),
        }
    }
}

/// Where an attempt comes from, and what it is counted and bounded by.
#[derive(Clone, Copy)]
struct Attempt<'a> {
    limiter: &'a FailureLimiter,
    client: IpAddr,
    bcrypt: &'a tokio::sync::Semaphore,
}

/// A refusal, and whether the failure is recorded already (the bcrypt path records it before it runs).
#[derive(Debug, Clone, Copy)]
enum Refused {
    Cheap(AuthFailure),
    Recorded(AuthFailure),
}

/// Counts failed attempts per client ([`client_key`]); past `max` failures within `window`, the client
/// is refused with 429 until the window has passed. Bounded: two generations of at most `capacity / 2`
/// clients each; when the current one fills, the previous one is forgotten whole (no scan per
/// failure), so a flood of new addresses costs O(1) each and evicts the oldest.
pub struct FailureLimiter {
    max: u32,
    window: Duration,
    capacity: usize,
    seen: parking_lot::Mutex<Generations>,
}

#[derive(Default)]
struct Generations {
    current: HashMap<IpAddr, (u32, Instant)>,
    previous: HashMap<IpAddr, (u32, Instant)>,
}

impl FailureLimiter {
    /// At most `max` failures per `window` and client, remembering at most 20,000 clients.
    pub fn new(max: u32, window: Duration) -> Self {
        Self::with_capacity(max, window, 20_000)
    }

    /// [`Self::new`], remembering at most `capacity` clients.
    pub fn with_capacity(max: u32, window: Duration, capacity: usize) -> Self {
        FailureLimiter {
            max,
            window,
            capacity: capacity.max(2),
            seen: parking_lot::Mutex::new(Generations::default()),
        }
    }

    /// `Some(seconds to wait)` when the client is refused now.
    pub fn blocked(&self, ip: IpAddr) -> Option<u64> {
        let key = client_key(ip);
        let seen = self.seen.lock();
        let (count, since) = seen.current.get(&key).or_else(|| seen.previous.get(&key))?;
        let elapsed = since.elapsed();
        (*count >= self.max && elapsed < self.window)
            .then(|| (self.window - elapsed).as_secs().max(1))
    }

    /// Records a failure.
    pub fn failed(&self, ip: IpAddr) {
        let key = client_key(ip);
        let mut seen = self.seen.lock();
        let earlier = seen.previous.remove(&key);
        if !seen.current.contains_key(&key) && seen.current.len() >= self.capacity / 2 {
            seen.previous = std::mem::take(&mut seen.current);
        }
        let entry = seen
            .current
            .entry(key)
            .or_insert_with(|| earlier.unwrap_or((0, Instant::now())));
        if entry.1.elapsed() >= self.window {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    /// Takes back one recorded failure (an attempt recorded before it ran, that succeeded).
    pub fn forgive(&self, ip: IpAddr) {
        let key = client_key(ip);
        let mut seen = self.seen.lock();
        let Generations { current, previous } = &mut *seen;
        if let Some(entry) = current.get_mut(&key).or_else(|| previous.get_mut(&key)) {
            entry.0 = entry.0.saturating_sub(1);
        }
    }

    /// How many clients it remembers.
    #[cfg(test)]
    fn len(&self) -> usize {
        let seen = self.seen.lock();
        seen.current.len() + seen.previous.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Authenticator {
        /// `authenticate` from a client no throttle stops.
        async fn try_auth(&self, h: Option<&HeaderValue>) -> Result<Access, AuthFailure> {
            let limiter = FailureLimiter::new(u32::MAX, Duration::from_secs(60));
            let permits = tokio::sync::Semaphore::new(1);
            self.authenticate(h, &limiter, "192.0.2.1".parse().unwrap(), &permits)
                .await
        }
    }

    #[tokio::test]
    async fn a_throttled_client_is_refused_bcrypt_but_let_in_with_known_credentials() {
        let users = [("prom".to_string(), bcrypt::hash("s3cret", 4).unwrap())].into();
        let token = "tok-abcdef";
        let tokens = vec![("graf".to_string(), sha256(token.as_bytes()))];
        let auth = Authenticator::new(users, tokens, BTreeMap::new());
        let limiter = FailureLimiter::new(3, Duration::from_secs(60));
        let permits = tokio::sync::Semaphore::new(1);
        let nat: IpAddr = "192.0.2.9".parse().unwrap();
        let attempt = |h: HeaderValue| {
            let (auth, limiter, permits) = (&auth, &limiter, &permits);
            async move { auth.authenticate(Some(&h), limiter, nat, permits).await }
        };
        // Prometheus, behind the NAT, logs in once: remembered, and its success is not a failure.
        assert!(attempt(header("prom", "s3cret")).await.is_ok());
        assert_eq!(limiter.blocked(nat), None);
        for _ in 0..3 {
            assert_eq!(
                attempt(header("prom", "guess")).await,
                Err(AuthFailure::WrongPassword)
            );
        }
        assert!(limiter.blocked(nat).is_some());
        // Throttled: a guess never reaches bcrypt...
        let permit = permits.acquire().await.unwrap();
        let guess = tokio::time::timeout(Duration::from_secs(5), attempt(header("prom", "guess2")));
        assert_eq!(
            guess.await.expect("answered without waiting for bcrypt"),
            Err(AuthFailure::RateLimited)
        );
        assert_eq!(
            attempt(HeaderValue::from_static("Basic !!")).await,
            Err(AuthFailure::RateLimited)
        );
        // ...but the remembered password and a token, checked without bcrypt, get in.
        assert!(attempt(header("prom", "s3cret")).await.is_ok());
        let bearer = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        assert!(attempt(bearer).await.is_ok());
        drop(permit);
    }

    #[tokio::test]
    async fn an_attempt_is_a_failure_before_bcrypt_runs() {
        let users = [("prom".to_string(), bcrypt::hash("s3cret", 4).unwrap())].into();
        let auth = Arc::new(Authenticator::new(users, Vec::new(), BTreeMap::new()));
        let limiter = Arc::new(FailureLimiter::new(5, Duration::from_secs(60)));
        let permits = Arc::new(tokio::sync::Semaphore::new(1));
        let held = permits.clone().acquire_owned().await.unwrap();
        let ip: IpAddr = "192.0.2.10".parse().unwrap();
        // 50 guesses at once while bcrypt is busy: 5 wait for it, the rest are refused straight away.
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let (auth, limiter, permits) = (auth.clone(), limiter.clone(), permits.clone());
                tokio::spawn(async move {
                    let h = header("nobody", &format!("guess{i}"));
                    auth.authenticate(Some(&h), &limiter, ip, &permits).await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(permits.available_permits(), 0);
        drop(held);
        let mut refused = 0;
        for t in tasks {
            match t.await.unwrap() {
                Err(AuthFailure::RateLimited) => refused += 1,
                Err(AuthFailure::UnknownUser) => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(refused, 45, "at most the allowance ran bcrypt");
    }

    #[test]
    fn the_failure_table_is_bounded_and_counts_ipv6_by_64() {
        let limiter = FailureLimiter::with_capacity(2, Duration::from_secs(60), 100);
        for i in 0..10_000u32 {
            limiter.failed(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)));
        }
        assert!(limiter.len() <= 100, "{}", limiter.len());
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        limiter.failed(a);
        limiter.failed(b);
        assert!(limiter.blocked(a).is_some(), "one /64, one client");
        assert_eq!(limiter.blocked("2001:db8:1:3::1".parse().unwrap()), None);
        let mapped: IpAddr = "::ffff:192.0.2.44".parse().unwrap();
        limiter.failed(mapped);
        limiter.failed("192.0.2.44".parse().unwrap());
        assert!(
            limiter.blocked("192.0.2.44".parse().unwrap()).is_some(),
            "IPv4-mapped is IPv4"
        );
    }

    fn header(u: &str, p: &str) -> HeaderValue {
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        HeaderValue::from_str(&format!("Basic {v}")).unwrap()
    }

    #[test]
    fn no_bcrypt_work_until_a_listener_needs_it() {
        let users = [("alice".to_string(), bcrypt::hash("s3cret", 4).unwrap())].into();
        let auth = Authenticator::new(users, Vec::new(), BTreeMap::new());
        assert!(
            auth.dummy.get().is_none(),
            "replay and generate build this and serve nothing"
        );
        auth.warm();
        assert_eq!(auth.dummy.get().and_then(|h| cost_of(h)), Some(4));
    }

    #[tokio::test]
    async fn users_tokens_and_scopes() {
        let users = [("alice".to_string(), bcrypt::hash("s3cret", 4).unwrap())].into();
        let token = "tok-123456";
        let tokens = vec![("grafana".to_string(), sha256(token.as_bytes()))];
        let scopes = [("grafana".to_string(), ["acme".to_string()].into())].into();
        let auth = Authenticator::new(users, tokens, scopes);
        assert_eq!(
            cost_of(dummy_hash(&auth.dummy, auth.dummy_cost)),
            Some(4),
            "the dummy hash costs what the users' hashes cost"
        );
        let alice = auth
            .try_auth(Some(&header("alice", "s3cret")))
            .await
            .unwrap();
        assert_eq!(
            (alice.principal.as_str(), alice.organizations),
            ("alice", None)
        );
        // The second time comes from the cache.
        assert!(auth.cache.lock().contains_key("alice"));
        assert!(auth
            .try_auth(Some(&header("alice", "s3cret")))
            .await
            .is_ok());
        assert_eq!(
            auth.try_auth(Some(&header("alice", "wrong"))).await,
            Err(AuthFailure::WrongPassword)
        );
        assert_eq!(
            auth.try_auth(Some(&header("mallory", "s3cret"))).await,
            Err(AuthFailure::UnknownUser)
        );
        assert_eq!(auth.try_auth(None).await, Err(AuthFailure::Missing));
        assert_eq!(
            auth.try_auth(Some(&HeaderValue::from_static("Basic !!")))
                .await,
            Err(AuthFailure::Malformed)
        );
        assert_eq!(
            auth.try_auth(Some(&HeaderValue::from_static("Basic ZGVtbw==")))
                .await,
            Err(AuthFailure::Malformed)
        );
        let bearer = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        let grafana = auth.try_auth(Some(&bearer)).await.unwrap();
        assert_eq!(
            grafana.organizations.as_deref(),
            Some(&["acme".to_string()].into())
        );
        assert_eq!(
            auth.try_auth(Some(&HeaderValue::from_static("Bearer nope")))
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
