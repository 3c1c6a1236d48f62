//! Building a message from what a caller gives: addresses as text, bodies, attachment files.
//! Everything here is checked before a plugin sees it: addresses parse as addr-specs, files are
//! readable, content types are guessed from file names.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::outcome::{Failure, FailureKind};
use crate::router::JobContext;
use crate::wit::event_name;
use crate::wit::types::{EventKind, Mailbox};

/// One email, checked, as the host holds it while senders are tried. Each plugin call gets it as
/// the WIT `message`, its attachments as `blob` handles to the same bytes.
#[derive(Debug, Clone)]
pub struct Email {
    pub event: EventKind,
    /// Assigned once, the same on every retry and every sender tried, without angle brackets.
    pub message_id: String,
    /// None: the sender's configured From address.
    pub from: Option<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub bcc: Vec<Mailbox>,
    pub reply_to: Vec<Mailbox>,
    pub subject: String,
    pub text_body: Option<String>,
    pub html_body: Option<String>,
    pub attachments: Vec<Attachment>,
}

/// A file sent with the email. Its bytes are read once and shared, never copied, by every call
/// that sends them.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub filename: String,
    /// A MIME type, e.g. `application/pdf`.
    pub content_type: String,
    pub content: Bytes,
}

/// An attachment to read: a path, with an optional name and type to use instead of the file's.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum AttachmentSpec {
    Path(PathBuf),
    #[serde(rename_all = "snake_case")]
    Detailed {
        path: PathBuf,
        filename: Option<String>,
        content_type: Option<String>,
    },
}

/// Everything a caller says about one email, from the command line, a `--message` JSON file, or
/// both (lists add up; the command line's single values win).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Draft {
    /// `job-output`, `saved-scan-copy`, `pin-request` or `queue-notification`.
    pub event: Option<String>,
    /// A sender to use instead of letting the settings choose.
    pub sender: Option<String>,
    pub from: Option<String>,
    #[serde(default)]
    pub to: Vec<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    #[serde(default)]
    pub bcc: Vec<String>,
    #[serde(default)]
    pub reply_to: Vec<String>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    #[serde(default)]
    pub attachments: Vec<AttachmentSpec>,
    pub job: Option<JobDraft>,
    /// The Message-ID to send with, to send again an email whose outcome was uncertain; none:
    /// a new one.
    pub message_id: Option<String>,
}

/// The job an email comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct JobDraft {
    pub name: Option<String>,
    /// The sender named in the job's source settings.
    pub source_sender: Option<String>,
    /// Recipients defined in the job configuration; they are added to To.
    #[serde(default)]
    pub recipients: Vec<String>,
}

/// A checked email, ready to route and send.
#[derive(Debug)]
pub struct Prepared {
    pub message: Email,
    pub job: Option<JobContext>,
    pub sender: Option<String>,
}

