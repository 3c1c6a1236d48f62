//! The `smtp` interface: SMTP submission done by the host with lettre's async client (tokio,
//! rustls). The plugin composes the message and the envelope; this module connects, secures,
//! authenticates and transfers it, and maps every outcome to a `send-error` that says what to
//! do next.
//!
//! | step | rule |
//! |---|---|
//! | connect | the gate first; then TCP with a time limit ([`open_tcp`], the one place that resolves and connects) |
//! | TLS | run by the host ([`tls`]): `implicit-tls` from the first byte; `starttls` required, no plaintext fallback, nothing accepted between its `220` and the handshake |
//! | replies | read through a byte cap ([`reader`]) on the decrypted stream, before any buffer: 4 KiB a line, 64 KiB a reply |
//! | AUTH | PLAIN or LOGIN, and only once the host itself has TLS up |
//! | RCPT | each recipient on its own: refusals are reported per recipient |
//! | replies | 4xx → `temporary`, 5xx → `rejected` (`auth-failed` for AUTH and 530); over the cap → `temporary` |
//! | waits | every one bounded ([`Timeouts`], below); a step that runs out is `temporary` and names the step and its bound |
//!
//! Every wait on the server has a bound, RFC 5321 §4.5.3.2's where it gives one:
//!
//! | step | bound | why |
//! |---|---|---|
//! | TCP connect, TLS from the first byte, greeting, EHLO, STARTTLS's clear part | 30 s together | shorter than the RFC's 5 min for the greeting: a submission server greets at once, and one that does not should let failover move the email on |
//! | STARTTLS handshake and the EHLO inside TLS | 60 s | no RFC value; a handshake is a few round trips |
//! | AUTH | 60 s | no RFC value (RFC 4954 gives none); a submission server answers at once |
//! | MAIL FROM | 5 min | RFC 5321 (servers may check the sender's domain in DNS) |
//! | each RCPT TO | 5 min | RFC 5321 |
//! | DATA, until its `354` | 2 min | RFC 5321 "DATA initiation" |
//! | each piece of the message written (at most 1 MiB) | 3 min | RFC 5321 "data block" |
//! | the answer to the final `.` | 10 min | RFC 5321 "DATA termination": the server may scan the message before it answers |
//! | QUIT | 5 s | the mail is sent; the answer changes nothing, and then the connection is dropped |
//!
//! The final `.` is the hand-over: from there the server may deliver, so no answer to it (a
//! time-out, a closed connection, a reply over the cap) is recorded in the call's [`Witness`],
//! and the outcome is `uncertain`, never `temporary`. A 4xx to a RCPT TO is recorded there too,
//! so the receipt's refused recipients can be told apart (for now, for good).
//!
//! After a step ran out of its bound the connection is dropped at once: no QUIT is sent into a
//! silence. After a refused step, QUIT gets its 5 s. `SCAN2X_MAIL_SMTP_TIMEOUT_SCALE` (a factor
//! from 0.001 to 1, read when a sender loads) shortens every bound alike; the tests use it so a
//! stalled server costs them seconds, and an operator may use it to fail over sooner.
//!
//! lettre's client does the SMTP dialogue on a stream the host hands it (`connect_with_transport`),
//! so every byte either way passes [`reader::Guarded`]. Certificates are always verified: the
//! system's roots (which honour `SSL_CERT_FILE`) plus the sender's `ca_file`. This module never
//! logs or formats a password.

mod reader;
mod timeouts;
mod tls;

pub use self::timeouts::Timeouts;

pub use self::tls::TlsCache;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lettre::Address;
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::{Credentials as SmtpCredentials, Mechanism};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;

use super::blobs::{MessageText, Pieces};
use super::secrets::secret_value;
use super::witness::{HandOver, Witness};
use super::{HostState, SenderContext, error_chain, gate, scrubbed, temporary};
use crate::secret::Secret;
use crate::wit::smtp::{Envelope, Host, SendReport};
use crate::wit::types::{Credentials, Endpoint, MessagePart, RefusedRecipient, SendError, TlsMode};

