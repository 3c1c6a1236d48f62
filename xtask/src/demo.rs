//! `cargo xtask demo`: the main job, end to end, with nothing installed by hand — a scanned
//! PDF goes out through the built-in SMTP plugin to a real (loopback) mail server over
//! STARTTLS, and the demo shows what arrived; then the service keeps its promise: a scan
//! submitted while the mail server is down leaves once it is back, with its attempts.
//!
//! Steps: wasm target and test Python → `cargo build -p scan2x-mail` → a throw-away CA and
//! server certificate → the project's SMTP test server → a settings file (STARTTLS, the demo
//! CA, password from the environment) → `plugins`, `check`, `test`, `send` → what the server
//! received. Then the service: the mail server is stopped → `serve` on a free loopback port
//! (what it says shown as `serve | …`) → the scan posted to `POST /v1/messages` → its first
//! attempt, temporary (`GET /v1/messages/{id}`: queued, the next attempt 5 minutes on) → the
//! mail server started again on its port → `POST /v1/messages/{id}/retry` (`postqueue -i`)
//! → delivered, both attempts, and the server's copy with the Message-ID given at submit →
//! SIGTERM, and `serve` exits 0.
//!
//! Everything lives in one temp folder that is kept for inspection. The demo never talks to
//! anything but 127.0.0.1, never prints the password or the API token (it says where the token
//! is), and always stops its servers and `serve`, also when a step fails.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::certs::CertFiles;
use crate::smtp_server::SmtpServer;
use crate::{certs, process, python, toolchain};

const USER: &str = "scanner";
const PASSWORD: &str = "demo-password";
const PASSWORD_ENV: &str = "SMTP_PASSWORD";
/// How long `serve` may take to say its address (the plugin is compiled and cached by then).
const SERVE_START: Duration = Duration::from_secs(90);
/// How long an attempt may take to be recorded, an API call to be answered, or `serve` to stop
/// after SIGTERM.
const DEADLINE: Duration = Duration::from_secs(30);

pub fn run() -> Result<()> {
    step("Prepare: wasm32-wasip2 target and the test Python (aiosmtpd)");
    toolchain::ensure_wasm_target()?;
    let python = python::ensure_test_python()?;

    step("Build scan2x-mail (its build script builds and embeds the SMTP plugin)");
    process::run(process::cargo().args(["build", "-p", "scan2x-mail"]))?;
    let binary = process::target_dir()
        .join("debug")
        .join(format!("scan2x-mail{}", std::env::consts::EXE_SUFFIX));

    let dir = std::env::temp_dir().join(format!("scan2x-mail-demo-{}", std::process::id()));
    fs::create_dir_all(&dir)?;

    step("Start a mail server on 127.0.0.1 (STARTTLS required, AUTH required)");
    let certs = certs::write(&dir.join("tls"))?;
    let server = SmtpServer::start(&python, &dir.join("server"), &certs, USER, PASSWORD)?;
    let smtp_port = server.starttls_port;
    println!(
        "listening on 127.0.0.1:{smtp_port}, trusting {}",
        certs.ca.display()
    );

    let settings = dir.join("scan2x-mail.toml");
    fs::write(
        &settings,
        format!(
            "# The demo's one sender: the built-in SMTP plugin, STARTTLS, a private CA.\n\
             [senders.office]\n\
             plugin = \"smtp\"\n\
             host = \"127.0.0.1\"\n\
             port = {smtp_port}\n\
             enable_ssl = true\n\
             username = \"{USER}\"\n\
             password = {{ env = \"{PASSWORD_ENV}\" }}\n\
             email_address = \"scanner@example.test\"\n\
             ca_file = {ca}\n",
            ca = toml_string(&certs.ca.display().to_string()),
        ),
    )?;
    step(&format!("Settings file {}", settings.display()));
    print!("{}", fs::read_to_string(&settings)?);

    // The scans folder is the one folder the service may read attachments from.
    let scans = dir.join("scans");
    fs::create_dir_all(&scans)?;
    let scan = scans.join("scan.pdf");
    fs::write(&scan, demo_pdf())?;

    let mail = Scan2xMail {
        binary,
        settings,
        cache_dir: dir.join("cache"),
    };
    step(&format!(
        "Run scan2x-mail ({PASSWORD_ENV} is set in its environment)"
    ));
    mail.run(&["plugins"])?;
    mail.run(&["check"])?;
    mail.run(&["test"])?;
    let scan = scan.display().to_string();
    mail.run(&[
        "send",
        "--event",
        "job-output",
        "--to",
        "Front Desk <desk@example.test>",
        "--subject",
        "Your scan is ready",
        "--text",
        "Your scanned document is attached.",
        "--attach",
        &scan,
        "--json",
    ])?;

    step("What the mail server received");
    show_received(&python, &server.dir)?;

    step("The service: the mail server goes down");
    drop(server);
    println!("nothing listens on 127.0.0.1:{smtp_port} now");

    let down = MailServer {
        python: &python,
        certs: &certs,
        port: smtp_port,
    };
    service(&mail, &dir, &scans, &scan, &down)?;
    println!("\nDemo files are kept in {}", dir.display());
    Ok(())
}

