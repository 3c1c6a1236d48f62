//! The project's own SMTP test server (`tests/servers/smtp_server.py`, Python aiosmtpd) run for
//! one test: started on free loopback ports, stopped by pid when dropped, and read back —
//! the messages it accepted (`received/NNNN.eml` + `.json`) and every command line it heard
//! (`commands.log`, with the port and whether the connection was TLS at that moment).
//!
//! Python comes from `SCAN2X_TEST_PYTHON` (set by `cargo xtask test` to a venv that has
//! aiosmtpd), else `python3`. Without aiosmtpd a test is skipped loudly, except under CI
//! (`CI` set), where a skipped test would hide a broken setup: there it panics.
//!
//! The server must never listen anywhere but 127.0.0.1, and a test must never outlive its
//! server: `Drop` kills it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use super::certs::Certs;
use super::ports::free_port;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/servers/smtp_server.py"
);
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Which ports to open and who may log in.
#[derive(Clone, Debug, Default)]
pub struct SmtpServerOptions {
    starttls: bool,
    smtps_port: Option<u16>,
    plain: bool,
    users: Vec<(String, String)>,
}

impl SmtpServerOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// A submission port where STARTTLS is required before AUTH, and AUTH before sending.
    pub fn starttls(mut self) -> Self {
        self.starttls = true;
        self
    }

    /// An implicit-TLS port, on exactly `port` (the SMTP plugin chooses implicit TLS by port).
    pub fn smtps_on(mut self, port: u16) -> Self {
        self.smtps_port = Some(port);
        self
    }

    /// A port with no TLS at all that still offers AUTH, as a careless server would.
    pub fn plain(mut self) -> Self {
        self.plain = true;
        self
    }

    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.to_string(), password.to_string()));
        self
    }
}

/// One command line the server received.
#[derive(Clone, Debug)]
pub struct CommandLine {
    /// Which connection (numbered by the server from 1).
    pub conn: u64,
    pub port: u16,
    /// Whether the connection was encrypted when this line arrived.
    pub tls: bool,
    /// The line as received; AUTH payloads are replaced by `<auth data>`.
    pub line: String,
}

impl CommandLine {
    /// The SMTP verb, upper case (`EHLO`, `AUTH`, `MAIL`, …).
    pub fn verb(&self) -> String {
        self.line
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase()
    }

    /// Whether this line carries or starts sending credentials or mail.
    pub fn is_auth_or_mail(&self) -> bool {
        self.line == "<auth data>"
            || matches!(self.verb().as_str(), "AUTH" | "MAIL" | "RCPT" | "DATA")
    }
}

/// One message the server accepted.
#[derive(Clone, Debug)]
pub struct Received {
    /// The message as received (after SMTP dot-unstuffing).
    pub eml: Vec<u8>,
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// The user that authenticated on the connection, if any.
    pub auth_user: Option<String>,
    /// The server port it came in on.
    pub port: u16,
}

impl Received {
    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(&self.eml)
            .expect("the received message parses as MIME")
    }
}

pub struct SmtpServer {
    child: Child,
    dir: TempDir,
    certs: Certs,
    starttls_port: Option<u16>,
    smtps_port: Option<u16>,
    plain_port: Option<u16>,
}

impl SmtpServer {
    /// Start the server, or — when aiosmtpd is not installed and this is not CI — print
    /// `SKIPPED: <test>: …` and return `None`, so the test can `return` early.
    pub fn start_or_skip(test: &str, options: SmtpServerOptions) -> Option<SmtpServer> {
        if skip_without_aiosmtpd(test) {
            return None;
        }
        Some(Self::start(options).unwrap_or_else(|e| panic!("{test}: {e}")))
    }

    /// Start the server and wait until every port greets; the error holds the server's stderr.
    pub fn start(options: SmtpServerOptions) -> Result<SmtpServer, String> {
        Self::start_with_certs(options, Certs::generate())
    }

    /// [`SmtpServer::start`], presenting the leaf of `certs` on every TLS port (e.g. one a
    /// client must refuse); [`SmtpServer::ca_file`] is then `certs`' CA.
    pub fn start_with_certs(
        options: SmtpServerOptions,
        certs: Certs,
    ) -> Result<SmtpServer, String> {
        let dir = tempfile::Builder::new()
            .prefix("scan2x-smtp-server-")
            .tempdir()
            .map_err(|e| format!("create the server's temp dir: {e}"))?;
        let smtps_port = options.smtps_port;
        let users = options
            .users
            .iter()
            .map(|(user, password)| format!("{user}:{password}"))
            .collect::<Vec<_>>()
            .join(",");
        let stderr_path = dir.path().join("server.stderr");
        // A port found free may be taken by another test before the server binds it: then
        // again, on new ones (the fixed implicit-TLS port is held by its test, `ports::hold`).
        let mut attempt = 0;
        loop {
            attempt += 1;
            let starttls_port = options.starttls.then(free_port);
            let plain_port = options.plain.then(free_port);
            let stderr = fs::File::create(&stderr_path).map_err(|e| e.to_string())?;
            let mut command = Command::new(python());
            command
                .arg(SCRIPT)
                .arg("--dir")
                .arg(dir.path())
                .arg("--cert")
                .arg(certs.cert())
                .arg("--key")
                .arg(certs.key())
                .arg("--users")
                .arg(&users);
            for (flag, port) in [
                ("--starttls-port", starttls_port),
                ("--smtps-port", smtps_port),
                ("--plain-port", plain_port),
            ] {
                if let Some(port) = port {
                    command.arg(flag).arg(port.to_string());
                }
            }
            let mut child = command
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(stderr)
                .spawn()
                .map_err(|e| format!("start {} {SCRIPT}: {e}", python()))?;
            let rx = super::stdout_lines(&mut child);
            let why = loop {
                match rx.recv_timeout(READY_TIMEOUT) {
                    Ok(line) if line.trim() == "READY" => {
                        return Ok(SmtpServer {
                            child,
                            dir,
                            certs,
                            starttls_port,
                            smtps_port,
                            plain_port,
                        });
                    }
                    Ok(_) => continue,
                    Err(mpsc::RecvTimeoutError::Timeout) => break "did not print READY within 20 s",
                    Err(mpsc::RecvTimeoutError::Disconnected) => break "exited before READY",
                }
            };
            let _ = child.kill();
            let _ = child.wait();
            let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
            if !(super::ports::taken(&stderr) && attempt < super::ports::ATTEMPTS) {
                return Err(format!("the SMTP test server {why}; its stderr:\n{stderr}"));
            }
        }
    }

