//! Securing an SMTP connection, done by the host and not by lettre, so that the reply cap of
//! [`super::reader`] sits on the decrypted stream in every mode:
//!
//! | mode | here |
//! |---|---|
//! | `implicit-tls` | the TLS handshake on the fresh TCP connection |
//! | `starttls` | greeting, EHLO and STARTTLS in clear on a capped reader, then the handshake |
//!
//! After a STARTTLS, anything the server sent past its `220` and before the handshake is
//! refused (STARTTLS response injection: a reader that kept those bytes would take them as the
//! answer to the EHLO sent inside TLS). Certificates are always verified; nothing here sends
//! credentials or mail, and nothing here logs what the server sent.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Ehlo, Quit, Starttls};
use lettre::transport::smtp::extension::{ClientId, Extension, ServerInfo};
use lettre::transport::smtp::response::Response;
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;

use super::reader::{Guarded, ReplyTooLong};
use super::{ErrorFacts, SenderContext, Stage, classify, temporary};
use crate::wit::types::{Endpoint, SendError};

/// A sender's TLS configuration for SMTP, made once: the system's roots (read and parsed once
/// per process) and the sender's `ca_file`.
///
/// Session resumption is off, as it was when lettre made a fresh configuration per connection:
/// a shared configuration resumes TLS 1.3 sessions, and against Postfix (one ticket per full
/// handshake, none on resumption, so every other connection resumes) each resumed handshake
/// waited ≈41 ms. A packet trace shows why: the client's Finished and its EHLO are two small
/// writes, Nagle holds the EHLO until the Finished is acknowledged, and Postfix, having nothing
/// to answer to a resumed Finished, acknowledges it only when its delayed-ACK timer fires.
/// `TCP_NODELAY` during the handshake does not help: it moves the wait to the full handshakes
/// (see `connect`).
#[derive(Default)]
pub struct TlsCache(OnceLock<Result<TlsConnector, String>>);

impl std::fmt::Debug for TlsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsCache")
    }
}

fn connector(ctx: &SenderContext) -> Result<TlsConnector, SendError> {
    ctx.smtp_tls
        .0
        .get_or_init(|| {
            let mut config = crate::capability::tls::client_config(ctx.ca_pem.as_deref())?;
            config.resumption = rustls::client::Resumption::disabled();
            Ok(TlsConnector::from(Arc::new(config)))
        })
        .clone()
        .map_err(SendError::InvalidSettings)
}

/// The TLS handshake for `endpoint.host` on `tcp`. A certificate the roots don't vouch for is a
/// settings problem (`ca_file`); a handshake the network cut is `temporary`.
pub(super) async fn handshake(
    ctx: &SenderContext,
    endpoint: &Endpoint,
    at: &str,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, SendError> {
    let connector = connector(ctx)?;
    let name = rustls::pki_types::ServerName::try_from(crate::capability::tls::server_name(
        &endpoint.host,
    ))
    .map_err(|e| SendError::InvalidSettings(format!("host: {:?}: {e}", endpoint.host)))?;
    connector.connect(name, tcp).await.map_err(|e| {
        let is_tls = e
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
        if is_tls {
            SendError::InvalidSettings(format!(
                "TLS with {at} failed: {e}; if the server's certificate comes from a private CA, \
                 trust it with ca_file"
            ))
        } else {
            temporary(format!("TLS with {at} failed: {e}"))
        }
    })
}

/// The greeting lettre reads before its EHLO, replayed after a STARTTLS the host ran: after
/// STARTTLS the server sends no greeting of its own (RFC 3207 §4.2), and lettre ignores its text.
const GREETING_AFTER_STARTTLS: &[u8] = b"220 TLS is up\r\n";

/// lettre's client on a secured connection: the EHLO (and everything after it) inside TLS.
pub(super) async fn lettre_after_starttls(
    tls: TlsStream<TcpStream>,
    peer: SocketAddr,
    hello: &ClientId,
) -> Result<AsyncSmtpConnection, lettre::transport::smtp::Error> {
    let stream = Guarded::replaying(tls, peer, GREETING_AFTER_STARTTLS);
    AsyncSmtpConnection::connect_with_transport(Box::new(stream), hello).await
}

/// Greeting, EHLO and STARTTLS in clear, every reply read through the cap; the TCP stream,
/// ready for the handshake, once the server answered `220` and sent nothing after it.
pub(super) async fn starttls(
    tcp: TcpStream,
    peer: SocketAddr,
    at: &str,
    hello: &ClientId,
) -> Result<TcpStream, SendError> {
    let mut io = BufReader::new(Guarded::new(tcp, peer));
    expect(&mut io, at, Stage::Connect).await?;
    send(
        &mut io,
        at,
        Stage::Connect,
        &Ehlo::new(hello.clone()).to_string(),
    )
    .await?;
    let ehlo = expect(&mut io, at, Stage::Connect).await?;
    let offered = ServerInfo::from_response(&ehlo)
        .is_ok_and(|info| info.supports_feature(Extension::StartTls));
    if !offered {
        let _ = io.get_mut().write_all(Quit.to_string().as_bytes()).await;
        return Err(SendError::InvalidSettings(format!(
            "{at} does not offer STARTTLS, which enable_ssl requires on this port; nothing was \
             sent. Use port 465 for TLS from the first byte, or have the server offer STARTTLS"
        )));
    }
    send(&mut io, at, Stage::Tls, &Starttls.to_string()).await?;
    expect(&mut io, at, Stage::Tls).await?;
    if !io.buffer().is_empty() {
        return Err(injected(at));
    }
    Ok(io.into_inner().into_inner())
}

/// The refusal when the server (or something on the path) sent more after its `220` to
/// STARTTLS: `temporary`, since a retry on a clean path may well succeed.
fn injected(at: &str) -> SendError {
    temporary(format!(
        "{at} sent data after its 220 to STARTTLS and before the TLS handshake (the server, or \
         something on the path, injected it); the connection was dropped before the handshake, \
         and no credentials or mail were sent"
    ))
}

async fn send<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    at: &str,
    stage: Stage,
    command: &str,
) -> Result<(), SendError> {
    let stream = io.get_mut();
    let written = async {
        stream.write_all(command.as_bytes()).await?;
        stream.flush().await
    };
    written.await.map_err(|e| io_error(stage, at, &e))
}