impl Host for HostState {
    async fn send(
        &mut self,
        endpoint: Endpoint,
        credentials: Option<Credentials>,
        envelope: Envelope,
        message: Vec<MessagePart>,
    ) -> wasmtime::Result<Result<SendReport, SendError>> {
        gate!(self, "smtp", endpoint, SendError::Denied);
        let message = MessageText::from_parts(&self.table, message)?;
        if let Err(too_large) = message.check_size() {
            return Ok(Err(too_large));
        }
        let login = match login(self, credentials)? {
            Ok(login) => login,
            Err(denied) => return Ok(Err(denied)),
        };
        let _waiting = self
            .witness
            .waiting_on(format!("smtp {}:{}", endpoint.host, endpoint.port));
        let result = self
            .host_io
            .wait(send(
                &self.sender,
                &self.witness,
                &endpoint,
                login.as_ref(),
                &envelope,
                &message,
            ))
            .await;
        Ok(result.map(scrubbed_report).map_err(scrubbed))
    }

    async fn verify(
        &mut self,
        endpoint: Endpoint,
        credentials: Option<Credentials>,
    ) -> wasmtime::Result<Result<String, SendError>> {
        gate!(self, "smtp", endpoint, SendError::Denied);
        let login = match login(self, credentials)? {
            Ok(login) => login,
            Err(denied) => return Ok(Err(denied)),
        };
        let _waiting = self
            .witness
            .waiting_on(format!("smtp {}:{}", endpoint.host, endpoint.port));
        let result = self
            .host_io
            .wait(verify(&self.sender, &endpoint, login.as_ref()))
            .await;
        Ok(result
            .map(|line| crate::secret::redact(&line).into_owned())
            .map_err(scrubbed))
    }
}

/// The server's words in a report scrubbed of every secret, before the plugin sees them.
fn scrubbed_report(mut report: SendReport) -> SendReport {
    crate::secret::redact_in_place(&mut report.reply);
    for refused in &mut report.refused {
        crate::secret::redact_in_place(&mut refused.reason);
    }
    report
}

/// The username and password of a login; a password the plugin declared only for HTTP is
/// refused as `denied` (see [`SecretUses`](super::secrets::SecretUses)).
fn login(
    state: &HostState,
    credentials: Option<Credentials>,
) -> wasmtime::Result<Result<Option<(String, Secret)>, SendError>> {
    let Some(c) = credentials else {
        return Ok(Ok(None));
    };
    let password = secret_value(state, &c.password)?;
    Ok(match state.sender.secret_uses.check_login(&password) {
        Ok(()) => Ok(Some((c.username, password))),
        Err(refused) => Err(SendError::Denied(refused)),
    })
}

/// The protocol step an error happened in; it decides how a reply is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connect,
    Tls,
    Auth,
    Mail,
    Rcpt,
    /// The DATA command, until its `354`.
    Data,
    /// Writing a piece of the message.
    DataBlock,
    /// The final `.` written, its answer awaited: the hand-over. When this step fails the
    /// message may have been delivered ([`Witness::hand_over`]).
    DataEnd,
}

impl Stage {
    fn doing(self) -> &'static str {
        match self {
            Stage::Connect => "connecting to",
            Stage::Tls => "securing the connection to",
            Stage::Auth => "authenticating with",
            Stage::Mail => "starting the transaction with",
            Stage::Rcpt => "naming the recipients to",
            Stage::Data => "starting the message transfer with",
            Stage::DataBlock => "transferring the message to",
            Stage::DataEnd => "waiting for the answer to the message from",
        }
    }

    /// The bound this step waits at most.
    fn bound(self, timeouts: &Timeouts) -> Duration {
        match self {
            Stage::Connect => timeouts.connect,
            Stage::Tls => timeouts.tls,
            Stage::Auth => timeouts.auth,
            Stage::Mail => timeouts.mail,
            Stage::Rcpt => timeouts.rcpt,
            Stage::Data => timeouts.data,
            Stage::DataBlock => timeouts.data_block,
            Stage::DataEnd => timeouts.data_end,
        }
    }

    /// What a step that ran out of its bound says: the step, the bound, and for the final
    /// `.` that the message may have arrived.
    fn timed_out(self, at: &str, bound: Duration) -> String {
        let after = format!("timed out after {}", timeouts::seconds(bound));
        match self {
            Stage::Connect | Stage::Tls | Stage::Auth => format!("{after} {} {at}", self.doing()),
            Stage::Mail => format!("{after} waiting for {at} to answer MAIL FROM"),
            Stage::Rcpt => format!("{after} waiting for {at} to answer RCPT TO"),
            Stage::Data => format!("{after} waiting for {at} to answer DATA"),
            Stage::DataBlock => {
                format!("{after} writing the message to {at}: the server stopped reading it")
            }
            Stage::DataEnd => format!(
                "{after} waiting for {at} to answer the end of the message (the final \".\"): {UNCERTAIN}"
            ),
        }
    }
}

