//! The outbox as the host uses it: where its data folder is, an email checked and handed to it
//! (`submit`), and the deliverer that carries what it claims ([`Deliverer`], the outbox's
//! [`Deliver`]) — each claimed email back into a [`Draft`], routed with [`decide`] exactly as
//! `send` routes, sent along [`dispatch::deliver`], and its attempts said in the outbox's words,
//! every detail redacted. It prints nothing and builds no report: `main.rs` does.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use scan2x_mail_outbox::{
    AttachmentSource, Attempt, Claimed, Deliver, OutboxError, RecipientVerdict, Submission,
};

use crate::dispatch;
use crate::message::{AttachmentSpec, Draft, Prepared, given_message_id};
use crate::outcome::{Failure, FailureKind};
use crate::router::{self, Candidate, Decision, Request};
use crate::runtime::{Runtime, Sender};
use crate::secret::redact;
use crate::senders::{self, Wanted};
use crate::settings::Settings;
use crate::throttle::Throttle;

/// The environment variable naming the data folder when `--data-dir` is not given.
pub const DATA_DIR_ENV: &str = "SCAN2X_MAIL_DATA_DIR";

/// The data folder: `--data-dir`, else `$SCAN2X_MAIL_DATA_DIR`, else
/// `$XDG_DATA_HOME/scan2x-mail`, else `~/.local/share/scan2x-mail`.
pub fn data_dir(flag: Option<&Path>) -> Result<PathBuf, Failure> {
    if let Some(dir) = flag {
        return Ok(dir.to_path_buf());
    }
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = env(DATA_DIR_ENV) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(xdg) = env("XDG_DATA_HOME") {
        return Ok(PathBuf::from(xdg).join("scan2x-mail"));
    }
    if let Some(home) = env("HOME") {
        return Ok(PathBuf::from(home)
            .join(".local")
            .join("share")
            .join("scan2x-mail"));
    }
    Err(Failure::new(
        FailureKind::Usage,
        format!(
            "no data folder for the outbox: give --data-dir DIR (or set {DATA_DIR_ENV}); \
             neither XDG_DATA_HOME nor HOME is set"
        ),
    ))
}

/// An outbox error as the CLI's failure. A full disk and the folder's own troubles are exit 1
/// with the outbox's words; a reused idempotency key, an unknown id or an email in the wrong
/// state for the command are usage errors (exit 2); an attachment it cannot take is a message
/// error (exit 4).
pub fn outbox_failure(e: OutboxError) -> Failure {
    let kind = match &e {
        OutboxError::KeyReused { .. }
        | OutboxError::NotFound { .. }
        | OutboxError::WrongState { .. } => FailureKind::Usage,
        OutboxError::AttachmentUnreadable { .. }
        | OutboxError::AttachmentNotAFile { .. }
        | OutboxError::TooLarge { .. }
        | OutboxError::Invalid(_) => FailureKind::InvalidMessage,
        _ => FailureKind::Internal,
    };
    Failure::new(kind, e.to_string())
}

/// The Message-ID an email is submitted with, in the outbox's form (`<left@right>`): the
/// caller's, else one derived from the idempotency key and the data folder (so the same key
/// gives the same Message-ID and a repeated submit is recognised as the same email), else a new
/// one.
pub fn submit_message_id(
    given: Option<&str>,
    key: Option<&str>,
    data_dir: &Path,
) -> Result<String, Failure> {
    let id = match (given, key) {
        (Some(given), _) => given_message_id(given)?,
        (None, Some(key)) => {
            use sha2::{Digest, Sha256};
            let folder = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.into());
            let mut h = Sha256::new();
            h.update(b"scan2x-mail idempotency key\0");
            h.update(folder.to_string_lossy().as_bytes());
            h.update(b"\0");
            h.update(key.as_bytes());
            format!("{}@scan2x-mail", &hex::encode(h.finalize())[..32])
        }
        (None, None) => crate::message::new_message_id(),
    };
    Ok(format!("<{id}>"))
}

