//! The JSON lines sink: a file (appended to, rotated by size) or standard output.

use super::{encode_line, Delivery, Encoded, FailureClass, Sink, SinkError, SinkFuture};
use crate::config::FileSinkConfig;
use crate::forward::Redacted;
use crate::shared::append::{AppendFile, Rotation};
use std::io::Write;

/// Where a [`LineSink`] writes.
enum Lines {
    /// Appended to a file, flushed to the kernel, rotated by size.
    File(AppendFile),
    /// Standard output, flushed.
    Stdout,
}

/// Writes JSON lines to a file or standard output; a batch is accepted once written and flushed.
pub struct LineSink {
    name: String,
    out: Lines,
}

impl LineSink {
    /// Opens (creating it and its folder if needed) the configured file for appending.
    pub fn file(name: &str, config: &FileSinkConfig) -> std::io::Result<Self> {
        let rotation = Rotation {
            bytes: config.rotate_bytes,
            keep: config.rotate_keep,
        };
        let file = AppendFile::open_rotating(&config.path, Some(rotation))?;
        Ok(LineSink {
            name: name.to_owned(),
            out: Lines::File(file),
        })
    }

    /// A sink to standard output.
    pub fn stdout(name: &str) -> Self {
        LineSink {
            name: name.to_owned(),
            out: Lines::Stdout,
        }
    }

    async fn write(&self, bytes: Vec<u8>) -> Result<Delivery, SinkError> {
        let (written, target) = match &self.out {
            Lines::File(file) => (file.append(bytes).await, file.path().display().to_string()),
            Lines::Stdout => {
                let written = tokio::task::spawn_blocking(move || {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&bytes).and_then(|_| out.flush())
                })
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
                (written, "stdout".to_owned())
            }
        };
        written
            .map(|()| Delivery::Accepted)
            .map_err(|e| SinkError::new(FailureClass::Io, format!("{target}: {e}")))
    }
}

impl Sink for LineSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn encode(&self, doc: &Redacted, out: &mut Vec<u8>) {
        encode_line(doc, out)
    }

    fn send<'a>(&'a self, batch: &'a Encoded<'a>) -> SinkFuture<'a> {
        Box::pin(self.write(batch.body.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rotates_by_size_and_keeps_what_it_is_told() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("siem.jsonl");
        let file = AppendFile::open_rotating(
            &path,
            Some(Rotation {
                bytes: 100,
                keep: 2,
            }),
        )
        .unwrap();
        for i in 0..10 {
            file.append(format!("{i:039}\n").into_bytes())
                .await
                .unwrap();
        }
        // 40-byte lines, rotated after the third line of each file: 0-2, 3-5, 6-8 rotated; 9 current.
        let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
        assert_eq!(read(&path).lines().count(), 1);
        assert!(read(&path).starts_with("000000000000000000000000000000000000009"));
        assert!(read(&dir.path().join("siem.jsonl.1")).starts_with(&format!("{:039}", 6)));
        assert!(read(&dir.path().join("siem.jsonl.2")).starts_with(&format!("{:039}", 3)));
        assert!(!dir.path().join("siem.jsonl.3").exists(), "only two kept");
    }
}