impl Draft {
    /// Reads a `--message` file; relative attachment paths are taken from the file's folder.
    pub fn from_file(path: &Path) -> Result<Self, Failure> {
        let bad = |why: String| {
            Failure::new(
                FailureKind::InvalidMessage,
                format!("{}: {why}", path.display()),
            )
        };
        let text = read_text_file(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        let mut draft: Draft = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new(""));
        for a in &mut draft.attachments {
            let p = match a {
                AttachmentSpec::Path(p) | AttachmentSpec::Detailed { path: p, .. } => p,
            };
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(draft)
    }

    /// Adds what `other` says: its lists after ours, its single values over ours.
    pub fn merge(mut self, other: Draft) -> Draft {
        fn over<T>(mine: &mut Option<T>, theirs: Option<T>) {
            if theirs.is_some() {
                *mine = theirs;
            }
        }
        over(&mut self.event, other.event);
        over(&mut self.sender, other.sender);
        over(&mut self.from, other.from);
        over(&mut self.subject, other.subject);
        over(&mut self.text, other.text);
        over(&mut self.html, other.html);
        over(&mut self.message_id, other.message_id);
        self.to.extend(other.to);
        self.cc.extend(other.cc);
        self.bcc.extend(other.bcc);
        self.reply_to.extend(other.reply_to);
        self.attachments.extend(other.attachments);
        if let Some(job) = other.job {
            let mine = self.job.get_or_insert_with(JobDraft::default);
            over(&mut mine.name, job.name);
            over(&mut mine.source_sender, job.source_sender);
            mine.recipients.extend(job.recipients);
        }
        self
    }

    pub fn event(&self) -> Result<EventKind, Failure> {
        match self.event.as_deref() {
            None => Ok(EventKind::JobOutput),
            Some(name) => parse_event(name),
        }
    }

    /// The job context for routing, without reading attachments.
    pub fn job_context(&self) -> Option<JobContext> {
        self.job.as_ref().map(|j| JobContext {
            name: j.name.clone(),
            source_sender: j.source_sender.clone(),
            recipients: j.recipients.clone(),
        })
    }

    /// Checks every address, reads the attachments, and assigns the Message-ID.
    pub fn prepare(self) -> Result<Prepared, Failure> {
        let event = self.event()?;
        let job = self.job_context();
        let list = |items: &[String]| {
            items
                .iter()
                .map(|a| parse_mailbox(a))
                .collect::<Result<Vec<_>, _>>()
        };
        let mut to = list(&self.to)?;
        if let Some(job) = &job {
            to.extend(list(&job.recipients)?);
        }
        if to.is_empty() && self.cc.is_empty() && self.bcc.is_empty() {
            return Err(Failure::new(
                FailureKind::InvalidMessage,
                "the email has no recipients: give --to (or `to` in the message file)",
            ));
        }
        let subject = self.subject.clone().ok_or_else(|| {
            Failure::new(
                FailureKind::InvalidMessage,
                "the email has no subject: give --subject (or `subject` in the message file)",
            )
        })?;
        let attachments = self
            .attachments
            .iter()
            .map(|spec| match spec {
                AttachmentSpec::Path(path) => read_attachment(path),
                AttachmentSpec::Detailed {
                    path,
                    filename,
                    content_type,
                } => {
                    let mut a = read_attachment(path)?;
                    if let Some(name) = filename {
                        a.filename = name.clone();
                    }
                    if let Some(kind) = content_type {
                        a.content_type = kind.clone();
                    }
                    Ok(a)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Prepared {
            message: Email {
                event,
                message_id: match self.message_id {
                    Some(id) => given_message_id(&id)?,
                    None => new_message_id(),
                },
                from: self.from.as_deref().map(parse_mailbox).transpose()?,
                to,
                cc: list(&self.cc)?,
                bcc: list(&self.bcc)?,
                reply_to: list(&self.reply_to)?,
                subject,
                text_body: self.text,
                html_body: self.html,
                attachments,
            },
            job,
            sender: self.sender,
        })
    }
}

pub fn parse_event(name: &str) -> Result<EventKind, Failure> {
    [
        EventKind::JobOutput,
        EventKind::SavedScanCopy,
        EventKind::PinRequest,
        EventKind::QueueNotification,
    ]
    .into_iter()
    .find(|e| event_name(*e) == name)
    .ok_or_else(|| {
        Failure::new(
            FailureKind::InvalidMessage,
            format!("unknown event {name:?}: use job-output, saved-scan-copy, pin-request or queue-notification"),
        )
    })
}

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
    let content = read_regular_file(path, MAX_ATTACHMENT_BYTES).map_err(|e| {
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
        content: Bytes::from(content),
    })
}

/// The largest attachment file read: Microsoft Graph's 150 MB per attachment (SMTP and IMAP
/// take messages up to 100 MiB once encoded, checked where they are sent).
pub const MAX_ATTACHMENT_BYTES: u64 = 150 << 20;
/// The largest `--message`, `--text-file` or `--html-file` read.
pub const MAX_TEXT_FILE_BYTES: u64 = 16 << 20;

/// A regular file's bytes, at most `max` of them. Anything else — a FIFO (which would block
/// forever), a device such as `/dev/zero` (which would fill memory), a folder — is refused by
/// its type before it is read, and a file over `max` by its size; the read itself is capped too,
/// in case the file grows meanwhile.
pub fn read_regular_file(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let kind = |meta: &std::fs::Metadata| -> Result<(), String> {
        if !meta.is_file() {
            return Err("it is not a regular file".into());
        }
        if meta.len() > max {
            return Err(format!(
                "it is {} bytes; at most {max} are accepted",
                meta.len()
            ));
        }
        Ok(())
    };
    // Checked before opening: opening a FIFO blocks until someone writes to it.
    kind(&std::fs::metadata(path).map_err(|e| e.to_string())?)?;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    kind(&meta)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(format!("it grew past {max} bytes while being read"));
    }
    Ok(bytes)
}

/// [`read_regular_file`] as UTF-8 text, at most [`MAX_TEXT_FILE_BYTES`].
pub fn read_text_file(path: &Path) -> Result<String, String> {
    String::from_utf8(read_regular_file(path, MAX_TEXT_FILE_BYTES)?)
        .map_err(|_| "it is not UTF-8 text".to_string())
}

/// A new Message-ID (without angle brackets), kept for every retry of the same email.
pub fn new_message_id() -> String {
    format!("{}@scan2x-mail", uuid::Uuid::new_v4().simple())
}

/// The most a given Message-ID may hold: well within a header line of 998 characters.
const MAX_MESSAGE_ID: usize = 250;

/// A Message-ID the caller gives (`--message-id`, `message_id`), with or without its angle
/// brackets: `left@right`, printable ASCII without spaces, angle brackets or a second `@`, so
/// that every protocol carries it as it is (RFC 5322 §3.6.4's msg-id, as Graph checks it).
pub fn given_message_id(text: &str) -> Result<String, Failure> {
    let id = text
        .strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(text);
    let printable = id
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>');
    let parts: Vec<&str> = id.split('@').collect();
    if id.len() <= MAX_MESSAGE_ID
        && printable
        && parts.len() == 2
        && parts.iter().all(|p| !p.is_empty())
    {
        return Ok(id.to_string());
    }
    let shown =
        crate::secret::escape_controls(&text.chars().take(80).collect::<String>()).into_owned();
    Err(Failure::new(
        FailureKind::InvalidMessage,
        format!(
            "message-id {shown:?} is not a Message-ID: give left@right, printable ASCII without \
             spaces or a second @, at most {MAX_MESSAGE_ID} characters (as printed by an earlier \
             send, angle brackets optional)"
        ),
    ))
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
        assert_eq!(a.content, b"%PDF-1.4".as_slice());
        let missing = read_attachment(&dir.path().join("missing.pdf")).unwrap_err();
        assert_eq!(missing.kind, FailureKind::InvalidMessage);
    }

