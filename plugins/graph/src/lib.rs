//! The Microsoft Graph sender plugin: a `sender-plugin` component that sends mail through a
//! Microsoft 365 mailbox with an Azure AD (Entra ID) application's client credentials, by way
//! of the host's `http` and `state` capabilities.
//!
//! | module        | holds                                                                  |
//! |---------------|------------------------------------------------------------------------|
//! | [`settings`]  | the schema and the parser of the sender's settings                     |
//! | [`message`]   | the Graph JSON of a message, the sendMail-or-draft plan, upload ranges |
//! | [`graph`]     | the protocol flow: token (kept in `state`), send, uploads, "Test"      |
//! | [`failure`]   | Microsoft's answers (AADSTS codes, Graph codes, statuses) as send-errors |
//! | [`transport`] | the host as a trait, so the flow tests natively                        |
//! | this file     | the `mail-sender` export: WIT types in, WIT types out, host imports    |
//!
//! The generated bindings stay private. Only this file calls host imports; it must never log
//! or otherwise reveal a secret or a token, and never reach the network other than through
//! `http`. The client secret stays a handle: the host fills it into the token request.

pub mod failure;
pub mod graph;
pub mod message;
pub mod settings;
pub mod transport;

// The canonical-ABI glue wit-bindgen generates is unsafe by nature; this module is the only
// place in the crate where `unsafe_code` is allowed.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "sender-plugin" });

    // Exported only for wasm: the export names are not valid symbols for a native linker, and
    // natively the crate is only unit-tested.
    #[cfg(target_arch = "wasm32")]
    use super::GraphSender;
    #[cfg(target_arch = "wasm32")]
    export!(GraphSender);
}

use bindings::exports::scan2x::mail::mail_sender::Guest;
use bindings::scan2x::mail::types as wit;
use bindings::scan2x::mail::{http, log, state};

use failure::Failure;
use scan2x_mail_plugin_kit::settings::{SettingDefault, SettingKind, SettingSpec, SettingValue};
use settings::Settings;
use transport::{Body, Level, Method, Part, Request, Response, TransportError};

/// The `mail-sender` implementation.
struct GraphSender;

impl Guest for GraphSender {
    fn describe() -> wit::PluginInfo {
        wit::PluginInfo {
            id: "graph".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            label: "Microsoft Graph".to_owned(),
            description: "Sends mail through a Microsoft 365 mailbox with Microsoft Graph \
                          (sendMail), signed in as an Azure AD application with a client secret; \
                          attachments over 3 MB go through upload sessions."
                .to_owned(),
            settings: settings::schema().into_iter().map(setting_spec).collect(),
            // Queue notifications go through SMTP only (the product's rule).
            events: vec![
                wit::EventKind::JobOutput,
                wit::EventKind::SavedScanCopy,
                wit::EventKind::PinRequest,
            ],
            network: settings::NETWORK.iter().map(|n| (*n).to_owned()).collect(),
        }
    }

    fn verify(settings: Vec<wit::Setting>) -> Result<String, wit::SendError> {
        let settings = parse_settings(settings)?;
        graph::Graph::new(&mut WitHost, &settings)
            .verify()
            .map_err(send_error)
    }

    fn send(
        settings: Vec<wit::Setting>,
        message: wit::Message,
    ) -> Result<wit::Receipt, wit::SendError> {
        let settings = parse_settings(settings)?;
        let message = outgoing(message);
        let receipt = graph::Graph::new(&mut WitHost, &settings)
            .send(&message)
            .map_err(send_error)?;
        Ok(wit::Receipt {
            provider_id: receipt.provider_id,
            accepted: receipt.accepted,
            refused: Vec::new(),
            detail: receipt.detail,
        })
    }
}

/// The host's capabilities behind the [`transport::Host`] trait.
struct WitHost;

impl transport::Host for WitHost {
    type Secret = wit::Secret;

