//! What scan2x-mail's sender plugins share, as plain Rust that builds for `wasm32-wasip2` and
//! tests natively: the mail message and its MIME composition, and the settings vocabulary and
//! rules every mail-protocol sender applies the same way.
//!
//! | module       | holds                                                                   |
//! |--------------|-------------------------------------------------------------------------|
//! | [`compose`]  | the RFC 5322 message (CRLF line ends) and its SMTP envelope             |
//! | [`settings`] | setting kinds, specs and values; the host/port checks; the TLS-mode rule |
//!
//! It holds no WIT bindings (each plugin keeps its own, private) and never calls a host
//! capability: a plugin converts its WIT values into these types and back at its boundary.

pub mod compose;
pub mod settings;
