//! What each command prints: one type per command's result, each `Serialize` (its `--json`
//! shape) and `Display` (its text), and the error report. The binary builds one [`Report`] per
//! run and prints it once, redacted, as JSON or text; this module only shapes the output, so it
//! holds plain copies of what it reports and knows nothing of the runtime, the router or the
//! senders. Text tables go through the one [`table`] formatter.
//!
//! The JSON keys come out in alphabetical order: the binary redacts every string of a report as
//! a `serde_json::Value`, whose maps are sorted, before printing it.

use std::fmt;

use serde::{Serialize, Serializer};

use crate::outcome::{Failure, FailureKind};

/// What a command ends with when it does not fail outright.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Report {
    Plugins(PluginsReport),
    Check(CheckReport),
    Test(TestReport),
    Route(RouteReport),
    /// `send`: the email went out (to every recipient, or to some).
    Sent(Box<SendReport>),
    /// `send`: no sender took the email.
    NotSent(NotSentReport),
    /// `submit`: the email is in the outbox.
    Submitted(SubmitReport),
    /// `queue list`.
    QueueList(QueueListReport),
    /// `queue show ID`.
    QueueShow(Box<QueueShowReport>),
    /// `queue flush`, `queue run`.
    QueueRun(QueueRunReport),
    /// `queue retry`, `hold`, `release`, `delete`.
    QueueChange(QueueChangeReport),
    /// `serve`, once it has stopped.
    Served(ServeReport),
}

impl Report {
    /// The failure the exit code says beside the report: an email partly sent, or not sent (said
    /// in one line, since the report tells the rest).
    pub fn failure(&self) -> Option<Failure> {
        match self {
            Report::Sent(sent) => sent.partly.clone(),
            Report::NotSent(not_sent) => Some(not_sent.failure()),
            Report::Plugins(_)
            | Report::Check(_)
            | Report::Test(_)
            | Report::Route(_)
            | Report::Submitted(_)
            | Report::QueueList(_)
            | Report::QueueShow(_)
            | Report::QueueRun(_)
            | Report::QueueChange(_)
            | Report::Served(_) => None,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Report::Plugins(r) => r.fmt(f),
            Report::Check(r) => r.fmt(f),
            Report::Test(r) => r.fmt(f),
            Report::Route(r) => r.fmt(f),
            Report::Sent(r) => r.fmt(f),
            Report::NotSent(r) => r.fmt(f),
            Report::Submitted(r) => r.fmt(f),
            Report::QueueList(r) => r.fmt(f),
            Report::QueueShow(r) => r.fmt(f),
            Report::QueueRun(r) => r.fmt(f),
            Report::QueueChange(r) => r.fmt(f),
            Report::Served(r) => r.fmt(f),
        }
    }
}

/// Left-aligned columns two spaces apart, each row after `indent`; the last column is not
/// padded. Rows are joined by newlines, with none at the end.
pub fn table<const N: usize>(indent: &str, rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    rows.iter()
        .map(|row| {
            let mut line = indent.to_string();
            if let Some((last, cells)) = row.split_last() {
                for (w, cell) in widths.iter().zip(cells) {
                    line.push_str(&format!("{cell:<w$}  "));
                }
                line.push_str(last);
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn yes_no(on: bool) -> String {
    if on { "yes" } else { "no" }.to_string()
}

fn kind_name<S: Serializer>(kind: &FailureKind, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(kind.as_str())
}

// ---------------------------------------------------------------------------------------------
// plugins

/// `plugins`: every plugin, built in or named in the settings. JSON: the array of plugins; the
/// text ends with the keys the host owns.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct PluginsReport {
    pub plugins: Vec<PluginReport>,
    /// The settings' own help for the keys every sender may set (text only).
    #[serde(skip)]
    pub host_keys: String,
}

impl fmt::Display for PluginsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, plugin) in self.plugins.iter().enumerate() {
            if i > 0 {
                f.write_str("\n\n")?;
            }
            write!(f, "{plugin}")?;
        }
        write!(f, "\n\n{}", self.host_keys.trim_end())
    }
}

/// One plugin: what it says of itself and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginReport {
    pub id: String,
    pub version: String,
    pub label: String,
    pub description: String,
    /// The contract it was built against, `scan2x:mail@X.Y.Z`.
    pub wit: String,
    /// `built-in`, or the file's path.
    pub source: String,
    /// The built-in this file stands in for, for the senders that name it.
    pub replaces: Option<String>,
    pub sha256: String,
    pub events: Vec<String>,
    pub network: Vec<String>,
    pub settings: Vec<SettingReport>,
}

impl fmt::Display for PluginReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = format!("{} {} - {}\n", self.id, self.version, self.label);
        if !self.description.is_empty() {
            out.push_str(&format!("  {}\n", self.description));
        }
        out.push_str(&format!("  source:   {}\n", self.source));
        if let Some(id) = &self.replaces {
            out.push_str(&format!(
                "  replaces: the built-in {id}, for the senders that name this file\n"
            ));
        }
        out.push_str(&format!("  sha256:   {}\n", self.sha256));
        out.push_str(&format!("  WIT:      {}\n", self.wit));
        out.push_str(&format!("  events:   {}\n", self.events.join(", ")));
        out.push_str(&format!("  network:  {}\n", self.network.join(", ")));
        out.push_str("  settings:\n");
        let mut rows =
            vec![["KEY", "KIND", "REQUIRED", "DEFAULT", "DESCRIPTION"].map(String::from)];
        rows.extend(self.settings.iter().map(|s| {
            [
                s.key.clone(),
                s.kind.clone(),
                yes_no(s.required),
                s.default
                    .as_ref()
                    .map_or_else(|| "-".to_string(), ToString::to_string),
                if s.help.is_empty() {
                    s.label.clone()
                } else {
                    format!("{}: {}", s.label, s.help)
                },
            ]
        }));
        out.push_str(&table("    ", &rows));
        f.write_str(out.trim_end())
    }
}

