//! `scan2x-mail serve`: the delivery worker and the local HTTP API together. The API's HTTP
//! layer is the `scan2x-mail-service` crate; this module is its [`Backend`] over the outbox
//! ([`Api`]: submit, show, list, retry, delete, and the settings' own endpoints — senders,
//! plugins, route, test, send — each the CLI's own code path and report), and
//! the worker that delivers what is due with senders assembled at start and again on a reload
//! (SIGHUP or `POST /v1/reload`: a file refused leaves the old senders serving; plugins stay
//! loaded across emails), the same [`Deliverer`] as `queue run`, several emails at once within
//! each sender's limits ([`crate::throttle`]). The worker counts its attempts and delivery times
//! for `GET /metrics`.
//!
//! Outbox calls are synchronous SQLite transactions (and, for a submit, the copy and sync of its
//! attachments): the API's and the worker's all go through `spawn_blocking`, so no async thread
//! waits on the database's lock. On SIGTERM or SIGINT the API stops accepting, the requests in
//! flight are answered, the worker claims nothing more, hands back the emails still waiting for
//! their sender's turn and finishes the deliveries under way; then `serve` exits 0.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use scan2x_mail_outbox::{Outbox, OutboxError, State};
use scan2x_mail_service::{ApiError, Backend, Config, Histogram, Metrics, RouteQuery, Token};

use crate::commands;
use crate::message::{AttachmentSpec, Draft, JobDraft};
use crate::outcome::{Failure, FailureKind};
use crate::queue::{self, Deliverer, outbox_failure};
use crate::report::{
    QueueChangeReport, QueueEntry, QueueListReport, QueueRunEmail, QueueShowReport, Report,
    ServeReport, SubmitReport, bare_message_id,
};
use crate::runtime::Runtime;
use crate::secret;
use crate::settings::Settings;

/// The address `serve` listens on unless `--listen` says another: loopback only.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    8740,
));

/// How often the worker looks for due emails when no submit wakes it.
pub const POLL: Duration = Duration::from_secs(5);

/// What `serve` is told on its command line.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// `--listen`; none: the settings' `[service] listen`, else [`DEFAULT_LISTEN`].
    pub listen: Option<SocketAddr>,
    /// The only folders an attachment path may be in (`--attachments-from`); none given: the
    /// settings' `[service] attachments_from`.
    pub attachments_from: Vec<PathBuf>,
}

/// The API's side of the outbox.
pub struct Api {
    /// The runtime the settings' endpoints load plugins with (`test`, `send`, …).
    runtime: Arc<Runtime>,
    config: PathBuf,
    outbox: Arc<Outbox>,
    /// The allowed attachment folders, canonical.
    allowed: Vec<PathBuf>,
    /// Wakes the worker when an email is queued or retried.
    wake: Arc<Notify>,
    /// The settings the worker's senders were made of (a reload swaps them): what a submit
    /// checks its sender against.
    settings: Arc<std::sync::RwLock<Arc<Settings>>>,
    /// Asks `serve`'s reloader to read the settings anew (none: this API cannot reload).
    reload: Option<mpsc::Sender<ReloadReply>>,
    /// The worker's counts.
    stats: SharedStats,
}

/// What the worker has counted since `serve` started, for `GET /metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Attempts by sender and outcome.
    attempts: std::collections::BTreeMap<(String, String), u64>,
    /// Seconds from submit to delivered, per email the worker delivered.
    delivery: Histogram,
}

type SharedStats = Arc<std::sync::Mutex<Stats>>;

/// Where the reloader says how a reload went: the new senders' names, or why the file was
/// refused.
type ReloadReply = oneshot::Sender<Result<Vec<String>, Failure>>;

fn to_json(report: &impl serde::Serialize) -> Result<Value, ApiError> {
    let mut value = serde_json::to_value(report)
        .map_err(|e| ApiError::new("internal", format!("the report as JSON: {e}")))?;
    secret::redact_json(&mut value);
    Ok(value)
}

/// A host failure as the API's error: its kind and its message, redacted.
fn api_error(f: Failure) -> ApiError {
    ApiError::new(f.kind.as_str(), secret::redact(&f.message).into_owned())
        .with_retry_after(f.retry_after_secs)
}

