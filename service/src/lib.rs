//! The local HTTP API of `scan2x-mail serve`: routes, the bearer token, bounded bodies and the
//! one error shape. It holds the HTTP layer only: what an endpoint does is the host's, behind the
//! [`Backend`] trait (the host's `serve` module implements it over the outbox). This crate never
//! depends on the host crate or the wasm runtime; the host depends on it.
//!
//! # Endpoints
//!
//! | request | answer |
//! |---|---|
//! | `GET /healthz` (no token) | 200 `{"ok": true}` |
//! | `POST /v1/messages` | 201 the submit report `{id, message_id, duplicate}`; 200 when `duplicate` |
//! | `GET /v1/messages?state=S&limit=N` | 200 the `queue list --json` array, oldest first (`state` optional; `limit` 1 to [`MAX_LIST`], its default) |
//! | `GET /v1/messages/{id}` | 200 `queue show --json` |
//! | `POST /v1/messages/{id}/retry` | 200 `{action: "retried", ids}` |
//! | `DELETE /v1/messages/{id}` | 200 `{action: "deleted", ids}` |
//! | `GET /v1/senders` | 200 `check --json` (the settings file read now, every sender made) |
//! | `GET /v1/plugins` | 200 `plugins --json` |
//! | `GET /v1/route?event=E&sender=S&job=J&job_source=S&job_recipient=A…` | 200 `route --json` |
//! | `POST /v1/senders/{name}/test` | 200 `test NAME --json`; 404 when no sender has that name |
//! | `POST /v1/send` | 200 `send --json` of an email sent (partly sent too); a failure: see below |
//! | `GET /v1/openapi.json` | 200 the OpenAPI 3.1 document of every endpoint ([`OPENAPI`]) |
//! | `GET /metrics` | 200 Prometheus text ([`Metrics`]): the queue, the attempts, delivery times |
//! | `POST /v1/reload` | 200 `{reloaded: true, senders}`; 422 `invalid-settings` when the file is refused |
//!
//! `POST /v1/messages` takes the `--message` JSON as its body (an object; unknown fields are
//! refused by the host) and an optional `Idempotency-Key` header; or, as
//! `multipart/form-data`, that JSON as a part named `message` and files as parts named
//! `attachment`, streamed to disk as they arrive (the [`upload`] module; attached after the
//! JSON's own attachment paths, in upload order). Every `/v1` request (and `/metrics`) needs
//! `Authorization: Bearer <token>` ([`Token`]). Bodies are bounded ([`Config::body_limit`]; a
//! multipart body by [`Config::upload_limit`], [`Config::max_uploads`] and
//! [`Config::max_filename_bytes`] too), and so are the connections open at once
//! ([`Config::max_connections`], the [`listener`] module).
//!
//! `GET /v1/route` takes the route command's options as query parameters (percent-encoded;
//! `job_recipient` repeatable, `-` or `_` in the names): an unknown one is `usage` (400).
//! `POST /v1/send` takes the `--message` JSON as `POST /v1/messages` does and delivers it now,
//! without the queue. An email not sent answers `send --json`'s not-sent report (its `error` is
//! the error shape, beside the sender, the Message-ID and every attempt) with its kind's status;
//! a `temporary` failure with `Retry-After` when the server asked for a wait.
//!
//! # Errors
//!
//! Every error is `{"error": {"kind", "message"}}`, as `--json` prints a failure, with `field`
//! beside them when the host can name the request's field at fault. The status comes from the
//! kind ([`status_of`]):
//!
//! | kind | status |
//! |---|---|
//! | `usage` (a malformed request: not JSON, a wrong type, an unknown field, part or query parameter, an attachment path or filename not allowed) | 400 |
//! | `unauthorized` (no token, or the wrong one) | 401 |
//! | `not-found` (no such email, no such endpoint) | 404 |
//! | `method-not-allowed` | 405 |
//! | `conflict` (the email is in the wrong state for the request) | 409 |
//! | `too-large` (a body over the bound; a multipart body's part, files or count over theirs) | 413 |
//! | `unsupported-type` (a `multipart/*` body other than `multipart/form-data`) | 415 |
//! | `invalid-message` (an address, an attachment, the size: what `submit` exits 4 for) | 422 |
//! | `rejected` (the server refused the email for good) | 422 |
//! | `denied` (the sandbox refused the sender that destination) | 403 |
//! | `auth-failed`, `plugin-failed` (the server refused the login; the plugin failed) | 502 |
//! | `uncertain` (the server may have taken the email: do not send it again blindly) | 502 |
//! | `temporary` (try again later; `Retry-After` when the server said when) | 503 |
//! | anything else (`internal`, `invalid-settings`, …) | 500 |

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{
    DefaultBodyLimit, FromRequest as _, Path as UrlPath, RawQuery, Request, State,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use serde_json::{Value, json};

pub mod listener;
pub mod upload;
pub use upload::{Upload, Uploads};

/// What the API reports when a request fails: the host's failure kind (or one of the API's own,
/// see the crate's table), a message for the caller, and the request's field at fault if known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: String,
    pub message: String,
    pub field: Option<String>,
    /// Seconds the server asked to wait (`temporary`): said as `Retry-After`.
    pub retry_after_secs: Option<u32>,
    /// The whole body to answer with instead of [`ApiError::to_json`] (one that holds the
    /// error shape, such as `send`'s not-sent report).
    pub body: Option<Value>,
}

