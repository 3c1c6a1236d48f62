//! What a plugin implements: [`Sender`], over the kit's plain Rust types, and the one line that
//! makes it the component's export: `scan2x_mail_plugin_kit::export_sender!(MySender);`.
//!
//! The glue ([`Export`]) converts the WIT values at the boundary: it checks the settings the host
//! hands over against the plugin's own schema (unknown keys, kinds, duplicates) into [`Values`],
//! converts the message, and converts the answer back. On a native target the macro expands to
//! nothing (export names are not symbols a native linker takes), so a plugin's tests run natively.

use std::marker::PhantomData;

use crate::Secret;
use crate::bindings::exports::scan2x::mail::mail_sender::Guest;
use crate::bindings::scan2x::mail::types as wit;
use crate::convert;
use crate::error::SendError;
use crate::message::{Message, Receipt};
use crate::settings::{SettingSpec, Values};

/// Why the product sends an email; a sender says which it may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The output of a job whose destination is "Scan to Email".
    JobOutput,
    /// A copy of a saved scan.
    SavedScanCopy,
    /// A new login PIN a user asked for.
    PinRequest,
    /// Documents left as draft or in error in a user's scan queue.
    QueueNotification,
}

impl EventKind {
    pub const ALL: [EventKind; 4] = [
        EventKind::JobOutput,
        EventKind::SavedScanCopy,
        EventKind::PinRequest,
        EventKind::QueueNotification,
    ];
}

/// Who the plugin is: what `describe()` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// Short stable name: lowercase, digits, `-` (`plugin = "smtp"` names a built-in by it).
    pub id: &'static str,
    /// The plugin's own version (semver); usually `env!("CARGO_PKG_VERSION")`.
    pub version: &'static str,
    /// What an administrator sees, e.g. "SMTP".
    pub label: &'static str,
    pub description: &'static str,
    /// The settings schema, in the order an administrator fills it in.
    pub settings: Vec<SettingSpec>,
    pub events: Vec<EventKind>,
    /// URL templates over the settings, e.g. `smtp://{host}:{port}` or `{api_url}`: exactly the
    /// destinations the host grants; and where each secret setting may be filled in
    /// ([`secret_in_header`], [`secret_in_form`], [`secret_for_login`]). A secret setting
    /// declared nowhere may only be a login password.
    pub network: Vec<String>,
}

/// A network declaration: secret setting `key` may go into header `header` of requests to the
/// `https` origin `origin` (a template, e.g. `{api_url}`), and nowhere else over HTTP.
pub fn secret_in_header(key: &str, header: &str, origin: &str) -> String {
    format!("secret {key} header {header} {origin}")
}

/// A network declaration: secret setting `key` may go into form field `field` of requests to
/// the `https` origin `origin`, and nowhere else over HTTP.
pub fn secret_in_form(key: &str, field: &str, origin: &str) -> String {
    format!("secret {key} form {field} {origin}")
}

/// A network declaration: secret setting `key` may be the password of SMTP or IMAP logins to
/// the sender's granted endpoints (the rule for a secret declared nowhere, said explicitly).
pub fn secret_for_login(key: &str) -> String {
    format!("secret {key} login")
}

/// A sender plugin. `describe` must call no capability; `verify` proves the settings work and
/// sends no mail; `send` sends one message, in a fresh instance.
pub trait Sender {
    fn describe() -> PluginInfo;
    fn verify(settings: Values<Secret>) -> Result<String, SendError>;
    fn send(settings: Values<Secret>, message: Message) -> Result<Receipt, SendError>;
}

/// The `mail-sender` export of a [`Sender`]; [`export_sender!`](crate::export_sender) names it.
#[doc(hidden)]
pub struct Export<T>(PhantomData<T>);

impl<T: Sender> Export<T> {
    fn values(list: Vec<wit::Setting>) -> Result<Values<Secret>, SendError> {
        let info = T::describe();
        let entries = list.into_iter().map(convert::setting);
        Ok(Values::new(info.label, info.settings, entries)?)
    }
}

impl<T: Sender> Guest for Export<T> {
    fn describe() -> wit::PluginInfo {
        convert::plugin_info(T::describe())
    }

    fn verify(settings: Vec<wit::Setting>) -> Result<String, wit::SendError> {
        let values = Self::values(settings).map_err(convert::send_error)?;
        T::verify(values).map_err(convert::send_error)
    }

    fn send(
        settings: Vec<wit::Setting>,
        message: wit::Message,
    ) -> Result<wit::Receipt, wit::SendError> {
        let values = Self::values(settings).map_err(convert::send_error)?;
        T::send(values, convert::message(message))
            .map(convert::receipt)
            .map_err(convert::send_error)
    }
}

/// Makes a [`Sender`] the component's `scan2x:mail/mail-sender` export. Expands to nothing on
/// targets other than wasm32.
#[macro_export]
macro_rules! export_sender {
    ($sender:ty) => {
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        const _: () = {
            type __Scan2xMailSender = $crate::sender::Export<$sender>;
    $crate::bindings::export!(__Scan2xMailSender with_types_in $crate::bindings);
        };
    };
}
