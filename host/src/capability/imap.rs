//! The `imap` interface: an IMAP session done by the host with async-imap over tokio and
//! rustls. A plugin opens a session (connect, secure, log in), then lists folders, examines,
//! creates and appends on that one connection; the session lives in the call's resource table
//! and closes when the plugin drops it or the call ends.
//!
//! | step | rule |
//! |---|---|
//! | open | the gate first (`imap://host:port`); a plaintext endpoint is refused: IMAP always logs in |
//! | TLS | `implicit-tls`: from the first byte; `starttls`: required — no STARTTLS in CAPABILITY, no login |
//! | login | AUTHENTICATE PLAIN where offered, else LOGIN; only ever over TLS |
//! | folders | LIST, with the SPECIAL-USE attributes (RFC 6154); names decoded from modified UTF-7 |
//! | append | flags and date checked, the message as one literal; `[TRYCREATE]` is `no-such-folder` |
//! | replies | NO at login → `auth-failed`; `[NONEXISTENT]` → `invalid-settings`; `[OVERQUOTA]`, `[UNAVAILABLE]`, time-outs → `temporary` |
//!
//! `open` asks the gate first, on its first line; the session's later calls go over that one
//! connection, to the destination the gate allowed. Every wait has a bound: connect 30 s; the
//! TLS handshake, the greeting and each command 60 s (APPEND until its `+` too); each piece of APPEND's literal
//! 3 min; APPEND's answer once the literal is written 10 min. That last wait follows the
//! hand-over: no answer to it leaves the message maybe stored, recorded in the call's
//! [`Witness`] (the outcome is `uncertain`).
//! Certificates are always verified: the system's roots (which honour `SSL_CERT_FILE`) plus the
//! sender's `ca_file`. The password never enters async-imap (see [`secret_fill`]); this module
//! never logs or formats it.

mod budget;
mod secret_fill;
mod wire;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_imap::imap_proto::rfc4315::UidSetMember;
use async_imap::imap_proto::{MailboxDatum, NameAttribute, Response, ResponseCode, Status};
use async_imap::{Authenticator, Client, Connection, Session};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;
use wasmtime::component::Resource;

use super::blobs::MessageText;
use super::secrets::secret_value;
use super::witness::Witness;
use super::{HostState, SenderContext, scrubbed, temporary};
use crate::secret::Secret;
use crate::wit::imap::{AppendError, AppendReport, Folder, Host, HostSession};
use crate::wit::types::{Credentials, Endpoint, MessagePart, SendError, TlsMode};
use budget::Budgeted;
use secret_fill::SecretFill;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Each piece of an APPEND's literal written (at most 1 MiB), as SMTP's data block.
const PIECE_TIMEOUT: Duration = Duration::from_secs(180);
/// The answer to an APPEND once its literal is written: the server may scan the message first.
const APPEND_TIMEOUT: Duration = Duration::from_secs(600);

/// The encrypted connection under an authenticated session.
type Wire = SecretFill<TlsStream<Budgeted<TcpStream>>>;

/// One authenticated IMAP connection, held in the call's resource table.
pub struct ImapSession {
    session: Session<Wire>,
    /// `host:port`, for messages.
    at: String,
    /// What the server said it supports after login, upper case.
    capabilities: Vec<String>,
    next_tag: u32,
    /// A step failed half-way (time-out, broken connection): the connection's state is unknown,
    /// so nothing more is sent on it.
    broken: bool,
    /// The call's witness: the session's waits and its APPEND's hand-over are the call's.
    witness: Witness,
}

impl std::fmt::Debug for ImapSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapSession")
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

impl Host for HostState {}

impl HostSession for HostState {
    async fn open(
        &mut self,
        endpoint: Endpoint,
        credentials: Credentials,
    ) -> wasmtime::Result<Result<Resource<ImapSession>, SendError>> {
        if let Err(denied) = self
            .sender
            .gate
            .check("imap", &endpoint.host, endpoint.port)
        {
            return Ok(Err(SendError::Denied(denied.to_string())));
        }
        let password = secret_value(self, &credentials.password)?;
        if let Err(refused) = self.sender.secret_uses.check_login(&password) {
            return Ok(Err(SendError::Denied(refused)));
        }
        let started = Instant::now();
        let waiting = self
            .witness
            .waiting_on(format!("imap {}:{}", endpoint.host, endpoint.port));
        let opened = open(
            &self.sender,
            &self.witness,
            &endpoint,
            &credentials.username,
            &password,
        )
        .await;
        drop(waiting);
        self.host_io += started.elapsed();
        match opened {
            Ok(session) => Ok(Ok(self.table.push(session)?)),
            Err(e) => Ok(Err(scrubbed(e))),
        }
    }