/// One key of a plugin's settings table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettingReport {
    pub key: String,
    pub label: String,
    /// `text`, `integer`, `boolean` or `secret`.
    pub kind: String,
    pub required: bool,
    /// JSON: the value itself, or null.
    pub default: Option<DefaultValue>,
    pub help: String,
}

/// A setting's default, as the value it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum DefaultValue {
    Text(String),
    Integer(i64),
    Boolean(bool),
}

impl fmt::Display for DefaultValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DefaultValue::Text(t) => write!(f, "{t:?}"),
            DefaultValue::Integer(i) => write!(f, "{i}"),
            DefaultValue::Boolean(b) => write!(f, "{b}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// check

/// `check`: the settings file is valid; what each sender may do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    pub file: String,
    /// Always true: an invalid file is an error report.
    pub ok: bool,
    pub senders: Vec<CheckedSender>,
}

/// One sender of a valid settings file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckedSender {
    pub name: String,
    pub plugin: String,
    pub preferred: bool,
    pub allow_job_source: bool,
    pub allow_job_recipients: bool,
    /// The destinations it may reach, e.g. `smtp://mx.example.com:587`.
    pub grants: Vec<String>,
    pub notes: Vec<String>,
    pub memory_limit_mb: u64,
    pub cpu_limit_secs: u64,
    pub call_limit_secs: u64,
    /// The most outbox deliveries it carries at once, and starts in any 60 seconds.
    pub max_concurrent: u32,
    pub max_per_minute: u32,
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: settings are valid", self.file)?;
        for s in &self.senders {
            let options: Vec<&str> = [
                (s.preferred, "preferred"),
                (s.allow_job_source, "allow_job_source"),
                (s.allow_job_recipients, "allow_job_recipients"),
            ]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
            write!(f, "\n  {} ({})", s.name, s.plugin)?;
            if !options.is_empty() {
                write!(f, " [{}]", options.join(", "))?;
            }
            if s.grants.is_empty() {
                f.write_str(": may reach nothing")?;
            } else {
                write!(f, ": may reach {}", s.grants.join(", "))?;
            }
            for note in &s.notes {
                write!(f, "\n    note: {note}")?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// test

/// `test`: the sender's settings work.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestReport {
    pub sender: String,
    pub plugin: String,
    /// Always true: a failed test is an error report.
    pub ok: bool,
    /// What the plugin says it checked.
    pub detail: String,
}

impl fmt::Display for TestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sender '{}' ({}): OK: {}",
            self.sender, self.plugin, self.detail
        )
    }
}

// ---------------------------------------------------------------------------------------------
// route

/// `route`: which sender would carry the email, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteReport {
    pub event: String,
    pub chosen: String,
    /// Whether a temporary failure would pass the email on (`failover = true`, no `--sender`).
    pub failover: bool,
    /// The senders that would be tried, in order: with failover every eligible one, else the
    /// chosen one.
    pub order: Vec<String>,
    /// Every sender's verdict, in file order.
    pub senders: Vec<VerdictReport>,
}

/// One sender's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerdictReport {
    pub sender: String,
    pub plugin: String,
    pub eligible: bool,
    pub reason: String,
}

impl fmt::Display for RouteReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rows = vec![["SENDER", "PLUGIN", "ELIGIBLE", "REASON"].map(String::from)];
        rows.extend(self.senders.iter().map(|v| {
            [
                v.sender.clone(),
                v.plugin.clone(),
                yes_no(v.eligible),
                v.reason.clone(),
            ]
        }));
        write!(f, "event: {}\n{}\n", self.event, table("", &rows))?;
        write!(f, "chosen: {}", self.chosen)?;
        if self.failover && self.order.len() > 1 {
            write!(
                f,
                "; on a temporary failure then: {}",
                self.order[1..].join(", ")
            )?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// send

/// `send`, sent: the sender that took the email, its receipt, and every sender tried.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SendReport {
    pub sender: String,
    pub plugin: String,
    pub event: String,
    pub job: Option<JobReport>,
    pub message_id: String,
    /// Why this sender was used (text only).
    #[serde(skip)]
    pub reason: String,
    /// JSON `outcome`: `sent`, or the partly-sent kind of this failure.
    #[serde(rename = "outcome", serialize_with = "outcome_name")]
    pub partly: Option<Failure>,
    pub receipt: ReceiptReport,
    pub notes: Vec<String>,
    pub attempts: Vec<AttemptReport>,
}

fn outcome_name<S: Serializer>(partly: &Option<Failure>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(partly.as_ref().map_or("sent", |p| p.kind.as_str()))
}

/// The job an email comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobReport {
    pub name: Option<String>,
    pub source_sender: Option<String>,
    pub recipients: Vec<String>,
}

/// What the server said when it took the email.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReceiptReport {
    pub provider_id: Option<String>,
    pub accepted: Vec<String>,
    pub refused: Vec<RefusedReport>,
    pub detail: String,
}

/// A recipient the server refused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RefusedReport {
    pub address: String,
    pub reason: String,
    /// Refused for now (a 4xx): a later try may reach it.
    pub for_now: bool,
}

/// One sender tried.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptReport {
    pub sender: String,
    pub plugin: String,
    pub result: AttemptResult,
    /// The receipt's detail, or the failure's message.
    pub detail: String,
}

/// How one attempt ended. JSON: `"sent"`, or the failure's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    Sent,
    Failed(FailureKind),
}

impl Serialize for AttemptResult {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            AttemptResult::Sent => serializer.serialize_str("sent"),
            AttemptResult::Failed(kind) => kind_name(kind, serializer),
        }
    }
}

impl fmt::Display for SendReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for a in &self.attempts {
            if let AttemptResult::Failed(kind) = a.result {
                writeln!(
                    f,
                    "tried '{}' ({}): {}: {}",
                    a.sender,
                    a.plugin,
                    kind.as_str(),
                    a.detail
                )?;
            }
        }
        writeln!(
            f,
            "sent through '{}' ({}; {})",
            self.sender, self.plugin, self.reason
        )?;
        writeln!(f, "  message-id: <{}>", self.message_id)?;
        let receipt = &self.receipt;
        if let Some(id) = &receipt.provider_id {
            writeln!(f, "  provider id: {id}")?;
        }
        writeln!(f, "  accepted: {}", receipt.accepted.join(", "))?;
        for r in &receipt.refused {
            let how = if r.for_now { "for now" } else { "for good" };
            writeln!(f, "  refused {how}: {} ({})", r.address, r.reason)?;
        }
        for note in &self.notes {
            writeln!(f, "  note: {note}")?;
        }
        write!(f, "  server: {}", receipt.detail)
    }
}