    pub fn starttls_port(&self) -> u16 {
        self.starttls_port
            .expect("server started without a STARTTLS port")
    }

    pub fn smtps_port(&self) -> u16 {
        self.smtps_port
            .expect("server started without an implicit-TLS port")
    }

    pub fn plain_port(&self) -> u16 {
        self.plain_port
            .expect("server started without a plain port")
    }

    /// The CA file a client must trust to reach this server.
    pub fn ca_file(&self) -> PathBuf {
        self.certs.ca()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every message accepted so far, in order.
    pub fn received(&self) -> Vec<Received> {
        let folder = self.dir().join("received");
        let Ok(entries) = fs::read_dir(&folder) else {
            return Vec::new();
        };
        let mut metas: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        metas.sort();
        metas
            .into_iter()
            .map(|meta_path| {
                let meta: Value = serde_json::from_slice(&fs::read(&meta_path).unwrap()).unwrap();
                let strings = |v: &Value| -> Vec<String> {
                    v.as_array()
                        .unwrap()
                        .iter()
                        .map(|s| s.as_str().unwrap().to_string())
                        .collect()
                };
                Received {
                    eml: fs::read(meta_path.with_extension("eml")).unwrap(),
                    mail_from: meta["mail_from"].as_str().unwrap().to_string(),
                    rcpt_tos: strings(&meta["rcpt_tos"]),
                    auth_user: meta["auth_user"].as_str().map(str::to_string),
                    port: meta["port"].as_u64().unwrap() as u16,
                }
            })
            .collect()
    }

    /// The one message accepted so far; panics when there is not exactly one.
    pub fn only_received(&self) -> Received {
        let mut received = self.received();
        assert_eq!(
            received.len(),
            1,
            "expected exactly one message at the server, found {}",
            received.len()
        );
        received.remove(0)
    }

    /// Every command line received so far, on every port.
    pub fn commands(&self) -> Vec<CommandLine> {
        let text = fs::read_to_string(self.dir().join("commands.log")).unwrap_or_default();
        text.lines()
            .map(|line| {
                let v: Value = serde_json::from_str(line).expect("commands.log holds JSON lines");
                CommandLine {
                    conn: v["conn"].as_u64().unwrap(),
                    port: v["port"].as_u64().unwrap() as u16,
                    tls: v["tls"].as_bool().unwrap(),
                    line: v["line"].as_str().unwrap().to_string(),
                }
            })
            .collect()
    }

    /// The command lines received on `port`.
    pub fn commands_on(&self, port: u16) -> Vec<CommandLine> {
        self.commands()
            .into_iter()
            .filter(|c| c.port == port)
            .collect()
    }

    /// The command log as text, for assertion messages.
    pub fn commands_text(&self) -> String {
        self.commands()
            .iter()
            .map(|c| {
                format!(
                    "  conn {} port {} {}: {}\n",
                    c.conn,
                    c.port,
                    if c.tls { "tls  " } else { "clear" },
                    c.line
                )
            })
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        // By pid, this one process only; wait() reaps it so no zombie is left behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True (after saying so loudly) when the test must be skipped because the test Python has no
/// aiosmtpd; under CI a missing aiosmtpd is a broken setup, so it fails instead.
pub fn skip_without_aiosmtpd(test: &str) -> bool {
    let Err(why) = python_with_aiosmtpd() else {
        return false;
    };
    super::say_skipped(
        test,
        &format!(
            "aiosmtpd is not installed; run `cargo xtask test` or `python3 -m pip install aiosmtpd` ({why})"
        ),
    );
    true
}

/// `SCAN2X_TEST_PYTHON`, else `python3`. A relative path is taken from the workspace root, where
/// `cargo test` is typed (tests themselves run in the package directory).
pub fn python() -> String {
    match std::env::var("SCAN2X_TEST_PYTHON") {
        Ok(path) if path.contains('/') && Path::new(&path).is_relative() => {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            root.join(path).to_string_lossy().into_owned()
        }
        Ok(path) => path,
        Err(_) => "python3".to_string(),
    }
}

/// Whether the test Python can import aiosmtpd; asked once per test binary.
fn python_with_aiosmtpd() -> Result<(), String> {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let python = python();
            match Command::new(&python)
                .args(["-c", "import aiosmtpd"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
            {
                Ok(status) if status.success() => Ok(()),
                Ok(_) => Err(format!("`{python} -c 'import aiosmtpd'` failed")),
                Err(e) => Err(format!("`{python}` can't be run: {e}")),
            }
        })
        .clone()
}
