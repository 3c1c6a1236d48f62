//! The durable outbox of scan2x-mail: emails stored on disk until a sender has carried them,
//! every attempt recorded, delivery called through a small trait ([`Deliver`]). It stores and
//! schedules; it never chooses a sender, never talks to a server, and never depends on the host
//! crate or the wasm runtime (the host depends on it).
//!
//! | file | owns |
//! |---|---|
//! | `store.rs` | [`Outbox`]: open, submit, claim, record, list/show, retry/hold/release/delete/purge |
//! | `schema.rs` | the SQLite database: WAL, `synchronous=FULL`, the schema and its `user_version` steps |
//! | `spool.rs` | attachments copied into `spool/<id>/<n>` and synced; orphans swept; folders removed |
//! | `owner.rs` | who holds a claim: each handle's locked file in `owners/`, alive or gone |
//! | `policy.rs` | [`RetryPolicy`]: backoff, Retry-After floor, lifetime (pure arithmetic) |
//! | `attempt.rs` | [`Attempt`], [`Outcome`], per-recipient verdicts: what a delivery says |
//! | `model.rs` | [`Submission`], [`Claimed`], [`State`], [`Summary`], [`Detail`], [`Options`] |
//! | `deliver.rs` | the [`Deliver`] trait and [`Outbox::flush`] |
//! | `clock.rs` | [`Clock`]: the only source of "now" ([`ManualClock`] for tests) |
//! | `error.rs` | [`OutboxError`]: each error says what to fix |
//!
//! # The data folder
//!
//! `Outbox::open(dir)` creates `dir` (0700 on Unix) with `outbox.sqlite3` (and its `-wal`,
//! `-shm`), `spool/` and `owners/`. Several handles, in one process or several, may open the same folder:
//! every write is one `BEGIN IMMEDIATE` transaction, so they take turns and no email is claimed
//! twice.
//!
//! # Durability
//!
//! `submit` returns once the email is durable, in this order, under the database's write lock:
//! 1. each attachment is copied into `spool/<id>/<n>` (created exclusively, 0600) and fsynced;
//!    then `spool/<id>/` and `spool/` are fsynced (on Unix; elsewhere there is no folder sync);
//! 2. the rows (message, attachments, recipients) are inserted and committed; with WAL and
//!    `synchronous=FULL` the commit is fsynced before it returns.
//!
//! A crash between 1 and 2 leaves spool files no row names: `open` sweeps them (under the write
//! lock, so never a concurrent submit's). It never leaves a row without its files. A failed copy
//! (unreadable source, a folder, over [`Options::max_message_bytes`], disk full) removes what it
//! wrote and commits nothing. Removal goes the other way: `delete` and `purge_delivered` commit
//! the row's removal, then remove the files (a crash between leaves an orphan, swept).
//!
//! # States and policies
//!
//! `queued` → `claim_due` → `sending` (a lease, `locked_until` = now + [`Options::lease`]) →
//! `record`:
//! - **delivered** once no recipient is owed (recipients a server accepted are never sent
//!   again; a `Delivered` outcome accepts every owed recipient it did not report refused).
//! - **temporary** → `queued` after the backoff: 5 min doubling to 1 h
//!   ([`RetryPolicy`]), never before the server's Retry-After. A wait reaching past the lifetime
//!   (default 5 days from submit) is cut to one last try at its end; a Retry-After past it, or a
//!   failure at or after it, is `failed`.
//! - **permanent** → `failed` at once. Recipients refused for good are `refused` and not sent
//!   again; if every recipient is refused, the email is `failed`.
//! - **uncertain** (handed over, the answer lost) → retried after the normal backoff, with the
//!   same Message-ID (it is fixed at submit for every attempt), **pinned to the same sender**:
//!   [`Claimed::pinned_sender`] is set and the deliverer must not fail over to another sender.
//!   A pin is never moved (the first uncertain sender stays). It is not held for the
//!   administrator, who can still `hold` it.
//! - **crash**: a claim whose handle is gone (the process delivering it stopped, even by
//!   `kill -9`) returns to `queued`, due at once, with an `interrupted` attempt — at the next
//!   `open` or claim of any handle on the folder, without waiting for its lease. So does a claim
//!   whose lease ran out (its handle overran it). It is then delivered once; the only window for
//!   a duplicate is between a server's final acceptance and the commit that records it.
//!
//! # Who holds a claim
//!
//! Each handle registers itself at `open` as an owner: `owners/<id>` in the data folder, a file
//! it keeps locked (`flock`, `LockFileEx`) for as long as it lives, and each claim it makes
//! carries that id (`claimed_by`). The operating system drops a lock when its process ends,
//! however it ends, so a claim whose owner's file is unlocked or missing belongs to a process
//! that is gone, and nothing of its delivery can still be running. A claim of a live handle is
//! left alone until its lease ends. Dropping a handle gives its claims up too (its file is
//! removed): record through the handle that claimed. `open` removes the files of owners that are
//! gone. Where the file system cannot lock, the handle says so once and its claims come back
//! only when their lease ends. Never delete `owners/` under a running process: its claims
//! would be given back while it still delivers them.
//!
//! Every attempt is a row: time, sender, outcome, detail, Retry-After; senders a failover passed
//! over in the same delivery ([`Attempt::passed_over`]) are `temporary` rows before it, counted
//! once in the backoff. The detail is stored as
//! the caller gives it (cut at 4000 characters): **the caller redacts it** (the host's redactor)
//! before it reaches the outbox.
//!
//! Administration: [`Outbox::list`], [`Outbox::show`], [`Outbox::retry`] (a fresh lifetime and
//! backoff; recipients refused for good owed again), [`Outbox::retry_failed`], [`Outbox::hold`],
//! [`Outbox::release`], [`Outbox::delete`], [`Outbox::make_all_due`] + [`Outbox::flush`] (`queue
//! flush`), [`Outbox::purge_delivered`] (the retention period).
//!
//! # Calls block
//!
//! Every method but `flush` is synchronous: one short SQLite transaction, and for `submit` the
//! copy and fsync of its attachments. From async code the host calls them through
//! `spawn_blocking` (or accepts the short block); `flush` awaits only the deliverer.
//!
//! # Why its own tables, not a job library
//!
//! What the outbox keeps is domain data — attempts with the servers' words, per-recipient
//! states, idempotency keys with fingerprints, spool files whose order against the commit is the
//! durability rule, a pinned sender. A job queue (apalis, whose 1.0 is in release candidates)
//! would keep a job row beside these tables and own only the claim, which is one `UPDATE` under
//! a lease here; the same shape (`locked_until`, reclaiming expired leases) moves to PostgreSQL
//! later with `FOR UPDATE SKIP LOCKED`.
//!
//! Not here yet: per-sender limits (concurrent deliveries, `max_per_minute`), concurrent
//! deliveries in `flush`, a PostgreSQL backend. The host uses it in its `queue` module (the
//! CLI's `submit` and `queue`) and its `serve` module (the local API and the delivery worker).

mod attempt;
mod clock;
mod deliver;
mod error;
mod model;
mod owner;
mod policy;
mod schema;
mod spool;
mod store;

pub use attempt::{Attempt, Outcome, PassedOver, RecipientResult, RecipientVerdict};
pub use clock::{Clock, ManualClock, SystemClock};
pub use deliver::{Deliver, FlushReport, Flushed};
pub use error::OutboxError;
pub use model::{
    AttachmentSource, AttemptRecord, Claimed, Detail, Options, RecipientRecord, RecipientState,
    SpooledAttachment, State, Submission, Submitted, Summary,
};
pub use policy::RetryPolicy;
pub use store::Outbox;
