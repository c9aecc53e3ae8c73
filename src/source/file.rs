//! The file source: JSONL from a file or stdin (`-`), one event per line, read once and fanned out to
//! every pipeline.

use super::{FanOut, Origin, Outputs, Record, SourceError, SourceResult, SourceSummary};
use bytes::{Bytes, BytesMut};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A JSONL source.
pub struct FileSource {
    /// The file, `-` for stdin.
    pub path: String,
    /// Lines per batch at most (at least 1).
    pub batch_max_records: usize,
}

impl FanOut for FileSource {
    /// Reads to the end (or until `stop`), handing batches to `outputs`. Blank lines are not events and are
    /// skipped; every other line is a record, however broken.
    fn run(self: Box<Self>, outputs: Outputs, stop: Arc<AtomicBool>) -> SourceResult {
        let reader: Box<dyn Read> = if self.path == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            let file = std::fs::File::open(&self.path).map_err(|source| SourceError::Open {
                path: self.path.clone(),
                source,
            })?;
            Box::new(file)
        };
        let mut lines = Lines::new(reader);
        let path: Arc<str> = Arc::from(self.path.as_str());
        let mut summary = SourceSummary::default();
        let mut batch = Vec::with_capacity(self.batch_max_records);
        let mut line_no = 0u64;
        loop {
            if stop.load(Ordering::Acquire) {
                break;
            }
            let Some(mut line) = lines.next_line().map_err(|source| SourceError::Read {
                path: self.path.clone(),
                source,
            })?
            else {
                break;
            };
            line_no += 1;
            while line.last() == Some(&b'\r') {
                line.truncate(line.len() - 1);
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            batch.push(Record::new(
                line,
                Origin::File {
                    path: path.clone(),
                    line: line_no,
                },
            ));
            if batch.len() >= self.batch_max_records {
                summary.records += batch.len() as u64;
                if !outputs.send_blocking(
                    std::mem::replace(&mut batch, Vec::with_capacity(self.batch_max_records)),
                    None,
                ) {
                    return Ok(summary);
                }
            }
        }
        if !batch.is_empty() {
            summary.records += batch.len() as u64;
            outputs.send_blocking(batch, None);
        }
        Ok(summary)
    }
}

/// Bytes read from the file at a time.
const READ_SIZE: usize = 256 * 1024;

/// Splits a reader into lines that share the chunks they were read into: a line is a slice of its chunk
/// (a reference count, no allocation or copy of its own), and a chunk is freed when its last line is.
struct Lines<R> {
    inner: R,
    /// The rest of the current chunk: `filled` bytes read and not yet handed out (the start of the next
    /// line), then zeroes to read into. Chunks come zeroed from the allocator, so no byte is zeroed twice.
    buf: BytesMut,
    filled: usize,
    eof: bool,
}

impl<R: Read> Lines<R> {
    fn new(inner: R) -> Self {
        Lines {
            inner,
            buf: BytesMut::new(),
            filled: 0,
            eof: false,
        }
    }

    /// The next line without its `\n`, or `None` at the end. A last line without a `\n` still counts.
    fn next_line(&mut self) -> std::io::Result<Option<Bytes>> {
        let mut scanned = 0;
        loop {
            if let Some(end) = memchr::memchr(b'\n', &self.buf[scanned..self.filled]) {
                let taken = scanned + end + 1;
                let mut line = self.buf.split_to(taken).freeze();
                line.truncate(taken - 1);
                self.filled -= taken;
                return Ok(Some(line));
            }
            scanned = self.filled;
            if self.eof {
                let rest = self.buf.split_to(self.filled).freeze();
                self.filled = 0;
                return Ok((!rest.is_empty()).then_some(rest));
            }
            self.fill()?;
        }
    }

    /// Reads more after the filled part; sets `eof` when there is no more. When the chunk is full, the part
    /// of a line already read moves to the start of a new chunk.
    fn fill(&mut self) -> std::io::Result<()> {
        if self.filled == self.buf.len() {
            let mut next = BytesMut::zeroed(READ_SIZE.max(2 * self.filled));
            next[..self.filled].copy_from_slice(&self.buf[..self.filled]);
            self.buf = next;
        }
        loop {
            match self.inner.read(&mut self.buf[self.filled..]) {
                Ok(n) => {
                    self.filled += n;
                    self.eof = n == 0;
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Lines;
    use proptest::prelude::*;
    use std::io::Read;

    /// Lines as [`Lines`] splits them, reading at most `max_read` bytes at a time (so that lines straddle
    /// reads).
    fn lines(text: &[u8], max_read: usize) -> Vec<Vec<u8>> {
        struct Trickle<'a>(&'a [u8], usize);
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(self.1).min(out.len());
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut lines = Lines::new(Trickle(text, max_read));
        std::iter::from_fn(|| lines.next_line().expect("in memory"))
            .map(|line| line.to_vec())
            .collect()
    }

    #[test]
    fn splits_on_newlines_and_keeps_a_last_line_without_one() {
        assert_eq!(lines(b"a\nbc\n\nd", 64), [&b"a"[..], b"bc", b"", b"d"]);
        assert_eq!(lines(b"a\n", 64), [&b"a"[..]]);
        assert!(lines(b"", 64).is_empty());
    }

    proptest! {
        /// However the reads are cut, lines come out as `split` on `\n` gives them (a final `\n` ends the
        /// last line rather than starting an empty one).
        #[test]
        fn same_lines_as_split(text in proptest::collection::vec(
            prop_oneof![Just(b'\n'), Just(b'x'), Just(b'\r'), any::<u8>()], 0..300),
            max_read in 1usize..40)
        {
            let mut expected: Vec<Vec<u8>> = text.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
            if text.last().is_none_or(|b| *b == b'\n') {
                expected.pop();
            }
            prop_assert_eq!(lines(&text, max_read), expected);
        }
    }
}
