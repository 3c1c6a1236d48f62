//! The message as Microsoft Graph takes it: the JSON of a `message` resource (recipients, body,
//! `fileAttachment`s with base64 `contentBytes`), the choice between one `sendMail` request and
//! a draft with attachments added one by one, and the byte ranges of an upload session.
//!
//! Graph refuses requests over 4 MB, and attachments of 3 MB or more must go through an upload
//! session (ranges of at most 4 MB). So: a message whose `sendMail` JSON fits
//! [`MAX_REQUEST_BYTES`] goes in one request; otherwise a draft is made, each small attachment
//! is POSTed on its own and each large one is uploaded in [`CHUNK_BYTES`] ranges, then the draft
//! is sent.
//!
//! Plain Rust, tested natively; it never calls the host.

use base64::Engine as _;
use serde_json::{Value, json};

/// Graph's request size limit is 4 MB; this stays under it by either reading of "MB".
pub const MAX_REQUEST_BYTES: usize = 4_000_000;
/// Attachments this large or larger go through an upload session (Graph: "3 MB to 150 MB").
pub const UPLOAD_SESSION_MIN_BYTES: usize = 3_000_000;
/// Graph's largest attachment.
pub const MAX_ATTACHMENT_BYTES: usize = 150 * 1024 * 1024;
/// One upload range: 12 × 320 KiB = 3.75 MiB, under Graph's 4 MB per request.
pub const CHUNK_BYTES: usize = 12 * 320 * 1024;

pub use scan2x_mail_plugin_kit::message::{Attachment, Mailbox, Message};

fn recipient(m: &Mailbox) -> Value {
    match &m.name {
        Some(name) => json!({ "emailAddress": { "name": name, "address": m.address } }),
        None => json!({ "emailAddress": { "address": m.address } }),
    }
}

fn recipients(list: &[Mailbox]) -> Value {
    Value::Array(list.iter().map(recipient).collect())
}

/// The `message` resource without attachments. `from` is set only when it differs from the
/// sending mailbox (`username`): Graph then sends as (or on behalf of) that address.
pub fn message_json(message: &Message, username: &str, from_email: Option<&str>) -> Value {
    // Graph takes one body: HTML when there is one (the text alternative is then not sent).
    let body = match (&message.html_body, &message.text_body) {
        (Some(html), _) => json!({ "contentType": "HTML", "content": html }),
        (None, Some(text)) => json!({ "contentType": "Text", "content": text }),
        (None, None) => json!({ "contentType": "Text", "content": "" }),
    };
    let mut m = json!({
        "subject": message.subject,
        "body": body,
        "toRecipients": recipients(&message.to),
        "ccRecipients": recipients(&message.cc),
        "bccRecipients": recipients(&message.bcc),
        "replyTo": recipients(&message.reply_to),
        "internetMessageId": format!("<{}>", message.message_id),
    });
    let from = message.from.clone().or_else(|| {
        from_email.map(|address| Mailbox {
            name: None,
            address: address.to_owned(),
        })
    });
    if let Some(from) = from.filter(|f| !f.address.eq_ignore_ascii_case(username)) {
        m["from"] = recipient(&from);
    }
    m
}

/// A `fileAttachment` with its content as base64.
pub fn file_attachment_json(a: &Attachment) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": a.filename,
        "contentType": a.content_type,
        "contentBytes": base64::engine::general_purpose::STANDARD.encode(a.content.to_vec()),
    })
}

/// The body of `createUploadSession` for one attachment.
pub fn upload_session_json(a: &Attachment) -> Value {
    json!({
        "AttachmentItem": {
            "attachmentType": "file",
            "name": a.filename,
            "size": a.content.len(),
            "contentType": a.content_type,
        }
    })
}

/// How one message goes out.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// One `sendMail` request with this body.
    SendMail(Value),
    /// A draft with this body, then each attachment by index: small ones POSTed, large ones
    /// uploaded; then `send`.
    Draft {
        draft: Value,
        small: Vec<usize>,
        large: Vec<usize>,
    },
}

/// Why a message can't go out through Graph at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsendable(pub String);

