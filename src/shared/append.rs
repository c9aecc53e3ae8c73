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
    /// Whether the last rotation failed (logged once, until one succeeds).
    rotation_failed: bool,
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

/// The mode of the files: they hold forwarded records or dead letters, for the daemon's user only.
pub const FILE_MODE: u32 = 0o600;

/// Opens `path` for appending, created with [`FILE_MODE`]; an existing file that others may read or
/// write is restricted to it (failing if that cannot be done: the records are not written to a file
/// others can read).
fn open_append(path: &Path) -> std::io::Result<Open> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    let file = options.open(path)?;
    let metadata = file.metadata()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if metadata.permissions().mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
                .map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!(
                            "{} is readable by others and its mode cannot be set to {FILE_MODE:o}: {e}",
                            path.display()
                        ),
                    )
                })?;
        }
    }
    Ok(Open {
        file,
        size: metadata.len(),
        rotation_failed: false,
    })
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
    ///
    /// A write that fails part way (a full disk) is cut back off the file, so that the file never
    /// holds a torn line and the retry of the whole buffer repeats nothing. Once the bytes are written
    /// they are kept whatever happens next: a rotation that fails is logged and tried again at the next
    /// append, and does not fail this one (which would write it twice).
    pub async fn append(&self, bytes: Vec<u8>) -> std::io::Result<()> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut open = this.file.lock();
            if let Err(error) = open.file.write_all(&bytes).and_then(|()| open.file.flush()) {
                let size = open.size;
                if let Err(cut) = open.file.set_len(size) {
                    tracing::error!(path = %this.path.display(), %error, %cut,
                        "a failed write could not be cut back: the file may hold a partial line");
                }
                return Err(error);
            }
            open.size += bytes.len() as u64;
            match this.rotation {
                Some(r) if open.size >= r.bytes => {
                    let failed = this.rotate(&mut open, r).err();
                    if let Some(error) = &failed {
                        if !open.rotation_failed {
                            tracing::warn!(path = %this.path.display(), %error,
                                "the file could not be rotated; it grows until a rotation succeeds");
                        }
                    } else if open.rotation_failed {
                        tracing::info!(path = %this.path.display(), "the file rotates again");
                    }
                    open.rotation_failed = failed.is_some();
                    Ok(())
                }
                _ => Ok(()),
            }
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// Renames `path` to `path.1` (after shifting the older ones up) and starts a new file.
    fn rotate(&self, open: &mut Open, r: Rotation) -> std::io::Result<()> {
        for n in (1..r.keep).rev() {
            let from = self.numbered(n);
            if from.exists() {
                std::fs::rename(&from, self.numbered(n + 1))?;
            }
        }
        std::fs::rename(&self.path, self.numbered(1))?;
        let rotation_failed = open.rotation_failed;
        *open = open_append(&self.path)?;
        open.rotation_failed = rotation_failed;
        Ok(())
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn files_are_for_the_daemons_user_only_rotated_ones_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("siem/records.jsonl");
        let file = AppendFile::open_rotating(&path, Some(Rotation { bytes: 4, keep: 2 })).unwrap();
        assert_eq!(mode(&path), FILE_MODE);
        file.append(b"12345".to_vec()).await.unwrap();
        assert_eq!(mode(&path.with_extension("jsonl.1")), FILE_MODE);
        assert_eq!(mode(&path), FILE_MODE);
        // A file that was there, open to others, is closed to them.
        let old = dir.path().join("old.jsonl");
        std::fs::write(&old, b"x").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        AppendFile::open(&old).unwrap();
        assert_eq!(mode(&old), FILE_MODE);
    }
}
