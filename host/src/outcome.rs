//! How a run ends: the kinds of failure, what each asks of the administrator, and the exit code
//! each maps to. Callers match on [`FailureKind`], never on message text.
//!
//! | exit | kind | what to do |
//! |---|---|---|
//! | 0 | — | done |
//! | 1 | `plugin-failed`, `internal` | a plugin crashed or hit a limit, or the host failed; report it |
//! | 2 | `usage` | fix the command line |
//! | 3 | `invalid-settings` | fix the settings file (or the sender's settings the plugin refused) |
//! | 4 | `invalid-message` | fix the message: an address, an attachment, its size |
//! | 5 | `auth-failed` | fix the credentials |
//! | 6 | `rejected` | the server refused the message for good; retrying will not help |
//! | 7 | `temporary` | try again later (server busy, connection refused, time-out) |
//! | 8 | `denied` | the sandbox refused a destination the sender was not granted |
//! | 9 | `uncertain` | the message was handed over and the answer lost: it may have been delivered; check before sending it again, with the same Message-ID |
//! | 10 | `partly-sent-refused-for-now` | sent to the accepted recipients; a server refused others for now (4xx): send again to just those, later |
//! | 11 | `partly-sent-refused-for-good` | sent to the accepted recipients; the others were refused for good (5xx) |
//!
//! `uncertain` comes from the host, not from a plugin: a failure after a hand-over whose answer
//! was lost ([`crate::capability::witness`]) is `uncertain` whatever the plugin then said. It is
//! never failed over and never retried by the host: the email may be in the recipient's inbox.

use std::fmt;

use crate::capability::witness::Witnessed;
use crate::wit::types::{Receipt, SendError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Internal,
    PluginFailed,
    Usage,
    InvalidSettings,
    InvalidMessage,
    AuthFailed,
    Rejected,
    Temporary,
    Denied,
    Uncertain,
    PartlySentRefusedForNow,
    PartlySentRefusedForGood,
}

impl FailureKind {
    pub fn exit_code(self) -> u8 {
        match self {
            FailureKind::Internal | FailureKind::PluginFailed => 1,
            FailureKind::Usage => 2,
            FailureKind::InvalidSettings => 3,
            FailureKind::InvalidMessage => 4,
            FailureKind::AuthFailed => 5,
            FailureKind::Rejected => 6,
            FailureKind::Temporary => 7,
            FailureKind::Denied => 8,
            FailureKind::Uncertain => 9,
            FailureKind::PartlySentRefusedForNow => 10,
            FailureKind::PartlySentRefusedForGood => 11,
        }
    }

    /// The email went out to some of its recipients: an outcome to report, not an error.
    pub fn partly_sent(self) -> bool {
        matches!(
            self,
            FailureKind::PartlySentRefusedForNow | FailureKind::PartlySentRefusedForGood
        )
    }

    /// The name used in `--json` output; the same words as the WIT `send-error` cases.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Internal => "internal",
            FailureKind::PluginFailed => "plugin-failed",
            FailureKind::Usage => "usage",
            FailureKind::InvalidSettings => "invalid-settings",
            FailureKind::InvalidMessage => "invalid-message",
            FailureKind::AuthFailed => "auth-failed",
            FailureKind::Rejected => "rejected",
            FailureKind::Temporary => "temporary",
            FailureKind::Denied => "denied",
            FailureKind::Uncertain => "uncertain",
            FailureKind::PartlySentRefusedForNow => "partly-sent-refused-for-now",
            FailureKind::PartlySentRefusedForGood => "partly-sent-refused-for-good",
        }
    }
}

/// A failure with its kind and a message for the administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
    /// Seconds the server asked to wait, for `temporary`.
    pub retry_after_secs: Option<u32>,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after_secs: None,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl From<SendError> for Failure {
    fn from(e: SendError) -> Self {
        let (kind, message) = match e {
            SendError::InvalidSettings(m) => (FailureKind::InvalidSettings, m),
            SendError::InvalidMessage(m) => (FailureKind::InvalidMessage, m),
            SendError::AuthFailed(m) => (FailureKind::AuthFailed, m),
            SendError::Rejected(m) => (FailureKind::Rejected, m),
            SendError::Denied(m) => (FailureKind::Denied, m),
            SendError::Temporary(t) => {
                return Failure {
                    kind: FailureKind::Temporary,
                    message: t.reason,
                    retry_after_secs: t.retry_after_secs,
                };
            }
        };
        Failure::new(kind, message)
    }
}

