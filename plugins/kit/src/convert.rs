//! The kit's types to and from the generated WIT types, in one place: the only module besides
//! the capability wrappers that touches the bindings.

use crate::Secret;
use crate::bindings::scan2x::mail::types as wit;
use crate::compose::{Part, base64_lines};
use crate::error::SendError;
use crate::message::{Attachment, Content, Mailbox, Message, Receipt};
use crate::sender::{EventKind, PluginInfo};
use crate::settings::{Endpoint, SettingDefault, SettingKind, SettingSpec, SettingValue, TlsMode};

pub fn setting(s: wit::Setting) -> (String, SettingValue<Secret>) {
    let value = match s.value {
        wit::SettingValue::Text(v) => SettingValue::Text(v),
        wit::SettingValue::Integer(v) => SettingValue::Integer(v),
        wit::SettingValue::Boolean(v) => SettingValue::Boolean(v),
        wit::SettingValue::Secret(v) => SettingValue::Secret(v),
    };
    (s.key, value)
}

pub fn plugin_info(info: PluginInfo) -> wit::PluginInfo {
    wit::PluginInfo {
        id: info.id.to_owned(),
        version: info.version.to_owned(),
        label: info.label.to_owned(),
        description: info.description.to_owned(),
        settings: info.settings.into_iter().map(setting_spec).collect(),
        events: info.events.into_iter().map(event).collect(),
        network: info.network,
    }
}

fn event(e: EventKind) -> wit::EventKind {
    match e {
        EventKind::JobOutput => wit::EventKind::JobOutput,
        EventKind::SavedScanCopy => wit::EventKind::SavedScanCopy,
        EventKind::PinRequest => wit::EventKind::PinRequest,
        EventKind::QueueNotification => wit::EventKind::QueueNotification,
    }
}

fn setting_spec(spec: SettingSpec) -> wit::SettingSpec {
    wit::SettingSpec {
        key: spec.key.to_owned(),
        label: spec.label.to_owned(),
        kind: match spec.kind {
            SettingKind::Text => wit::SettingKind::Text,
            SettingKind::Integer => wit::SettingKind::Integer,
            SettingKind::Boolean => wit::SettingKind::Boolean,
            SettingKind::Secret => wit::SettingKind::Secret,
        },
        required: spec.required,
        default: spec.default.map(|d| match d {
            SettingDefault::Text(v) => wit::SettingDefault::Text(v.to_owned()),
            SettingDefault::Integer(v) => wit::SettingDefault::Integer(v),
            SettingDefault::Boolean(v) => wit::SettingDefault::Boolean(v),
        }),
        help: spec.help.to_owned(),
    }
}

pub fn message(message: wit::Message) -> Message {
    fn mailbox(m: wit::Mailbox) -> Mailbox {
        Mailbox {
            name: m.name,
            address: m.address,
        }
    }
    fn mailboxes(list: Vec<wit::Mailbox>) -> Vec<Mailbox> {
        list.into_iter().map(mailbox).collect()
    }
    Message {
        message_id: message.message_id,
        from: message.from.map(mailbox),
        to: mailboxes(message.to),
        cc: mailboxes(message.cc),
        bcc: mailboxes(message.bcc),
        reply_to: mailboxes(message.reply_to),
        subject: message.subject,
        text_body: message.text_body,
        html_body: message.html_body,
        attachments: message
            .attachments
            .into_iter()
            .map(|a| Attachment {
                filename: a.filename,
                content_type: a.content_type,
                content: Content::from_host(a.content),
            })
            .collect(),
    }
}

/// The composed parts as the mail capabilities take them. Attachments the host holds go back as
/// handles; bytes the plugin made itself are encoded here.
pub fn message_parts(parts: &[Part]) -> Vec<wit::MessagePart<'_>> {
    parts
        .iter()
        .map(|part| match part {
            Part::Text(text) => wit::MessagePart::Text(text.clone()),
            Part::Base64(content) => match content.blob() {
                Some(blob) => wit::MessagePart::Base64(blob),
                None => {
                    let bytes = content.to_vec();
                    crate::host::warn_encoding_here(
                        bytes.len() as u64,
                        "the plugin made these bytes",
                    );
                    wit::MessagePart::Text(base64_lines(&bytes))
                }
            },
        })
        .collect()
}

pub fn receipt(r: Receipt) -> wit::Receipt {
    wit::Receipt {
        provider_id: r.provider_id,
        accepted: r.accepted,
        refused: r.refused.into_iter().map(refused).collect(),
        detail: r.detail,
    }
}

pub fn refused(r: crate::message::RefusedRecipient) -> wit::RefusedRecipient {
    wit::RefusedRecipient {
        address: r.address,
        reason: r.reason,
    }
}

pub fn refused_from_wit(r: wit::RefusedRecipient) -> crate::message::RefusedRecipient {
    crate::message::RefusedRecipient {
        address: r.address,
        reason: r.reason,
    }
}

pub fn send_error(e: SendError) -> wit::SendError {
    match e {
        SendError::InvalidSettings(m) => wit::SendError::InvalidSettings(m),
        SendError::InvalidMessage(m) => wit::SendError::InvalidMessage(m),
        SendError::AuthFailed(m) => wit::SendError::AuthFailed(m),
        SendError::Rejected(m) => wit::SendError::Rejected(m),
        SendError::Denied(m) => wit::SendError::Denied(m),
        SendError::Temporary {
            reason,
            retry_after_secs,
        } => wit::SendError::Temporary(wit::TemporaryFailure {
            reason,
            retry_after_secs,
        }),
    }
}

pub fn send_error_from_wit(e: wit::SendError) -> SendError {
    match e {
        wit::SendError::InvalidSettings(m) => SendError::InvalidSettings(m),
        wit::SendError::InvalidMessage(m) => SendError::InvalidMessage(m),
        wit::SendError::AuthFailed(m) => SendError::AuthFailed(m),
        wit::SendError::Rejected(m) => SendError::Rejected(m),
        wit::SendError::Denied(m) => SendError::Denied(m),
        wit::SendError::Temporary(t) => SendError::Temporary {
            reason: t.reason,
            retry_after_secs: t.retry_after_secs,
        },
    }
}

pub fn endpoint(e: &Endpoint) -> wit::Endpoint {
    wit::Endpoint {
        host: e.host.clone(),
        port: e.port,
        tls: match e.tls {
            TlsMode::Plaintext => wit::TlsMode::Plaintext,
            TlsMode::Starttls => wit::TlsMode::Starttls,
            TlsMode::ImplicitTls => wit::TlsMode::ImplicitTls,
        },
    }
}
