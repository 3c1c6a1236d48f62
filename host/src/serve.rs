//! `scan2x-mail serve`: the delivery worker and the local HTTP API together. The API's HTTP
//! layer is the `scan2x-mail-service` crate; this module is its [`Backend`] over the outbox
//! ([`Api`]: submit, show, list, retry, delete, each the CLI's own code path and report), and
//! the worker that delivers what is due with senders assembled once at start (plugins stay
//! loaded across emails), the same [`Deliverer`] as `queue run`.
//!
//! Outbox calls are synchronous SQLite transactions (and, for a submit, the copy and sync of its
//! attachments): the API's and the worker's all go through `spawn_blocking`, so no async thread
//! waits on the database's lock. On SIGTERM or SIGINT the API stops accepting, the requests in
//! flight are answered, the worker finishes the delivery it holds (or its lease would hand the
//! email back) and claims nothing more; then `serve` exits 0.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Notify, watch};

use scan2x_mail_outbox::{Deliver as _, Outbox, OutboxError, State};
use scan2x_mail_service::{ApiError, Backend, Config, Token};

use crate::message::{AttachmentSpec, Draft};
use crate::outcome::{Failure, FailureKind};
use crate::queue::{self, Deliverer, outbox_failure};
use crate::report::{
    QueueChangeReport, QueueEntry, QueueListReport, QueueRunEmail, QueueShowReport, ServeReport,
    SubmitReport, bare_message_id,
};
use crate::runtime::Runtime;
use crate::secret;

/// The address `serve` listens on unless `--listen` says another: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8740";

/// How often the worker looks for due emails when no submit wakes it.
pub const POLL: Duration = Duration::from_secs(5);

/// What `serve` is told on its command line.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    /// The only folders an attachment path may be in (`--attachments-from`).
    pub attachments_from: Vec<PathBuf>,
}

/// The API's side of the outbox.
pub struct Api {
    config: PathBuf,
    outbox: Arc<Outbox>,
    /// The allowed attachment folders, canonical.
    allowed: Vec<PathBuf>,
    /// Wakes the worker when an email is queued or retried.
    wake: Arc<Notify>,
}

/// Every string of `value` redacted, as the CLI's `--json` output is.
fn redact_json(value: &mut Value) {
    match value {
        Value::String(text) => secret::redact_in_place(text),
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        Value::Object(map) => map.values_mut().for_each(redact_json),
        _ => {}
    }
}

fn to_json(report: &impl serde::Serialize) -> Result<Value, ApiError> {
    let mut value = serde_json::to_value(report)
        .map_err(|e| ApiError::new("internal", format!("the report as JSON: {e}")))?;
    redact_json(&mut value);
    Ok(value)
}

/// A host failure as the API's error: its kind and its message, redacted.
fn api_error(f: Failure) -> ApiError {
    ApiError::new(f.kind.as_str(), secret::redact(&f.message).into_owned())
}

/// An outbox error as the API's error: an unknown id is `not-found` (404), an email in the wrong
/// state `conflict` (409); the rest as the CLI says them.
fn outbox_error(e: OutboxError) -> ApiError {
    match &e {
        OutboxError::NotFound { .. } => ApiError::new("not-found", e.to_string()),
        OutboxError::WrongState { .. } => ApiError::new("conflict", e.to_string()),
        _ => api_error(outbox_failure(e)),
    }
}

/// Runs `f` (an outbox call) on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new("internal", format!("the outbox call stopped: {e}")))?
}

/// The request body as a [`Draft`]; a type error or an unknown field names the field at fault
/// (each top-level field is tried alone to find it).
pub fn draft_of(body: Value) -> Result<Draft, ApiError> {
    match serde_json::from_value::<Draft>(body.clone()) {
        Ok(draft) => Ok(draft),
        Err(e) => {
            let field = body.as_object().and_then(|map| {
                map.iter().find_map(|(k, v)| {
                    let alone = Value::Object([(k.clone(), v.clone())].into_iter().collect());
                    serde_json::from_value::<Draft>(alone)
                        .is_err()
                        .then(|| k.clone())
                })
            });
            let error = match &field {
                Some(field) => ApiError::new("usage", format!("`{field}`: {e}")).with_field(field),
                None => ApiError::new("usage", e.to_string()),
            };
            Err(error)
        }
    }
}

