//! The outbox's errors: each one says what to fix. Never carries an email's payload or a server's
//! words (those are in the attempt rows, already redacted by the caller).

use std::io;
use std::path::{Path, PathBuf};

use crate::model::State;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The disk (or the user's quota) is full, while copying attachments or committing.
    #[error("no space left in {}: free space or move --data-dir", dir.display())]
    NoSpace { dir: PathBuf },
    /// Writing or syncing a spool file failed for another reason than a full disk.
    #[error("cannot write the outbox's spool file {}: {source}", path.display())]
    SpoolWrite { path: PathBuf, source: io::Error },
    #[error("attachment {name:?}: cannot read {}: {source}", path.display())]
    AttachmentUnreadable {
        name: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("attachment {name:?}: {} is not a regular file", path.display())]
    AttachmentNotAFile { name: String, path: PathBuf },
    #[error(
        "the email's attachments are over the outbox's bound of {limit} bytes \
         (at least {size}): send smaller files or raise the bound"
    )]
    TooLarge { size: u64, limit: u64 },
    #[error(
        "idempotency key {key:?} was already used by {id} for a different email: \
         use a new key for a new email"
    )]
    KeyReused { key: String, id: String },
    /// The submission itself is wrong (no recipient, a bad Message-ID, an empty name).
    #[error("invalid submission: {0}")]
    Invalid(String),
    #[error("no email {id} in the outbox")]
    NotFound { id: String },
    #[error("email {id} is {state}: {hint}")]
    WrongState {
        id: String,
        state: State,
        hint: &'static str,
    },
    #[error("cannot create or open the data folder {}: {source}", dir.display())]
    DataDir { dir: PathBuf, source: io::Error },
    #[error(
        "the outbox in {} has schema version {found}, newer than this build's {known}: \
         use a newer scan2x-mail",
        dir.display()
    )]
    NewerSchema {
        dir: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("the outbox database in {}: {source}", dir.display())]
    Database {
        dir: PathBuf,
        source: rusqlite::Error,
    },
    /// A row the outbox wrote cannot be read back (edited by hand, or a bug).
    #[error("the outbox database in {} holds an unreadable row: {what}", dir.display())]
    Corrupt { dir: PathBuf, what: String },
}

impl OutboxError {
    /// A database error in the outbox at `dir`; SQLite's "disk full" is [`OutboxError::NoSpace`].
    pub(crate) fn db(dir: &Path, source: rusqlite::Error) -> Self {
        if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
            return Self::NoSpace {
                dir: dir.to_path_buf(),
            };
        }
        Self::Database {
            dir: dir.to_path_buf(),
            source,
        }
    }

    /// A write error under `dir`: a full disk or quota is [`OutboxError::NoSpace`].
    pub(crate) fn write(dir: &Path, path: &Path, source: io::Error) -> Self {
        if is_no_space(&source) {
            return Self::NoSpace {
                dir: dir.to_path_buf(),
            };
        }
        Self::SpoolWrite {
            path: path.to_path_buf(),
            source,
        }
    }

    /// True when the error is the disk (or quota) being full.
    pub fn is_no_space(&self) -> bool {
        matches!(self, Self::NoSpace { .. })
    }
}

pub(crate) fn is_no_space(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_while_writing_says_where_and_what_to_do() {
        for kind in [io::ErrorKind::StorageFull, io::ErrorKind::QuotaExceeded] {
            let e = OutboxError::write(
                Path::new("/var/lib/x"),
                Path::new("/var/lib/x/spool/1/0"),
                io::Error::from(kind),
            );
            assert!(e.is_no_space());
            assert_eq!(
                e.to_string(),
                "no space left in /var/lib/x: free space or move --data-dir"
            );
        }
        let other = OutboxError::write(
            Path::new("/d"),
            Path::new("/d/spool/1/0"),
            io::Error::other("EIO"),
        );
        assert!(matches!(other, OutboxError::SpoolWrite { .. }));
    }

    #[test]
    fn sqlite_disk_full_is_no_space_too() {
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        );
        assert!(OutboxError::db(Path::new("/d"), full).is_no_space());
    }
}
