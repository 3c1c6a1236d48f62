//! The project's Microsoft Graph stand-in (`tests/servers/graph_server.py`, Python standard
//! library only) run for one test: a tenant with one application and three users, three HTTPS
//! origins on loopback (login, Graph, and the upload origin Graph hands out), stopped by pid when
//! dropped, and read back — every request it answered (`requests.jsonl`) and every message it
//! "sent" with its attachments' bytes (`sent/`).
//!
//! A test injects faults with [`GraphServer::fail_next`] ("the next sendMail answers 429 with
//! Retry-After: 7"). [`GraphSender`] writes the settings of a Graph sender that works against it.
//!
//! The server must never listen anywhere but 127.0.0.1, and a test must never outlive it.

use std::cell::Cell;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;

use super::certs::Certs;
use super::smtp_server::python;
use super::toml_string;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/servers/graph_server.py"
);
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The tenant the stand-in knows, by id and by domain.
pub const TENANT_ID: &str = "5f3c9a1e-8b2d-4c7e-9f10-2a4b6c8d0e1f";
pub const TENANT_DOMAIN: &str = "contoso.example";
/// The application registered in it, and its secret: distinctive, so a leak can't be chance.
pub const CLIENT_ID: &str = "0b7b1a2c-3d4e-4f50-8a6b-7c8d9e0f1a2b";
pub const CLIENT_SECRET: &str = "e2e~GraphS3cret.9qZx-Kw3vT";
/// The environment variable the default sender reads its client secret from.
pub const CLIENT_SECRET_ENV: &str = "GRAPH_CLIENT_SECRET";
/// A user with an Exchange Online mailbox, allowed to send as [`SEND_AS`].
pub const MAILBOX: &str = "scanner@contoso.example";
pub const SEND_AS: &str = "desk@contoso.example";
/// A user without a mailbox (MailboxNotEnabledForRESTAPI).
pub const NO_MAILBOX: &str = "frontdesk@contoso.example";

/// Tell the person running the tests a measured number. Written to the real stderr, which the
/// test harness does not capture.
pub fn say_measured(what: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\nMEASURED: {what}");
}

/// One request the stand-in answered.
#[derive(Clone, Debug)]
pub struct Logged {
    /// `login`, `graph` or `upload`.
    pub origin: String,
    pub method: String,
    pub path: String,
    /// `token`, `user`, `sendMail`, `createDraft`, `addAttachment`, `createUploadSession`,
    /// `upload`, `send`, `delete`, or `unknown`.
    pub op: String,
    pub status: u16,
}

/// An attachment of a sent message, as the stand-in decoded or reassembled it.
#[derive(Clone, Debug)]
pub struct SentAttachment {
    pub name: String,
    pub content_type: Option<String>,
    pub bytes: Vec<u8>,
    /// `inline` (in sendMail), `posted` (to a draft) or `uploaded` (through a session).
    pub how: String,
}

/// A message the stand-in accepted for sending.
#[derive(Clone, Debug)]
pub struct Sent {
    pub user: String,
    /// `sendMail` or `draft`.
    pub via: String,
    /// The message resource as received, `attachments` replaced by the list below.
    pub message: Value,
    pub attachments: Vec<SentAttachment>,
}

