//! The spool: each email's attachments copied into `spool/<id>/<n>`, written, fsynced, their
//! folders fsynced — all before the row that names them commits. Also sweeps the folders no row
//! names (what a crash between the two leaves) and removes an email's folder. Never touches the
//! database: the caller holds the write lock around what it calls here.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::OutboxError;
use crate::model::AttachmentSource;

pub(crate) const SPOOL_DIR: &str = "spool";

/// A file copied into the spool, as its row will record it.
pub(crate) struct Copied {
    /// Relative to the spool folder: `<id>/<n>`.
    pub(crate) file: String,
    pub(crate) size: u64,
    pub(crate) sha256: String,
}

pub(crate) struct Spool {
    /// The data folder (named in "no space left" errors).
    data_dir: PathBuf,
    root: PathBuf,
}

impl Spool {
    /// The spool of the data folder `data_dir`, created (0700) when missing.
    pub(crate) fn open(data_dir: &Path) -> Result<Self, OutboxError> {
        let root = data_dir.join(SPOOL_DIR);
        create_private_dir(&root).map_err(|source| OutboxError::DataDir {
            dir: root.clone(),
            source,
        })?;
        Ok(Self {
            data_dir: data_dir.to_path_buf(),
            root,
        })
    }

    pub(crate) fn path(&self, file: &str) -> PathBuf {
        self.root.join(file)
    }

    /// Copies the attachments into `spool/<id>/`, at most `limit` bytes in all, and syncs the
    /// files and both folders. On any error the folder is removed: nothing half-written stays
    /// (and if even the removal fails, the next `open` sweeps it, as no row names it).
    pub(crate) fn write(
        &self,
        id: &str,
        attachments: &[AttachmentSource],
        limit: u64,
    ) -> Result<Vec<Copied>, OutboxError> {
        if attachments.is_empty() {
            return Ok(Vec::new());
        }
        let dir = self.root.join(id);
        let result = self.write_into(&dir, id, attachments, limit);
        if result.is_err() {
            let _ = fs::remove_dir_all(&dir);
        }
        result
    }

    fn write_into(
        &self,
        dir: &Path,
        id: &str,
        attachments: &[AttachmentSource],
        limit: u64,
    ) -> Result<Vec<Copied>, OutboxError> {
        let write_err = |path: &Path, e: io::Error| OutboxError::write(&self.data_dir, path, e);
        create_private_dir(dir).map_err(|e| write_err(dir, e))?;
        let mut total = 0u64;
        let mut copied = Vec::with_capacity(attachments.len());
        for (n, a) in attachments.iter().enumerate() {
            let unreadable = |source| OutboxError::AttachmentUnreadable {
                name: a.name.clone(),
                path: a.path.clone(),
                source,
            };
            let mut src = File::open(&a.path).map_err(unreadable)?;
            let meta = src.metadata().map_err(unreadable)?;
            if !meta.is_file() {
                return Err(OutboxError::AttachmentNotAFile {
                    name: a.name.clone(),
                    path: a.path.clone(),
                });
            }
            if total.saturating_add(meta.len()) > limit {
                return Err(OutboxError::TooLarge {
                    size: total.saturating_add(meta.len()),
                    limit,
                });
            }
            let file = format!("{id}/{n}");
            let dest_path = self.root.join(&file);
            let mut dest = create_private_file(&dest_path).map_err(|e| write_err(&dest_path, e))?;
            let mut hash = Sha256::new();
            let mut buf = vec![0u8; 64 * 1024];
            let mut size = 0u64;
            loop {
                let got = match src.read(&mut buf) {
                    Ok(0) => break,
                    Ok(got) => got,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(unreadable(e)),
                };
                size += got as u64;
                // The file may have grown since its metadata was read: the bound holds on bytes.
                if total.saturating_add(size) > limit {
                    return Err(OutboxError::TooLarge {
                        size: total.saturating_add(size),
                        limit,
                    });
                }
                hash.update(&buf[..got]);
                dest.write_all(&buf[..got])
                    .map_err(|e| write_err(&dest_path, e))?;
            }
            dest.sync_all().map_err(|e| write_err(&dest_path, e))?;
            total += size;
            copied.push(Copied {
                file,
                size,
                sha256: hex::encode(hash.finalize()),
            });
        }
        sync_dir(dir).map_err(|e| write_err(dir, e))?;
        sync_dir(&self.root).map_err(|e| write_err(&self.root, e))?;
        Ok(copied)
    }

    /// Removes `spool/<id>/` (missing is fine).
    pub(crate) fn remove(&self, id: &str) -> io::Result<()> {
        match fs::remove_dir_all(self.root.join(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes every entry of the spool for which `has_row` says no row names it; returns how
    /// many. The caller holds the database's write lock, so no submit is between its copy and
    /// its commit meanwhile (a submit copies under that lock).
    pub(crate) fn sweep(
        &self,
        mut has_row: impl FnMut(&str) -> Result<bool, OutboxError>,
    ) -> Result<usize, OutboxError> {
        let read = |e| OutboxError::DataDir {
            dir: self.root.clone(),
            source: e,
        };
        let mut swept = 0;
        for entry in fs::read_dir(&self.root).map_err(read)? {
            let entry = entry.map_err(read)?;
            let name = entry.file_name();
            let keep = match name.to_str() {
                Some(id) => has_row(id)?,
                None => false,
            };
            if keep {
                continue;
            }
            let path = entry.path();
            let removed = if entry.file_type().map_err(read)?.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match removed {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "outbox: removed a spool entry no email names (left by a crash)");
                    swept += 1;
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "outbox: cannot remove an orphan spool entry")
                }
            }
        }
        if swept > 0 {
            let _ = sync_dir(&self.root);
        }
        Ok(swept)
    }
}

/// Creates `dir` (and its parents) when missing, and makes it 0700 on Unix.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir)?.permissions().mode() & 0o777;
        if mode != 0o700 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        }
    }
    Ok(())
}

fn create_private_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Makes a folder's entries (files created, removed) durable. On Unix a folder is fsynced
/// through an open handle; elsewhere there is no such call, and NTFS journals its metadata.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}
