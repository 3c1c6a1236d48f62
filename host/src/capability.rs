//! What the host lends a plugin: the state of one plugin call (`Store` data) and one module per
//! capability interface of the WIT world. Network capabilities ask the [`Gate`] first, on their
//! first line; expected failures go back to the plugin as WIT errors, and only host bugs trap.

pub mod blobs;
pub mod http;
pub mod imap;
pub mod log;
pub mod resolve;
pub mod secrets;
pub mod smtp;
pub mod state;
pub mod tls;
pub mod witness;

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::gate::Gate;
use crate::wit::types::{SendError, TemporaryFailure};

/// A `temporary` failure without a server-given wait.
pub(crate) fn temporary(reason: String) -> SendError {
    SendError::Temporary(TemporaryFailure {
        reason,
        retry_after_secs: None,
    })
}

/// The text of a failure, whichever case it is.
pub(crate) fn send_error_text(e: &mut SendError) -> &mut String {
    match e {
        SendError::InvalidSettings(text)
        | SendError::InvalidMessage(text)
        | SendError::AuthFailed(text)
        | SendError::Rejected(text)
        | SendError::Denied(text)
        | SendError::Temporary(TemporaryFailure { reason: text, .. }) => text,
    }
}

/// A failure as it goes back to a plugin: the server's words in it scrubbed of every secret
/// (a server that echoes the login line must not hand the plugin the password).
pub(crate) fn scrubbed(mut e: SendError) -> SendError {
    crate::secret::redact_in_place(send_error_text(&mut e));
    e
}

/// An error's text with its causes, each cause once, e.g. "Connection error: Connection refused
/// (os error 111)".
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

/// A capability call's first line: the gate's verdict on `scheme://host:port`
/// ([`Gate::check`]), or on an `Endpoint`'s host and port. When the sender was not granted it,
/// the call returns at once with its own `Denied` variant, before anything is read, resolved or
/// opened.
macro_rules! gate {
    ($state:expr, $scheme:expr, $endpoint:expr, $denied:path) => {
        if let Err(denied) = $state
            .sender
            .gate
            .check($scheme, &$endpoint.host, $endpoint.port)
        {
            return Ok(Err($denied(denied.to_string())));
        }
    };
    ($state:expr, $scheme:expr, $host:expr, $port:expr, $denied:path) => {
        if let Err(denied) = $state.sender.gate.check($scheme, $host, $port) {
            return Ok(Err($denied(denied.to_string())));
        }
    };
}
pub(crate) use gate;

/// Everything about a sender that its capability calls need, built once when the sender loads.
#[derive(Debug, Default)]
pub struct SenderContext {
    /// The sender's name in the settings file (`[senders.NAME]`).
    pub name: String,
    pub gate: Gate,
    /// `allow_loopback_names`: a name the sender connects to may resolve to this machine's own
    /// (loopback, link-local, unspecified) addresses; see [`resolve`].
    pub allow_loopback_names: bool,
    /// Extra CA certificates (PEM) to trust besides the system's, from `ca_file`.
    pub ca_pem: Option<Vec<u8>>,
    pub state: Arc<state::StateStore>,
    /// Where each of the sender's secrets may be filled in, as its plugin declares.
    pub secret_uses: secrets::SecretUses,
    /// The sender's HTTP client, made at its first `http` request and reused after.
    pub http: http::ClientSlot,
    /// The roots the sender's SMTP connections trust, read at its first TLS connection.
    pub smtp_tls: smtp::TlsCache,
    /// How long each SMTP step waits on the server: RFC 5321's, scaled by the environment
    /// (`SCAN2X_MAIL_SMTP_TIMEOUT_SCALE`) when the sender loads.
    pub smtp_timeouts: smtp::Timeouts,
}

/// The data of one `Store`: one plugin call.
pub struct HostState {
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: StoreLimits,
    pub(crate) sender: Arc<SenderContext>,
    pub(crate) log: log::LogBudget,
    /// Wall time this call spent in host I/O ([`HostIo`]).
    pub(crate) host_io: HostIo,
    /// What the plugin wrote to stderr (a Rust panic writes its message there).
    stderr: MemoryOutputPipe,
    /// What the host saw of the call's deliveries and waits ([`witness`]).
    pub(crate) witness: witness::Witness,
}

/// The wall time a call spent waiting on host I/O (a server, the network). Only platforms
/// without a per-thread CPU clock read it: their CPU limit is the call's elapsed time minus this
/// (`runtime::cpu`). Every capability call that waits goes through [`HostIo::wait`].
#[derive(Debug, Default)]
pub(crate) struct HostIo(std::time::Duration);

impl HostIo {
    /// Awaits `io`, counting its wall time.
    pub(crate) async fn wait<F: Future>(&mut self, io: F) -> F::Output {
        let started = std::time::Instant::now();
        let output = io.await;
        self.0 += started.elapsed();
        output
    }

    #[cfg(any(not(unix), test))]
    pub(crate) fn total(&self) -> std::time::Duration {
        self.0
    }
}

/// How much of a plugin's stderr is kept per call.
const STDERR_BYTES: usize = 4096;

impl HostState {
    pub fn new(sender: Arc<SenderContext>, memory_limit: usize) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_BYTES);
        Self {
            // No arguments, no environment variables, no preopened folders; stdout goes
            // nowhere; stderr is kept (bounded) so a panic's message can be reported.
            wasi: WasiCtx::builder().stderr(stderr.clone()).build(),
            stderr,
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_limit)
                .instances(4)
                .tables(20)
                .memories(4)
                // A failed grow traps with a message we can name, instead of the guest's
                // allocator aborting with a bare `unreachable`.
                .trap_on_grow_failure(true)
                .build(),
            sender,
            log: log::LogBudget::default(),
            host_io: HostIo::default(),
            witness: witness::Witness::default(),
        }
    }

    pub(crate) fn wasi_ctx(&mut self) -> &mut WasiCtx {
        &mut self.wasi
    }

    /// The last lines the plugin wrote to stderr, as one line.
    pub(crate) fn stderr_tail(&self) -> Option<String> {
        let bytes = self.stderr.contents();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
            .collect();
        let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
        (!tail.is_empty()).then(|| crate::secret::escape_controls(&tail).into_owned())
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime_wasi_io::IoView for HostState {
    fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

impl crate::wit::types::Host for HostState {}
