//! The message as the host hands it to a sender, in plain Rust: who it is from and to, the
//! subject, the bodies and the attached files; and what a sender answers when it took one (the
//! [`Receipt`]). A plugin's protocol code works on these types and tests natively; the kit
//! converts them from and to the WIT types at the boundary.
//!
//! Nothing here checks addresses: the host has checked every address is an addr-spec, and each
//! sender says what its protocol can't carry (an [`InvalidMessage`]).

use std::fmt;

/// An address with an optional display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: String,
}

/// A file sent with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub filename: String,
    /// A MIME type, e.g. `application/pdf`.
    pub content_type: String,
    pub content: Vec<u8>,
}

/// One message to send, as the host hands it over.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// The host's id, without angle brackets; the same on every retry.
    pub message_id: String,
    /// None: the sender's configured email address.
    pub from: Option<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    /// Receives the message, appears in no header.
    pub bcc: Vec<Mailbox>,
    pub reply_to: Vec<Mailbox>,
    pub subject: String,
    pub text_body: Option<String>,
    pub html_body: Option<String>,
    pub attachments: Vec<Attachment>,
}

impl Message {
    /// Every recipient address (To, Cc, Bcc), in that order.
    pub fn recipients(&self) -> Vec<String> {
        self.to
            .iter()
            .chain(&self.cc)
            .chain(&self.bcc)
            .map(|m| m.address.clone())
            .collect()
    }
}

/// A recipient the provider refused while it took the message for the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedRecipient {
    pub address: String,
    pub reason: String,
}

/// What the provider said when it took the message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Receipt {
    /// The provider's id for the message (SMTP queue id, an API's message id), when it gave one.
    pub provider_id: Option<String>,
    pub accepted: Vec<String>,
    pub refused: Vec<RefusedRecipient>,
    /// One human line: the server's final reply or the provider's status.
    pub detail: String,
}

/// The message can't go out as given; the text names the offending field and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidMessage(pub String);

impl fmt::Display for InvalidMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidMessage {}