impl ApiError {
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
            field: None,
            retry_after_secs: None,
            body: None,
        }
    }

    pub fn with_retry_after(mut self, secs: Option<u32>) -> Self {
        self.retry_after_secs = secs;
        self
    }

    pub fn with_body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// `{"error": {"kind", "message"[, "field"]}}`.
    pub fn to_json(&self) -> Value {
        let mut error = json!({ "kind": self.kind, "message": self.message });
        if let Some(field) = &self.field {
            error["field"] = json!(field);
        }
        json!({ "error": error })
    }
}

/// The HTTP status of an error's kind: the crate's table.
pub fn status_of(kind: &str) -> StatusCode {
    match kind {
        "usage" => StatusCode::BAD_REQUEST,
        "unauthorized" => StatusCode::UNAUTHORIZED,
        "not-found" => StatusCode::NOT_FOUND,
        "method-not-allowed" => StatusCode::METHOD_NOT_ALLOWED,
        "conflict" => StatusCode::CONFLICT,
        "too-large" => StatusCode::PAYLOAD_TOO_LARGE,
        "unsupported-type" => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "invalid-message" | "rejected" => StatusCode::UNPROCESSABLE_ENTITY,
        "denied" => StatusCode::FORBIDDEN,
        "auth-failed" | "plugin-failed" | "uncertain" => StatusCode::BAD_GATEWAY,
        "temporary" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body.clone().unwrap_or_else(|| self.to_json());
        let mut response = json_response(status_of(&self.kind), &body);
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.kind == "unauthorized" {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"scan2x-mail\""),
            );
        }
        response
    }
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    let body = serde_json::to_string_pretty(value).expect("JSON of plain values");
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body + "\n",
    )
        .into_response()
}