/// `send`, not sent: the last sender tried, its failure, and every sender tried. Its text is
/// the failure's message: every attempt, and the Message-ID when the outcome is uncertain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotSentReport {
    pub sender: String,
    pub plugin: String,
    pub message_id: String,
    pub error: ErrorDetail,
    pub attempts: Vec<AttemptReport>,
}

impl NotSentReport {
    /// The failure in one line, for stderr beside the JSON: its kind and the sender.
    pub fn failure(&self) -> Failure {
        Failure {
            message: format!("{} ({})", self.error.kind.as_str(), self.sender),
            ..self.error.failure()
        }
    }

    /// The failure with this report's text as its message: what text mode says on stderr.
    pub fn failure_in_full(&self) -> Failure {
        Failure {
            message: self.to_string(),
            ..self.error.failure()
        }
    }
}

impl fmt::Display for NotSentReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.attempts.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            match a.result {
                AttemptResult::Sent => write!(f, "'{}' sent", a.sender)?,
                AttemptResult::Failed(kind) => write!(
                    f,
                    "'{}' ({}): {}: {}",
                    a.sender,
                    a.plugin,
                    kind.as_str(),
                    a.detail
                )?,
            }
        }
        if self.error.kind == FailureKind::Uncertain {
            write!(f, "\nmessage-id: <{}>", self.message_id)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// the outbox: submit and queue

/// A time as the outbox's reports give it: JSON, milliseconds since the Unix epoch (UTC); text,
/// `2026-01-01 00:00:00Z` ([`utc`]).
pub type UnixMs = i64;

/// `unix_ms` as `YYYY-MM-DD HH:MM:SSZ` (UTC, whole seconds).
pub fn utc(unix_ms: UnixMs) -> String {
    let at = crate::civil::Civil::from_unix(unix_ms.div_euclid(1000));
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        at.year, at.month, at.day, at.hour, at.minute, at.second
    )
}

/// `submit`: the email is durable in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubmitReport {
    /// The outbox's id for the email (`queue show ID`).
    pub id: String,
    /// Without angle brackets, as `send` prints it.
    pub message_id: String,
    /// True when the idempotency key was used before: `id` is the first submit's, nothing new
    /// was queued.
    pub duplicate: bool,
}

impl fmt::Display for SubmitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "queued {} <{}>", self.id, self.message_id)?;
        if self.duplicate {
            f.write_str(" (already queued: idempotency key reused)")?;
        }
        Ok(())
    }
}

/// One email of `queue list`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueEntry {
    pub id: String,
    /// Without angle brackets.
    pub message_id: String,
    /// `queued`, `sending`, `delivered`, `failed` or `held`.
    pub state: String,
    pub created_at: UnixMs,
    /// When a queued email is next due.
    pub next_attempt_at: UnixMs,
    /// When it is given up (`failed`) if not delivered.
    pub expires_at: UnixMs,
    pub attempts: u32,
    pub recipients_owed: u32,
    /// The only sender that may carry it (after an uncertain outcome).
    pub pinned_sender: Option<String>,
    pub last_error: Option<String>,
}

/// A Message-ID without its angle brackets, as `send` prints it.
pub fn bare_message_id(id: &str) -> String {
    id.strip_prefix('<')
        .and_then(|i| i.strip_suffix('>'))
        .unwrap_or(id)
        .to_string()
}

/// A time as milliseconds since the Unix epoch (0 before it).
pub fn unix_ms(t: std::time::SystemTime) -> UnixMs {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl From<&scan2x_mail_outbox::Summary> for QueueEntry {
    fn from(s: &scan2x_mail_outbox::Summary) -> Self {
        QueueEntry {
            id: s.id.clone(),
            message_id: bare_message_id(&s.message_id),
            state: s.state.to_string(),
            created_at: unix_ms(s.created_at),
            next_attempt_at: unix_ms(s.next_attempt_at),
            expires_at: unix_ms(s.expires_at),
            attempts: s.attempts,
            recipients_owed: s.recipients_owed,
            pinned_sender: s.pinned_sender.clone(),
            last_error: s.last_error.clone(),
        }
    }
}

/// `queue list`: JSON, the array of emails.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct QueueListReport {
    pub emails: Vec<QueueEntry>,
}

impl fmt::Display for QueueListReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.emails.is_empty() {
            return f.write_str("the outbox is empty");
        }
        let mut rows = vec![
            [
                "ID",
                "STATE",
                "ATTEMPTS",
                "OWED",
                "NEXT ATTEMPT",
                "MESSAGE-ID",
            ]
            .map(String::from),
        ];
        rows.extend(self.emails.iter().map(|e| {
            [
                e.id.clone(),
                e.state.clone(),
                e.attempts.to_string(),
                e.recipients_owed.to_string(),
                if e.state == "queued" {
                    utc(e.next_attempt_at)
                } else {
                    "-".into()
                },
                format!("<{}>", e.message_id),
            ]
        }));
        f.write_str(&table("", &rows))?;
        for e in self.emails.iter().filter(|e| e.state != "delivered") {
            if let Some(error) = &e.last_error {
                write!(f, "\n{}: {error}", e.id)?;
            }
        }
        Ok(())
    }
}

/// A recipient of `queue show`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueRecipient {
    pub address: String,
    /// `owed`, `accepted` or `refused` (for good).
    pub state: String,
    /// The last thing a server said about it.
    pub detail: Option<String>,
}

/// An attachment of `queue show`, as the spool holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueAttachment {
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
}