/// Said when the final `.` went out and no answer came back.
const UNCERTAIN: &str = "the whole message was sent; whether the server accepted it is unknown";

/// What an lettre error says, as plain data (lettre's errors can't be built outside lettre,
/// so the decision below is made on this and tested on it).
#[derive(Debug, Clone, Default)]
struct ErrorFacts {
    timeout: bool,
    tls: bool,
    client: bool,
    /// The SMTP reply code, when the server answered.
    code: Option<u16>,
    text: String,
}

impl ErrorFacts {
    fn of(e: &SmtpError) -> Self {
        Self {
            timeout: e.is_timeout(),
            tls: e.is_tls(),
            client: e.is_client(),
            code: e.status().and_then(|c| c.to_string().parse().ok()),
            text: error_chain(e),
        }
    }
}

fn map_error(stage: Stage, endpoint: &Endpoint, e: &SmtpError) -> SendError {
    let at = format!("{}:{}", endpoint.host, endpoint.port);
    if let Some(too_long) = reader::ReplyTooLong::find(e) {
        return overrun(stage, &at, too_long);
    }
    classify(stage, &at, &ErrorFacts::of(e))
}

/// A reply over the cap: `temporary`, not `rejected`. It says nothing about the message (no
/// server refused it), and the bytes may have come from something on the path before TLS, not
/// from the server; a retry on a clean path can succeed, and a server that always does it fails
/// every retry without harm.
fn overrun(stage: Stage, at: &str, too_long: reader::ReplyTooLong) -> SendError {
    temporary(format!("failed {} {at}: {too_long}", stage.doing()))
}

/// The `send-error` for a failed step: what should happen next.
fn classify(stage: Stage, at: &str, facts: &ErrorFacts) -> SendError {
    let what = &facts.text;
    if facts.timeout {
        return temporary(format!("timed out {} {at}: {what}", stage.doing()));
    }
    if facts.tls {
        return SendError::InvalidSettings(format!(
            "TLS with {at} failed: {what}; if the server's certificate comes from a private CA, \
             trust it with ca_file"
        ));
    }
    if let Some(code) = facts.code
        && stage == Stage::Tls
    {
        // An answer to STARTTLS: 454 is the server's "not now"; a 5xx is "never", and
        // enable_ssl requires it on this port.
        if (400..500).contains(&code) {
            return temporary(format!("{at} refused STARTTLS for now: {what}"));
        }
        return SendError::InvalidSettings(format!(
            "{at} refused STARTTLS, which enable_ssl requires on this port: {what}"
        ));
    }
    if let Some(code) = facts.code {
        if code == 530 || (stage == Stage::Auth && code >= 500) {
            return SendError::AuthFailed(format!("{at} refused the login: {what}"));
        }
        if (400..500).contains(&code) {
            return temporary(format!("{at} answered {what}"));
        }
        return SendError::Rejected(format!("{at} answered {what}"));
    }
    if facts.client {
        if stage == Stage::Auth {
            return SendError::InvalidSettings(format!(
                "{at} offers no login method scan2x-mail supports (PLAIN, LOGIN): {what}"
            ));
        }
        return SendError::InvalidMessage(format!("{at}: {what}"));
    }
    if stage == Stage::DataEnd {
        return temporary(format!(
            "failed {} {at}: {what}; {UNCERTAIN}",
            stage.doing()
        ));
    }
    temporary(format!("failed {} {at}: {what}", stage.doing()))
}

