//! The file source: JSONL from a file or stdin (`-`), one event per line, read once and fanned out to
//! every pipeline.

use super::{Origin, Outputs, Record, SourceError, SourceSummary};
use std::io::{BufRead, BufReader, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A JSONL source.
pub struct FileSource {
    path: String,
    batch_max_records: usize,
}

impl FileSource {
    /// Reads `path` (`-` for stdin) in batches of at most `batch_max_records` lines.
    pub fn new(path: impl Into<String>, batch_max_records: usize) -> Self {
        FileSource {
            path: path.into(),
            batch_max_records: batch_max_records.max(1),
        }
    }

    /// Reads to the end (or until `stop`), handing batches to `outputs`. Blank lines are not events and are
    /// skipped; every other line is a record, however broken.
    pub fn run(
        self,
        outputs: Outputs,
        stop: Arc<AtomicBool>,
    ) -> Result<SourceSummary, SourceError> {
        let reader: Box<dyn Read> = if self.path == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            let file = std::fs::File::open(&self.path).map_err(|source| SourceError::Open {
                path: self.path.clone(),
                source,
            })?;
            Box::new(file)
        };
        let mut reader = BufReader::with_capacity(1 << 20, reader);
        let path: Arc<str> = Arc::from(self.path.as_str());
        let mut summary = SourceSummary::default();
        let mut batch = Vec::with_capacity(self.batch_max_records);
        let mut line_no = 0u64;
        let mut partial = Vec::new();
        loop {
            if stop.load(Ordering::Acquire) {
                break;
            }
            let Some(mut line) =
                next_line(&mut reader, &mut partial).map_err(|source| SourceError::Read {
                    path: self.path.clone(),
                    source,
                })?
            else {
                break;
            };
            line_no += 1;
            while line.last() == Some(&b'\r') {
                line.pop();
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

/// The next line without its `\n`, or `None` at the end. A line that lies whole in the reader's buffer (nearly
/// every line) is copied once, into a vector of its exact size; one that straddles a refill is gathered in
/// `partial` first.
fn next_line(reader: &mut impl BufRead, partial: &mut Vec<u8>) -> std::io::Result<Option<Vec<u8>>> {
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok((!partial.is_empty()).then(|| std::mem::take(partial)));
        }
        match memchr::memchr(b'\n', buf) {
            Some(end) => {
                let line = if partial.is_empty() {
                    buf[..end].to_vec()
                } else {
                    partial.extend_from_slice(&buf[..end]);
                    std::mem::take(partial)
                };
                reader.consume(end + 1);
                return Ok(Some(line));
            }
            None => {
                let n = buf.len();
                partial.extend_from_slice(buf);
                reader.consume(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::next_line;
    use proptest::prelude::*;
    use std::io::BufReader;

    fn lines(text: &[u8], capacity: usize) -> Vec<Vec<u8>> {
        let mut reader = BufReader::with_capacity(capacity, text);
        let mut partial = Vec::new();
        std::iter::from_fn(|| next_line(&mut reader, &mut partial).expect("in memory")).collect()
    }

    #[test]
    fn splits_on_newlines_and_keeps_a_last_line_without_one() {
        assert_eq!(lines(b"a\nbc\n\nd", 64), [&b"a"[..], b"bc", b"", b"d"]);
        assert_eq!(lines(b"a\n", 64), [&b"a"[..]]);
        assert!(lines(b"", 64).is_empty());
    }

    proptest! {
        /// Whatever the buffer size, lines come out as `split` on `\n` gives them (a final `\n` ends the
        /// last line rather than starting an empty one).
        #[test]
        fn same_lines_as_split(text in proptest::collection::vec(
            prop_oneof![Just(b'\n'), Just(b'x'), Just(b'\r'), any::<u8>()], 0..300),
            capacity in 1usize..40)
        {
            let mut expected: Vec<Vec<u8>> = text.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
            if text.last().is_none_or(|b| *b == b'\n') {
                expected.pop();
            }
            prop_assert_eq!(lines(&text, capacity), expected);
        }
    }
}
