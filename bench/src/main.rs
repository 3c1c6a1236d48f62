//! The benchmark harness `cargo xtask bench` runs (a plain binary, not criterion: whole sends
//! against a real server and whole processes are timed, which criterion's sampling model does
//! not fit, and nothing here may fail on a slow machine). Each subcommand measures one part of
//! the cost of the plugin design, prints a Markdown section and appends it to `--out FILE`:
//!
//! | subcommand | measures |
//! |---|---|
//! | `throughput` | N sends through the SMTP plugin (`Runtime::send`, in process) against the same sends with bare lettre, sequential and concurrent |
//! | `tcp` | bare lettre only, over connections it opens itself: when `TCP_NODELAY` is set, and whether one rustls `ClientConfig` (TLS 1.3 resumption) is shared (not run by `cargo xtask bench`) |
//! | `overhead` | a fresh `Store` + instance + `send` with the `smtp` capability stubbed (µs), and 1/10/30 MB attachments through the plugin against composing natively |
//! | `startup` | `scan2x-mail plugins` with an empty and with a warm precompiled cache |
//! | `large` | peak RSS and time of the release binary sending a 30 MB scan through a sender |
//! | `graph-upload` | the Graph plugin's 30 MB send (release binary, and in process) against a raw upload of the same bytes to the same server with reqwest: the same requests, the same range size |
//!
//! Every figure is the median of several rounds; the rounds alternate the sides compared so that
//! noise from other work on the machine falls on each.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use lettre::address::Envelope as LettreEnvelope;
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, Certificate, CertificateStore, Tls, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use scan2x_mail::message::{Attachment, Email};
use scan2x_mail::runtime::{Limits, Runtime, Sender};
use scan2x_mail::settings::{PluginRef, RawValue, SecretSource, SenderSettings, Settings};
use scan2x_mail::wit::types::{EventKind, Mailbox};

const USAGE: &str = "\
usage: scan2x-mail-bench <SUBCOMMAND> [OPTIONS] --out FILE

  throughput --port P [--starttls --ca FILE] [--sends N] [--concurrency N] [--rounds N] [--label TEXT] [--only a|c]
  tcp        --port P [--starttls --ca FILE] [--sends N] [--concurrency N] [--rounds N]
  overhead   [--calls N]
  startup    --binary PATH [--runs N]
  large      --binary PATH --config FILE --sender NAME [--label TEXT] [--size-mb N] [--runs N]
  graph-upload --binary PATH --config FILE --sender NAME [--size-mb N] [--runs N]
";

const FROM: &str = "scanner@example.test";
const TO: &str = "user@example.test";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(sub) = args.first().cloned() else {
        bail!("{USAGE}");
    };
    let opts = Opts(args[1..].to_vec());
    let out = PathBuf::from(opts.get("--out").context("--out FILE is required")?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let section = match sub.as_str() {
        "throughput" => rt.block_on(throughput(&opts))?,
        "tcp" => rt.block_on(tcp(&opts))?,
        "overhead" => rt.block_on(overhead(&opts))?,
        "startup" => startup(&opts)?,
        "large" => large(&opts)?,
        "graph-upload" => rt.block_on(graph_upload(&opts))?,
        _ => bail!("unknown subcommand {sub}\n{USAGE}"),
    };
    print!("{section}");
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out)
        .with_context(|| format!("open {}", out.display()))?;
    file.write_all(section.as_bytes())?;
    Ok(())
}

struct Opts(Vec<String>);