/// The mail server the service part stops and starts again, on the port the settings name.
struct MailServer<'a> {
    python: &'a Path,
    certs: &'a CertFiles,
    port: u16,
}

/// The service part: `serve`, a scan posted while the mail server is down, its first attempt
/// temporary, the server back, a retry asked for, the email delivered, SIGTERM.
fn service(
    mail: &Scan2xMail,
    dir: &Path,
    scans: &Path,
    scan: &str,
    smtp: &MailServer<'_>,
) -> Result<()> {
    step("Start the service: the outbox's delivery worker and the local HTTP API");
    let data = dir.join("data");
    let scans = scans.display().to_string();
    let mut serve = Serve::start(mail, &data, &scans)?;
    println!(
        "the API is at http://127.0.0.1:{}; the demo reads its token from {} and never \
         prints it",
        serve.port,
        data.join("api-token").display()
    );

    step("Submit the scan through the API while the mail server is down");
    let email = json!({
        "event": "job-output",
        "to": ["Front Desk <desk@example.test>"],
        "subject": "Your scan is ready (queued while the mail server was down)",
        "text": "Your scanned document is attached.",
        "attachments": [scan],
    });
    let (status, submitted) = serve.call("POST", "/v1/messages", Some(&email))?;
    if status != 201 {
        bail!("POST /v1/messages answered {status}: {submitted}");
    }
    let id = text(&submitted, "id")?.to_string();
    let message_id = text(&submitted, "message_id")?.to_string();
    println!("queued: id {id}, Message-ID <{message_id}>");

    step("The first attempt: the worker tried at once, and the failure is temporary");
    let path = format!("/v1/messages/{id}");
    let first = serve.wait_for(&path, "its first attempt", |show| {
        show["attempts"].as_array().is_some_and(|a| !a.is_empty()) && show["state"] != "sending"
    })?;
    show_state(&first)?;
    let attempts = first["attempts"].as_array().map_or(0, Vec::len);
    if first["state"] != "queued" || attempts != 1 || first["attempts"][0]["outcome"] != "temporary"
    {
        bail!("expected queued after one temporary attempt: {first}");
    }

    step("The mail server is back, on the same port");
    let server = SmtpServer::start_on(
        smtp.python,
        &dir.join("server-again"),
        smtp.certs,
        USER,
        PASSWORD,
        smtp.port,
    )?;
    println!("listening on 127.0.0.1:{}", server.starttls_port);

    step("Try again now (as Postfix's postqueue -i ID)");
    println!(
        "Left alone, the worker would try again when the backoff ends: 5 minutes after the \
         first attempt,\nthen doubling up to an hour, for 5 days. The administrator does not \
         have to wait:"
    );
    let (status, retried) = serve.call("POST", &format!("{path}/retry"), None)?;
    if status != 200 {
        bail!("POST {path}/retry answered {status}: {retried}");
    }
    let delivered = serve.wait_for(&path, "its delivery", |show| {
        matches!(show["state"].as_str(), Some("delivered" | "failed"))
    })?;
    show_state(&delivered)?;
    if delivered["state"] != "delivered" {
        bail!("expected delivered after the retry: {delivered}");
    }

    step("What the mail server received this time");
    show_received(smtp.python, &server.dir)?;
    let received = received_message_id(&server.dir)?;
    println!("\nMessage-ID at submit:  <{message_id}>\nMessage-ID received:   {received}");
    if received != format!("<{message_id}>") {
        bail!("the server received another Message-ID than the one fixed at submit");
    }
    println!("the same email: the Message-ID was fixed at submit and kept for every attempt");

    step("Stop the service: SIGTERM");
    let code = serve.stop()?;
    println!("serve exited with code {code}");
    if code != 0 {
        bail!("serve exited with code {code} after SIGTERM, not 0");
    }
    drop(server);
    Ok(())
}

