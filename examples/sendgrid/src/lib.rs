//! An example third-party sender plugin: mail through SendGrid's v3 Mail Send API, written with
//! the plugin kit and installed by naming its `.wasm` in the settings — the `scan2x-mail` binary
//! is not rebuilt. It is not a default member of the workspace and never embedded in the host.
//!
//! | module       | holds                                                          |
//! |--------------|----------------------------------------------------------------|
//! | [`settings`] | the schema (`api_key` secret, `from_email`, `from_name`, `api_url`) and its parser |
//! | [`body`]     | the `mail/send` JSON, SendGrid's documented shape              |
//! | [`api`]      | the requests over the kit's host trait; SendGrid's answers as send-errors |
//! | this file    | the [`Sender`] implementation, exported with the kit's macro   |
//!
//! Its one network need is `{api_url}` (default `https://api.sendgrid.com`), so the host grants it
//! that origin and nothing else. It must never log the API key (it can't read it) or content.

pub mod api;
pub mod body;
pub mod settings;

use scan2x_mail_plugin_kit::host::Wasm;
use scan2x_mail_plugin_kit::{
    EventKind, Message, PluginInfo, Receipt, Secret, SendError, Sender, Values,
};

/// The SendGrid sender.
pub struct SendGridSender;

scan2x_mail_plugin_kit::export_sender!(SendGridSender);

impl Sender for SendGridSender {
    fn describe() -> PluginInfo {
        PluginInfo {
            id: "sendgrid",
            version: env!("CARGO_PKG_VERSION"),
            label: settings::LABEL,
            description: "Sends mail through SendGrid's v3 Mail Send API with an API key \
                          (an example plugin built outside the host).",
            settings: settings::schema(),
            events: EventKind::ALL.to_vec(),
            network: vec![
                settings::NETWORK.to_owned(),
                // The API key goes only into `Authorization`, to the API.
                scan2x_mail_plugin_kit::secret_in_header(
                    "api_key",
                    "Authorization",
                    settings::NETWORK,
                ),
            ],
        }
    }

    fn verify(values: Values<Secret>) -> Result<String, SendError> {
        let settings = settings::parse(values)?;
        api::verify(&mut Wasm, &settings)
    }

    fn send(values: Values<Secret>, message: Message) -> Result<Receipt, SendError> {
        let settings = settings::parse(values)?;
        api::send(&mut Wasm, &settings, &message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_asks_only_for_the_api_url_origin_and_carries_the_secret_key() {
        let info = SendGridSender::describe();
        assert_eq!(info.id, "sendgrid");
        assert_eq!(
            info.network,
            vec!["{api_url}", "secret api_key header Authorization {api_url}"]
        );
        let key = info.settings.iter().find(|s| s.key == "api_key").unwrap();
        assert_eq!(key.kind, scan2x_mail_plugin_kit::SettingKind::Secret);
        assert!(key.required);
    }
}