/// What `submit` hands the outbox for a checked email: the draft as JSON without its
/// attachments (the outbox spools them, named and typed as `prepare` resolved them), every
/// envelope recipient, the key and the Message-ID.
pub fn submission(
    draft: &Draft,
    prepared: &Prepared,
    message_id: String,
    idempotency_key: Option<String>,
) -> Result<Submission, Failure> {
    let stored = Draft {
        attachments: Vec::new(),
        message_id: None,
        ..draft.clone()
    };
    let payload = serde_json::to_value(&stored)
        .map_err(|e| Failure::new(FailureKind::Internal, format!("the email as JSON: {e}")))?;
    let email = &prepared.message;
    let recipients: Vec<String> = email
        .to
        .iter()
        .chain(&email.cc)
        .chain(&email.bcc)
        .map(|m| m.address.clone())
        .collect();
    let attachments = draft
        .attachments
        .iter()
        .zip(&email.attachments)
        .map(|(spec, read)| AttachmentSource {
            name: read.filename.clone(),
            content_type: read.content_type.clone(),
            path: match spec {
                AttachmentSpec::Path(p) | AttachmentSpec::Detailed { path: p, .. } => p.clone(),
            },
        })
        .collect();
    Ok(Submission {
        payload,
        attachments,
        recipients,
        idempotency_key,
        message_id: Some(message_id),
        lifetime: None,
    })
}

/// `submit`: the email checked as `send` checks it (addresses, subject, files: invalid-message),
/// the settings file read (invalid-settings), a sender it names looked up (`unknown_sender` when
/// the file has none of that name), its Message-ID fixed, then handed to `outbox`; returns once
/// it is durable. Blocks: the files are read and synced here.
pub fn submit(
    config: &Path,
    outbox: &scan2x_mail_outbox::Outbox,
    draft: &Draft,
    idempotency_key: Option<String>,
    unknown_sender: FailureKind,
) -> Result<scan2x_mail_outbox::Submitted, Failure> {
    submit_with(config, None, outbox, draft, idempotency_key, unknown_sender)
}

/// [`submit`], with the settings already read (`serve`'s, those its senders were made of) or
/// read from `config` when `settings` is none.
pub fn submit_with(
    config: &Path,
    settings: Option<&Settings>,
    outbox: &scan2x_mail_outbox::Outbox,
    draft: &Draft,
    idempotency_key: Option<String>,
    unknown_sender: FailureKind,
) -> Result<scan2x_mail_outbox::Submitted, Failure> {
    let message_id = submit_message_id(
        draft.message_id.as_deref(),
        idempotency_key.as_deref(),
        outbox.dir(),
    )?;
    let inner = message_id[1..message_id.len() - 1].to_string();
    let prepared = Draft {
        message_id: Some(inner),
        ..draft.clone()
    }
    .prepare()?;
    let loaded;
    let settings = match settings {
        Some(settings) => settings,
        None => {
            loaded = Settings::load(config)
                .map_err(|e| Failure::new(FailureKind::InvalidSettings, e.to_string()))?;
            &loaded
        }
    };
    if let Some(name) = &prepared.sender
        && !settings.senders.iter().any(|s| &s.name == name)
    {
        let names: Vec<&str> = settings.senders.iter().map(|s| s.name.as_str()).collect();
        return Err(Failure::new(
            unknown_sender,
            format!(
                "no sender named '{name}'; the settings file has: {}",
                names.join(", ")
            ),
        ));
    }
    let submission = submission(draft, &prepared, message_id, idempotency_key)?;
    drop(prepared);
    outbox.submit(submission).map_err(outbox_failure)
}

/// Routes an email: the decision, or the failure that explains why no sender may carry it. The
/// one routing over live senders: `send`, `route` and the [`Deliverer`] all use it.
pub fn decide(senders: &[Sender], request: &Request<'_>) -> Result<Decision, Failure> {
    let candidates: Vec<Candidate<'_>> = senders
        .iter()
        .map(|s| Candidate {
            name: &s.settings.name,
            plugin_id: &s.plugin.info.id,
            speaks_smtp: s.plugin.speaks_smtp(),
            preferred: s.settings.preferred,
            allow_job_source: s.settings.allow_job_source,
            allow_job_recipients: s.settings.allow_job_recipients,
            events: &s.plugin.info.events,
        })
        .collect();
    router::choose(&candidates, request)
}

/// Carries the outbox's claimed emails: made once per flush (the settings read, every sender
/// assembled), then one [`Deliver::deliver`] per email.
pub struct Deliverer<'a> {
    runtime: &'a Runtime,
    settings: Settings,
    senders: Vec<Sender>,
    throttle: Throttle,
}

impl<'a> Deliverer<'a> {
    /// Reads the settings and makes every sender. A settings file that does not load fails the
    /// whole flush (exit 3) before anything is claimed: the emails wait, untouched, until it is
    /// fixed, instead of each being failed for a fault that is not theirs.
    pub async fn new(runtime: &'a Runtime, config: &Path) -> Result<Self, Failure> {
        Self::reloaded(runtime, config, None).await
    }

