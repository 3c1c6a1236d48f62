//! A discard SMTP listener in the harness: plaintext on 127.0.0.1, it greets, answers EHLO/HELO,
//! MAIL, RCPT, RSET, NOOP with 2xx, DATA with 354, reads the message until the final `.` and
//! drops it, answers 250, and closes after QUIT's 221. No AUTH, no checks. Started with
//! [`Sink::start_with`] it may also offer STARTTLS (TLS 1.2/1.3 with rustls, a throw-away CA and a
//! leaf for 127.0.0.1 made at start; like Postfix it sends TLS 1.3 session tickets after a full
//! handshake), and acknowledge every segment at once ([`Options::quick_ack`]); a client that does
//! not ask for STARTTLS stays in plaintext.
//!
//! It is what `overhead` and `per-process` send to, from the plugin path and from bare lettre
//! alike, so that both sides pay the same loopback SMTP dialogue and the difference between them
//! is the plugin design's. It runs on its own thread and tokio runtime, so its work does not
//! queue behind the measured sends' tasks; every reply is one write (flushed) and `TCP_NODELAY`
//! is set, so no reply waits for a delayed ACK (see the `tcp` subcommand).

use std::net::Ipv4Addr;
use std::os::fd::{AsFd as _, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use aho_corasick::AhoCorasick;
use anyhow::{Context, Result};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

/// The end of the message: `CRLF . CRLF` (RFC 5321 §4.1.1.4).
const END_OF_DATA: &[u8] = b"\r\n.\r\n";

/// What the sink has taken in.
#[derive(Default)]
struct Counts {
    /// The size of the last message, as it came over the wire (dot-stuffed, without the final
    /// `.` line).
    last_message_bytes: AtomicU64,
    /// Messages taken in (their final `.` seen and answered).
    messages: AtomicU64,
    /// Of them, those that came over TLS.
    over_tls: AtomicU64,
}

/// The running sink; stopped (and its thread joined) when dropped.
pub struct Sink {
    port: u16,
    counts: Arc<Counts>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    /// Listen on 127.0.0.1 on a free port, plaintext only.
    pub fn start() -> Result<Sink> {
        Ok(Self::start_with(Options::default())?.0)
    }

    /// Listen on 127.0.0.1 on a free port, as `options` say; with STARTTLS, the PEM of the CA a
    /// client must trust.
    pub fn start_with(options: Options) -> Result<(Sink, Option<String>)> {
        let (tls, ca_pem) = match options.starttls {
            true => {
                let (acceptor, ca_pem) = throwaway_tls()?;
                (Some(acceptor), Some(ca_pem))
            }
            false => (None, None),
        };
        let settings = Arc::new(Settings {
            tls,
            quick_ack: options.quick_ack,
        });
        Ok((Self::listen(settings)?, ca_pem))
    }

    fn listen(settings: Arc<Settings>) -> Result<Sink> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("bind the sink to 127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let counts = Arc::new(Counts::default());
        let (stop, stopped) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let finder = Arc::new(AhoCorasick::new([END_OF_DATA])?);
        let thread = std::thread::Builder::new()
            .name("smtp-sink".into())
            .spawn({
                let counts = counts.clone();
                move || runtime.block_on(serve(listener, counts, finder, settings, stopped))
            })?;
        Ok(Sink {
            port,
            counts,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The size of the last message taken in, as sent.
    pub fn last_message_bytes(&self) -> u64 {
        self.counts.last_message_bytes.load(Ordering::Relaxed)
    }

    /// Messages taken in so far, and how many of them over TLS.
    pub fn messages(&self) -> (u64, u64) {
        (
            self.counts.messages.load(Ordering::Relaxed),
            self.counts.over_tls.load(Ordering::Relaxed),
        )
    }
}

/// How the sink behaves beyond plain SMTP.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Offer STARTTLS.
    pub starttls: bool,
    /// Acknowledge each segment at once (`TCP_QUICKACK`, set again before every read), instead of
    /// the kernel's delayed ACK. A client that writes a command in two small writes without
    /// `TCP_NODELAY` (lettre writes the message and its final `.` line so) then never waits for
    /// the sink's delayed ACK (≈40 ms on Linux) before its second write goes out.
    pub quick_ack: bool,
}

/// What every session of one sink shares.
struct Settings {
    tls: Option<TlsAcceptor>,
    quick_ack: bool,
}

/// A rustls acceptor for 127.0.0.1 and the PEM of the CA that signed its certificate (a CA and a
/// leaf: rustls refuses a CA certificate as a server's own).
fn throwaway_tls() -> Result<(TlsAcceptor, String)> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "scan2x-mail bench sink CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca_pem = ca.self_signed(&ca_key)?.pem();
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".into()])?;
    leaf.distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate()?;
    let cert = leaf.signed_by(&key, &issuer)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )?;
    Ok((TlsAcceptor::from(Arc::new(config)), ca_pem))
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    counts: Arc<Counts>,
    finder: Arc<AhoCorasick>,
    settings: Arc<Settings>,
    mut stopped: oneshot::Receiver<()>,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("sink: {e}");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let (counts, finder, settings) =
                        (counts.clone(), finder.clone(), settings.clone());
                    tokio::spawn(async move {
                        if let Err(e) = session(stream, &counts, &finder, &settings).await {
                            eprintln!("sink: {peer}: {e}");
                        }
                    });
                }
                Err(e) => eprintln!("sink: accept: {e}"),
            },
        }
    }
}

