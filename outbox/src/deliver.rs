//! Delivery as the outbox sees it: a [`Deliver`] trait the host implements (through its router
//! and failover) and [`Outbox::flush`], which claims what is due, hands each email to it and
//! records each attempt. Never chooses a sender and never talks to a server.

use std::future::Future;

use crate::attempt::Attempt;
use crate::clock::to_ms;
use crate::error::OutboxError;
use crate::model::{Claimed, State};
use crate::store::Outbox;

/// The host's side of a delivery: carry one claimed email, say what happened.
///
/// The implementation must send to `item.recipients_owed` only, with `item.message_id`, through
/// `item.pinned_sender` only when it is set (no failover then), and finish before
/// `item.locked_until`. The details it returns are stored as given: redact them first.
pub trait Deliver {
    fn deliver(&self, item: &Claimed) -> impl Future<Output = Attempt> + Send;
}

/// One email handled by a flush, for progress output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flushed {
    pub id: String,
    pub message_id: String,
    pub sender: String,
    /// The attempt's outcome (`delivered`, `temporary`, `permanent`, `uncertain`).
    pub outcome: &'static str,
    /// The email's state after it.
    pub state: State,
}

/// What a flush did, counted by the emails' states after their attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushReport {
    pub delivered: usize,
    /// Queued again for a later attempt.
    pub deferred: usize,
    pub failed: usize,
    /// Held or otherwise left as they were (changed by someone else during the attempt).
    pub other: usize,
}

impl Outbox {
    /// Delivers every email due when the flush starts, one at a time: claim one, hand it to
    /// `deliverer`, record the attempt, call `progress`. An email whose attempt queued it again
    /// is not met again in the same flush (it is due later than the flush's start).
    ///
    /// One claim at a time keeps every lease shorter than one delivery; concurrency and the
    /// per-sender limits (concurrent deliveries, `max_per_minute`) are not here yet.
    pub async fn flush<D: Deliver>(
        &self,
        deliverer: &D,
        mut progress: impl FnMut(&Flushed),
    ) -> Result<FlushReport, OutboxError> {
        let start = to_ms(self.clock_now());
        let mut report = FlushReport::default();
        loop {
            let now = to_ms(self.clock_now());
            let Some(item) = self.claim(now, start, 1)?.pop() else {
                return Ok(report);
            };
            let attempt = deliverer.deliver(&item).await;
            let outcome = attempt.outcome.kind();
            let sender = attempt.outcome.sender().to_string();
            let state = self.record(&item.id, attempt)?;
            match state {
                State::Delivered => report.delivered += 1,
                State::Queued => report.deferred += 1,
                State::Failed => report.failed += 1,
                State::Sending | State::Held => report.other += 1,
            }
            progress(&Flushed {
                id: item.id,
                message_id: item.message_id,
                sender,
                outcome,
                state,
            });
        }
    }
}
