//! What one delivery attempt did, in the outbox's own words: the deliverer (the host, through
//! its router and failover) says it, `Outbox::record` stores it. Never depends on the host's
//! outcome types; the host converts.

use std::time::Duration;

/// One attempt: the outcome, and what each server said about each recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub outcome: Outcome,
    /// Per-recipient verdicts. After `Delivered`, an owed recipient not listed here counts as
    /// accepted; after any other outcome, as still owed.
    pub recipients: Vec<RecipientResult>,
    /// Senders tried before the one `outcome` names, in order, each failing temporarily (the
    /// deliverer's failover). Each is recorded as a `temporary` attempt row before the final
    /// one; they do not advance the backoff (one delivery, one failure counted at most).
    pub passed_over: Vec<PassedOver>,
}

/// A sender tried and passed over in one delivery (failover): it failed temporarily and the
/// next sender was tried at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassedOver {
    pub sender: String,
    /// The server's words (redacted by the caller).
    pub detail: String,
    pub retry_after: Option<Duration>,
}

/// How an attempt ended. `sender` is the sender that carried (or tried) it; `detail` is the
/// server's words, **already redacted by the caller**: the outbox stores it as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server accepted the email (for the recipients not refused).
    Delivered { sender: String, detail: String },
    /// Try again later: backoff, never before `retry_after` (a server's Retry-After).
    Temporary {
        sender: String,
        detail: String,
        retry_after: Option<Duration>,
    },
    /// It will never work: `failed` at once.
    Permanent { sender: String, detail: String },
    /// The email was handed over and the answer was lost: retried with the same Message-ID by
    /// the same sender only, after the normal backoff.
    Uncertain { sender: String, detail: String },
}

impl Outcome {
    pub fn sender(&self) -> &str {
        match self {
            Outcome::Delivered { sender, .. }
            | Outcome::Temporary { sender, .. }
            | Outcome::Permanent { sender, .. }
            | Outcome::Uncertain { sender, .. } => sender,
        }
    }

    pub fn detail(&self) -> &str {
        match self {
            Outcome::Delivered { detail, .. }
            | Outcome::Temporary { detail, .. }
            | Outcome::Permanent { detail, .. }
            | Outcome::Uncertain { detail, .. } => detail,
        }
    }

    /// The word stored in the attempt row.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Delivered { .. } => "delivered",
            Outcome::Temporary { .. } => "temporary",
            Outcome::Permanent { .. } => "permanent",
            Outcome::Uncertain { .. } => "uncertain",
        }
    }
}

/// What a server said about one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientResult {
    pub address: String,
    pub verdict: RecipientVerdict,
    /// The server's words (redacted by the caller).
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientVerdict {
    /// Never sent to again.
    Accepted,
    /// Still owed: the next attempt sends to it.
    RefusedForNow,
    /// Not sent to again (until an administrator's `retry`).
    RefusedForGood,
}

impl Attempt {
    pub fn new(outcome: Outcome) -> Self {
        Self {
            outcome,
            recipients: Vec::new(),
            passed_over: Vec::new(),
        }
    }

    pub fn delivered(sender: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(Outcome::Delivered {
            sender: sender.into(),
            detail: detail.into(),
        })
    }

    pub fn temporary(
        sender: impl Into<String>,
        detail: impl Into<String>,
        retry_after: Option<Duration>,
    ) -> Self {
        Self::new(Outcome::Temporary {
            sender: sender.into(),
            detail: detail.into(),
            retry_after,
        })
    }

    pub fn permanent(sender: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(Outcome::Permanent {
            sender: sender.into(),
            detail: detail.into(),
        })
    }

    pub fn uncertain(sender: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(Outcome::Uncertain {
            sender: sender.into(),
            detail: detail.into(),
        })
    }

    /// Adds a sender tried before this attempt's own, which failed temporarily (failover).
    pub fn after_passing_over(
        mut self,
        sender: impl Into<String>,
        detail: impl Into<String>,
        retry_after: Option<Duration>,
    ) -> Self {
        self.passed_over.push(PassedOver {
            sender: sender.into(),
            detail: detail.into(),
            retry_after,
        });
        self
    }

    /// Adds one recipient's verdict.
    pub fn with_recipient(
        mut self,
        address: impl Into<String>,
        verdict: RecipientVerdict,
        detail: impl Into<String>,
    ) -> Self {
        self.recipients.push(RecipientResult {
            address: address.into(),
            verdict,
            detail: detail.into(),
        });
        self
    }
}
