//! Failures as the host must hear them: the WIT `send-error` in plain Rust, where every case
//! says what should happen next, and the mapping every HTTP sender applies alike.
//!
//! | case | meaning | the host |
//! |---|---|---|
//! | [`SendError::InvalidSettings`] | fix the sender's settings (name the key) | reports it, exit 3 |
//! | [`SendError::InvalidMessage`] | this message can't go this way | reports it, exit 4 |
//! | [`SendError::AuthFailed`] | the provider refused the credentials | reports it, exit 5 |
//! | [`SendError::Rejected`] | refused for good | reports it, exit 6 |
//! | [`SendError::Temporary`] | try later (with `failover`, the next sender) | exit 7 |
//! | [`SendError::Denied`] | the host refused a capability call | exit 8 |
//!
//! HTTP statuses ([`SendError::from_status`]): 401 and 403 are `auth-failed`, 413
//! `invalid-message`, 408, 429 and 500/502/503/504 `temporary` with the server's `Retry-After`,
//! every other 4xx or 5xx `rejected`. A sender with a richer error vocabulary (Graph's codes)
//! maps its own cases first and falls back to this.

use std::fmt;

use crate::message::InvalidMessage;
use crate::settings::InvalidSettings;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    InvalidSettings(String),
    InvalidMessage(String),
    AuthFailed(String),
    Rejected(String),
    Temporary {
        reason: String,
        /// Seconds the server asked us to wait, when it said.
        retry_after_secs: Option<u32>,
    },
    Denied(String),
}

impl SendError {
    pub fn invalid_settings(message: impl Into<String>) -> Self {
        Self::InvalidSettings(message.into())
    }

    pub fn invalid_message(message: impl Into<String>) -> Self {
        Self::InvalidMessage(message.into())
    }

    pub fn auth_failed(message: impl Into<String>) -> Self {
        Self::AuthFailed(message.into())
    }

    pub fn rejected(message: impl Into<String>) -> Self {
        Self::Rejected(message.into())
    }

    pub fn temporary(reason: impl Into<String>, retry_after_secs: Option<u32>) -> Self {
        Self::Temporary {
            reason: reason.into(),
            retry_after_secs,
        }
    }

    /// The case's WIT name, e.g. `temporary`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidSettings(_) => "invalid-settings",
            Self::InvalidMessage(_) => "invalid-message",
            Self::AuthFailed(_) => "auth-failed",
            Self::Rejected(_) => "rejected",
            Self::Temporary { .. } => "temporary",
            Self::Denied(_) => "denied",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Self::InvalidSettings(m)
            | Self::InvalidMessage(m)
            | Self::AuthFailed(m)
            | Self::Rejected(m)
            | Self::Denied(m) => m,
            Self::Temporary { reason, .. } => reason,
        }
    }

    /// What an HTTP error status means for the message; `what` is the provider's own text
    /// (its error code and first sentence), quoted in the failure.
    pub fn from_status(status: u16, what: &str, retry_after_secs: Option<u32>) -> Self {
        let text = if what.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {what}")
        };
        match status {
            401 | 403 => Self::AuthFailed(text),
            413 => Self::InvalidMessage(text),
            s if is_temporary_status(s) => Self::temporary(text, retry_after_secs),
            _ => Self::Rejected(text),
        }
    }
}

/// Statuses that say "later": a timeout, throttling, and the server errors that pass.
pub fn is_temporary_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind(), self.message())
    }
}

impl std::error::Error for SendError {}

impl From<InvalidSettings> for SendError {
    fn from(e: InvalidSettings) -> Self {
        Self::InvalidSettings(e.0)
    }
}

impl From<InvalidMessage> for SendError {
    fn from(e: InvalidMessage) -> Self {
        Self::InvalidMessage(e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_passing_server_errors_are_temporary_with_retry_after() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert_eq!(
                SendError::from_status(status, "slow down", Some(7)),
                SendError::temporary(format!("HTTP {status}: slow down"), Some(7)),
            );
        }
    }

    #[test]
    fn other_client_and_server_errors_are_rejected_for_good() {
        for status in [400, 404, 409, 422, 501, 505] {
            assert_eq!(
                SendError::from_status(status, "", None).kind(),
                "rejected",
                "{status}"
            );
        }
    }

    #[test]
    fn refused_credentials_are_auth_failed_and_too_large_is_the_message() {
        assert_eq!(SendError::from_status(401, "", None).kind(), "auth-failed");
        assert_eq!(SendError::from_status(403, "", None).kind(), "auth-failed");
        assert_eq!(
            SendError::from_status(413, "", None).kind(),
            "invalid-message"
        );
    }
}
