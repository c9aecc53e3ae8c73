//! Helpers shared by several stages: the exposition text writer (derived series and self metrics), the
//! append-only file (file sink and file dead letters), and UTC timestamp and hex writing (the forwarded
//! record, syslog, Splunk). A leaf: it imports no other module of the crate.

pub mod append;
pub mod exposition;
pub mod json;