    async fn folders(
        &mut self,
        session: Resource<ImapSession>,
    ) -> wasmtime::Result<Result<Vec<Folder>, SendError>> {
        let started = Instant::now();
        let result = self.table.get_mut(&session)?.folders().await;
        self.host_io += started.elapsed();
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
        let started = Instant::now();
        let result = self.table.get_mut(&session)?.examine(&folder).await;
        self.host_io += started.elapsed();
        Ok(result.map_err(scrubbed))
    }

    async fn create(
        &mut self,
        session: Resource<ImapSession>,
        folder: String,
    ) -> wasmtime::Result<Result<(), SendError>> {
        let started = Instant::now();
        let result = self.table.get_mut(&session)?.create(&folder).await;
        self.host_io += started.elapsed();
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
        let started = Instant::now();
        let result = self
            .table
            .get_mut(&session)?
            .append(&folder, &flags, internal_date, &message)
            .await;
        self.host_io += started.elapsed();
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
        let started = Instant::now();
        let result = self.table.get_mut(&session)?.logout().await;
        self.host_io += started.elapsed();
        Ok(result.map_err(scrubbed))
    }

    async fn drop(&mut self, session: Resource<ImapSession>) -> wasmtime::Result<()> {
        // Dropping the connection closes it; a polite LOGOUT is the plugin's call.
        self.table.delete(session)?;
        Ok(())
    }
}

/// The protocol step a reply answers; it decides how a refusal is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Greeting,
    Starttls,
    Login,
    List,
    Examine,
    Create,
    Append,
    Logout,
}

impl Step {
    fn doing(self) -> &'static str {
        match self {
            Step::Greeting => "connecting to",
            Step::Starttls => "starting TLS with",
            Step::Login => "logging in to",
            Step::List => "listing the folders of",
            Step::Examine => "examining a folder on",
            Step::Create => "creating a folder on",
            Step::Append => "appending the message to",
            Step::Logout => "logging out of",
        }
    }
}

/// A tagged reply that was not OK, as plain data (so the decision below is unit-tested).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refusal {
    /// `NO`, `BAD` or `BYE`.
    status: &'static str,
    /// The response code, upper case, without brackets: `TRYCREATE`, `AUTHENTICATIONFAILED`.
    code: Option<String>,
    /// The server's human text (with the code, as the server sent it).
    text: String,
}

impl Refusal {
    fn of(status: &Status, code: Option<&ResponseCode<'_>>, information: Option<&str>) -> Self {
        let information = information.unwrap_or_default().trim().to_string();
        let known = code.map(|c| match c {
            ResponseCode::TryCreate => "TRYCREATE".to_string(),
            ResponseCode::Alert => "ALERT".to_string(),
            ResponseCode::Parse => "PARSE".to_string(),
            ResponseCode::ReadOnly => "READ-ONLY".to_string(),
            other => format!("{other:?}").to_ascii_uppercase(),
        });
        // imap-proto parses only the RFC 3501 codes; RFC 5530 codes ([AUTHENTICATIONFAILED],
        // [NONEXISTENT], [OVERQUOTA] …) stay at the start of the text.
        let unknown = || {
            information
                .strip_prefix('[')
                .and_then(|rest| rest.split([']', ' ']).next())
                .map(str::to_ascii_uppercase)
        };
        let code = known.or_else(unknown);
        let text = match (&code, information.starts_with('[')) {
            (Some(code), false) => format!("[{code}] {information}"),
            _ => information,
        };
        let status = match status {
            Status::No => "NO",
            Status::Bad => "BAD",
            Status::Bye => "BYE",
            Status::Ok => "OK",
            Status::PreAuth => "PREAUTH",
        };
        Refusal { status, code, text }
    }

    fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    fn said(&self) -> String {
        format!("{} {}", self.status, self.text)
    }
}

