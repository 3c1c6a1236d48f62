//! `tests/servers/hostile_imap.py`, an IMAP server that fails an APPEND on purpose in one mode,
//! started and stopped; what it heard and stored; and an IMAP sender pointed at it.
//!
//! The server's port is a free one, and the IMAP plugin uses implicit TLS on 993 only, so the
//! sender uses STARTTLS, which the server offers (and requires before a login).

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use super::certs::Certs;
use super::smtp_server::python;
use super::{PASSWORD, Scan2xMail, USER, toml_string};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/servers/hostile_imap.py"
);

/// The environment variable the sender reads its password from.
pub const PASSWORD_ENV: &str = "IMAP_PASSWORD";
/// The sender's From address.
pub const FROM: &str = "scanner@example.test";

/// One hostile IMAP server in one mode, stopped when dropped.
pub struct HostileImap {
    child: Child,
    dir: TempDir,
    pub port: u16,
    certs: Certs,
}

impl HostileImap {
    /// In `mode`: `append-close`, `append-hang`, `append-reset` or `well-behaved`.
    pub fn start(mode: &str) -> HostileImap {
        let certs = Certs::generate();
        let dir = tempfile::Builder::new()
            .prefix("scan2x-hostile-imap-")
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
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {} {SCRIPT}: {e}", python()));
        let rx = crate::support::stdout_lines(&mut child);
        let port = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line
                .strip_prefix("READY ")
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("the hostile IMAP server said {line:?}, not READY")),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the hostile IMAP server did not start: {e}");
            }
        };
        HostileImap {
            child,
            dir,
            port,
            certs,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every command line the server heard, as (over TLS, line); literals are not lines.
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

    /// The command lines the server heard, without the TLS flag.
    pub fn lines(&self) -> Vec<String> {
        self.commands().into_iter().map(|(_, line)| line).collect()
    }

    /// The literal of each APPEND the server read whole, in order.
    pub fn appends(&self) -> Vec<Vec<u8>> {
        (1..)
            .map(|n| self.dir().join(format!("append-{n}.bin")))
            .take_while(|path| path.exists())
            .map(|path| fs::read(path).unwrap())
            .collect()
    }

    /// Whether a connection ended without an answer to APPEND: the server closed it
    /// (`append-close`) or the client closed the one the server stopped answering.
    pub fn saw_close(&self) -> bool {
        self.dir().join("closed.log").exists()
    }

    /// Whether the server reset a connection in the middle of a literal.
    pub fn saw_reset(&self) -> bool {
        self.dir().join("reset.log").exists()
    }

    /// The CA a client must trust to reach this server.
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.certs.ca()
    }

    /// The settings of an IMAP sender `name` pointed at this server (STARTTLS, a login, its
    /// CA trusted), with `extra` lines in its table.
    pub fn settings(&self, name: &str, extra: &str) -> String {
        format!(
            "[senders.{name}]\nplugin = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\n\
             enable_ssl = true\nusername = {}\npassword = {{ env = {} }}\nfrom_email = {}\n\
             ca_file = {}\n{extra}",
            self.port,
            toml_string(USER),
            toml_string(PASSWORD_ENV),
            toml_string(FROM),
            toml_string(&self.ca_file().to_string_lossy()),
        )
    }

    /// A runner for [`Self::settings`] (sender `mailbox`) with the password in the environment
    /// and checked for in every output.
    pub fn sender(&self, extra: &str) -> Scan2xMail {
        Scan2xMail::new(&self.settings("mailbox", extra))
            .env(PASSWORD_ENV, PASSWORD)
            .credentials(USER, PASSWORD)
    }
}

impl Drop for HostileImap {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
