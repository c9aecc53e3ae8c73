//! Writing the small pieces of JSON and text that several stages emit: UTC timestamps, hex.

use chrono::{DateTime, Datelike, Timelike, Utc};
use std::io::Write as _;

/// Appends `t` as RFC 3339 UTC with milliseconds and `Z`.
pub fn write_timestamp(out: &mut Vec<u8>, t: DateTime<Utc>) {
    let year = t.year();
    if (0..=9999).contains(&year) {
        // Digit by digit: the formatting machinery costs more than the rest of a document's fields.
        let two = |n: u32| [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8];
        let (y, ms) = (year as u32, t.timestamp_subsec_millis().min(999));
        let [y0, y1] = two(y / 100);
        let [y2, y3] = two(y);
        let [mo0, mo1] = two(t.month());
        let [d0, d1] = two(t.day());
        let [h0, h1] = two(t.hour());
        let [mi0, mi1] = two(t.minute());
        let [s0, s1] = two(t.second());
        let [m1, m2] = two(ms);
        out.extend_from_slice(&[
            y0,
            y1,
            y2,
            y3,
            b'-',
            mo0,
            mo1,
            b'-',
            d0,
            d1,
            b'T',
            h0,
            h1,
            b':',
            mi0,
            mi1,
            b':',
            s0,
            s1,
            b'.',
            b'0' + (ms / 100) as u8,
            m1,
            m2,
            b'Z',
        ]);
        return;
    }
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.timestamp_subsec_millis().min(999)
    );
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The digit-by-digit timestamp is what the formatting machinery writes (leap seconds included:
        /// second 59 and millisecond 999, as before), and chrono's RFC 3339 form otherwise.
        #[test]
        fn timestamps_are_written_as_formatting_writes_them(
            secs in -70_000_000_000i64..260_000_000_000, nanos in 0u32..1_000_000_000, leap in proptest::bool::weighted(0.1)
        ) {
            let t = DateTime::from_timestamp(secs / 60 * 60 + 59, nanos + 1_000_000_000)
                .filter(|_| leap)
                .unwrap_or_else(|| DateTime::from_timestamp(secs, nanos).expect("in chrono's range"));
            let mut ours = Vec::new();
            write_timestamp(&mut ours, t);
            let ours = String::from_utf8(ours).unwrap();
            let expected = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                t.year(), t.month(), t.day(), t.hour(), t.minute(), t.second(),
                t.timestamp_subsec_millis().min(999)
            );
            proptest::prop_assert_eq!(&ours, &expected);
            if !leap && (0..=9999).contains(&t.year()) {
                proptest::prop_assert_eq!(ours, t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            }
        }
    }
}
