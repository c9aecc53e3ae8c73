//! A record's Kafka headers, packed as they came into one buffer (for the Kafka source, a slice of the
//! batch's buffer): no allocation per header or per record, and nothing parsed until a stage asks for
//! a header (the decoder asks for `traceparent` only when the body has no trace id; the dead letters
//! copy them all).

use bytes::{BufMut, Bytes};

/// Packed headers: for each, the key's length (u32, little endian), the key (UTF-8), the value's
/// length (u32, little endian) and the value. A header without a value is packed as an empty one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Bytes);

impl Headers {
    /// Appends one header to a buffer being packed.
    pub fn pack(buf: &mut impl BufMut, key: &str, value: &[u8]) {
        buf.put_u32_le(len_u32(key.len()));
        buf.put_slice(key.as_bytes());
        buf.put_u32_le(len_u32(value.len()));
        buf.put_slice(value);
    }

    /// Headers already packed with [`Headers::pack`].
    pub fn from_packed(packed: Bytes) -> Self {
        Headers(packed)
    }

    /// Packs these pairs.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<[u8]>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut buf = Vec::new();
        for (k, v) in pairs {
            Self::pack(&mut buf, k.as_ref(), v.as_ref());
        }
        Headers(Bytes::from(buf))
    }

    /// The headers in order, as (key, value).
    pub fn iter(&self) -> Iter<'_> {
        Iter { rest: &self.0 }
    }

    /// The value of the first header with this key.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A length as packed: Kafka bounds a record far below 4 GiB, so a longer one cannot come.
fn len_u32(len: usize) -> u32 {
    u32::try_from(len).expect("a Kafka header is shorter than 4 GiB")
}

/// The headers of a [`Headers`], in order.
pub struct Iter<'a> {
    rest: &'a [u8],
}

impl<'a> Iter<'a> {
    /// The next length-prefixed part, or `None` at the end (or on a buffer that was not packed whole,
    /// which [`Headers::pack`] never makes).
    fn part(&mut self) -> Option<&'a [u8]> {
        let (len, rest) = self.rest.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        let part = rest.get(..len)?;
        self.rest = &rest[len..];
        Some(part)
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let key = self.part()?;
        let value = self.part()?;
        // Packed from a `&str`: always UTF-8.
        Some((std::str::from_utf8(key).ok()?, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_come_back_as_packed_in_order_empty_and_repeated_ones_too() {
        let pairs: Vec<(&str, &[u8])> = vec![
            (
                "traceparent",
                b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("", b""),
            ("x-tenant", b"acme"),
            ("x-tenant", b"second"),
            ("bin\u{e9}", &[0, 255, 10]),
        ];
        let headers = Headers::from_pairs(pairs.clone());
        assert_eq!(headers.iter().collect::<Vec<_>>(), pairs);
        assert_eq!(headers.len(), 5);
        assert_eq!(headers.get("x-tenant"), Some(&b"acme"[..]));
        assert_eq!(headers.get("missing"), None);
        assert!(Headers::default().is_empty());
        assert_eq!(Headers::default().iter().count(), 0);
    }

    #[test]
    fn a_cut_buffer_ends_the_headers_without_a_panic() {
        let whole = Headers::from_pairs([("key", b"value")]);
        for cut in 0..whole.0.len() {
            let part = Headers::from_packed(whole.0.slice(..cut));
            assert_eq!(part.iter().count(), 0, "cut at {cut}");
        }
    }
}
