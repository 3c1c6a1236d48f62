//! Getting to an authenticated session: connect (to the addresses the gate's host resolved
//! to), TLS (from the first byte, or STARTTLS, required), the greeting, and the login, which
//! the host writes itself: AUTHENTICATE PLAIN where the server offers AUTH=PLAIN (with the
//! initial response where it offers SASL-IR, else after its `+`), else LOGIN (quoted strings,
//! or a literal for text a quoted string can't carry), refused where it says LOGINDISABLED.
//!
//! The password is read from its [`Secret`] only to build the login's bytes ([`LoginLine`],
//! held in [`Hidden`] buffers that are cleared once written) and is never logged or formatted:
//! the trace shows the command with `<secret>` in its place. A login only ever goes over TLS:
//! [`login`] takes the encrypted connection ([`Wire`]) and nothing else.

use std::sync::Arc;

use async_imap::imap_proto::{Response, Status};
use async_imap::{Client, Connection};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;

use super::budget::Budgeted;
use super::replies::{Reply, Step, Untagged, classify, continuation, described, ending, timed};
use super::session::{ImapSession, Wire, command};
use super::wire::{self, Carried, Hidden};
use super::{COMMAND_TIMEOUT, CONNECT_TIMEOUT};
use crate::capability::witness::Witness;
use crate::capability::{SenderContext, resolve, temporary, tls};
use crate::secret::{REDACTED, Secret};
use crate::wit::types::{Endpoint, SendError, TlsMode};

/// Connect, secure, log in.
pub async fn open(
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
        match resolve::endpoint_addresses(ctx, endpoint).await {
            Ok(addresses) => TcpStream::connect(&addresses[..]).await.map(Ok),
            Err(e) if e.is_denied() => Ok(Err(SendError::Denied(e.to_string()))),
            Err(e) => Err(std::io::Error::from(e)),
        }
    })
    .await??;
    // Every answer bounded, from the greeting on.
    let tcp = Budgeted::new(tcp);
    let mut client = match endpoint.tls {
        TlsMode::ImplicitTls => {
            let tls = handshake(ctx, endpoint, &at, tcp).await?;
            let mut client = Client::new(tls);
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
            Client::new(tls)
        }
    };
    login(&mut client, &at, username, password).await?;
    ImapSession::start(client, at, witness).await
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
            "{at} did not greet as an IMAP server: it began with {}",
            described(other)
        ))),
    }
}

fn tls_connector(ctx: &SenderContext) -> Result<TlsConnector, SendError> {
    let config = tls::client_config(ctx.ca_pem.as_deref()).map_err(SendError::InvalidSettings)?;
    Ok(TlsConnector::from(Arc::new(config)))
}

async fn handshake(
    ctx: &SenderContext,
    endpoint: &Endpoint,
    at: &str,
    tcp: Budgeted<TcpStream>,
) -> Result<TlsStream<Budgeted<TcpStream>>, SendError> {
    let connector = tls_connector(ctx)?;
    let name = rustls::pki_types::ServerName::try_from(tls::server_name(&endpoint.host))
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

/// The login's tag: the only command of its kind on the connection.
const LOGIN_TAG: &str = "L1";

/// Logs in over TLS (the type says so): see [`login_on`].
async fn login(
    client: &mut Client<Wire>,
    at: &str,
    username: &str,
    password: &Secret,
) -> Result<(), SendError> {
    login_on(client, at, username, password).await
}

/// Asks what the server offers, then AUTHENTICATE PLAIN or LOGIN ([`login_line`]), and reads
/// the verdict. A refusal is `auth-failed` with the server's words, unless its code says
/// otherwise ([`classify`]).
async fn login_on<T>(
    conn: &mut Connection<T>,
    at: &str,
    username: &str,
    password: &Secret,
) -> Result<(), SendError>
where
    T: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    let offered = capabilities(conn, at, Step::Login).await?;
    let line = login_line(LOGIN_TAG, &offered, at, username, password)?;
    authenticate(conn, at, username, line).await
}

/// Writes `line` and judges the reply, all under [`COMMAND_TIMEOUT`].
async fn authenticate<T>(
    conn: &mut Connection<T>,
    at: &str,
    username: &str,
    line: LoginLine,
) -> Result<(), SendError>
where
    T: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    let reply = timed(Step::Login, at, COMMAND_TIMEOUT, exchange(conn, line)).await?;
    match reply.done {
        Ok(_) => Ok(()),
        Err(refusal) => Err(classify(
            Step::Login,
            at,
            &format!(" for user {username:?}"),
            &refusal,
        )),
    }
}