/// What the API needs of the host. Each call answers with the JSON of the host's report (the
/// same value `--json` prints) or an [`ApiError`]. The calls may block on the outbox: the host
/// moves them off the async threads itself.
pub trait Backend: Send + Sync + 'static {
    /// `POST /v1/messages`: `draft` is the request body (a JSON object, the `--message` JSON)
    /// or its `message` part, `uploads` the files of its `attachment` parts (none for a JSON
    /// body), attached after the draft's own attachments in their order, `idempotency_key` the
    /// `Idempotency-Key` header. The answer is the submit report; its `duplicate` field decides
    /// 200 (true) or 201. The staged files are removed when `uploads` is dropped: keep it until
    /// they are copied.
    fn submit(
        &self,
        draft: Value,
        uploads: Uploads,
        idempotency_key: Option<String>,
    ) -> impl Future<Output = Result<Value, ApiError>> + Send;
    /// The folder uploaded files are staged in, one folder per request, inside the data folder;
    /// made when first needed. [`serve`] clears what a crash left there when it starts.
    fn upload_dir(&self) -> PathBuf;
    /// `GET /v1/messages/{id}`: `queue show --json`.
    fn get(&self, id: String) -> impl Future<Output = Result<Value, ApiError>> + Send;
    /// `GET /v1/messages?state=…&limit=N`: `queue list --json`, at most the first `limit`
    /// emails in its order (oldest first).
    fn list(
        &self,
        state: Option<String>,
        limit: usize,
    ) -> impl Future<Output = Result<Value, ApiError>> + Send;
    /// `POST /v1/messages/{id}/retry`.
    fn retry(&self, id: String) -> impl Future<Output = Result<Value, ApiError>> + Send;
    /// `DELETE /v1/messages/{id}`.
    fn delete(&self, id: String) -> impl Future<Output = Result<Value, ApiError>> + Send;
    /// `GET /healthz`: an object said beside `"ok": true`, or the error that makes it 500.
    fn health(&self) -> impl Future<Output = Result<Value, ApiError>> + Send;
    /// `GET /v1/senders`: `check --json`.
    fn senders(&self) -> impl Future<Output = Result<Value, ApiError>> + Send;
    /// `GET /v1/plugins`: `plugins --json`.
    fn plugins(&self) -> impl Future<Output = Result<Value, ApiError>> + Send;
    /// `GET /v1/route?…`: `route --json` of what the query says.
    fn route(&self, query: RouteQuery) -> impl Future<Output = Result<Value, ApiError>> + Send;
    /// `POST /v1/senders/{name}/test`: `test NAME --json`; an unknown name is `not-found`.
    fn test_sender(&self, name: String) -> impl Future<Output = Result<Value, ApiError>> + Send;
    /// `POST /v1/send`: `draft` (the `--message` JSON) delivered now; the answer is `send
    /// --json`'s report of an email sent, an email not sent is an error (its kind's status) with
    /// the not-sent report as its [`ApiError::body`].
    fn send(&self, draft: Value) -> impl Future<Output = Result<Value, ApiError>> + Send;
    /// `POST /v1/reload`: the settings read and assembled anew and, if they are good, used from
    /// now on; an `invalid-settings` error (the file refused, the old settings still in use) is
    /// answered 422.
    fn reload(&self) -> impl Future<Output = Result<Value, ApiError>> + Send;
    /// `GET /metrics`: the numbers, which the API writes as Prometheus text.
    fn metrics(&self) -> impl Future<Output = Result<Metrics, ApiError>> + Send;
}

/// What `GET /metrics` says, in the Prometheus text format ([`Metrics::to_text`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// `scan2x_mail_queue_messages{state}`: how many emails the outbox holds in each state.
    pub queue: Vec<(String, u64)>,
    /// `scan2x_mail_attempts_total{sender,outcome}`: attempts made since the service started.
    pub attempts: std::collections::BTreeMap<(String, String), u64>,
    /// `scan2x_mail_delivery_seconds`: from submit to delivered, per email delivered.
    pub delivery_seconds: Histogram,
}

/// A Prometheus histogram: counts per upper bound (not cumulative here; the text is), their sum.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub bounds: Vec<f64>,
    /// One count per bound, then one for above every bound.
    pub counts: Vec<u64>,
    pub sum: f64,
}

impl Default for Histogram {
    /// Bounds for email delivery: a second to a day.
    fn default() -> Self {
        Histogram::new(vec![
            1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0,
        ])
    }
}

