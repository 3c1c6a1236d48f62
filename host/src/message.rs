//! Building a message from what a caller gives: addresses as text, bodies, attachment files.
//! Everything here is checked before a plugin sees it: addresses parse as addr-specs, files are
//! readable, content types are guessed from file names.

use std::path::Path;

use crate::outcome::{Failure, FailureKind};
use crate::wit::types::{Attachment, EventKind, Mailbox};

/// Parses `user@example.com` or `Name <user@example.com>` (the name may be quoted).
pub fn parse_mailbox(text: &str) -> Result<Mailbox, Failure> {
    let bad = |why: &str| {
        Failure::new(
            FailureKind::InvalidMessage,
            format!("{text:?} is not an email address: {why}"),
        )
    };
    let text_trimmed = text.trim();
    if text_trimmed.chars().any(char::is_control) {
        return Err(bad("it contains control characters"));
    }
    let (name, address) = match (text_trimmed.rfind('<'), text_trimmed.ends_with('>')) {
        (Some(open), true) => {
            let name = text_trimmed[..open].trim().trim_matches('"').trim();
            let address = &text_trimmed[open + 1..text_trimmed.len() - 1];
            ((!name.is_empty()).then(|| name.to_string()), address.trim())
        }
        (None, false) => (None, text_trimmed),
        _ => return Err(bad("unbalanced < >")),
    };
    address
        .parse::<lettre::Address>()
        .map_err(|e| bad(&e.to_string()))?;
    Ok(Mailbox {
        name,
        address: address.to_string(),
    })
}

/// Reads an attachment file; the content type comes from its extension.
pub fn read_attachment(path: &Path) -> Result<Attachment, Failure> {
    let content = std::fs::read(path).map_err(|e| {
        Failure::new(
            FailureKind::InvalidMessage,
            format!("cannot read attachment {}: {e}", path.display()),
        )
    })?;
    let filename = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "attachment".into());
    let content_type = mime_guess::from_path(path)
        .first_or_octet_stream()
        .essence_str()
        .to_string();
    Ok(Attachment {
        filename,
        content_type,
        content,
    })
}

/// A new Message-ID (without angle brackets), kept for every retry of the same email.
pub fn new_message_id() -> String {
    format!("{}@scan2x-mail", uuid::Uuid::new_v4().simple())
}

pub fn event_name(event: EventKind) -> &'static str {
    match event {
        EventKind::JobOutput => "job-output",
        EventKind::SavedScanCopy => "saved-scan-copy",
        EventKind::PinRequest => "pin-request",
        EventKind::QueueNotification => "queue-notification",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_named_addresses_parse() {
        let m = parse_mailbox("a@example.com").unwrap();
        assert_eq!((m.name, m.address.as_str()), (None, "a@example.com"));
        let m = parse_mailbox("\"Ann Lee\" <ann@example.com>").unwrap();
        assert_eq!(
            (m.name.as_deref(), m.address.as_str()),
            (Some("Ann Lee"), "ann@example.com")
        );
    }

    #[test]
    fn malformed_addresses_are_message_errors() {
        for bad in [
            "",
            "nobody",
            "a@",
            "Ann <ann@example.com",
            "x\r\nBcc: y@z <a@b.c>",
        ] {
            let e = parse_mailbox(bad).unwrap_err();
            assert_eq!(e.kind, FailureKind::InvalidMessage, "{bad}");
        }
    }

    #[test]
    fn attachment_type_comes_from_the_extension() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Übersicht.pdf");
        std::fs::write(&path, b"%PDF-1.4").unwrap();
        let a = read_attachment(&path).unwrap();
        assert_eq!(
            (a.filename.as_str(), a.content_type.as_str()),
            ("Übersicht.pdf", "application/pdf")
        );
        assert_eq!(a.content, b"%PDF-1.4");
        let missing = read_attachment(&dir.path().join("missing.pdf")).unwrap_err();
        assert_eq!(missing.kind, FailureKind::InvalidMessage);
    }

    #[test]
    fn message_ids_are_unique() {
        assert_ne!(new_message_id(), new_message_id());
    }
}
