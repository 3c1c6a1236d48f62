//! A running `scan2x-mail serve` for the tests: started on a port it picks, its token read from
//! the data folder, spoken to over plain HTTP/1.1 by a few lines of client; killed if a test
//! ends without stopping it.

use std::io::{BufRead as _, Read as _, Write as _};
use std::net::TcpStream;
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::smtp_server::{SmtpServer, SmtpServerOptions};
use super::{PASSWORD, PASSWORD_ENV, Scan2xMail, SmtpSender, USER};

/// How long `serve` may take to say its address (the first start compiles the plugin).
pub const START: Duration = Duration::from_secs(90);
/// How long a posted email may take to be delivered, or `serve` to stop.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A running `scan2x-mail serve`, its address and token; killed if a test ends without
/// stopping it.
pub struct Served {
    pub child: Option<Child>,
    pub port: u16,
    pub token: String,
    pub stderr: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Served {
    pub fn start(mail: &Scan2xMail, data: &std::path::Path, extra: &[&str]) -> Served {
        let mut args: Vec<String> = vec![
            "--data-dir".into(),
            data.to_string_lossy().into_owned(),
            "serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut child = mail.spawn(&args);
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut served = Served {
            child: Some(child),
            port: 0,
            token: String::new(),
            stderr: rx,
            seen: Vec::new(),
        };
        let deadline = Instant::now() + START;
        while served.port == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match served.stderr.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("listening on http://") {
                        served.port = addr.rsplit(':').next().unwrap().parse().unwrap();
                    }
                    served.seen.push(line);
                }
                Err(_) => panic!(
                    "serve did not say its address within {START:?}: {}",
                    served.seen.join("\n")
                ),
            }
        }
        served.token = std::fs::read_to_string(data.join("api-token"))
            .unwrap()
            .trim()
            .to_string();
        served
    }

    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// One request with the token.
    pub fn call(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let bearer = self.bearer();
        http(
            self.port,
            method,
            path,
            &[("Authorization", &bearer)],
            body.as_bytes(),
        )
    }

    pub fn post(&self, body: &Value, key: Option<&str>) -> (u16, Value) {
        let bearer = self.bearer();
        let mut headers = vec![("Authorization", bearer.as_str())];
        if let Some(key) = key {
            headers.push(("Idempotency-Key", key));
        }
        http(
            self.port,
            "POST",
            "/v1/messages",
            &headers,
            body.to_string().as_bytes(),
        )
    }

    pub fn list(&self) -> Vec<Value> {
        let (status, list) = self.call("GET", "/v1/messages", "");
        assert_eq!(status, 200, "{list}");
        list.as_array().unwrap().clone()
    }

    pub fn assert_up(&self) {
        let (status, health) = http(self.port, "GET", "/healthz", &[], b"");
        assert_eq!((status, &health), (200, &json!({"ok": true})));
    }

    /// SIGTERM, then its exit code and the rest of its stderr, within [`DEADLINE`].
    pub fn stop(&mut self) -> (i32, String) {
        let mut child = self.child.take().unwrap();
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&child),
            rustix::process::Signal::TERM,
        )
        .unwrap();
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("serve did not stop within {DEADLINE:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        self.seen.extend(self.stderr.try_iter());
        let said = format!("{}\n{stdout}", self.seen.join("\n"));
        (status.code().expect("exited, not killed"), said)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port` (`Connection: close`); the status and the body as
/// JSON (null when empty).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Value) {
    let (status, body) = http_text(port, method, path, headers, body);
    let body = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
    };
    (status, body)
}

/// [`http`], the body as text. The body is JSON unless `headers` give a Content-Type.
pub fn http_text(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    {
        head += "Content-Type: application/json\r\n";
    }
    for (name, value) in headers {
        head += &format!("{name}: {value}\r\n");
    }
    head += "\r\n";
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    // A server that answers before taking the whole body (413) may stop reading: the answer is
    // still there to read.
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = stream.write_all(&request);
        })
    };
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let _ = writer.join();
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response to {method} {path}: {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_string())
}

impl Served {
    /// Waits until email `id` is `delivered`, within [`DEADLINE`]; its `GET /v1/messages/{id}`.
    pub fn wait_delivered(&self, id: &str) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let (status, show) = self.call("GET", &format!("/v1/messages/{id}"), "");
            assert_eq!(status, 200, "{show}");
            if show["state"] == "delivered" {
                return show;
            }
            assert!(
                Instant::now() < deadline,
                "not delivered within {DEADLINE:?}: {show}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for a line of stderr that contains `needle`; all of stderr so far if none comes.
    pub fn wait_said(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("serve did not say {needle:?}: {}", self.seen.join("\n")),
            }
        }
    }

    pub fn hang_up(&self) {
        let child = self.child.as_ref().unwrap();
        rustix::process::kill_process(
            rustix::process::Pid::from_child(child),
            rustix::process::Signal::HUP,
        )
        .unwrap();
    }
}

/// The project's SMTP test server (STARTTLS, a login) and a `scan2x-mail` whose one sender,
/// `relay`, delivers to it, `extra` lines added to its table; none when the server cannot start
/// here (the test has said it skipped).
pub fn relay(test: &str, extra: &str) -> Option<(SmtpServer, Scan2xMail)> {
    let server = SmtpServer::start_or_skip(
        test,
        SmtpServerOptions::new().starttls().user(USER, PASSWORD),
    )?;
    let settings = SmtpSender::new(server.starttls_port())
        .named("relay")
        .ca_file(&server.ca_file())
        .toml();
    let mail = Scan2xMail::new(&format!("{settings}{extra}"))
        .env(PASSWORD_ENV, PASSWORD)
        .credentials(USER, PASSWORD);
    Some((server, mail))
}

/// The outcomes of an email's attempts, in order, from its `GET /v1/messages/{id}`.
pub fn outcomes(show: &Value) -> Vec<&str> {
    show["attempts"]
        .as_array()
        .unwrap_or_else(|| panic!("no attempts: {show}"))
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect()
}