impl Histogram {
    pub fn new(bounds: Vec<f64>) -> Self {
        let counts = vec![0; bounds.len() + 1];
        Histogram {
            bounds,
            counts,
            sum: 0.0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.sum += value;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// A label value escaped as the text format wants (`\`, `"`, newline).
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// The Prometheus text exposition format (0.0.4), each metric with `# HELP` and `# TYPE`.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        out += "# HELP scan2x_mail_queue_messages Emails in the outbox, by state.\n";
        out += "# TYPE scan2x_mail_queue_messages gauge\n";
        for (state, n) in &self.queue {
            let _ = writeln!(
                out,
                "scan2x_mail_queue_messages{{state=\"{}\"}} {n}",
                label(state)
            );
        }
        out += "# HELP scan2x_mail_attempts_total Delivery attempts since the service started, by sender and outcome.\n";
        out += "# TYPE scan2x_mail_attempts_total counter\n";
        for ((sender, outcome), n) in &self.attempts {
            let _ = writeln!(
                out,
                "scan2x_mail_attempts_total{{sender=\"{}\",outcome=\"{}\"}} {n}",
                label(sender),
                label(outcome)
            );
        }
        let h = &self.delivery_seconds;
        out += "# HELP scan2x_mail_delivery_seconds Seconds from submit to delivered, per email delivered since the service started.\n";
        out += "# TYPE scan2x_mail_delivery_seconds histogram\n";
        let mut cumulative = 0;
        for (bound, n) in h.bounds.iter().zip(&h.counts) {
            cumulative += n;
            let _ = writeln!(
                out,
                "scan2x_mail_delivery_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "scan2x_mail_delivery_seconds_bucket{{le=\"+Inf\"}} {}",
            h.count()
        );
        let _ = writeln!(out, "scan2x_mail_delivery_seconds_sum {}", h.sum);
        let _ = writeln!(out, "scan2x_mail_delivery_seconds_count {}", h.count());
        out
    }
}

/// The query of `GET /v1/route`: the route command's options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteQuery {
    pub event: Option<String>,
    pub sender: Option<String>,
    pub job: Option<String>,
    pub job_source: Option<String>,
    pub job_recipient: Vec<String>,
}

impl RouteQuery {
    /// The parameters the query takes.
    pub const NAMES: [&'static str; 5] = ["event", "sender", "job", "job_source", "job_recipient"];

    /// `query` parsed: percent-decoded (`+` a space), `-` in a name read as `_`; an unknown
    /// parameter, an empty value, a single one given twice or bad percent-encoding is `usage`.
    pub fn parse(query: Option<&str>) -> Result<RouteQuery, ApiError> {
        let mut q = RouteQuery::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = percent_decode(raw_name)?.replace('-', "_");
            let value = percent_decode(raw_value)?;
            if !Self::NAMES.contains(&name.as_str()) {
                return Err(ApiError::new(
                    "usage",
                    format!(
                        "unknown query parameter `{name}`: this endpoint takes {}",
                        Self::NAMES.join(", ")
                    ),
                )
                .with_field(name));
            }
            if value.is_empty() {
                return Err(
                    ApiError::new("usage", format!("`{name}` needs a value")).with_field(name)
                );
            }
            let slot = match name.as_str() {
                "event" => &mut q.event,
                "sender" => &mut q.sender,
                "job" => &mut q.job,
                "job_source" => &mut q.job_source,
                _ => {
                    q.job_recipient.push(value);
                    continue;
                }
            };
            if slot.replace(value).is_some() {
                return Err(
                    ApiError::new("usage", format!("`{name}` is given more than once"))
                        .with_field(name),
                );
            }
        }
        Ok(q)
    }
}

/// A query's `%XX` escapes and `+` decoded; what does not decode to UTF-8 is `usage`.
fn percent_decode(text: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::new(
            "usage",
            format!("the query has bad percent-encoding: {text}"),
        )
    };
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
                let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// How the API behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// The bearer token every `/v1` request must carry ([`Token`]).
    pub token: Token,
    /// The largest request body taken, in bytes, and the largest `message` part of a multipart
    /// body; above it: 413. Default 1 MiB.
    pub body_limit: usize,
    /// The most bytes the `attachment` parts of one multipart body may hold together; above it:
    /// 413. Default 100 MiB, the outbox's bound on one email's attachments
    /// (`Options::max_message_bytes`).
    pub upload_limit: u64,
    /// The most `attachment` parts in one multipart body; one more: 413. Default 100.
    pub max_uploads: usize,
    /// The longest filename of an `attachment` part, in bytes (its last component, the only
    /// part taken); longer: 400. Default 255, what common file systems take.
    pub max_filename_bytes: usize,
    /// The most connections open at once; the next waits, unaccepted, until one closes
    /// ([`listener::Limited`]). Default 256.
    pub max_connections: usize,
}

impl Config {
    pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
    pub const DEFAULT_UPLOAD_LIMIT: u64 = 100 * 1024 * 1024;
    pub const DEFAULT_MAX_UPLOADS: usize = 100;
    pub const DEFAULT_MAX_FILENAME_BYTES: usize = 255;
    pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

    pub fn new(token: Token) -> Self {
        Self {
            token,
            body_limit: Self::DEFAULT_BODY_LIMIT,
            upload_limit: Self::DEFAULT_UPLOAD_LIMIT,
            max_uploads: Self::DEFAULT_MAX_UPLOADS,
            max_filename_bytes: Self::DEFAULT_MAX_FILENAME_BYTES,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// The API's bearer token: 32 random bytes as 64 hex digits, kept in the data folder.
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

impl Token {
    /// The name of the token's file in the data folder.
    pub const FILE: &'static str = "api-token";

    /// The token of `data_dir/api-token`: read when it exists, else made (32 bytes from the
    /// system's random source, hex) and written to a file created exclusively with mode 0600,
    /// so two first starts never overwrite each other's and no one else can read it.
    pub fn load_or_create(data_dir: &Path) -> io::Result<Token> {
        let path = data_dir.join(Self::FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => return Self::parse(&text, &path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
        let token = hex::encode(bytes);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&path) {
            Ok(mut file) => {
                use std::io::Write as _;
                file.write_all(format!("{token}\n").as_bytes())?;
                file.sync_all()?;
                Ok(Token(token))
            }
            // Another first start made it meanwhile: use that one.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Self::parse(&std::fs::read_to_string(&path)?, &path)
            }
            Err(e) => Err(e),
        }
    }

    fn parse(text: &str, path: &Path) -> io::Result<Token> {
        let token = text.trim();
        if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} does not hold a token (64 hex digits): remove it and a new one is made",
                    path.display()
                ),
            ));
        }
        Ok(Token(token.to_string()))
    }

