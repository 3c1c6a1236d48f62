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
//! | this file    | the [`Sender`] implementation, exported with the kit's macro        |
//!
//! Written with the plugin kit, which owns the WIT bindings: the modules above are plain Rust
//! and test natively. Only this file calls host capabilities (`imap`, `log`); it must never log
//! or otherwise reveal a secret or message content, and never reach the network other than
//! through `imap`.

pub use scan2x_mail_plugin_kit::compose;
pub mod report;
pub mod settings;
pub mod target;

use scan2x_mail_plugin_kit::host::{Level, log};
use scan2x_mail_plugin_kit::imap::{AppendError, Session};
use scan2x_mail_plugin_kit::{
    EventKind, Message, PluginInfo, Receipt, Secret, SendError, Sender, Values,
};

use settings::{Settings, TlsMode};
use target::Target;

/// The flags every placed message gets: it is a sent message, already read.
const FLAGS: &[&str] = &["\\Seen"];

/// The IMAP sender.
pub struct ImapSender;

scan2x_mail_plugin_kit::export_sender!(ImapSender);

impl Sender for ImapSender {
    fn describe() -> PluginInfo {
        PluginInfo {
            id: "imap",
            version: env!("CARGO_PKG_VERSION"),
            label: settings::LABEL,
            description: "Places the finished message in a folder of an IMAP account: its Sent \
                          folder, or the folder named in the settings. IMAP cannot send mail: \
                          recipients other than the account receive nothing unless the server \
                          submits from that folder.",
            settings: settings::schema(),
            // The same events as the Graph sender; queue notifications go by SMTP only.
            events: vec![
                EventKind::JobOutput,
                EventKind::SavedScanCopy,
                EventKind::PinRequest,
            ],
            network: vec![settings::NETWORK.to_owned()],
        }
    }

    fn verify(values: Values<Secret>) -> Result<String, SendError> {
        let settings = settings::parse(values)?;
        let session = Session::open(&settings.endpoint, &settings.login)?;
        let target = target(&session, &settings)?;
        let at = at(&settings);
        let count = if target.listed {
            Some(session.examine(&target.name)?)
        } else if settings.create_mailbox {
            None
        } else {
            let _ = session.logout();
            return Err(SendError::InvalidSettings(report::missing_folder(
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

    fn send(values: Values<Secret>, message: Message) -> Result<Receipt, SendError> {
        let settings = settings::parse(values)?;
        let composed = compose::compose(&message, &settings.from_email)?;
        // Sizes only: addresses and content stay out of the host's log.
        log(Level::Debug, &format!("composed {} bytes", composed.len()));

        let session = Session::open(&settings.endpoint, &settings.login)?;
        let target = target(&session, &settings)?;
        let at = at(&settings);
        let flags: Vec<String> = FLAGS.iter().map(|f| (*f).to_owned()).collect();
        let now = now_unix_secs();
        let mut created = false;
        let report = match session.append(&target.name, &flags, now, &composed.parts) {
            Ok(report) => report,
            Err(AppendError::NoSuchFolder(_)) if settings.create_mailbox => {
                log(Level::Info, &format!("creating folder {:?}", target.name));
                session.create(&target.name)?;
                created = true;
                session
                    .append(&target.name, &flags, now, &composed.parts)
                    .map_err(|e| match e {
                        AppendError::NoSuchFolder(server) => SendError::InvalidSettings(format!(
                            "{at}: folder {target} could not be created: {server}"
                        )),
                        AppendError::Failed(e) => e,
                    })?
            }
            Err(AppendError::NoSuchFolder(server)) => {
                let _ = session.logout();
                return Err(SendError::InvalidSettings(report::missing_folder(
                    &target,
                    &settings.login.username,
                    &at,
                    &server,
                )));
            }
            Err(AppendError::Failed(e)) => return Err(e),
        };
        let _ = session.logout();
        Ok(Receipt {
            provider_id: report.uid.map(|uid| uid.to_string()),
            // IMAP delivers to no one: the message is in a folder, not with its recipients.
            accepted: Vec::new(),
            refused: Vec::new(),
            detail: report::stored(&target, &settings.login.username, &at, report.uid, created),
        })
    }
}

fn at(settings: &Settings<Secret>) -> String {
    format!("{}:{}", settings.endpoint.host, settings.endpoint.port)
}

/// The target folder; the folder list is asked for only when the settings name none, or to
/// know whether the named one exists.
fn target(session: &Session, settings: &Settings<Secret>) -> Result<Target, SendError> {
    let folders = session.folders()?;
    let chosen = target::choose(settings.mailbox.as_deref(), &folders);
    log(Level::Debug, &format!("target folder {chosen}"));
    Ok(chosen)
}

/// The internal date of the placed message: now, as the message's Date header says.
fn now_unix_secs() -> Option<i64> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
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
                EventKind::JobOutput,
                EventKind::SavedScanCopy,
                EventKind::PinRequest,
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
        let keys: Vec<_> = info.settings.iter().map(|s| s.key).collect();
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
            Some(scan2x_mail_plugin_kit::SettingDefault::Integer(993))
        ));
        assert!(matches!(
            info.settings[4].kind,
            scan2x_mail_plugin_kit::SettingKind::Secret
        ));
        assert!(matches!(
            info.settings[7].default,
            Some(scan2x_mail_plugin_kit::SettingDefault::Boolean(false))
        ));
    }
}
