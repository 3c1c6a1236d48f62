//! Turns a [`Message`] into what SMTP carries: the RFC 5322 message (CRLF line ends) and the
//! [`Envelope`] (MAIL FROM, RCPT TO). The message comes as [`Part`]s: the text this module
//! writes, and each attachment's bytes, which the host base64-encodes as it writes them
//! (`types.message-part`), so that a 30 MB scan is never copied into the plugin, nor encoded
//! there.
//!
//! | message part          | where it goes                                              |
//! |-----------------------|------------------------------------------------------------|
//! | from, To, Cc          | headers of those names, and the envelope                   |
//! | Reply-To              | its header only                                            |
//! | Bcc                   | the envelope only: never a header                          |
//! | message id            | `Message-ID: <{id}>`                                       |
//! | text, html            | text/plain, text/html, or multipart/alternative of both    |
//! | attachments           | multipart/mixed of the body and one base64 part per file   |
//! |                       | (file names RFC 2231-encoded)                              |
//!
//! It must never let message data start a header: every free text that lands in a header
//! (subject, display names, file names) is folded onto one line first, whatever lettre's own
//! encoding does. It never calls a host capability; it is plain Rust that tests natively.

pub use lettre::Address;
use lettre::Message as MimeMessage;
use lettre::address::Envelope as LettreEnvelope;
use lettre::message::header::{self, ContentTransferEncoding, ContentType};
use lettre::message::{
    Attachment as AttachmentPart, Body as EncodedBody, Mailboxes, MultiPart, SinglePart,
};

pub use crate::message::{Attachment, Content, InvalidMessage, Mailbox, Message};

/// The SMTP envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The From address.
    pub mail_from: String,
    /// To, Cc and Bcc, first spelling kept, each address once (compared case-insensitively).
    pub rcpt_to: Vec<String>,
}

/// A message ready for DATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composed {
    pub envelope: Envelope,
    /// The complete RFC 5322 message with CRLF line ends, in order.
    pub parts: Vec<Part>,
}

/// A piece of a composed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Bytes as they are.
    Text(Vec<u8>),
    /// An attachment's bytes in base64: lines of 76 characters joined by CRLF, no line end
    /// after the last (the text that follows starts with one).
    Base64(Content),
}

/// Input bytes per base64 line: 57 bytes make 76 characters.
const LINE_INPUT: usize = 57;

impl Composed {
    /// The size of the whole message in bytes, attachments encoded.
    pub fn len(&self) -> u64 {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.len() as u64,
                Part::Base64(content) => {
                    let n = content.len();
                    n.div_ceil(3) * 4 + n.div_ceil(LINE_INPUT as u64).saturating_sub(1) * 2
                }
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole message as bytes, every attachment read into the plugin and encoded here: for a
    /// sender whose protocol needs the text itself, and for tests. [`crate::smtp::send`] and
    /// [`crate::imap::Session::append`] take the parts instead.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.extend_from_slice(text),
                Part::Base64(content) => out.extend(base64_lines(&content.to_vec())),
            }
        }
        out
    }
}

/// Base64 in lines of 76 characters joined by CRLF, as the host writes a `base64` part.
pub(crate) fn base64_lines(bytes: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let lines: Vec<String> = bytes
        .chunks(LINE_INPUT)
        .map(|line| base64::engine::general_purpose::STANDARD.encode(line))
        .collect();
    lines.join("\r\n").into_bytes()
}

/// Builds the message and its envelope. `default_from` is the sender's configured address,
/// used when the message names no From.
pub fn compose(message: &Message, default_from: &Address) -> Result<Composed, InvalidMessage> {
    // Each attachment's body is first a marker lettre copies as it is; the formatted text is
    // then cut at the markers, and the host writes the bytes there. A marker holds NUL bytes,
    // which no header (folded by `one_line`) and no encoded text body carries; should the text
    // hold any other NUL, the attachments are encoded here instead.
    let markers: Vec<Vec<u8>> = (0..message.attachments.len())
        .map(|i| format!("\0scan2x-attachment-{i}\0").into_bytes())
        .collect();
    let (envelope, text) = build(message, default_from, |i, _| {
        EncodedBody::dangerous_pre_encoded(markers[i].clone(), ContentTransferEncoding::Base64)
    })?;
    if let Some(parts) = cut_at_markers(&text, &markers, &message.attachments) {
        return Ok(Composed { envelope, parts });
    }
    crate::host::warn_encoding_here(
        message.attachments.iter().map(|a| a.content.len()).sum(),
        "the message text holds NUL bytes, so the host's markers can't be told from it",
    );
    let (envelope, text) = build(message, default_from, |_, attachment| {
        EncodedBody::new_with_encoding(attachment.content.to_vec(), ContentTransferEncoding::Base64)
            .unwrap_or_else(EncodedBody::new)
    })?;
    Ok(Composed {
        envelope,
        parts: vec![Part::Text(text)],
    })
}

