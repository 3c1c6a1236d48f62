//! `tests/servers/hostile_smtp.py`, an SMTP server that misbehaves on purpose in one mode, started
//! and stopped; what it heard and took; senders pointed at it; and how long a send may take.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use super::certs::Certs;
use super::smtp_server::python;
use super::{PASSWORD, PASSWORD_ENV, Scan2xMail, SmtpSender, USER};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/servers/hostile_smtp.py"
);

/// The most an endless reply may write here: far past any cap, and small enough that a host
/// without the cap survives it (it buffers the whole line) on a test machine.
const ENDLESS_LIMIT: u64 = 512 << 20;

/// The environment variable that scales every SMTP bound of the host (RFC 5321's by default).
pub const TIMEOUT_SCALE_ENV: &str = "SCAN2X_MAIL_SMTP_TIMEOUT_SCALE";
/// The scale the stall tests use: MAIL FROM's 300 s become 3 s.
pub const TIMEOUT_SCALE: &str = "0.01";
/// What a busy test machine may add to a bound.
pub const MARGIN: Duration = Duration::from_secs(15);

pub const SEND: [&str; 8] = [
    "-vv",
    "send",
    "--to",
    "b@example.test",
    "--subject",
    "x",
    "--text",
    "x",
];

/// One hostile server in one mode, stopped when dropped.
pub struct HostileSmtp {
    child: Child,
    dir: TempDir,
    pub port: u16,
    certs: Certs,
}

impl HostileSmtp {
    pub fn start(mode: &str) -> HostileSmtp {
        Self::start_with(mode, &[])
    }

    /// In `mode`, with the script's further arguments (`--reply STEP=CODE`).
    pub fn start_with(mode: &str, extra: &[&str]) -> HostileSmtp {
        let certs = Certs::generate();
        let dir = tempfile::Builder::new()
            .prefix("scan2x-hostile-smtp-")
            .tempdir()
            .unwrap();
        let mut child = Command::new(python())
            .arg(SCRIPT)
            .args(["--mode", mode, "--dir"])
            .arg(dir.path())
            .arg("--cert")
            .arg(certs.cert())
            .arg("--key")
            .arg(certs.key())
            .args(["--limit", &ENDLESS_LIMIT.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {} {SCRIPT}: {e}", python()));
        let rx = crate::support::stdout_lines(&mut child);
        let port = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line
                .strip_prefix("READY ")
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("the hostile SMTP server said {line:?}, not READY")),
            Err(e) => {
                let _ = child.kill();
                panic!("the hostile SMTP server did not start: {e}");
            }
        };
        HostileSmtp {
            child,
            dir,
            port,
            certs,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every command line the server heard, as (over TLS, line).
    pub fn commands(&self) -> Vec<(bool, String)> {
        let text = fs::read_to_string(self.dir().join("commands.log")).unwrap_or_default();
        text.lines()
            .map(|line| {
                let v: Value = serde_json::from_str(line).unwrap();
                (
                    v["tls"].as_bool().unwrap(),
                    v["line"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// The raw DATA of each message the server took, in order.
    pub fn data(&self) -> Vec<Vec<u8>> {
        (1..)
            .map(|n| self.dir().join(format!("data-{n}.bin")))
            .take_while(|path| path.exists())
            .map(|path| fs::read(path).unwrap())
            .collect()
    }

    /// A plaintext sender without a login, its SMTP bounds scaled by [`TIMEOUT_SCALE`].
    pub fn plaintext_sender(&self) -> Scan2xMail {
        Scan2xMail::new(&self.plaintext_settings("relay", "")).env(TIMEOUT_SCALE_ENV, TIMEOUT_SCALE)
    }

    /// The settings of a plaintext sender `name` without a login, with `extra` lines in its table.
    pub fn plaintext_settings(&self, name: &str, extra: &str) -> String {
        format!(
            "[senders.{name}]\nplugin = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\nenable_ssl = false\nemail_address = \"scanner@example.test\"\n{extra}",
            self.port
        )
    }

    /// The command lines the server heard, without the TLS flag.
    pub fn lines(&self) -> Vec<String> {
        self.commands().into_iter().map(|(_, line)| line).collect()
    }

    /// Whether the client had closed the connection the server stopped answering.
    pub fn saw_close(&self) -> bool {
        self.dir().join("closed.log").exists()
    }

    /// A STARTTLS sender (the default) with a login, trusting the server's CA.
    pub fn sender(&self) -> Scan2xMail {
        let sender = SmtpSender::new(self.port).ca_file(&self.certs.ca());
        Scan2xMail::new(&sender.toml())
            .env(PASSWORD_ENV, PASSWORD)
            .credentials(USER, PASSWORD)
    }
}

impl Drop for HostileSmtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary's run of `scan2x-mail send`, and how long it took.
pub fn timed(sender: &Scan2xMail) -> (super::binary::Run, Duration) {
    let started = Instant::now();
    let run = sender.run(SEND);
    (run, started.elapsed())
}

#[track_caller]
pub fn assert_within(took: Duration, bound: Duration, run: &super::binary::Run) {
    assert!(
        took < bound + MARGIN,
        "took {took:?}, more than the bound {bound:?} plus {MARGIN:?}: {run}"
    );
}