    /// The token itself (for tests and for whoever hands it to a client).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `given` is this token, in time that depends only on the lengths.
    pub fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

struct Shared<B> {
    backend: Arc<B>,
    config: Config,
}

type AppState<B> = Arc<Shared<B>>;

/// The OpenAPI 3.1 document of the API, served at `GET /v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Every route: its path, whether it needs the token, its methods. The router is made of these,
/// and the OpenAPI document lists the same (the crate's tests check it).
fn routes<B: Backend>() -> Vec<(&'static str, bool, MethodRouter<AppState<B>>)> {
    vec![
        ("/healthz", false, get(health::<B>)),
        ("/metrics", true, get(metrics::<B>)),
        ("/v1/openapi.json", true, get(openapi)),
        ("/v1/messages", true, post(submit::<B>).get(list::<B>)),
        (
            "/v1/messages/{id}",
            true,
            get(show::<B>).delete(delete::<B>),
        ),
        ("/v1/messages/{id}/retry", true, post(retry::<B>)),
        ("/v1/senders", true, get(senders::<B>)),
        ("/v1/senders/{name}/test", true, post(test_sender::<B>)),
        ("/v1/plugins", true, get(plugins::<B>)),
        ("/v1/route", true, get(route::<B>)),
        ("/v1/send", true, post(send::<B>)),
        ("/v1/reload", true, post(reload::<B>)),
    ]
}

/// The API's routes over `backend`.
pub fn router<B: Backend>(backend: Arc<B>, config: Config) -> Router {
    let limit = config.body_limit;
    let state: AppState<B> = Arc::new(Shared { backend, config });
    let (mut open, mut guarded) = (Router::new(), Router::new());
    for (path, token, methods) in routes::<B>() {
        if token {
            guarded = guarded.route(path, methods);
        } else {
            open = open.route(path, methods);
        }
    }
    let guarded = guarded.route_layer(middleware::from_fn_with_state(
        state.clone(),
        authorize::<B>,
    ));
    open.merge(guarded)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn openapi() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

/// Serves the API on `listener` until `shutdown` completes; then stops accepting and lets the
/// requests in flight finish. First it clears the upload folder of what a crash left there
/// ([`upload::clear_stale`]).
pub async fn serve<B: Backend>(
    listener: tokio::net::TcpListener,
    backend: Arc<B>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let root = backend.upload_dir();
    let cleared = tokio::task::spawn_blocking(move || upload::clear_stale(&root))
        .await
        .unwrap_or(0);
    if cleared > 0 {
        tracing::info!("removed {cleared} upload folders a crash left");
    }
    let listener = listener::Limited::new(listener, config.max_connections);
    axum::serve(listener, router(backend, config))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn authorize<B: Backend>(
    State(state): State<AppState<B>>,
    request: Request,
    next: Next,
) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token);
    match given {
        Some(token) if state.config.token.matches(token.trim()) => next.run(request).await,
        Some(_) => {
            ApiError::new("unauthorized", "the bearer token is not this service's").into_response()
        }
        None => ApiError::new(
            "unauthorized",
            "every /v1 request needs `Authorization: Bearer <token>`; the token is in the \
             data folder's api-token file",
        )
        .into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError::new("not-found", "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        "method-not-allowed",
        "this endpoint does not take that method",
    )
}

async fn health<B: Backend>(State(state): State<AppState<B>>) -> Response {
    match state.backend.health().await {
        Ok(mut value) => {
            if let Some(map) = value.as_object_mut() {
                map.insert("ok".into(), json!(true));
            } else {
                value = json!({ "ok": true });
            }
            json_response(StatusCode::OK, &value)
        }
        Err(e) => e.into_response(),
    }
}

fn answer(result: Result<Value, ApiError>) -> Response {
    match result {
        Ok(value) => json_response(StatusCode::OK, &value),
        Err(e) => e.into_response(),
    }
}

/// A body read whole within the bound: a body over it is `too-large`.
fn body_of(
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new("too-large", "the request body is over the service's bound")
        } else {
            ApiError::new(
                "usage",
                format!("the request body cannot be read: {rejection}"),
            )
        }
    })
}

