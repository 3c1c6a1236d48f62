//! The kit for writing a scan2x-mail sender plugin in Rust: implement [`Sender`] with plain Rust
//! types, write `export_sender!(MySender);`, build for `wasm32-wasip2`. The three default
//! plugins (SMTP, IMAP, Microsoft Graph) are written with it.
//!
//! | module        | holds                                                                        |
//! |---------------|------------------------------------------------------------------------------|
//! | [`sender`]    | the [`Sender`] trait, [`PluginInfo`], and the export glue ([`export_sender!`]) |
//! | [`settings`]  | the schema vocabulary, [`Values`] (typed access, errors naming the key), the host/port/login/TLS rules |
//! | [`message`]   | the message, its mailboxes and attachments, the receipt                       |
//! | [`error`]     | [`SendError`]: what should happen next; the HTTP status mapping               |
//! | [`compose`]   | the RFC 5322 message (CRLF line ends) and its SMTP envelope                   |
//! | [`host`]      | `http`, `state` and `log` as a trait ([`host::Host`]), so flows test natively |
//! | [`smtp`], [`imap`] | the host's mail-protocol capabilities with the kit's types              |
//! | [`bindings`]  | the WIT bindings (generated; a plugin never needs them)                       |
//!
//! The WIT in `wit/` stays the contract: this crate is one way to meet it, and a plugin in
//! another language needs only `wit/`. Everything but [`bindings`] and the capability wrappers
//! is plain Rust that tests natively; no module here may read a secret's value (a [`Secret`] is a
//! handle only the host resolves).

// The canonical-ABI glue wit-bindgen generates (lifting, lowering, exported symbols) is unsafe
// by nature; this module is the only place in the kit where `unsafe_code` is allowed.
#[allow(unsafe_code)]
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "sender-plugin",
        pub_export_macro: true,
        default_bindings_module: "scan2x_mail_plugin_kit::bindings",
    });
}

pub mod compose;
mod convert;
pub mod error;
pub mod host;
pub mod imap;
pub mod message;
pub mod sender;
pub mod settings;
pub mod smtp;

pub use error::SendError;
pub use message::{Attachment, Content, Mailbox, Message, Receipt, RefusedRecipient};
pub use sender::{
    EventKind, PluginInfo, Sender, secret_for_login, secret_in_form, secret_in_header,
};
pub use settings::{SettingDefault, SettingKind, SettingSpec, Values};

/// A password or client secret: a handle the plugin passes back to the host, which fills in
/// the value where it is needed. It can't be read.
pub type Secret = bindings::scan2x::mail::secrets::Secret;