/// The `send-error` for a refused step: what should happen next.
fn classify(step: Step, at: &str, subject: &str, refusal: &Refusal) -> SendError {
    let said = refusal.said();
    if refusal.is("UNAVAILABLE") || refusal.is("INUSE") || refusal.is("SERVERBUG") {
        return temporary(format!("{at} is busy {} {subject}: {said}", step.doing()));
    }
    if refusal.status == "BYE" {
        return temporary(format!(
            "{at} closed the connection {} it: {said}",
            step.doing()
        ));
    }
    match step {
        Step::Login => {
            if refusal.is("PRIVACYREQUIRED") {
                return SendError::InvalidSettings(format!(
                    "{at} refuses the login on this connection: {said}"
                ));
            }
            SendError::AuthFailed(format!(
                "{at} refused the login{subject}: {said}; check username and password"
            ))
        }
        _ if refusal.is("TRYCREATE") || refusal.is("NONEXISTENT") => SendError::InvalidSettings(
            format!("{at} has no folder {subject}: {said}; check the mailbox setting"),
        ),
        _ if refusal.is("OVERQUOTA") => temporary(format!(
            "the account on {at} is over its quota {} {subject}: {said}",
            step.doing()
        )),
        _ if refusal.is("LIMIT") || refusal.is("TOOBIG") => {
            SendError::InvalidMessage(format!("{at} refused the message as too large: {said}"))
        }
        _ if refusal.is("NOPERM") || refusal.is("CANNOT") => SendError::InvalidSettings(format!(
            "{at} does not let this account do that with {subject}: {said}; check the mailbox \
             setting"
        )),
        _ => SendError::Rejected(format!("{at} refused {} {subject}: {said}", step.doing())),
    }
}

/// APPEND's exchange, each wait within its own bound: the command until the server's `+`
/// ([`COMMAND_TIMEOUT`]), each piece of the literal ([`PIECE_TIMEOUT`]), and the tagged answer
/// after the literal's last byte ([`APPEND_TIMEOUT`]). That last byte is the hand-over: without
/// an answer the message may be stored.
async fn append_literal(
    session: &mut Session<Wire>,
    witness: &Witness,
    at: &str,
    tag: &str,
    line: &str,
    message: &MessageText,
) -> Result<Reply, SendError> {
    let start = async {
        let stream = session.get_mut();
        stream.write_all(line.as_bytes()).await?;
        stream.flush().await?;
        // A synchronizing literal: the server says "+" first, or refuses right away.
        loop {
            let Some(response) = session.read_response().await? else {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
            };
            let parsed = response.parsed();
            if let Response::Continue(_) = parsed {
                return Ok(None);
            }
            if let Some(done) = ending(parsed, tag) {
                return Ok(Some(Reply {
                    untagged: Untagged::default(),
                    done,
                }));
            }
        }
    };
    if let Some(refused) = timed(Step::Append, at, COMMAND_TIMEOUT, start).await? {
        return Ok(refused);
    }
    // The literal in pieces, attachments encoded as they are reached.
    for piece in message.pieces() {
        let write = session.get_mut().write_all(&piece);
        match tokio::time::timeout(PIECE_TIMEOUT, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(temporary(format!(
                    "failed writing the message to {at}: {e}"
                )));
            }
            Err(_) => {
                return Err(temporary(format!(
                    "timed out after {} s writing the message to {at}: the server stopped reading it",
                    PIECE_TIMEOUT.as_secs()
                )));
            }
        }
    }
    let end = async {
        let stream = session.get_mut();
        stream.write_all(b"\r\n").await?;
        stream.flush().await
    };
    timed(Step::Append, at, PIECE_TIMEOUT, end).await?;
    let hand_over = witness.hand_over(format!("the whole message was written to {at} (APPEND)"));
    match tokio::time::timeout(APPEND_TIMEOUT, read_done(session, tag, Untagged::default())).await {
        Ok(Ok(reply)) => {
            hand_over.answered();
            Ok(reply)
        }
        Ok(Err(e)) => {
            hand_over.lost(&e.to_string());
            Err(temporary(format!(
                "failed waiting for {at} to answer APPEND: {e}; {UNCERTAIN}"
            )))
        }
        Err(_) => {
            hand_over.lost(&format!(
                "no answer came within {} s",
                APPEND_TIMEOUT.as_secs()
            ));
            Err(temporary(format!(
                "timed out after {} s waiting for {at} to answer APPEND: {UNCERTAIN}",
                APPEND_TIMEOUT.as_secs()
            )))
        }
    }
}

/// Said when an APPEND's literal went out and no answer came back.
const UNCERTAIN: &str = "the whole message was sent; whether the server stored it is unknown";