/// The route query as the route command's options make their draft (`RouteArgs::draft`).
fn route_draft(q: RouteQuery) -> Draft {
    let job = if q.job.is_some() || q.job_source.is_some() || !q.job_recipient.is_empty() {
        Some(JobDraft {
            name: q.job,
            source_sender: q.job_source,
            recipients: q.job_recipient,
        })
    } else {
        None
    };
    Draft {
        event: q.event,
        sender: q.sender,
        job,
        ..Draft::default()
    }
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
                    "attachment {}: this service takes no attachment paths (name the folders \
                     in the settings' [service] attachments_from, or start it with \
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
                     ([service] attachments_from or --attachments-from): {}",
                    path.display(),
                    dirs.join(", ")
                ));
            }
            *path = canonical;
        }
        Ok(())
    }

    /// The files uploaded with a submit, as attachments after the draft's own, in upload order:
    /// each its staged path with the part's filename and, when the part gave one, its type
    /// (else guessed from the filename, as for a path). They are in the data folder, not read
    /// for the caller, so `--attachments-from` does not apply to them.
    fn add_uploads(draft: &mut Draft, uploads: &scan2x_mail_service::Uploads) {
        draft
            .attachments
            .extend(uploads.files().iter().map(|u| AttachmentSpec::Detailed {
                path: u.path.clone(),
                filename: Some(u.filename.clone()),
                content_type: u.content_type.clone(),
            }));
    }

    /// Where a submit's uploads are staged: `<data folder>/uploads`.
    fn upload_root(&self) -> PathBuf {
        self.outbox.dir().join("uploads")
    }
}

