//! The JSON body of SendGrid's `POST /v3/mail/send`, as its v3 reference documents it:
//!
//! | message part     | JSON                                                                    |
//! |------------------|-------------------------------------------------------------------------|
//! | To, Cc, Bcc      | one `personalizations[]` entry: `to`, `cc`, `bcc` (`{email, name?}`), each address once across the three |
//! | From             | `from`: the message's, else the settings' `from_email`/`from_name`     |
//! | Reply-To         | `reply_to` for one address, `reply_to_list` for several                 |
//! | subject          | `subject`                                                               |
//! | text, html       | `content[]`: `text/plain` first, then `text/html`                       |
//! | attachments      | `attachments[]`: base64 `content`, `filename`, `type`, `disposition: attachment` |
//! | the host's id    | `custom_args.scan2x_message_id` (SendGrid sets its own Message-ID)      |
//!
//! SendGrid refuses a personalization without a `to`, an address repeated across to/cc/bcc, and
//! a message over 30 MB; this module says so before sending ([`InvalidMessage`]). Plain Rust; it
//! never calls the host.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use scan2x_mail_plugin_kit::message::{InvalidMessage, Mailbox, Message};

/// SendGrid's limit for a whole message, attachments included.
pub const MAX_MESSAGE_BYTES: usize = 30_000_000;

/// The sender's From, used when the message names none.
pub struct From<'a> {
    pub email: &'a str,
    pub name: Option<&'a str>,
}

fn address(m: &Mailbox) -> Value {
    match &m.name {
        Some(name) if !name.trim().is_empty() => json!({ "email": m.address, "name": name }),
        _ => json!({ "email": m.address }),
    }
}