pub fn plan(
    message: &Message,
    username: &str,
    from_email: Option<&str>,
) -> Result<Plan, Unsendable> {
    if message.recipients().is_empty() {
        return Err(Unsendable("the message has no recipients".into()));
    }
    if let Some(a) = message
        .attachments
        .iter()
        .find(|a| a.content.len() > MAX_ATTACHMENT_BYTES as u64)
    {
        return Err(Unsendable(format!(
            "attachment {:?} is {} bytes; Microsoft Graph takes attachments up to 150 MB",
            a.filename,
            a.content.len()
        )));
    }
    let base = message_json(message, username, from_email);
    let all_small = message
        .attachments
        .iter()
        .all(|a| a.content.len() < UPLOAD_SESSION_MIN_BYTES as u64);
    if all_small {
        let mut m = base.clone();
        m["attachments"] = Value::Array(
            message
                .attachments
                .iter()
                .map(file_attachment_json)
                .collect(),
        );
        let body = json!({ "message": m, "saveToSentItems": true });
        if serde_json::to_vec(&body)
            .map(|b| b.len())
            .unwrap_or(usize::MAX)
            <= MAX_REQUEST_BYTES
        {
            return Ok(Plan::SendMail(body));
        }
    }
    let (large, small): (Vec<usize>, Vec<usize>) = (0..message.attachments.len())
        .partition(|&i| message.attachments[i].content.len() >= UPLOAD_SESSION_MIN_BYTES as u64);
    Ok(Plan::Draft {
        draft: base,
        small,
        large,
    })
}

/// One range of an upload session: `bytes start-end/total` with `end` inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: usize,
    /// Exclusive.
    pub end: usize,
    pub total: usize,
}

impl Range {
    pub fn content_range(&self) -> String {
        format!("bytes {}-{}/{}", self.start, self.end - 1, self.total)
    }
}

/// The range starting at `start` of a `total`-byte upload.
pub fn range_at(start: usize, total: usize) -> Range {
    Range {
        start,
        end: (start + CHUNK_BYTES).min(total),
        total,
    }
}

/// The start of the first range in an upload session's `nextExpectedRanges` (`"123-"`, `"123-456"`).
pub fn next_expected(session: &Value) -> Option<usize> {
    session
        .get("nextExpectedRanges")?
        .as_array()?
        .first()?
        .as_str()?
        .split('-')
        .next()?
        .parse()
        .ok()
}

