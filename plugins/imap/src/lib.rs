//! The IMAP sender plugin: a `sender-plugin` component that places the finished message in a
//! folder of an IMAP account, by way of the host's `imap` capability.
//!
//! IMAP cannot submit mail to other people. What this sender does is APPEND the message — composed
//! exactly as the SMTP sender composes it (the plugin kit's [`compose`]) — flagged `\Seen`, to
//! the account's Sent folder or the folder the settings name. Recipients other than the account
//! receive nothing, unless the server itself submits what is placed in that folder (an outbox
//! folder). Every receipt and help text says so.
//!
//! | module       | holds                                                              |
//! |--------------|--------------------------------------------------------------------|
//! | [`settings`] | the schema and the parser of the sender's settings                  |
//! | [`target`]   | which folder: the setting, the server's `\Sent`, or `Sent`           |
//! | [`report`]   | the receipt, the "Test" line and the missing-folder error            |
//! | this file    | the `mail-sender` export: WIT types in, WIT types out               |
//!
//! The generated bindings stay private: the modules above are plain Rust and test natively.
//! Only this file calls host imports (`imap`, `log`); it must never log or otherwise reveal a
//! secret or message content, and never reach the network other than through `imap`.

pub use scan2x_mail_plugin_kit::compose;
pub mod report;
pub mod settings;
pub mod target;

// The canonical-ABI glue wit-bindgen generates is unsafe by nature; this module is the only
// place in the crate where `unsafe_code` is allowed.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "sender-plugin" });

    // Exported only for wasm: the export names are not valid symbol names for a native
    // linker, and natively the crate is only unit-tested.
    #[cfg(target_arch = "wasm32")]
    use super::ImapSender;
    #[cfg(target_arch = "wasm32")]
    export!(ImapSender);
}

use bindings::exports::scan2x::mail::mail_sender::Guest;
use bindings::scan2x::mail::imap::{self, AppendError, Session};
use bindings::scan2x::mail::log::{self, Level};
use bindings::scan2x::mail::types as wit;

use settings::{SettingDefault, SettingKind, SettingValue, Settings, TlsMode};
use target::Target;

/// The flags every placed message gets: it is a sent message, already read.
const FLAGS: &[&str] = &["\\Seen"];

/// The `mail-sender` implementation.
struct ImapSender;

impl Guest for ImapSender {
    fn describe() -> wit::PluginInfo {
        wit::PluginInfo {
            id: "imap".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            label: "IMAP".to_owned(),
            description: "Places the finished message in a folder of an IMAP account: its Sent \
                          folder, or the folder named in the settings. IMAP cannot send mail: \
                          recipients other than the account receive nothing unless the server \
                          submits from that folder."
                .to_owned(),
            settings: settings::schema().into_iter().map(setting_spec).collect(),
            // The same events as the Graph sender; queue notifications go by SMTP only.
            events: vec![
                wit::EventKind::JobOutput,
                wit::EventKind::SavedScanCopy,
                wit::EventKind::PinRequest,
            ],
            network: vec![settings::NETWORK.to_owned()],
        }
    }

    fn verify(settings: Vec<wit::Setting>) -> Result<String, wit::SendError> {
        let settings = parse_settings(settings)?;
        let session = open(&settings)?;
        let target = target(&session, &settings)?;
        let at = at(&settings);
        let count = if target.listed {
            Some(session.examine(&target.name)?)
        } else if settings.create_mailbox {
            None
        } else {
            let _ = session.logout();
            return Err(wit::SendError::InvalidSettings(report::missing_folder(
                &target,
                &settings.login.username,
                &at,
                "not in the server's folder list",
            )));
        };
        let _ = session.logout();
        let tls = match settings.endpoint.tls {
            TlsMode::ImplicitTls => "implicit TLS",
            _ => "STARTTLS",
        };
        Ok(report::verified(
            &target,
            &settings.login.username,
            &at,
            tls,
            count,
        ))
    }

