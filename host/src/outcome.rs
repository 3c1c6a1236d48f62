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

use std::fmt;

use crate::wit::types::SendError;

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
        }
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

impl From<crate::runtime::CallError> for Failure {
    fn from(e: crate::runtime::CallError) -> Self {
        match e {
            crate::runtime::CallError::Plugin(e) => e.into(),
            crate::runtime::CallError::Crashed(m) => {
                Failure::new(FailureKind::PluginFailed, format!("plugin failed: {m}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wit::types::TemporaryFailure;

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
