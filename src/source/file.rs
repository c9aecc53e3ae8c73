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
        let mut line = Vec::new();
        loop {
            if stop.load(Ordering::Acquire) {
                break;
            }
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|source| SourceError::Read {
                    path: self.path.clone(),
                    source,
                })?;
            if n == 0 {
                break;
            }
            line_no += 1;
            while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                line.pop();
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            batch.push(Record::new(
                line.clone(),
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
