//! The [`Outbox`]: submit, claim, record, and the administrator's operations, each one SQLite
//! transaction (IMMEDIATE where it writes, so two processes on one folder take turns). Never
//! interprets the payload and never delivers: delivery is the caller's, through `deliver`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use sha2::{Digest, Sha256};

use crate::attempt::{Attempt, Outcome, RecipientVerdict};
use crate::clock::{Clock, SystemClock, dur_ms, from_ms, to_ms};
use crate::error::OutboxError;
use crate::model::{
    AttemptRecord, Claimed, Detail, Options, RecipientRecord, RecipientState, SpooledAttachment,
    State, Submission, Submitted, Summary,
};
use crate::owner::{self, Liveness, Owner};
use crate::policy::{Next, next_attempt};
use crate::schema;
use crate::spool::{Spool, create_private_dir};

type Result<T> = std::result::Result<T, OutboxError>;

/// The longest detail an attempt row keeps (characters); a longer one is cut.
const MAX_DETAIL_CHARS: usize = 4000;

/// A durable outbox in one data folder. One handle per process is enough (it serialises its own
/// calls); several handles, in one process or several, may share a folder.
pub struct Outbox {
    dir: PathBuf,
    conn: Mutex<Connection>,
    spool: Spool,
    clock: Arc<dyn Clock>,
    options: Options,
    /// This handle as the owner of its claims (`owners/<id>`, locked while it lives); `None`
    /// where the file system cannot lock, and then only the lease gives a claim back.
    owner: Option<Owner>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// Opens (creating) the outbox in `dir` with the default [`Options`] and the system clock.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(dir, Options::default(), Arc::new(SystemClock))
    }

    /// Opens (creating) the outbox in `dir`: the folder (0700 on Unix), `outbox.sqlite3` (WAL,
    /// `synchronous=FULL`, migrated), `spool/`, and this handle's file in `owners/` (locked while
    /// the handle lives). Then sweeps spool entries no row names (a crash between a copy and its
    /// commit) and the files of owners that are gone, and gives back to the queue every claim
    /// whose handle is gone or whose lease is over (a crash during a delivery).
    pub fn open_with(
        dir: impl AsRef<Path>,
        options: Options,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        create_private_dir(&dir).map_err(|source| OutboxError::DataDir {
            dir: dir.clone(),
            source,
        })?;
        let spool = Spool::open(&dir)?;
        let conn = schema::open(&dir, options.busy_timeout)?;
        let mut outbox = Self {
            dir,
            conn: Mutex::new(conn),
            spool,
            clock,
            options,
            owner: None,
        };
        // Under the write lock, so another process's sweep never sees this file before it is
        // locked.
        outbox.owner = outbox.write(|tx| {
            let owner = Owner::register(tx.dir).map_err(|source| OutboxError::DataDir {
                dir: tx.dir.join(owner::OWNERS_DIR),
                source,
            })?;
            let mine = owner.as_ref().map(|o| o.id.clone());
            owner::sweep(tx.dir, |name| Some(name) == mine.as_deref());
            Ok(owner)
        })?;
        outbox.sweep_spool()?;
        let now = outbox.now_ms();
        outbox.write(|tx| requeue_abandoned(tx, now))?;
        Ok(outbox)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    pub(crate) fn clock_now(&self) -> std::time::SystemTime {
        self.clock.now()
    }

    fn now_ms(&self) -> i64 {
        to_ms(self.clock.now())
    }

    fn db(&self) -> impl Fn(rusqlite::Error) -> OutboxError + '_ {
        |e| OutboxError::db(&self.dir, e)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic in another call cannot leave a transaction open: rusqlite rolls back on drop.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` in one IMMEDIATE transaction (the write lock taken at BEGIN) and commits it.
    fn write<T>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.db())?;
        let out = f(&Tx {
            tx: &tx,
            dir: &self.dir,
            spool: &self.spool,
            owner: self.owner.as_ref().map(|o| o.id.as_str()),
        })?;
        tx.commit().map_err(self.db())?;
        Ok(out)
    }

    /// Runs `f` in a read transaction (one consistent snapshot).
    fn read<T>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(self.db())?;
        let out = f(&Tx {
            tx: &tx,
            dir: &self.dir,
            spool: &self.spool,
            owner: self.owner.as_ref().map(|o| o.id.as_str()),
        })?;
        tx.commit().map_err(self.db())?;
        Ok(out)
    }

    fn sweep_spool(&self) -> Result<usize> {
        self.write(|tx| {
            self.spool.sweep(|name| {
                tx.tx
                    .query_row("SELECT 1 FROM messages WHERE id = ?1", [name], |_| Ok(()))
                    .optional()
                    .map(|found| found.is_some())
                    .map_err(tx.db())
            })
        })
    }

    /// Stores an email; returns once it is durable (its attachments copied and synced, then its
    /// row committed and synced). With an idempotency key already used, returns the first
    /// submit's id with `duplicate: true` and copies nothing.
    pub fn submit(&self, sub: Submission) -> Result<Submitted> {
        let recipients = validate(&sub)?;
        let fingerprint = fingerprint(&sub, &recipients);
        let now = self.now_ms();
        let lifetime = sub.lifetime.unwrap_or(self.options.retry.lifetime);
        let expires_at = now.saturating_add(dur_ms(lifetime));
        let mut conn = self.lock();
        // The write lock is taken before the copy: a sweep in another process waits for this
        // commit, and a repeated key in another process waits and then sees this row.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.db())?;
        if let Some(key) = &sub.idempotency_key {
            let first: Option<(String, String, String)> = tx
                .query_row(
                    "SELECT id, message_id, fingerprint FROM messages WHERE idempotency_key = ?1",
                    [key],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(self.db())?;
            if let Some((id, message_id, first_fingerprint)) = first {
                if first_fingerprint != fingerprint {
                    return Err(OutboxError::KeyReused {
                        key: key.clone(),
                        id,
                    });
                }
                return Ok(Submitted {
                    id,
                    message_id,
                    duplicate: true,
                });
            }
        }
        let id = uuid::Uuid::new_v4().to_string();
        let message_id = sub
            .message_id
            .clone()
            .unwrap_or_else(|| format!("<{}@scan2x-mail.invalid>", uuid::Uuid::new_v4().simple()));
        // 1. the spool files, written and synced, and their folders synced
        let copied = self
            .spool
            .write(&id, &sub.attachments, self.options.max_message_bytes)?;
        // 2. the rows, committed (synchronous=FULL: synced)
        let rows = (|| -> Result<()> {
            let db = self.db();
            tx.execute(
                "INSERT INTO messages (id, message_id, idempotency_key, fingerprint, payload, state,
                     created_at, expires_at, next_attempt_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7, ?6)",
                params![
                    id,
                    message_id,
                    sub.idempotency_key,
                    fingerprint,
                    sub.payload.to_string(),
                    now,
                    expires_at
                ],
            )
            .map_err(&db)?;
            for (n, (a, c)) in sub.attachments.iter().zip(&copied).enumerate() {
                tx.execute(
                    "INSERT INTO attachments (message, idx, name, content_type, file, size, sha256)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        id,
                        n as i64,
                        a.name,
                        a.content_type,
                        c.file,
                        c.size as i64,
                        c.sha256
                    ],
                )
                .map_err(&db)?;
            }
            for (n, address) in recipients.iter().enumerate() {
                tx.execute(
                    "INSERT INTO recipients (message, idx, address, state) VALUES (?1, ?2, ?3, 'owed')",
                    params![id, n as i64, address],
                )
                .map_err(&db)?;
            }
            Ok(())
        })();
        let committed = rows.and_then(|()| tx.commit().map_err(self.db()));
        if let Err(e) = committed {
            if let Err(rm) = self.spool.remove(&id) {
                tracing::warn!(id, error = %rm, "outbox: cannot remove the spool of a failed submit; the next open sweeps it");
            }
            return Err(e);
        }
        Ok(Submitted {
            id,
            message_id,
            duplicate: false,
        })
    }

    /// Claims up to `limit` emails due now: each becomes `sending` under a lease of
    /// [`Options::lease`], owned by this handle, in one transaction, so no other claimant
    /// (thread or process) gets it. Claims whose handle is gone or whose lease is over are given
    /// back to the queue first.
    pub fn claim_due(&self, limit: usize) -> Result<Vec<Claimed>> {
        let now = self.now_ms();
        self.claim(now, now, limit)
    }

    /// Claims emails due at or before `cutoff` (ms), the lease counted from `now` (ms).
    pub(crate) fn claim(&self, now: i64, cutoff: i64, limit: usize) -> Result<Vec<Claimed>> {
        let lease_end = now.saturating_add(dur_ms(self.options.lease));
        self.write(|tx| {
            requeue_abandoned(tx, now)?;
            let ids: Vec<String> = {
                let mut stmt = tx
                    .tx
                    .prepare(
                        "SELECT id FROM messages WHERE state = 'queued' AND next_attempt_at <= ?1
                         ORDER BY next_attempt_at, created_at LIMIT ?2",
                    )
                    .map_err(tx.db())?;
                stmt.query_map(params![cutoff.min(now), limit as i64], |r| r.get(0))
                    .map_err(tx.db())?
                    .collect::<rusqlite::Result<_>>()
                    .map_err(tx.db())?
            };
            let mut claimed = Vec::with_capacity(ids.len());
            for id in ids {
                tx.tx
                    .execute(
                        "UPDATE messages SET state = 'sending', locked_until = ?2, claimed_by = ?3
                         WHERE id = ?1",
                        params![id, lease_end, tx.owner],
                    )
                    .map_err(tx.db())?;
                claimed.push(tx.claimed(&id, lease_end)?);
            }
            Ok(claimed)
        })
    }

    /// Records one attempt on email `id` and moves it on; returns its new state.
    ///
    /// The attempt row and the recipients' verdicts are always stored. Then, for an email still
    /// `sending` (or `queued`, its lease over): delivered when no recipient is owed any more;
    /// `failed` on a permanent outcome or past its lifetime; otherwise queued again after the
    /// backoff (never before a Retry-After), and pinned to the sender on an uncertain outcome.
    /// A `Delivered` outcome is applied whatever the state (the email did go out).
    pub fn record(&self, id: &str, attempt: Attempt) -> Result<State> {
        let now = self.now_ms();
        let policy = self.options.retry.clone();
        self.write(|tx| {
            let db = tx.db();
            let row: Option<(String, u32, i64, Option<String>)> = tx
                .tx
                .query_row(
                    "SELECT state, failures, expires_at, pinned_sender FROM messages WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()
                .map_err(&db)?;
            let Some((state, failures, expires_at, pinned)) = row else {
                return Err(OutboxError::NotFound { id: id.to_string() });
            };
            let state = tx.state(&state)?;
            let outcome = &attempt.outcome;
            let retry_after = match outcome {
                Outcome::Temporary { retry_after, .. } => *retry_after,
                _ => None,
            };
            // Senders a failover passed over come first, as the temporary attempts they were;
            // they do not count as failures of their own (the delivery counts once).
            for p in &attempt.passed_over {
                tx.append_attempt(id, now, &p.sender, "temporary", &p.detail, p.retry_after)?;
            }
            tx.append_attempt(id, now, outcome.sender(), outcome.kind(), outcome.detail(), retry_after)?;

            let mut refused_for_now = HashSet::new();
            for r in &attempt.recipients {
                let detail = cut(&r.detail);
                let sql = match r.verdict {
                    RecipientVerdict::Accepted => {
                        "UPDATE recipients SET state = 'accepted', detail = ?3 WHERE message = ?1 AND address = ?2"
                    }
                    RecipientVerdict::RefusedForNow => {
                        refused_for_now.insert(r.address.as_str());
                        "UPDATE recipients SET detail = ?3 WHERE message = ?1 AND address = ?2 AND state = 'owed'"
                    }
                    RecipientVerdict::RefusedForGood => {
                        "UPDATE recipients SET state = 'refused', detail = ?3
                         WHERE message = ?1 AND address = ?2 AND state <> 'accepted'"
                    }
                };
                let changed = tx.tx.execute(sql, params![id, r.address, detail]).map_err(&db)?;
                if changed == 0 {
                    tracing::debug!(id, address = %r.address, "outbox: a verdict for a recipient not owed");
                }
            }
            if matches!(outcome, Outcome::Delivered { .. }) {
                for address in tx.owed(id)? {
                    if !refused_for_now.contains(address.as_str()) {
                        tx.tx
                            .execute(
                                "UPDATE recipients SET state = 'accepted' WHERE message = ?1 AND address = ?2",
                                params![id, address],
                            )
                            .map_err(&db)?;
                    }
                }
            }
            let owed = tx.owed(id)?.len();
            let accepted: i64 = tx
                .tx
                .query_row(
                    "SELECT count(*) FROM recipients WHERE message = ?1 AND state = 'accepted'",
                    [id],
                    |r| r.get(0),
                )
                .map_err(&db)?;
            let error = format!("{} from {:?}: {}", outcome.kind(), outcome.sender(), cut(outcome.detail()));

            if !matches!(state, State::Sending | State::Queued) {
                // Held, failed, delivered meanwhile (or claimed twice after a lease ran out): the
                // state stays, unless this attempt finished delivering it.
                if matches!(outcome, Outcome::Delivered { .. }) && owed == 0 && state != State::Delivered {
                    tx.finish(id, State::Delivered, now, None)?;
                    return Ok(State::Delivered);
                }
                return Ok(state);
            }
            if owed == 0 && !matches!(outcome, Outcome::Permanent { .. }) {
                if accepted > 0 {
                    tx.finish(id, State::Delivered, now, None)?;
                    return Ok(State::Delivered);
                }
                tx.finish(id, State::Failed, now, Some("every recipient was refused"))?;
                return Ok(State::Failed);
            }
            let failures = failures.saturating_add(1);
            match outcome {
                Outcome::Permanent { .. } => {
                    tx.finish(id, State::Failed, now, Some(&error))?;
                    return Ok(State::Failed);
                }
                Outcome::Uncertain { sender, .. } => {
                    // Pinned: the email may have gone out through this sender, so no other
                    // sender may carry it. The first pin stays.
                    if pinned.is_none() {
                        tx.tx
                            .execute("UPDATE messages SET pinned_sender = ?2 WHERE id = ?1", params![id, sender])
                            .map_err(&db)?;
                    }
                }
                // Delivered with recipients refused for now, or temporary: tried again.
                Outcome::Delivered { .. } | Outcome::Temporary { .. } => {}
            }
            match next_attempt(&policy, failures, now, expires_at, retry_after) {
                Next::RetryAt(at) => {
                    tx.tx
                        .execute(
                            "UPDATE messages SET state = 'queued', locked_until = NULL, failures = ?2,
                                 next_attempt_at = ?3, last_error = ?4
                             WHERE id = ?1",
                            params![id, failures, at, error],
                        )
                        .map_err(&db)?;
                    Ok(State::Queued)
                }
                Next::GiveUp => {
                    tx.finish(id, State::Failed, now, Some(&format!("gave up after its lifetime; last: {error}")))?;
                    Ok(State::Failed)
                }
            }
        })
    }

    /// `queue list [--state]`: every email (or those in `state`), oldest first.
    pub fn list(&self, state: Option<State>) -> Result<Vec<Summary>> {
        self.list_first(state, usize::MAX)
    }

    /// [`Outbox::list`], at most the first `limit` emails in its order.
    pub fn list_first(&self, state: Option<State>, limit: usize) -> Result<Vec<Summary>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|tx| {
            let mut stmt = tx
                .tx
                .prepare(&format!(
                    "{SUMMARY} WHERE (?1 IS NULL OR m.state = ?1) ORDER BY m.created_at, m.id LIMIT ?2"
                ))
                .map_err(tx.db())?;
            let rows = stmt
                .query_map(params![state.map(State::as_str), limit], summary_row)
                .map_err(tx.db())?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(tx.db())?;
            rows.into_iter().map(|r| tx.summary(r)).collect()
        })
    }

    /// How many emails are in each state (every state, zero included).
    pub fn count_by_state(&self) -> Result<Vec<(State, u64)>> {
        self.read(|tx| {
            let mut stmt = tx
                .tx
                .prepare("SELECT state, COUNT(*) FROM messages GROUP BY state")
                .map_err(tx.db())?;
            let counted = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(tx.db())?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(tx.db())?;
            let mut counts: Vec<(State, u64)> = State::ALL.iter().map(|s| (*s, 0)).collect();
            for (state, n) in counted {
                let state = tx.state(&state)?;
                if let Some(entry) = counts.iter_mut().find(|(s, _)| *s == state) {
                    entry.1 = n.max(0) as u64;
                }
            }
            Ok(counts)
        })
    }

    /// `queue show ID`: the email, its attachments, recipients and every attempt.
    pub fn show(&self, id: &str) -> Result<Detail> {
        self.read(|tx| {
            let summary = tx.summary_of(id)?;
            let payload: String = tx
                .tx
                .query_row("SELECT payload FROM messages WHERE id = ?1", [id], |r| r.get(0))
                .map_err(tx.db())?;
            let payload = tx.payload(&payload)?;
            let attachments = tx.attachments(id)?;
            let recipients = {
                let mut stmt = tx
                    .tx
                    .prepare("SELECT address, state, detail FROM recipients WHERE message = ?1 ORDER BY idx")
                    .map_err(tx.db())?;
                let rows = stmt
                    .query_map([id], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?))
                    })
                    .map_err(tx.db())?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(tx.db())?;
                rows.into_iter()
                    .map(|(address, state, detail)| {
                        let state = RecipientState::parse(&state).ok_or_else(|| tx.corrupt(format!("recipient state {state:?}")))?;
                        Ok(RecipientRecord { address, state, detail })
                    })
                    .collect::<Result<Vec<_>>>()?
            };
            let attempts = {
                let mut stmt = tx
                    .tx
                    .prepare(
                        "SELECT number, at, sender, outcome, detail, retry_after_ms FROM attempts
                         WHERE message = ?1 ORDER BY number",
                    )
                    .map_err(tx.db())?;
                stmt.query_map([id], |r| {
                    Ok(AttemptRecord {
                        number: r.get(0)?,
                        at: from_ms(r.get(1)?),
                        sender: r.get(2)?,
                        outcome: r.get(3)?,
                        detail: r.get(4)?,
                        retry_after: r
                            .get::<_, Option<i64>>(5)?
                            .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
                    })
                })
                .map_err(tx.db())?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(tx.db())?
            };
            Ok(Detail { summary, payload, attachments, recipients, attempts })
        })
    }

    /// `queue retry ID`: a failed, queued or held email is due now, with a fresh lifetime (as
    /// long as its first), its backoff restarted, and recipients refused for good owed again.
    /// Accepted recipients stay accepted; a pinned sender stays pinned.
    pub fn retry(&self, id: &str) -> Result<()> {
        let now = self.now_ms();
        self.write(|tx| match tx.state_of(id)? {
            State::Sending => Err(tx.wrong(
                id,
                State::Sending,
                "being delivered now: wait for this attempt",
            )),
            State::Delivered => Err(tx.wrong(
                id,
                State::Delivered,
                "already delivered: submit it again to send it again",
            )),
            State::Queued | State::Failed | State::Held => tx.requeue_fresh(id, now),
        })
    }

    /// `queue retry --failed`: [`Outbox::retry`] for every failed email; returns how many.
    pub fn retry_failed(&self) -> Result<usize> {
        let now = self.now_ms();
        self.write(|tx| {
            let ids = tx.ids_in(State::Failed)?;
            for id in &ids {
                tx.requeue_fresh(id, now)?;
            }
            Ok(ids.len())
        })
    }

    /// Makes every queued email due now (the first half of `queue flush`); returns how many.
    pub fn make_all_due(&self) -> Result<usize> {
        let now = self.now_ms();
        self.write(|tx| {
            tx.tx
                .execute(
                    "UPDATE messages SET next_attempt_at = ?1 WHERE state = 'queued' AND next_attempt_at > ?1",
                    [now],
                )
                .map_err(tx.db())
        })
    }

    /// `queue hold ID`: a queued email is parked; it is never claimed until released.
    pub fn hold(&self, id: &str) -> Result<()> {
        self.write(|tx| match tx.state_of(id)? {
            State::Queued => tx.set_state(id, State::Held),
            State::Held => Ok(()),
            s @ State::Sending => {
                Err(tx.wrong(id, s, "being delivered now: hold it after this attempt"))
            }
            s => Err(tx.wrong(id, s, "only a queued email can be held")),
        })
    }

    /// `queue release ID`: a held email is queued again, due now.
    pub fn release(&self, id: &str) -> Result<()> {
        let now = self.now_ms();
        self.write(|tx| match tx.state_of(id)? {
            State::Held => {
                tx.tx
                    .execute(
                        "UPDATE messages SET state = 'queued', next_attempt_at = ?2 WHERE id = ?1",
                        params![id, now],
                    )
                    .map_err(tx.db())?;
                Ok(())
            }
            s => Err(tx.wrong(id, s, "only a held email can be released")),
        })
    }

    /// `queue delete ID`: the rows (attempts, recipients, attachments), then the spool files.
    /// Not while it is being delivered.
    pub fn delete(&self, id: &str) -> Result<()> {
        self.write(|tx| match tx.state_of(id)? {
            s @ State::Sending => {
                Err(tx.wrong(id, s, "being delivered now: delete it after this attempt"))
            }
            _ => tx.delete_row(id),
        })?;
        self.remove_spool(id);
        Ok(())
    }

    /// Extends a claim the caller still holds to a new lease of [`Options::lease`] from now:
    /// `held_until` is the end the caller knows ([`Claimed::locked_until`], or what the last
    /// renewal returned). Returns the new end, or none when the claim is no longer the caller's
    /// (an attempt was recorded, or its lease ran out and it was given back or claimed anew). A
    /// delivery that may take longer than one lease (waiting for its sender's turn, say) renews
    /// it as it goes; a process that dies stops renewing, and its claims come back as before.
    pub fn renew(&self, id: &str, held_until: SystemTime) -> Result<Option<SystemTime>> {
        let end = self.now_ms().saturating_add(dur_ms(self.options.lease));
        let changed = self.write(|tx| {
            tx.tx
                .execute(
                    "UPDATE messages SET locked_until = ?3
                     WHERE id = ?1 AND state = 'sending' AND locked_until = ?2",
                    params![id, to_ms(held_until), end],
                )
                .map_err(tx.db())
        })?;
        Ok((changed == 1).then(|| from_ms(end)))
    }

    /// Gives a claim back untried: the email is queued again as it was (due when it was due, no
    /// attempt recorded), for a delivery that stopped before any sender was called. False when
    /// the claim is no longer the caller's (see [`Outbox::renew`]).
    pub fn hand_back(&self, id: &str, held_until: SystemTime) -> Result<bool> {
        let changed = self.write(|tx| {
            tx.tx
                .execute(
                    "UPDATE messages SET state = 'queued', locked_until = NULL
                     WHERE id = ?1 AND state = 'sending' AND locked_until = ?2",
                    params![id, to_ms(held_until)],
                )
                .map_err(tx.db())
        })?;
        Ok(changed == 1)
    }

    /// Removes delivered emails (rows and spool files) delivered at least `older_than` ago;
    /// returns how many.
    pub fn purge_delivered(&self, older_than: Duration) -> Result<usize> {
        let before = self.now_ms().saturating_sub(dur_ms(older_than));
        let ids = self.write(|tx| {
            let ids: Vec<String> = {
                let mut stmt = tx
                    .tx
                    .prepare(
                        "SELECT id FROM messages WHERE state = 'delivered' AND finished_at <= ?1",
                    )
                    .map_err(tx.db())?;
                stmt.query_map([before], |r| r.get(0))
                    .map_err(tx.db())?
                    .collect::<rusqlite::Result<_>>()
                    .map_err(tx.db())?
            };
            for id in &ids {
                tx.delete_row(id)?;
            }
            Ok(ids)
        })?;
        for id in &ids {
            self.remove_spool(id);
        }
        Ok(ids.len())
    }

    /// Rows first, files after: a crash between leaves an orphan folder the next open sweeps,
    /// never a row without its files.
    fn remove_spool(&self, id: &str) {
        if let Err(e) = self.spool.remove(id) {
            tracing::warn!(id, error = %e, "outbox: cannot remove a deleted email's spool; the next open sweeps it");
        }
    }
}

/// One transaction and what its helpers need.
struct Tx<'a> {
    tx: &'a Transaction<'a>,
    dir: &'a Path,
    spool: &'a Spool,
    /// The id this handle's claims carry.
    owner: Option<&'a str>,
}

type SummaryRow = (
    String,
    String,
    String,
    i64,
    i64,
    i64,
    u32,
    u32,
    Option<String>,
    Option<String>,
);

const SUMMARY: &str =
    "SELECT m.id, m.message_id, m.state, m.created_at, m.next_attempt_at, m.expires_at,
        (SELECT count(*) FROM attempts a WHERE a.message = m.id),
        (SELECT count(*) FROM recipients r WHERE r.message = m.id AND r.state = 'owed'),
        m.pinned_sender, m.last_error
    FROM messages m";

fn summary_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SummaryRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
    ))
}

impl Tx<'_> {
    fn db(&self) -> impl Fn(rusqlite::Error) -> OutboxError + '_ {
        |e| OutboxError::db(self.dir, e)
    }

    fn corrupt(&self, what: String) -> OutboxError {
        OutboxError::Corrupt {
            dir: self.dir.to_path_buf(),
            what,
        }
    }

    fn wrong(&self, id: &str, state: State, hint: &'static str) -> OutboxError {
        OutboxError::WrongState {
            id: id.to_string(),
            state,
            hint,
        }
    }

    fn state(&self, s: &str) -> Result<State> {
        s.parse()
            .map_err(|_| self.corrupt(format!("message state {s:?}")))
    }

    fn payload(&self, s: &str) -> Result<serde_json::Value> {
        serde_json::from_str(s)
            .map_err(|e| self.corrupt(format!("a payload that is not JSON ({e})")))
    }

    fn state_of(&self, id: &str) -> Result<State> {
        let s: Option<String> = self
            .tx
            .query_row("SELECT state FROM messages WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.db())?;
        match s {
            Some(s) => self.state(&s),
            None => Err(OutboxError::NotFound { id: id.to_string() }),
        }
    }

    fn set_state(&self, id: &str, state: State) -> Result<()> {
        self.tx
            .execute(
                "UPDATE messages SET state = ?2 WHERE id = ?1",
                params![id, state.as_str()],
            )
            .map_err(self.db())?;
        Ok(())
    }

    fn ids_in(&self, state: State) -> Result<Vec<String>> {
        self.strings(
            "SELECT id FROM messages WHERE state = ?1 ORDER BY created_at",
            state.as_str(),
        )
    }

    fn owed(&self, id: &str) -> Result<Vec<String>> {
        self.strings(
            "SELECT address FROM recipients WHERE message = ?1 AND state = 'owed' ORDER BY idx",
            id,
        )
    }

    /// The one text column `sql` selects, for its one parameter.
    fn strings(&self, sql: &str, param: &str) -> Result<Vec<String>> {
        let mut stmt = self.tx.prepare(sql).map_err(self.db())?;
        stmt.query_map([param], |r| r.get(0))
            .map_err(self.db())?
            .collect::<rusqlite::Result<_>>()
            .map_err(self.db())
    }

    fn attachments(&self, id: &str) -> Result<Vec<SpooledAttachment>> {
        let mut stmt = self
            .tx
            .prepare(
                "SELECT name, content_type, file, size, sha256 FROM attachments WHERE message = ?1 ORDER BY idx",
            )
            .map_err(self.db())?;
        stmt.query_map([id], |r| {
            Ok(SpooledAttachment {
                name: r.get(0)?,
                content_type: r.get(1)?,
                path: self.spool.path(&r.get::<_, String>(2)?),
                size: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                sha256: r.get(4)?,
            })
        })
        .map_err(self.db())?
        .collect::<rusqlite::Result<_>>()
        .map_err(self.db())
    }

    fn claimed(&self, id: &str, lease_end: i64) -> Result<Claimed> {
        let (message_id, payload, pinned_sender, attempts): (String, String, Option<String>, u32) =
            self.tx
                .query_row(
                    "SELECT message_id, payload, pinned_sender,
                        (SELECT count(*) FROM attempts a WHERE a.message = m.id)
                 FROM messages m WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .map_err(self.db())?;
        Ok(Claimed {
            id: id.to_string(),
            message_id,
            payload: self.payload(&payload)?,
            attachments: self.attachments(id)?,
            recipients_owed: self.owed(id)?,
            pinned_sender,
            attempts_so_far: attempts,
            locked_until: from_ms(lease_end),
        })
    }

    fn summary(&self, r: SummaryRow) -> Result<Summary> {
        let (
            id,
            message_id,
            state,
            created,
            next,
            expires,
            attempts,
            owed,
            pinned_sender,
            last_error,
        ) = r;
        Ok(Summary {
            id,
            message_id,
            state: self.state(&state)?,
            created_at: from_ms(created),
            next_attempt_at: from_ms(next),
            expires_at: from_ms(expires),
            attempts,
            recipients_owed: owed,
            pinned_sender,
            last_error,
        })
    }

    fn summary_of(&self, id: &str) -> Result<Summary> {
        let row = self
            .tx
            .query_row(&format!("{SUMMARY} WHERE m.id = ?1"), [id], summary_row)
            .optional()
            .map_err(self.db())?
            .ok_or_else(|| OutboxError::NotFound { id: id.to_string() })?;
        self.summary(row)
    }

    fn append_attempt(
        &self,
        id: &str,
        at: i64,
        sender: &str,
        outcome: &str,
        detail: &str,
        retry_after: Option<Duration>,
    ) -> Result<()> {
        self.tx
            .execute(
                "INSERT INTO attempts (message, number, at, sender, outcome, detail, retry_after_ms)
                 VALUES (?1, (SELECT coalesce(max(number), 0) + 1 FROM attempts WHERE message = ?1),
                         ?2, ?3, ?4, ?5, ?6)",
                params![id, at, sender, outcome, cut(detail), retry_after.map(dur_ms)],
            )
            .map_err(self.db())?;
        Ok(())
    }

    /// Delivered or failed: the lease dropped, the time kept for the retention period.
    fn finish(&self, id: &str, state: State, now: i64, error: Option<&str>) -> Result<()> {
        self.tx
            .execute(
                "UPDATE messages SET state = ?2, locked_until = NULL, finished_at = ?3,
                     last_error = coalesce(?4, last_error)
                 WHERE id = ?1",
                params![id, state.as_str(), now, error],
            )
            .map_err(self.db())?;
        Ok(())
    }

    fn requeue_fresh(&self, id: &str, now: i64) -> Result<()> {
        self.tx
            .execute(
                "UPDATE messages SET state = 'queued', next_attempt_at = ?2, failures = 0,
                     expires_at = ?2 + (expires_at - created_at), finished_at = NULL, locked_until = NULL
                 WHERE id = ?1",
                params![id, now],
            )
            .map_err(self.db())?;
        self.tx
            .execute(
                "UPDATE recipients SET state = 'owed' WHERE message = ?1 AND state = 'refused'",
                [id],
            )
            .map_err(self.db())?;
        Ok(())
    }

    fn delete_row(&self, id: &str) -> Result<()> {
        // the attachments, recipients and attempts go with it (ON DELETE CASCADE)
        self.tx
            .execute("DELETE FROM messages WHERE id = ?1", [id])
            .map_err(self.db())?;
        Ok(())
    }
}

/// Claims whose handle is gone (its process stopped: its file in `owners/` is unlocked or
/// missing) or whose lease is over (the handle overran it, or the file system cannot lock) go
/// back to the queue, due now, with an `interrupted` attempt. Past its lifetime, such an email
/// is `failed` instead. A claim of a live handle within its lease is left alone. Returns how
/// many.
fn requeue_abandoned(tx: &Tx<'_>, now: i64) -> Result<usize> {
    let sending: Vec<(String, i64, bool, Option<String>)> = {
        let mut stmt = tx
            .tx
            .prepare(
                "SELECT id, expires_at, locked_until <= ?1, claimed_by FROM messages
                 WHERE state = 'sending'",
            )
            .map_err(tx.db())?;
        stmt.query_map([now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .map_err(tx.db())?
            .collect::<rusqlite::Result<_>>()
            .map_err(tx.db())?
    };
    let mut owners = std::collections::HashMap::new();
    let mut requeued = 0;
    for (id, expires_at, lease_over, claimed_by) in &sending {
        let gone = match claimed_by.as_deref() {
            Some(by) if Some(by) != tx.owner => {
                *owners
                    .entry(by)
                    .or_insert_with(|| owner::liveness(tx.dir, by))
                    == Liveness::Gone
            }
            _ => false,
        };
        let detail = if gone {
            "the process delivering it stopped before an outcome was recorded"
        } else if *lease_over {
            "the claim's lease ran out before an outcome was recorded (the process delivering it stopped or overran it)"
        } else {
            continue;
        };
        tx.append_attempt(id, now, "", "interrupted", detail, None)?;
        if now >= *expires_at {
            tx.finish(
                id,
                State::Failed,
                now,
                Some(&format!("gave up after its lifetime; last: {detail}")),
            )?;
        } else {
            tx.tx
                .execute(
                    "UPDATE messages SET state = 'queued', locked_until = NULL, claimed_by = NULL,
                         next_attempt_at = ?2
                     WHERE id = ?1",
                    params![id, now],
                )
                .map_err(tx.db())?;
        }
        tracing::info!(
            id,
            detail,
            "outbox: a claim was given back; the email is queued again"
        );
        requeued += 1;
    }
    Ok(requeued)
}

/// The recipients, each once, in order; and the submission's other checks.
fn validate(sub: &Submission) -> Result<Vec<String>> {
    let invalid = |m: String| Err(OutboxError::Invalid(m));
    let mut seen = HashSet::new();
    let recipients: Vec<String> = sub
        .recipients
        .iter()
        .filter(|r| seen.insert(r.as_str()))
        .cloned()
        .collect();
    if recipients.is_empty() {
        return invalid("no recipient: give at least one address".into());
    }
    if let Some(bad) = recipients
        .iter()
        .find(|r| r.is_empty() || r.chars().any(char::is_control))
    {
        return invalid(format!(
            "recipient {bad:?} is empty or holds a control character"
        ));
    }
    if let Some(id) = &sub.message_id {
        let inner = id.strip_prefix('<').and_then(|s| s.strip_suffix('>'));
        let ok = id.len() <= 998
            && inner.is_some_and(|s| {
                s.split_once('@')
                    .is_some_and(|(l, r)| !l.is_empty() && !r.is_empty())
                    && !s
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
            });
        if !ok {
            return invalid(format!("Message-ID {id:?} is not of the form <left@right>"));
        }
    }
    if let Some(key) = &sub.idempotency_key
        && (key.is_empty() || key.len() > 256)
    {
        return invalid("the idempotency key must be 1 to 256 bytes".into());
    }
    if let Some(a) = sub.attachments.iter().find(|a| a.name.is_empty()) {
        return invalid(format!("an attachment ({}) has no name", a.path.display()));
    }
    Ok(recipients)
}

/// What identifies "the same email" for an idempotency key: the payload (keys sorted, so the
/// JSON's key order does not matter), the Message-ID given, the recipients, the attachments'
/// names and types (not their content: a repeat copies and reads nothing).
fn fingerprint(sub: &Submission, recipients: &[String]) -> String {
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    field(canonical(&sub.payload).as_bytes());
    field(sub.message_id.as_deref().unwrap_or("").as_bytes());
    for r in recipients {
        field(r.as_bytes());
    }
    field(b"attachments");
    for a in &sub.attachments {
        field(a.name.as_bytes());
        field(a.content_type.as_bytes());
    }
    hex::encode(h.finalize())
}

/// JSON with every object's keys sorted, whatever order serde_json keeps.
fn canonical(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&map[k])))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

fn cut(s: &str) -> &str {
    match s.char_indices().nth(MAX_DETAIL_CHARS) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// One handle is shared by the tasks of a process.
const _: () = {
    const fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<Outbox>()
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_ignores_json_key_order() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"a":1,"b":{"x":[1,{"q":2,"p":3}],"y":null}}"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"{"b":{"y":null,"x":[1,{"p":3,"q":2}]},"a":1}"#).unwrap();
        let s = |p| Submission::new(p, ["r@example.test"]);
        assert_eq!(
            fingerprint(&s(a.clone()), &["r@example.test".into()]),
            fingerprint(&s(b), &["r@example.test".into()])
        );
        let c = serde_json::json!({"a": 2});
        assert_ne!(
            fingerprint(&s(a), &["r@example.test".into()]),
            fingerprint(&s(c), &["r@example.test".into()])
        );
    }

    #[test]
    fn a_message_id_must_be_angle_bracketed_with_an_at() {
        let mut s = Submission::new(serde_json::json!({}), ["r@example.test"]);
        for bad in ["x@y", "<xy>", "<x@y>\r\nBcc: z", "<@y>", "< x@y>"] {
            s.message_id = Some(bad.into());
            assert!(
                matches!(validate(&s), Err(OutboxError::Invalid(_))),
                "{bad:?} passed"
            );
        }
        s.message_id = Some("<a.b@example.test>".into());
        assert!(validate(&s).is_ok());
    }
}