/// Runs one step under a time limit; a failure to talk (I/O, time-out) is temporary.
async fn timed<T, E: std::fmt::Display>(
    step: Step,
    at: &str,
    limit: Duration,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, SendError> {
    match tokio::time::timeout(limit, work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(temporary(format!("failed {} {at}: {e}", step.doing()))),
        Err(_) => Err(temporary(format!(
            "timed out after {} s {} {at}",
            limit.as_secs(),
            step.doing()
        ))),
    }
}

/// At most this many untagged responses to one command: no real account lists more folders.
/// With [`budget::MAX_ANSWER_BYTES`], it bounds what the host gathers for one command.
const MAX_UNTAGGED: usize = 20_000;

/// What the untagged data of a reply said, gathered while reading it.
#[derive(Debug, Default)]
struct Untagged {
    /// How many untagged responses were read.
    count: usize,
    /// CAPABILITY names, upper case.
    capabilities: Vec<String>,
    folders: Vec<Folder>,
    /// The message count of the folder EXAMINE opened.
    exists: Option<u32>,
}

impl Untagged {
    fn take(&mut self, response: &Response<'_>) -> std::io::Result<()> {
        self.count += 1;
        if self.count > MAX_UNTAGGED {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the server sent more than {MAX_UNTAGGED} untagged responses to one command"
                ),
            ));
        }
        match response {
            Response::Capabilities(list) => {
                self.capabilities.extend(list.iter().map(capability_name));
            }
            Response::MailboxData(MailboxDatum::List(list)) => self.folders.push(Folder {
                name: wire::decode_mutf7(&list.name),
                special_use: list
                    .name_attributes
                    .iter()
                    .filter_map(special_use)
                    .collect(),
            }),
            Response::MailboxData(MailboxDatum::Exists(n)) => self.exists = Some(*n),
            _ => {}
        }
        Ok(())
    }
}

/// A tagged command's outcome: its untagged data and either the APPENDUID's UID (when the
/// server gave one) or the refusal.
struct Reply {
    untagged: Untagged,
    done: Result<Option<u32>, Refusal>,
}

/// The tagged reply's verdict.
fn verdict(
    status: &Status,
    code: Option<&ResponseCode<'_>>,
    information: Option<&str>,
) -> Result<Option<u32>, Refusal> {
    match status {
        Status::Ok => Ok(match code {
            Some(ResponseCode::AppendUid(_, uids)) => uids.first().map(|u| match u {
                UidSetMember::Uid(uid) => *uid,
                UidSetMember::UidRange(range) => *range.start(),
            }),
            _ => None,
        }),
        other => Err(Refusal::of(other, code, information)),
    }
}

/// Writes `tag command\r\n` and reads until the tagged reply. The command is written straight
/// to the stream, so async-imap does not log it.
async fn command<T>(conn: &mut Connection<T>, tag: &str, line: &str) -> std::io::Result<Reply>
where
    T: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    let stream = conn.get_mut();
    stream
        .write_all(format!("{tag} {line}\r\n").as_bytes())
        .await?;
    stream.flush().await?;
    read_done(conn, tag, Untagged::default()).await
}

/// Reads until the reply tagged `tag` (or a BYE), gathering the untagged data.
async fn read_done<T>(
    conn: &mut Connection<T>,
    tag: &str,
    mut untagged: Untagged,
) -> std::io::Result<Reply>
where
    T: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    loop {
        let Some(response) = conn.read_response().await? else {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        };
        let parsed = response.parsed();
        match ending(parsed, tag) {
            Some(done) => return Ok(Reply { untagged, done }),
            None => untagged.take(parsed)?,
        }
    }
}

/// The verdict, when `response` ends the command tagged `tag`: its tagged reply, or a BYE.
fn ending(response: &Response<'_>, tag: &str) -> Option<Result<Option<u32>, Refusal>> {
    match response {
        Response::Done {
            tag: done,
            status,
            outcome,
        } if done.0 == tag => Some(verdict(
            status,
            outcome.code.as_ref(),
            outcome.information.as_deref(),
        )),
        Response::Data {
            status: Status::Bye,
            outcome,
        } => Some(Err(Refusal::of(
            &Status::Bye,
            outcome.code.as_ref(),
            outcome.information.as_deref(),
        ))),
        _ => None,
    }
}

fn capability_name(capability: &async_imap::imap_proto::Capability<'_>) -> String {
    use async_imap::imap_proto::Capability;
    match capability {
        Capability::Imap4rev1 => "IMAP4REV1".to_string(),
        Capability::Auth(mechanism) => format!("AUTH={}", mechanism.to_ascii_uppercase()),
        Capability::Atom(atom) => atom.to_ascii_uppercase(),
    }
}

async fn capabilities<T>(
    conn: &mut Connection<T>,
    at: &str,
    step: Step,
) -> Result<Vec<String>, SendError>
where
    T: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    let reply = timed(step, at, COMMAND_TIMEOUT, command(conn, "C1", "CAPABILITY")).await?;
    match reply.done {
        Ok(_) => Ok(reply.untagged.capabilities),
        Err(refusal) => Err(classify(step, at, "", &refusal)),
    }
}

