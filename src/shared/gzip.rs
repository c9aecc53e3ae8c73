//! Compressed HTTP bodies: `Accept-Encoding` negotiation and gzip of an exposition (Prometheus always
//! asks for gzip; an exposition of 100,000 series shrinks about 25 times).

/// Bodies at least this large are compressed in two halves on two threads (two gzip members, which
/// every gzip reader takes as one stream: RFC 1952 section 2.2).
const SPLIT_AT: usize = 1 << 20;

/// `body` gzip-compressed at the fastest level: an exposition is so repetitive that level 1 already
/// shrinks it about tenfold, and a scrape must not wait on the compressor.
pub fn gzip(body: &[u8]) -> Vec<u8> {
    if body.len() < SPLIT_AT {
        return gzip_member(body);
    }
    // Cut at a line end near the middle, so that each member is whole lines (any cut would do).
    let middle = body.len() / 2;
    let cut = memchr::memchr(b'\n', &body[middle..]).map_or(body.len(), |i| middle + i + 1);
    let (first, second) = body.split_at(cut);
    let (mut out, tail) = std::thread::scope(|s| {
        let tail = s.spawn(|| gzip_member(second));
        let head = gzip_member(first);
        (head, tail.join().expect("gzip does not panic"))
    });
    out.extend_from_slice(&tail);
    out
}

fn gzip_member(body: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 8 + 64),
        flate2::Compression::fast(),
    );
    encoder
        .write_all(body)
        .expect("writing to a Vec does not fail");
    encoder.finish().expect("writing to a Vec does not fail")
}

/// Whether an `Accept-Encoding` value accepts gzip: `gzip` or `*` listed with a non-zero quality, and
/// gzip not refused by `gzip;q=0`.
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    let Some(value) = accept_encoding else {
        return false;
    };
    let mut gzip = None;
    let mut any = None;
    for item in value.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let quality = parts
            .filter_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
            .find_map(|q| q.trim().parse::<f64>().ok())
            .unwrap_or(1.0);
        match coding.as_str() {
            "gzip" | "x-gzip" => gzip = Some(quality > 0.0),
            "*" => any = Some(quality > 0.0),
            _ => {}
        }
    }
    gzip.or(any).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn small_and_large_bodies_come_back_whole() {
        let line = "hestyna_llm_runs_total{intent=\"billing\",organization=\"acme\",outcome=\"success\"} 12\n";
        for lines in [0, 1, 10, SPLIT_AT / line.len() + 7] {
            let body = line.repeat(lines);
            let compressed = gzip(body.as_bytes());
            assert_eq!(gunzip(&compressed), body.as_bytes(), "{lines} lines");
            assert_eq!(&compressed[..2], [0x1f, 0x8b], "a gzip stream");
        }
        // A large body without a line end is one member: still whole.
        let blob = vec![b'x'; SPLIT_AT * 2];
        assert_eq!(gunzip(&gzip(&blob)), blob);
    }

    #[test]
    fn negotiates_gzip_as_http_says() {
        for yes in [
            "gzip",
            "gzip, deflate",
            "deflate, gzip;q=0.5",
            "*",
            "br;q=1, *;q=0.1",
            "GZIP",
            "x-gzip",
        ] {
            assert!(accepts_gzip(Some(yes)), "{yes}");
        }
        for no in [
            "",
            "identity",
            "deflate, br",
            "gzip;q=0",
            "*;q=0",
            "gzip;q=0, *",
        ] {
            assert!(!accepts_gzip(Some(no)), "{no}");
        }
        assert!(!accepts_gzip(None));
    }
}