/// A login command as it goes on the wire: its pieces, written in order, the server's `+`
/// awaited before each one after the first (a literal's bytes, or the SASL response); and the
/// command as the trace shows it, the credentials left out.
struct LoginLine {
    tag: &'static str,
    pieces: Vec<Hidden>,
    shown: String,
    /// AUTHENTICATE: a further challenge after the response is cancelled (`*`), as PLAIN has
    /// nothing more to say.
    sasl: bool,
}

/// The login command for what the server `offered` (CAPABILITY, upper case).
fn login_line(
    tag: &'static str,
    offered: &[String],
    at: &str,
    username: &str,
    password: &Secret,
) -> Result<LoginLine, SendError> {
    let offers = |name: &str| offered.iter().any(|c| c == name);
    let unsendable = |e: wire::Unsendable| SendError::InvalidSettings(e.0);
    let password = password.expose();
    // Room for the whole command from the start, so no buffer grows (and leaves a copy behind).
    let room = 64 + 4 * (username.len() + password.len());
    if offers("AUTH=PLAIN") {
        let shown = format!("{tag} AUTHENTICATE PLAIN {REDACTED}");
        let mut first = Hidden::with_capacity(room);
        first.push(tag.as_bytes());
        first.push(b" AUTHENTICATE PLAIN");
        let pieces = if offers("SASL-IR") {
            // RFC 4959: the response on the command line, no round trip.
            first.push(b" ");
            wire::push_sasl_plain(username, password, &mut first).map_err(unsendable)?;
            first.push(b"\r\n");
            vec![first]
        } else {
            first.push(b"\r\n");
            let mut response = Hidden::with_capacity(room);
            wire::push_sasl_plain(username, password, &mut response).map_err(unsendable)?;
            response.push(b"\r\n");
            vec![first, response]
        };
        return Ok(LoginLine {
            tag,
            pieces,
            shown,
            sasl: true,
        });
    }
    if offers("LOGINDISABLED") {
        return Err(SendError::InvalidSettings(format!(
            "{at} offers neither AUTHENTICATE PLAIN nor LOGIN; scan2x-mail can't log in there"
        )));
    }
    let mut shown = format!("{tag} LOGIN");
    let mut pieces = Vec::new();
    let mut piece = Hidden::with_capacity(room);
    piece.push(tag.as_bytes());
    piece.push(b" LOGIN");
    for (what, value, secret) in [("username", username, false), ("password", password, true)] {
        piece.push(b" ");
        shown.push(' ');
        let carried = wire::login_argument(what, value)
            .map_err(|e| SendError::InvalidSettings(format!("{what}: {}", e.0)))?;
        match carried {
            Carried::Quoted => {
                wire::push_quoted(value.as_bytes(), &mut piece);
                shown.push_str(&if secret {
                    REDACTED.to_string()
                } else {
                    quoted_text(value)
                });
            }
            Carried::Literal => {
                // A synchronizing literal: its size ends this piece; its bytes start the next
                // once the server says "+".
                let size = format!("{{{}}}", value.len());
                piece.push(size.as_bytes());
                piece.push(b"\r\n");
                pieces.push(piece);
                piece = Hidden::with_capacity(room);
                piece.push(value.as_bytes());
                shown.push_str(if secret { REDACTED } else { &size });
            }
        }
    }
    piece.push(b"\r\n");
    pieces.push(piece);
    Ok(LoginLine {
        tag,
        pieces,
        shown,
        sasl: false,
    })
}

/// A username as LOGIN quotes it, for the trace.
fn quoted_text(value: &str) -> String {
    let mut out = Hidden::with_capacity(value.len() + 2);
    wire::push_quoted(value.as_bytes(), &mut out);
    String::from_utf8_lossy(out.bytes()).into_owned()
}