impl Sent {
    /// The addresses of a recipient list (`toRecipients`, `replyTo`, …).
    pub fn addresses(&self, list: &str) -> Vec<(Option<String>, String)> {
        self.message[list]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| {
                        let e = &r["emailAddress"];
                        (
                            e["name"].as_str().map(str::to_string),
                            e["address"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub struct GraphServer {
    child: Child,
    dir: TempDir,
    certs: Certs,
    login_port: u16,
    graph_port: u16,
    upload_port: u16,
    faults: Cell<u32>,
}

impl GraphServer {
    /// Start the stand-in with the standard tenant, application and users; a token lives
    /// `token_lifetime` seconds.
    pub fn start() -> GraphServer {
        Self::start_with(3599).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn start_with(token_lifetime: u64) -> Result<GraphServer, String> {
        Self::start_with_certs(token_lifetime, Certs::generate())
    }

    /// [`GraphServer::start_with`], presenting the leaf of `certs` on all three origins (e.g.
    /// one a client must refuse); [`GraphServer::ca_file`] is then `certs`' CA.
    pub fn start_with_certs(token_lifetime: u64, certs: Certs) -> Result<GraphServer, String> {
        Self::start_configured(token_lifetime, certs, |_| {})
    }

    /// [`GraphServer::start_with_certs`] with the standard configuration changed by `edit`
    /// first: another tenant, application or user, or `not_before_offset` (the keys are in the
    /// script's docstring).
    pub fn start_configured(
        token_lifetime: u64,
        certs: Certs,
        edit: impl FnOnce(&mut Value),
    ) -> Result<GraphServer, String> {
        let dir = tempfile::Builder::new()
            .prefix("scan2x-graph-server-")
            .tempdir()
            .map_err(|e| format!("create the stand-in's temp dir: {e}"))?;
        let mut config = json!({
            "tenants": { TENANT_ID: {
                "domains": [TENANT_DOMAIN],
                "apps": { CLIENT_ID: {
                    "secret": CLIENT_SECRET,
                    "roles": ["Mail.Send", "Mail.ReadWrite", "User.Read.All"],
                }},
            }},
            "users": {
                MAILBOX: {
                    "id": "3f1e2d4c-5b6a-4789-9abc-def012345678",
                    "displayName": "Scanner",
                    "mail": MAILBOX,
                    "mailbox": true,
                    "send_as": [SEND_AS],
                },
                NO_MAILBOX: {
                    "id": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
                    "displayName": "Front desk",
                    "mail": NO_MAILBOX,
                    "mailbox": false,
                },
            },
            "token_lifetime": token_lifetime,
        });
        edit(&mut config);
        let config_path = dir.path().join("config.json");
        fs::write(&config_path, config.to_string()).map_err(|e| e.to_string())?;
        let stderr_path = dir.path().join("server.stderr");
        let stderr = fs::File::create(&stderr_path).map_err(|e| e.to_string())?;
        let mut child = Command::new(python())
            .arg(SCRIPT)
            .arg("--dir")
            .arg(dir.path())
            .arg("--cert")
            .arg(certs.cert())
            .arg("--key")
            .arg(certs.key())
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("start {} {SCRIPT}: {e}", python()))?;
        let rx = super::stdout_lines(&mut child);
        let mut server = GraphServer {
            child,
            dir,
            certs,
            login_port: 0,
            graph_port: 0,
            upload_port: 0,
            faults: Cell::new(0),
        };
        loop {
            match rx.recv_timeout(READY_TIMEOUT) {
                Ok(line) if line.starts_with("READY ") => {
                    let ports: Vec<u16> = line[6..]
                        .split(' ')
                        .map(|p| p.trim().parse().unwrap())
                        .collect();
                    [server.login_port, server.graph_port, server.upload_port] =
                        ports.try_into().map_err(|p| format!("READY with {p:?}"))?;
                    return Ok(server);
                }
                Ok(_) => continue,
                Err(e) => {
                    let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
                    return Err(format!(
                        "the Graph stand-in did not get ready ({e}); its stderr:\n{stderr}"
                    ));
                }
            }
        }
    }

    /// The token endpoint's origin (Microsoft's `https://login.microsoftonline.com`).
    pub fn authority_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.login_port)
    }

    /// Graph's origin (`https://graph.microsoft.com`).
    pub fn graph_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.graph_port)
    }

    /// The origin of the upload URLs it hands out (`https://outlook.office.com`).
    pub fn outlook_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.upload_port)
    }

    /// The CA file a client must trust to reach it.
    pub fn ca_file(&self) -> PathBuf {
        self.certs.ca()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The next request of `op` answers `status` with Graph's error `code` (and `Retry-After`).
    pub fn fail_next(&self, op: &str, status: u16, code: &str, retry_after: Option<u32>) {
        let mut fault = json!({ "op": op, "status": status, "code": code });
        if let Some(secs) = retry_after {
            fault["retry_after"] = json!(secs);
        }
        self.add_fault(fault);
    }

    /// The next request of `op` is done in full (a `sendMail` is sent), then its answer is lost:
    /// `how` is "close" (the connection is closed) or "hang" (no answer ever comes).
    pub fn lose_next_answer(&self, op: &str, how: &str) {
        self.add_fault(json!({ "op": op, "lose_answer": how }));
    }

    fn add_fault(&self, mut fault: Value) {
        let path = self.dir().join("faults.json");
        let mut faults: Vec<Value> = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let id = self.faults.get() + 1;
        self.faults.set(id);
        fault["id"] = json!(format!("f{id}"));
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
                let v: Value = serde_json::from_str(line).expect("requests.jsonl holds JSON lines");
                let s = |k: &str| v[k].as_str().unwrap().to_string();
                Logged {
                    origin: s("origin"),
                    method: s("method"),
                    path: s("path"),
                    op: s("op"),
                    status: v["status"].as_u64().unwrap() as u16,
                }
            })
            .collect()
    }

    /// How many requests of `op` it answered.
    pub fn count(&self, op: &str) -> usize {
        self.requests().iter().filter(|r| r.op == op).count()
    }

    /// The request log as text, for assertion messages.
    pub fn requests_text(&self) -> String {
        self.requests()
            .iter()
            .map(|r| {
                format!(
                    "  {} {} {} [{}] -> {}\n",
                    r.origin, r.method, r.path, r.op, r.status
                )
            })
            .collect()
    }

    /// Every message it accepted, in order.
    pub fn sent(&self) -> Vec<Sent> {
        let folder = self.dir().join("sent");
        let Ok(entries) = fs::read_dir(&folder) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|path| {
                let v: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
                let attachments = v["message"]["attachments"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| SentAttachment {
                        name: a["name"].as_str().unwrap().to_string(),
                        content_type: a["contentType"].as_str().map(str::to_string),
                        bytes: fs::read(folder.join(a["file"].as_str().unwrap())).unwrap(),
                        how: a["how"].as_str().unwrap().to_string(),
                    })
                    .collect();
                Sent {
                    user: v["user"].as_str().unwrap().to_string(),
                    via: v["via"].as_str().unwrap().to_string(),
                    message: v["message"].clone(),
                    attachments,
                }
            })
            .collect()
    }

    /// The one message sent so far; panics when there is not exactly one.
    pub fn only_sent(&self) -> Sent {
        let mut sent = self.sent();
        assert_eq!(
            sent.len(),
            1,
            "expected exactly one message at the stand-in; requests:\n{}",
            self.requests_text()
        );
        sent.remove(0)
    }
}