/// The body as one JSON object; a syntax error names its line and column as serde says them.
pub fn json_object(body: &[u8]) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::new("usage", format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::new(
            "usage",
            "the body must be a JSON object: the `--message` JSON",
        ));
    }
    Ok(value)
}

/// The `Idempotency-Key` header, trimmed; one that is empty or not visible ASCII is `usage`.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = v
        .to_str()
        .ok()
        .filter(|k| !k.trim().is_empty())
        .ok_or_else(|| {
            ApiError::new(
                "usage",
                "the Idempotency-Key header must be non-empty visible ASCII",
            )
            .with_field("Idempotency-Key")
        })?;
    Ok(Some(key.trim().to_string()))
}

/// The boundary of a `multipart/form-data` body; none for any other body (read as JSON). Any
/// other `multipart/*` type is `unsupported-type` (415).
fn multipart_boundary(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default();
    let essence = text
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "multipart/form-data" {
        multer::parse_boundary(text).map(Some).map_err(|e| {
            ApiError::new(
                "usage",
                format!("Content-Type multipart/form-data needs a boundary parameter: {e}"),
            )
        })
    } else if essence.starts_with("multipart/") {
        Err(ApiError::new(
            "unsupported-type",
            format!(
                "Content-Type {essence}: this endpoint takes application/json or \
                 multipart/form-data"
            ),
        ))
    } else {
        Ok(None)
    }
}

