//! `service`: `scan2x-mail serve` as the product's local queue, side by side with Postfix as
//! one. The same N text emails are handed to each, and each relays them to the same discard
//! Postfix (the relay, plain SMTP):
//!
//! - *scan2x-mail serve* (release binary, its one SMTP sender pointing at the relay, as many
//!   deliveries at once as Postfix's default allows it and no per-minute cap): each email
//!   is a `POST /v1/messages` with the bearer token on a new loopback connection
//!   (`Connection: close`); its submit latency is from the connect to the whole `201` answer.
//!   An email is delivered when the worker prints its `…: now delivered` line on serve's stderr
//!   (read as it comes: nothing is polled); afterwards `GET /metrics` must count N delivered.
//! - *Postfix*: each email is one SMTP transaction on a new connection (greeting, EHLO, MAIL,
//!   RCPT, DATA, the message, QUIT), as a product hands each job's email over: a scanner has
//!   one email at a time to give and keeps no session open between jobs. Its submit latency is
//!   from the connect to the `250` after the message (QUIT comes after the clock stops). An
//!   email is delivered when the queue instance logs its `status=sent` (the relay's 250; its
//!   log is read every 5 ms); afterwards `postqueue -j` must show an empty queue.
//!
//! Both answer only once the email is durable: the outbox commits with `synchronous=FULL`
//! before the 201, Postfix's cleanup fsyncs the queue file before smtpd's 250. Neither side's
//! clock includes composing the request: the HTTP requests and the SMTP messages (composed
//! with lettre's builder, the same subject and text) are made before the first submit.
//! Emails/s is N over the time from the first submit's start to the Nth delivery; the table
//! also says how many were delivered when the last was accepted (whether delivery kept up).
//!
//! Each side first takes a few emails unmeasured (processes forked, caches filled), then the
//! measured ones; one round with a single client submitting one email after the other, then a
//! round with `--concurrency` clients. Every round of the service starts a fresh `serve` with an
//! empty outbox.

use std::future::Future;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::measure::Scratch;
use crate::message::{FROM, TO};

#[derive(clap::Args)]
pub struct Args {
    /// The release `scan2x-mail`.
    #[arg(long, value_name = "PATH")]
    binary: PathBuf,
    /// The relay both sides deliver to: a Postfix on 127.0.0.1 taking every email over plain
    /// SMTP, no login.
    #[arg(long)]
    relay_port: u16,
    /// Postfix as the local queue: its smtpd port on 127.0.0.1 (plain SMTP, no login).
    #[arg(long)]
    postfix_port: u16,
    /// Its config folder (`postqueue -c`).
    #[arg(long, value_name = "DIR")]
    postfix_config: PathBuf,
    /// Its log file (`maillog_file`), where each relayed email is a `status=sent` line.
    #[arg(long, value_name = "FILE")]
    postfix_log: PathBuf,
    /// Emails measured per round and side.
    #[arg(long, default_value_t = 500)]
    emails: usize,
    /// Clients submitting at once in the second round (1: no second round).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// The sender's `max_concurrent`: deliveries to the relay at once. The default is
    /// Postfix's `default_destination_concurrency_limit`, so both sides may open as many.
    #[arg(long, default_value_t = 20)]
    max_concurrent: u32,
}

/// The sender's `max_per_minute`: the most the settings allow, so that no rate limit is
/// measured (the relay is the bench's own; Postfix's queue has none).
const MAX_PER_MINUTE: u32 = 100_000;

/// Emails each side takes before a round's measured ones.
const WARM_UP: usize = 10;

/// How long a round may take to deliver, beyond 0.2 s an email.
const DELIVERY_SLACK: Duration = Duration::from_secs(60);

/// The email's text: a notification of ≈1 KB.
fn text() -> String {
    "Your scan is ready. Scanned on Copier 3, 300 dpi, colour, 4 pages.\n".repeat(15)
}

fn subject(n: usize) -> String {
    format!("Scan {n} from Copier 3")
}

