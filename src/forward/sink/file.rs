//! JSONL sinks: a file (appended to, rotated by size) and standard output.

use super::{encode_line, Delivery, Encoded, Sink, SinkError, SinkFuture};
use crate::config::FileSinkConfig;
use crate::forward::Document;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Rotation: once the file reaches `bytes`, it becomes `path.1` (and `path.1` becomes `path.2` ...,
/// keeping `keep` of them) and a new file is started.
#[derive(Debug, Clone, Copy)]
pub struct Rotation {
    pub bytes: u64,
    pub keep: usize,
}

struct Open {
    file: std::fs::File,
    /// Bytes in the current file.
    size: u64,
}

/// A file opened for appending (its folder created if needed), written from the async side through a
/// blocking thread: one `write_all` of the whole buffer (O_APPEND keeps it contiguous), then a flush to
/// the kernel; rotated by size if asked. Shared by the file sink and the file dead-letter destination.
#[derive(Clone)]
pub struct AppendFile {
    path: PathBuf,
    rotation: Option<Rotation>,
    file: Arc<parking_lot::Mutex<Open>>,
}

fn open_append(path: &Path) -> std::io::Result<Open> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let size = file.metadata()?.len();
    Ok(Open { file, size })
}

impl AppendFile {
    /// Opens (creating it and its folder if needed) `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Self::open_rotating(path, None)
    }

    /// [`Self::open`], rotating as `rotation` says.
    pub fn open_rotating(path: &Path, rotation: Option<Rotation>) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        Ok(AppendFile {
            path: path.to_owned(),
            rotation: rotation.filter(|r| r.bytes > 0 && r.keep > 0),
            file: Arc::new(parking_lot::Mutex::new(open_append(path)?)),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path.n`.
    fn numbered(&self, n: usize) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Appends `bytes` and flushes them to the kernel; rotates after if the file is full.
    pub async fn append(&self, bytes: Vec<u8>) -> std::io::Result<()> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut open = this.file.lock();
            open.file.write_all(&bytes)?;
            open.file.flush()?;
            open.size += bytes.len() as u64;
            match this.rotation {
                Some(r) if open.size >= r.bytes => {
                    for n in (1..r.keep).rev() {
                        let from = this.numbered(n);
                        if from.exists() {
                            std::fs::rename(&from, this.numbered(n + 1))?;
                        }
                    }
                    std::fs::rename(&this.path, this.numbered(1))?;
                    *open = open_append(&this.path)?;
                    Ok(())
                }
                _ => Ok(()),
            }
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

/// Appends JSON lines to a file; a batch is accepted once written and flushed to the kernel.
pub struct FileSink {
    name: String,
    file: AppendFile,
}

impl FileSink {
    /// Opens (creating it and its folder if needed) the configured file for appending.
    pub fn open(name: &str, config: &FileSinkConfig) -> std::io::Result<Self> {
        let rotation = Rotation {
            bytes: config.rotate_bytes,
            keep: config.rotate_keep,
        };
        Ok(FileSink {
            name: name.to_owned(),
            file: AppendFile::open_rotating(&config.path, Some(rotation))?,
        })
    }
}

impl Sink for FileSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn encode(&self, doc: &Document, out: &mut Vec<u8>) {
        encode_line(doc, out)
    }

    fn send<'a>(&'a self, batch: &'a Encoded<'a>) -> SinkFuture<'a> {
        Box::pin(async move {
            self.file
                .append(batch.body.to_vec())
                .await
                .map(|()| Delivery::Accepted)
                .map_err(|e| SinkError::new("io", format!("{}: {e}", self.file.path().display())))
        })
    }
}

/// Writes JSON lines to standard output.
pub struct StdoutSink {
    name: String,
}

impl StdoutSink {
    /// A stdout sink.
    pub fn new(name: &str) -> Self {
        StdoutSink {
            name: name.to_owned(),
        }
    }
}

impl Sink for StdoutSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn encode(&self, doc: &Document, out: &mut Vec<u8>) {
        encode_line(doc, out)
    }

    fn send<'a>(&'a self, batch: &'a Encoded<'a>) -> SinkFuture<'a> {
        let bytes = batch.body.to_vec();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut out = std::io::stdout().lock();
                out.write_all(&bytes).and_then(|_| out.flush())
            })
            .await
            .map_err(|e| SinkError::new("io", format!("writer task: {e}")))?
            .map(|()| Delivery::Accepted)
            .map_err(|e| SinkError::new("io", format!("stdout: {e}")))
        })
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
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        assert_eq!(read(&path).lines().count(), 1);
        assert!(read(&path).starts_with("000000000000000000000000000000000000009"));
        assert!(read(&dir.path().join("siem.jsonl.1")).starts_with(&format!("{:039}", 6)));
        assert!(read(&dir.path().join("siem.jsonl.2")).starts_with(&format!("{:039}", 3)));
        assert!(!dir.path().join("siem.jsonl.3").exists(), "only two kept");
    }
}