    /// [`Deliverer::new`], keeping the throttle gates of `previous` for the senders whose name
    /// and limits are unchanged (a reload: the deliveries in flight still count).
    pub async fn reloaded(
        runtime: &'a Runtime,
        config: &Path,
        previous: Option<&Deliverer<'_>>,
    ) -> Result<Self, Failure> {
        let settings_failure = |e: crate::settings::SettingsErrors| {
            Failure::new(FailureKind::InvalidSettings, e.to_string())
        };
        let settings = Settings::load(config).map_err(settings_failure)?;
        let senders = senders::assemble(runtime, &settings, Wanted::All)
            .await
            .map_err(settings_failure)?;
        let throttle = Throttle::new(&settings, previous.map(|p| &p.throttle));
        Ok(Self {
            runtime,
            settings,
            senders,
            throttle,
        })
    }

    /// The per-sender limits every delivery passes.
    pub fn throttle(&self) -> &Throttle {
        &self.throttle
    }

    /// The settings the senders were made of.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The names of the senders, in the settings' order.
    pub fn sender_names(&self) -> Vec<String> {
        self.senders
            .iter()
            .map(|s| s.settings.name.clone())
            .collect()
    }

    /// How long a claim must hold an email so that its delivery ends before the lease does:
    /// every sender's call limit together (a failover may try each in turn), and a minute for
    /// the host's own work; at least the outbox's default.
    pub fn lease(&self) -> Duration {
        let calls: Duration = self.senders.iter().map(|s| s.limits.call_wall).sum();
        (calls + Duration::from_secs(60)).max(scan2x_mail_outbox::Options::default().lease)
    }

    /// One claimed email, delivered as `send` would deliver it, to the recipients still owed,
    /// each sender's turn taken from the throttle. None: no sender was tried, the throttle
    /// being closed (the service is stopping) — the claim is to be handed back as it was.
    pub async fn try_deliver(&self, item: &Claimed) -> Option<Attempt> {
        let prepared = match draft_of(item).and_then(Draft::prepare) {
            Ok(mut p) => {
                narrow(&mut p, &item.recipients_owed);
                p
            }
            // The stored email no longer makes a message (its spool file is gone, say): no
            // later try would do better.
            Err(f) => return Some(Attempt::permanent("", detail_of(&f))),
        };
        let message = &prepared.message;
        if message.to.is_empty() && message.cc.is_empty() && message.bcc.is_empty() {
            return Some(Attempt::permanent("", "no recipient left to send to"));
        }
        // After an uncertain outcome only the pinned sender may carry it: named, so no failover.
        let explicit = item.pinned_sender.as_deref().or(prepared.sender.as_deref());
        let decision = match decide(
            &self.senders,
            &Request {
                event: message.event,
                explicit,
                job: prepared.job.as_ref(),
            },
        ) {
            Ok(d) => d,
            // Routing depends only on the settings and the email: the same answer later. The
            // administrator fixes the settings and retries it (`queue retry ID`).
            Err(f) => {
                return Some(Attempt::permanent(
                    explicit.unwrap_or(""),
                    format!("cannot route it: {}", detail_of(&f)),
                ));
            }
        };
        let attempts = dispatch::deliver(
            self.runtime,
            &self.senders,
            &decision,
            self.settings.failover,
            message,
            Some(&self.throttle),
        )
        .await;
        if attempts.is_empty() && self.throttle.is_closed() {
            return None;
        }
        Some(to_attempt(&attempts))
    }
}

impl Deliver for Deliverer<'_> {
    /// [`Deliverer::try_deliver`]; `queue run` and `flush` never close the throttle, so a
    /// delivery is always tried (a hand-back would be a temporary attempt by no sender).
    async fn deliver(&self, item: &Claimed) -> Attempt {
        self.try_deliver(item).await.unwrap_or_else(|| {
            Attempt::temporary("", "no sender was tried: the service was stopping", None)
        })
    }
}

/// The stored email back into a draft: its spooled attachments, the Message-ID fixed at submit
/// (without its angle brackets, as [`crate::message::Email`] holds it).
fn draft_of(item: &Claimed) -> Result<Draft, Failure> {
    let mut draft: Draft = serde_json::from_value(item.payload.clone()).map_err(|e| {
        Failure::new(
            FailureKind::InvalidMessage,
            format!("the stored email cannot be read: {e}"),
        )
    })?;
    draft.attachments = item
        .attachments
        .iter()
        .map(|a| AttachmentSpec::Detailed {
            path: a.path.clone(),
            filename: Some(a.name.clone()),
            content_type: Some(a.content_type.clone()),
        })
        .collect();
    let id = item
        .message_id
        .strip_prefix('<')
        .and_then(|m| m.strip_suffix('>'))
        .unwrap_or(&item.message_id);
    draft.message_id = Some(id.to_string());
    Ok(draft)
}

