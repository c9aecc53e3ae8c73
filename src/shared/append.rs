//! A file opened for appending, written from the async side: the file sink and the file dead letters
//! share it.

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
