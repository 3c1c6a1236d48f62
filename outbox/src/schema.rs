//! The database: opening it (WAL, `synchronous=FULL`, foreign keys, busy timeout) and the schema,
//! migrated one `user_version` step at a time. Never reads or writes a message row.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use crate::error::OutboxError;

/// The file name inside the data folder.
pub(crate) const DB_FILE: &str = "outbox.sqlite3";

/// Each step takes the schema from version `i` to `i + 1`; a step, once released, is never
/// edited — a change is a new step.
const MIGRATIONS: &[&str] = &[
    // 0 → 1: the first schema
    r#"
    CREATE TABLE messages (
        id              TEXT PRIMARY KEY,
        message_id      TEXT NOT NULL,
        idempotency_key TEXT UNIQUE,
        -- sha256 of what the submit said (payload, Message-ID, recipients, attachment names):
        -- a repeated key with another fingerprint is refused
        fingerprint     TEXT NOT NULL,
        payload         TEXT NOT NULL,
        state           TEXT NOT NULL
                        CHECK (state IN ('queued', 'sending', 'delivered', 'failed', 'held')),
        created_at      INTEGER NOT NULL,  -- ms since the Unix epoch, as every time here
        expires_at      INTEGER NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        locked_until    INTEGER,           -- the lease while `sending`
        failures        INTEGER NOT NULL DEFAULT 0,  -- temporary/uncertain tries: the backoff's exponent
        pinned_sender   TEXT,              -- set by an uncertain outcome
        finished_at     INTEGER,           -- when it became delivered or failed
        last_error      TEXT
    ) STRICT;
    CREATE INDEX messages_due ON messages (state, next_attempt_at);
    CREATE INDEX messages_finished ON messages (state, finished_at);

    CREATE TABLE attachments (
        message      TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        idx          INTEGER NOT NULL,
        name         TEXT NOT NULL,
        content_type TEXT NOT NULL,
        file         TEXT NOT NULL,  -- relative to spool/
        size         INTEGER NOT NULL,
        sha256       TEXT NOT NULL,
        PRIMARY KEY (message, idx)
    ) STRICT;

    CREATE TABLE recipients (
        message TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        idx     INTEGER NOT NULL,
        address TEXT NOT NULL,
        state   TEXT NOT NULL CHECK (state IN ('owed', 'accepted', 'refused')),
        detail  TEXT,
        PRIMARY KEY (message, idx),
        UNIQUE (message, address)
    ) STRICT;

    CREATE TABLE attempts (
        message        TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        number         INTEGER NOT NULL,
        at             INTEGER NOT NULL,
        sender         TEXT NOT NULL,
        outcome        TEXT NOT NULL
                       CHECK (outcome IN ('delivered', 'temporary', 'permanent', 'uncertain', 'interrupted')),
        detail         TEXT NOT NULL,
        retry_after_ms INTEGER,
        PRIMARY KEY (message, number)
    ) STRICT;
    "#,
    // 1 → 2: who holds a claim, so a claim of a process that is gone is given back at once
    r#"
    ALTER TABLE messages ADD COLUMN claimed_by TEXT;  -- while `sending`: the owner, `owners/<id>`
    "#,
];

/// The schema version this build writes.
pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;

/// Opens (creating) the database in `dir`, set up for durability, its schema migrated.
pub(crate) fn open(dir: &Path, busy_timeout: Duration) -> Result<Connection, OutboxError> {
    let db = |e| OutboxError::db(dir, e);
    let conn = Connection::open(dir.join(DB_FILE)).map_err(db)?;
    conn.busy_timeout(busy_timeout).map_err(db)?;
    // WAL: readers never block the writer. A WAL commit is durable only with synchronous=FULL
    // (NORMAL may lose the last commits on power loss).
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(db)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(OutboxError::Corrupt {
            dir: dir.to_path_buf(),
            what: format!("the database refused WAL mode (it is in {mode:?} mode)"),
        });
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(db)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
    migrate(dir, &conn)?;
    Ok(conn)
}

fn migrate(dir: &Path, conn: &Connection) -> Result<(), OutboxError> {
    let db = |e| OutboxError::db(dir, e);
    loop {
        // Read and step inside one IMMEDIATE transaction, so two processes opening a new folder
        // at once do not both run a step.
        conn.execute_batch("BEGIN IMMEDIATE").map_err(db)?;
        let step = (|| {
            let found: i64 = conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(db)?;
            if found > VERSION {
                return Err(OutboxError::NewerSchema {
                    dir: dir.to_path_buf(),
                    found,
                    known: VERSION,
                });
            }
            if found == VERSION {
                return Ok(false);
            }
            let sql = MIGRATIONS[usize::try_from(found).unwrap_or(0)];
            conn.execute_batch(sql).map_err(db)?;
            conn.pragma_update(None, "user_version", found + 1)
                .map_err(db)?;
            Ok(true)
        })();
        match step {
            Ok(again) => {
                conn.execute_batch("COMMIT").map_err(db)?;
                if !again {
                    return Ok(());
                }
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
    }
}
