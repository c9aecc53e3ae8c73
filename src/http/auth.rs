//! Basic authentication with bcrypt-hashed passwords.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use std::collections::BTreeMap;

/// The demo user of `config/demo.toml`.
pub const DEMO_USER: &str = "demo";
/// The demo password: public, so the daemon refuses it anywhere but on loopback.
pub const DEMO_PASSWORD: &str = "hestyna-demo";

/// The users allowed to read `/metrics`.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    /// A hash of a random password at the users' highest cost, verified for unknown users so that the
    /// answer takes as long as for a known user with a wrong password.
    dummy: String,
}

/// The cost of a bcrypt hash (`$2b$12$...` -> 12).
fn cost_of(hash: &str) -> Option<u32> {
    hash.split('$').nth(2)?.parse().ok()
}

impl BasicAuth {
    /// User name -> bcrypt hash. No users: no authentication (allowed only where the config says so).
    pub fn new(users: BTreeMap<String, String>) -> Self {
        let dummy = match users.values().filter_map(|h| cost_of(h)).max() {
            Some(cost) => {
                let secret: [u8; 16] = rand::random();
                bcrypt::hash(secret, cost.clamp(4, 31)).unwrap_or_default()
            }
            None => String::new(),
        };
        BasicAuth { users, dummy }
    }

    /// Whether any credentials are required.
    pub fn is_enabled(&self) -> bool {
        !self.users.is_empty()
    }

    /// The users whose password is the public demo password.
    pub fn demo_users(&self) -> Vec<&str> {
        self.users
            .iter()
            .filter(|(_, hash)| bcrypt::verify(DEMO_PASSWORD, hash).unwrap_or(false))
            .map(|(user, _)| user.as_str())
            .collect()
    }

    /// `Ok` when the request may proceed; else the 401 to send.
    pub async fn check(&self, authorization: Option<&HeaderValue>) -> Result<(), Response> {
        if self.users.is_empty() {
            return Ok(());
        }
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return Err(unauthorized());
        };
        let hash = self.users.get(&user).cloned();
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.clone());
        // bcrypt is deliberately slow: keep it off the async workers.
        let ok =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        if ok && known {
            Ok(())
        } else {
            Err(unauthorized())
        }
    }
}

fn parse_basic(value: &HeaderValue) -> Option<(String, String)> {
    let text = value.to_str().ok()?;
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            "Basic realm=\"hestyna-obsd\", charset=\"UTF-8\"",
        )],
        "unauthorized\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_basic_credentials() {
        let v = HeaderValue::from_static("Basic ZGVtbzpoZXN0eW5hLWRlbW8=");
        assert_eq!(
            parse_basic(&v),
            Some(("demo".into(), "hestyna-demo".into()))
        );
        assert_eq!(parse_basic(&HeaderValue::from_static("Bearer abc")), None);
        assert_eq!(parse_basic(&HeaderValue::from_static("Basic !!!")), None);
        assert_eq!(
            parse_basic(&HeaderValue::from_static("Basic ZGVtbw==")),
            None,
            "no colon"
        );
    }

    #[tokio::test]
    async fn checks_users_and_passwords() {
        let users = [("alice".to_string(), bcrypt::hash("s3cret", 4).unwrap())].into();
        let auth = BasicAuth::new(users);
        assert_eq!(
            cost_of(&auth.dummy),
            Some(4),
            "the dummy hash costs what the users' hashes cost"
        );
        let header = |u: &str, p: &str| {
            let v = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            HeaderValue::from_str(&format!("Basic {v}")).unwrap()
        };
        assert!(auth.check(Some(&header("alice", "s3cret"))).await.is_ok());
        assert!(auth.check(Some(&header("alice", "wrong"))).await.is_err());
        assert!(auth
            .check(Some(&header("mallory", "s3cret")))
            .await
            .is_err());
        assert!(auth.check(None).await.is_err());
        assert!(auth.demo_users().is_empty());
    }
}