/// An email a sender took: its receipt, which of the refused recipients were refused for now,
/// and what the host adds.
#[derive(Debug, Clone)]
pub struct Sent {
    pub receipt: Receipt,
    /// One per `receipt.refused`: refused for now (a 4xx), so a later try may reach it.
    pub refused_for_now: Vec<bool>,
    /// Things the caller should know, e.g. that an earlier hand-over in the call was lost.
    pub notes: Vec<String>,
}

impl Sent {
    /// The exit when not every recipient took the email: refused for now wins over refused for
    /// good, since there is something left to retry. None when all were accepted.
    pub fn partly(&self) -> Option<Failure> {
        let (now, good): (Vec<_>, Vec<_>) = self
            .receipt
            .refused
            .iter()
            .zip(&self.refused_for_now)
            .partition(|(_, now)| **now);
        let list = |refused: &[(&crate::wit::types::RefusedRecipient, &bool)]| {
            refused
                .iter()
                .map(|(r, _)| r.address.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let sent = self.receipt.accepted.join(", ");
        if !now.is_empty() {
            return Some(Failure::new(
                FailureKind::PartlySentRefusedForNow,
                format!(
                    "sent to {sent}; refused for now: {}: send it again later to just those",
                    list(&now)
                ),
            ));
        }
        (!good.is_empty()).then(|| {
            Failure::new(
                FailureKind::PartlySentRefusedForGood,
                format!("sent to {sent}; refused for good: {}", list(&good)),
            )
        })
    }
}

/// A failed call's failure, read with what the host itself saw: after a lost hand-over it is
/// `uncertain`, whatever the plugin said; after a certificate the host refused, a settings
/// problem naming it (a plugin may have called it a connection error).
pub fn refine(failure: Failure, witnessed: &Witnessed) -> Failure {
    if !witnessed.lost.is_empty() {
        tracing::info!(
            "after a lost hand-over the plugin answered {}: {}",
            failure.kind.as_str(),
            failure.message
        );
        return Failure::new(
            FailureKind::Uncertain,
            format!(
                "{}. The email may have been delivered: check before sending it again, \
                 and send it again only with the same Message-ID",
                witnessed.lost.join("; and ")
            ),
        );
    }
    match &witnessed.certificate {
        Some(refused) if failure.kind != FailureKind::InvalidSettings => {
            tracing::info!(
                "after a refused certificate the plugin answered {}: {}",
                failure.kind.as_str(),
                failure.message
            );
            Failure::new(FailureKind::InvalidSettings, refused.clone())
        }
        _ => failure,
    }
}

/// The outcome of one send: the plugin's answer, read with what the host itself saw
/// ([`refine`]); a receipt after a lost hand-over says the email may be there twice.
pub fn judge(answer: Result<Receipt, Failure>, witnessed: &Witnessed) -> Result<Sent, Failure> {
    let lost = witnessed.lost.join("; and ");
    match answer {
        Err(failure) => Err(refine(failure, witnessed)),
        Ok(receipt) => {
            let refused_for_now = receipt
                .refused
                .iter()
                .map(|r| {
                    witnessed
                        .deferred
                        .iter()
                        .any(|d| d.eq_ignore_ascii_case(&r.address))
                })
                .collect();
            let notes = if witnessed.lost.is_empty() {
                Vec::new()
            } else {
                vec![format!(
                    "before it was sent, {lost}: the email may have arrived twice"
                )]
            };
            Ok(Sent {
                receipt,
                refused_for_now,
                notes,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wit::types::{RefusedRecipient, TemporaryFailure};

    /// Every kind, in the order of their exit codes.
    const ALL: [FailureKind; 12] = [
        FailureKind::Internal,
        FailureKind::PluginFailed,
        FailureKind::Usage,
        FailureKind::InvalidSettings,
        FailureKind::InvalidMessage,
        FailureKind::AuthFailed,
        FailureKind::Rejected,
        FailureKind::Temporary,
        FailureKind::Denied,
        FailureKind::Uncertain,
        FailureKind::PartlySentRefusedForNow,
        FailureKind::PartlySentRefusedForGood,
    ];

    fn temporary(reason: &str) -> Result<Receipt, Failure> {
        Err(Failure::from(SendError::Temporary(TemporaryFailure {
            reason: reason.into(),
            retry_after_secs: None,
        })))
    }

    fn receipt(accepted: &[&str], refused: &[&str]) -> Receipt {
        Receipt {
            provider_id: None,
            accepted: accepted.iter().map(|a| a.to_string()).collect(),
            refused: refused
                .iter()
                .map(|a| RefusedRecipient {
                    address: a.to_string(),
                    reason: "4xx or 5xx".into(),
                })
                .collect(),
            detail: "250 ok".into(),
        }
    }

    #[test]
    fn a_failure_after_a_lost_hand_over_is_uncertain_whatever_the_plugin_said() {
        let lost = Witnessed {
            lost: vec!["the whole message was written to mx:25; then timed out".into()],
            ..Witnessed::default()
        };
        let crashed = Err(Failure::new(
            FailureKind::PluginFailed,
            "plugin failed: trap",
        ));
        for answer in [temporary("no answer"), crashed] {
            let failure = judge(answer, &lost).unwrap_err();
            assert_eq!(failure.kind, FailureKind::Uncertain, "{failure:?}");
            assert!(
                failure
                    .message
                    .starts_with("the whole message was written to mx:25")
            );
            assert_eq!(failure.kind.exit_code(), 9);
            assert!(!failure.message.contains("  "), "{failure:?}");
        }
        let plain = judge(temporary("busy"), &Witnessed::default()).unwrap_err();
        assert_eq!(plain.kind, FailureKind::Temporary);
    }

    #[test]
    fn a_receipt_after_a_lost_hand_over_says_the_email_may_be_there_twice() {
        let lost = Witnessed {
            lost: vec!["the whole request POST x was sent; then reset".into()],
            ..Witnessed::default()
        };
        let sent = judge(Ok(receipt(&["a@x"], &[])), &lost).unwrap();
        assert!(sent.notes[0].contains("may have arrived twice"), "{sent:?}");
        assert!(sent.partly().is_none());
    }

    #[test]
    fn refused_recipients_are_told_apart_by_what_the_server_said() {
        let witnessed = Witnessed {
            deferred: vec!["Later@X".into()],
            ..Witnessed::default()
        };
        let sent = judge(Ok(receipt(&["a@x"], &["never@x", "later@x"])), &witnessed).unwrap();
        assert_eq!(sent.refused_for_now, [false, true]);
        let partly = sent.partly().unwrap();
        assert_eq!(partly.kind, FailureKind::PartlySentRefusedForNow);
        assert!(partly.message.contains("later@x") && !partly.message.contains("never@x"));
        let for_good = judge(Ok(receipt(&["a@x"], &["never@x"])), &Witnessed::default())
            .unwrap()
            .partly()
            .unwrap();
        assert_eq!(
            (for_good.kind, for_good.kind.exit_code()),
            (FailureKind::PartlySentRefusedForGood, 11)
        );
    }

    #[test]
    fn a_failure_after_a_refused_certificate_is_a_settings_problem_naming_it() {
        let refused = Witnessed {
            certificate: Some("https://login: the certificate was refused; ca_file".into()),
            ..Witnessed::default()
        };
        let failure = judge(temporary("connection failed"), &refused).unwrap_err();
        assert_eq!(
            (failure.kind, failure.message.as_str()),
            (
                FailureKind::InvalidSettings,
                "https://login: the certificate was refused; ca_file"
            )
        );
        assert_eq!(failure.kind.exit_code(), 3);
    }

    #[test]
    fn every_send_error_maps_to_its_own_exit_code() {
        let cases = [
            (SendError::InvalidSettings("x".into()), 3),
            (SendError::InvalidMessage("x".into()), 4),
            (SendError::AuthFailed("x".into()), 5),
            (SendError::Rejected("x".into()), 6),
            (
                SendError::Temporary(TemporaryFailure {
                    reason: "x".into(),
                    retry_after_secs: Some(30),
                }),
                7,
            ),
            (SendError::Denied("x".into()), 8),
        ];
        let mut codes: Vec<u8> = ALL.iter().map(|k| k.exit_code()).collect();
        codes.dedup();
        assert_eq!(codes, (1..=11).collect::<Vec<u8>>(), "one code per outcome");
        for (error, code) in cases {
            let failure = Failure::from(error);
            assert_eq!(failure.kind.exit_code(), code, "{failure:?}");
        }
    }

    #[test]
    fn temporary_keeps_the_servers_retry_after() {
        let f = Failure::from(SendError::Temporary(TemporaryFailure {
            reason: "busy".into(),
            retry_after_secs: Some(30),
        }));
        assert_eq!(
            (f.kind, f.retry_after_secs),
            (FailureKind::Temporary, Some(30))
        );
    }
}