    fn http(&mut self, request: Request<'_, wit::Secret>) -> Result<Response, TransportError> {
        fn parts<'a>(list: &[Part<'a, wit::Secret>]) -> Vec<http::TextPart<'a>> {
            list.iter()
                .map(|p| match p {
                    Part::Text(t) => http::TextPart::Text(t.clone()),
                    Part::Secret(s) => http::TextPart::Secret(s),
                })
                .collect()
        }
        let headers = request
            .headers
            .iter()
            .map(|(name, value)| http::Header {
                name: name.clone(),
                value: parts(value),
            })
            .collect();
        let body = match request.body {
            Body::Empty => http::Body::Empty,
            Body::Bytes(bytes) => http::Body::Bytes(bytes),
            Body::Form(fields) => http::Body::Form(
                fields
                    .iter()
                    .map(|(name, value)| http::FormField {
                        name: name.clone(),
                        value: parts(value),
                    })
                    .collect(),
            ),
        };
        let request = http::Request {
            method: match request.method {
                Method::Get => http::Method::Get,
                Method::Post => http::Method::Post,
                Method::Put => http::Method::Put,
                Method::Delete => http::Method::Delete,
            },
            url: request.url,
            headers,
            body,
            timeout_ms: request.timeout_ms,
        };
        match http::send(&request) {
            Ok(r) => Ok(Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
            Err(http::HttpError::Denied(m)) => Err(TransportError::Denied(m)),
            Err(http::HttpError::InvalidRequest(m)) => Err(TransportError::InvalidRequest(m)),
            Err(http::HttpError::Connection(m)) => Err(TransportError::Connection(m)),
            Err(http::HttpError::Timeout(m)) => Err(TransportError::Timeout(m)),
            Err(http::HttpError::TooLarge(m)) => Err(TransportError::TooLarge(m)),
        }
    }

    fn state_get(&mut self, key: &str) -> Option<Vec<u8>> {
        state::get(key)
    }

    fn state_set(&mut self, key: &str, value: &[u8], ttl_secs: u32) {
        state::set(key, value, ttl_secs);
    }

    fn state_remove(&mut self, key: &str) {
        state::remove(key);
    }

    fn log(&mut self, level: Level, message: &str) {
        let level = match level {
            Level::Debug => log::Level::Debug,
            Level::Info => log::Level::Info,
            Level::Warn => log::Level::Warn,
        };
        log::log(level, message);
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

fn send_error(f: Failure) -> wit::SendError {
    match f {
        Failure::InvalidSettings(m) => wit::SendError::InvalidSettings(m),
        Failure::InvalidMessage(m) => wit::SendError::InvalidMessage(m),
        Failure::AuthFailed(m) => wit::SendError::AuthFailed(m),
        Failure::Rejected(m) => wit::SendError::Rejected(m),
        Failure::Denied(m) => wit::SendError::Denied(m),
        Failure::Temporary {
            reason,
            retry_after_secs,
        } => wit::SendError::Temporary(wit::TemporaryFailure {
            reason,
            retry_after_secs,
        }),
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

fn outgoing(message: wit::Message) -> message::Message {
    fn mailbox(m: wit::Mailbox) -> message::Mailbox {
        message::Mailbox {
            name: m.name,
            address: m.address,
        }
    }
    fn mailboxes(list: Vec<wit::Mailbox>) -> Vec<message::Mailbox> {
        list.into_iter().map(mailbox).collect()
    }
    message::Message {
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
            .map(|a| message::Attachment {
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
    fn describe_offers_job_output_copies_and_pins_but_not_queue_notifications() {
        let info = GraphSender::describe();
        assert_eq!(info.id, "graph");
        assert_eq!(info.label, "Microsoft Graph");
        assert!(matches!(
            info.events.as_slice(),
            [
                wit::EventKind::JobOutput,
                wit::EventKind::SavedScanCopy,
                wit::EventKind::PinRequest,
            ]
        ));
    }

    #[test]
    fn describe_asks_for_exactly_the_three_url_origins() {
        let info = GraphSender::describe();
        assert_eq!(
            info.network,
            vec!["{authority_url}", "{graph_url}", "{outlook_url}"]
        );
        let secret = info
            .settings
            .iter()
            .find(|s| s.key == "client_secret")
            .unwrap();
        assert!(matches!(secret.kind, wit::SettingKind::Secret));
        let graph = info.settings.iter().find(|s| s.key == "graph_url").unwrap();
        assert!(matches!(
            &graph.default,
            Some(wit::SettingDefault::Text(t)) if t == "https://graph.microsoft.com"
        ));
    }
}