impl Drop for GraphServer {
    fn drop(&mut self) {
        // By pid, this one process only; wait() reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The settings of one Graph sender, in the product's words; defaults work against the
/// stand-in: the standard tenant and application, the secret from [`CLIENT_SECRET_ENV`], the
/// mailbox [`MAILBOX`], the stand-in's three origins and its CA.
#[derive(Clone, Debug)]
pub struct GraphSender {
    pub name: String,
    pub tenant_id: String,
    pub client_id: String,
    /// The TOML value of `client_secret`.
    pub client_secret: String,
    pub username: String,
    pub from_email: Option<String>,
    pub authority_url: String,
    pub graph_url: String,
    /// None: the plugin's default (Microsoft's Outlook origin).
    pub outlook_url: Option<String>,
    pub ca_file: PathBuf,
    /// The stand-in's file of every token it issued: no run's output may show one
    /// ([`Scan2xMail::secrets_issued_in`](super::Scan2xMail::secrets_issued_in)).
    pub issued_secrets: PathBuf,
}

impl GraphSender {
    pub fn new(server: &GraphServer) -> Self {
        GraphSender {
            name: "office365".to_string(),
            tenant_id: TENANT_ID.to_string(),
            client_id: CLIENT_ID.to_string(),
            client_secret: format!("{{ env = {} }}", toml_string(CLIENT_SECRET_ENV)),
            username: MAILBOX.to_string(),
            from_email: None,
            authority_url: server.authority_url(),
            graph_url: server.graph_url(),
            outlook_url: Some(server.outlook_url()),
            ca_file: server.ca_file(),
            issued_secrets: server.dir().join("issued-secrets.txt"),
        }
    }

    pub fn toml(&self) -> String {
        let mut toml = format!(
            "[senders.{}]\nplugin = \"graph\"\ntenant_id = {}\nclient_id = {}\nclient_secret = {}\n\
             username = {}\nauthority_url = {}\ngraph_url = {}\nca_file = {}\n",
            self.name,
            toml_string(&self.tenant_id),
            toml_string(&self.client_id),
            self.client_secret,
            toml_string(&self.username),
            toml_string(&self.authority_url),
            toml_string(&self.graph_url),
            toml_string(&self.ca_file.to_string_lossy()),
        );
        if let Some(from) = &self.from_email {
            toml += &format!("from_email = {}\n", toml_string(from));
        }
        if let Some(outlook) = &self.outlook_url {
            toml += &format!("outlook_url = {}\n", toml_string(outlook));
        }
        toml
    }
}