/// The next reply, which must be positive.
async fn expect<R: AsyncBufRead + Unpin>(
    io: &mut R,
    at: &str,
    stage: Stage,
) -> Result<Response, SendError> {
    let reply = read_reply(io).await.map_err(|e| io_error(stage, at, &e))?;
    let reply: Response = match std::str::from_utf8(&reply) {
        Ok(text) => text.parse().map_err(|e| {
            classify(
                stage,
                at,
                &ErrorFacts {
                    text: super::error_chain(&e),
                    ..ErrorFacts::default()
                },
            )
        })?,
        Err(_) => {
            return Err(temporary(format!(
                "failed {} {at}: the server's reply is not UTF-8",
                stage.doing()
            )));
        }
    };
    if reply.is_positive() {
        return Ok(reply);
    }
    let code: u16 = reply.code().to_string().parse().unwrap_or(0);
    let lines: Vec<&str> = reply.message().collect();
    let severity = if (400..500).contains(&code) {
        "transient"
    } else {
        "permanent"
    };
    Err(classify(
        stage,
        at,
        &ErrorFacts {
            code: Some(code),
            text: format!("{severity} error ({code}): {}", lines.join(" ")),
            ..ErrorFacts::default()
        },
    ))
}

/// One whole reply's bytes: lines up to one whose 4th byte is not `-`. The cap below the
/// buffer bounds how much this can hold.
async fn read_reply<R: AsyncBufRead + Unpin>(io: &mut R) -> std::io::Result<Vec<u8>> {
    let mut reply = Vec::new();
    loop {
        let start = reply.len();
        io.read_until(b'\n', &mut reply).await?;
        if !reply.ends_with(b"\n") {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection in the middle of a reply",
            ));
        }
        if reply.get(start + 3) != Some(&b'-') {
            return Ok(reply);
        }
    }
}

fn io_error(stage: Stage, at: &str, e: &std::io::Error) -> SendError {
    if let Some(overrun) = ReplyTooLong::find(e) {
        return super::overrun(stage, at, overrun);
    }
    classify(
        stage,
        at,
        &ErrorFacts {
            timeout: e.kind() == std::io::ErrorKind::TimedOut,
            text: format!("network error: {e}"),
            ..ErrorFacts::default()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback server that runs `script` on its one connection: reads a line, writes what
    /// the script says, until the script is done.
    async fn server(script: Vec<(&'static str, &'static [u8])>) -> (SocketAddr, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut io = BufReader::new(stream);
            for (expect, answer) in script {
                if !expect.is_empty() {
                    let mut line = String::new();
                    io.read_line(&mut line).await.unwrap();
                    assert!(line.starts_with(expect), "{line:?}");
                }
                io.get_mut().write_all(answer).await.unwrap();
            }
            // Hold the connection open until the client is done.
            let mut rest = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut io, &mut rest).await;
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        (addr, tcp)
    }

    const EHLO: &[u8] = b"250-mx\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n";

    #[tokio::test]
    async fn data_after_the_220_to_starttls_is_refused_before_the_handshake() {
        let (addr, tcp) = server(vec![
            ("", b"220 mx\r\n"),
            ("EHLO", EHLO),
            ("STARTTLS", b"220 Ready\r\n250 fake\r\n"),
        ])
        .await;
        let e = starttls(tcp, addr, "mx:587", &ClientId::default())
            .await
            .unwrap_err();
        assert!(
            matches!(&e, SendError::Temporary(t) if t.reason.contains("before the TLS handshake")),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_clean_220_to_starttls_hands_back_the_connection() {
        let (addr, tcp) = server(vec![
            ("", b"220 mx\r\n"),
            ("EHLO", EHLO),
            ("STARTTLS", b"220 Ready\r\n"),
        ])
        .await;
        starttls(tcp, addr, "mx:587", &ClientId::default())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn an_endless_ehlo_reply_is_cut_before_starttls() {
        static ENDLESS: OnceLock<Vec<u8>> = OnceLock::new();
        let endless = ENDLESS.get_or_init(|| b"250-x\r\n".repeat(MAX_LINES));
        const MAX_LINES: usize = super::super::reader::MAX_REPLY_BYTES / 7 + 1;
        let (addr, tcp) = server(vec![("", b"220 mx\r\n"), ("EHLO", endless)]).await;
        let e = starttls(tcp, addr, "mx:587", &ClientId::default())
            .await
            .unwrap_err();
        assert!(
            matches!(&e, SendError::Temporary(t) if t.reason.contains("reply exceeded 65536 bytes")),
            "{e:?}"
        );
    }
}