pub fn run(args: &Args) -> Result<String> {
    if args.emails == 0 || args.concurrency == 0 {
        bail!("--emails and --concurrency must be at least 1");
    }
    let dir = Scratch::new("service")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut rounds = vec![1];
    if args.concurrency > 1 {
        rounds.push(args.concurrency);
    }
    let mut rows = Vec::new();
    for (i, &clients) in rounds.iter().enumerate() {
        let folder = dir.join(format!("round-{i}"));
        let serve = service_round(&rt, args, &folder, clients)
            .with_context(|| format!("scan2x-mail serve, {clients} client(s)"))?;
        let postfix = rt
            .block_on(postfix_round(args, clients))
            .with_context(|| format!("Postfix, {clients} client(s)"))?;
        rows.push((clients, serve, postfix));
    }
    Ok(section(args, &rows))
}

/// What one side measured in a round.
struct Round {
    /// Submit latencies, seconds, sorted.
    latencies: Vec<f64>,
    /// From the first submit's start to the last answer.
    accepted: f64,
    /// From the first submit's start to the last delivery.
    delivered: f64,
    /// How many were delivered when the last was accepted: whether delivery kept up.
    kept_up: usize,
}

impl Round {
    /// The round's numbers from its submits' latencies, its first start, its last answer and
    /// the instant of each delivery.
    fn new(
        mut latencies: Vec<f64>,
        started: Instant,
        accepted: Instant,
        deliveries: &[Instant],
    ) -> Round {
        latencies.sort_by(f64::total_cmp);
        let last = deliveries.iter().max().copied().unwrap_or(accepted);
        Round {
            latencies,
            accepted: (accepted - started).as_secs_f64(),
            delivered: (last - started).as_secs_f64(),
            kept_up: deliveries.iter().filter(|&&at| at <= accepted).count(),
        }
    }

    /// The nearest-rank percentile `p` (0–100), in ms.
    fn ms(&self, p: f64) -> f64 {
        let n = self.latencies.len();
        let rank = ((p / 100.0 * n as f64).ceil() as usize).clamp(1, n);
        self.latencies[rank - 1] * 1e3
    }

    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.delivered
    }
}

fn section(args: &Args, rows: &[(usize, Round, Round)]) -> String {
    let mut out = format!(
        "\n### 6. The service as a local queue: `scan2x-mail serve` against Postfix\n\n\
         {} text emails (≈1 KB) per side and round, each on a new loopback connection (HTTP \
         `POST /v1/messages` / one SMTP transaction), each side relaying to the same discard \
         Postfix, at most {} deliveries at once (serve's `max_concurrent`; Postfix's default \
         per destination is 20); both answer only once the email is durable. Submit latency: \
         connect to the 201 / the 250 after DATA. Emails/s: the first submit to the last \
         delivery at the relay; *delivered by then*: how many had reached the relay when the \
         last was accepted. Targets: submit p99 < 10 ms, emails/s ≥ Postfix's.\n\n\
         | clients | side | submit p50 | p99 | max | all accepted | delivered by then | all delivered | emails/s |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        args.emails, args.max_concurrent
    );
    for (clients, serve, postfix) in rows {
        for (name, r) in [("scan2x-mail serve", serve), ("Postfix", postfix)] {
            out += &format!(
                "| {clients} | {name} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} s | {} | {:.2} s | {:.0} |\n",
                r.ms(50.0),
                r.ms(99.0),
                r.ms(100.0),
                r.accepted,
                r.kept_up,
                r.delivered,
                r.rate()
            );
        }
        out += &format!(
            "| {clients} | serve / Postfix | {:.2}× | {:.2}× | {:.2}× | | | | {:.2}× |\n",
            serve.ms(50.0) / postfix.ms(50.0),
            serve.ms(99.0) / postfix.ms(99.0),
            serve.ms(100.0) / postfix.ms(100.0),
            serve.rate() / postfix.rate()
        );
    }
    out += "\n";
    for (clients, serve, postfix) in rows {
        let p99 = serve.ms(99.0);
        let (rate, theirs) = (serve.rate(), postfix.rate());
        out += &format!(
            "- {clients} client(s): submit p99 {p99:.2} ms — {}; {rate:.0} emails/s against \
             Postfix's {theirs:.0} — {}.\n",
            if p99 < 10.0 { "met" } else { "missed" },
            if rate >= theirs {
                "met".to_string()
            } else {
                format!("missed by {:.0}%", (1.0 - rate / theirs) * 100.0)
            }
        );
    }
    out
}

// ---- scan2x-mail serve ----

