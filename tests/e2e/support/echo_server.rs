//! `tests/servers/echo_server.py` run for one test: a hostile server that hands back what it was
//! sent (SMTP and IMAP logins, HTTPS requests) or floods (IMAP LIST), on one 127.0.0.1 port with
//! the test CA's leaf, stopped by pid when dropped. [`EchoServer::received`] is every line it got.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::certs::Certs;
use super::smtp_server::python;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/servers/echo_server.py"
);

pub struct EchoServer {
    child: Child,
    dir: TempDir,
    certs: Certs,
    pub port: u16,
}

impl EchoServer {
    /// `protocol` is `smtp`, `imap` or `https`; `extra` are more arguments (`--mode flood`).
    pub fn start(protocol: &str, extra: &[&str]) -> EchoServer {
        let certs = Certs::generate();
        let dir = tempfile::Builder::new()
            .prefix("scan2x-echo-server-")
            .tempdir()
            .unwrap();
        let stderr_path = dir.path().join("server.stderr");
        let mut child = Command::new(python())
            .arg(SCRIPT)
            .args(["--protocol", protocol])
            .args(extra)
            .arg("--dir")
            .arg(dir.path())
            .arg("--cert")
            .arg(certs.cert())
            .arg("--key")
            .arg(certs.key())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("start {} {SCRIPT}: {e}", python()));
        let rx = super::stdout_lines(&mut child);
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.starts_with("READY ") => EchoServer {
                port: line[6..].trim().parse().unwrap(),
                child,
                dir,
                certs,
            },
            other => panic!(
                "the echo server did not get ready ({other:?}); its stderr:\n{}",
                fs::read_to_string(&stderr_path).unwrap_or_default()
            ),
        }
    }

    /// The CA file a client must trust to reach it.
    pub fn ca_file(&self) -> PathBuf {
        self.certs.ca()
    }

    /// Every line it received.
    pub fn received(&self) -> String {
        fs::read_to_string(self.dir.path().join("requests.log")).unwrap_or_default()
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
