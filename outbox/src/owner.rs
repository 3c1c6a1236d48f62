//! Who holds a claim. Each [`crate::Outbox`] handle registers itself as an owner: a file
//! `owners/<id>` in the data folder, locked exclusively for as long as the handle lives, and its
//! claims carry that id. The operating system drops the lock when the process ends, however it
//! ends (`kill -9`, a power cut, a panic), so another handle can tell a claim whose process is
//! gone from one still being delivered, and give it back at once instead of at the end of its
//! lease. Never touches the database: the caller holds the write lock around registration and
//! sweeping, so a sweep never removes the file of an owner being registered.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

use crate::spool::create_private_dir;

pub(crate) const OWNERS_DIR: &str = "owners";

/// This handle as an owner: its id and the locked file that says it is alive.
#[derive(Debug)]
pub(crate) struct Owner {
    pub(crate) id: String,
    path: PathBuf,
    /// Held, locked, until the handle is dropped.
    _file: File,
}

/// Whether the owner of a claim is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// Its file is locked: the handle (and its process) lives.
    Alive,
    /// No file, or a file nobody locks: the handle is gone, and so is any delivery it made.
    Gone,
    /// The lock cannot be asked here (a file system without locks, an unreadable folder): the
    /// claim's lease decides, as it would without owners.
    Unknown,
}

impl Owner {
    /// Registers a new owner in `data_dir/owners/`: a fresh id, its file created and locked.
    /// `None` where the file system cannot lock a file (said once per handle, as a warning):
    /// that handle's claims are then given back only when their lease ends.
    pub(crate) fn register(data_dir: &Path) -> io::Result<Option<Owner>> {
        let dir = data_dir.join(OWNERS_DIR);
        create_private_dir(&dir)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let path = dir.join(&id);
        let file = open(&path, true)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Owner {
                id,
                path,
                _file: file,
            })),
            Err(e) => {
                let _ = fs::remove_file(&path);
                tracing::warn!(
                    folder = %dir.display(),
                    error = %e,
                    "outbox: cannot lock a file in this folder; a claim of a process that stops is given back only when its lease ends"
                );
                Ok(None)
            }
        }
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        // Removed while still locked: whoever looks next finds no file, which also says gone.
        let _ = fs::remove_file(&self.path);
    }
}

/// Whether owner `id` of the data folder `data_dir` is alive. A malformed id (a row edited by
/// hand) is [`Liveness::Unknown`]: it never names a path outside `owners/`.
pub(crate) fn liveness(data_dir: &Path, id: &str) -> Liveness {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Liveness::Unknown;
    }
    let path = data_dir.join(OWNERS_DIR).join(id);
    let file = match open(&path, false) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Liveness::Gone,
        Err(_) => return Liveness::Unknown,
    };
    match file.try_lock() {
        // Taken: nobody held it. Dropping the file releases it again.
        Ok(()) => Liveness::Gone,
        Err(TryLockError::WouldBlock) => Liveness::Alive,
        Err(TryLockError::Error(_)) => Liveness::Unknown,
    }
}

/// Removes the files of owners that are gone (what a process that did not end cleanly leaves),
/// except those `keep` names; returns how many. Called under the database's write lock.
pub(crate) fn sweep(data_dir: &Path, keep: impl Fn(&str) -> bool) -> usize {
    let Ok(entries) = fs::read_dir(data_dir.join(OWNERS_DIR)) else {
        return 0;
    };
    let mut swept = 0;
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if keep(&name) || liveness(data_dir, &name) != Liveness::Gone {
            continue;
        }
        if fs::remove_file(entry.path()).is_ok() {
            swept += 1;
        }
    }
    swept
}

fn open(path: &Path, create: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    if create {
        options.create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
    }
    options.open(path)
}