/// `username` as one URL path segment: everything but unreserved characters and `@` escaped.
pub fn path_segment(text: &str) -> String {
    let mut out = String::new();
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailbox(name: Option<&str>, address: &str) -> Mailbox {
        Mailbox {
            name: name.map(str::to_owned),
            address: address.to_owned(),
        }
    }

    fn message(attachments: Vec<usize>) -> Message {
        Message {
            message_id: "abc@scan2x-mail".into(),
            from: None,
            to: vec![mailbox(Some("Åsa Öberg"), "asa@example.test")],
            cc: vec![mailbox(None, "carl@example.test")],
            bcc: vec![mailbox(None, "hidden@example.test")],
            reply_to: vec![mailbox(Some("Desk"), "desk@example.test")],
            subject: "Scan 📄 Prüfbericht".into(),
            text_body: Some("text".into()),
            html_body: None,
            attachments: attachments
                .into_iter()
                .enumerate()
                .map(|(i, n)| Attachment {
                    filename: format!("Größe {i}.pdf"),
                    content_type: "application/pdf".into(),
                    content: vec![i as u8; n].into(),
                })
                .collect(),
        }
    }

    #[test]
    fn message_json_has_graphs_property_names_and_shapes() {
        let m = message_json(&message(vec![]), "scanner@example.test", None);
        assert_eq!(m["subject"], "Scan 📄 Prüfbericht");
        assert_eq!(m["body"], json!({"contentType": "Text", "content": "text"}));
        assert_eq!(
            m["toRecipients"],
            json!([{"emailAddress": {"name": "Åsa Öberg", "address": "asa@example.test"}}])
        );
        assert_eq!(
            m["ccRecipients"],
            json!([{"emailAddress": {"address": "carl@example.test"}}])
        );
        assert_eq!(
            m["bccRecipients"],
            json!([{"emailAddress": {"address": "hidden@example.test"}}])
        );
        assert_eq!(m["replyTo"][0]["emailAddress"]["name"], "Desk");
        assert_eq!(m["internetMessageId"], "<abc@scan2x-mail>");
        assert!(m.get("from").is_none());
    }

    #[test]
    fn html_wins_over_text_because_graph_takes_one_body() {
        let mut msg = message(vec![]);
        msg.html_body = Some("<p>x</p>".into());
        let m = message_json(&msg, "u@example.test", None);
        assert_eq!(
            m["body"],
            json!({"contentType": "HTML", "content": "<p>x</p>"})
        );
    }

    #[test]
    fn from_is_set_only_when_it_differs_from_the_mailbox() {
        let msg = message(vec![]);
        let same = message_json(&msg, "Scanner@Example.test", Some("scanner@example.test"));
        assert!(same.get("from").is_none());
        let other = message_json(&msg, "scanner@example.test", Some("desk@example.test"));
        assert_eq!(
            other["from"],
            json!({"emailAddress": {"address": "desk@example.test"}})
        );
        let mut explicit = msg.clone();
        explicit.from = Some(mailbox(Some("Jürgen"), "j@example.test"));
        let m = message_json(&explicit, "scanner@example.test", Some("desk@example.test"));
        assert_eq!(m["from"]["emailAddress"]["address"], "j@example.test");
    }

    #[test]
    fn small_messages_go_in_one_sendmail_with_base64_attachments() {
        let Plan::SendMail(body) = plan(&message(vec![10, 1000]), "u@example.test", None).unwrap()
        else {
            panic!("expected sendMail");
        };
        assert_eq!(body["saveToSentItems"], true);
        let a = &body["message"]["attachments"][1];
        assert_eq!(a["@odata.type"], "#microsoft.graph.fileAttachment");
        assert_eq!(a["name"], "Größe 1.pdf");
        assert_eq!(a["contentType"], "application/pdf");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(a["contentBytes"].as_str().unwrap())
            .unwrap();
        assert_eq!(bytes, vec![1u8; 1000]);
    }

    #[test]
    fn several_small_attachments_over_the_request_limit_go_through_a_draft() {
        let plan = plan(&message(vec![2_000_000, 2_000_000]), "u@example.test", None).unwrap();
        assert_eq!(plan_shape(&plan), (true, vec![0, 1], vec![]),);
    }

    #[test]
    fn attachments_of_3_mb_or_more_are_uploaded() {
        let plan = plan(
            &message(vec![100, 3_000_000, 30_000_000]),
            "u@example.test",
            None,
        )
        .unwrap();
        assert_eq!(plan_shape(&plan), (true, vec![0], vec![1, 2]));
        if let Plan::Draft { draft, .. } = plan {
            assert!(draft.get("attachments").is_none());
        }
    }

    fn plan_shape(plan: &Plan) -> (bool, Vec<usize>, Vec<usize>) {
        match plan {
            Plan::SendMail(_) => (false, vec![], vec![]),
            Plan::Draft { small, large, .. } => (true, small.clone(), large.clone()),
        }
    }

    #[test]
    fn no_recipients_or_a_giant_attachment_is_unsendable() {
        let mut m = message(vec![]);
        m.to.clear();
        m.cc.clear();
        m.bcc.clear();
        assert!(plan(&m, "u@example.test", None).is_err());
        let giant = message(vec![MAX_ATTACHMENT_BYTES + 1]);
        let e = plan(&giant, "u@example.test", None).unwrap_err();
        assert!(e.0.contains("150 MB"), "{e:?}");
    }

    #[test]
    fn ranges_cover_the_file_in_order_in_chunks_of_at_most_4_mib() {
        let total = 30_000_001;
        let mut start = 0;
        let mut ranges = Vec::new();
        while start < total {
            let r = range_at(start, total);
            assert!(r.end - r.start <= 4 * 1024 * 1024);
            ranges.push(r);
            start = r.end;
        }
        assert_eq!(ranges.len(), total.div_ceil(CHUNK_BYTES));
        assert_eq!(
            ranges[0].content_range(),
            format!("bytes 0-{}/{total}", CHUNK_BYTES - 1)
        );
        let last = ranges.last().unwrap();
        assert_eq!(last.end, total);
        assert_eq!(
            last.content_range(),
            format!("bytes {}-30000000/30000001", last.start)
        );
    }

    #[test]
    fn next_expected_ranges_are_read_in_both_forms() {
        assert_eq!(
            next_expected(&json!({"nextExpectedRanges": ["0-"]})),
            Some(0)
        );
        assert_eq!(
            next_expected(&json!({"nextExpectedRanges": ["3932160"]})),
            Some(3932160)
        );
        assert_eq!(
            next_expected(&json!({"nextExpectedRanges": ["5-9", "20-"]})),
            Some(5)
        );
        assert_eq!(next_expected(&json!({})), None);
    }

    #[test]
    fn usernames_become_one_path_segment() {
        assert_eq!(path_segment("scanner@contoso.com"), "scanner@contoso.com");
        assert_eq!(path_segment("a/b?c#d e"), "a%2Fb%3Fc%23d%20e");
    }
}