    fn send(
        settings: Vec<wit::Setting>,
        message: wit::Message,
    ) -> Result<wit::Receipt, wit::SendError> {
        let settings = parse_settings(settings)?;
        let composed = compose::compose(&outgoing(message), &settings.from_email)
            .map_err(|e| wit::SendError::InvalidMessage(e.0))?;
        // Sizes only: addresses and content stay out of the host's log.
        log::log(
            Level::Debug,
            &format!("composed {} bytes", composed.raw.len()),
        );

        let session = open(&settings)?;
        let target = target(&session, &settings)?;
        let at = at(&settings);
        let flags: Vec<String> = FLAGS.iter().map(|f| (*f).to_owned()).collect();
        let now = now_unix_secs();
        let mut created = false;
        let report = match session.append(&target.name, &flags, now, &composed.raw) {
            Ok(report) => report,
            Err(AppendError::NoSuchFolder(_)) if settings.create_mailbox => {
                log::log(Level::Info, &format!("creating folder {:?}", target.name));
                session.create(&target.name)?;
                created = true;
                session
                    .append(&target.name, &flags, now, &composed.raw)
                    .map_err(|e| match e {
                        AppendError::NoSuchFolder(server) => wit::SendError::InvalidSettings(
                            format!("{at}: folder {target} could not be created: {server}"),
                        ),
                        AppendError::Failed(e) => e,
                    })?
            }
            Err(AppendError::NoSuchFolder(server)) => {
                let _ = session.logout();
                return Err(wit::SendError::InvalidSettings(report::missing_folder(
                    &target,
                    &settings.login.username,
                    &at,
                    &server,
                )));
            }
            Err(AppendError::Failed(e)) => return Err(e),
        };
        let _ = session.logout();
        Ok(wit::Receipt {
            provider_id: report.uid.map(|uid| uid.to_string()),
            // IMAP delivers to no one: the message is in a folder, not with its recipients.
            accepted: Vec::new(),
            refused: Vec::new(),
            detail: report::stored(&target, &settings.login.username, &at, report.uid, created),
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

fn at(settings: &Settings<wit::Secret>) -> String {
    format!("{}:{}", settings.endpoint.host, settings.endpoint.port)
}

/// Connect, secure and log in; the password stays a borrowed handle the host fills in.
fn open(settings: &Settings<wit::Secret>) -> Result<Session, wit::SendError> {
    let e = &settings.endpoint;
    let endpoint = wit::Endpoint {
        host: e.host.clone(),
        port: e.port,
        tls: match e.tls {
            TlsMode::Plaintext => wit::TlsMode::Plaintext,
            TlsMode::Starttls => wit::TlsMode::Starttls,
            TlsMode::ImplicitTls => wit::TlsMode::ImplicitTls,
        },
    };
    let credentials = wit::Credentials {
        username: settings.login.username.clone(),
        password: &settings.login.password,
    };
    Session::open(&endpoint, &credentials)
}

/// The target folder; the folder list is asked for only when the settings name none, or to
/// know whether the named one exists.
fn target(session: &Session, settings: &Settings<wit::Secret>) -> Result<Target, wit::SendError> {
    let folders: Vec<target::Folder> = session
        .folders()?
        .into_iter()
        .map(|f: imap::Folder| target::Folder {
            name: f.name,
            special_use: f.special_use,
        })
        .collect();
    let chosen = target::choose(settings.mailbox.as_deref(), &folders);
    log::log(Level::Debug, &format!("target folder {chosen}"));
    Ok(chosen)
}

/// The internal date of the placed message: now, as the message's Date header says.
fn now_unix_secs() -> Option<i64> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
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
    fn describe_offers_the_graph_senders_events_and_only_the_imap_grant() {
        let info = ImapSender::describe();
        assert_eq!(info.id, "imap");
        assert_eq!(info.label, "IMAP");
        assert_eq!(info.network, vec!["imap://{host}:{port}".to_owned()]);
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
    fn description_says_imap_delivers_to_no_one_else() {
        let info = ImapSender::describe();
        assert!(
            info.description.contains("IMAP cannot send mail"),
            "{}",
            info.description
        );
        assert!(
            info.description
                .contains("receive nothing unless the server submits"),
            "{}",
            info.description
        );
    }

    #[test]
    fn describe_carries_the_schema_with_defaults() {
        let info = ImapSender::describe();
        let keys: Vec<_> = info.settings.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "host",
                "port",
                "enable_ssl",
                "username",
                "password",
                "from_email",
                "mailbox",
                "create_mailbox"
            ]
        );
        assert!(matches!(
            info.settings[1].default,
            Some(wit::SettingDefault::Integer(993))
        ));
        assert!(matches!(info.settings[4].kind, wit::SettingKind::Secret));
        assert!(matches!(
            info.settings[7].default,
            Some(wit::SettingDefault::Boolean(false))
        ));
    }
}
