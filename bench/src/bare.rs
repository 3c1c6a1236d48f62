//! The bare-lettre sides the plugin is compared with: one `AsyncSmtpTransport` (as a lettre
//! program would build it), a transport per send, and lettre's `AsyncSmtpConnection` over a TCP
//! connection the harness opens itself, as the host's `smtp` capability connects.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use lettre::address::Envelope as LettreEnvelope;
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, Certificate, CertificateStore, Tls, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::message::{FROM, TO};

/// The benchmark's envelope: [`FROM`] to [`TO`].
pub fn envelope() -> Result<LettreEnvelope> {
    Ok(LettreEnvelope::new(Some(FROM.parse()?), vec![TO.parse()?])?)
}

/// One bare-lettre side of the comparison.
#[derive(Clone)]
pub enum Bare {
    /// (b) One `AsyncSmtpTransport` for every send, as a lettre program would build it (lettre's
    /// pool feature is off, so still a new connection per send). With STARTTLS its one rustls
    /// `ClientConfig` resumes TLS 1.3 sessions.
    Transport(Arc<AsyncSmtpTransport<Tokio1Executor>>),
    /// (b′) A transport built for every send, so TLS parameters per connection (no resumption).
    FreshTransport(Arc<FreshTls>),
    /// (c) lettre's `AsyncSmtpConnection` over a TCP connection opened here ([`ByHand`]).
    ByHand(Arc<ByHand>),
}

impl Bare {
    pub async fn send(&self, envelope: &LettreEnvelope, raw: &[u8]) -> Result<()> {
        match self {
            Bare::Transport(transport) => {
                transport.send_raw(envelope, raw).await?;
            }
            Bare::FreshTransport(fresh) => {
                fresh.transport()?.send_raw(envelope, raw).await?;
            }
            Bare::ByHand(hand) => hand.send(envelope, raw).await?,
        }
        Ok(())
    }
}

/// The same sends with bare lettre: the message composed once, a new connection per send.
pub async fn run_lettre(
    bare: &Bare,
    raw: &Arc<Vec<u8>>,
    sends: usize,
    tasks: usize,
) -> Result<Duration> {
    let envelope = envelope()?;
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (bare, raw, envelope) = (bare.clone(), raw.clone(), envelope.clone());
        let mine = sends / tasks + usize::from(t < sends % tasks);
        handles.push(tokio::spawn(async move {
            for _ in 0..mine {
                bare.send(&envelope, &raw).await.context("lettre send")?;
            }
            anyhow::Ok(())
        }));
    }
    for h in handles {
        h.await??;
    }
    Ok(started.elapsed())
}

/// Roots read once, for TLS parameters built per connection (as the host builds them).
pub struct FreshTls {
    port: u16,
    roots: Vec<Certificate>,
}

impl FreshTls {
    pub fn new(port: u16, ca: Option<&str>) -> Result<FreshTls> {
        let mut roots = Vec::new();
        for der in rustls_native_certs::load_native_certs().certs {
            roots.push(Certificate::from_der(der.to_vec())?);
        }
        if let Some(ca) = ca {
            roots.push(Certificate::from_pem(&std::fs::read(ca)?)?);
        }
        Ok(FreshTls { port, roots })
    }

    /// New TLS parameters: a new rustls `ClientConfig`, with an empty session cache.
    pub fn parameters(&self) -> Result<TlsParameters> {
        let mut tls =
            TlsParameters::builder("127.0.0.1".into()).certificate_store(CertificateStore::None);
        for cert in &self.roots {
            tls = tls.add_root_certificate(cert.clone());
        }
        Ok(tls.build_rustls()?)
    }

    pub fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>> {
        Ok(
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
                .port(self.port)
                .tls(Tls::Required(self.parameters()?))
                .build(),
        )
    }
}

/// The TLS of a connection opened by hand.
pub enum HandTls {
    None,
    /// STARTTLS with one `TlsParameters` (one rustls `ClientConfig`) for every connection.
    Shared(TlsParameters),
    /// STARTTLS with TLS parameters built for every connection.
    PerConnection(FreshTls),
}

/// When a connection opened by hand sets `TCP_NODELAY`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nodelay {
    Never,
    /// Before the server's greeting.
    FromStart,
    /// After STARTTLS and the EHLO that follows it (after the first EHLO without TLS): what
    /// the host does.
    AfterHandshake,
}

impl Nodelay {
    pub fn describe(self, starttls: bool) -> &'static str {
        match self {
            Nodelay::Never => "never",
            Nodelay::FromStart => "from the first byte",
            Nodelay::AfterHandshake if starttls => "after STARTTLS + EHLO",
            Nodelay::AfterHandshake => "after EHLO",
        }
    }
}

/// Bare lettre over a TCP connection it opens itself (`connect_with_transport`), as the host's
/// `smtp` capability does.
pub struct ByHand {
    pub port: u16,
    pub tls: HandTls,
    pub nodelay: Nodelay,
}

impl ByHand {
    /// No TLS, `TCP_NODELAY` after EHLO: as the host connects to a plaintext server.
    pub fn plain(port: u16) -> ByHand {
        ByHand {
            port,
            tls: HandTls::None,
            nodelay: Nodelay::AfterHandshake,
        }
    }

    pub async fn send(&self, envelope: &LettreEnvelope, raw: &[u8]) -> Result<()> {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await?
            .into_std()?;
        // A second handle on the socket: lettre owns the stream once it has it.
        let socket = stream.try_clone()?;
        socket.set_nodelay(self.nodelay == Nodelay::FromStart)?;
        let stream = tokio::net::TcpStream::from_std(stream)?;
        let hello = ClientId::default();
        let mut conn =
            AsyncSmtpConnection::connect_with_transport(Box::new(stream), &hello).await?;
        let tls = match &self.tls {
            HandTls::None => None,
            HandTls::Shared(tls) => Some(tls.clone()),
            HandTls::PerConnection(fresh) => Some(fresh.parameters()?),
        };
        if let Some(tls) = tls {
            conn.starttls(tls, &hello).await?;
        }
        if self.nodelay == Nodelay::AfterHandshake {
            socket.set_nodelay(true)?;
        }
        drop(socket);
        conn.send(envelope, raw).await?;
        conn.quit().await?;
        Ok(())
    }
}