/// The text cut at each marker, in order, each attachment in its place; None unless the text's
/// NUL bytes are exactly the markers' (two each), in order. One pass over the text finds them:
/// NUL is otherwise absent from a formatted message.
fn cut_at_markers(
    text: &[u8],
    markers: &[Vec<u8>],
    attachments: &[Attachment],
) -> Option<Vec<Part>> {
    let nuls: Vec<usize> = (0..text.len()).filter(|&i| text[i] == 0).collect();
    if nuls.len() != 2 * markers.len() {
        return None;
    }
    let mut parts = Vec::with_capacity(2 * markers.len() + 1);
    let mut from = 0;
    for ((marker, attachment), pair) in markers.iter().zip(attachments).zip(nuls.chunks(2)) {
        let at = pair[0];
        if !text[at..].starts_with(marker) || pair[1] != at + marker.len() - 1 {
            return None;
        }
        parts.push(Part::Text(text[from..at].to_vec()));
        parts.push(Part::Base64(attachment.content.clone()));
        from = at + marker.len();
    }
    parts.push(Part::Text(text[from..].to_vec()));
    Some(parts)
}

/// The envelope and the formatted message, each attachment's body made by `attachment_body`.
fn build(
    message: &Message,
    default_from: &Address,
    attachment_body: impl Fn(usize, &Attachment) -> EncodedBody,
) -> Result<(Envelope, Vec<u8>), InvalidMessage> {
    let from = match &message.from {
        Some(from) => mailbox("from", from)?,
        None => lettre::message::Mailbox::new(None, default_from.clone()),
    };
    let to = mailboxes("to", &message.to)?;
    let cc = mailboxes("cc", &message.cc)?;
    let bcc = mailboxes("bcc", &message.bcc)?;
    let reply_to = mailboxes("reply-to", &message.reply_to)?;

    let rcpt_to = dedup(to.iter().chain(&cc).chain(&bcc).map(|m| &m.email));
    if rcpt_to.is_empty() {
        return Err(InvalidMessage(
            "the message has no recipients: give at least one to, cc or bcc address".to_owned(),
        ));
    }
    let envelope = Envelope {
        mail_from: from.email.to_string(),
        rcpt_to: rcpt_to.iter().map(ToString::to_string).collect(),
    };
    // lettre would otherwise derive the envelope from the headers, which never hold Bcc: a
    // Bcc-only message would have no recipients there.
    let lettre_envelope = LettreEnvelope::new(Some(from.email.clone()), rcpt_to)
        .map_err(|e| InvalidMessage(format!("the envelope can't be built: {e}")))?;

    let mut builder = MimeMessage::builder()
        .envelope(lettre_envelope)
        .from(from)
        .subject(one_line(&message.subject))
        .message_id(Some(message_id(&message.message_id)?))
        .date_now();
    // Each list is handed over whole: lettre's `to(m)` parses the header built so far again
    // for every mailbox it adds, which made 4 000 recipients take seconds.
    if !to.is_empty() {
        builder = builder.header(header::To::from(Mailboxes::from(to)));
    }
    if !cc.is_empty() {
        builder = builder.header(header::Cc::from(Mailboxes::from(cc)));
    }
    if !reply_to.is_empty() {
        builder = builder.header(header::ReplyTo::from(Mailboxes::from(reply_to)));
    }
    // Bcc is deliberately never handed to the builder: it would only be dropped again, and a
    // later `keep_bcc()` would leak every blind recipient.

    let built = match (body(message), message.attachments.is_empty()) {
        (Body::Single(part), true) => builder.singlepart(part),
        (Body::Multi(part), true) => builder.multipart(part),
        (body, false) => {
            let mut mixed = MultiPart::mixed().build();
            mixed = match body {
                Body::Single(part) => mixed.singlepart(part),
                Body::Multi(part) => mixed.multipart(part),
                Body::None => mixed,
            };
            for (i, attachment) in message.attachments.iter().enumerate() {
                mixed =
                    mixed.singlepart(attachment_part(attachment, attachment_body(i, attachment)));
            }
            builder.multipart(mixed)
        }
        (Body::None, true) => builder.singlepart(SinglePart::plain(String::new())),
    }
    .map_err(|e| InvalidMessage(format!("the message can't be built: {e}")))?;

    Ok((envelope, built.formatted()))
}