/// What serve's stderr says, line by line.
enum Said {
    Listening(String),
    Delivered(Instant),
    /// An email not delivered at its attempt (queued again, failed): the round is void.
    NotDelivered(String),
    Closed(Vec<String>),
}

/// A running `scan2x-mail serve`: stopped with SIGTERM (then killed) when dropped.
struct Serve {
    child: Child,
    said: mpsc::Receiver<Said>,
    address: String,
    token: String,
}

impl Serve {
    fn start(args: &Args, folder: &Path) -> Result<Serve> {
        std::fs::create_dir_all(folder)?;
        let settings = folder.join("settings.toml");
        std::fs::write(
            &settings,
            format!(
                "[senders.relay]\nplugin = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\n\
                 enable_ssl = false\nemail_address = \"{FROM}\"\nmax_concurrent = {}\n\
                 max_per_minute = {MAX_PER_MINUTE}\n",
                args.relay_port, args.max_concurrent
            ),
        )?;
        let data = folder.join("data");
        let mut child = Command::new(&args.binary)
            .arg("--config")
            .arg(&settings)
            // One cache for every round: only the first start compiles the plugins.
            .arg("--cache-dir")
            .arg(folder.parent().unwrap_or(folder).join("cache"))
            .arg("--data-dir")
            .arg(&data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {}", args.binary.display()))?;
        let stderr = child.stderr.take().expect("piped");
        let (tx, said) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let now = Instant::now();
                let event = if let Some(address) = line.strip_prefix("listening on http://") {
                    Some(Said::Listening(address.trim().to_string()))
                } else if line.ends_with(": now delivered") {
                    Some(Said::Delivered(now))
                } else if line.contains(": now ") {
                    Some(Said::NotDelivered(line.clone()))
                } else {
                    None
                };
                if let Some(event) = event
                    && tx.send(event).is_err()
                {
                    return;
                }
                if lines.len() < 200 {
                    lines.push(line);
                }
            }
            let _ = tx.send(Said::Closed(lines));
        });
        let mut serve = Serve {
            child,
            said,
            address: String::new(),
            token: String::new(),
        };
        serve.address = match serve.said.recv_timeout(Duration::from_secs(60)) {
            Ok(Said::Listening(address)) => address,
            Ok(Said::Closed(lines)) => {
                bail!("serve exited before listening:\n{}", lines.join("\n"))
            }
            Ok(_) => bail!("serve said something before where it listens"),
            Err(_) => bail!("serve did not say where it listens within 60 s"),
        };
        let token_file = data.join("api-token");
        serve.token = std::fs::read_to_string(&token_file)
            .with_context(|| format!("read the API token {}", token_file.display()))?
            .trim()
            .to_string();
        Ok(serve)
    }

    /// Waits for `n` more deliveries; the instant of each.
    fn delivered(&self, n: usize, deadline: Instant) -> Result<Vec<Instant>> {
        let mut seen = Vec::with_capacity(n);
        for got in 0..n {
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.said.recv_timeout(wait) {
                Ok(Said::Delivered(at)) => seen.push(at),
                Ok(Said::NotDelivered(line)) => bail!("an email was not delivered: {line}"),
                Ok(Said::Closed(lines)) => bail!("serve exited:\n{}", lines.join("\n")),
                Ok(Said::Listening(_)) => bail!("serve said it listens twice"),
                Err(_) => bail!("{got} of {n} emails delivered before the deadline"),
            }
        }
        Ok(seen)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The HTTP request of email `n`, whole.
fn post_request(address: &str, token: &str, n: usize) -> Vec<u8> {
    let body = serde_json::json!({"to": [TO], "subject": subject(n), "text": text()}).to_string();
    format!(
        "POST /v1/messages HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One submit over a new connection: the request, then its answer read whole (headers and
/// `Content-Length` bytes); must be 201.
async fn post(address: &str, request: &[u8]) -> Result<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    stream.write_all(request).await?;
    let mut answer = Vec::with_capacity(512);
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            bail!(
                "the answer ended early: {}",
                String::from_utf8_lossy(&answer)
            );
        }
        answer.extend_from_slice(&buf[..n]);
        if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if answer.len() >= end + 4 + length {
                break;
            }
        }
    }
    let took = started.elapsed();
    if !answer.starts_with(b"HTTP/1.1 201") {
        bail!("submit answered {}", String::from_utf8_lossy(&answer));
    }
    Ok(took)
}