    #[test]
    fn only_regular_files_within_the_bound_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let folder = read_attachment(dir.path()).unwrap_err();
        assert!(
            folder.message.contains("not a regular file"),
            "{}",
            folder.message
        );
        #[cfg(unix)]
        {
            let device = read_attachment(Path::new("/dev/zero")).unwrap_err();
            assert!(
                device.message.contains("not a regular file"),
                "{}",
                device.message
            );
        }
        let path = dir.path().join("big.txt");
        std::fs::write(&path, vec![b'a'; 11]).unwrap();
        let big = read_regular_file(&path, 10).unwrap_err();
        assert!(big.contains("11 bytes; at most 10"), "{big}");
        assert_eq!(read_regular_file(&path, 11).unwrap().len(), 11);
    }

    #[test]
    fn a_message_file_reads_content_job_and_attachments_relative_to_itself() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("scan.pdf"), b"%PDF").unwrap();
        let path = dir.path().join("message.json");
        std::fs::write(
            &path,
            r#"{"event": "job-output", "to": ["a@example.com"], "subject": "Scan",
                "attachments": ["scan.pdf", {"path": "scan.pdf", "filename": "Rechnung.pdf"}],
                "job": {"name": "Invoices", "source_sender": "relay", "recipients": ["team@example.com"]}}"#,
        )
        .unwrap();
        let draft = Draft::from_file(&path).unwrap();
        let cli = Draft {
            cc: vec!["c@example.com".into()],
            subject: Some("Scan 2".into()),
            ..Draft::default()
        };
        let p = draft.merge(cli).prepare().unwrap();
        let to: Vec<&str> = p.message.to.iter().map(|m| m.address.as_str()).collect();
        assert_eq!(to, ["a@example.com", "team@example.com"]);
        assert_eq!(p.message.cc[0].address, "c@example.com");
        assert_eq!(p.message.subject, "Scan 2");
        assert_eq!(p.message.attachments[1].filename, "Rechnung.pdf");
        assert_eq!(p.message.attachments[0].content, b"%PDF".as_slice());
        let job = p.job.unwrap();
        assert_eq!(
            (job.source_sender.as_deref(), job.recipients.len()),
            (Some("relay"), 1)
        );
    }

    #[test]
    fn unknown_fields_and_events_are_message_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        std::fs::write(&path, r#"{"to": ["a@example.com"], "subjekt": "x"}"#).unwrap();
        let e = Draft::from_file(&path).unwrap_err();
        assert!(e.message.contains("subjekt"), "{e}");
        assert_eq!(
            parse_event("fax").unwrap_err().kind,
            FailureKind::InvalidMessage
        );
    }

    #[test]
    fn a_draft_without_recipients_or_subject_is_refused() {
        let no_to = Draft {
            subject: Some("x".into()),
            ..Draft::default()
        };
        assert!(
            no_to
                .prepare()
                .unwrap_err()
                .message
                .contains("no recipients")
        );
        let no_subject = Draft {
            to: vec!["a@example.com".into()],
            ..Draft::default()
        };
        assert!(
            no_subject
                .prepare()
                .unwrap_err()
                .message
                .contains("no subject")
        );
    }

    #[test]
    fn a_given_message_id_is_taken_with_or_without_brackets_and_a_bad_one_refused() {
        assert_eq!(given_message_id("<a.b@c>").unwrap(), "a.b@c");
        assert_eq!(
            given_message_id("7c0f@scan2x-mail").unwrap(),
            "7c0f@scan2x-mail"
        );
        for bad in [
            "", "a", "a@", "@b", "a@b@c", "a b@c", "a\r\n@c", "<a@c", "a>@c", "ä@c",
        ] {
            let e = given_message_id(bad).unwrap_err();
            assert_eq!(e.kind, FailureKind::InvalidMessage, "{bad:?}");
            assert!(!e.message.contains("  "), "{e:?}");
        }
        assert!(given_message_id(&format!("{}@c", "a".repeat(300))).is_err());
    }

    #[test]
    fn a_draft_comes_back_from_its_json_as_it_was() {
        let draft = Draft {
            event: Some("pin-request".into()),
            to: vec!["Ann <a@example.com>".into()],
            subject: Some("PIN".into()),
            attachments: vec![
                AttachmentSpec::Path("scan.pdf".into()),
                AttachmentSpec::Detailed {
                    path: "p.pdf".into(),
                    filename: Some("Invoice.pdf".into()),
                    content_type: None,
                },
            ],
            job: Some(JobDraft {
                name: Some("Invoices".into()),
                source_sender: None,
                recipients: vec!["team@example.com".into()],
            }),
            ..Draft::default()
        };
        let json = serde_json::to_value(&draft).unwrap();
        assert_eq!(serde_json::from_value::<Draft>(json).unwrap(), draft);
    }

    #[test]
    fn message_ids_are_unique() {
        assert_ne!(new_message_id(), new_message_id());
    }
}