/// Reads the greeting: OK goes on; BYE is a busy server; PREAUTH is refused, because a
/// connection authenticated before any TLS is not one this sender may use.
async fn greeting<T>(conn: &mut Connection<T>, at: &str) -> Result<(), SendError>
where
    T: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    let first = timed(Step::Greeting, at, COMMAND_TIMEOUT, conn.read_response()).await?;
    let Some(first) = first else {
        return Err(temporary(format!(
            "{at} closed the connection before greeting"
        )));
    };
    match first.parsed() {
        Response::Data {
            status: Status::Ok, ..
        } => Ok(()),
        Response::Data {
            status: Status::Bye,
            outcome,
        } => Err(temporary(format!(
            "{at} refused the connection: BYE {}",
            outcome.information.as_deref().unwrap_or_default()
        ))),
        Response::Data {
            status: Status::PreAuth,
            ..
        } => Err(SendError::InvalidSettings(format!(
            "{at} pre-authenticated the connection (PREAUTH); scan2x-mail only logs in itself"
        ))),
        other => Err(temporary(format!(
            "{at} did not greet as an IMAP server: {other:?}"
        ))),
    }
}

fn tls_connector(ctx: &SenderContext) -> Result<TlsConnector, SendError> {
    let config =
        super::tls::client_config(ctx.ca_pem.as_deref()).map_err(SendError::InvalidSettings)?;
    Ok(TlsConnector::from(Arc::new(config)))
}

async fn handshake(
    ctx: &SenderContext,
    endpoint: &Endpoint,
    at: &str,
    tcp: Budgeted<TcpStream>,
) -> Result<TlsStream<Budgeted<TcpStream>>, SendError> {
    let connector = tls_connector(ctx)?;
    let name = rustls::pki_types::ServerName::try_from(super::tls::server_name(&endpoint.host))
        .map_err(|e| SendError::InvalidSettings(format!("host: {:?}: {e}", endpoint.host)))?;
    match tokio::time::timeout(COMMAND_TIMEOUT, connector.connect(name, tcp)).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(e)) => {
            let is_tls = e
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
            if is_tls {
                Err(SendError::InvalidSettings(format!(
                    "TLS with {at} failed: {e}; if the server's certificate comes from a \
                     private CA, trust it with ca_file"
                )))
            } else {
                Err(temporary(format!("TLS with {at} failed: {e}")))
            }
        }
        Err(_) => Err(temporary(format!(
            "timed out after {} s starting TLS with {at}",
            COMMAND_TIMEOUT.as_secs()
        ))),
    }
}

/// Connect, secure, log in.
async fn open(
    ctx: &SenderContext,
    witness: &Witness,
    endpoint: &Endpoint,
    username: &str,
    password: &Secret,
) -> Result<ImapSession, SendError> {
    let at = format!("{}:{}", endpoint.host, endpoint.port);
    if endpoint.tls == TlsMode::Plaintext {
        return Err(SendError::InvalidSettings(format!(
            "IMAP always logs in, and credentials are never sent over plaintext: turn on \
             enable_ssl for {at}"
        )));
    }
    // The addresses the gate's host resolves to, checked (see `resolve`), and nothing else.
    let tcp = timed(Step::Greeting, &at, CONNECT_TIMEOUT, async {
        match super::resolve::endpoint_addresses(ctx, endpoint).await {
            Ok(addresses) => TcpStream::connect(&addresses[..]).await.map(Ok),
            Err(e) if e.is_denied() => Ok(Err(SendError::Denied(e.to_string()))),
            Err(e) => Err(std::io::Error::from(e)),
        }
    })
    .await??;
    // Every answer bounded, from the greeting on.
    let tcp = Budgeted::new(tcp);
    let tls = match endpoint.tls {
        TlsMode::ImplicitTls => {
            let tls = handshake(ctx, endpoint, &at, tcp).await?;
            let mut client = Client::new(SecretFill::new(tls));
            greeting(&mut client, &at).await?;
            client
        }
        _ => {
            let mut clear = Client::new(tcp);
            greeting(&mut clear, &at).await?;
            let offered = capabilities(&mut clear, &at, Step::Starttls).await?;
            if !offered.iter().any(|c| c == "STARTTLS") {
                return Err(SendError::InvalidSettings(format!(
                    "{at} does not offer STARTTLS, which enable_ssl requires on this port; no \
                     credentials were sent. Use port 993 for TLS from the first byte, or have \
                     the server offer STARTTLS"
                )));
            }
            let reply = timed(
                Step::Starttls,
                &at,
                COMMAND_TIMEOUT,
                command(&mut clear, "T1", "STARTTLS"),
            )
            .await?;
            if let Err(refusal) = reply.done {
                return Err(SendError::InvalidSettings(format!(
                    "{at} refused STARTTLS ({}); no credentials were sent",
                    refusal.said()
                )));
            }
            // into_inner drops whatever the server sent after its OK: nothing read in clear
            // may be taken as said over TLS (STARTTLS response injection).
            let tcp = clear.into_inner();
            let tls = handshake(ctx, endpoint, &at, tcp).await?;
            Client::new(SecretFill::new(tls))
        }
    };
    let session = login(tls, &at, username, password).await?;
    let mut session = ImapSession {
        session,
        at,
        capabilities: Vec::new(),
        next_tag: 0,
        broken: false,
        witness: witness.clone(),
    };
    // After login a server may say more (SPECIAL-USE, UIDPLUS); ask again.
    let tag = session.tag();
    let at = session.at.clone();
    let reply = session
        .run(Step::Login, &tag, "CAPABILITY", COMMAND_TIMEOUT)
        .await?;
    session.capabilities = match reply.done {
        Ok(_) => reply.untagged.capabilities,
        Err(refusal) => return Err(classify(Step::Login, &at, "", &refusal)),
    };
    Ok(session)
}