/// Folds free text onto one line: every control character (CR, LF, TAB, NUL, DEL, C1 such as
/// NEL) and the Unicode line and paragraph separators become a space, so the text can't start
/// a header or a body wherever it lands.
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
                ' '
            } else {
                c
            }
        })
        .collect()
}

enum Body {
    None,
    Single(SinglePart),
    Multi(MultiPart),
}

fn body(message: &Message) -> Body {
    let text = message.text_body.as_deref().map(lf_line_ends);
    let html = message.html_body.as_deref().map(lf_line_ends);
    match (text, html) {
        (Some(text), Some(html)) => Body::Multi(MultiPart::alternative_plain_html(text, html)),
        (Some(text), None) => Body::Single(SinglePart::plain(text)),
        (None, Some(html)) => Body::Single(SinglePart::html(html)),
        (None, None) => Body::None,
    }
}

/// Every line end as a bare LF, which lettre then writes as CRLF. lettre leaves a lone CR
/// alone, and a bare CR in the DATA stream is what SMTP smuggling (`<CR>.<CR>`) relies on.
fn lf_line_ends(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

fn attachment_part(attachment: &Attachment, content: EncodedBody) -> SinglePart {
    let filename = one_line(&attachment.filename).trim().to_owned();
    let filename = if filename.is_empty() {
        "attachment".to_owned()
    } else {
        filename
    };
    // Always base64 (the host encodes it): lettre would send an ASCII-only file (a CSV, a text
    // file) as 7bit with its line ends untouched, so bare LFs would reach the server and a
    // server that normalises them would change the file. Base64 keeps the bytes exact.
    AttachmentPart::new(filename).body(content, content_type(&attachment.content_type))
}

/// The host guessed the type from the file name; one it got wrong must not stop the message,
/// so anything unparsable (or holding control characters) goes as application/octet-stream.
fn content_type(content_type: &str) -> ContentType {
    let fallback = || ContentType::parse("application/octet-stream");
    let parsed = if content_type
        .chars()
        .any(|c| c.is_control() || !c.is_ascii())
    {
        fallback()
    } else {
        ContentType::parse(content_type.trim()).or_else(|_| fallback())
    };
    // application/octet-stream always parses; this keeps the code free of a panic path anyway.
    parsed.unwrap_or(ContentType::TEXT_PLAIN)
}

/// The host's id in angle brackets. It is checked, not folded: an id with spaces or brackets
/// would be a host bug, and a changed id would break the host's retry deduplication.
fn message_id(id: &str) -> Result<String, InvalidMessage> {
    let valid = !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>');
    if valid {
        Ok(format!("<{id}>"))
    } else {
        Err(InvalidMessage(format!(
            "message-id: {id:?} is not a message id (printable ASCII, no spaces or angle \
             brackets)"
        )))
    }
}

fn mailbox(field: &str, mailbox: &Mailbox) -> Result<lettre::message::Mailbox, InvalidMessage> {
    let address: Address = mailbox.address.parse().map_err(|_| {
        InvalidMessage(format!(
            "{field}: {:?} is not an email address",
            mailbox.address
        ))
    })?;
    let name = mailbox
        .name
        .as_deref()
        .map(|n| one_line(n).trim().to_owned())
        .filter(|n| !n.is_empty());
    Ok(lettre::message::Mailbox::new(name, address))
}

fn mailboxes(
    field: &str,
    list: &[Mailbox],
) -> Result<Vec<lettre::message::Mailbox>, InvalidMessage> {
    list.iter().map(|m| mailbox(field, m)).collect()
}

/// Each address once, first spelling and order kept. Compared case-insensitively: servers
/// treat local parts that way in practice, and one person must not get the message twice.
fn dedup<'a>(addresses: impl Iterator<Item = &'a Address>) -> Vec<Address> {
    let mut seen = std::collections::HashSet::new();
    addresses
        .filter(|address| seen.insert(address.to_string().to_lowercase()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use mail_parser::{MessageParser, MimeHeaders};

    use super::*;

    const MESSAGE_ID: &str = "7c0f2a1e-5b9d-4c3e-8f10-2d6a9b4c1e77@scan2x-mail";

    fn sender() -> Address {
        "scanner@example.com".parse().unwrap()
    }

    fn mb(address: &str) -> Mailbox {
        Mailbox {
            name: None,
            address: address.to_owned(),
        }
    }

    fn named(name: &str, address: &str) -> Mailbox {
        Mailbox {
            name: Some(name.to_owned()),
            address: address.to_owned(),
        }
    }

    fn message() -> Message {
        Message {
            message_id: MESSAGE_ID.to_owned(),
            to: vec![mb("alice@example.com")],
            subject: "Scan".to_owned(),
            text_body: Some("Your scan.".to_owned()),
            ..Message::default()
        }
    }

    fn composed(message: &Message) -> Composed {
        compose(message, &sender()).unwrap()
    }

    /// The header section: everything before the first empty line.
    fn header_lines(raw: &[u8]) -> Vec<String> {
        let text = String::from_utf8(raw.to_vec()).unwrap();
        let head = text.split("\r\n\r\n").next().unwrap().to_owned();
        head.split("\r\n").map(str::to_owned).collect()
    }

    /// Every header field name in every part of the message (top level and MIME parts).
    fn all_header_names(raw: &[u8]) -> Vec<String> {
        String::from_utf8(raw.to_vec())
            .unwrap()
            .split("\r\n")
            .filter(|line| !line.starts_with([' ', '\t']))
            .filter_map(|line| line.split_once(':').map(|(name, _)| name.to_lowercase()))
            .collect()
    }

    #[test]
    fn headers_round_trip_through_a_parser() {
        let mut m = message();
        m.from = Some(named("Scan Desk", "desk@example.com"));
        m.to = vec![named("Alice", "alice@example.com"), mb("bob@example.com")];
        m.cc = vec![named("Carol Ä. Müller", "carol@example.com")];
        m.reply_to = vec![mb("replies@example.com")];
        m.subject = "Übersicht – März 2026: 3 Seiten".to_owned();
        let raw = composed(&m).to_bytes();

        let parsed = MessageParser::default().parse(&raw).unwrap();
        let from = parsed.from().unwrap().first().unwrap();
        assert_eq!(from.name(), Some("Scan Desk"));
        assert_eq!(from.address(), Some("desk@example.com"));
        let to: Vec<_> = parsed
            .to()
            .unwrap()
            .iter()
            .map(|a| (a.name().map(str::to_owned), a.address().unwrap().to_owned()))
            .collect();
        assert_eq!(
            to,
            vec![
                (Some("Alice".to_owned()), "alice@example.com".to_owned()),
                (None, "bob@example.com".to_owned()),
            ]
        );
        let cc = parsed.cc().unwrap().first().unwrap();
        assert_eq!(cc.name(), Some("Carol Ä. Müller"));
        assert_eq!(cc.address(), Some("carol@example.com"));
        assert_eq!(
            parsed.reply_to().unwrap().first().unwrap().address(),
            Some("replies@example.com")
        );
        assert_eq!(parsed.subject(), Some("Übersicht – März 2026: 3 Seiten"));
        assert!(parsed.date().is_some());
    }

    #[test]
    fn from_defaults_to_the_configured_email_address() {
        let c = composed(&message());
        let raw = c.to_bytes();
        let parsed = MessageParser::default().parse(&raw).unwrap();
        assert_eq!(
            parsed.from().unwrap().first().unwrap().address(),
            Some("scanner@example.com")
        );
        assert_eq!(c.envelope.mail_from, "scanner@example.com");
    }

    #[test]
    fn mail_from_is_the_message_from_when_given() {
        let mut m = message();
        m.from = Some(mb("desk@example.com"));
        assert_eq!(composed(&m).envelope.mail_from, "desk@example.com");
    }

    #[test]
    fn message_id_is_the_hosts_in_angle_brackets() {
        let raw = composed(&message()).to_bytes();
        let parsed = MessageParser::default().parse(&raw).unwrap();
        assert_eq!(parsed.message_id(), Some(MESSAGE_ID));
        assert!(
            header_lines(&raw).contains(&format!("Message-ID: <{MESSAGE_ID}>")),
            "{:?}",
            header_lines(&raw)
        );
    }

    #[test]
    fn message_id_that_could_break_the_header_is_refused() {
        for bad in ["", "a b@x", "<a@x>", "a@x\r\nBcc: evil@x"] {
            let mut m = message();
            m.message_id = bad.to_owned();
            let err = compose(&m, &sender()).unwrap_err().0;
            assert!(err.starts_with("message-id:"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn every_line_ends_with_crlf() {
        let mut m = message();
        m.text_body = Some("line one\nline two\rline three\r\n".to_owned());
        m.html_body = Some("<p>one</p>\n<p>two</p>".to_owned());
        m.attachments = vec![Attachment {
            filename: "a.txt".to_owned(),
            content_type: "text/plain".to_owned(),
            content: b"x\ny\n".to_vec().into(),
        }];
        let raw = composed(&m).to_bytes();
        for (i, &b) in raw.iter().enumerate() {
            if b == b'\n' {
                assert!(i > 0 && raw[i - 1] == b'\r', "bare LF at {i}");
            }
            if b == b'\r' {
                assert_eq!(raw.get(i + 1), Some(&b'\n'), "bare CR at {i}");
            }
        }
    }

    #[test]
    fn text_only_is_text_plain() {
        let raw = composed(&message()).to_bytes();
        let parsed = MessageParser::default().parse(&raw).unwrap();
        let ct = parsed.content_type().unwrap();
        assert_eq!((ct.ctype(), ct.subtype()), ("text", Some("plain")));
        // A single-part body ends with the message's final CRLF.
        assert_eq!(parsed.body_text(0).as_deref(), Some("Your scan.\r\n"));
        assert_eq!(parsed.attachment_count(), 0);
    }

    #[test]
    fn html_only_is_text_html() {
        let mut m = message();
        m.text_body = None;
        m.html_body = Some("<p>Your <b>scan</b>.</p>".to_owned());
        let raw = composed(&m).to_bytes();
        let parsed = MessageParser::default().parse(&raw).unwrap();
        let ct = parsed.content_type().unwrap();
        assert_eq!((ct.ctype(), ct.subtype()), ("text", Some("html")));
        assert_eq!(
            parsed.body_html(0).as_deref(),
            Some("<p>Your <b>scan</b>.</p>\r\n")
        );
    }

    #[test]
    fn text_and_html_are_multipart_alternative() {
        let mut m = message();
        m.text_body = Some("Grüße, your scan.".to_owned());
        m.html_body = Some("<p>Grüße, your scan.</p>".to_owned());
        let raw = composed(&m).to_bytes();
        let parsed = MessageParser::default().parse(&raw).unwrap();
        let ct = parsed.content_type().unwrap();
        assert_eq!(
            (ct.ctype(), ct.subtype()),
            ("multipart", Some("alternative"))
        );
        assert_eq!(parsed.body_text(0).as_deref(), Some("Grüße, your scan."));
        assert_eq!(
            parsed.body_html(0).as_deref(),
            Some("<p>Grüße, your scan.</p>")
        );
    }

    #[test]
    fn attachments_keep_bytes_type_and_non_ascii_name() {
        let pdf: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let mut m = message();
        m.text_body = Some("Attached.".to_owned());
        m.html_body = Some("<p>Attached.</p>".to_owned());
        m.attachments = vec![
            Attachment {
                filename: "Übersicht 2026 – scan.pdf".to_owned(),
                content_type: "application/pdf".to_owned(),
                content: pdf.clone().into(),
            },
            Attachment {
                filename: "notes.txt".to_owned(),
                content_type: "text/plain".to_owned(),
                content: b"plain notes".to_vec().into(),
            },
        ];
        let raw = composed(&m).to_bytes();
        let parsed = MessageParser::default().parse(&raw).unwrap();

        let ct = parsed.content_type().unwrap();
        assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("mixed")));
        assert_eq!(parsed.body_text(0).as_deref(), Some("Attached."));
        assert_eq!(parsed.body_html(0).as_deref(), Some("<p>Attached.</p>"));

        let attachments: Vec<_> = parsed.attachments().collect();
        assert_eq!(attachments.len(), 2);
        assert_eq!(
            attachments[0].attachment_name(),
            Some("Übersicht 2026 – scan.pdf")
        );
        let ct = attachments[0].content_type().unwrap();
        assert_eq!((ct.ctype(), ct.subtype()), ("application", Some("pdf")));
        assert_eq!(attachments[0].contents(), pdf.as_slice());
        assert_eq!(attachments[1].attachment_name(), Some("notes.txt"));
        assert_eq!(attachments[1].contents(), b"plain notes");
    }

    #[test]
    fn non_ascii_filename_is_rfc_2231_encoded_in_ascii_headers() {
        let mut m = message();
        m.attachments = vec![Attachment {
            filename: "Übersicht 2026 – scan.pdf".to_owned(),
            content_type: "application/pdf".to_owned(),
            content: b"%PDF-1.7".to_vec().into(),
        }];
        let raw = composed(&m).to_bytes();
        let text = String::from_utf8(raw).unwrap();
        assert!(text.contains("filename*0*=utf-8''%C3%9Cbersicht"), "{text}");
        let head_of_parts: String = text
            .split("\r\n\r\n")
            .step_by(2)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(head_of_parts.is_ascii(), "{head_of_parts}");
    }

    #[test]
    fn ascii_attachment_keeps_its_exact_bytes() {
        let csv = b"page,status\nscan 1,ok\r\nscan 2,ok\rend".to_vec();
        let mut m = message();
        m.attachments = vec![Attachment {
            filename: "report.csv".to_owned(),
            content_type: "text/csv".to_owned(),
            content: csv.clone().into(),
        }];
        let raw = composed(&m).to_bytes();
        let parsed = MessageParser::default().parse(&raw).unwrap();
        let attachment = parsed.attachments().next().unwrap();
        assert_eq!(attachment.contents(), csv.as_slice());
        let text = String::from_utf8(raw).unwrap();
        assert!(
            !text.contains("scan 1,ok"),
            "the file went unencoded: {text}"
        );
    }

    #[test]
    fn attachment_without_body_text_is_still_readable() {
        let mut m = message();
        m.text_body = None;
        m.attachments = vec![Attachment {
            filename: "scan.pdf".to_owned(),
            content_type: "application/pdf".to_owned(),
            content: b"%PDF-1.7".to_vec().into(),
        }];
        let parsed_raw = composed(&m).to_bytes();
        let parsed = MessageParser::default().parse(&parsed_raw).unwrap();
        let attachment = parsed.attachments().next().unwrap();
        assert_eq!(attachment.attachment_name(), Some("scan.pdf"));
        assert_eq!(attachment.contents(), b"%PDF-1.7");
    }

    #[test]
    fn unparsable_content_type_falls_back_to_octet_stream() {
        let mut m = message();
        m.attachments = vec![Attachment {
            filename: "x.bin".to_owned(),
            content_type: "not a type\r\nBcc: evil@example.com".to_owned(),
            content: vec![1, 2, 3].into(),
        }];
        let raw = composed(&m).to_bytes();
        let parsed = MessageParser::default().parse(&raw).unwrap();
        let attachment = parsed.attachments().next().unwrap();
        let ct = attachment.content_type().unwrap();
        assert_eq!(
            (ct.ctype(), ct.subtype()),
            ("application", Some("octet-stream"))
        );
        assert!(!all_header_names(&raw).contains(&"bcc".to_owned()));
    }

    #[test]
    fn bcc_recipients_appear_in_no_header() {
        let mut m = message();
        m.bcc = vec![named("Secret Sam", "sam@example.com")];
        let c = composed(&m);
        let raw = c.to_bytes();
        let parsed = MessageParser::default().parse(&raw).unwrap();
        assert!(parsed.bcc().is_none());
        assert!(!all_header_names(&c.to_bytes()).contains(&"bcc".to_owned()));
        let text = String::from_utf8(c.to_bytes()).unwrap();
        assert!(!text.contains("sam@example.com"), "{text}");
        assert!(!text.contains("Secret Sam"), "{text}");
        assert!(c.envelope.rcpt_to.contains(&"sam@example.com".to_owned()));
    }

    #[test]
    fn bcc_only_message_goes_out_to_its_bcc_recipients() {
        let mut m = message();
        m.to = vec![];
        m.bcc = vec![mb("sam@example.com")];
        let c = composed(&m);
        assert_eq!(c.envelope.rcpt_to, vec!["sam@example.com".to_owned()]);
        let raw = c.to_bytes();
        let parsed = MessageParser::default().parse(&raw).unwrap();
        assert!(parsed.to().is_none());
        assert!(parsed.bcc().is_none());
    }

    #[test]
    fn message_without_recipients_is_refused() {
        let mut m = message();
        m.to = vec![];
        let err = compose(&m, &sender()).unwrap_err().0;
        assert!(err.contains("no recipients"), "{err}");
    }

    #[test]
    fn unparsable_address_is_refused_naming_field_and_address() {
        type Put = fn(&mut Message, Mailbox);
        let cases: [(&str, Put); 5] = [
            ("to", |m, b| m.to.push(b)),
            ("cc", |m, b| m.cc.push(b)),
            ("bcc", |m, b| m.bcc.push(b)),
            ("reply-to", |m, b| m.reply_to.push(b)),
            ("from", |m, b| m.from = Some(b)),
        ];
        for (field, put) in cases {
            let mut m = message();
            put(&mut m, mb("not an address"));
            let err = compose(&m, &sender()).unwrap_err().0;
            assert_eq!(
                err,
                format!("{field}: \"not an address\" is not an email address")
            );
        }
    }

    #[test]
    fn address_with_crlf_is_refused_not_written() {
        let mut m = message();
        m.to = vec![mb("alice@example.com\r\nBcc: evil@example.com")];
        let err = compose(&m, &sender()).unwrap_err().0;
        assert!(err.starts_with("to:"), "{err}");
    }

    #[test]
    fn subject_with_crlf_stays_one_header_line() {
        let mut m = message();
        m.subject = "x\r\nBcc: evil@x".to_owned();
        let raw = composed(&m).to_bytes();
        let parsed = MessageParser::default().parse(&raw).unwrap();
        assert!(parsed.bcc().is_none());
        assert!(!all_header_names(&raw).contains(&"bcc".to_owned()));
        assert_eq!(parsed.subject(), Some("x  Bcc: evil@x"));
        let subject_lines: Vec<_> = header_lines(&raw)
            .into_iter()
            .filter(|l| l.starts_with("Subject:"))
            .collect();
        assert_eq!(subject_lines, vec!["Subject: x  Bcc: evil@x".to_owned()]);
    }

    #[test]
    fn bare_lf_nel_and_line_separator_in_subject_start_no_header() {
        for breaker in ["\n", "\r", "\u{85}", "\u{2028}", "\u{0}"] {
            let mut m = message();
            m.subject = format!("x{breaker}Bcc: evil@x");
            let raw = composed(&m).to_bytes();
            let parsed = MessageParser::default().parse(&raw).unwrap();
            assert!(parsed.bcc().is_none(), "{breaker:?}");
            assert!(
                !all_header_names(&raw).contains(&"bcc".to_owned()),
                "{breaker:?}"
            );
            assert_eq!(parsed.subject(), Some("x Bcc: evil@x"), "{breaker:?}");
        }
    }

    #[test]
    fn display_name_with_crlf_starts_no_header() {
        let mut m = message();
        m.from = Some(named("Desk\r\nBcc: evil@x", "desk@example.com"));
        m.to = vec![named("Alice\r\nX-Injected: 1", "alice@example.com")];
        m.cc = vec![named("\r\n", "carol@example.com")];
        let raw = composed(&m).to_bytes();
        let names = all_header_names(&raw);
        assert!(!names.contains(&"bcc".to_owned()), "{names:?}");
        assert!(!names.contains(&"x-injected".to_owned()), "{names:?}");
        let parsed = MessageParser::default().parse(&raw).unwrap();
        assert_eq!(
            parsed.from().unwrap().first().unwrap().name(),
            Some("Desk  Bcc: evil@x")
        );
        assert_eq!(
            parsed.to().unwrap().first().unwrap().address(),
            Some("alice@example.com")
        );
        // A name of only line breaks is no name at all.
        assert_eq!(parsed.cc().unwrap().first().unwrap().name(), None);
    }

    #[test]
    fn filename_with_crlf_starts_no_header() {
        let mut m = message();
        m.attachments = vec![Attachment {
            filename: "scan.pdf\"\r\nBcc: evil@x\r\nX-Injected: 1".to_owned(),
            content_type: "application/pdf".to_owned(),
            content: b"%PDF".to_vec().into(),
        }];
        let raw = composed(&m).to_bytes();
        let names = all_header_names(&raw);
        assert!(!names.contains(&"bcc".to_owned()), "{names:?}");
        assert!(!names.contains(&"x-injected".to_owned()), "{names:?}");
        let parsed = MessageParser::default().parse(&raw).unwrap();
        assert_eq!(
            parsed.attachments().next().unwrap().attachment_name(),
            Some("scan.pdf\"  Bcc: evil@x  X-Injected: 1")
        );
    }

    #[test]
    fn envelope_holds_to_cc_bcc_once_each_in_order() {
        let mut m = message();
        m.to = vec![mb("alice@example.com"), mb("Bob@Example.com")];
        m.cc = vec![mb("ALICE@example.com"), mb("carol@example.com")];
        m.bcc = vec![mb("bob@example.com"), mb("sam@example.com")];
        m.reply_to = vec![mb("replies@example.com")];
        let c = composed(&m);
        assert_eq!(
            c.envelope.rcpt_to,
            vec![
                "alice@example.com".to_owned(),
                "Bob@Example.com".to_owned(),
                "carol@example.com".to_owned(),
                "sam@example.com".to_owned(),
            ]
        );
    }

    #[test]
    fn one_line_replaces_every_line_break_with_a_space() {
        assert_eq!(one_line("a\r\nb\nc\rd\te\u{2029}f"), "a  b c d e f");
        assert_eq!(one_line("Übersicht – ok"), "Übersicht – ok");
    }

    #[test]
    fn attachments_are_left_for_the_host_between_text_parts() {
        let mut m = message();
        let pdf: Content = (0..200u8).collect::<Vec<u8>>().into();
        let notes: Content = b"notes".to_vec().into();
        for (name, content) in [("a.pdf", &pdf), ("b.txt", &notes)] {
            m.attachments.push(Attachment {
                filename: name.to_owned(),
                content_type: "application/octet-stream".to_owned(),
                content: content.clone(),
            });
        }
        let c = composed(&m);
        // text, a.pdf, text, b.txt, text: the attachments' bytes are not in the text.
        assert_eq!(c.parts.len(), 5);
        assert_eq!(c.parts[1], Part::Base64(pdf.clone()));
        assert_eq!(c.parts[3], Part::Base64(notes.clone()));
        for text in [&c.parts[0], &c.parts[2], &c.parts[4]] {
            let Part::Text(text) = text else {
                panic!("expected text, got {text:?}")
            };
            assert!(!text.contains(&0), "a marker was left in the text");
        }
        // The text after an attachment starts with the line end that closes its body.
        assert!(matches!(&c.parts[2], Part::Text(t) if t.starts_with(b"\r\n--")));
        let raw = c.to_bytes();
        assert_eq!(raw.len() as u64, c.len());
        let parsed = MessageParser::default().parse(&raw).unwrap();
        let contents: Vec<&[u8]> = parsed.attachments().map(|a| a.contents()).collect();
        assert_eq!(contents, vec![pdf.to_vec().as_slice(), b"notes".as_slice()]);
    }

    #[test]
    fn a_marker_found_twice_or_out_of_order_is_not_cut() {
        let markers = vec![b"\0m0\0".to_vec(), b"\0m1\0".to_vec()];
        let a = |n: &str| Attachment {
            filename: n.to_owned(),
            content_type: "text/plain".to_owned(),
            content: b"x".to_vec().into(),
        };
        let attachments = vec![a("0"), a("1")];
        let cut = |text: &[u8]| cut_at_markers(text, &markers, &attachments).map(|p| p.len());
        assert_eq!(cut(b"h\0m0\0t\0m1\0e"), Some(5));
        assert_eq!(cut(b"h\0m0\0t\0m0\0\0m1\0e"), None);
        assert_eq!(cut(b"h\0m1\0t\0m0\0e"), None);
        assert_eq!(cut(b"h\0m0\0t"), None);
    }
}