/// An attempt of `queue show`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueAttempt {
    pub number: u32,
    pub at: UnixMs,
    /// Empty for `interrupted` and for a failure before any sender was chosen.
    pub sender: String,
    /// `delivered`, `temporary`, `permanent`, `uncertain` or `interrupted`.
    pub outcome: String,
    pub detail: String,
    /// The wait the server asked for.
    pub retry_after_secs: Option<u64>,
}

/// `queue show ID`: the email, its recipients, every attempt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueShowReport {
    #[serde(flatten)]
    pub entry: QueueEntry,
    /// The email as submitted (the `--message` JSON's fields), without its attachments.
    pub email: serde_json::Value,
    pub attachments: Vec<QueueAttachment>,
    pub recipients: Vec<QueueRecipient>,
    pub attempts: Vec<QueueAttempt>,
}

impl From<scan2x_mail_outbox::Detail> for QueueShowReport {
    fn from(d: scan2x_mail_outbox::Detail) -> Self {
        QueueShowReport {
            entry: QueueEntry::from(&d.summary),
            email: d.payload,
            attachments: d
                .attachments
                .iter()
                .map(|a| QueueAttachment {
                    name: a.name.clone(),
                    content_type: a.content_type.clone(),
                    size: a.size,
                    sha256: a.sha256.clone(),
                })
                .collect(),
            recipients: d
                .recipients
                .iter()
                .map(|r| QueueRecipient {
                    address: r.address.clone(),
                    state: serde_json::to_value(r.state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    detail: r.detail.clone(),
                })
                .collect(),
            attempts: d
                .attempts
                .iter()
                .map(|a| QueueAttempt {
                    number: a.number,
                    at: unix_ms(a.at),
                    sender: a.sender.clone(),
                    outcome: a.outcome.clone(),
                    detail: a.detail.clone(),
                    retry_after_secs: a.retry_after.map(|d| d.as_secs()),
                })
                .collect(),
        }
    }
}

impl fmt::Display for QueueShowReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.entry;
        writeln!(f, "{} <{}>: {}", e.id, e.message_id, e.state)?;
        if let Some(subject) = self.email.get("subject").and_then(|s| s.as_str()) {
            writeln!(f, "  subject: {subject}")?;
        }
        writeln!(f, "  submitted: {}", utc(e.created_at))?;
        if e.state == "queued" {
            writeln!(f, "  next attempt not before: {}", utc(e.next_attempt_at))?;
        }
        if matches!(e.state.as_str(), "queued" | "held" | "sending") {
            writeln!(f, "  gives up at: {}", utc(e.expires_at))?;
        }
        if let Some(sender) = &e.pinned_sender {
            writeln!(f, "  pinned to: {sender} (after an uncertain outcome)")?;
        }
        for a in &self.attachments {
            writeln!(
                f,
                "  attachment: {} ({}, {} bytes)",
                a.name, a.content_type, a.size
            )?;
        }
        f.write_str("  recipients:")?;
        for r in &self.recipients {
            write!(f, "\n    {} {}", r.state, r.address)?;
            if let Some(detail) = r.detail.as_deref().filter(|d| !d.is_empty()) {
                write!(f, " ({detail})")?;
            }
        }
        if self.attempts.is_empty() {
            f.write_str("\n  attempts: none yet")?;
        } else {
            f.write_str("\n  attempts:")?;
            for a in &self.attempts {
                let sender = if a.sender.is_empty() { "-" } else { &a.sender };
                write!(
                    f,
                    "\n    {}. {} {} {}: {}",
                    a.number,
                    utc(a.at),
                    sender,
                    a.outcome,
                    a.detail
                )?;
                if let Some(secs) = a.retry_after_secs {
                    write!(f, " (the server asked to wait {secs} s)")?;
                }
            }
        }
        Ok(())
    }
}

/// One email a flush or run handled.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueRunEmail {
    pub id: String,
    pub message_id: String,
    /// The sender of the attempt's last try (empty when none was chosen).
    pub sender: String,
    /// `delivered`, `temporary`, `permanent` or `uncertain`.
    pub outcome: String,
    /// The email's state after it.
    pub state: String,
}

impl fmt::Display for QueueRunEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sender = if self.sender.is_empty() {
            "-"
        } else {
            &self.sender
        };
        write!(
            f,
            "{} <{}>: {} via {sender}: now {}",
            self.id, self.message_id, self.outcome, self.state
        )
    }
}

/// `queue flush`, `queue run`: what was delivered, queued again, failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueRunReport {
    /// `flush` or `run` (text only).
    #[serde(skip)]
    pub command: &'static str,
    pub delivered: usize,
    /// Queued again for a later attempt.
    pub deferred: usize,
    pub failed: usize,
    /// Held or changed by someone else during the attempt.
    pub other: usize,
    pub emails: Vec<QueueRunEmail>,
}

impl fmt::Display for QueueRunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.emails.is_empty() {
            return write!(f, "queue {}: nothing was due", self.command);
        }
        write!(
            f,
            "queue {}: {} delivered, {} queued again, {} failed",
            self.command, self.delivered, self.deferred, self.failed
        )?;
        if self.other > 0 {
            write!(f, ", {} changed meanwhile", self.other)?;
        }
        Ok(())
    }
}

/// `queue retry`, `hold`, `release`, `delete`: what was changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueChangeReport {
    /// `retried`, `held`, `released` or `deleted`.
    pub action: &'static str,
    pub ids: Vec<String>,
}

impl fmt::Display for QueueChangeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ids.as_slice() {
            [] => write!(f, "nothing to do: no email was {}", self.action),
            [id] => write!(f, "{} {id}", self.action),
            ids => write!(
                f,
                "{} {} emails: {}",
                self.action,
                ids.len(),
                ids.join(", ")
            ),
        }
    }
}

/// `serve`: it stopped (SIGTERM or SIGINT) after the work in flight ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServeReport {
    /// The address it listened on (`127.0.0.1:8025`).
    pub address: String,
    /// Emails delivered while it ran.
    pub delivered: usize,
}

impl fmt::Display for ServeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = if self.delivered == 1 { "" } else { "s" };
        write!(
            f,
            "stopped serving on http://{} ({} email{plural} delivered)",
            self.address, self.delivered
        )
    }
}

