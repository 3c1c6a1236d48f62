//! The message as the host hands it to a sender, in plain Rust: who it is from and to, the
//! subject, the bodies and the attached files; and what a sender answers when it took one (the
//! [`Receipt`]). A plugin's protocol code works on these types and tests natively; the kit
//! converts them from and to the WIT types at the boundary.
//!
//! Nothing here checks addresses: the host has checked every address is an addr-spec, and each
//! sender says what its protocol can't carry (an [`InvalidMessage`]).

use std::fmt;
use std::rc::Rc;

use crate::bindings::scan2x::mail::blobs::Blob;

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
    pub content: Content,
}

/// An attachment's bytes. From the host they stay in the host: hand them back whole (the
/// [`compose`](crate::compose) parts that [`smtp`](crate::smtp) and [`imap`](crate::imap)
/// write, an HTTP body range) and they never enter the plugin's memory; [`Content::read`] a
/// range, or [`Content::to_vec`], when the plugin needs the bytes itself. Made from a `Vec`
/// (a plugin's own file, a native test) they are plain bytes. Cloning is cheap: the bytes are
/// shared.
#[derive(Clone)]
pub struct Content(Rc<Inner>);

enum Inner {
    Bytes(Vec<u8>),
    Host { blob: Blob, size: u64 },
}

/// The most one host read returns (the `blobs` interface's bound).
const HOST_READ: u64 = 16 << 20;

impl Content {
    /// The host's bytes behind a handle.
    pub(crate) fn from_host(blob: Blob) -> Self {
        let size = blob.size();
        Self(Rc::new(Inner::Host { blob, size }))
    }

    /// The size in bytes.
    pub fn len(&self) -> u64 {
        match &*self.0 {
            Inner::Bytes(bytes) => bytes.len() as u64,
            Inner::Host { size, .. } => *size,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes from `offset`, at most `length` of them: fewer at the end, none past it.
    pub fn read(&self, offset: u64, length: u64) -> Vec<u8> {
        let end = offset.saturating_add(length).min(self.len());
        let start = offset.min(end);
        match &*self.0 {
            Inner::Bytes(bytes) => bytes[start as usize..end as usize].to_vec(),
            Inner::Host { blob, .. } => {
                let mut out = Vec::with_capacity((end - start) as usize);
                let mut at = start;
                while at < end {
                    let want = (end - at).min(HOST_READ) as u32;
                    let piece = blob.read(at, want);
                    if piece.is_empty() {
                        break;
                    }
                    at += piece.len() as u64;
                    out.extend_from_slice(&piece);
                }
                out
            }
        }
    }

    /// All the bytes, copied into the plugin.
    pub fn to_vec(&self) -> Vec<u8> {
        self.read(0, self.len())
    }

    /// The host's handle, when the bytes are the host's.
    pub(crate) fn blob(&self) -> Option<&Blob> {
        match &*self.0 {
            Inner::Host { blob, .. } => Some(blob),
            Inner::Bytes(_) => None,
        }
    }
}

impl From<Vec<u8>> for Content {
    fn from(bytes: Vec<u8>) -> Self {
        Self(Rc::new(Inner::Bytes(bytes)))
    }
}

impl From<&[u8]> for Content {
    fn from(bytes: &[u8]) -> Self {
        Self::from(bytes.to_vec())
    }
}

/// Plain bytes compare by value; the host's by handle (the same attachment).
impl PartialEq for Content {
    fn eq(&self, other: &Self) -> bool {
        match (&*self.0, &*other.0) {
            (Inner::Bytes(a), Inner::Bytes(b)) => a == b,
            _ => Rc::ptr_eq(&self.0, &other.0),
        }
    }
}

impl Eq for Content {}

impl fmt::Debug for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whose = match &*self.0 {
            Inner::Bytes(_) => "bytes",
            Inner::Host { .. } => "host blob",
        };
        write!(f, "Content({whose}, {} bytes)", self.len())
    }
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
