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
//! | [`transport`] | the host as the kit's trait, so the flow tests natively               |
//! | this file     | the [`Sender`] implementation, exported with the kit's macro           |
//!
//! Written with the plugin kit, which owns the WIT bindings and implements the host trait over
//! them. Nothing here may log or otherwise reveal a secret or a token, or reach the network
//! other than through `http`. The client secret stays a handle: the host fills it into the token
//! request.

pub mod failure;
pub mod graph;
pub mod message;
pub mod settings;
pub mod transport;

use scan2x_mail_plugin_kit::host::Wasm;
use scan2x_mail_plugin_kit::{
    EventKind, Message, PluginInfo, Receipt, Secret, SendError, Sender, Values,
};

/// The Microsoft Graph sender.
pub struct GraphSender;

scan2x_mail_plugin_kit::export_sender!(GraphSender);

impl Sender for GraphSender {
    fn describe() -> PluginInfo {
        PluginInfo {
            id: "graph",
            version: env!("CARGO_PKG_VERSION"),
            label: settings::LABEL,
            description: "Sends mail through a Microsoft 365 mailbox with Microsoft Graph \
                          (sendMail), signed in as an Azure AD application with a client secret; \
                          attachments over 3 MB go through upload sessions.",
            settings: settings::schema(),
            // Queue notifications go through SMTP only (the product's rule).
            events: vec![
                EventKind::JobOutput,
                EventKind::SavedScanCopy,
                EventKind::PinRequest,
            ],
            network: settings::NETWORK
                .iter()
                .map(|n| (*n).to_owned())
                // The client secret goes only into the token request's form, to the authority.
                .chain([scan2x_mail_plugin_kit::secret_in_form(
                    "client_secret",
                    "client_secret",
                    "{authority_url}",
                )])
                .collect(),
        }
    }

    fn verify(values: Values<Secret>) -> Result<String, SendError> {
        let settings = settings::parse(values)?;
        graph::Graph::new(&mut Wasm, &settings).verify()
    }

    fn send(values: Values<Secret>, message: Message) -> Result<Receipt, SendError> {
        let settings = settings::parse(values)?;
        graph::Graph::new(&mut Wasm, &settings).send(&message)
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
                EventKind::JobOutput,
                EventKind::SavedScanCopy,
                EventKind::PinRequest,
            ]
        ));
    }

    #[test]
    fn describe_asks_for_exactly_the_three_url_origins() {
        let info = GraphSender::describe();
        assert_eq!(
            info.network,
            vec![
                "{authority_url}",
                "{graph_url}",
                "{outlook_url}",
                "secret client_secret form client_secret {authority_url}"
            ]
        );
        let secret = info
            .settings
            .iter()
            .find(|s| s.key == "client_secret")
            .unwrap();
        assert!(matches!(
            secret.kind,
            scan2x_mail_plugin_kit::SettingKind::Secret
        ));
        let graph = info.settings.iter().find(|s| s.key == "graph_url").unwrap();
        assert!(matches!(
            &graph.default,
            Some(scan2x_mail_plugin_kit::SettingDefault::Text(t)) if *t == "https://graph.microsoft.com"
        ));
    }
}