impl Api {
    /// Every attachment path checked against the allowed folders and replaced by its canonical
    /// form (so the file read is the one checked): relative paths, paths that do not resolve
    /// and paths outside every folder are refused, naming the path.
    fn check_attachments(&self, draft: &mut Draft) -> Result<(), ApiError> {
        for spec in &mut draft.attachments {
            let path = match spec {
                AttachmentSpec::Path(p) | AttachmentSpec::Detailed { path: p, .. } => p,
            };
            let refuse = |why: String| Err(ApiError::new("usage", why).with_field("attachments"));
            if self.allowed.is_empty() {
                return refuse(format!(
                    "attachment {}: this service takes no attachment paths (start it with \
                     --attachments-from DIR)",
                    path.display()
                ));
            }
            if path.is_relative() {
                return refuse(format!(
                    "attachment {}: the path must be absolute",
                    path.display()
                ));
            }
            let canonical = match std::fs::canonicalize(&*path) {
                Ok(c) => c,
                Err(e) => {
                    return refuse(format!(
                        "attachment {}: cannot open it: {e}",
                        path.display()
                    ));
                }
            };
            if !self.allowed.iter().any(|dir| canonical.starts_with(dir)) {
                let dirs: Vec<String> = self
                    .allowed
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect();
                return refuse(format!(
                    "attachment {} is outside the folders this service may read \
                     (--attachments-from): {}",
                    path.display(),
                    dirs.join(", ")
                ));
            }
            *path = canonical;
        }
        Ok(())
    }
}

impl Backend for Api {
    async fn submit(&self, body: Value, key: Option<String>) -> Result<Value, ApiError> {
        let mut draft = draft_of(body)?;
        self.check_attachments(&mut draft)?;
        let (config, outbox) = (self.config.clone(), self.outbox.clone());
        let submitted = blocking(move || {
            queue::submit(&config, &outbox, &draft, key, FailureKind::InvalidMessage)
                .map_err(api_error)
        })
        .await?;
        if !submitted.duplicate {
            self.wake.notify_one();
        }
        to_json(&SubmitReport {
            id: submitted.id,
            message_id: bare_message_id(&submitted.message_id),
            duplicate: submitted.duplicate,
        })
    }

    async fn get(&self, id: String) -> Result<Value, ApiError> {
        let outbox = self.outbox.clone();
        let detail = blocking(move || outbox.show(&id).map_err(outbox_error)).await?;
        to_json(&QueueShowReport::from(detail))
    }

    async fn list(&self, state: Option<String>) -> Result<Value, ApiError> {
        let state = state
            .map(|s| {
                s.parse::<State>()
                    .map_err(|e| ApiError::new("usage", e).with_field("state"))
            })
            .transpose()?;
        let outbox = self.outbox.clone();
        let emails = blocking(move || outbox.list(state).map_err(outbox_error)).await?;
        to_json(&QueueListReport {
            emails: emails.iter().map(QueueEntry::from).collect(),
        })
    }

    async fn retry(&self, id: String) -> Result<Value, ApiError> {
        let outbox = self.outbox.clone();
        let done = id.clone();
        blocking(move || outbox.retry(&id).map_err(outbox_error)).await?;
        self.wake.notify_one();
        to_json(&QueueChangeReport {
            action: "retried",
            ids: vec![done],
        })
    }

    async fn delete(&self, id: String) -> Result<Value, ApiError> {
        let outbox = self.outbox.clone();
        let done = id.clone();
        blocking(move || outbox.delete(&id).map_err(outbox_error)).await?;
        to_json(&QueueChangeReport {
            action: "deleted",
            ids: vec![done],
        })
    }

