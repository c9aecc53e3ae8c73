//! Helpers shared by several stages: the exposition text writer (derived series and self metrics), the
//! append-only file (file sink and file dead letters), UTC timestamp and hex writing (the forwarded
//! record, syslog, Splunk), and the form of a bcrypt hash (configuration and web configuration). A leaf: it imports no other module of the crate.

pub mod append;
pub mod exposition;
pub mod json;

/// Whether `hash` has the form of a bcrypt hash (`$2a$`, `$2b$`, `$2y$` or `$2x$`, 60 characters): the
/// one check of the configuration's users and of the web configuration's.
pub fn looks_like_bcrypt(hash: &str) -> bool {
    hash.len() == 60
        && ["$2a$", "$2b$", "$2y$", "$2x$"]
            .iter()
            .any(|p| hash.starts_with(p))
}