async fn submit<B: Backend>(State(state): State<AppState<B>>, request: Request) -> Response {
    let result = async {
        let key = idempotency_key(request.headers())?;
        let (draft, uploads) = match multipart_boundary(request.headers())? {
            Some(boundary) => {
                let root = state.backend.upload_dir();
                upload::read(&state.config, &root, request.into_body(), boundary).await?
            }
            None => {
                let body = body_of(Bytes::from_request(request, &()).await)?;
                (json_object(&body)?, Uploads::default())
            }
        };
        state.backend.submit(draft, uploads, key).await
    }
    .await;
    match result {
        Ok(report) => {
            let status = if report.get("duplicate") == Some(&Value::Bool(true)) {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            json_response(status, &report)
        }
        Err(e) => e.into_response(),
    }
}

/// The query's `state`, the only parameter `GET /v1/messages` takes.
/// The most emails one `GET /v1/messages` lists, and how many it lists without `limit`.
pub const MAX_LIST: usize = 1000;

/// `GET /v1/messages`' query: `state` (any value, the host checks it) and `limit` (1 to
/// [`MAX_LIST`], default [`MAX_LIST`]); any other parameter is `usage`.
fn list_params(query: Option<&str>) -> Result<(Option<String>, usize), ApiError> {
    let (mut state, mut limit) = (None, MAX_LIST);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "state" | "limit" if value.is_empty() => {
                return Err(
                    ApiError::new("usage", format!("`{name}` needs a value")).with_field(name)
                );
            }
            "state" => state = Some(value.to_string()),
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIST).contains(n))
                    .ok_or_else(|| {
                        ApiError::new(
                            "usage",
                            format!("`limit` must be a whole number from 1 to {MAX_LIST}: {value}"),
                        )
                        .with_field("limit")
                    })?;
            }
            _ => {
                return Err(ApiError::new(
                    "usage",
                    format!("unknown query parameter `{name}`: only `state` and `limit` are taken"),
                )
                .with_field(name));
            }
        }
    }
    Ok((state, limit))
}

async fn list<B: Backend>(State(state): State<AppState<B>>, RawQuery(query): RawQuery) -> Response {
    match list_params(query.as_deref()) {
        Ok((wanted, limit)) => answer(state.backend.list(wanted, limit).await),
        Err(e) => e.into_response(),
    }
}

async fn show<B: Backend>(
    State(state): State<AppState<B>>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    answer(state.backend.get(id).await)
}

async fn retry<B: Backend>(
    State(state): State<AppState<B>>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    answer(state.backend.retry(id).await)
}

async fn delete<B: Backend>(
    State(state): State<AppState<B>>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    answer(state.backend.delete(id).await)
}

async fn senders<B: Backend>(State(state): State<AppState<B>>) -> Response {
    answer(state.backend.senders().await)
}

async fn plugins<B: Backend>(State(state): State<AppState<B>>) -> Response {
    answer(state.backend.plugins().await)
}

async fn route<B: Backend>(
    State(state): State<AppState<B>>,
    RawQuery(query): RawQuery,
) -> Response {
    match RouteQuery::parse(query.as_deref()) {
        Ok(query) => answer(state.backend.route(query).await),
        Err(e) => e.into_response(),
    }
}

async fn test_sender<B: Backend>(
    State(state): State<AppState<B>>,
    UrlPath(name): UrlPath<String>,
) -> Response {
    answer(state.backend.test_sender(name).await)
}

async fn send<B: Backend>(
    State(state): State<AppState<B>>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let result = async {
        let body = body_of(body)?;
        let draft = json_object(&body)?;
        state.backend.send(draft).await
    }
    .await;
    answer(result)
}

async fn metrics<B: Backend>(State(state): State<AppState<B>>) -> Response {
    match state.backend.metrics().await {
        Ok(metrics) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            metrics.to_text(),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn reload<B: Backend>(State(state): State<AppState<B>>) -> Response {
    match state.backend.reload().await {
        Ok(value) => json_response(StatusCode::OK, &value),
        Err(e) => {
            let refused = e.kind == "invalid-settings";
            let mut response = e.into_response();
            if refused {
                *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            }
            response
        }
    }
}

#[cfg(test)]
mod tests;
