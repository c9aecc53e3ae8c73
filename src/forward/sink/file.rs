//! JSONL sinks: a file (appended to) and standard output.

use super::{encode_jsonl, Sink, SinkError, SinkFuture};
use crate::forward::Document;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Appends JSON lines to a file; a batch is accepted once written and flushed to the kernel.
pub struct FileSink {
    name: String,
    path: PathBuf,
    file: Arc<parking_lot::Mutex<std::fs::File>>,
}

impl FileSink {
    /// Opens (creating it and its folder if needed) `path` for appending.
    pub fn open(name: &str, path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(FileSink {
            name: name.to_owned(),
            path: path.to_owned(),
            file: Arc::new(parking_lot::Mutex::new(file)),
        })
    }
}

impl Sink for FileSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a self, batch: &'a [Document]) -> SinkFuture<'a> {
        let bytes = encode_jsonl(batch);
        let file = self.file.clone();
        let path = self.path.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut f = file.lock();
                // One write of the whole batch: O_APPEND keeps it contiguous.
                f.write_all(&bytes).and_then(|_| f.flush())
            })
            .await
            .map_err(|e| SinkError::Retriable(format!("writer task: {e}")))?
            .map_err(|e| SinkError::Retriable(format!("{}: {e}", path.display())))
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
