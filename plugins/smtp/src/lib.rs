//! The SMTP sender plugin: a `sender-plugin` component that sends mail through an SMTP server
//! by way of the host's `smtp` capability.
//!
//! | module       | holds                                                         |
//! |--------------|---------------------------------------------------------------|
//! | [`settings`] | the schema and the parser of the sender's settings            |
//! | [`compose`]  | the RFC 5322 message and its SMTP envelope (the plugin kit's) |
//! | [`reply`]    | what the server's reply says (queue id)                       |
//! | this file    | the [`Sender`] implementation, exported with the kit's macro  |
//!
//! Written with the plugin kit, which owns the WIT bindings: everything here is plain Rust over
//! the kit's types and tests natively. Only this file calls host capabilities (`smtp`, `log`); it
//! must never log or otherwise reveal a secret, and never reach the network other than through
//! `smtp`.

pub use scan2x_mail_plugin_kit::compose;
pub mod reply;
pub mod settings;

use scan2x_mail_plugin_kit::host::{Level, log};
use scan2x_mail_plugin_kit::{
    EventKind, Message, PluginInfo, Receipt, Secret, SendError, Sender, Values, smtp,
};

/// The SMTP sender.
pub struct SmtpSender;

scan2x_mail_plugin_kit::export_sender!(SmtpSender);

impl Sender for SmtpSender {
    fn describe() -> PluginInfo {
        PluginInfo {
            id: "smtp",
            version: env!("CARGO_PKG_VERSION"),
            label: settings::LABEL,
            description: "Sends mail through an SMTP server: submission with STARTTLS, \
                          implicit TLS on port 465, or a plaintext relay without login.",
            settings: settings::schema(),
            events: EventKind::ALL.to_vec(),
            network: vec![settings::NETWORK.to_owned()],
        }
    }

    fn verify(values: Values<Secret>) -> Result<String, SendError> {
        let settings = settings::parse(values)?;
        smtp::verify(&settings.endpoint, settings.login.as_ref())
    }

    fn send(values: Values<Secret>, message: Message) -> Result<Receipt, SendError> {
        let settings = settings::parse(values)?;
        let composed = compose::compose(&message, &settings.email_address)?;
        // Sizes and counts only: addresses and content stay out of the host's log.
        log(
            Level::Debug,
            &format!(
                "composed {} bytes for {} recipients",
                composed.len(),
                composed.envelope.rcpt_to.len()
            ),
        );
        // The host's errors are already send-errors that say what to do next: pass them on.
        let report = smtp::send(
            &settings.endpoint,
            settings.login.as_ref(),
            &composed.envelope,
            &composed.parts,
        )?;
        Ok(Receipt {
            provider_id: reply::queue_id(&report.reply),
            accepted: report.accepted,
            refused: report.refused,
            detail: reply::one_line(&report.reply),
        })
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
                EventKind::JobOutput,
                EventKind::SavedScanCopy,
                EventKind::PinRequest,
                EventKind::QueueNotification,
            ]
        ));
    }

    #[test]
    fn describe_carries_the_schema_with_labels_and_defaults() {
        let info = SmtpSender::describe();
        let specs: Vec<_> = info
            .settings
            .iter()
            .map(|s| (s.key, s.label, s.required))
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
            Some(scan2x_mail_plugin_kit::SettingDefault::Integer(587))
        ));
        assert!(matches!(
            info.settings[2].default,
            Some(scan2x_mail_plugin_kit::SettingDefault::Boolean(true))
        ));
        assert!(matches!(
            info.settings[4].kind,
            scan2x_mail_plugin_kit::SettingKind::Secret
        ));
    }
}
