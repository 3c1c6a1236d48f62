//! The `imap` interface: an IMAP session done by the host over tokio and rustls. A plugin opens
//! a session (connect, secure, log in), then lists folders, examines, creates and appends on
//! that one connection; the session lives in the call's resource table and closes when the
//! plugin drops it or the call ends.
//!
//! | step | rule |
//! |---|---|
//! | open | the gate first (`imap://host:port`); a plaintext endpoint is refused: IMAP always logs in |
//! | TLS | `implicit-tls`: from the first byte; `starttls`: required — no STARTTLS in CAPABILITY, no login; what the server sent in clear after its OK is dropped |
//! | login | AUTHENTICATE PLAIN where offered (SASL-IR where offered, else after the `+`), else LOGIN (quoted, or a literal), unless LOGINDISABLED; only ever over TLS; CAPABILITY asked again after it |
//! | folders | LIST, with the SPECIAL-USE attributes (RFC 6154); names decoded from modified UTF-7 |
//! | append | flags and date checked, the message as one literal; `[TRYCREATE]` is `no-such-folder` |
//! | replies | NO at login → `auth-failed` with the server's words; `[NONEXISTENT]` → `invalid-settings`; `[OVERQUOTA]`, `[UNAVAILABLE]`, time-outs → `temporary` |
//!
//! The host writes every command itself, the login included, straight to the stream with its
//! own tags; async-imap is only the reader (its stream buffers the server's responses and
//! imap-proto parses them), so it never sees a command or the password. The trace
//! (`scan2x_mail=trace`) shows each command the host writes, the login's credentials as
//! `<secret>`. By protocol concern:
//!
//! | module | what it owns |
//! |---|---|
//! | this one | the WIT `Host`/`HostSession` impls, the time limits below |
//! | [`login`] | connect, TLS, greeting, STARTTLS, and the login the host writes |
//! | [`session`] | [`ImapSession`]: its tags, the command writer, LIST, EXAMINE, CREATE, APPEND (the literal and its hand-over), LOGOUT |
//! | [`replies`] | reading what the server answers: untagged data, the tagged verdict, refusals and what they mean ([`replies::classify`]), a step's time limit |
//! | [`wire`] | the words put on the wire: quoting, literals, flags, dates, modified UTF-7, SASL PLAIN's base64 |
//! | [`budget`] | the stream under everything that bounds what a server may send per command |
//!
//! `open` asks the gate first, on its first line; the session's later calls go over that one
//! connection, to the destination the gate allowed. Every wait has a bound: connect 30 s; the
//! TLS handshake, the greeting and each command 60 s (the whole login, and APPEND until its `+`,
//! too); each piece of APPEND's literal 3 min; APPEND's answer once the literal is written
//! 10 min. That last wait follows the hand-over: no answer to it leaves the message maybe
//! stored, recorded in the call's [`Witness`](super::witness::Witness) (the outcome is
//! `uncertain`). Certificates are always verified: the system's roots (which honour
//! `SSL_CERT_FILE`) plus the sender's `ca_file`. The password is taken from its `Secret` only
//! while the login's bytes are built and written ([`login`]); this module never logs or formats
//! it.

mod budget;
mod login;
mod replies;
mod session;
mod wire;

pub use session::ImapSession;

use std::time::Duration;

use wasmtime::component::Resource;

use super::blobs::MessageText;
use super::secrets::secret_value;
use super::{HostState, gate, scrubbed};
use crate::wit::imap::{AppendError, AppendReport, Folder, Host, HostSession};
use crate::wit::types::{Credentials, Endpoint, MessagePart, SendError};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The TLS handshake, the greeting, each command (the whole login exchange is one).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Each piece of an APPEND's literal written (at most 1 MiB), as SMTP's data block.
const PIECE_TIMEOUT: Duration = Duration::from_secs(180);
/// The answer to an APPEND once its literal is written: the server may scan the message first.
const APPEND_TIMEOUT: Duration = Duration::from_secs(600);

impl Host for HostState {}

impl HostSession for HostState {
    async fn open(
        &mut self,
        endpoint: Endpoint,
        credentials: Credentials,
    ) -> wasmtime::Result<Result<Resource<ImapSession>, SendError>> {
        gate!(self, "imap", endpoint, SendError::Denied);
        let password = secret_value(self, &credentials.password)?;
        if let Err(refused) = self.sender.secret_uses.check_login(&password) {
            return Ok(Err(SendError::Denied(refused)));
        }
        let waiting = self
            .witness
            .waiting_on(format!("imap {}:{}", endpoint.host, endpoint.port));
        let opened = self
            .host_io
            .wait(login::open(
                &self.sender,
                &self.witness,
                &endpoint,
                &credentials.username,
                &password,
            ))
            .await;
        drop(waiting);
        match opened {
            Ok(session) => Ok(Ok(self.table.push(session)?)),
            Err(e) => Ok(Err(scrubbed(e))),
        }
    }

