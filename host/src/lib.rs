//! scan2x-mail: the mail subsystem of the scan2x document-scanning product.
//!
//! Scans, saved-scan copies, login PINs and queue notifications leave the product as email
//! through *senders* configured in a settings file. Each sender runs a *plugin*: a sandboxed
//! WebAssembly component (`wit/`) that composes the message and reaches the network only through
//! the host's capabilities, each checked by the [`gate`].
//!
//! | module | what it holds |
//! |---|---|
//! | [`settings`] | the settings file: senders, host-owned keys, secrets, errors with lines |
//! | [`settings_edit`] | edits to the settings file's senders, checked and written keeping its layout |
//! | [`runtime`] | the wasmtime engine, the precompiled cache, loading plugins, calls with limits |
//! | [`senders`] | settings into live senders: plugins loaded once, grants, `ca_file`, limits |
//! | [`capability`] | what the host lends plugins: `smtp`, `imap`, `http`, `log`, `state`, `secrets` |
//! | [`gate`] | the one check every network capability makes: grants in, verdict out |
//! | [`template`] | a plugin's network needs filled in from its sender's settings, into grants |
//! | [`router`] | which sender carries an email, and why |
//! | [`dispatch`] | sending along a routing decision, with failover |
//! | [`throttle`] | each sender's limits on outbox deliveries: at once, and per minute |
//! | [`message`] | an email from flags or a JSON file: addresses, attachments, job context |
//! | [`civil`] | the one date arithmetic: Unix seconds as a UTC date and time |
//! | [`outcome`] | failure kinds and the exit codes they map to; a sent email's outcome |
//! | [`report`] | what each command prints: one type per result, as `--json` and as text |
//! | [`commands`] | the bodies of `plugins`, `check`, `test`, `route`, `send`: each its report |
//! | [`queue`] | the outbox used by the CLI: the data folder, `submit`'s hand-over, the deliverer |
//! | [`serve`] | `serve`: the local API's backend, the delivery worker, reload, metrics, SIGTERM |
//!
//! docs/design.md has the map of which module may import which.

pub mod capability;
pub mod civil;
pub mod cli;
pub mod commands;
pub mod dispatch;
pub mod gate;
pub mod message;
pub mod outcome;
pub mod queue;
pub mod report;
pub mod router;
pub mod runtime;
pub mod secret;
pub mod senders;
pub mod serve;
pub mod settings;
pub mod settings_edit;
pub mod template;
pub mod throttle;
pub mod wit;