/// The waits of one SMTP session: each step within its bound, and whether one ran out (then
/// the server stopped talking, and [`Waits::close`] sends it nothing more).
struct Waits<'a> {
    endpoint: &'a Endpoint,
    timeouts: &'a Timeouts,
    stalled: bool,
}

impl<'a> Waits<'a> {
    fn new(ctx: &'a SenderContext, endpoint: &'a Endpoint) -> Self {
        Waits {
            endpoint,
            timeouts: &ctx.smtp_timeouts,
            stalled: false,
        }
    }

    fn at(&self) -> String {
        format!("{}:{}", self.endpoint.host, self.endpoint.port)
    }

    /// `work`, or a `temporary` error naming the step and its bound when it takes longer.
    async fn within<T>(
        &mut self,
        stage: Stage,
        work: impl Future<Output = Result<T, SendError>>,
    ) -> Result<T, SendError> {
        let bound = stage.bound(self.timeouts);
        match tokio::time::timeout(bound, work).await {
            Ok(result) => result,
            Err(_) => {
                self.stalled = true;
                Err(temporary(stage.timed_out(&self.at(), bound)))
            }
        }
    }

    /// One of lettre's steps within its bound, its error mapped.
    async fn step<T>(
        &mut self,
        stage: Stage,
        work: impl Future<Output = Result<T, SmtpError>>,
    ) -> Result<T, SendError> {
        let endpoint = self.endpoint;
        self.within(stage, async {
            work.await.map_err(|e| map_error(stage, endpoint, &e))
        })
        .await
    }

    /// The end of a session: QUIT within its bound (lettre's `abort` after a refusal, which
    /// waits for QUIT's answer without a bound of its own), then the connection is dropped.
    /// After a step that ran out of its bound, nothing is sent: the server stopped talking.
    async fn close(&self, mut conn: AsyncSmtpConnection, failed: bool) {
        if self.stalled {
            return;
        }
        let quit = async {
            if failed {
                conn.abort().await;
            } else {
                let _ = conn.quit().await;
            }
        };
        if tokio::time::timeout(self.timeouts.quit, quit)
            .await
            .is_err()
        {
            tracing::debug!(
                "smtp: {} did not answer QUIT within {}; the connection was dropped",
                self.at(),
                timeouts::seconds(self.timeouts.quit)
            );
        }
    }
}

/// Where the transfer of the message is: its step, that step's deadline, and once the last
/// piece is out, the hand-over whose answer is owed.
struct Watch {
    stage: Stage,
    deadline: Instant,
    hand_over: Option<HandOver>,
}

/// The message's pieces, each one's write given the data-block bound from the moment lettre
/// takes it, and the final `.` with its answer the DATA-termination bound once none is left.
struct Watched<'a> {
    pieces: Pieces<'a>,
    watch: Arc<Mutex<Watch>>,
    timeouts: Timeouts,
    witness: &'a Witness,
    at: String,
}

impl<'a> Iterator for Watched<'a> {
    type Item = <Pieces<'a> as Iterator>::Item;

    fn next(&mut self) -> Option<Self::Item> {
        let piece = self.pieces.next();
        let stage = match piece {
            Some(_) => Stage::DataBlock,
            None => Stage::DataEnd,
        };
        let mut watch = self.watch.lock().unwrap_or_else(|e| e.into_inner());
        if stage == Stage::DataEnd && watch.stage != Stage::DataEnd {
            // lettre writes the final "." next: from here on the server may deliver.
            watch.hand_over = Some(
                self.witness
                    .hand_over(format!("the whole message was written to {}", self.at)),
            );
        }
        watch.stage = stage;
        watch.deadline = Instant::now() + stage.bound(&self.timeouts);
        piece
    }
}