    async fn folders(
        &mut self,
        session: Resource<ImapSession>,
    ) -> wasmtime::Result<Result<Vec<Folder>, SendError>> {
        let session = self.table.get_mut(&session)?;
        let result = self.host_io.wait(session.folders()).await;
        Ok(result
            .map(|mut folders| {
                for folder in &mut folders {
                    crate::secret::redact_in_place(&mut folder.name);
                }
                folders
            })
            .map_err(scrubbed))
    }

    async fn examine(
        &mut self,
        session: Resource<ImapSession>,
        folder: String,
    ) -> wasmtime::Result<Result<u32, SendError>> {
        let session = self.table.get_mut(&session)?;
        let result = self.host_io.wait(session.examine(&folder)).await;
        Ok(result.map_err(scrubbed))
    }

    async fn create(
        &mut self,
        session: Resource<ImapSession>,
        folder: String,
    ) -> wasmtime::Result<Result<(), SendError>> {
        let session = self.table.get_mut(&session)?;
        let result = self.host_io.wait(session.create(&folder)).await;
        Ok(result.map_err(scrubbed))
    }

    async fn append(
        &mut self,
        session: Resource<ImapSession>,
        folder: String,
        flags: Vec<String>,
        internal_date: Option<i64>,
        message: Vec<MessagePart>,
    ) -> wasmtime::Result<Result<AppendReport, AppendError>> {
        let message = MessageText::from_parts(&self.table, message)?;
        if let Err(too_large) = message.check_size() {
            return Ok(Err(AppendError::Failed(too_large)));
        }
        let session = self.table.get_mut(&session)?;
        let result = self
            .host_io
            .wait(session.append(&folder, &flags, internal_date, &message))
            .await;
        Ok(match result {
            Ok(mut report) => {
                crate::secret::redact_in_place(&mut report.detail);
                Ok(report)
            }
            Err(AppendError::NoSuchFolder(mut text)) => {
                crate::secret::redact_in_place(&mut text);
                Err(AppendError::NoSuchFolder(text))
            }
            Err(AppendError::Failed(e)) => Err(AppendError::Failed(scrubbed(e))),
        })
    }

    async fn logout(
        &mut self,
        session: Resource<ImapSession>,
    ) -> wasmtime::Result<Result<(), SendError>> {
        let session = self.table.get_mut(&session)?;
        let result = self.host_io.wait(session.logout()).await;
        Ok(result.map_err(scrubbed))
    }

    async fn drop(&mut self, session: Resource<ImapSession>) -> wasmtime::Result<()> {
        // Dropping the connection closes it; a polite LOGOUT is the plugin's call.
        self.table.delete(session)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::capability::SenderContext;
    use crate::secret::Secret;
    use crate::wit::types::TlsMode;

    const PASSWORD: &str = "pw-1234";

    fn state_granted(grant: &str) -> HostState {
        let settings = [crate::settings::ResolvedSetting {
            key: "password".into(),
            value: crate::settings::ResolvedValue::Secret(Secret::new(PASSWORD)),
        }];
        let context = SenderContext {
            name: "box".into(),
            gate: crate::gate::Gate::new("box", vec![crate::gate::Grant::parse(grant).unwrap()]),
            secret_uses: super::super::secrets::SecretUses::new(&[], &settings).unwrap(),
            ..SenderContext::default()
        };
        HostState::new(Arc::new(context), 1 << 20)
    }

    fn credentials(state: &mut HostState) -> Credentials {
        let password = state
            .table
            .push(super::super::secrets::SecretValue(Secret::new(PASSWORD)))
            .unwrap();
        Credentials {
            username: "scanner".into(),
            password,
        }
    }

    #[tokio::test]
    async fn ungranted_destination_is_denied_before_any_connection() {
        let mut state = state_granted("imap://mail.example.com:993");
        let credentials = credentials(&mut state);
        let endpoint = Endpoint {
            host: "127.0.0.1".into(),
            port: 993,
            tls: TlsMode::ImplicitTls,
        };
        let opened = HostSession::open(&mut state, endpoint, credentials)
            .await
            .unwrap();
        let Err(SendError::Denied(text)) = opened else {
            panic!("not denied: {opened:?}")
        };
        assert!(text.contains("imap://127.0.0.1:993"), "{text}");
    }

    #[tokio::test]
    async fn plaintext_endpoint_is_refused_without_connecting() {
        // A port nothing listens on: had it tried to connect, the error would be temporary.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut state = state_granted(&format!("imap://127.0.0.1:{port}"));
        let credentials = credentials(&mut state);
        let endpoint = Endpoint {
            host: "127.0.0.1".into(),
            port,
            tls: TlsMode::Plaintext,
        };
        let opened = HostSession::open(&mut state, endpoint, credentials)
            .await
            .unwrap();
        let Err(SendError::InvalidSettings(text)) = opened else {
            panic!("not refused as a settings error: {opened:?}")
        };
        assert!(text.contains("enable_ssl"), "{text}");
    }
}