/// SASL PLAIN's one response: a token async-imap base64-encodes; the host's stream swaps it.
struct PlainToken(Vec<u8>);

impl Authenticator for PlainToken {
    type Response = Vec<u8>;
    fn process(&mut self, _challenge: &[u8]) -> Self::Response {
        self.0.clone()
    }
}

/// AUTHENTICATE PLAIN where the server offers it, else LOGIN; over TLS only (the caller made
/// sure). async-imap sees a random token, never the password (see [`secret_fill`]).
async fn login(
    mut client: Client<Wire>,
    at: &str,
    username: &str,
    password: &Secret,
) -> Result<Session<Wire>, SendError> {
    let offered = capabilities(&mut client, at, Step::Login).await?;
    let token = format!("S2X{}", uuid::Uuid::new_v4().simple());
    let attempt = if offered.iter().any(|c| c == "AUTH=PLAIN") {
        let sasl = format!("\0{username}\0{}", password.expose());
        // async-imap sends base64(token); the stream swaps in base64 of the real response.
        client.get_mut().arm(
            &wire::base64(token.as_bytes()),
            wire::base64(sasl.as_bytes()).into_bytes(),
        );
        timed(Step::Login, at, COMMAND_TIMEOUT, async {
            client
                .authenticate("PLAIN", PlainToken(token.clone().into_bytes()))
                .await
                .map_err(|(e, _)| e)
        })
        .await
    } else if offered.iter().any(|c| c == "LOGINDISABLED") {
        return Err(SendError::InvalidSettings(format!(
            "{at} offers neither AUTHENTICATE PLAIN nor LOGIN; scan2x-mail can't log in there"
        )));
    } else {
        let body = wire::quoted_password_body(password.expose())
            .map_err(|e| SendError::InvalidSettings(format!("password: {}", e.0)))?;
        client.get_mut().arm(&token, body.into_bytes());
        timed(Step::Login, at, COMMAND_TIMEOUT, async {
            client.login(username, &token).await.map_err(|(e, _)| e)
        })
        .await
    };
    match attempt {
        Ok(mut session) => {
            session.get_mut().disarm();
            Ok(session)
        }
        // A NO or BAD to the login: async-imap gives it as text ("code: …, info: …").
        Err(SendError::Temporary(t))
            if t.reason.contains("no response") || t.reason.contains("bad response") =>
        {
            // Redacted before the server's words are unescaped: async-imap quotes them, and a
            // server that echoed the login line would otherwise leave a spelling of the password
            // no redactor knows.
            let text = crate::secret::redact(&t.reason).into_owned();
            if text.to_ascii_uppercase().contains("UNAVAILABLE") {
                return Err(temporary(text));
            }
            Err(SendError::AuthFailed(format!(
                "{at} refused the login for user {username:?}: {}; check username and password",
                server_words(&text)
            )))
        }
        Err(e) => Err(e),
    }
}

/// The server's own words in async-imap's "… info: Some(\"…\")" error text.
fn server_words(text: &str) -> String {
    text.split_once("info: Some(\"")
        .and_then(|(_, rest)| rest.rsplit_once("\")"))
        .map(|(words, _)| words.replace("\\\"", "\""))
        .unwrap_or_else(|| text.to_string())
}

impl ImapSession {
    fn tag(&mut self) -> String {
        self.next_tag += 1;
        format!("S{}", self.next_tag)
    }

    fn usable(&self) -> Result<(), SendError> {
        if self.broken {
            return Err(temporary(format!(
                "the connection to {} broke in an earlier step",
                self.at
            )));
        }
        Ok(())
    }

