//! Durations: `_secs` and `_ms` keys for users, [`Duration`] from the boundary on.
//!
//! `#[serde(with = "super::duration::secs")]` on a `Duration` field reads and writes a whole number of
//! seconds; `millis` the same in milliseconds. Call sites never convert.

use serde::{Deserialize, Deserializer, Serializer};
use std::time::Duration;

/// A `Duration` as whole seconds.
pub mod secs {
    use super::*;

    /// Writes whole seconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    /// Reads whole seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

/// A `Duration` as whole milliseconds.
pub mod millis {
    use super::*;

    /// Writes whole milliseconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    /// Reads whole milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Both {
        #[serde(with = "secs")]
        a_secs: Duration,
        #[serde(with = "millis")]
        b_ms: Duration,
    }

    #[test]
    fn durations_round_trip_as_whole_numbers_and_refuse_other_types() {
        let v: Both = serde_json::from_str(r#"{"a_secs": 30, "b_ms": 250}"#).unwrap();
        assert_eq!(
            v,
            Both {
                a_secs: Duration::from_secs(30),
                b_ms: Duration::from_millis(250)
            }
        );
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"a_secs":30,"b_ms":250}"#
        );
        let e = serde_json::from_str::<Both>(r#"{"a_secs": "soon", "b_ms": 1}"#).unwrap_err();
        assert!(e.to_string().contains("expected u64"), "{e}");
        assert!(serde_json::from_str::<Both>(r#"{"a_secs": -1, "b_ms": 1}"#).is_err());
    }
}
