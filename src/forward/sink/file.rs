//! JSONL sinks: a file (appended to) and standard output.

use super::{encode_jsonl, Sink, SinkError, SinkFuture};
use crate::forward::Document;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A file opened for appending (its folder created if needed), written from the async side through a
/// blocking thread: one `write_all` of the whole buffer (O_APPEND keeps it contiguous), then a flush to
/// the kernel. Shared by the file sink and the file dead-letter destination.
#[derive(Clone)]
pub struct AppendFile {
    path: PathBuf,
    file: Arc<parking_lot::Mutex<std::fs::File>>,
}

impl AppendFile {
    /// Opens (creating it and its folder if needed) `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(AppendFile {
            path: path.to_owned(),
            file: Arc::new(parking_lot::Mutex::new(file)),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `bytes` and flushes them to the kernel.
    pub async fn append(&self, bytes: Vec<u8>) -> std::io::Result<()> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            let mut f = file.lock();
            f.write_all(&bytes).and_then(|_| f.flush())
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
    /// Opens (creating it and its folder if needed) `path` for appending.
    pub fn open(name: &str, path: &Path) -> std::io::Result<Self> {
        Ok(FileSink {
            name: name.to_owned(),
            file: AppendFile::open(path)?,
        })
    }
}

impl Sink for FileSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a self, batch: &'a [Document]) -> SinkFuture<'a> {
        let bytes = encode_jsonl(batch);
        Box::pin(async move {
            self.file
                .append(bytes)
                .await
                .map_err(|e| SinkError::Retriable(format!("{}: {e}", self.file.path().display())))
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

    fn send<'a>(&'a self, batch: &'a [Document]) -> SinkFuture<'a> {
        let bytes = encode_jsonl(batch);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut out = std::io::stdout().lock();
                out.write_all(&bytes).and_then(|_| out.flush())
            })
            .await
            .map_err(|e| SinkError::Retriable(format!("writer task: {e}")))?
            .map_err(|e| SinkError::Retriable(format!("stdout: {e}")))
        })
    }
}