// ---------------------------------------------------------------------------------------------
// errors

/// A failure as `--json` prints it: `{ "error": { kind, message, retry_after_secs? } }` on
/// stdout. Its text is what stderr says: each line of the message after `error: ` (or
/// `partly sent: `), then the wait the server asked for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorReport {
    pub error: ErrorDetail,
}

/// A failure's kind, message and the wait the server asked for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorDetail {
    #[serde(serialize_with = "kind_name")]
    pub kind: FailureKind,
    pub message: String,
    /// Left out when the server asked for no wait.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u32>,
}

impl ErrorDetail {
    fn failure(&self) -> Failure {
        Failure {
            kind: self.kind,
            message: self.message.clone(),
            retry_after_secs: self.retry_after_secs,
        }
    }
}

impl From<&Failure> for ErrorDetail {
    fn from(failure: &Failure) -> Self {
        Self {
            kind: failure.kind,
            message: failure.message.clone(),
            retry_after_secs: failure.retry_after_secs,
        }
    }
}

impl From<&Failure> for ErrorReport {
    fn from(failure: &Failure) -> Self {
        Self {
            error: failure.into(),
        }
    }
}

impl fmt::Display for ErrorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Partly sent is an outcome to act on, not an error.
        let label = if self.error.kind.partly_sent() {
            "partly sent"
        } else {
            "error"
        };
        let mut lines: Vec<String> = self
            .error
            .message
            .lines()
            .map(|line| format!("{label}: {line}"))
            .collect();
        if let Some(secs) = self.error.retry_after_secs {
            lines.push(format!(
                "error: the server asked to wait {secs} s before trying again"
            ));
        }
        f.write_str(&lines.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn to_json(report: &impl Serialize) -> serde_json::Value {
        serde_json::to_value(report).unwrap()
    }

    fn plugin() -> PluginReport {
        PluginReport {
            id: "smtp".into(),
            version: "0.1.0".into(),
            label: "SMTP".into(),
            description: "Sends through an SMTP server".into(),
            wit: "scan2x:mail@0.2.0".into(),
            source: "built-in".into(),
            replaces: None,
            sha256: "ab12".into(),
            events: vec!["job-output".into(), "pin-request".into()],
            network: vec!["smtp://{host}:{port}".into()],
            settings: vec![
                SettingReport {
                    key: "host".into(),
                    label: "Host".into(),
                    kind: "text".into(),
                    required: true,
                    default: None,
                    help: "the SMTP server".into(),
                },
                SettingReport {
                    key: "port".into(),
                    label: "Port".into(),
                    kind: "integer".into(),
                    required: false,
                    default: Some(DefaultValue::Integer(587)),
                    help: String::new(),
                },
                SettingReport {
                    key: "greeting".into(),
                    label: "Greeting".into(),
                    kind: "text".into(),
                    required: false,
                    default: Some(DefaultValue::Text("hi".into())),
                    help: String::new(),
                },
                SettingReport {
                    key: "enable_ssl".into(),
                    label: "SSL".into(),
                    kind: "boolean".into(),
                    required: false,
                    default: Some(DefaultValue::Boolean(true)),
                    help: String::new(),
                },
            ],
        }
    }

    fn attempt(sender: &str, result: AttemptResult, detail: &str) -> AttemptReport {
        AttemptReport {
            sender: sender.into(),
            plugin: "smtp".into(),
            result,
            detail: detail.into(),
        }
    }

    fn sent() -> SendReport {
        SendReport {
            sender: "backup".into(),
            plugin: "smtp".into(),
            event: "job-output".into(),
            job: Some(JobReport {
                name: Some("Invoices".into()),
                source_sender: None,
                recipients: vec!["acc@example.com".into()],
            }),
            message_id: "1@scan2x".into(),
            reason: "chosen: the preferred sender".into(),
            partly: Some(Failure::new(
                FailureKind::PartlySentRefusedForNow,
                "sent to a@example.com; refused for now: b@example.com: send it again later to just those",
            )),
            receipt: ReceiptReport {
                provider_id: Some("Q1".into()),
                accepted: vec!["a@example.com".into()],
                refused: vec![RefusedReport {
                    address: "b@example.com".into(),
                    reason: "452 mailbox full".into(),
                    for_now: true,
                }],
                detail: "250 OK".into(),
            },
            notes: vec!["it may be there twice".into()],
            attempts: vec![
                attempt(
                    "relay",
                    AttemptResult::Failed(FailureKind::Temporary),
                    "connection refused",
                ),
                attempt("backup", AttemptResult::Sent, "250 OK"),
            ],
        }
    }

    fn not_sent(kind: FailureKind) -> NotSentReport {
        NotSentReport {
            sender: "backup".into(),
            plugin: "smtp".into(),
            message_id: "1@scan2x".into(),
            error: ErrorDetail {
                kind,
                message: "no answer".into(),
                retry_after_secs: Some(30),
            },
            attempts: vec![
                attempt(
                    "relay",
                    AttemptResult::Failed(FailureKind::Temporary),
                    "busy",
                ),
                attempt("backup", AttemptResult::Failed(kind), "no answer"),
            ],
        }
    }

    #[test]
    fn the_table_pads_every_column_but_the_last() {
        let rows = [
            ["A", "LONGER", "LAST"].map(String::from),
            ["wider", "b", ""].map(String::from),
            ["ü", "c", "end"].map(String::from),
        ];
        assert_eq!(
            table("", &rows),
            "A      LONGER  LAST\nwider  b       \nü      c       end"
        );
        assert_eq!(
            table("  ", &rows[..1]),
            "  A  LONGER  LAST",
            "each row after the indent"
        );
        assert_eq!(table::<3>("", &[]), "");
    }

    #[test]
    fn plugins_json_is_the_array_of_plugins() {
        let mut file = plugin();
        file.source = "vendor/smtp.wasm".into();
        file.replaces = Some("smtp".into());
        file.settings.truncate(1);
        let report = PluginsReport {
            plugins: vec![file],
            host_keys: "Top-level keys:\n".into(),
        };
        assert_eq!(
            to_json(&report),
            json!([{
                "id": "smtp",
                "version": "0.1.0",
                "label": "SMTP",
                "description": "Sends through an SMTP server",
                "wit": "scan2x:mail@0.2.0",
                "source": "vendor/smtp.wasm",
                "replaces": "smtp",
                "sha256": "ab12",
                "events": ["job-output", "pin-request"],
                "network": ["smtp://{host}:{port}"],
                "settings": [{
                    "key": "host",
                    "label": "Host",
                    "kind": "text",
                    "required": true,
                    "default": null,
                    "help": "the SMTP server",
                }],
            }])
        );
        let defaults: Vec<_> = to_json(&plugin())["settings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["default"].clone())
            .collect();
        assert_eq!(
            defaults,
            [json!(null), json!(587), json!("hi"), json!(true)]
        );
        assert_eq!(to_json(&plugin())["replaces"], json!(null));
    }

    #[test]
    fn plugins_text_lists_each_plugin_then_the_host_keys() {
        let report = PluginsReport {
            plugins: vec![plugin(), plugin()],
            host_keys: "Top-level keys:\n  failover\n".into(),
        };
        let one = "\
smtp 0.1.0 - SMTP
  Sends through an SMTP server
  source:   built-in
  sha256:   ab12
  WIT:      scan2x:mail@0.2.0
  events:   job-output, pin-request
  network:  smtp://{host}:{port}
  settings:
    KEY         KIND     REQUIRED  DEFAULT  DESCRIPTION
    host        text     yes       -        Host: the SMTP server
    port        integer  no        587      Port
    greeting    text     no        \"hi\"     Greeting
    enable_ssl  boolean  no        true     SSL";
        assert_eq!(
            report.to_string(),
            format!("{one}\n\n{one}\n\nTop-level keys:\n  failover")
        );
    }

    #[test]
    fn check_json_and_text() {
        let report = CheckReport {
            file: "scan2x-mail.toml".into(),
            ok: true,
            senders: vec![
                CheckedSender {
                    name: "relay".into(),
                    plugin: "smtp".into(),
                    preferred: true,
                    allow_job_source: false,
                    allow_job_recipients: true,
                    grants: vec!["smtp://mx.example.com:587".into()],
                    notes: vec!["a note".into()],
                    memory_limit_mb: 512,
                    cpu_limit_secs: 10,
                    call_limit_secs: 900,
                    max_concurrent: 2,
                    max_per_minute: 30,
                },
                CheckedSender {
                    name: "quiet".into(),
                    plugin: "graph".into(),
                    preferred: false,
                    allow_job_source: false,
                    allow_job_recipients: false,
                    grants: vec![],
                    notes: vec![],
                    memory_limit_mb: 64,
                    cpu_limit_secs: 1,
                    call_limit_secs: 60,
                    max_concurrent: 4,
                    max_per_minute: 600,
                },
            ],
        };
        assert_eq!(
            to_json(&report),
            json!({
                "file": "scan2x-mail.toml",
                "ok": true,
                "senders": [{
                    "name": "relay",
                    "plugin": "smtp",
                    "preferred": true,
                    "allow_job_source": false,
                    "allow_job_recipients": true,
                    "grants": ["smtp://mx.example.com:587"],
                    "notes": ["a note"],
                    "memory_limit_mb": 512,
                    "cpu_limit_secs": 10,
                    "call_limit_secs": 900,
                    "max_concurrent": 2,
                    "max_per_minute": 30,
                }, {
                    "name": "quiet",
                    "plugin": "graph",
                    "preferred": false,
                    "allow_job_source": false,
                    "allow_job_recipients": false,
                    "grants": [],
                    "notes": [],
                    "memory_limit_mb": 64,
                    "cpu_limit_secs": 1,
                    "call_limit_secs": 60,
                    "max_concurrent": 4,
                    "max_per_minute": 600,
                }],
            })
        );
        assert_eq!(
            report.to_string(),
            "scan2x-mail.toml: settings are valid\n  \
             relay (smtp) [preferred, allow_job_recipients]: may reach smtp://mx.example.com:587\n    \
             note: a note\n  \
             quiet (graph): may reach nothing"
        );
    }

    #[test]
    fn test_json_and_text() {
        let report = TestReport {
            sender: "relay".into(),
            plugin: "smtp".into(),
            ok: true,
            detail: "logged in".into(),
        };
        assert_eq!(
            to_json(&report),
            json!({ "sender": "relay", "plugin": "smtp", "ok": true, "detail": "logged in" })
        );
        assert_eq!(report.to_string(), "sender 'relay' (smtp): OK: logged in");
    }

    #[test]
    fn route_json_and_text() {
        let mut report = RouteReport {
            event: "pin-request".into(),
            chosen: "backup".into(),
            failover: true,
            order: vec!["backup".into(), "relay".into()],
            senders: vec![
                VerdictReport {
                    sender: "relay".into(),
                    plugin: "smtp".into(),
                    eligible: true,
                    reason: "eligible: number 2 in line".into(),
                },
                VerdictReport {
                    sender: "backup".into(),
                    plugin: "smtp".into(),
                    eligible: true,
                    reason: "chosen: the preferred sender".into(),
                },
                VerdictReport {
                    sender: "office".into(),
                    plugin: "graph".into(),
                    eligible: false,
                    reason: "its plugin (graph) does not handle pin-request emails".into(),
                },
            ],
        };
        assert_eq!(
            to_json(&report),
            json!({
                "event": "pin-request",
                "chosen": "backup",
                "failover": true,
                "order": ["backup", "relay"],
                "senders": [
                    { "sender": "relay", "plugin": "smtp", "eligible": true, "reason": "eligible: number 2 in line" },
                    { "sender": "backup", "plugin": "smtp", "eligible": true, "reason": "chosen: the preferred sender" },
                    { "sender": "office", "plugin": "graph", "eligible": false, "reason": "its plugin (graph) does not handle pin-request emails" },
                ],
            })
        );
        let table = "\
event: pin-request
SENDER  PLUGIN  ELIGIBLE  REASON
relay   smtp    yes       eligible: number 2 in line
backup  smtp    yes       chosen: the preferred sender
office  graph   no        its plugin (graph) does not handle pin-request emails";
        assert_eq!(
            report.to_string(),
            format!("{table}\nchosen: backup; on a temporary failure then: relay")
        );
        report.failover = false;
        report.order.truncate(1);
        assert_eq!(report.to_string(), format!("{table}\nchosen: backup"));
    }

    #[test]
    fn send_json_says_the_outcome_receipt_and_attempts() {
        let report = sent();
        assert_eq!(
            to_json(&report),
            json!({
                "sender": "backup",
                "plugin": "smtp",
                "event": "job-output",
                "job": { "name": "Invoices", "source_sender": null, "recipients": ["acc@example.com"] },
                "message_id": "1@scan2x",
                "outcome": "partly-sent-refused-for-now",
                "receipt": {
                    "provider_id": "Q1",
                    "accepted": ["a@example.com"],
                    "refused": [{ "address": "b@example.com", "reason": "452 mailbox full", "for_now": true }],
                    "detail": "250 OK",
                },
                "notes": ["it may be there twice"],
                "attempts": [
                    { "sender": "relay", "plugin": "smtp", "result": "temporary", "detail": "connection refused" },
                    { "sender": "backup", "plugin": "smtp", "result": "sent", "detail": "250 OK" },
                ],
            })
        );
        let plain = SendReport {
            job: None,
            partly: None,
            ..sent()
        };
        assert_eq!(to_json(&plain)["outcome"], "sent");
        assert_eq!(to_json(&plain)["job"], json!(null));
        assert_eq!(
            Report::Sent(Box::new(report.clone())).failure(),
            report.partly,
            "the exit is the partly-sent failure"
        );
        assert_eq!(Report::Sent(Box::new(plain)).failure(), None);
    }

    #[test]
    fn send_text_says_each_try_the_receipt_and_the_notes() {
        assert_eq!(
            sent().to_string(),
            "\
tried 'relay' (smtp): temporary: connection refused
sent through 'backup' (smtp; chosen: the preferred sender)
  message-id: <1@scan2x>
  provider id: Q1
  accepted: a@example.com
  refused for now: b@example.com (452 mailbox full)
  note: it may be there twice
  server: 250 OK"
        );
        let mut plain = sent();
        plain.attempts.remove(0);
        plain.receipt.provider_id = None;
        plain.receipt.refused[0].for_now = false;
        plain.notes.clear();
        assert_eq!(
            plain.to_string(),
            "\
sent through 'backup' (smtp; chosen: the preferred sender)
  message-id: <1@scan2x>
  accepted: a@example.com
  refused for good: b@example.com (452 mailbox full)
  server: 250 OK"
        );
    }

    #[test]
    fn not_sent_json_text_and_failures() {
        let report = not_sent(FailureKind::Uncertain);
        assert_eq!(
            to_json(&report),
            json!({
                "sender": "backup",
                "plugin": "smtp",
                "message_id": "1@scan2x",
                "error": { "kind": "uncertain", "message": "no answer", "retry_after_secs": 30 },
                "attempts": [
                    { "sender": "relay", "plugin": "smtp", "result": "temporary", "detail": "busy" },
                    { "sender": "backup", "plugin": "smtp", "result": "uncertain", "detail": "no answer" },
                ],
            })
        );
        assert_eq!(
            report.to_string(),
            "'relay' (smtp): temporary: busy\n'backup' (smtp): uncertain: no answer\nmessage-id: <1@scan2x>"
        );
        let short = Report::NotSent(report.clone()).failure().unwrap();
        assert_eq!(
            (short.kind, short.message.as_str(), short.retry_after_secs),
            (FailureKind::Uncertain, "uncertain (backup)", Some(30))
        );
        assert_eq!(report.failure_in_full().message, report.to_string());
        assert_eq!(
            not_sent(FailureKind::Rejected).to_string(),
            "'relay' (smtp): temporary: busy\n'backup' (smtp): rejected: no answer",
            "the Message-ID only when the email may be there"
        );
    }

    #[test]
    fn error_json_and_text() {
        let mut failure = Failure::new(FailureKind::InvalidSettings, "line one\nline two");
        assert_eq!(
            to_json(&ErrorReport::from(&failure)),
            json!({ "error": { "kind": "invalid-settings", "message": "line one\nline two" } }),
            "no retry_after_secs when there is no wait"
        );
        assert_eq!(
            ErrorReport::from(&failure).to_string(),
            "error: line one\nerror: line two"
        );
        failure.kind = FailureKind::Temporary;
        failure.retry_after_secs = Some(7);
        assert_eq!(
            to_json(&ErrorReport::from(&failure)),
            json!({ "error": { "kind": "temporary", "message": "line one\nline two", "retry_after_secs": 7 } })
        );
        assert_eq!(
            ErrorReport::from(&failure).to_string(),
            "error: line one\nerror: line two\nerror: the server asked to wait 7 s before trying again"
        );
        let partly = Failure::new(FailureKind::PartlySentRefusedForGood, "sent to a");
        assert_eq!(
            ErrorReport::from(&partly).to_string(),
            "partly sent: sent to a"
        );
        assert_eq!(
            ErrorReport::from(&Failure::new(FailureKind::Internal, "")).to_string(),
            ""
        );
    }

    fn entry(state: &str) -> QueueEntry {
        QueueEntry {
            id: "e1".into(),
            message_id: "m1@scan2x-mail".into(),
            state: state.into(),
            created_at: 1_767_225_600_000,
            next_attempt_at: 1_767_225_900_000,
            expires_at: 1_767_657_600_000,
            attempts: 1,
            recipients_owed: 1,
            pinned_sender: None,
            last_error: Some("temporary from \"relay\": connection refused".into()),
        }
    }

    #[test]
    fn times_are_utc_text() {
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(1_767_225_600_000), "2026-01-01 00:00:00Z");
        assert_eq!(utc(951_827_696_999), "2000-02-29 12:34:56Z");
    }

    #[test]
    fn submit_json_and_text() {
        let mut report = SubmitReport {
            id: "e1".into(),
            message_id: "m1@scan2x-mail".into(),
            duplicate: false,
        };
        assert_eq!(
            to_json(&report),
            json!({ "id": "e1", "message_id": "m1@scan2x-mail", "duplicate": false })
        );
        assert_eq!(report.to_string(), "queued e1 <m1@scan2x-mail>");
        report.duplicate = true;
        assert_eq!(
            report.to_string(),
            "queued e1 <m1@scan2x-mail> (already queued: idempotency key reused)"
        );
    }

    #[test]
    fn queue_list_json_is_the_array_and_text_a_table() {
        let report = QueueListReport {
            emails: vec![entry("queued")],
        };
        assert_eq!(
            to_json(&report),
            json!([{
                "id": "e1",
                "message_id": "m1@scan2x-mail",
                "state": "queued",
                "created_at": 1_767_225_600_000_i64,
                "next_attempt_at": 1_767_225_900_000_i64,
                "expires_at": 1_767_657_600_000_i64,
                "attempts": 1,
                "recipients_owed": 1,
                "pinned_sender": null,
                "last_error": "temporary from \"relay\": connection refused",
            }])
        );
        assert_eq!(
            report.to_string(),
            "ID  STATE   ATTEMPTS  OWED  NEXT ATTEMPT          MESSAGE-ID\n\
             e1  queued  1         1     2026-01-01 00:05:00Z  <m1@scan2x-mail>\n\
             e1: temporary from \"relay\": connection refused"
        );
        assert_eq!(
            QueueListReport { emails: vec![] }.to_string(),
            "the outbox is empty"
        );
    }

    #[test]
    fn queue_show_json_flattens_the_entry_and_lists_every_attempt() {
        let report = QueueShowReport {
            entry: entry("queued"),
            email: json!({ "subject": "Scan", "to": ["a@example.test"] }),
            attachments: vec![QueueAttachment {
                name: "scan.pdf".into(),
                content_type: "application/pdf".into(),
                size: 4,
                sha256: "ab".into(),
            }],
            recipients: vec![QueueRecipient {
                address: "a@example.test".into(),
                state: "owed".into(),
                detail: None,
            }],
            attempts: vec![QueueAttempt {
                number: 1,
                at: 1_767_225_600_000,
                sender: "office365".into(),
                outcome: "temporary".into(),
                detail: "temporary: 429".into(),
                retry_after_secs: Some(900),
            }],
        };
        let j = to_json(&report);
        assert_eq!(j["id"], "e1");
        assert_eq!(j["state"], "queued");
        assert_eq!(j["next_attempt_at"], 1_767_225_900_000_i64);
        assert_eq!(j["email"]["subject"], "Scan");
        assert_eq!(
            j["attachments"],
            json!([{ "name": "scan.pdf", "content_type": "application/pdf", "size": 4, "sha256": "ab" }])
        );
        assert_eq!(
            j["recipients"],
            json!([{ "address": "a@example.test", "state": "owed", "detail": null }])
        );
        assert_eq!(
            j["attempts"],
            json!([{
                "number": 1,
                "at": 1_767_225_600_000_i64,
                "sender": "office365",
                "outcome": "temporary",
                "detail": "temporary: 429",
                "retry_after_secs": 900,
            }])
        );
        assert_eq!(
            report.to_string(),
            "e1 <m1@scan2x-mail>: queued\n  subject: Scan\n  submitted: 2026-01-01 00:00:00Z\n  \
             next attempt not before: 2026-01-01 00:05:00Z\n  gives up at: 2026-01-06 00:00:00Z\n  \
             attachment: scan.pdf (application/pdf, 4 bytes)\n  recipients:\n    owed a@example.test\n  \
             attempts:\n    1. 2026-01-01 00:00:00Z office365 temporary: temporary: 429 \
             (the server asked to wait 900 s)"
        );
    }

    #[test]
    fn queue_run_json_counts_and_lists_the_emails() {
        let email = QueueRunEmail {
            id: "e1".into(),
            message_id: "m1@scan2x-mail".into(),
            sender: "relay".into(),
            outcome: "delivered".into(),
            state: "delivered".into(),
        };
        let report = QueueRunReport {
            command: "flush",
            delivered: 1,
            deferred: 0,
            failed: 0,
            other: 0,
            emails: vec![email.clone()],
        };
        assert_eq!(
            to_json(&report),
            json!({
                "delivered": 1, "deferred": 0, "failed": 0, "other": 0,
                "emails": [{ "id": "e1", "message_id": "m1@scan2x-mail", "sender": "relay",
                             "outcome": "delivered", "state": "delivered" }],
            })
        );
        assert_eq!(
            report.to_string(),
            "queue flush: 1 delivered, 0 queued again, 0 failed"
        );
        assert_eq!(
            email.to_string(),
            "e1 <m1@scan2x-mail>: delivered via relay: now delivered"
        );
        let empty = QueueRunReport {
            command: "run",
            delivered: 0,
            deferred: 0,
            failed: 0,
            other: 0,
            emails: vec![],
        };
        assert_eq!(empty.to_string(), "queue run: nothing was due");
    }

    #[test]
    fn queue_change_json_and_text() {
        let report = QueueChangeReport {
            action: "held",
            ids: vec!["e1".into()],
        };
        assert_eq!(to_json(&report), json!({ "action": "held", "ids": ["e1"] }));
        assert_eq!(report.to_string(), "held e1");
        let none = QueueChangeReport {
            action: "retried",
            ids: vec![],
        };
        assert_eq!(none.to_string(), "nothing to do: no email was retried");
    }

    #[test]
    fn a_report_serializes_as_its_command_s_shape() {
        let test = TestReport {
            sender: "relay".into(),
            plugin: "smtp".into(),
            ok: true,
            detail: "d".into(),
        };
        assert_eq!(to_json(&Report::Test(test.clone())), to_json(&test));
        assert_eq!(Report::Test(test.clone()).to_string(), test.to_string());
    }
}