fn service_round(
    rt: &tokio::runtime::Runtime,
    args: &Args,
    folder: &Path,
    clients: usize,
) -> Result<Round> {
    let serve = Serve::start(args, folder)?;
    let requests = |from: usize, n: usize| -> Arc<Vec<Vec<u8>>> {
        Arc::new(
            (from..from + n)
                .map(|i| post_request(&serve.address, &serve.token, i))
                .collect(),
        )
    };
    let submit = |requests: Arc<Vec<Vec<u8>>>, address: Arc<String>| {
        move |i: usize| {
            let (requests, address) = (requests.clone(), address.clone());
            async move { post(&address, &requests[i]).await }
        }
    };
    let address = Arc::new(serve.address.clone());
    let warm = requests(0, WARM_UP);
    rt.block_on(drive(WARM_UP, clients, submit(warm, address.clone())))?;
    serve.delivered(WARM_UP, Instant::now() + DELIVERY_SLACK)?;

    let n = args.emails;
    let measured = requests(WARM_UP, n);
    let (started, accepted, latencies) =
        rt.block_on(drive(n, clients, submit(measured, address)))?;
    let deliveries = serve.delivered(n, deadline(started, n))?;

    let metrics = rt.block_on(get(&serve.address, &serve.token, "/metrics"))?;
    let count = metrics
        .lines()
        .find_map(|l| l.strip_prefix("scan2x_mail_queue_messages{state=\"delivered\"} "))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .context("no delivered gauge in /metrics")?;
    if count != WARM_UP + n {
        bail!(
            "/metrics counts {count} delivered, not {}:\n{metrics}",
            WARM_UP + n
        );
    }
    Ok(Round::new(latencies, started, accepted, &deliveries))
}

/// When a round of `n` emails started at `started` must have delivered them all.
fn deadline(started: Instant, n: usize) -> Instant {
    started + DELIVERY_SLACK + Duration::from_millis(200) * n as u32
}

/// `GET path` with the token: the body (must be 200).
async fn get(address: &str, token: &str, path: &str) -> Result<String> {
    let mut stream = TcpStream::connect(address).await?;
    stream
        .write_all(
            format!(
                "GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
                 Connection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    if !head.starts_with("HTTP/1.1 200") {
        bail!("GET {path} answered {answer}");
    }
    Ok(body.to_string())
}

// ---- Postfix ----

/// The SMTP message of email `n` (lettre's builder, CRLF lines), ended by the `.` line.
fn smtp_message(n: usize) -> Result<Vec<u8>> {
    let message = lettre::Message::builder()
        .from(FROM.parse()?)
        .to(TO.parse()?)
        .subject(subject(n))
        .message_id(Some(format!("<bench-{n}@scan2x-mail>")))
        .header(lettre::message::header::ContentType::TEXT_PLAIN)
        .body(text())?;
    let mut bytes = message.formatted();
    if bytes.windows(3).any(|w| w == b"\n.\r" || w == b"\n..") {
        bail!("the message has a line starting with a dot: it would need dot-stuffing");
    }
    if !bytes.ends_with(b"\r\n") {
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b".\r\n");
    Ok(bytes)
}

/// Reads one SMTP reply (every line of a multi-line one); fails unless its code is `code`.
async fn expect<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    code: &str,
    after: &str,
) -> Result<()> {
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            bail!("the server closed the connection after {after}");
        }
        if !line.starts_with(code) {
            bail!("after {after} the server answered {:?}", line.trim_end());
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(());
        }
    }
}

/// One SMTP transaction on a new connection; the time to the 250 after the message.
async fn smtp_submit(port: u16, message: &[u8]) -> Result<Duration> {
    let started = Instant::now();
    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
    stream.set_nodelay(true)?;
    let (reader, mut writer) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(reader);
    expect(&mut reader, "220", "connecting").await?;
    for (command, code) in [
        ("EHLO bench.example.test\r\n".to_string(), "250"),
        (format!("MAIL FROM:<{FROM}>\r\n"), "250"),
        (format!("RCPT TO:<{TO}>\r\n"), "250"),
        ("DATA\r\n".to_string(), "354"),
    ] {
        writer.write_all(command.as_bytes()).await?;
        expect(&mut reader, code, command.trim_end()).await?;
    }
    writer.write_all(message).await?;
    expect(&mut reader, "250", "the message").await?;
    let took = started.elapsed();
    writer.write_all(b"QUIT\r\n").await?;
    expect(&mut reader, "221", "QUIT").await?;
    Ok(took)
}

