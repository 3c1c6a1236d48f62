//! The outbox's data as the caller sees it: what is submitted, what a claim hands over, what
//! `list` and `show` answer. Plain data; never touches the database or the disk.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};

use crate::policy::RetryPolicy;

/// Where an email is in its life.
///
/// `queued` → (claimed) `sending` → `delivered` | `queued` again (temporary, uncertain) |
/// `failed` (permanent, lifetime over). `held` is parked by the administrator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting for its next attempt (`next_attempt_at`).
    Queued,
    /// Claimed by a deliverer, under a lease (`locked_until`).
    Sending,
    Delivered,
    Failed,
    /// Parked by the administrator; never claimed until released.
    Held,
}

impl State {
    pub const ALL: [State; 5] = [
        State::Queued,
        State::Sending,
        State::Delivered,
        State::Failed,
        State::Held,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Sending => "sending",
            State::Delivered => "delivered",
            State::Failed => "failed",
            State::Held => "held",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        State::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!("unknown state {s:?}: one of queued, sending, delivered, failed, held")
            })
    }
}

/// One attachment to copy into the spool at submit.
#[derive(Debug, Clone)]
pub struct AttachmentSource {
    /// The file name the email shows.
    pub name: String,
    pub content_type: String,
    /// The file to copy; read once, at submit. The outbox never reads it again.
    pub path: PathBuf,
}

/// An email handed to the outbox.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The host's email as JSON. The outbox stores it and hands it back; it never looks inside.
    pub payload: serde_json::Value,
    pub attachments: Vec<AttachmentSource>,
    /// Every envelope recipient (To, Cc and Bcc), so each one's state is kept. Duplicates are
    /// kept once.
    pub recipients: Vec<String>,
    /// A caller-chosen key: a second submit with the same key returns the first one's id and
    /// enqueues nothing.
    pub idempotency_key: Option<String>,
    /// The Message-ID (`<left@right>`), used for every attempt and every sender. `None`: the
    /// outbox makes one (`<uuid@scan2x-mail.invalid>`); the host should pass one with its domain.
    pub message_id: Option<String>,
    /// How long the outbox keeps trying; `None`: [`RetryPolicy::lifetime`] (5 days).
    pub lifetime: Option<Duration>,
}

impl Submission {
    /// A submission with the payload and the recipients, and nothing else.
    pub fn new(
        payload: serde_json::Value,
        recipients: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            payload,
            attachments: Vec::new(),
            recipients: recipients.into_iter().map(Into::into).collect(),
            idempotency_key: None,
            message_id: None,
            lifetime: None,
        }
    }
}

/// What `submit` answers once the email is durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Submitted {
    /// The outbox's id for the email (a UUID).
    pub id: String,
    pub message_id: String,
    /// True when the idempotency key was already used: `id` is the first submit's.
    pub duplicate: bool,
}

/// An attachment in the spool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpooledAttachment {
    pub name: String,
    pub content_type: String,
    /// The spool file (absolute), owned by the outbox: read it, never move or change it.
    pub path: PathBuf,
    pub size: u64,
    /// Hex sha256 of the content, computed while copying.
    pub sha256: String,
}

/// An email claimed for delivery: everything a deliverer needs.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub message_id: String,
    pub payload: serde_json::Value,
    pub attachments: Vec<SpooledAttachment>,
    /// The recipients still owed; those a server accepted are never here again.
    pub recipients_owed: Vec<String>,
    /// Set after an `uncertain` outcome: only this sender may carry the email (no failover).
    pub pinned_sender: Option<String>,
    /// Attempts recorded so far (every outcome).
    pub attempts_so_far: u32,
    /// The lease: the claim is given back to the queue after this time. A delivery must end (and
    /// be recorded) before it.
    pub locked_until: SystemTime,
}

/// A recipient's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecipientState {
    /// Not yet accepted: the next attempt sends to it.
    Owed,
    /// A server accepted it: never sent again.
    Accepted,
    /// A server refused it for good: not sent again (an administrator's `retry` owes it again).
    Refused,
}

impl RecipientState {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "owed" => Some(RecipientState::Owed),
            "accepted" => Some(RecipientState::Accepted),
            "refused" => Some(RecipientState::Refused),
            _ => None,
        }
    }
}

/// A line of `queue list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub id: String,
    pub message_id: String,
    pub state: State,
    #[serde(serialize_with = "unix_ms")]
    pub created_at: SystemTime,
    /// When a `queued` email is next due.
    #[serde(serialize_with = "unix_ms")]
    pub next_attempt_at: SystemTime,
    /// When it is given up (`failed`) if not delivered.
    #[serde(serialize_with = "unix_ms")]
    pub expires_at: SystemTime,
    pub attempts: u32,
    pub recipients_owed: u32,
    pub pinned_sender: Option<String>,
    /// The last attempt's detail, when it did not deliver.
    pub last_error: Option<String>,
}

/// One recorded attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptRecord {
    /// 1, 2, … in the order they were recorded.
    pub number: u32,
    #[serde(serialize_with = "unix_ms")]
    pub at: SystemTime,
    /// Empty for `interrupted` (the process delivering it stopped; the sender is not known).
    pub sender: String,
    /// `delivered`, `temporary`, `permanent`, `uncertain` or `interrupted`.
    pub outcome: String,
    /// The server's words, as the caller passed them (redacted by the caller).
    pub detail: String,
    pub retry_after: Option<Duration>,
}

/// One recipient and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecipientRecord {
    pub address: String,
    pub state: RecipientState,
    /// The last thing a server said about this recipient.
    pub detail: Option<String>,
}

/// `queue show ID`: the email, every attempt, every recipient.
#[derive(Debug, Clone, Serialize)]
pub struct Detail {
    pub summary: Summary,
    pub payload: serde_json::Value,
    pub attachments: Vec<SpooledAttachment>,
    pub recipients: Vec<RecipientRecord>,
    pub attempts: Vec<AttemptRecord>,
}

/// How an outbox behaves; [`Options::default`] is what `Outbox::open` uses.
#[derive(Debug, Clone)]
pub struct Options {
    pub retry: RetryPolicy,
    /// How long a claim of a live handle holds an email. Longer than the host's whole-call time
    /// limit, or a slow delivery could be claimed a second time. Default 15 minutes. A claim of
    /// a handle that is gone (its process stopped) comes back at once, whatever its lease.
    pub lease: Duration,
    /// The bound on one email's attachments, all together. Default 100 MiB.
    pub max_message_bytes: u64,
    /// How long to wait for another process holding the database's write lock. Default 30 s.
    pub busy_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            lease: Duration::from_secs(15 * 60),
            max_message_bytes: 100 * 1024 * 1024,
            busy_timeout: Duration::from_secs(30),
        }
    }
}

fn unix_ms<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_i64(crate::clock::to_ms(*t))
}