impl Opts {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.0.get(i + 1))
            .map(String::as_str)
    }
    fn flag(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }
    fn num(&self, name: &str, default: usize) -> Result<usize> {
        self.get(name)
            .map_or(Ok(default), |v| v.parse().context(name.to_string()))
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

// --- the message ------------------------------------------------------------------------------

/// A small "scanned" PDF: a valid header and trailer around incompressible page data.
fn pdf(size: usize) -> Vec<u8> {
    let head = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\nstream\n";
    let tail = b"\nendstream\n%%EOF\n";
    let mut bytes = head.to_vec();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    while bytes.len() + tail.len() < size {
        // xorshift: cheap bytes that neither compress nor repeat.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(size - tail.len());
    bytes.extend_from_slice(tail);
    bytes
}

/// The benchmark's email: a text body and one PDF; `pdf_bytes` = 28 KB makes a ≈50 KB message.
fn message(n: usize, pdf_bytes: usize) -> Email {
    let text: String = "Your scan is attached. Scanned on Copier 3, 300 dpi, colour.\n".repeat(160);
    Email {
        event: EventKind::JobOutput,
        message_id: format!("bench-{n}@scan2x-mail"),
        from: None,
        to: vec![Mailbox {
            name: Some("Scanner User".into()),
            address: TO.into(),
        }],
        cc: vec![],
        bcc: vec![],
        reply_to: vec![],
        subject: format!("Scan {n} from Copier 3"),
        text_body: Some(text),
        html_body: None,
        attachments: vec![Attachment {
            filename: "scan.pdf".into(),
            content_type: "application/pdf".into(),
            content: pdf(pdf_bytes).into(),
        }],
    }
}

/// The same email composed natively with lettre's builder (what the plugins compose with):
/// the bare-lettre side's bytes, and the cost any sender pays for MIME whatever its design.
fn compose_natively(m: &Email) -> Result<Vec<u8>> {
    use lettre::message::header::ContentType;
    use lettre::message::{Attachment as Part, MultiPart, SinglePart};
    let mut builder = lettre::Message::builder()
        .from(FROM.parse()?)
        .subject(m.subject.clone())
        .message_id(Some(format!("<{}>", m.message_id)));
    for to in &m.to {
        builder = builder.to(lettre::message::Mailbox::new(
            to.name.clone(),
            to.address.parse()?,
        ));
    }
    let mut parts =
        MultiPart::mixed().singlepart(SinglePart::plain(m.text_body.clone().unwrap_or_default()));
    for a in &m.attachments {
        parts = parts.singlepart(
            Part::new(a.filename.clone())
                .body(a.content.to_vec(), ContentType::parse(&a.content_type)?),
        );
    }
    Ok(builder.multipart(parts)?.formatted())
}

// --- the plugin path --------------------------------------------------------------------------

/// A runtime with a private cache and one SMTP sender, made as the binary makes it.
async fn smtp_sender(dir: &Path, toml: &str) -> Result<(Arc<Runtime>, Arc<Sender>)> {
    let path = dir.join("settings.toml");
    std::fs::write(&path, toml)?;
    let settings = Settings::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let runtime = Runtime::new(Some(dir.join("cache")), Limits::default())?;
    let plugin = runtime
        .load(&PluginRef::Builtin("smtp".into()), None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let sender = runtime
        .sender(&settings.senders[0], Arc::new(plugin))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((Arc::new(runtime), Arc::new(sender)))
}

fn smtp_toml(port: u16, starttls: bool, ca: Option<&str>) -> String {
    let mut toml = format!(
        "[senders.bench]\nplugin = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\n\
         enable_ssl = {starttls}\nemail_address = \"{FROM}\"\n"
    );
    if let Some(ca) = ca {
        toml.push_str(&format!("ca_file = {ca:?}\n"));
    }
    toml
}

fn temp_dir(name: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("scan2x-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// `sends` sends spread over `tasks` tokio tasks; the wall time.
async fn run_plugin(
    runtime: &Arc<Runtime>,
    sender: &Arc<Sender>,
    sends: usize,
    tasks: usize,
    pdf_bytes: usize,
) -> Result<Duration> {
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (runtime, sender) = (runtime.clone(), sender.clone());
        let mine = sends / tasks + usize::from(t < sends % tasks);
        handles.push(tokio::spawn(async move {
            let message = message(t, pdf_bytes);
            for _ in 0..mine {
                runtime
                    .send(&sender, &message)
                    .await
                    .map_err(|e| anyhow::anyhow!("plugin send: {e}"))?;
            }
            anyhow::Ok(())
        }));
    }
    for h in handles {
        h.await??;
    }
    Ok(started.elapsed())
}

/// One bare-lettre side of the comparison.
#[derive(Clone)]
enum Bare {
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
    async fn send(&self, envelope: &LettreEnvelope, raw: &[u8]) -> Result<()> {
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
async fn run_lettre(
    bare: &Bare,
    raw: &Arc<Vec<u8>>,
    sends: usize,
    tasks: usize,
) -> Result<Duration> {
    let envelope = LettreEnvelope::new(Some(FROM.parse()?), vec![TO.parse()?])?;
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
struct FreshTls {
    port: u16,
    roots: Vec<Certificate>,
}

impl FreshTls {
    fn new(port: u16, ca: Option<&str>) -> Result<FreshTls> {
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
    fn parameters(&self) -> Result<TlsParameters> {
        let mut tls =
            TlsParameters::builder("127.0.0.1".into()).certificate_store(CertificateStore::None);
        for cert in &self.roots {
            tls = tls.add_root_certificate(cert.clone());
        }
        Ok(tls.build_rustls()?)
    }

    fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>> {
        Ok(
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
                .port(self.port)
                .tls(Tls::Required(self.parameters()?))
                .build(),
        )
    }
}

/// The TLS of a connection opened by hand.
enum HandTls {
    None,
    /// STARTTLS with one `TlsParameters` (one rustls `ClientConfig`) for every connection.
    Shared(TlsParameters),
    /// STARTTLS with TLS parameters built for every connection.
    PerConnection(FreshTls),
}

/// When a connection opened by hand sets `TCP_NODELAY`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Nodelay {
    Never,
    /// Before the server's greeting.
    FromStart,
    /// After STARTTLS and the EHLO that follows it (after the first EHLO without TLS): what
    /// the host does.
    AfterHandshake,
}

impl Nodelay {
    fn describe(self, starttls: bool) -> &'static str {
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
struct ByHand {
    port: u16,
    tls: HandTls,
    nodelay: Nodelay,
}

impl ByHand {
    async fn send(&self, envelope: &LettreEnvelope, raw: &[u8]) -> Result<()> {
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

async fn throughput(opts: &Opts) -> Result<String> {
    let port: u16 = opts.get("--port").context("--port")?.parse()?;
    let starttls = opts.flag("--starttls");
    let ca = opts.get("--ca");
    let sends = opts.num("--sends", 1000)?;
    let concurrency = opts.num("--concurrency", 8)?;
    let rounds = opts.num("--rounds", 3)?;
    let label = opts.get("--label").unwrap_or("local SMTP server");
    let pdf_bytes = 28 * 1024;

    let dir = temp_dir("throughput")?;
    let (runtime, sender) = smtp_sender(&dir, &smtp_toml(port, starttls, ca)).await?;
    let raw = Arc::new(compose_natively(&message(0, pdf_bytes))?);
    let mut builder =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1").port(port);
    if starttls {
        let mut tls = TlsParameters::builder("127.0.0.1".into());
        if let Some(ca) = ca {
            tls = tls.add_root_certificate(Certificate::from_pem(&std::fs::read(ca)?)?);
        }
        builder = builder.tls(Tls::Required(tls.build_rustls()?));
    }
    // (b), (b′) with STARTTLS only, and (c).
    let mut sides = vec![Bare::Transport(Arc::new(builder.build()))];
    if starttls {
        sides.push(Bare::FreshTransport(Arc::new(FreshTls::new(port, ca)?)));
    }
    sides.push(Bare::ByHand(Arc::new(ByHand {
        port,
        tls: if starttls {
            HandTls::PerConnection(FreshTls::new(port, ca)?)
        } else {
            HandTls::None
        },
        nodelay: Nodelay::AfterHandshake,
    })));

    // Warm-up: connections, the plugin's first instance, the server's processes.
    run_plugin(&runtime, &sender, 20, 1, pdf_bytes).await?;
    run_lettre(&sides[0], &raw, 20, 1).await?;

    // One side alone, sequentially, for a profiler (`perf record` of the whole process).
    if let Some(only) = opts.get("--only") {
        let elapsed = match only {
            "a" => run_plugin(&runtime, &sender, sends, 1, pdf_bytes).await?,
            "c" => run_lettre(&sides[sides.len() - 1], &raw, sends, 1).await?,
            _ => bail!("--only takes a (the plugin) or c (bare lettre as the host connects)"),
        };
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(format!(
            "\n{sends} sequential sends, side ({only}) only: {:.3} ms a send\n",
            elapsed.as_secs_f64() * 1e3 / sends as f64
        ));
    }

    let mut rows = String::new();
    for tasks in [1, concurrency] {
        let mut a = Vec::new();
        let mut b = vec![Vec::new(); sides.len()];
        for _ in 0..rounds {
            a.push(
                run_plugin(&runtime, &sender, sends, tasks, pdf_bytes)
                    .await?
                    .as_secs_f64(),
            );
            for (side, times) in sides.iter().zip(&mut b) {
                times.push(run_lettre(side, &raw, sends, tasks).await?.as_secs_f64());
            }
        }
        let a = median(a);
        let mode = if tasks == 1 {
            "sequential".to_string()
        } else {
            format!("{tasks} concurrent")
        };
        rows.push_str(&format!(
            "| {mode} | {a:.2} s ({:.0}/s) |",
            sends as f64 / a
        ));
        for times in b {
            let b = median(times);
            rows.push_str(&format!(
                " {b:.2} s ({:.0}/s) | **{:.3}** |",
                sends as f64 / b,
                a / b
            ));
        }
        rows.push('\n');
    }
    let _ = std::fs::remove_dir_all(&dir);
    let (head, rule, note) = if starttls {
        (
            "(b) bare lettre | a/b | (b′) bare lettre, TLS set up per connection | a/b′ | \
             (c) bare lettre, connected as the host connects | a/c |",
            "---|---|---|---|---|---|",
            " (b) is one `AsyncSmtpTransport` and so shares one rustls `ClientConfig` across \
             connections: it resumes TLS 1.3 sessions, and every resumed handshake waits ≈41 ms \
             for a delayed ACK (see the `tcp` subcommand); (b′) builds a transport, and so the \
             TLS parameters, for every send, from roots read once. (c) is what the host does: \
             `AsyncSmtpConnection` over a TCP connection it opens itself, TLS parameters per \
             connection, `TCP_NODELAY` set after STARTTLS and its EHLO.",
        )
    } else {
        (
            "(b) bare lettre | a/b | (c) bare lettre, connected as the host connects | a/c |",
            "---|---|---|---|",
            " (b) is one `AsyncSmtpTransport`, as a lettre program would build it; (c) is what \
             the host does: `AsyncSmtpConnection` over a TCP connection it opens itself, \
             `TCP_NODELAY` set after EHLO.",
        )
    };
    Ok(format!(
        "\n### 1. Throughput: {sends} sends of a {} KB message ({} KB PDF), {label}{}\n\n\
         | sends | (a) SMTP plugin, `Runtime::send` | {head}\n|---|---|{rule}\n{rows}\n\
         Median of {rounds} rounds, the sides alternating; a new connection per send on every \
         side.{note}\n",
        raw.len() / 1024,
        pdf_bytes / 1024,
        if starttls { ", STARTTLS" } else { ", no TLS" },
    ))
}

/// Bare lettre over connections opened by hand, for each way of setting `TCP_NODELAY` and, with
/// STARTTLS, with TLS parameters per connection and shared: what a delayed ACK costs where.
async fn tcp(opts: &Opts) -> Result<String> {
    let port: u16 = opts.get("--port").context("--port")?.parse()?;
    let starttls = opts.flag("--starttls");
    let ca = opts.get("--ca");
    let sends = opts.num("--sends", 200)?;
    let concurrency = opts.num("--concurrency", 1)?;
    let rounds = opts.num("--rounds", 3)?;
    let raw = Arc::new(compose_natively(&message(0, 28 * 1024))?);
    let nodelays = [Nodelay::Never, Nodelay::FromStart, Nodelay::AfterHandshake];
    let mut sides = Vec::new();
    for nodelay in nodelays {
        if starttls {
            let fresh = FreshTls::new(port, ca)?;
            let shared = HandTls::Shared(fresh.parameters()?);
            for (tls, what) in [
                (HandTls::PerConnection(fresh), "per connection"),
                (shared, "shared (TLS 1.3 resumption)"),
            ] {
                sides.push((what, nodelay, ByHand { port, tls, nodelay }));
            }
        } else {
            let tls = HandTls::None;
            sides.push(("none", nodelay, ByHand { port, tls, nodelay }));
        }
    }
    let sides: Vec<_> = sides
        .into_iter()
        .map(|(what, nodelay, hand)| (what, nodelay, Bare::ByHand(Arc::new(hand))))
        .collect();
    for (_, _, side) in &sides {
        run_lettre(side, &raw, 20, 1).await?;
    }
    let mut times = vec![Vec::new(); sides.len()];
    for _ in 0..rounds {
        for ((_, _, side), times) in sides.iter().zip(&mut times) {
            let elapsed = run_lettre(side, &raw, sends, concurrency).await?;
            times.push(elapsed.as_secs_f64() * 1e3 / sends as f64);
        }
    }
    let mut rows = String::new();
    for ((what, nodelay, _), times) in sides.iter().zip(times) {
        rows.push_str(&format!(
            "| {what} | {} | {:.2} ms |\n",
            nodelay.describe(starttls),
            median(times)
        ));
    }
    Ok(format!(
        "\n### TCP_NODELAY and TLS sharing: {sends} sends of a {} KB message, bare lettre, {}\n\n\
         | TLS parameters | `TCP_NODELAY` | wall time per send |\n|---|---|---|\n{rows}\n\
         Median of {rounds} rounds, the variants alternating; {concurrency} send(s) at a time; \
         `AsyncSmtpConnection` over a TCP connection opened by the harness.\n",
        raw.len() / 1024,
        if starttls { "STARTTLS" } else { "no TLS" },
    ))
}

// --- the plugin path without the network ------------------------------------------------------

async fn overhead(opts: &Opts) -> Result<String> {
    let calls = opts.num("--calls", 2000)?;
    let dir = temp_dir("overhead")?;
    // The port is never connected to: the capability is stubbed after the gate.
    let (runtime, sender) = smtp_sender(&dir, &smtp_toml(2525, false, None)).await?;
    let mut sender = Arc::into_inner(sender).context("one owner")?;
    Arc::get_mut(&mut sender.context)
        .context("the sender's context is not shared yet")?
        .smtp_stub = true;
    let sender = Arc::new(sender);

    let mut rows = String::new();
    for (what, m) in [
        ("text only, no attachment", {
            let mut m = message(0, 1024);
            m.attachments.clear();
            m.text_body = Some("Your scan is attached.".into());
            m
        }),
        ("50 KB message (28 KB PDF)", message(0, 28 * 1024)),
    ] {
        for _ in 0..200 {
            runtime
                .send(&sender, &m)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let mut samples = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            for _ in 0..calls / 5 {
                runtime
                    .send(&sender, &m)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            samples.push(started.elapsed().as_secs_f64() * 1e6 / (calls / 5) as f64);
        }
        let native = time_native(&m, 200)?;
        rows.push_str(&format!(
            "| {what} | {:.1} µs | {:.1} µs | {:.1} µs |\n",
            median(samples.clone()),
            native,
            median(samples) - native
        ));
    }
    let mut big = String::new();
    for mb in [1usize, 10, 30] {
        let m = message(0, mb * 1_000_000);
        runtime
            .send(&sender, &m)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut samples = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            runtime
                .send(&sender, &m)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            samples.push(started.elapsed().as_secs_f64() * 1e3);
        }
        let plugin = median(samples);
        let native = time_native(&m, 5)? / 1e3;
        big.push_str(&format!(
            "| {mb} MB | {plugin:.1} ms | {native:.1} ms | {:.2} |\n",
            plugin / native
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(format!(
        "\n### 2. The plugin path without the network (`smtp` stubbed at the WIT boundary)\n\n\
         | message | fresh Store + instance + `send`, warm | composing natively | the plugin design's share |\n\
         |---|---|---|---|\n{rows}\n\
         Median of 5 batches of {} calls after 200 warm-up calls. \"Composing natively\" is the \
         same email built with lettre's builder in the host process: what any sender has to do.\n\n\
         | attachment | through the plugin (stubbed send) | composing natively | plugin / native |\n|---|---|---|---|\n{big}\n\
         Median of 5 sends. Through the plugin, the attachment never enters the guest: it goes \
         in as a `blob` handle, comes back as a `message-part`, and the host base64-encodes it \
         in 1 MiB pieces as the stubbed send writes them (and drops them). Composing natively \
         builds the whole formatted message with lettre, as a sender without plugins would.\n",
        calls / 5
    ))
}

/// µs per native compose of `m`, median of `n`.
fn time_native(m: &Email, n: usize) -> Result<f64> {
    let mut samples = Vec::new();
    for _ in 0..n {
        let started = Instant::now();
        let composed = compose_natively(m)?;
        samples.push(started.elapsed().as_secs_f64() * 1e6);
        drop(composed);
    }
    Ok(median(samples))
}

// --- whole processes --------------------------------------------------------------------------

fn startup(opts: &Opts) -> Result<String> {
    let binary = opts.get("--binary").context("--binary")?;
    let runs = opts.num("--runs", 11)?;
    let dir = temp_dir("startup")?;
    // No settings file: `plugins` lists the built-in plugins only.
    let run = |cache: &Path| -> Result<f64> {
        let started = Instant::now();
        let out = Command::new(binary)
            .arg("--cache-dir")
            .arg(cache)
            .arg("plugins")
            .current_dir(&dir)
            .env_remove("SCAN2X_MAIL_CONFIG")
            .output()?;
        let elapsed = started.elapsed().as_secs_f64() * 1e3;
        if !out.status.success() {
            bail!(
                "{binary} plugins failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(elapsed)
    };
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    let warm_cache = dir.join("warm");
    run(&warm_cache)?;
    for i in 0..runs {
        let cold_cache = dir.join(format!("cold-{i}"));
        cold.push(run(&cold_cache)?);
        warm.push(run(&warm_cache)?);
    }
    let n = Runtime::builtin_ids().count();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(format!(
        "\n### 3. Start-up: `scan2x-mail plugins` (loads all {n} built-in plugins), release build\n\n\
         | precompiled cache | median of {runs} runs |\n|---|---|\n\
         | cold (empty `--cache-dir`: Cranelift compiles every plugin) | {:.1} ms |\n\
         | warm | {:.1} ms |\n",
        median(cold),
        median(warm)
    ))
}

fn large(opts: &Opts) -> Result<String> {
    let binary = opts.get("--binary").context("--binary")?;
    let config = opts.get("--config").context("--config")?;
    let sender = opts.get("--sender").context("--sender")?;
    let label = opts.get("--label").unwrap_or(sender);
    let size_mb = opts.num("--size-mb", 30)?;
    let runs = opts.num("--runs", 3)?;
    let dir = temp_dir("large")?;
    let scan = dir.join("scan.pdf");
    std::fs::write(&scan, pdf(size_mb * 1_000_000))?;
    let cache = dir.join("cache");
    let (mut times, mut peaks) = (Vec::new(), Vec::new());
    for i in 0..=runs {
        let (elapsed, stderr) =
            send_scan(binary, config, sender, &cache, &scan).with_context(|| label.to_string())?;
        let peak: f64 = stderr
            .lines()
            .find_map(|l| l.split("peak resident memory: ").nth(1))
            .and_then(|v| v.trim().trim_end_matches("MiB").trim().parse().ok())
            .context("no \"peak resident memory\" line at -vv")?;
        if i > 0 {
            // The first run fills the precompiled cache.
            times.push(elapsed);
            peaks.push(peak);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let payload = size_mb as f64 * 1e6 / f64::from(1 << 20);
    let peak = median(peaks);
    Ok(format!(
        "| {label} | {size_mb} MB ({payload:.1} MiB) | {peak:.0} MiB | {:.1}× | {:.2} s |\n",
        peak / payload,
        median(times)
    ))
}

// --- the Graph upload against a raw upload ----------------------------------------------------

/// The Graph plugin's upload range (`CHUNK_BYTES` in plugins/graph/src/message.rs): 12 × 320 KiB.
const GRAPH_RANGE_BYTES: usize = 12 * 320 * 1024;

/// What the raw upload needs from the Graph sender's settings: the same origins, application
/// and mailbox as the plugin, and the same trust.
struct GraphTarget {
    authority: String,
    graph: String,
    tenant: String,
    client_id: String,
    secret: String,
    mailbox: String,
    tls: rustls::ClientConfig,
}

impl GraphTarget {
    fn new(s: &SenderSettings) -> Result<GraphTarget> {
        let value = |key: &str| -> Result<String> {
            let entry = s
                .entries
                .iter()
                .find(|e| e.key == key)
                .with_context(|| format!("[senders.{}] has no {key}", s.name))?;
            Ok(match &entry.value {
                RawValue::Text(t) => t.clone(),
                RawValue::Secret(SecretSource::Env(name)) => std::env::var(name)?,
                RawValue::Secret(SecretSource::File(path)) => {
                    std::fs::read_to_string(path)?.trim_end().to_string()
                }
                other => bail!("[senders.{}] {key}: {other:?}", s.name),
            })
        };
        // As the host: the system's roots plus the sender's CA, rustls on ring, HTTP/1.1.
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if let Some(ca) = &s.ca_file {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject as _;
            for cert in CertificateDer::pem_slice_iter(&std::fs::read(ca)?) {
                roots.add(cert?)?;
            }
        }
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(GraphTarget {
            authority: value("authority_url")?,
            graph: value("graph_url")?,
            tenant: value("tenant_id")?,
            client_id: value("client_id")?,
            secret: value("client_secret")?,
            mailbox: value("username")?,
            tls,
        })
    }
}

/// A URL path segment or form value, escaped as the Graph plugin escapes path segments.
fn escaped(text: &str) -> String {
    let mut out = String::new();
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whole milliseconds, as the host logs a request's time.
fn whole_ms(d: Duration) -> f64 {
    d.as_millis() as f64 / 1e3
}

/// The status and body of a request, failing on another status than `expected`.
async fn answer(
    request: reqwest::RequestBuilder,
    expected: u16,
    doing: &str,
) -> Result<serde_json::Value> {
    let response = request.send().await.with_context(|| doing.to_string())?;
    let status = response.status().as_u16();
    let body = response.bytes().await?;
    if status != expected {
        bail!(
            "{doing}: {status} {}",
            String::from_utf8_lossy(&body[..body.len().min(500)])
        );
    }
    Ok(serde_json::from_slice(&body).unwrap_or_default())
}

/// The Graph plugin's exchange for one large attachment, done with reqwest directly: read the
/// file, a new client (so new connections and TLS handshakes, as a new process has), a token,
/// the draft, the upload session, the ranged PUTs, `send`. The whole time and the PUTs' (each
/// from its start to its answer read, in whole ms, as the host logs them).
async fn raw_graph_send(t: &GraphTarget, scan: &Path, n: usize) -> Result<(f64, f64)> {
    use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
    let started = Instant::now();
    let content = tokio::fs::read(scan).await?;
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(t.tls.clone())
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .http1_only()
        .build()?;
    let form = format!(
        "client_id={}&scope={}&client_secret={}&grant_type=client_credentials",
        escaped(&t.client_id),
        escaped(&format!("{}/.default", t.graph)),
        escaped(&t.secret)
    );
    let token = answer(
        client
            .post(format!(
                "{}/{}/oauth2/v2.0/token",
                t.authority,
                escaped(&t.tenant)
            ))
            .header("Accept", "application/json")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form),
        200,
        "token",
    )
    .await?;
    let bearer = format!(
        "Bearer {}",
        token["access_token"].as_str().context("no access_token")?
    );
    let user = format!("{}/v1.0/users/{}", t.graph, escaped(&t.mailbox));
    let post = |url: String, json: &serde_json::Value| {
        client
            .post(url)
            .header(AUTHORIZATION, &bearer)
            .header(CONTENT_TYPE, "application/json")
            .body(json.to_string())
    };
    // The draft the plugin makes for `send --to … --subject … --attach …`.
    let draft = serde_json::json!({
        "subject": "A large scan",
        "body": {"contentType": "Text", "content": ""},
        "toRecipients": [{"emailAddress": {"address": TO}}],
        "ccRecipients": [],
        "bccRecipients": [],
        "replyTo": [],
        "internetMessageId": format!("<raw-{n}-{}@scan2x-mail>", std::process::id()),
    });
    let draft = answer(post(format!("{user}/messages"), &draft), 201, "draft").await?;
    let base = format!(
        "{user}/messages/{}",
        escaped(draft["id"].as_str().context("the draft has no id")?)
    );
    let item = serde_json::json!({"AttachmentItem": {
        "attachmentType": "file",
        "name": "scan.pdf",
        "size": content.len(),
        "contentType": "application/pdf",
    }});
    let session = answer(
        post(format!("{base}/attachments/createUploadSession"), &item),
        201,
        "createUploadSession",
    )
    .await?;
    let upload_url = session["uploadUrl"]
        .as_str()
        .context("no uploadUrl")?
        .to_string();
    let (total, mut start, mut puts) = (content.len(), 0, 0.0);
    while start < total {
        let end = (start + GRAPH_RANGE_BYTES).min(total);
        let put = Instant::now();
        answer(
            client
                .put(&upload_url)
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(
                    "Content-Range",
                    format!("bytes {start}-{}/{total}", end - 1),
                )
                .body(content[start..end].to_vec()),
            if end == total { 201 } else { 200 },
            "PUT",
        )
        .await?;
        puts += whole_ms(put.elapsed());
        start = end;
    }
    answer(
        client
            .post(format!("{base}/send"))
            .header(AUTHORIZATION, &bearer)
            .header(CONTENT_LENGTH, "0"),
        202,
        "send",
    )
    .await?;
    Ok((started.elapsed().as_secs_f64(), puts))
}

/// One `-vv send` of `scan` through the release binary: the whole process's time and its log.
fn send_scan(
    binary: &str,
    config: &str,
    sender: &str,
    cache: &Path,
    scan: &Path,
) -> Result<(f64, String)> {
    let started = Instant::now();
    let out = Command::new(binary)
        .args(["-vv", "--config", config, "--cache-dir"])
        .arg(cache)
        .args([
            "send",
            "--sender",
            sender,
            "--to",
            TO,
            "--subject",
            "A large scan",
        ])
        .arg("--attach")
        .arg(scan)
        .output()?;
    let elapsed = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        bail!("send failed: {stderr}");
    }
    Ok((elapsed, stderr))
}

/// The Graph plugin through the release binary, as `large` runs it: the whole time and the sum
/// of the PUTs' times the host logs at `-vv`.
fn binary_graph_send(
    binary: &str,
    config: &str,
    sender: &str,
    cache: &Path,
    scan: &Path,
) -> Result<(f64, f64)> {
    let (elapsed, stderr) = send_scan(binary, config, sender, cache, scan).context("graph")?;
    // "PUT https://… -> 200 (N bytes in M ms)"
    let mut puts = 0.0;
    let mut count = 0;
    for line in stderr.lines().filter(|l| l.contains("PUT ")) {
        if let Some(ms) = line
            .split(" bytes in ")
            .nth(1)
            .and_then(|r| r.split(" ms)").next())
            .and_then(|v| v.trim().parse::<f64>().ok())
        {
            puts += ms / 1e3;
            count += 1;
        }
    }
    if count == 0 {
        bail!("no PUT request times in the binary's -vv log");
    }
    Ok((elapsed, puts))
}

/// The Graph plugin in this process: a fresh runtime and sender (so no kept token and no open
/// connection, as in a new process), the plugin from the precompiled cache; only `send` timed.
async fn in_process_graph_send(settings: &SenderSettings, cache: &Path, m: &Email) -> Result<f64> {
    let runtime = Runtime::new(Some(cache.to_path_buf()), Limits::default())?;
    let plugin = runtime
        .load(&settings.plugin, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let sender = runtime
        .sender(settings, Arc::new(plugin))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let started = Instant::now();
    runtime
        .send(&sender, m)
        .await
        .map_err(|e| anyhow::anyhow!("plugin send: {e}"))?;
    Ok(started.elapsed().as_secs_f64())
}

async fn graph_upload(opts: &Opts) -> Result<String> {
    let binary = opts.get("--binary").context("--binary")?;
    let config = opts.get("--config").context("--config")?;
    let name = opts.get("--sender").context("--sender")?;
    let size_mb = opts.num("--size-mb", 30)?;
    let runs = opts.num("--runs", 3)?;
    let settings = Settings::load(Path::new(config)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let sender = settings
        .sender(name)
        .with_context(|| format!("no sender {name} in {config}"))?;
    let target = GraphTarget::new(sender)?;
    let dir = temp_dir("graph-upload")?;
    let scan = dir.join("scan.pdf");
    let content = pdf(size_mb * 1_000_000);
    std::fs::write(&scan, &content)?;
    let cache = dir.join("cache");
    let message = Email {
        event: EventKind::JobOutput,
        message_id: format!("graph-upload-{}@scan2x-mail", std::process::id()),
        from: None,
        to: vec![Mailbox {
            name: None,
            address: TO.into(),
        }],
        cc: vec![],
        bcc: vec![],
        reply_to: vec![],
        subject: "A large scan".into(),
        text_body: None,
        html_body: None,
        attachments: vec![Attachment {
            filename: "scan.pdf".into(),
            content_type: "application/pdf".into(),
            content: content.into(),
        }],
    };
    let (mut a, mut a_puts, mut a2, mut b, mut b_puts) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Round 0 warms up: it fills the precompiled cache and starts the stand-in's threads.
    for round in 0..=runs {
        let (t, puts) = binary_graph_send(binary, config, name, &cache, &scan)?;
        let t2 = in_process_graph_send(sender, &cache, &message).await?;
        let (raw, raw_puts) = raw_graph_send(&target, &scan, round).await?;
        if round > 0 {
            a.push(t);
            a_puts.push(puts);
            a2.push(t2);
            b.push(raw);
            b_puts.push(raw_puts);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mb = size_mb as f64;
    let (a, a_puts, a2, b, b_puts) = (
        median(a),
        median(a_puts),
        median(a2),
        median(b),
        median(b_puts),
    );
    let ranges = (size_mb * 1_000_000).div_ceil(GRAPH_RANGE_BYTES);
    let plural = if runs == 1 { "" } else { "s" };
    Ok(format!(
        "\n### 4. Graph: the plugin's upload against a raw upload of the same bytes (the stand-in, HTTPS)\n\n\
         | {size_mb} MB attachment | whole send | MB/s | plugin / raw | the {ranges} PUTs alone | MB/s | plugin / raw |\n\
         |---|---|---|---|---|---|---|\n\
         | (a) Graph plugin, release binary (one process per send) | {a:.3} s | {:.0} | **{:.2}** | {a_puts:.3} s | {:.0} | **{:.2}** |\n\
         | (a′) Graph plugin in process (`Runtime::send`) | {a2:.3} s | {:.0} | **{:.2}** | — | — | — |\n\
         | (b) raw: reqwest, the same requests | {b:.3} s | {:.0} | — | {b_puts:.3} s | {:.0} | — |\n\n\
         Median of {runs} round{plural} after a warm-up round, the three sides alternating. Every side does the \
         plugin's exchange for a large attachment on new connections: a token, the draft, \
         `createUploadSession`, {ranges} ranged PUTs of at most {} bytes, `send`. (a) is the \
         whole process (start-up, the precompiled plugin, reading the file); (a′) a fresh runtime \
         and sender in the harness, only `send` timed; (b) reads the file, makes a reqwest client \
         (rustls on ring, HTTP/1.1, as the host's) and does the requests. The PUTs' time is the sum \
         of each PUT's, from its start to its answer read, in whole ms: the host's own log line at \
         `-vv` for (a), the same measure for (b).\n",
        mb / a,
        a / b,
        mb / a_puts,
        a_puts / b_puts,
        mb / a2,
        a2 / b,
        mb / b,
        mb / b_puts,
        GRAPH_RANGE_BYTES,
    ))
}