/// The queue instance's log from its end now: a thread reads what is added every 5 ms and
/// sends the instant it saw each `status=sent` line (a line of any other status is an error).
struct LogTail {
    said: mpsc::Receiver<Result<Instant, String>>,
    stop: Arc<AtomicBool>,
}

impl LogTail {
    fn start(path: &Path) -> Result<LogTail> {
        let mut file =
            std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
        file.seek(SeekFrom::End(0))?;
        let (tx, said) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            let mut pending = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            while !stopped.load(Ordering::Relaxed) {
                let n = file.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                let now = Instant::now();
                pending.extend_from_slice(&buf[..n]);
                while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                    let line = String::from_utf8_lossy(&pending[..end]).into_owned();
                    pending.drain(..=end);
                    let event = if line.contains(" status=sent ") {
                        Ok(now)
                    } else if line.contains(" status=") {
                        Err(line)
                    } else {
                        continue;
                    };
                    if tx.send(event).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(LogTail { said, stop })
    }

    /// Waits for `n` more deliveries; the instant of each.
    fn delivered(&self, n: usize, deadline: Instant) -> Result<Vec<Instant>> {
        let mut seen = Vec::with_capacity(n);
        for got in 0..n {
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.said.recv_timeout(wait) {
                Ok(Ok(at)) => seen.push(at),
                Ok(Err(line)) => bail!("Postfix did not relay an email: {line}"),
                Err(_) => bail!("{got} of {n} emails relayed before the deadline"),
            }
        }
        Ok(seen)
    }
}

impl Drop for LogTail {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn postfix_round(args: &Args, clients: usize) -> Result<Round> {
    let log = LogTail::start(&args.postfix_log)?;
    let port = args.postfix_port;
    let submit = |messages: Arc<Vec<Vec<u8>>>| {
        move |i: usize| {
            let messages = messages.clone();
            async move { smtp_submit(port, &messages[i]).await }
        }
    };
    let messages = |from: usize, n: usize| -> Result<Arc<Vec<Vec<u8>>>> {
        Ok(Arc::new(
            (from..from + n).map(smtp_message).collect::<Result<_>>()?,
        ))
    };
    drive(WARM_UP, clients, submit(messages(0, WARM_UP)?)).await?;
    log.delivered(WARM_UP, Instant::now() + DELIVERY_SLACK)?;

    let n = args.emails;
    let measured = messages(WARM_UP, n)?;
    let (started, accepted, latencies) = drive(n, clients, submit(measured)).await?;
    let deliveries = log.delivered(n, deadline(started, n))?;

    let queue = Command::new(postqueue())
        .arg("-c")
        .arg(&args.postfix_config)
        .arg("-j")
        .output()
        .context("run postqueue")?;
    if !queue.status.success() || !queue.stdout.is_empty() {
        bail!(
            "the local Postfix's queue is not empty after every email was relayed: {}{}",
            String::from_utf8_lossy(&queue.stdout),
            String::from_utf8_lossy(&queue.stderr)
        );
    }
    Ok(Round::new(latencies, started, accepted, &deliveries))
}

fn postqueue() -> PathBuf {
    ["/usr/sbin/postqueue", "/usr/local/sbin/postqueue"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("postqueue"))
}

// ---- both ----

/// Submits emails `0..n` with `clients` tasks taking the next one in turn, each as `submit(i)`.
/// Returns when the first started, when the last was answered, and every latency (seconds).
async fn drive<F, Fut>(n: usize, clients: usize, submit: F) -> Result<(Instant, Instant, Vec<f64>)>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Duration>> + Send + 'static,
{
    let submit = Arc::new(submit);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients.min(n))
        .map(|_| {
            let (submit, next) = (submit.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return Ok::<_, anyhow::Error>(latencies);
                    }
                    let took = submit(i).await.with_context(|| format!("email {i}"))?;
                    latencies.push(took.as_secs_f64());
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(n);
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok((started, Instant::now(), latencies))
}
