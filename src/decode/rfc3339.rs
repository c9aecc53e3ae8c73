//! RFC 3339 timestamps, with a fast path for the one form producers nearly always send.
//!
//! `2026-11-27T08:00:00.040Z` (UTC, a `T`, zero to nine fraction digits) is read by hand; anything else
//! (an offset, a lowercase `t`, a leap second, a tenth fraction digit, ...) goes to chrono's parser, which
//! decides. The fast path only ever agrees with chrono: the property tests below compare the two.

use chrono::{DateTime, NaiveDate, Utc};

/// Parses an RFC 3339 timestamp into UTC.
pub(crate) fn parse(text: &str) -> Option<DateTime<Utc>> {
    match canonical_utc(text.as_bytes()) {
        Some(t) => Some(t),
        None => DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.F{1,9}]Z`, or `None` to let chrono decide (which may still accept it).
#[inline]
fn canonical_utc(b: &[u8]) -> Option<DateTime<Utc>> {
    if b.len() < 20 || b.len() == 21 || b.len() > 30 {
        return None;
    }
    let (fixed, rest) = b.split_at(19);
    let &[y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1, b'T', h0, h1, b':', i0, i1, b':', s0, s1] =
        fixed
    else {
        return None;
    };
    let year = num(&[y0, y1, y2, y3])?;
    let (month, day) = (num(&[m0, m1])?, num(&[d0, d1])?);
    let (hour, minute, second) = (num(&[h0, h1])?, num(&[i0, i1])?, num(&[s0, s1])?);
    let (&b'Z', fraction) = rest.split_last()? else {
        return None;
    };
    let nanos = match fraction {
        [] => 0,
        [b'.', digits @ ..] if !digits.is_empty() => {
            num(digits)? * 10u32.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    // A leap second (60) is left to chrono, as are out-of-range fields (chrono refuses them too).
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(year as i32, month, day)?;
    Some(
        date.and_hms_nano_opt(hour, minute, second, nanos)?
            .and_utc(),
    )
}

/// ASCII digits as a number (at most nine of them, so no overflow).
#[inline]
fn num(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |n, &d| {
        let v = d.wrapping_sub(b'0');
        (v < 10).then(|| n * 10 + u32::from(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chrono(text: &str) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    #[test]
    fn reads_the_canonical_form_and_leaves_the_rest_to_chrono() {
        let t = canonical_utc(b"2026-11-27T08:00:00.040Z").expect("canonical");
        assert_eq!(t.to_rfc3339(), "2026-11-27T08:00:00.040+00:00");
        assert_eq!(
            canonical_utc(b"2024-02-29T23:59:59.123456789Z"),
            chrono("2024-02-29T23:59:59.123456789Z")
        );
        for other in [
            "2026-11-27T08:00:00+01:00",
            "2026-11-27t08:00:00Z",
            "2016-12-31T23:59:60Z",
            "2026-11-27T08:00:00.1234567891Z",
        ] {
            assert_eq!(canonical_utc(other.as_bytes()), None, "{other}");
        }
        // ... which parse() still reads, through chrono.
        assert!(parse("2026-11-27T08:00:00+01:00").is_some());
        for bad in [
            "2023-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-27T24:00:00Z",
            "2026-11-27T08:00:00.Z",
            "2026-11-27T08:00:00",
            "2026-1-27T08:00:00Z",
            "",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    /// Timestamps near the canonical form: every field in and slightly out of range, fractions of 0 to 10
    /// digits, and the separators and zone sometimes swapped for ones the fast path does not take.
    fn near_canonical() -> impl Strategy<Value = String> {
        (
            (0u32..10_000, 0u32..14, 0u32..33),
            (0u32..26, 0u32..62, 0u32..62),
            proptest::collection::vec(0u8..10, 0..11),
            prop_oneof![
                Just("Z"),
                Just("z"),
                Just("+00:00"),
                Just("-05:30"),
                Just("")
            ],
            prop_oneof![4 => Just('T'), 1 => Just('t'), 1 => Just(' ')],
        )
            .prop_map(|((y, mo, d), (h, mi, s), frac, zone, sep)| {
                let mut text = format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}");
                if !frac.is_empty() {
                    text.push('.');
                    text.extend(frac.iter().map(|d| char::from(b'0' + d)));
                }
                text + zone
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Where the fast path reads a timestamp, chrono reads the same instant; overall, `parse` and chrono
        /// agree on every input.
        #[test]
        fn agrees_with_chrono(text in prop_oneof![near_canonical(), ".{0,32}"]) {
            if let Some(fast) = canonical_utc(text.as_bytes()) {
                prop_assert_eq!(Some(fast), chrono(&text));
            }
            prop_assert_eq!(parse(&text), chrono(&text));
        }

        /// Mutating one byte of a canonical timestamp never makes the two disagree.
        #[test]
        fn agrees_with_chrono_after_a_mutation(
            text in near_canonical(), at in any::<prop::sample::Index>(), byte in any::<u8>()
        ) {
            let mut bytes = text.into_bytes();
            let i = at.index(bytes.len());
            bytes[i] = byte;
            if let Ok(text) = String::from_utf8(bytes) {
                prop_assert_eq!(parse(&text), chrono(&text));
            }
        }
    }

    #[test]
    fn generated_timestamps_take_the_fast_path() {
        use crate::source::generator::{EventGenerator, GeneratorSettings};
        let settings = GeneratorSettings {
            count: Some(2_000),
            ..Default::default()
        };
        let mut seen = 0;
        for generated in EventGenerator::new(settings) {
            let Ok(serde_json::Value::Object(event)) = serde_json::from_slice(&generated.payload)
            else {
                continue; // the generator's planted invalid records
            };
            for key in ["occurred_at", "intake_at"] {
                if let Some(serde_json::Value::String(t)) = event.get(key) {
                    assert!(canonical_utc(t.as_bytes()).is_some(), "{t}");
                    seen += 1;
                }
            }
        }
        assert!(seen >= 2_000, "{seen}");
    }
}