    /// One command under a time limit; a failure to talk leaves the session broken.
    async fn run(
        &mut self,
        step: Step,
        tag: &str,
        line: &str,
        limit: Duration,
    ) -> Result<Reply, SendError> {
        self.usable()?;
        let at = self.at.clone();
        let _waiting = self.witness.waiting_on(format!("imap {at}"));
        let result = timed(step, &at, limit, command(&mut self.session, tag, line)).await;
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    async fn folders(&mut self) -> Result<Vec<Folder>, SendError> {
        let tag = self.tag();
        let reply = self
            .run(Step::List, &tag, "LIST \"\" \"*\"", COMMAND_TIMEOUT)
            .await?;
        if let Err(refusal) = reply.done {
            return Err(classify(Step::List, &self.at, "", &refusal));
        }
        Ok(reply.untagged.folders)
    }

    async fn examine(&mut self, folder: &str) -> Result<u32, SendError> {
        let quoted = wire::quoted_folder(folder)
            .map_err(|e| SendError::InvalidSettings(format!("mailbox: {}", e.0)))?;
        let tag = self.tag();
        let reply = self
            .run(
                Step::Examine,
                &tag,
                &format!("EXAMINE {quoted}"),
                COMMAND_TIMEOUT,
            )
            .await?;
        if let Err(refusal) = reply.done {
            return Err(classify(
                Step::Examine,
                &self.at,
                &format!("{folder:?}"),
                &refusal,
            ));
        }
        Ok(reply.untagged.exists.unwrap_or(0))
    }

    async fn create(&mut self, folder: &str) -> Result<(), SendError> {
        let quoted = wire::quoted_folder(folder)
            .map_err(|e| SendError::InvalidSettings(format!("mailbox: {}", e.0)))?;
        let tag = self.tag();
        let reply = self
            .run(
                Step::Create,
                &tag,
                &format!("CREATE {quoted}"),
                COMMAND_TIMEOUT,
            )
            .await?;
        match reply.done {
            Ok(_) => Ok(()),
            // Someone else made it in the meantime: the folder is there, which is the point.
            Err(refusal) if refusal.is("ALREADYEXISTS") => Ok(()),
            Err(refusal) => Err(classify(
                Step::Create,
                &self.at,
                &format!("{folder:?}"),
                &refusal,
            )),
        }
    }

    async fn append(
        &mut self,
        folder: &str,
        flags: &[String],
        internal_date: Option<i64>,
        message: &MessageText,
    ) -> Result<AppendReport, AppendError> {
        let failed = AppendError::Failed;
        self.usable().map_err(failed)?;
        let quoted = wire::quoted_folder(folder)
            .map_err(|e| failed(SendError::InvalidSettings(format!("mailbox: {}", e.0))))?;
        let flags = wire::flag_list(flags)
            .map_err(|e| failed(SendError::InvalidMessage(format!("flags: {}", e.0))))?;
        let date = match internal_date {
            Some(secs) => {
                let date = wire::date_time(secs)
                    .map_err(|e| failed(SendError::InvalidMessage(format!("date: {}", e.0))))?;
                format!(" {date}")
            }
            None => String::new(),
        };
        if message.is_empty() {
            return Err(failed(SendError::InvalidMessage(
                "the message is empty".into(),
            )));
        }
        let tag = self.tag();
        let line = format!(
            "{tag} APPEND {quoted} {flags}{date} {{{}}}\r\n",
            message.len()
        );
        let at = self.at.clone();
        let waiting = self.witness.waiting_on(format!("imap {at}"));
        let appended = append_literal(&mut self.session, &self.witness, &at, &tag, &line, message);
        let appended = appended.await;
        drop(waiting);
        let reply = match appended {
            Ok(reply) => reply,
            Err(e) => {
                self.broken = true;
                return Err(failed(e));
            }
        };
        match reply.done {
            Ok(uid) => {
                let detail = match uid {
                    Some(uid) => format!("{at} stored the message in {folder:?} as UID {uid}"),
                    None => format!("{at} stored the message in {folder:?}"),
                };
                Ok(AppendReport { uid, detail })
            }
            Err(refusal) if refusal.is("TRYCREATE") => Err(AppendError::NoSuchFolder(format!(
                "{at} has no folder {folder:?}: {}",
                refusal.said()
            ))),
            Err(refusal) => Err(failed(classify(
                Step::Append,
                &at,
                &format!("{folder:?}"),
                &refusal,
            ))),
        }
    }

    async fn logout(&mut self) -> Result<(), SendError> {
        let tag = self.tag();
        let reply = self
            .run(Step::Logout, &tag, "LOGOUT", COMMAND_TIMEOUT)
            .await;
        // Whatever happened, nothing more goes over this connection.
        self.broken = true;
        match reply {
            Ok(Reply { done: Ok(_), .. }) => Ok(()),
            // A BYE is how LOGOUT ends; some servers close before the tagged OK.
            Ok(Reply {
                done: Err(refusal), ..
            }) if refusal.status == "BYE" => Ok(()),
            Ok(Reply {
                done: Err(refusal), ..
            }) => Err(classify(Step::Logout, &self.at, "", &refusal)),
            Err(SendError::Temporary(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The RFC 6154 attribute, as the WIT spells it (`\Sent`), of a LIST attribute.
fn special_use(attribute: &NameAttribute<'_>) -> Option<String> {
    let name = match attribute {
        NameAttribute::All => "\\All",
        NameAttribute::Archive => "\\Archive",
        NameAttribute::Drafts => "\\Drafts",
        NameAttribute::Flagged => "\\Flagged",
        NameAttribute::Junk => "\\Junk",
        NameAttribute::Sent => "\\Sent",
        NameAttribute::Trash => "\\Trash",
        _ => return None,
    };
    Some(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(e: &SendError) -> &'static str {
        match e {
            SendError::InvalidSettings(_) => "invalid-settings",
            SendError::InvalidMessage(_) => "invalid-message",
            SendError::AuthFailed(_) => "auth-failed",
            SendError::Rejected(_) => "rejected",
            SendError::Temporary(_) => "temporary",
            SendError::Denied(_) => "denied",
        }
    }

    fn no(information: &str) -> Refusal {
        Refusal::of(&Status::No, None, Some(information))
    }

    #[test]
    fn rfc_5530_codes_are_read_from_the_text() {
        let r = no("[AUTHENTICATIONFAILED] Authentication failed.");
        assert_eq!(r.code.as_deref(), Some("AUTHENTICATIONFAILED"));
        assert_eq!(r.said(), "NO [AUTHENTICATIONFAILED] Authentication failed.");
        assert_eq!(no("Mailbox is busy").code, None);
    }

    #[test]
    fn parsed_trycreate_keeps_its_code_in_the_text() {
        let r = Refusal::of(
            &Status::No,
            Some(&ResponseCode::TryCreate),
            Some("Mailbox doesn't exist: Outbox"),
        );
        assert!(r.is("TRYCREATE"));
        assert_eq!(r.said(), "NO [TRYCREATE] Mailbox doesn't exist: Outbox");
    }

    #[test]
    fn refusals_map_to_what_to_do_next() {
        let cases = [
            (
                Step::Login,
                no("[AUTHENTICATIONFAILED] Authentication failed."),
                "auth-failed",
            ),
            (Step::Login, no("[UNAVAILABLE] Try later"), "temporary"),
            (
                Step::Login,
                no("[PRIVACYREQUIRED] TLS first"),
                "invalid-settings",
            ),
            (
                Step::Examine,
                no("[NONEXISTENT] Mailbox doesn't exist: X"),
                "invalid-settings",
            ),
            (
                Step::Append,
                no("[TRYCREATE] Mailbox doesn't exist: X"),
                "invalid-settings",
            ),
            (Step::Append, no("[OVERQUOTA] Quota exceeded"), "temporary"),
            (Step::Append, no("[LIMIT] Too big"), "invalid-message"),
            (
                Step::Create,
                no("[NOPERM] Permission denied"),
                "invalid-settings",
            ),
            (Step::Append, no("Something else"), "rejected"),
            (
                Step::Append,
                Refusal::of(&Status::Bye, None, Some("Shutting down")),
                "temporary",
            ),
        ];
        for (step, refusal, expected) in cases {
            let e = classify(step, "mx:993", "\"Sent\"", &refusal);
            assert_eq!(kind(&e), expected, "{step:?} {refusal:?}: {e:?}");
        }
    }

    #[test]
    fn missing_folder_error_names_the_mailbox_setting() {
        let e = classify(
            Step::Examine,
            "mx:993",
            "\"Outbox\"",
            &no("[NONEXISTENT] Mailbox doesn't exist: Outbox"),
        );
        let SendError::InvalidSettings(text) = e else {
            panic!("{e:?}")
        };
        assert!(
            text.contains("\"Outbox\"") && text.contains("mailbox setting"),
            "{text}"
        );
    }

    #[test]
    fn server_words_are_taken_from_async_imaps_error_text() {
        assert_eq!(
            server_words(
                "failed logging in to mx:993: no response: code: None, info: Some(\"[AUTHENTICATIONFAILED] Authentication failed.\")"
            ),
            "[AUTHENTICATIONFAILED] Authentication failed."
        );
        assert_eq!(server_words("io: broken pipe"), "io: broken pipe");
    }

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

    #[test]
    fn special_use_attributes_keep_their_rfc_6154_spelling() {
        assert_eq!(special_use(&NameAttribute::Sent).as_deref(), Some("\\Sent"));
        assert_eq!(special_use(&NameAttribute::NoSelect), None);
    }
}
