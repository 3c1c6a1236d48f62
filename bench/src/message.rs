//! The benchmark's email, and the same email composed natively with lettre's builder.

use scan2x_mail::message::{Attachment, Email};
use scan2x_mail::wit::types::{EventKind, Mailbox};

pub const FROM: &str = "scanner@example.test";
pub const TO: &str = "user@example.test";

/// A small "scanned" PDF: a valid header and trailer around incompressible page data.
pub fn pdf(size: usize) -> Vec<u8> {
    let head = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\nstream\n";
    let tail = b"\nendstream\n%%EOF\n";
    let mut bytes = head.to_vec();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    while bytes.len() + tail.len() < size {
        // xorshift: cheap bytes that neither compress nor repeat.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(size - tail.len());
    bytes.extend_from_slice(tail);
    bytes
}

/// The benchmark's email: a text body and one PDF; `pdf_bytes` = 28 KB makes a ≈50 KB message.
pub fn message(n: usize, pdf_bytes: usize) -> Email {
    let text: String = "Your scan is attached. Scanned on Copier 3, 300 dpi, colour.\n".repeat(160);
    Email {
        event: EventKind::JobOutput,
        message_id: format!("bench-{n}@scan2x-mail"),
        from: None,
        to: vec![Mailbox {
            name: Some("Scanner User".into()),
            address: TO.into(),
        }],
        cc: vec![],
        bcc: vec![],
        reply_to: vec![],
        subject: format!("Scan {n} from Copier 3"),
        text_body: Some(text),
        html_body: None,
        attachments: vec![Attachment {
            filename: "scan.pdf".into(),
            content_type: "application/pdf".into(),
            content: pdf(pdf_bytes).into(),
        }],
    }
}

/// The same email composed natively with lettre's builder (what the plugins compose with):
/// the bare-lettre side's bytes, and the cost any sender pays for MIME whatever its design.
pub fn compose_natively(m: &Email) -> anyhow::Result<Vec<u8>> {
    use lettre::message::header::ContentType;
    use lettre::message::{Attachment as Part, MultiPart, SinglePart};
    let mut builder = lettre::Message::builder()
        .from(FROM.parse()?)
        .subject(m.subject.clone())
        .message_id(Some(format!("<{}>", m.message_id)));
    for to in &m.to {
        builder = builder.to(lettre::message::Mailbox::new(
            to.name.clone(),
            to.address.parse()?,
        ));
    }
    let mut parts =
        MultiPart::mixed().singlepart(SinglePart::plain(m.text_body.clone().unwrap_or_default()));
    for a in &m.attachments {
        parts = parts.singlepart(
            Part::new(a.filename.clone())
                .body(a.content.to_vec(), ContentType::parse(&a.content_type)?),
        );
    }
    Ok(builder.multipart(parts)?.formatted())
}