/// The message after the `354`: lettre writes the pieces and the final `.` and reads the
/// answer; the deadline moves on with each piece, so a slow upload of a large scan is never
/// cut while it progresses, and a server that stops reading or answering is.
///
/// The answer to the final `.` settles the hand-over, whatever it says; no answer (a time-out,
/// a closed connection, a reply over the cap) leaves it lost, and the email maybe delivered.
async fn transfer_message(
    waits: &mut Waits<'_>,
    witness: &Witness,
    conn: &mut AsyncSmtpConnection,
    message: &MessageText,
) -> Result<Response, SendError> {
    let watch = Arc::new(Mutex::new(Watch {
        stage: Stage::DataBlock,
        deadline: Instant::now() + Stage::DataBlock.bound(waits.timeouts),
        hand_over: None,
    }));
    let pieces = Watched {
        pieces: message.pieces(),
        watch: watch.clone(),
        timeouts: *waits.timeouts,
        witness,
        at: waits.at(),
    };
    let now = |watch: &Mutex<Watch>| {
        let watch = watch.lock().unwrap_or_else(|e| e.into_inner());
        (watch.stage, watch.deadline)
    };
    let hand_over = |watch: &Mutex<Watch>| {
        watch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .hand_over
            .take()
    };
    let mut sending = std::pin::pin!(conn.message_iter(pieces));
    loop {
        let (_, deadline) = now(&watch);
        tokio::select! {
            result = &mut sending => {
                let (stage, _) = now(&watch);
                if let Some(hand_over) = hand_over(&watch) {
                    match &result {
                        Err(e) if e.status().is_none() => hand_over.lost(&error_chain(e)),
                        _ => hand_over.answered(),
                    }
                }
                return result.map_err(|e| map_error(stage, waits.endpoint, &e));
            }
            () = tokio::time::sleep_until(deadline.into()) => {
                let (stage, deadline) = now(&watch);
                if deadline <= Instant::now() {
                    waits.stalled = true;
                    let bound = stage.bound(waits.timeouts);
                    if let Some(hand_over) = hand_over(&watch) {
                        hand_over.lost(&format!(
                            "no answer came within {}",
                            timeouts::seconds(bound)
                        ));
                    }
                    return Err(temporary(stage.timed_out(&waits.at(), bound)));
                }
            }
        }
    }
}