    async fn health(&self) -> Result<Value, ApiError> {
        Ok(Value::Object(Default::default()))
    }
}

/// Waits for SIGTERM or SIGINT. The handlers are installed when this is called, not when it is
/// first polled: call it before saying the address, so a signal sent at once is not missed.
fn stop_signal() -> Result<impl std::future::Future<Output = ()> + Send, Failure> {
    let cannot = |e: std::io::Error| {
        Failure::new(
            FailureKind::Internal,
            format!("cannot listen for signals: {e}"),
        )
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(cannot)?;
        let mut int = signal(SignalKind::interrupt()).map_err(cannot)?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        let _ = cannot;
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

/// `serve`: runs until SIGTERM or SIGINT.
pub async fn run(
    runtime: &Runtime,
    config: &Path,
    data_dir: &Path,
    options: ServeOptions,
) -> Result<ServeReport, Failure> {
    let allowed = options
        .attachments_from
        .iter()
        .map(|dir| {
            std::fs::canonicalize(dir)
                .ok()
                .filter(|d| d.is_dir())
                .ok_or_else(|| {
                    Failure::new(
                        FailureKind::Usage,
                        format!("--attachments-from {}: not a folder", dir.display()),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // The senders are made once, before anything is listened to: a settings file that does not
    // load is exit 3 here, not an error per email.
    let deliverer = Deliverer::new(runtime, config).await?;
    let outbox = Arc::new(
        Outbox::open_with(
            data_dir,
            scan2x_mail_outbox::Options {
                lease: deliverer.lease(),
                ..Default::default()
            },
            Arc::new(scan2x_mail_outbox::SystemClock),
        )
        .map_err(outbox_failure)?,
    );
    let token = Token::load_or_create(data_dir).map_err(|e| {
        Failure::new(
            FailureKind::Internal,
            format!(
                "the API token {}: {e}",
                data_dir.join(Token::FILE).display()
            ),
        )
    })?;
    let signal = stop_signal()?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| {
            Failure::new(
                FailureKind::Usage,
                format!("cannot listen on {}: {e}", options.listen),
            )
        })?;
    let address = listener
        .local_addr()
        .map_err(|e| Failure::new(FailureKind::Internal, format!("the listening address: {e}")))?;
    let wake = Arc::new(Notify::new());
    let api = Arc::new(Api {
        config: config.to_path_buf(),
        outbox: outbox.clone(),
        allowed,
        wake: wake.clone(),
    });
    eprintln!("listening on http://{address}");
    eprintln!(
        "the API token is in {}",
        data_dir.join(Token::FILE).display()
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let stopping = {
        let tx = stop_tx.clone();
        let mut rx = stop_rx.clone();
        async move {
            tokio::select! {
                () = signal => {}
                _ = rx.wait_for(|stop| *stop) => {}
            }
            tx.send_replace(true);
        }
    };
    let server = {
        let tx = stop_tx.clone();
        let mut rx = stop_rx.clone();
        async move {
            let served =
                scan2x_mail_service::serve(listener, api, Config::new(token), async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                })
                .await;
            tx.send_replace(true);
            served
        }
    };
    let worker = deliver_loop(&deliverer, outbox, wake, stop_rx);
    let ((), served, delivered) = tokio::join!(stopping, server, worker);
    served.map_err(|e| Failure::new(FailureKind::Internal, format!("the API stopped: {e}")))?;
    Ok(ServeReport {
        address: address.to_string(),
        delivered,
    })
}

/// Delivers what is due, one email at a time, until `stop`: woken at once by a submit or a
/// retry, otherwise every [`POLL`]. Between two emails it checks `stop`, so a stop lets the
/// delivery in flight finish and claims nothing more. One line per email on stderr, as `queue
/// run` prints. Returns how many were delivered.
async fn deliver_loop(
    deliverer: &Deliverer<'_>,
    outbox: Arc<Outbox>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) -> usize {
    let mut delivered = 0;
    while !*stop.borrow() {
        while !*stop.borrow() {
            let o = outbox.clone();
            let claimed = match tokio::task::spawn_blocking(move || o.claim_due(1)).await {
                Ok(Ok(claimed)) => claimed,
                Ok(Err(e)) => {
                    tracing::warn!("cannot claim from the outbox: {e}");
                    break;
                }
                Err(e) => {
                    tracing::warn!("the outbox claim stopped: {e}");
                    break;
                }
            };
            let Some(item) = claimed.into_iter().next() else {
                break;
            };
            let attempt = deliverer.deliver(&item).await;
            let outcome = attempt.outcome.kind();
            let sender = attempt.outcome.sender().to_string();
            let (o, id) = (outbox.clone(), item.id.clone());
            match tokio::task::spawn_blocking(move || o.record(&id, attempt)).await {
                Ok(Ok(state)) => {
                    if state == State::Delivered {
                        delivered += 1;
                    }
                    let line = QueueRunEmail {
                        id: item.id.clone(),
                        message_id: bare_message_id(&item.message_id),
                        sender,
                        outcome: outcome.to_string(),
                        state: state.to_string(),
                    };
                    eprintln!("{}", secret::redact(&line.to_string()));
                }
                // The email stays claimed until its lease ends, then is queued again.
                Ok(Err(e)) => tracing::warn!("cannot record the attempt of {}: {e}", item.id),
                Err(e) => tracing::warn!("recording the attempt of {} stopped: {e}", item.id),
            }
        }
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => {}
        }
    }
    delivered
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_bad_body_names_its_field() {
        let e = draft_of(json!({"to": ["a@example.test"], "subject": 7})).unwrap_err();
        assert_eq!(
            (e.kind.as_str(), e.field.as_deref()),
            ("usage", Some("subject"))
        );
        assert!(
            e.message.starts_with("`subject`: invalid type"),
            "{}",
            e.message
        );
        let e = draft_of(json!({"to": [], "colour": "red"})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("colour"));
        assert!(
            e.message.contains("unknown field `colour`"),
            "{}",
            e.message
        );
        let draft = draft_of(json!({"to": ["a@example.test"], "subject": "s"})).unwrap();
        assert_eq!(draft.subject.as_deref(), Some("s"));
    }

    fn api(allowed: Vec<PathBuf>, data: &Path) -> Api {
        Api {
            config: data.join("settings.toml"),
            outbox: Arc::new(Outbox::open(data.join("data")).unwrap()),
            allowed,
            wake: Arc::new(Notify::new()),
        }
    }

    fn with(path: &Path) -> Draft {
        Draft {
            attachments: vec![AttachmentSpec::Path(path.to_path_buf())],
            ..Draft::default()
        }
    }

    #[test]
    fn only_files_inside_the_allowed_folders_are_taken_and_by_their_real_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let allowed = root.join("in");
        std::fs::create_dir(&allowed).unwrap();
        std::fs::write(allowed.join("a.pdf"), b"a").unwrap();
        std::fs::write(root.join("b.pdf"), b"b").unwrap();

        let none = api(Vec::new(), &root);
        let e = none
            .check_attachments(&mut with(&allowed.join("a.pdf")))
            .unwrap_err();
        assert!(e.message.contains("--attachments-from"), "{}", e.message);

        let api = api(vec![allowed.clone()], &root);
        let mut inside = with(&allowed.join(".").join("a.pdf"));
        api.check_attachments(&mut inside).unwrap();
        assert_eq!(
            inside.attachments,
            [AttachmentSpec::Path(allowed.join("a.pdf"))]
        );
        for bad in [
            root.join("b.pdf"),
            allowed.join("..").join("b.pdf"),
            PathBuf::from("in/a.pdf"),
            allowed.join("missing.pdf"),
        ] {
            let e = api.check_attachments(&mut with(&bad)).unwrap_err();
            assert_eq!(e.kind, "usage", "{bad:?}");
            assert_eq!(e.field.as_deref(), Some("attachments"));
            assert!(e.message.contains(&*bad.to_string_lossy()), "{}", e.message);
        }
    }
}
