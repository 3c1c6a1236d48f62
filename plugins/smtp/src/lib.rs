//! The SMTP sender plugin: a `sender-plugin` component that sends mail through an SMTP server
//! by way of the host's `smtp` capability.
//!
//! | module       | holds                                                         |
//! |--------------|---------------------------------------------------------------|
//! | [`settings`] | the schema and the parser of the sender's settings            |
//! | [`compose`]  | the RFC 5322 message and its SMTP envelope (the plugin kit's) |
//! | [`reply`]    | what the server's reply says (queue id)                       |
//! | this file    | the `mail-sender` export: WIT types in, WIT types out         |
//!
//! The generated bindings stay private: the modules above are plain Rust over their own types
//! and test natively. Only this file calls host imports (`smtp`, `log`); it must never log or
//! otherwise reveal a secret, and never reach the network other than through `smtp`.

pub use scan2x_mail_plugin_kit::compose;
pub mod reply;
pub mod settings;

// The canonical-ABI glue wit-bindgen generates (lifting, lowering, exported symbols) is unsafe
// by nature; this module is the only place in the crate where `unsafe_code` is allowed.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "sender-plugin" });

    // Exported only for wasm: the export names (`scan2x:mail/mail-sender@0.1.0#send`) are
    // not valid symbol names for a native linker, and natively the crate is only unit-tested.
    #[cfg(target_arch = "wasm32")]
    use super::SmtpSender;
    #[cfg(target_arch = "wasm32")]
    export!(SmtpSender);
}

use bindings::exports::scan2x::mail::mail_sender::Guest;
use bindings::scan2x::mail::log::{self, Level};
use bindings::scan2x::mail::smtp;
use bindings::scan2x::mail::types as wit;

use compose::Composed;
use settings::{SettingDefault, SettingKind, SettingValue, Settings, TlsMode};

/// The `mail-sender` implementation.
struct SmtpSender;

impl Guest for SmtpSender {
    fn describe() -> wit::PluginInfo {
        wit::PluginInfo {
            id: "smtp".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            label: "SMTP".to_owned(),
            description: "Sends mail through an SMTP server: submission with STARTTLS, \
                          implicit TLS on port 465, or a plaintext relay without login."
                .to_owned(),
            settings: settings::schema().into_iter().map(setting_spec).collect(),
            events: vec![
                wit::EventKind::JobOutput,
                wit::EventKind::SavedScanCopy,
                wit::EventKind::PinRequest,
                wit::EventKind::QueueNotification,
            ],
            network: vec![settings::NETWORK.to_owned()],
        }
    }

    fn verify(settings: Vec<wit::Setting>) -> Result<String, wit::SendError> {
        let settings = parse_settings(settings)?;
        let endpoint = endpoint(&settings);
        let credentials = credentials(&settings);
        smtp::verify(&endpoint, credentials.as_ref())
    }

    fn send(
        settings: Vec<wit::Setting>,
        message: wit::Message,
    ) -> Result<wit::Receipt, wit::SendError> {
        let settings = parse_settings(settings)?;
        let Composed { envelope, raw } =
            compose::compose(&outgoing(message), &settings.email_address)
                .map_err(|e| wit::SendError::InvalidMessage(e.0))?;
        // Sizes and counts only: addresses and content stay out of the host's log.
        log::log(
            Level::Debug,
            &format!(
                "composed {} bytes for {} recipients",
                raw.len(),
                envelope.rcpt_to.len()
            ),
        );

        let endpoint = endpoint(&settings);
        let credentials = credentials(&settings);
        let envelope = smtp::Envelope {
            mail_from: envelope.mail_from,
            rcpt_to: envelope.rcpt_to,
        };
        // The host's errors are already `send-error`s that say what to do next: pass them on.
        let report = smtp::send(&endpoint, credentials.as_ref(), &envelope, &raw)?;
        Ok(wit::Receipt {
            provider_id: reply::queue_id(&report.reply),
            accepted: report.accepted,
            refused: report.refused,
            detail: reply::one_line(&report.reply),
        })
    }
}

fn parse_settings(list: Vec<wit::Setting>) -> Result<Settings<wit::Secret>, wit::SendError> {
    let entries = list.into_iter().map(|s| {
        let value = match s.value {
            wit::SettingValue::Text(v) => SettingValue::Text(v),
            wit::SettingValue::Integer(v) => SettingValue::Integer(v),
            wit::SettingValue::Boolean(v) => SettingValue::Boolean(v),
            wit::SettingValue::Secret(v) => SettingValue::Secret(v),
        };
        (s.key, value)
    });
    settings::parse(entries).map_err(|e| wit::SendError::InvalidSettings(e.0))
}

fn endpoint(settings: &Settings<wit::Secret>) -> wit::Endpoint {
    let e = &settings.endpoint;
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

/// The login as the host takes it: the password stays a borrowed handle the host fills in.
fn credentials(settings: &Settings<wit::Secret>) -> Option<wit::Credentials<'_>> {
    settings.login.as_ref().map(|login| wit::Credentials {
        username: login.username.clone(),
        password: &login.password,
    })
}

fn setting_spec(spec: settings::SettingSpec) -> wit::SettingSpec {
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

fn outgoing(message: wit::Message) -> compose::Message {
    fn mailbox(m: wit::Mailbox) -> compose::Mailbox {
        compose::Mailbox {
            name: m.name,
            address: m.address,
        }
    }
    fn mailboxes(list: Vec<wit::Mailbox>) -> Vec<compose::Mailbox> {
        list.into_iter().map(mailbox).collect()
    }
    compose::Message {
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
            .map(|a| compose::Attachment {
                filename: a.filename,
                content_type: a.content_type,
                content: a.content,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_offers_every_event_and_only_the_smtp_grant() {
        let info = SmtpSender::describe();
        assert_eq!(info.id, "smtp");
        assert_eq!(info.label, "SMTP");
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(info.network, vec!["smtp://{host}:{port}".to_owned()]);
        assert!(matches!(
            info.events.as_slice(),
            [
                wit::EventKind::JobOutput,
                wit::EventKind::SavedScanCopy,
                wit::EventKind::PinRequest,
                wit::EventKind::QueueNotification,
            ]
        ));
    }

    #[test]
    fn describe_carries_the_schema_with_labels_and_defaults() {
        let info = SmtpSender::describe();
        let specs: Vec<_> = info
            .settings
            .iter()
            .map(|s| (s.key.as_str(), s.label.as_str(), s.required))
            .collect();
        assert_eq!(
            specs,
            vec![
                ("host", "SMTP host", true),
                ("port", "Port", false),
                ("enable_ssl", "Enable SSL", false),
                ("username", "Username", false),
                ("password", "Password", false),
                ("email_address", "Email address", true),
            ]
        );
        assert!(matches!(
            info.settings[1].default,
            Some(wit::SettingDefault::Integer(587))
        ));
        assert!(matches!(
            info.settings[2].default,
            Some(wit::SettingDefault::Boolean(true))
        ));
        assert!(matches!(info.settings[4].kind, wit::SettingKind::Secret));
    }
}