/// A TCP connection to the endpoint, trying each address it resolves to in turn (as lettre's
/// `connect_tokio1` does), and a second handle on the same socket, so that [`connect`] can set
/// `TCP_NODELAY` after lettre has taken the stream.
async fn open_tcp(
    ctx: &SenderContext,
    endpoint: &Endpoint,
) -> std::io::Result<(tokio::net::TcpStream, std::net::TcpStream)> {
    let mut last = None;
    for address in super::resolve::endpoint_addresses(ctx, endpoint).await? {
        match tokio::net::TcpStream::connect(address).await {
            Ok(stream) => {
                let stream = stream.into_std()?;
                let handle = stream.try_clone()?;
                return Ok((tokio::net::TcpStream::from_std(stream)?, handle));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("could not resolve to any supported address")))
}

/// A failed TCP connect, worded and classified as lettre's connection errors are.
fn connect_error(endpoint: &Endpoint, e: &std::io::Error) -> SendError {
    if let Some(refusal) = super::resolve::LookupError::denial(e) {
        return SendError::Denied(refusal.to_string());
    }
    let facts = ErrorFacts {
        timeout: e.kind() == std::io::ErrorKind::TimedOut,
        text: format!("Connection error: {e}"),
        ..ErrorFacts::default()
    };
    classify(
        Stage::Connect,
        &format!("{}:{}", endpoint.host, endpoint.port),
        &facts,
    )
}

/// An SMTP connection, and whether the host itself secured it with TLS (lettre's
/// `is_encrypted` can't know: it is handed a stream it did not secure).
struct Connection {
    conn: AsyncSmtpConnection,
    encrypted: bool,
}

/// A connection after its first steps: lettre's client on it, or, for STARTTLS, the TCP stream
/// whose server agreed to TLS. Each with the socket handle for `TCP_NODELAY`.
enum Opened {
    Ready(Box<AsyncSmtpConnection>, Option<std::net::TcpStream>),
    Starttls(
        tokio::net::TcpStream,
        std::net::SocketAddr,
        std::net::TcpStream,
    ),
}

/// Connects, secures and authenticates as the endpoint and credentials say.
async fn connect(
    ctx: &SenderContext,
    waits: &mut Waits<'_>,
    endpoint: &Endpoint,
    login: Option<&(String, Secret)>,
) -> Result<Connection, SendError> {
    let at = format!("{}:{}", endpoint.host, endpoint.port);
    let hello = ClientId::default();
    let lettre_error = |e: SmtpError| map_error(Stage::Connect, endpoint, &e);
    // TCP (and TLS from the first byte, or the clear part of STARTTLS) within the connect
    // bound; the STARTTLS handshake and the EHLO inside TLS within the TLS bound.
    let opened = waits
        .within(Stage::Connect, async {
            let (tcp, socket) = open_tcp(ctx, endpoint)
                .await
                .map_err(|e| connect_error(endpoint, &e))?;
            let peer = tcp.peer_addr().map_err(|e| connect_error(endpoint, &e))?;
            Ok(match endpoint.tls {
                TlsMode::ImplicitTls => {
                    let tls = tls::handshake(ctx, endpoint, &at, tcp).await?;
                    let stream = reader::Guarded::new(tls, peer);
                    let conn =
                        AsyncSmtpConnection::connect_with_transport(Box::new(stream), &hello)
                            .await
                            .map_err(lettre_error)?;
                    // No TCP_NODELAY here, as when lettre opened these connections itself.
                    Opened::Ready(Box::new(conn), None)
                }
                TlsMode::Plaintext => {
                    let stream = reader::Guarded::new(tcp, peer);
                    let conn =
                        AsyncSmtpConnection::connect_with_transport(Box::new(stream), &hello)
                            .await
                            .map_err(lettre_error)?;
                    Opened::Ready(Box::new(conn), Some(socket))
                }
                TlsMode::Starttls => {
                    Opened::Starttls(tls::starttls(tcp, peer, &at, &hello).await?, peer, socket)
                }
            })
        })
        .await?;
    let (mut conn, socket) = match opened {
        Opened::Ready(conn, socket) => (*conn, socket),
        Opened::Starttls(tcp, peer, socket) => {
            let secured = waits.within(Stage::Tls, async {
                let tls = tls::handshake(ctx, endpoint, &at, tcp).await?;
                tls::lettre_after_starttls(tls, peer, &hello)
                    .await
                    .map_err(lettre_error)
            });
            (secured.await?, Some(socket))
        }
    };
    let encrypted = endpoint.tls != TlsMode::Plaintext;
    // TCP_NODELAY from here on, not from the first byte. Nagle's algorithm holds a small write
    // while an earlier one is unacknowledged, and a server acknowledges a segment it does not
    // answer only when its delayed-ACK timer fires (40 ms on Linux): packet traces against
    // Postfix showed DATA's final "." now and then waiting ≈41 ms for the message body's ACK.
    // But during the TLS handshake Nagle helps: with TCP_NODELAY the client's Finished and the
    // EHLO after it leave together, Postfix writes its session ticket and its EHLO reply
    // separately, and its own Nagle then holds the reply until this side's delayed ACK
    // (≈42 ms on every send).
    if let Some(socket) = socket
        && let Err(e) = socket.set_nodelay(true)
    {
        tracing::debug!("smtp: TCP_NODELAY could not be set: {e}");
    }
    if let Some((username, password)) = login {
        if !encrypted {
            waits.close(conn, true).await;
            return Err(SendError::InvalidSettings(
                "credentials are never sent over plaintext: turn on enable_ssl, or remove username and password"
                    .into(),
            ));
        }
        let credentials = SmtpCredentials::new(username.clone(), password.expose().to_string());
        let auth = conn.auth(&[Mechanism::Plain, Mechanism::Login], &credentials);
        if let Err(e) = waits.step(Stage::Auth, auth).await {
            waits.close(conn, true).await;
            return Err(e);
        }
    }
    Ok(Connection { conn, encrypted })
}

fn reply_text(response: &Response) -> String {
    let lines: Vec<&str> = response.message().collect();
    format!("{} {}", response.code(), lines.join(" "))
}

async fn verify(
    ctx: &SenderContext,
    endpoint: &Endpoint,
    login: Option<&(String, Secret)>,
) -> Result<String, SendError> {
    let mut waits = Waits::new(ctx, endpoint);
    let Connection { conn, encrypted } = connect(ctx, &mut waits, endpoint, login).await?;
    let server = conn.server_info().name().to_string();
    let tls = if encrypted { "TLS" } else { "no TLS" };
    let auth = if login.is_some() {
        "login accepted"
    } else {
        "no login"
    };
    waits.close(conn, false).await;
    Ok(format!(
        "{}:{}: connected ({server}), {tls}, {auth}; no mail sent",
        endpoint.host, endpoint.port
    ))
}

fn parse_address(text: &str) -> Result<Address, SendError> {
    text.parse::<Address>()
        .map_err(|e| SendError::InvalidMessage(format!("{text:?} is not a valid address: {e}")))
}

async fn send(
    ctx: &SenderContext,
    witness: &Witness,
    endpoint: &Endpoint,
    login: Option<&(String, Secret)>,
    envelope: &Envelope,
    message: &MessageText,
) -> Result<SendReport, SendError> {
    let from = parse_address(&envelope.mail_from)?;
    let recipients = envelope
        .rcpt_to
        .iter()
        .map(|r| parse_address(r).map(|a| (r.clone(), a)))
        .collect::<Result<Vec<_>, _>>()?;
    if recipients.is_empty() {
        return Err(SendError::InvalidMessage(
            "the envelope has no recipients".into(),
        ));
    }
    let mut waits = Waits::new(ctx, endpoint);
    let mut conn = connect(ctx, &mut waits, endpoint, login).await?.conn;
    let result = transfer(
        &mut waits,
        witness,
        &mut conn,
        endpoint,
        from,
        &recipients,
        message,
    )
    .await;
    waits.close(conn, result.is_err()).await;
    result
}

async fn transfer(
    waits: &mut Waits<'_>,
    witness: &Witness,
    conn: &mut AsyncSmtpConnection,
    endpoint: &Endpoint,
    from: Address,
    recipients: &[(String, Address)],
    message: &MessageText,
) -> Result<SendReport, SendError> {
    let info = conn.server_info();
    let mut parameters = Vec::new();
    let non_ascii_address = !AsRef::<str>::as_ref(&from).is_ascii()
        || recipients.iter().any(|(text, _)| !text.is_ascii());
    if non_ascii_address {
        if !info.supports_feature(Extension::SmtpUtfEight) {
            return Err(SendError::InvalidMessage(format!(
                "{}:{} does not accept non-ASCII addresses (no SMTPUTF8)",
                endpoint.host, endpoint.port
            )));
        }
        parameters.push(MailParameter::SmtpUtfEight);
    }
    if !message.is_ascii() && info.supports_feature(Extension::EightBitMime) {
        parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    waits
        .step(Stage::Mail, conn.command(Mail::new(Some(from), parameters)))
        .await?;

    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    let mut any_temporary = false;
    for (text, address) in recipients {
        let rcpt = conn.command(Rcpt::new(address.clone(), vec![]));
        match waits.within(Stage::Rcpt, async { Ok(rcpt.await) }).await? {
            Ok(_) => accepted.push(text.clone()),
            Err(e) if e.status().is_some() => {
                if e.is_transient() {
                    any_temporary = true;
                    witness.deferred(text);
                }
                refused.push(RefusedRecipient {
                    address: text.clone(),
                    reason: error_chain(&e),
                });
            }
            Err(e) => return Err(map_error(Stage::Rcpt, endpoint, &e)),
        }
    }
    if accepted.is_empty() {
        let reasons: Vec<String> = refused
            .iter()
            .map(|r| format!("{}: {}", r.address, r.reason))
            .collect();
        let reason = format!("every recipient was refused: {}", reasons.join("; "));
        return Err(if any_temporary {
            temporary(reason)
        } else {
            SendError::Rejected(reason)
        });
    }
    waits.step(Stage::Data, conn.command(Data)).await?;
    // In pieces of at most 1 MiB, attachments encoded as they are reached: lettre copies what it
    // is given to dot-stuff it, and a piece at a time keeps that copy small, where the whole
    // message would be a second copy (≈41 MB for a 30 MB scan).
    let reply = transfer_message(waits, witness, conn, message).await?;
    Ok(SendReport {
        accepted,
        refused,
        reply: reply_text(&reply),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16) -> ErrorFacts {
        ErrorFacts {
            code: Some(code),
            text: format!("{code} something"),
            ..ErrorFacts::default()
        }
    }

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

    #[test]
    fn replies_map_to_what_to_do_next() {
        let cases = [
            (Stage::Mail, reply(451), "temporary"),
            (Stage::Data, reply(452), "temporary"),
            (Stage::Mail, reply(550), "rejected"),
            (Stage::Data, reply(554), "rejected"),
            (Stage::Auth, reply(535), "auth-failed"),
            (Stage::Auth, reply(454), "temporary"),
            (Stage::Mail, reply(530), "auth-failed"),
        ];
        for (stage, facts, expected) in cases {
            assert_eq!(
                kind(&classify(stage, "mx:587", &facts)),
                expected,
                "{stage:?} {facts:?}"
            );
        }
    }

    #[test]
    fn network_failures_are_temporary_and_tls_failures_point_at_ca_file() {
        let refused = ErrorFacts {
            text: "Connection refused".into(),
            ..ErrorFacts::default()
        };
        assert_eq!(
            kind(&classify(Stage::Connect, "mx:587", &refused)),
            "temporary"
        );
        let timeout = ErrorFacts {
            timeout: true,
            ..ErrorFacts::default()
        };
        assert_eq!(
            kind(&classify(Stage::Data, "mx:587", &timeout)),
            "temporary"
        );
        let tls = ErrorFacts {
            tls: true,
            text: "invalid peer certificate: UnknownIssuer".into(),
            ..ErrorFacts::default()
        };
        let e = classify(Stage::Tls, "mx:587", &tls);
        assert!(
            matches!(&e, SendError::InvalidSettings(m) if m.contains("ca_file")),
            "{e:?}"
        );
    }

    #[test]
    fn starttls_refused_for_now_is_temporary_and_refused_for_good_is_a_settings_problem() {
        assert_eq!(
            kind(&classify(Stage::Tls, "mx:587", &reply(454))),
            "temporary"
        );
        let never = classify(Stage::Tls, "mx:587", &reply(502));
        assert!(
            matches!(&never, SendError::InvalidSettings(m) if m.contains("enable_ssl") && !m.contains("ca_file")),
            "{never:?}"
        );
    }

    #[test]
    fn a_stalled_step_names_itself_and_its_bound() {
        let t = Timeouts::RFC_5321;
        assert_eq!(
            Stage::Mail.timed_out("mx:587", Stage::Mail.bound(&t)),
            "timed out after 300 s waiting for mx:587 to answer MAIL FROM"
        );
        let end = Stage::DataEnd.timed_out("mx:587", Stage::DataEnd.bound(&t));
        assert!(
            end.starts_with("timed out after 600 s waiting for mx:587") && end.ends_with(UNCERTAIN),
            "{end}"
        );
    }

    #[test]
    fn no_supported_login_method_is_a_settings_problem() {
        let facts = ErrorFacts {
            client: true,
            text: "No compatible authentication mechanism was found".into(),
            ..ErrorFacts::default()
        };
        assert_eq!(
            kind(&classify(Stage::Auth, "mx:587", &facts)),
            "invalid-settings"
        );
    }
}