/// To, Cc and Bcc narrowed to the recipients still owed: an accepted one is never sent again.
fn narrow(prepared: &mut Prepared, owed: &[String]) {
    let owed: HashSet<&str> = owed.iter().map(String::as_str).collect();
    let email = &mut prepared.message;
    for list in [&mut email.to, &mut email.cc, &mut email.bcc] {
        list.retain(|m| owed.contains(m.address.as_str()));
    }
}

/// A failure as an attempt's detail, redacted: its message, after its kind when the outcome
/// does not say it (a permanent one: `rejected`, `auth-failed`, `invalid-settings`, …).
fn detail_of(f: &Failure) -> String {
    match f.kind {
        FailureKind::Temporary | FailureKind::Uncertain => redact(&f.message).into_owned(),
        kind => redact(&format!("{}: {}", kind.as_str(), f.message)).into_owned(),
    }
}

/// Every sender `dispatch::deliver` tried, in the outbox's words: the last one decides the
/// outcome; those before it (failover) were passed over, each a temporary failure.
pub fn to_attempt(attempts: &[dispatch::Attempt]) -> Attempt {
    let Some((last, before)) = attempts.split_last() else {
        return Attempt::permanent("", "no sender was tried");
    };
    let mut attempt = match &last.result {
        Ok(sent) => {
            let receipt = &sent.receipt;
            let mut detail = receipt.detail.clone();
            for note in &sent.notes {
                detail.push_str(&format!("; note: {note}"));
            }
            let mut a = Attempt::delivered(&last.sender, redact(&detail).into_owned());
            for accepted in &receipt.accepted {
                a = a.with_recipient(accepted, RecipientVerdict::Accepted, "");
            }
            for (r, for_now) in receipt.refused.iter().zip(&sent.refused_for_now) {
                let verdict = if *for_now {
                    RecipientVerdict::RefusedForNow
                } else {
                    RecipientVerdict::RefusedForGood
                };
                a = a.with_recipient(&r.address, verdict, redact(&r.reason).into_owned());
            }
            a
        }
        Err(f) => match f.kind {
            FailureKind::Temporary => Attempt::temporary(
                &last.sender,
                detail_of(f),
                f.retry_after_secs.map(|s| Duration::from_secs(s.into())),
            ),
            FailureKind::Uncertain => Attempt::uncertain(&last.sender, detail_of(f)),
            _ => Attempt::permanent(&last.sender, detail_of(f)),
        },
    };
    for a in before {
        let (detail, retry_after) = match &a.result {
            Err(f) => (
                detail_of(f),
                f.retry_after_secs.map(|s| Duration::from_secs(s.into())),
            ),
            Ok(sent) => (redact(&sent.receipt.detail).into_owned(), None),
        };
        attempt = attempt.after_passing_over(&a.sender, detail, retry_after);
    }
    attempt
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Sent;
    use crate::wit::types::{Receipt, RefusedRecipient};
    use scan2x_mail_outbox::Outcome;

    fn tried(sender: &str, result: Result<Sent, Failure>) -> dispatch::Attempt {
        dispatch::Attempt {
            sender: sender.into(),
            plugin: "smtp".into(),
            result,
        }
    }

    fn temporary(message: &str, retry_after: Option<u32>) -> Failure {
        Failure {
            retry_after_secs: retry_after,
            ..Failure::new(FailureKind::Temporary, message)
        }
    }

    #[test]
    fn a_failover_is_its_passed_over_senders_then_the_one_that_decided() {
        let sent = Sent {
            receipt: Receipt {
                provider_id: None,
                accepted: vec!["a@example.test".into()],
                refused: vec![
                    RefusedRecipient {
                        address: "b@example.test".into(),
                        reason: "452 full".into(),
                    },
                    RefusedRecipient {
                        address: "c@example.test".into(),
                        reason: "550 unknown".into(),
                    },
                ],
                detail: "250 queued".into(),
            },
            refused_for_now: vec![true, false],
            notes: vec![],
        };
        let a = to_attempt(&[
            tried("relay", Err(temporary("connection refused", Some(30)))),
            tried("backup", Ok(sent)),
        ]);
        assert_eq!(
            a.outcome,
            Outcome::Delivered {
                sender: "backup".into(),
                detail: "250 queued".into()
            }
        );
        assert_eq!(a.passed_over.len(), 1);
        assert_eq!(a.passed_over[0].sender, "relay");
        assert_eq!(a.passed_over[0].detail, "connection refused");
        assert_eq!(a.passed_over[0].retry_after, Some(Duration::from_secs(30)));
        let verdicts: Vec<(&str, RecipientVerdict)> = a
            .recipients
            .iter()
            .map(|r| (r.address.as_str(), r.verdict))
            .collect();
        assert_eq!(
            verdicts,
            [
                ("a@example.test", RecipientVerdict::Accepted),
                ("b@example.test", RecipientVerdict::RefusedForNow),
                ("c@example.test", RecipientVerdict::RefusedForGood),
            ]
        );
    }

    #[test]
    fn each_failure_kind_maps_to_its_outcome() {
        let one = |f: Failure| to_attempt(&[tried("relay", Err(f))]).outcome.kind();
        assert_eq!(one(temporary("busy", Some(7))), "temporary");
        assert_eq!(
            one(Failure::new(FailureKind::Uncertain, "lost")),
            "uncertain"
        );
        let rejected = to_attempt(&[tried(
            "relay",
            Err(Failure::new(FailureKind::Rejected, "550 no")),
        )]);
        assert_eq!(rejected.outcome.detail(), "rejected: 550 no");
        for kind in [
            FailureKind::Rejected,
            FailureKind::AuthFailed,
            FailureKind::InvalidSettings,
            FailureKind::Denied,
            FailureKind::PluginFailed,
            FailureKind::InvalidMessage,
        ] {
            assert_eq!(one(Failure::new(kind, "no")), "permanent", "{kind:?}");
        }
        let t = to_attempt(&[tried("relay", Err(temporary("429", Some(900))))]);
        assert_eq!(
            t.outcome,
            Outcome::Temporary {
                sender: "relay".into(),
                detail: "429".into(),
                retry_after: Some(Duration::from_secs(900)),
            }
        );
    }

    #[test]
    fn the_data_folder_is_the_flag_first() {
        assert_eq!(
            data_dir(Some(Path::new("/srv/mail"))).unwrap(),
            PathBuf::from("/srv/mail")
        );
    }

    #[test]
    fn a_key_gives_the_same_message_id_each_time_and_a_given_one_wins() {
        let dir = Path::new("/nonexistent/data");
        let a = submit_message_id(None, Some("job-7"), dir).unwrap();
        assert_eq!(a, submit_message_id(None, Some("job-7"), dir).unwrap());
        assert_ne!(a, submit_message_id(None, Some("job-8"), dir).unwrap());
        assert!(a.starts_with('<') && a.ends_with("@scan2x-mail>"), "{a}");
        assert_eq!(
            submit_message_id(Some("x@y"), Some("job-7"), dir).unwrap(),
            "<x@y>"
        );
        assert_ne!(
            submit_message_id(None, None, dir).unwrap(),
            submit_message_id(None, None, dir).unwrap()
        );
        assert!(submit_message_id(Some("bad"), None, dir).is_err());
    }

    #[test]
    fn a_stored_email_comes_back_with_its_spool_files_and_message_id() {
        let draft = Draft {
            to: vec!["Ann <a@example.test>".into()],
            subject: Some("scan".into()),
            ..Draft::default()
        };
        let item = Claimed {
            id: "1".into(),
            message_id: "<m@scan2x-mail>".into(),
            payload: serde_json::to_value(&draft).unwrap(),
            attachments: vec![scan2x_mail_outbox::SpooledAttachment {
                name: "Scan.pdf".into(),
                content_type: "application/pdf".into(),
                path: "/spool/1/0".into(),
                size: 4,
                sha256: String::new(),
            }],
            recipients_owed: vec!["a@example.test".into()],
            pinned_sender: None,
            attempts_so_far: 0,
            locked_until: std::time::SystemTime::UNIX_EPOCH,
        };
        let back = draft_of(&item).unwrap();
        assert_eq!(back.message_id.as_deref(), Some("m@scan2x-mail"));
        assert_eq!(back.to, draft.to);
        assert_eq!(
            back.attachments,
            [AttachmentSpec::Detailed {
                path: "/spool/1/0".into(),
                filename: Some("Scan.pdf".into()),
                content_type: Some("application/pdf".into()),
            }]
        );
    }
}
