//! The security of the listener: the Prometheus exporter-toolkit web configuration file
//! (`http.web_config_file`), with our extensions, turned into what each connection and request checks.
//!
//! ```yaml
//! tls_server_config:                  # exporter-toolkit
//!   cert_file: server.crt
//!   key_file: server.key
//!   client_ca_file: ca.crt            # for mutual TLS
//!   client_auth_type: RequireAndVerifyClientCert
//!   min_version: TLS12                # TLS12 or TLS13
//! http_server_config:
//!   headers: { Strict-Transport-Security: max-age=31536000 }
//! basic_auth_users:                   # user -> bcrypt hash
//!   prometheus: $2y$10$...
//! # hestyna-obsd extensions
//! bearer_tokens:                      # name -> SHA-256 (hex) of the token
//!   grafana-acme: 5e88...
//! organizations:                      # principal (user or token name) -> organizations it may see
//!   grafana-acme: [acme]
//! allowed_networks: [10.0.0.0/8, "fd00::/8"]
//! trusted_proxies: [10.0.0.5/32]      # X-Forwarded-For is honoured only from these peers
//! ```
//! The file is read again on SIGHUP and when it (or a file it names) changes; a broken new file keeps
//! the old security in force, and is logged and counted.

use super::auth::{parse_sha256, Authenticator};
use axum::http::{HeaderName, HeaderValue};
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a web configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebConfigFile {
    #[serde(default)]
    tls_server_config: Option<TlsServerConfig>,
    #[serde(default)]
    http_server_config: HttpServerConfig,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
    #[serde(default)]
    bearer_tokens: BTreeMap<String, String>,
    #[serde(default)]
    organizations: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    allowed_networks: Vec<IpNet>,
    #[serde(default)]
    trusted_proxies: Vec<IpNet>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsServerConfig {
    cert_file: PathBuf,
    key_file: PathBuf,
    #[serde(default)]
    client_ca_file: Option<PathBuf>,
    #[serde(default)]
    client_auth_type: ClientAuthType,
    #[serde(default)]
    min_version: Option<TlsVersion>,
    #[serde(default)]
    max_version: Option<TlsVersion>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
enum ClientAuthType {
    #[default]
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
enum TlsVersion {
    TLS10,
    TLS11,
    TLS12,
    TLS13,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpServerConfig {
    #[serde(default)]
    http2: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// The response headers the exporter toolkit lets a web configuration set.
const ALLOWED_HEADERS: &[&str] = &[
    "strict-transport-security",
    "x-content-type-options",
    "x-frame-options",
    "x-xss-protection",
    "content-security-policy",
];

/// What every connection and request is checked against.
pub struct Security {
    /// TLS, when configured.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Whether a verified client certificate is required (mutual TLS).
    pub mtls: bool,
    /// Credentials and scopes.
    pub auth: Authenticator,
    /// When non-empty, only clients in these networks.
    pub allowed_networks: Vec<IpNet>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Headers added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The files it was built from (for change detection).
    pub files: Vec<PathBuf>,
    /// When the served certificate expires (Unix seconds), with TLS.
    pub certificate_expiry: Option<i64>,
}

impl Security {
    /// Basic auth only, from the TOML configuration.
    pub fn basic(users: BTreeMap<String, String>) -> Self {
        Security {
            tls: None,
            mtls: false,
            certificate_expiry: None,
            auth: Authenticator::new(users, Vec::new(), BTreeMap::new()),
            allowed_networks: Vec::new(),
            trusted_proxies: Vec::new(),
            headers: Vec::new(),
            files: Vec::new(),
        }
    }

    /// Whether anything restricts access to `/metrics`.
    pub fn is_protected(&self) -> bool {
        self.auth.requires_credentials() || !self.allowed_networks.is_empty() || self.mtls
    }

    /// Reads and checks a web configuration file, reporting every fault of it at once.
    pub fn load(path: &Path) -> Result<Self, SecurityError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecurityError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// [`Security::load`] of `text`, read from `path` (files it names are relative to `path`).
    pub fn parse(text: &str, path: &Path) -> Result<Self, SecurityError> {
        let invalid = |message: String| SecurityError::Invalid {
            path: path.to_owned(),
            message,
        };
        let file: WebConfigFile =
            serde_path_to_error::deserialize(serde_norway::Deserializer::from_str(text))
                .map_err(|e| invalid(format!("{}: {}", e.path(), e.inner())))?;
        let mut problems = Vec::new();
        let tokens = credentials(&file, &mut problems);
        let headers = response_headers(&file, &mut problems);
        if file.http_server_config.http2 == Some(true) {
            problems.push("http_server_config.http2: only HTTP/1.1 is served".into());
        }
        let mut files = vec![path.to_owned()];
        let (tls, mtls, certificate_expiry) = server_tls(&file, path, &mut files, &mut problems);
        if !problems.is_empty() {
            return Err(invalid(problems.join("; ")));
        }
        // `["*"]`: unscoped (every series and the self metrics), as with no `organizations` at all.
        let scopes: BTreeMap<String, BTreeSet<String>> = file
            .organizations
            .into_iter()
            .filter(|(_, v)| v.iter().all(|o| o != ALL_ORGANIZATIONS))
            .map(|(k, v)| (k, v.into_iter().collect()))
            .collect();
        Ok(Security {
            tls,
            mtls,
            certificate_expiry,
            auth: Authenticator::new(file.basic_auth_users, tokens, scopes),
            allowed_networks: file.allowed_networks,
            trusted_proxies: file.trusted_proxies,
            headers,
            files,
        })
    }

    /// Whether a connection from `peer` may be served at all: with `allowed_networks` set, only peers
    /// in them or in `trusted_proxies` (whose clients are checked per request). Checked at accept.
    pub fn accepts_peer(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.network_allows(peer) || self.trusted_proxies.iter().any(|n| n.contains(&peer))
    }

    /// The client's address: the peer's, or, when the peer is a trusted proxy, the right-most address of
    /// `X-Forwarded-For` (all its lines joined by commas, in order) that is not itself a trusted proxy.
    /// IPv4-mapped IPv6 addresses are taken as the IPv4 addresses they are.
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        let peer = peer.to_canonical();
        let trusted = |ip: &IpAddr| self.trusted_proxies.iter().any(|n| n.contains(ip));
        if !trusted(&peer) {
            return peer;
        }
        let Some(chain) = forwarded_for else {
            return peer;
        };
        let mut client = peer;
        for hop in chain.rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip.to_canonical();
                    if !trusted(&ip) {
                        break;
                    }
                }
                // A malformed hop ends what can be believed: the last good one stands.
                Err(_) => break,
            }
        }
        client
    }

    /// Whether the client may connect at all.
    pub fn network_allows(&self, client: IpAddr) -> bool {
        let client = client.to_canonical();
        self.allowed_networks.is_empty()
            || self.allowed_networks.iter().any(|n| n.contains(&client))
    }
}

fn build_tls(
    t: &TlsServerConfig,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<(rustls::ServerConfig, Option<i64>), String> {
    use rustls::server::WebPkiClientVerifier;
    let read =
        |p: &Path| std::fs::read(resolve(p)).map_err(|e| format!("{}: {e}", resolve(p).display()));
    let certs: Vec<_> = rustls_pemfile::certs(&mut read(&t.cert_file)?.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cert_file: {e}"))?;
    let Some(leaf) = certs.first() else {
        return Err("cert_file: no certificate".into());
    };
    let expiry = crate::shared::certificate_not_after(leaf);
    let key = rustls_pemfile::private_key(&mut read(&t.key_file)?.as_slice())
        .map_err(|e| format!("key_file: {e}"))?
        .ok_or("key_file: no private key")?;
    let min = t.min_version.unwrap_or(TlsVersion::TLS12);
    let max = t.max_version.unwrap_or(TlsVersion::TLS13);
    if min < TlsVersion::TLS12 {
        return Err("min_version: TLS 1.0 and 1.1 are not offered; use TLS12 or TLS13".into());
    }
    if max < min {
        return Err("max_version is below min_version".into());
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (TlsVersion::TLS12, &rustls::version::TLS12),
        (TlsVersion::TLS13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| *v >= min && *v <= max)
    .map(|(_, p)| p)
    .collect();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| e.to_string())?;
    let needs_ca = t.client_auth_type != ClientAuthType::NoClientCert;
    let builder = match (&t.client_ca_file, needs_ca) {
        (_, false) => builder.with_no_client_auth(),
        (None, true) => {
            return Err(format!(
                "client_auth_type {:?} needs client_ca_file",
                t.client_auth_type
            ))
        }
        (Some(ca), true) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut read(ca)?.as_slice()) {
                roots
                    .add(cert.map_err(|e| format!("client_ca_file: {e}"))?)
                    .map_err(|e| format!("client_ca_file: {e}"))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match t.client_auth_type {
                // Both require a certificate (as in the exporter-toolkit); here it must also chain to
                // client_ca_file, whatever the type: RustLS verifies whatever it is offered.
                ClientAuthType::RequireAndVerifyClientCert
                | ClientAuthType::RequireAnyClientCert => verifier.build(),
                _ => verifier.allow_unauthenticated().build(),
            }
            .map_err(|e| format!("client_ca_file: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("cert_file/key_file: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, expiry))
}

/// A fingerprint of the files a configuration came from (modification time and length of each).
pub fn fingerprint(files: &[PathBuf]) -> Vec<Option<(std::time::SystemTime, u64)>> {
    files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

/// The users' hashes and the bearer tokens, checked; the principals of `organizations` must be one
/// of them. The tokens' digests.
fn credentials(file: &WebConfigFile, problems: &mut Vec<String>) -> Vec<(String, [u8; 32])> {
    for (user, hash) in &file.basic_auth_users {
        if !crate::shared::looks_like_bcrypt(hash) {
            problems.push(format!("basic_auth_users.{user}: not a bcrypt hash"));
        }
    }
    let mut tokens = Vec::new();
    for (name, hex) in &file.bearer_tokens {
        match parse_sha256(hex) {
            Some(hash) => tokens.push((name.clone(), hash)),
            None => problems.push(format!(
                "bearer_tokens.{name}: not a SHA-256 in hex (64 digits)"
            )),
        }
    }
    for principal in file.organizations.keys() {
        let known = file.basic_auth_users.contains_key(principal)
            || file.bearer_tokens.contains_key(principal);
        if !known {
            problems.push(format!("organizations.{principal}: no such user or token"));
        }
    }
    // Once anyone is scoped, seeing everything must be said: a principal left out is an error, not
    // an unscoped reader.
    if !file.organizations.is_empty() {
        let principals = file
            .basic_auth_users
            .keys()
            .chain(file.bearer_tokens.keys());
        for principal in principals {
            if !file.organizations.contains_key(principal) {
                problems.push(format!(
                    "organizations.{principal}: not listed; give the organizations it may see, or [\"*\"] for every series and the self metrics"
                ));
            }
        }
    }
    for (principal, orgs) in &file.organizations {
        if orgs.iter().any(|o| o == ALL_ORGANIZATIONS) && orgs.len() > 1 {
            problems.push(format!(
                "organizations.{principal}: \"*\" means every organization; list it alone"
            ));
        }
        if orgs.is_empty() {
            problems.push(format!(
                "organizations.{principal}: empty; list organizations, or [\"*\"]"
            ));
        }
    }
    tokens
}

/// The `organizations` entry that lets a principal see everything.
pub const ALL_ORGANIZATIONS: &str = "*";

/// The response headers the file adds, of the allowed ones.
fn response_headers(
    file: &WebConfigFile,
    problems: &mut Vec<String>,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = Vec::new();
    for (name, value) in &file.http_server_config.headers {
        if !ALLOWED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            problems.push(format!(
                "http_server_config.headers.{name}: not one of {}",
                ALLOWED_HEADERS.join(", ")
            ));
            continue;
        }
        match (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            (Ok(n), Ok(v)) => headers.push((n, v)),
            _ => problems.push(format!(
                "http_server_config.headers.{name}: not a valid header"
            )),
        }
    }
    headers
}

/// The TLS server configuration (files relative to the web configuration's folder, added to `files`
/// for the watcher), whether client certificates are required, and when the certificate expires.
fn server_tls(
    file: &WebConfigFile,
    path: &Path,
    files: &mut Vec<PathBuf>,
    problems: &mut Vec<String>,
) -> (Option<Arc<rustls::ServerConfig>>, bool, Option<i64>) {
    let Some(t) = &file.tls_server_config else {
        return (None, false, None);
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let resolve = |p: &Path| match p.is_absolute() {
        true => p.to_owned(),
        false => base.join(p),
    };
    files.push(resolve(&t.cert_file));
    files.push(resolve(&t.key_file));
    if let Some(ca) = &t.client_ca_file {
        files.push(resolve(ca));
    }
    match build_tls(t, &resolve) {
        Ok((config, expiry)) => (
            Some(Arc::new(config)),
            matches!(
                t.client_auth_type,
                ClientAuthType::RequireAndVerifyClientCert | ClientAuthType::RequireAnyClientCert
            ),
            expiry,
        ),
        Err(message) => {
            problems.push(format!("tls_server_config: {message}"));
            (None, false, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(file: &str) -> Result<Security, SecurityError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        std::fs::write(&path, file).unwrap();
        Security::load(&path)
    }

    #[test]
    fn reads_the_exporter_toolkit_format_and_our_extensions() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let s = with(&format!(
            "basic_auth_users:\n  prom: {hash}\nbearer_tokens:\n  graf: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n\
             organizations:\n  graf: [acme]\n  prom: [\"*\"]\nallowed_networks: [10.0.0.0/8, \"fd00::/8\"]\ntrusted_proxies: [10.0.0.5/32]\n\
             http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        ))
        .unwrap();
        assert!(
            s.network_allows("::ffff:10.1.2.3".parse().unwrap()),
            "IPv4-mapped"
        );
        assert!(s.accepts_peer("10.0.0.5".parse().unwrap()));
        assert!(s.accepts_peer("::ffff:10.9.9.9".parse().unwrap()));
        assert!(
            !s.accepts_peer("192.0.2.1".parse().unwrap()),
            "refused at accept"
        );
        assert!(s.is_protected() && s.auth.accepts_tokens() && s.tls.is_none());
        assert_eq!(s.headers.len(), 1);
        assert!(s.network_allows("10.1.2.3".parse().unwrap()));
        assert!(s.network_allows("fd00::1".parse().unwrap()));
        assert!(!s.network_allows("192.0.2.1".parse().unwrap()));
        assert!(!s.network_allows("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let s =
            with("trusted_proxies: [10.0.0.5/32, 10.0.0.6/32]\nallowed_networks: [192.0.2.0/24]\n")
                .unwrap();
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let stranger: IpAddr = "198.51.100.9".parse().unwrap();
        assert_eq!(
            s.client_ip(stranger, Some("192.0.2.1")),
            stranger,
            "spoofed from an untrusted peer"
        );
        assert_eq!(
            s.client_ip(proxy, Some("192.0.2.1")),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            s.client_ip(proxy, Some("192.0.2.1, 10.0.0.6")),
            "192.0.2.1".parse::<IpAddr>().unwrap(),
            "through two proxies"
        );
        assert_eq!(
            s.client_ip(proxy, Some("192.0.2.1, 203.0.113.7")),
            "203.0.113.7".parse::<IpAddr>().unwrap(),
            "the right-most untrusted hop"
        );
        assert_eq!(s.client_ip(proxy, None), proxy);
        assert_eq!(
            s.client_ip("::ffff:10.0.0.5".parse().unwrap(), Some("::ffff:192.0.2.1")),
            "192.0.2.1".parse::<IpAddr>().unwrap(),
            "IPv4-mapped peers and hops are IPv4"
        );
    }

    #[test]
    fn seeing_everything_is_said_once_anyone_is_scoped() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let token = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let err = with(&format!(
            "basic_auth_users:\n  prom: {hash}\n  ops: {hash}\nbearer_tokens:\n  graf: {token}\norganizations:\n  graf: [acme]\n  ops: [\"*\", acme]\n"
        ))
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("organizations.prom: not listed"), "{err}");
        assert!(err.contains("organizations.ops: \"*\""), "{err}");
        let s = with(&format!(
            "basic_auth_users:\n  prom: {hash}\nbearer_tokens:\n  graf: {token}\norganizations:\n  graf: [acme]\n  prom: [\"*\"]\n"
        ))
        .unwrap();
        assert!(s.auth.scope("prom").is_none(), "[\"*\"]: unscoped");
        assert!(s.auth.scope("graf").is_some());
        // With no organizations at all, nobody is scoped (the exporter-toolkit's meaning).
        assert!(with(&format!("basic_auth_users:\n  prom: {hash}\n")).is_ok());
    }

    #[test]
    fn the_shipped_example_works_only_once_its_placeholders_are_replaced() {
        let example = include_str!("../../config/web-config.example.yml");
        let err = with(example).err().unwrap().to_string();
        for needle in [
            "basic_auth_users.prometheus: not a bcrypt hash",
            "basic_auth_users.team-acme: not a bcrypt hash",
            "bearer_tokens.grafana-acme: not a SHA-256",
        ] {
            assert!(err.contains(needle), "{needle} in {err}");
        }
        // Filled in (and without its TLS files), the same file loads and means what it says.
        let hash = bcrypt::hash("a real password", 4).unwrap();
        let digest =
            crate::shared::json::hex(&<sha2::Sha256 as sha2::Digest>::digest(b"a random token"));
        let mut tree: serde_norway::Value = serde_norway::from_str(example).unwrap();
        tree.as_mapping_mut().unwrap().remove("tls_server_config");
        let filled = serde_norway::to_string(&tree)
            .unwrap()
            .replace("REPLACE-with-a-bcrypt-hash", &hash)
            .replace("REPLACE-with-the-sha256-of-a-random-token", &digest);
        let s = with(&filled).unwrap();
        assert!(s.auth.scope("prometheus").is_none());
        assert_eq!(s.auth.scope("team-acme").unwrap().len(), 1);
        assert!(!s.accepts_peer("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn every_fault_is_reported() {
        let err = with("basic_auth_users:\n  a: plain\nbearer_tokens:\n  t: short\norganizations:\n  ghost: [x]\nhttp_server_config:\n  headers:\n    Server: me\n")
            .err()
            .unwrap()
            .to_string();
        for needle in [
            "basic_auth_users.a",
            "bearer_tokens.t",
            "organizations.ghost",
            "headers.Server",
        ] {
            assert!(err.contains(needle), "{needle} in {err}");
        }
        let err = with("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [x]\n")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("cipher_suites"), "{err}");
        let err = with("allowed_networks: [not-a-net]\n")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("allowed_networks"), "{err}");
    }
}
