//! The project's SendGrid stand-in (`tests/servers/sendgrid_server.py`, Python standard library
//! only) run for one test: SendGrid's v3 `mail/send` and `scopes` on one HTTPS origin on loopback,
//! knowing one API key, stopped by pid when dropped, and read back — every request it answered
//! (`requests.jsonl`) and the JSON of every message it accepted (`sent/`).
//!
//! A test injects faults with [`SendGridServer::fail_next`] ("the next mail/send answers 429 with
//! Retry-After: 30"). The server must never listen anywhere but 127.0.0.1.

use std::cell::Cell;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;

use super::certs::Certs;
use super::smtp_server::python;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/servers/sendgrid_server.py"
);

/// The API key the stand-in accepts: distinctive, so a leak can't be chance.
pub const API_KEY: &str = "SG.e2e-Kx9q.Vendor-S3cret-7Tz";

/// One request the stand-in answered.
#[derive(Clone, Debug)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub status: u16,
}

/// A message it accepted: its `X-Message-Id` and the JSON body as received.
#[derive(Clone, Debug)]
pub struct Sent {
    pub message_id: String,
    pub body: Value,
}

pub struct SendGridServer {
    child: Child,
    dir: TempDir,
    certs: Certs,
    port: u16,
    faults: Cell<u32>,
}

impl SendGridServer {
    pub fn start() -> SendGridServer {
        Self::start_with_certs(Certs::generate())
    }

    /// [`SendGridServer::start`], presenting the leaf of `certs` (e.g. one a client must
    /// refuse); [`SendGridServer::ca_file`] is then `certs`' CA.
    pub fn start_with_certs(certs: Certs) -> SendGridServer {
        let dir = tempfile::Builder::new()
            .prefix("scan2x-sendgrid-server-")
            .tempdir()
            .unwrap();
        let stderr_path = dir.path().join("server.stderr");
        let mut child = Command::new(python())
            .arg(SCRIPT)
            .arg("--dir")
            .arg(dir.path())
            .arg("--cert")
            .arg(certs.cert())
            .arg("--key")
            .arg(certs.key())
            .arg("--api-key")
            .arg(API_KEY)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("start {} {SCRIPT}: {e}", python()));
        let rx = super::stdout_lines(&mut child);
        let mut server = SendGridServer {
            child,
            dir,
            certs,
            port: 0,
            faults: Cell::new(0),
        };
        loop {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.starts_with("READY ") => {
                    server.port = line[6..].trim().parse().unwrap();
                    return server;
                }
                Ok(_) => continue,
                Err(e) => panic!(
                    "the SendGrid stand-in did not get ready ({e}); its stderr:\n{}",
                    fs::read_to_string(&stderr_path).unwrap_or_default()
                ),
            }
        }
    }

    /// Its origin (SendGrid's `https://api.sendgrid.com`).
    pub fn api_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The CA file a client must trust to reach it.
    pub fn ca_file(&self) -> PathBuf {
        self.certs.ca()
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The next request of `op` answers `status` with SendGrid's error body saying `message`
    /// (and `Retry-After`).
    pub fn fail_next(&self, op: &str, status: u16, message: &str, retry_after: Option<u32>) {
        let path = self.dir().join("faults.json");
        let mut faults: Vec<Value> = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let id = self.faults.get() + 1;
        self.faults.set(id);
        let mut fault =
            json!({ "id": format!("f{id}"), "op": op, "status": status, "message": message });
        if let Some(secs) = retry_after {
            fault["retry_after"] = json!(secs);
        }
        faults.push(fault);
        let tmp = self.dir().join("faults.json.tmp");
        fs::write(&tmp, serde_json::to_vec(&faults).unwrap()).unwrap();
        fs::rename(tmp, path).unwrap();
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<Logged> {
        let text = fs::read_to_string(self.dir().join("requests.jsonl")).unwrap_or_default();
        text.lines()
            .map(|line| {
                let v: Value = serde_json::from_str(line).unwrap();
                let s = |k: &str| v[k].as_str().unwrap().to_string();
                Logged {
                    method: s("method"),
                    path: s("path"),
                    status: v["status"].as_u64().unwrap() as u16,
                }
            })
            .collect()
    }

    /// Every message it accepted, in order.
    pub fn sent(&self) -> Vec<Sent> {
        let folder = self.dir().join("sent");
        let mut files: Vec<PathBuf> = fs::read_dir(&folder)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
            .into_iter()
            .map(|path| {
                let v: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
                Sent {
                    message_id: v["message_id"].as_str().unwrap().to_string(),
                    body: v["body"].clone(),
                }
            })
            .collect()
    }

    /// What it wrote to stderr so far: a traceback there is a request it did not foresee.
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.dir().join("server.stderr")).unwrap_or_default()
    }
}

impl Drop for SendGridServer {
    fn drop(&mut self) {
        // By pid, this one process only; wait() reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