impl Backend for Api {
    async fn submit(
        &self,
        body: Value,
        uploads: scan2x_mail_service::Uploads,
        key: Option<String>,
    ) -> Result<Value, ApiError> {
        let mut draft = draft_of(body)?;
        self.check_attachments(&mut draft)?;
        Self::add_uploads(&mut draft, &uploads);
        let (config, outbox) = (self.config.clone(), self.outbox.clone());
        let settings = self
            .settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let submitted = blocking(move || {
            let submitted = queue::submit_with(
                &config,
                Some(&settings),
                &outbox,
                &draft,
                key,
                FailureKind::InvalidMessage,
            )
            .map_err(api_error);
            // The outbox has copied the uploads into its spool (or refused them): unstage them.
            drop(uploads);
            submitted
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

    fn upload_dir(&self) -> PathBuf {
        self.upload_root()
    }

    async fn get(&self, id: String) -> Result<Value, ApiError> {
        let outbox = self.outbox.clone();
        let detail = blocking(move || outbox.show(&id).map_err(outbox_error)).await?;
        to_json(&QueueShowReport::from(detail))
    }

    async fn list(&self, state: Option<String>, limit: usize) -> Result<Value, ApiError> {
        let state = state
            .map(|s| {
                s.parse::<State>()
                    .map_err(|e| ApiError::new("usage", e).with_field("state"))
            })
            .transpose()?;
        let outbox = self.outbox.clone();
        let emails =
            blocking(move || outbox.list_first(state, limit).map_err(outbox_error)).await?;
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

    async fn senders(&self) -> Result<Value, ApiError> {
        let report = commands::check(&self.runtime, &self.config)
            .await
            .map_err(api_error)?;
        to_json(&report)
    }

    async fn plugins(&self) -> Result<Value, ApiError> {
        // `serve` started with this settings file, so it is named as `--config` names it.
        let report = commands::plugins(&self.runtime, &self.config, true)
            .await
            .map_err(api_error)?;
        to_json(&report)
    }

    async fn route(&self, query: RouteQuery) -> Result<Value, ApiError> {
        let report = commands::route(&self.runtime, &self.config, route_draft(query))
            .await
            .map_err(api_error)?;
        to_json(&report)
    }

    async fn test_sender(&self, name: String) -> Result<Value, ApiError> {
        let settings =
            Settings::load(&self.config).map_err(|e| api_error(commands::settings_failure(e)))?;
        if !settings.senders.iter().any(|s| s.name == name) {
            let names: Vec<&str> = settings.senders.iter().map(|s| s.name.as_str()).collect();
            return Err(ApiError::new(
                "not-found",
                format!(
                    "no sender named '{name}'; the settings file has: {}",
                    names.join(", ")
                ),
            ));
        }
        let report = commands::test(&self.runtime, &self.config, Some(&name))
            .await
            .map_err(api_error)?;
        to_json(&report)
    }

    async fn send(&self, body: Value) -> Result<Value, ApiError> {
        let mut draft = draft_of(body)?;
        self.check_attachments(&mut draft)?;
        let report = commands::send(&self.runtime, &self.config, draft)
            .await
            .map_err(api_error)?;
        match &report {
            Report::NotSent(not_sent) => {
                let error = &not_sent.error;
                Err(ApiError::new(
                    error.kind.as_str(),
                    secret::redact(&error.message).into_owned(),
                )
                .with_retry_after(error.retry_after_secs)
                .with_body(to_json(&report)?))
            }
            _ => to_json(&report),
        }
    }

    async fn reload(&self) -> Result<Value, ApiError> {
        let stopping = || ApiError::new("internal", "the service is stopping: nothing reloaded");
        let tx = self
            .reload
            .as_ref()
            .ok_or_else(|| ApiError::new("internal", "this service cannot reload"))?;
        let (reply, answer) = oneshot::channel();
        tx.send(reply).await.map_err(|_| stopping())?;
        let senders = answer.await.map_err(|_| stopping())?.map_err(api_error)?;
        Ok(json!({ "reloaded": true, "senders": senders }))
    }

    async fn metrics(&self) -> Result<Metrics, ApiError> {
        let outbox = self.outbox.clone();
        let counts = blocking(move || outbox.count_by_state().map_err(outbox_error)).await?;
        let queue = counts
            .into_iter()
            .map(|(state, n)| (state.to_string(), n))
            .collect();
        let stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        Ok(Metrics {
            queue,
            attempts: stats.attempts.clone(),
            delivery_seconds: stats.delivery.clone(),
        })
    }
}

/// SIGHUP: read the settings anew. Where there is no SIGHUP, it never comes.
struct Hangup(#[cfg(unix)] tokio::signal::unix::Signal);

impl Hangup {
    /// Installed when made (before the address is said, as [`stop_signal`]).
    fn new() -> Result<Hangup, Failure> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            signal(SignalKind::hangup()).map(Hangup).map_err(|e| {
                Failure::new(
                    FailureKind::Internal,
                    format!("cannot listen for SIGHUP: {e}"),
                )
            })
        }
        #[cfg(not(unix))]
        Ok(Hangup())
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if self.0.recv().await.is_some() {
            return;
        }
        std::future::pending::<()>().await
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
    runtime: Arc<Runtime>,
    config: &Path,
    data_dir: &Path,
    options: ServeOptions,
) -> Result<ServeReport, Failure> {
    // The senders are made once, before anything is listened to: a settings file that does not
    // load is exit 3 here, not an error per email.
    let deliverer = Deliverer::new(&runtime, config).await?;
    // The command line's folders replace the settings' `[service] attachments_from`.
    let service = &deliverer.settings().service;
    let (folders, named) = if options.attachments_from.is_empty() {
        (&service.attachments_from, "[service] attachments_from")
    } else {
        (&options.attachments_from, "--attachments-from")
    };
    let allowed = folders
        .iter()
        .map(|dir| {
            std::fs::canonicalize(dir)
                .ok()
                .filter(|d| d.is_dir())
                .ok_or_else(|| {
                    Failure::new(
                        FailureKind::Usage,
                        format!("{named} {}: not a folder", dir.display()),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let listen = options.listen.or(service.listen).unwrap_or(DEFAULT_LISTEN);
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
    let mut hangup = Hangup::new()?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        Failure::new(
            FailureKind::Usage,
            format!("cannot listen on {listen}: {e}"),
        )
    })?;
    let address = listener
        .local_addr()
        .map_err(|e| Failure::new(FailureKind::Internal, format!("the listening address: {e}")))?;
    let wake = Arc::new(Notify::new());
    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadReply>(4);
    let stats = SharedStats::default();
    let settings = Arc::new(std::sync::RwLock::new(Arc::new(
        deliverer.settings().clone(),
    )));
    let api = Arc::new(Api {
        runtime: runtime.clone(),
        config: config.to_path_buf(),
        outbox: outbox.clone(),
        allowed,
        wake: wake.clone(),
        settings: settings.clone(),
        reload: Some(reload_tx),
        stats: stats.clone(),
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
    // The senders in use: the worker takes them per email, a reload swaps them.
    let current = std::sync::RwLock::new(Arc::new(deliverer));
    let reloader = {
        let (current, mut stop) = (&current, stop_rx.clone());
        let runtime = &*runtime;
        async move {
            loop {
                let reply = tokio::select! {
                    asked = reload_rx.recv() => match asked {
                        Some(reply) => Some(reply),
                        None => break,
                    },
                    () = hangup.recv() => None,
                    _ = stop.wait_for(|stop| *stop) => break,
                };
                let previous = current.read().unwrap_or_else(|e| e.into_inner()).clone();
                let result = match Deliverer::reloaded(runtime, config, Some(&previous)).await {
                    Ok(deliverer) => {
                        let names = deliverer.sender_names();
                        *settings.write().unwrap_or_else(|e| e.into_inner()) =
                            Arc::new(deliverer.settings().clone());
                        *current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(deliverer);
                        eprintln!("settings reloaded: senders {}", names.join(", "));
                        Ok(names)
                    }
                    Err(failure) => {
                        let said = format!(
                            "error: the settings were not reloaded; the old senders keep \
                             serving:\n{}",
                            failure.message
                        );
                        eprintln!("{}", secret::redact(&said));
                        Err(failure)
                    }
                };
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
        }
    };
    let purger = purge_loop(&current, outbox.clone(), stop_rx.clone());
    let worker = deliver_loop(&current, outbox, wake, stats, stop_rx);
    let ((), served, delivered, (), ()) = tokio::join!(stopping, server, worker, reloader, purger);
    served.map_err(|e| Failure::new(FailureKind::Internal, format!("the API stopped: {e}")))?;
    Ok(ServeReport {
        address: address.to_string(),
        delivered,
    })
}

/// Delivers what is due until `stop`, as many at once as the senders' `max_concurrent`
/// together allow (each sender's own limits are its throttle's): whenever there is room, as
/// many emails as fit (at most [`CLAIM_BATCH`]) are claimed in one transaction, woken at once by a submit or a retry,
/// otherwise every [`POLL`]. The deliveries
/// in flight are futures polled together here; each keeps its claim alive while it waits for its
/// sender's turn and while its plugin runs ([`deliver_one`]). On `stop` nothing more is claimed,
/// the throttle is closed (a delivery still waiting for its turn hands its email back untried),
/// and the deliveries under way finish and are recorded. One line per email on stderr, as `queue
/// run` prints. Returns how many were delivered.
async fn deliver_loop(
    current: &std::sync::RwLock<Arc<Deliverer<'_>>>,
    outbox: Arc<Outbox>,
    wake: Arc<Notify>,
    stats: SharedStats,
    mut stop: watch::Receiver<bool>,
) -> usize {
    use futures_util::StreamExt as _;
    use futures_util::stream::FuturesUnordered;

    let deliverer = || current.read().unwrap_or_else(|e| e.into_inner()).clone();
    let mut in_flight = FuturesUnordered::new();
    // The claim under way, on the blocking pool: the deliveries in flight are polled meanwhile
    // (one that got its server's answer records it without waiting for the claim).
    let mut claiming: Option<tokio::task::JoinHandle<_>> = None;
    // How many the claim under way asked for: fewer found means nothing more is due now.
    let mut asked = 0;
    let mut delivered = 0;
    // Whether the last claim found nothing due: then only a wake, the poll or a stop claims again.
    let mut idle = false;
    let mut next_poll = tokio::time::Instant::now() + POLL;
    loop {
        let stopping = *stop.borrow();
        if stopping {
            deliverer().throttle().close();
            if in_flight.is_empty() && claiming.is_none() {
                break;
            }
        } else if !idle && claiming.is_none() {
            // As many as there is room for, up to CLAIM_BATCH, in one transaction (one sync for
            // a burst; a longer one would keep submits waiting for the outbox's lock).
            let room = deliverer()
                .throttle()
                .total_concurrent()
                .saturating_sub(in_flight.len())
                .min(CLAIM_BATCH);
            if room > 0 {
                asked = room;
                let o = outbox.clone();
                claiming = Some(tokio::task::spawn_blocking(move || o.claim_due(room)));
            }
        }
        tokio::select! {
            claimed = async { claiming.as_mut().expect("polled only when claiming").await },
                if claiming.is_some() =>
            {
                claiming = None;
                match claimed {
                    Ok(Ok(claimed)) if claimed.is_empty() => idle = true,
                    // Claimed while stopping: the worker gives them back, untried.
                    Ok(Ok(claimed)) if *stop.borrow() => {
                        for item in claimed {
                            hand_back(&outbox, item.id, item.locked_until).await;
                        }
                    }
                    Ok(Ok(claimed)) => {
                        idle = claimed.len() < asked;
                        for item in claimed {
                            in_flight.push(deliver_one(
                                deliverer(),
                                outbox.clone(),
                                item,
                                stats.clone(),
                            ));
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::warn!("cannot claim from the outbox: {e}");
                        idle = true;
                    }
                    Err(e) => {
                        tracing::warn!("the outbox claim stopped: {e}");
                        idle = true;
                    }
                }
            }
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                if done == Some(State::Delivered) {
                    delivered += 1;
                }
            }
            () = wake.notified(), if !stopping => idle = false,
            () = tokio::time::sleep_until(next_poll), if !stopping => {
                idle = false;
                next_poll = tokio::time::Instant::now() + POLL;
            }
            _ = stop.changed(), if !stopping => {}
        }
    }
    delivered
}

/// The most emails the worker claims in one transaction.
pub const CLAIM_BATCH: usize = 4;

/// How often `serve` removes the delivered emails older than `keep_delivered_days`.
pub const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Removes delivered emails kept longer than the settings' `keep_delivered_days` (the current
/// settings: a reload applies at the next round), at start and every [`PURGE_EVERY`], until
/// `stop`. Failed emails are kept until the administrator retries or deletes them.
async fn purge_loop(
    current: &std::sync::RwLock<Arc<Deliverer<'_>>>,
    outbox: Arc<Outbox>,
    mut stop: watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        let keep = current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .settings()
            .keep_delivered();
        let o = outbox.clone();
        match tokio::task::spawn_blocking(move || o.purge_delivered(keep)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => eprintln!(
                "removed {n} delivered email{} kept over {} days",
                if n == 1 { "" } else { "s" },
                keep.as_secs() / 86_400
            ),
            Ok(Err(e)) => tracing::warn!("cannot remove old delivered emails: {e}"),
            Err(e) => tracing::warn!("removing old delivered emails stopped: {e}"),
        }
        tokio::select! {
            () = tokio::time::sleep(PURGE_EVERY) => {}
            _ = stop.wait_for(|stop| *stop) => {}
        }
    }
}

/// Delivers one claimed email and records its attempt (or, when no sender was tried because
/// the service is stopping, hands the claim back untried); renews its claim every third of a
/// lease meanwhile. Counts the attempt for `/metrics` and says it on stderr. Returns the
/// email's new state, none when nothing was recorded.
async fn deliver_one(
    deliverer: Arc<Deliverer<'_>>,
    outbox: Arc<Outbox>,
    item: scan2x_mail_outbox::Claimed,
    stats: SharedStats,
) -> Option<State> {
    let held = Arc::new(std::sync::Mutex::new(item.locked_until));
    let renewing = keep_claimed(outbox.clone(), item.id.clone(), held.clone());
    let attempt = tokio::select! {
        attempt = deliverer.try_deliver(&item) => attempt,
        never = renewing => match never {},
    };
    let Some(attempt) = attempt else {
        let held = *held.lock().unwrap_or_else(|e| e.into_inner());
        hand_back(&outbox, item.id, held).await;
        return None;
    };
    let (o, id) = (outbox.clone(), item.id.clone());
    let outcome = attempt.outcome.kind();
    let sender = attempt.outcome.sender().to_string();
    let recorded = tokio::task::spawn_blocking(move || {
        let state = o.record(&id, attempt)?;
        // Its submit time, for the delivery histogram.
        let created = (state == State::Delivered)
            .then(|| o.show(&id).ok().map(|d| d.summary.created_at))
            .flatten();
        Ok::<_, OutboxError>((state, created))
    });
    match recorded.await {
        Ok(Ok((state, created))) => {
            {
                let mut stats = stats.lock().unwrap_or_else(|e| e.into_inner());
                *stats
                    .attempts
                    .entry((sender.clone(), outcome.to_string()))
                    .or_default() += 1;
                if let Some(created) = created {
                    let took = std::time::SystemTime::now()
                        .duration_since(created)
                        .unwrap_or_default();
                    stats.delivery.observe(took.as_secs_f64());
                }
            }
            let line = QueueRunEmail {
                id: item.id.clone(),
                message_id: bare_message_id(&item.message_id),
                sender,
                outcome: outcome.to_string(),
                state: state.to_string(),
            };
            eprintln!("{}", secret::redact(&line.to_string()));
            Some(state)
        }
        // The email stays claimed until its lease ends, then is queued again.
        Err(e) => {
            tracing::warn!("recording the attempt of {} stopped: {e}", item.id);
            None
        }
        Ok(Err(e)) => {
            tracing::warn!("cannot record the attempt of {}: {e}", item.id);
            None
        }
    }
}

/// Gives the claim on `id` (held until `held`) back to the queue untried; a failure is only
/// said: the claim then comes back when its lease ends or its owner is gone.
async fn hand_back(outbox: &Arc<Outbox>, id: String, held: std::time::SystemTime) {
    let o = outbox.clone();
    let given = tokio::task::spawn_blocking(move || o.hand_back(&id, held)).await;
    match given {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!("cannot hand an email back to the queue: {e}"),
        Err(e) => tracing::warn!("handing an email back stopped: {e}"),
    }
}

/// Renews the claim on `id` every third of the outbox's lease, `held` its current end; never
/// returns. A claim found lost (its lease ran out while this process was stalled) is said once
/// and no longer renewed: the delivery goes on and its attempt is recorded all the same.
async fn keep_claimed(
    outbox: Arc<Outbox>,
    id: String,
    held: Arc<std::sync::Mutex<std::time::SystemTime>>,
) -> std::convert::Infallible {
    let every = outbox.options().lease / 3;
    loop {
        tokio::time::sleep(every).await;
        let until = *held.lock().unwrap_or_else(|e| e.into_inner());
        let (o, i) = (outbox.clone(), id.clone());
        match tokio::task::spawn_blocking(move || o.renew(&i, until)).await {
            Ok(Ok(Some(renewed))) => *held.lock().unwrap_or_else(|e| e.into_inner()) = renewed,
            Ok(Ok(None)) => {
                tracing::warn!("the claim on {id} ran out before its delivery ended");
                return std::future::pending().await;
            }
            Ok(Err(e)) => tracing::warn!("cannot renew the claim on {id}: {e}"),
            Err(e) => tracing::warn!("renewing the claim on {id} stopped: {e}"),
        }
    }
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
            runtime: Arc::new(Runtime::new(None, crate::runtime::Limits::default()).unwrap()),
            config: data.join("settings.toml"),
            outbox: Arc::new(Outbox::open(data.join("data")).unwrap()),
            allowed,
            wake: Arc::new(Notify::new()),
            settings: Arc::new(std::sync::RwLock::new(Arc::new(
                Settings::parse(
                    &data.join("settings.toml"),
                    "[senders.relay]\nplugin = \"smtp\"\n",
                )
                .unwrap(),
            ))),
            reload: None,
            stats: SharedStats::default(),
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
