//! What the Graph sender needs from the host: the plugin kit's [`Host`] trait (HTTP with secret
//! parts, the per-sender state that keeps the token, the log). The kit implements it over the
//! WIT imports; the tests of [`crate::graph`] over a scripted fake, so the whole protocol flow
//! (token reuse, uploads, error mapping) tests natively.

pub use scan2x_mail_plugin_kit::host::{
    Body, Host, Level, Method, Part, Request, Response, TransportError,
};