struct Scan2xMail {
    binary: PathBuf,
    settings: PathBuf,
    cache_dir: PathBuf,
}

impl Scan2xMail {
    /// The binary with the demo's settings, cache and password.
    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .arg("--config")
            .arg(&self.settings)
            .arg("--cache-dir")
            .arg(&self.cache_dir)
            .env(PASSWORD_ENV, PASSWORD);
        command
    }

    fn run(&self, args: &[&str]) -> Result<()> {
        println!();
        let mut command = self.command();
        command.args(args);
        let code = process::run_status(&mut command)?;
        if code != 0 {
            bail!("scan2x-mail {} failed with exit code {code}", args[0]);
        }
        Ok(())
    }
}

/// A running `scan2x-mail serve`: what it says on stderr and stdout printed as `serve | …` as
/// it comes, its address, its token (never printed). Killed by pid when dropped without
/// [`Serve::stop`].
struct Serve {
    child: Option<Child>,
    printers: Vec<JoinHandle<()>>,
    port: u16,
    token: String,
}

impl Serve {
    fn start(mail: &Scan2xMail, data: &Path, attachments_from: &str) -> Result<Serve> {
        let mut command = mail.command();
        command
            .arg("--data-dir")
            .arg(data)
            .args(["serve", "--listen", "127.0.0.1:0", "--attachments-from"])
            .arg(attachments_from);
        println!("$ {}", process::shown(&command));
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("could not start scan2x-mail serve")?;
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        let printers = vec![
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    println!("serve | {line}");
                }
            }),
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    println!("serve | {line}");
                    let _ = tx.send(line);
                }
            }),
        ];
        let mut serve = Serve {
            child: Some(child),
            printers,
            port: 0,
            token: String::new(),
        };
        let deadline = Instant::now() + SERVE_START;
        while serve.port == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(address) = line.strip_prefix("listening on http://") {
                        serve.port = address
                            .rsplit(':')
                            .next()
                            .and_then(|p| p.trim().parse().ok())
                            .with_context(|| format!("no port in {line:?}"))?;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("serve did not say \"listening on http://…\" within {SERVE_START:?}")
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("serve exited before it listened (see its errors above)")
                }
            }
        }
        // It says where its token is right after its address: shown before the demo goes on.
        let said_by = Instant::now() + Duration::from_secs(2);
        while let Ok(line) = rx.recv_timeout(said_by.saturating_duration_since(Instant::now())) {
            if line.contains("api-token") {
                break;
            }
        }
        let token_file = data.join("api-token");
        serve.token = fs::read_to_string(&token_file)
            .with_context(|| format!("read the API token from {}", token_file.display()))?
            .trim()
            .to_string();
        Ok(serve)
    }

    /// One API call, printed (the token as where it is); the status and the JSON answer.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
        println!("\n> {method} {path}\n> Authorization: Bearer <the token in data/api-token>");
        if let Some(body) = body {
            println!("> Content-Type: application/json\n>");
            for line in serde_json::to_string_pretty(body)?.lines() {
                println!("> {line}");
            }
        }
        let (status, answer) = self.request(method, path, body)?;
        println!("< {status}");
        for line in serde_json::to_string_pretty(&answer)?.lines() {
            println!("< {line}");
        }
        Ok((status, answer))
    }

    /// Polls `GET path` quietly until `done` says yes, within [`DEADLINE`]; prints the call once.
    fn wait_for(&self, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Result<Value> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let (status, show) = self.request("GET", path, None)?;
            if status != 200 {
                bail!("GET {path} answered {status}: {show}");
            }
            if done(&show) {
                println!(
                    "\n> GET {path}  (asked every 100 ms until {what} was recorded)\n< {status}"
                );
                return Ok(show);
            }
            if Instant::now() > deadline {
                bail!("{what} was not recorded within {DEADLINE:?}: {show}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let bearer = format!("Bearer {}", self.token);
        let (status, text) = http(self.port, method, path, &bearer, &body)
            .with_context(|| format!("{method} {path}"))?;
        let answer = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .with_context(|| format!("{method} {path} answered {status}, not JSON: {text}"))?
        };
        Ok((status, answer))
    }

    /// SIGTERM, then the exit code within [`DEADLINE`], once its last words are printed. If it
    /// does not stop, the error says so and dropping the handle kills it.
    fn stop(&mut self) -> Result<i32> {
        let child = self.child.as_mut().expect("stopped once");
        process::run(
            Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string()),
        )?;
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                bail!("serve did not stop within {DEADLINE:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.child = None;
        for printer in self.printers.drain(..) {
            let _ = printer.join();
        }
        status
            .code()
            .with_context(|| format!("serve was killed: {status}"))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        // This one process, by pid; wait() reaps it.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            println!("(serve stopped)");
        }
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port` with the bearer token (`Connection: close`); the
/// status and the body. The service answers with a Content-Length, never chunked.
fn http(port: u16, method: &str, path: &str, bearer: &str, body: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(DEADLINE))?;
    stream.set_write_timeout(Some(DEADLINE))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Authorization: {bearer}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("no HTTP answer: {response:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    Ok((status, body.to_string()))
}

/// The fields of a `queue show` answer that tell its story: state, attempts, next attempt.
fn show_state(show: &Value) -> Result<()> {
    let state = text(show, "state")?;
    let now = unix_ms(SystemTime::now());
    println!("  state: {state}");
    for attempt in show["attempts"].as_array().into_iter().flatten() {
        println!(
            "  attempt {} at {} via {}: {} — {}",
            attempt["number"],
            utc_time(attempt["at"].as_i64().unwrap_or(0)),
            text(attempt, "sender")?,
            text(attempt, "outcome")?,
            text(attempt, "detail")?,
        );
    }
    if state == "queued" {
        let next = show["next_attempt_at"].as_i64().unwrap_or(0);
        println!(
            "  next attempt at {} (in {} s)",
            utc_time(next),
            (next - now).max(0) / 1000
        );
    }
    Ok(())
}

/// The string field `name` of `value`, or an error that shows `value`.
fn text<'a>(value: &'a Value, name: &str) -> Result<&'a str> {
    value[name]
        .as_str()
        .with_context(|| format!("no string {name:?} in {value}"))
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Milliseconds since the Unix epoch as the time of day, `HH:MM:SS UTC`.
fn utc_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000).rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The Message-ID header of the one message the server in `server_dir` received.
fn received_message_id(server_dir: &Path) -> Result<String> {
    let eml = server_dir.join("received").join("0001.eml");
    let raw = fs::read_to_string(&eml).with_context(|| format!("read {}", eml.display()))?;
    let head = raw.split("\r\n\r\n").next().unwrap_or_default();
    head.lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("message-id")
                .then(|| value.trim().to_string())
        })
        .with_context(|| format!("no Message-ID header in {}", eml.display()))
}

/// `value` as a TOML basic string.
fn toml_string(value: &str) -> String {
    let escaped: String = value
        .chars()
        .map(|c| match c {
            '"' => "\\\"".to_string(),
            '\\' => "\\\\".to_string(),
            c if c.is_control() => format!("\\u{:04X}", c as u32),
            c => c.to_string(),
        })
        .collect();
    format!("\"{escaped}\"")
}

fn step(title: &str) {
    println!("\n=== {title}");
}

/// Python's `email` package decodes MIME (encoded words, RFC 2231 file names) in a few lines,
/// and the demo already has a Python: it summarizes what the server stored.
const SHOW_RECEIVED: &str = r#"
import email, email.policy, json, pathlib, sys
folder = pathlib.Path(sys.argv[1])
for meta_path in sorted((folder / "received").glob("*.json")):
    meta = json.loads(meta_path.read_text())
    raw = meta_path.with_suffix(".eml").read_bytes()
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    print(f"message {meta_path.stem} ({len(raw)} bytes) on port {meta['port']}, logged in as {meta['auth_user']}")
    print(f"  envelope: MAIL FROM:<{meta['mail_from']}>  RCPT TO:" + ", ".join(f"<{r}>" for r in meta["rcpt_tos"]))
    print("  headers:")
    for name, value in msg.items():
        print(f"    {name}: {value}")
    body = msg.get_body(("plain",))
    if body is not None:
        print("  text: " + body.get_content().strip().replace("\n", "\n        "))
    for part in msg.iter_attachments():
        print(f"  attachment: {part.get_filename()} ({part.get_content_type()}, {len(part.get_payload(decode=True))} bytes)")
print("what the server heard (AUTH data hidden):")
for line in (folder / "commands.log").read_text().splitlines():
    c = json.loads(line)
    print(f"  conn {c['conn']} {'tls  ' if c['tls'] else 'clear'} {c['line']}")
"#;

fn show_received(python: &Path, server_dir: &Path) -> Result<()> {
    let status = Command::new(python)
        .args(["-c", SHOW_RECEIVED])
        .arg(server_dir)
        .status()?;
    if !status.success() {
        bail!("could not read what the server received ({status})");
    }
    Ok(())
}

/// A small valid one-page PDF: the "scan".
fn demo_pdf() -> Vec<u8> {
    let content = "BT /F1 24 Tf 72 720 Td (scan2x-mail demo scan) Tj ET";
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R \
         /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_string(),
        format!(
            "<< /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        ),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_string(),
    ];
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", i + 1).as_bytes());
    }
    let xref = pdf.len();
    // Each cross-reference entry is exactly 20 bytes, as the format requires.
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        pdf.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

#[cfg(test)]
mod tests {
    use super::{demo_pdf, received_message_id, utc_time};

    #[test]
    fn utc_time_is_the_time_of_day_of_epoch_milliseconds() {
        assert_eq!(utc_time(0), "00:00:00 UTC");
        assert_eq!(utc_time(86_399_999), "23:59:59 UTC");
        // 2026-12-06 21:13:33.250 UTC
        assert_eq!(utc_time(1_796_591_613_250), "21:13:33 UTC");
        assert_eq!(utc_time(-1), "23:59:59 UTC");
    }

    #[test]
    fn the_message_id_received_is_read_from_the_header_only() {
        let dir = tempfile::tempdir().unwrap();
        let received = dir.path().join("received");
        std::fs::create_dir_all(&received).unwrap();
        std::fs::write(
            received.join("0001.eml"),
            "From: a@example.test\r\nMessage-Id:  <one@example.test>\r\n\r\n\
             Message-ID: <in-the-body@example.test>\r\n",
        )
        .unwrap();
        assert_eq!(
            received_message_id(dir.path()).unwrap(),
            "<one@example.test>"
        );

        std::fs::write(
            received.join("0001.eml"),
            "From: a@example.test\r\n\r\nMessage-ID: <in-the-body@example.test>\r\n",
        )
        .unwrap();
        let error = received_message_id(dir.path()).unwrap_err().to_string();
        assert!(error.contains("no Message-ID header in"), "{error}");
        assert!(error.contains("0001.eml"), "{error}");
    }

    #[test]
    fn demo_pdf_cross_references_point_at_their_objects() {
        let pdf = demo_pdf();
        let text = String::from_utf8(pdf.clone()).unwrap();
        let xref_at: usize = text
            .rsplit("startxref\n")
            .next()
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(text[xref_at..].starts_with("xref\n"));
        let entries: Vec<&str> = text[xref_at..].lines().skip(3).take(5).collect();
        for (i, entry) in entries.iter().enumerate() {
            assert_eq!(entry.len() + 1, 20, "entry {entry:?}");
            let offset: usize = entry[..10].parse().unwrap();
            assert!(text[offset..].starts_with(&format!("{} 0 obj", i + 1)));
        }
    }
}