/// One SMTP session, until QUIT or the client closes; after STARTTLS, the rest of it over TLS.
async fn session(
    stream: TcpStream,
    counts: &Counts,
    finder: &AhoCorasick,
    settings: &Settings,
) -> Result<()> {
    stream.set_nodelay(true)?;
    let mut conn = Conn {
        counts,
        finder,
        // A second handle on the socket, for its options once TLS owns the stream.
        quick_ack: match settings.quick_ack {
            true => Some(stream.as_fd().try_clone_to_owned()?),
            false => None,
        },
    };
    let mut plain = BufReader::with_capacity(256 * 1024, stream);
    reply(&mut plain, b"220 sink ESMTP\r\n").await?;
    let offer_tls = settings.tls.is_some();
    match conn.dialogue(&mut plain, offer_tls, false).await? {
        Next::Done => Ok(()),
        Next::StartTls => {
            let acceptor = settings.tls.as_ref().context("STARTTLS without TLS")?;
            // Nothing may follow STARTTLS before the handshake (RFC 3207 §4.2).
            anyhow::ensure!(plain.buffer().is_empty(), "data after STARTTLS");
            conn.arm();
            let secured = acceptor.accept(plain.into_inner()).await?;
            let mut secured = BufReader::with_capacity(256 * 1024, secured);
            match conn.dialogue(&mut secured, false, true).await? {
                Next::Done => Ok(()),
                Next::StartTls => anyhow::bail!("STARTTLS twice"),
            }
        }
    }
}

/// One session's state.
struct Conn<'a> {
    counts: &'a Counts,
    finder: &'a AhoCorasick,
    /// The socket, when every segment is to be acknowledged at once.
    quick_ack: Option<OwnedFd>,
}

/// How a dialogue ended.
enum Next {
    Done,
    /// The client asked for STARTTLS and was told to go ahead.
    StartTls,
}

/// One reply, in one write, flushed (through TLS too).
async fn reply<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await?;
    Ok(())
}

impl Conn<'_> {
    /// Quick ACKs for what arrives next: the kernel leaves quickack mode as soon as the sink
    /// answers, so this is set again before every read.
    fn arm(&self) {
        if let Some(fd) = &self.quick_ack {
            let _ = socket2::SockRef::from(fd).set_tcp_quickack(true);
        }
    }

    /// Commands and replies until QUIT, the client's close, or STARTTLS (when `offer_tls`).
    async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        stream: &mut BufReader<S>,
        offer_tls: bool,
        over_tls: bool,
    ) -> Result<Next> {
        let (counts, finder) = (self.counts, self.finder);
        let mut line = Vec::new();
        loop {
            line.clear();
            self.arm();
            if stream.read_until(b'\n', &mut line).await? == 0 {
                return Ok(Next::Done);
            }
            let verb = line
                .split(|b| b.is_ascii_whitespace())
                .next()
                .unwrap_or_default()
                .to_ascii_uppercase();
            let answer: &[u8] = match verb.as_slice() {
                b"EHLO" if offer_tls => {
                    b"250-sink\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 STARTTLS\r\n"
                }
                b"EHLO" => b"250-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
                b"HELO" => b"250 sink\r\n",
                b"STARTTLS" if offer_tls => {
                    reply(stream, b"220 2.0.0 Ready to start TLS\r\n").await?;
                    return Ok(Next::StartTls);
                }
                b"MAIL" => b"250 2.1.0 Ok\r\n",
                b"RCPT" => b"250 2.1.5 Ok\r\n",
                b"RSET" | b"NOOP" => b"250 2.0.0 Ok\r\n",
                b"DATA" => {
                    reply(stream, b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                    let bytes = self.discard_data(stream, finder).await?;
                    counts
                        .last_message_bytes
                        .store(bytes as u64, Ordering::Relaxed);
                    counts.messages.fetch_add(1, Ordering::Relaxed);
                    if over_tls {
                        counts.over_tls.fetch_add(1, Ordering::Relaxed);
                    }
                    b"250 2.0.0 Ok: discarded\r\n"
                }
                b"QUIT" => {
                    reply(stream, b"221 2.0.0 Bye\r\n").await?;
                    return Ok(Next::Done);
                }
                _ => b"502 5.5.2 Command not implemented\r\n",
            };
            reply(stream, answer).await?;
        }
    }

    /// Read and drop the message after DATA's 354, through its final `.` line; the message's
    /// bytes (its last CRLF included, the `.` line not). The CRLF that ended the DATA line counts as the terminator's
    /// first two bytes, so an empty message (a `.` line at once) ends it too.
    async fn discard_data<R: AsyncBufRead + Unpin>(
        &self,
        read: &mut R,
        finder: &AhoCorasick,
    ) -> Result<usize> {
        // The last (at most 4) bytes seen: a terminator may span two reads.
        let mut carry: Vec<u8> = b"\r\n".to_vec();
        let mut taken = 0;
        loop {
            self.arm();
            let buf = read.fill_buf().await?;
            if buf.is_empty() {
                anyhow::bail!("the client closed the connection inside DATA");
            }
            // A terminator that starts in `carry` ends in the first 4 bytes of `buf`.
            let mut joined = carry.clone();
            joined.extend_from_slice(&buf[..buf.len().min(END_OF_DATA.len() - 1)]);
            let end = match finder.find(&joined) {
                Some(m) => Some(m.end() - carry.len()),
                None => finder.find(buf).map(|m| m.end()),
            };
            if let Some(end) = end {
                read.consume(end);
                // The first two bytes of `carry` were never the message's.
                return Ok((taken + end).saturating_sub(END_OF_DATA.len() - 2));
            }
            let n = buf.len();
            carry = if n >= END_OF_DATA.len() - 1 {
                buf[n - (END_OF_DATA.len() - 1)..].to_vec()
            } else {
                let mut c = carry.clone();
                c.extend_from_slice(buf);
                c[c.len().saturating_sub(END_OF_DATA.len() - 1)..].to_vec()
            };
            read.consume(n);
            taken += n;
        }
    }
}