/// The body, or why SendGrid would refuse it.
pub fn mail_send(message: &Message, from: &From<'_>) -> Result<Value, InvalidMessage> {
    let mut seen: Vec<String> = Vec::new();
    let mut unique = |list: &[Mailbox]| -> Vec<Value> {
        list.iter()
            .filter(|m| {
                let key = m.address.to_ascii_lowercase();
                let new = !seen.contains(&key);
                if new {
                    seen.push(key);
                }
                new
            })
            .map(address)
            .collect()
    };
    let to = unique(&message.to);
    let cc = unique(&message.cc);
    let bcc = unique(&message.bcc);
    if to.is_empty() {
        return Err(InvalidMessage(
            "to: SendGrid needs at least one To recipient (Cc or Bcc alone can't be sent)"
                .to_owned(),
        ));
    }
    let mut personalization = Map::new();
    personalization.insert("to".into(), Value::Array(to));
    if !cc.is_empty() {
        personalization.insert("cc".into(), Value::Array(cc));
    }
    if !bcc.is_empty() {
        personalization.insert("bcc".into(), Value::Array(bcc));
    }

    let from = match &message.from {
        Some(m) => address(m),
        None => address(&Mailbox {
            name: from.name.map(str::to_owned),
            address: from.email.to_owned(),
        }),
    };

    // SendGrid wants at least one content entry of at least one character, text/plain first.
    let mut content = Vec::new();
    if let Some(text) = message.text_body.as_deref().filter(|t| !t.is_empty()) {
        content.push(json!({ "type": "text/plain", "value": text }));
    }
    if let Some(html) = message.html_body.as_deref().filter(|h| !h.is_empty()) {
        content.push(json!({ "type": "text/html", "value": html }));
    }
    if content.is_empty() {
        content.push(json!({ "type": "text/plain", "value": " " }));
    }

    let mut body = Map::new();
    body.insert(
        "personalizations".into(),
        Value::Array(vec![Value::Object(personalization)]),
    );
    body.insert("from".into(), from);
    match message.reply_to.as_slice() {
        [] => {}
        [one] => {
            body.insert("reply_to".into(), address(one));
        }
        many => {
            body.insert(
                "reply_to_list".into(),
                Value::Array(many.iter().map(address).collect()),
            );
        }
    }
    body.insert("subject".into(), json!(message.subject));
    body.insert("content".into(), Value::Array(content));
    // Checked before any attachment is read from the host.
    let size = message
        .attachments
        .iter()
        .map(|a| a.content.len())
        .sum::<u64>()
        + message.text_body.as_ref().map_or(0, |t| t.len() as u64)
        + message.html_body.as_ref().map_or(0, |t| t.len() as u64);
    if size > MAX_MESSAGE_BYTES as u64 {
        return Err(InvalidMessage(format!(
            "the message is {size} bytes; SendGrid takes at most 30 MB, attachments included"
        )));
    }
    if !message.attachments.is_empty() {
        let attachments = message
            .attachments
            .iter()
            .map(|a| {
                json!({
                    "content": base64::engine::general_purpose::STANDARD.encode(a.content.to_vec()),
                    "filename": a.filename,
                    "type": a.content_type,
                    "disposition": "attachment",
                })
            })
            .collect();
        body.insert("attachments".into(), Value::Array(attachments));
    }
    body.insert(
        "custom_args".into(),
        json!({ "scan2x_message_id": message.message_id }),
    );
    Ok(Value::Object(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use scan2x_mail_plugin_kit::message::Attachment;

    fn mailbox(address: &str) -> Mailbox {
        Mailbox {
            name: None,
            address: address.to_owned(),
        }
    }

    const FROM: From<'static> = From {
        email: "scans@example.com",
        name: Some("Scanner"),
    };

    #[test]
    fn recipients_go_in_one_personalization_each_address_once() {
        let message = Message {
            to: vec![mailbox("a@example.com"), mailbox("B@example.com")],
            cc: vec![mailbox("b@example.com"), mailbox("c@example.com")],
            bcc: vec![mailbox("A@example.com"), mailbox("d@example.com")],
            ..Message::default()
        };
        let body = mail_send(&message, &FROM).unwrap();
        assert_eq!(
            body["personalizations"],
            json!([{
                "to": [{"email": "a@example.com"}, {"email": "B@example.com"}],
                "cc": [{"email": "c@example.com"}],
                "bcc": [{"email": "d@example.com"}],
            }])
        );
        assert_eq!(
            body["from"],
            json!({"email": "scans@example.com", "name": "Scanner"})
        );
    }

    #[test]
    fn text_comes_before_html_and_an_empty_body_is_one_space() {
        let mut message = Message {
            to: vec![mailbox("a@example.com")],
            text_body: Some("t".into()),
            html_body: Some("<p>h</p>".into()),
            ..Message::default()
        };
        let body = mail_send(&message, &FROM).unwrap();
        assert_eq!(
            body["content"],
            json!([{"type": "text/plain", "value": "t"}, {"type": "text/html", "value": "<p>h</p>"}])
        );
        message.text_body = None;
        message.html_body = None;
        let body = mail_send(&message, &FROM).unwrap();
        assert_eq!(
            body["content"],
            json!([{"type": "text/plain", "value": " "}])
        );
    }

    #[test]
    fn one_reply_to_is_reply_to_and_several_are_reply_to_list() {
        let mut message = Message {
            to: vec![mailbox("a@example.com")],
            reply_to: vec![mailbox("r@example.com")],
            ..Message::default()
        };
        let body = mail_send(&message, &FROM).unwrap();
        assert_eq!(body["reply_to"], json!({"email": "r@example.com"}));
        assert!(body.get("reply_to_list").is_none());
        message.reply_to.push(mailbox("s@example.com"));
        let body = mail_send(&message, &FROM).unwrap();
        assert_eq!(
            body["reply_to_list"],
            json!([{"email": "r@example.com"}, {"email": "s@example.com"}])
        );
        assert!(body.get("reply_to").is_none());
    }

    #[test]
    fn attachments_are_base64_with_type_and_disposition() {
        let message = Message {
            to: vec![mailbox("a@example.com")],
            attachments: vec![Attachment {
                filename: "scan.pdf".into(),
                content_type: "application/pdf".into(),
                content: b"%PDF".to_vec().into(),
            }],
            ..Message::default()
        };
        let body = mail_send(&message, &FROM).unwrap();
        assert_eq!(
            body["attachments"],
            json!([{"content": "JVBERg==", "filename": "scan.pdf", "type": "application/pdf", "disposition": "attachment"}])
        );
    }

    #[test]
    fn a_message_without_to_is_refused_before_sending() {
        let message = Message {
            bcc: vec![mailbox("a@example.com")],
            ..Message::default()
        };
        assert!(mail_send(&message, &FROM).unwrap_err().0.starts_with("to:"));
    }
}
