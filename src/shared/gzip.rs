//! Compressed HTTP bodies: `Accept-Encoding` negotiation and gzip of an exposition, whole or chunk by
//! chunk (Prometheus always asks for gzip; an exposition of 100,000 series shrinks about 25 times).

/// One gzip stream written chunk by chunk (a streamed scrape compresses each chunk as it is rendered),
/// at the fastest level: an exposition is so repetitive that level 1 already shrinks it about twenty
/// times, and a scrape must not wait on the compressor.
pub struct GzipStream {
    encoder: flate2::write::GzEncoder<Vec<u8>>,
}

impl Default for GzipStream {
    fn default() -> Self {
        GzipStream {
            encoder: flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()),
        }
    }
}

impl GzipStream {
    /// Compresses `text`: the compressed bytes ready so far (maybe none: the compressor keeps a block
    /// until it is full).
    pub fn write(&mut self, text: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        self.encoder
            .write_all(text)
            .expect("writing to a Vec does not fail");
        std::mem::take(self.encoder.get_mut())
    }

    /// The rest of the stream and its trailer.
    pub fn finish(self) -> Vec<u8> {
        self.encoder
            .finish()
            .expect("writing to a Vec does not fail")
    }
}

/// `body` gzip-compressed, at once.
pub fn gzip(body: &[u8]) -> Vec<u8> {
    let mut stream = GzipStream::default();
    let mut out = stream.write(body);
    out.extend_from_slice(&stream.finish());
    out
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
    fn a_body_written_in_chunks_comes_back_whole() {
        let line = "hestyna_llm_runs_total{intent=\"billing\",organization=\"acme\",outcome=\"success\"} 12\n";
        for lines in [0, 1, 10, 100_000] {
            let body = line.repeat(lines);
            let compressed = gzip(body.as_bytes());
            assert_eq!(gunzip(&compressed), body.as_bytes(), "{lines} lines");
            assert_eq!(&compressed[..2], [0x1f, 0x8b], "a gzip stream");
            let mut stream = GzipStream::default();
            let mut chunked: Vec<u8> = body
                .as_bytes()
                .chunks(4096)
                .flat_map(|c| stream.write(c))
                .collect();
            chunked.extend(stream.finish());
            assert_eq!(gunzip(&chunked), body.as_bytes(), "{lines} lines in chunks");
        }
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