/// Writes the login's pieces, each after the first once the server said `+`, and reads until
/// the tagged reply. The pieces are cleared as soon as they are written.
async fn exchange<T>(conn: &mut Connection<T>, line: LoginLine) -> std::io::Result<Reply>
where
    T: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    let LoginLine {
        tag,
        pieces,
        shown,
        sasl,
    } = line;
    tracing::trace!("imap C: {shown}");
    for (i, piece) in pieces.into_iter().enumerate() {
        if i > 0
            && let Some(done) = continuation(conn, tag).await?
        {
            // Refused before it had the rest (a literal the server won't take).
            return Ok(Reply {
                untagged: Untagged::default(),
                done,
            });
        }
        let stream = conn.get_mut();
        stream.write_all(piece.bytes()).await?;
        stream.flush().await?;
    }
    let mut untagged = Untagged::default();
    loop {
        let Some(response) = conn.read_response().await? else {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        };
        let parsed = response.parsed();
        if let Some(done) = ending(parsed, tag) {
            return Ok(Reply { untagged, done });
        }
        if sasl && matches!(parsed, Response::Continue(_)) {
            // RFC 3501 6.2.2: the client cancels an exchange with "*"; the server answers BAD.
            tracing::trace!("imap C: * (a further challenge to {tag}, cancelled)");
            let stream = conn.get_mut();
            stream.write_all(b"*\r\n").await?;
            stream.flush().await?;
        }
        untagged.take(parsed)?;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, DuplexStream};

    use super::*;
    use crate::capability::imap::replies::kind;

    const PASSWORD: &str = "pw-1234";
    /// base64 of "\0scanner\0pw-1234".
    const PLAIN: &str = "AHNjYW5uZXIAcHctMTIzNA==";

    fn offered(capabilities: &str) -> Vec<String> {
        capabilities.split(' ').map(str::to_string).collect()
    }

    fn line(capabilities: &str, password: &str) -> Result<LoginLine, SendError> {
        let secret = Secret::new(password);
        login_line(
            LOGIN_TAG,
            &offered(capabilities),
            "mx:993",
            "scanner",
            &secret,
        )
    }

    fn pieces(line: &LoginLine) -> Vec<String> {
        line.pieces
            .iter()
            .map(|p| String::from_utf8(p.bytes().to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn authenticate_plain_carries_the_response_on_the_line_with_sasl_ir() {
        let line = line("IMAP4REV1 AUTH=PLAIN SASL-IR LOGIN-REFERRALS", PASSWORD).unwrap();
        assert_eq!(
            pieces(&line),
            [format!("L1 AUTHENTICATE PLAIN {PLAIN}\r\n")]
        );
        assert!(line.sasl);
        assert_eq!(line.shown, "L1 AUTHENTICATE PLAIN <secret>");
    }

    #[test]
    fn authenticate_plain_without_sasl_ir_sends_the_response_after_the_plus() {
        let line = line("IMAP4REV1 AUTH=PLAIN", PASSWORD).unwrap();
        assert_eq!(
            pieces(&line),
            [
                "L1 AUTHENTICATE PLAIN\r\n".to_string(),
                format!("{PLAIN}\r\n")
            ]
        );
        assert_eq!(line.shown, "L1 AUTHENTICATE PLAIN <secret>");
    }

    #[test]
    fn login_quotes_what_a_quoted_string_can_carry() {
        let line = line("IMAP4REV1 AUTH=CRAM-MD5", "p\"w\\1 é").unwrap();
        assert_eq!(
            pieces(&line),
            ["L1 LOGIN \"scanner\" \"p\\\"w\\\\1 é\"\r\n"]
        );
        assert!(!line.sasl);
        assert_eq!(line.shown, "L1 LOGIN \"scanner\" <secret>");
    }

    #[test]
    fn login_sends_a_password_with_a_line_break_as_a_literal() {
        let line = line("IMAP4REV1", "pw\r\n1234").unwrap();
        assert_eq!(
            pieces(&line),
            ["L1 LOGIN \"scanner\" {8}\r\n", "pw\r\n1234\r\n"]
        );
        assert_eq!(line.shown, "L1 LOGIN \"scanner\" <secret>");
    }

    #[test]
    fn login_disabled_without_plain_and_a_nul_are_settings_errors() {
        let Err(e) = line("IMAP4REV1 LOGINDISABLED AUTH=GSSAPI", PASSWORD) else {
            panic!("logged in where LOGIN is disabled")
        };
        assert_eq!(kind(&e), "invalid-settings", "{e:?}");
        for capabilities in ["IMAP4REV1", "IMAP4REV1 AUTH=PLAIN"] {
            let Err(e) = line(capabilities, "pw\x001234") else {
                panic!("a NUL was sent ({capabilities})")
            };
            assert_eq!(kind(&e), "invalid-settings", "{e:?}");
            let SendError::InvalidSettings(text) = &e else {
                unreachable!()
            };
            assert!(text.contains("password") && text.contains("NUL"), "{text}");
        }
    }

    /// A server that expects exactly `script`'s client bytes, step by step, and answers each
    /// step; it gives back what it read.
    async fn serve(mut io: DuplexStream, script: Vec<(String, String)>) -> String {
        let mut heard = Vec::new();
        for (expected, answer) in script {
            let mut got = vec![0u8; expected.len()];
            if io.read_exact(&mut got).await.is_err() {
                break;
            }
            heard.extend_from_slice(&got);
            if got != expected.as_bytes() {
                break;
            }
            io.write_all(answer.as_bytes()).await.unwrap();
        }
        String::from_utf8(heard).unwrap()
    }

    /// Logs in against a scripted server; gives the outcome and what the server read.
    async fn login_against(
        password: &str,
        script: &[(&str, &str)],
    ) -> (Result<(), SendError>, String, String) {
        let (client, server) = tokio::io::duplex(1 << 16);
        let script: Vec<(String, String)> = script
            .iter()
            .map(|(c, s)| (c.to_string(), s.to_string()))
            .collect();
        let expected: String = script.iter().map(|(c, _)| c.as_str()).collect();
        let server = tokio::spawn(serve(server, script));
        let mut conn = Client::new(client);
        let secret = Secret::new(password);
        let outcome = tokio::time::timeout(
            Duration::from_secs(10),
            login_on(&mut conn, "mx:993", "scanner", &secret),
        )
        .await
        .expect("the login ended");
        drop(conn);
        (outcome, server.await.unwrap(), expected)
    }

    #[tokio::test]
    async fn plain_with_sasl_ir_is_one_line_and_then_logged_in() {
        let authenticate = format!("L1 AUTHENTICATE PLAIN {PLAIN}\r\n");
        let (outcome, heard, expected) = login_against(
            PASSWORD,
            &[
                (
                    "C1 CAPABILITY\r\n",
                    "* CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN\r\nC1 OK done\r\n",
                ),
                (&authenticate, "L1 OK [CAPABILITY IMAP4rev1] Logged in\r\n"),
            ],
        )
        .await;
        assert_eq!(heard, expected);
        outcome.unwrap();
    }

    #[tokio::test]
    async fn authenticationfailed_after_the_plus_is_auth_failed_with_the_servers_words() {
        let response = format!("{PLAIN}\r\n");
        let (outcome, heard, expected) = login_against(
            PASSWORD,
            &[
                (
                    "C1 CAPABILITY\r\n",
                    "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nC1 OK done\r\n",
                ),
                ("L1 AUTHENTICATE PLAIN\r\n", "+ \r\n"),
                (
                    &response,
                    "L1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
                ),
            ],
        )
        .await;
        assert_eq!(heard, expected);
        let Err(SendError::AuthFailed(text)) = outcome else {
            panic!("not auth-failed: {outcome:?}")
        };
        assert_eq!(
            text,
            "mx:993 refused the login for user \"scanner\": NO [AUTHENTICATIONFAILED] \
             Authentication failed.; check username and password"
        );
    }

    #[tokio::test]
    async fn a_literal_password_goes_after_the_plus() {
        let (outcome, heard, expected) = login_against(
            "pw\n1234",
            &[
                (
                    "C1 CAPABILITY\r\n",
                    "* CAPABILITY IMAP4rev1\r\nC1 OK done\r\n",
                ),
                (
                    "L1 LOGIN \"scanner\" {7}\r\n",
                    "+ Ready for literal data\r\n",
                ),
                ("pw\n1234\r\n", "L1 OK LOGIN completed\r\n"),
            ],
        )
        .await;
        assert_eq!(heard, expected);
        outcome.unwrap();
    }

    #[tokio::test]
    async fn a_literal_refused_at_once_is_never_sent() {
        let (outcome, heard, _) = login_against(
            "pw\n1234",
            &[
                (
                    "C1 CAPABILITY\r\n",
                    "* CAPABILITY IMAP4rev1\r\nC1 OK done\r\n",
                ),
                (
                    "L1 LOGIN \"scanner\" {7}\r\n",
                    "L1 NO [AUTHENTICATIONFAILED] no literals here\r\n",
                ),
                // Never read: the client stops at the refusal.
                ("pw\n1234\r\n", ""),
            ],
        )
        .await;
        assert!(!heard.contains("1234\r\n"), "{heard}");
        assert!(
            matches!(&outcome, Err(SendError::AuthFailed(t)) if t.contains("no literals here")),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn a_further_challenge_is_cancelled_and_unavailable_is_temporary() {
        let response = format!("{PLAIN}\r\n");
        let (outcome, heard, expected) = login_against(
            PASSWORD,
            &[
                (
                    "C1 CAPABILITY\r\n",
                    "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nC1 OK done\r\n",
                ),
                ("L1 AUTHENTICATE PLAIN\r\n", "+ \r\n"),
                (&response, "+ more?\r\n"),
                ("*\r\n", "L1 BAD cancelled\r\n"),
            ],
        )
        .await;
        assert_eq!(heard, expected);
        assert_eq!(kind(&outcome.unwrap_err()), "auth-failed");

        let (outcome, _, _) = login_against(
            PASSWORD,
            &[
                (
                    "C1 CAPABILITY\r\n",
                    "* CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR\r\nC1 OK done\r\n",
                ),
                (
                    &format!("L1 AUTHENTICATE PLAIN {PLAIN}\r\n"),
                    "L1 NO [UNAVAILABLE] backend down\r\n",
                ),
            ],
        )
        .await;
        assert_eq!(kind(&outcome.unwrap_err()), "temporary");
    }
}
