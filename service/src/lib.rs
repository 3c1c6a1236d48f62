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
//! | `GET /v1/messages?state=S` | 200 the `queue list --json` array (`state` optional) |
//! | `GET /v1/messages/{id}` | 200 `queue show --json` |
//! | `POST /v1/messages/{id}/retry` | 200 `{action: "retried", ids}` |
//! | `DELETE /v1/messages/{id}` | 200 `{action: "deleted", ids}` |
//!
//! `POST /v1/messages` takes the `--message` JSON as its body (an object; unknown fields are
//! refused by the host) and an optional `Idempotency-Key` header. Every `/v1` request needs
//! `Authorization: Bearer <token>` ([`Token`]). Bodies are bounded ([`Config::body_limit`]).
//!
//! # Errors
//!
//! Every error is `{"error": {"kind", "message"}}`, as `--json` prints a failure, with `field`
//! beside them when the host can name the request's field at fault. The status comes from the
//! kind ([`status_of`]):
//!
//! | kind | status |
//! |---|---|
//! | `usage` (a malformed request: not JSON, a wrong type, an unknown field or query parameter, an attachment path not allowed) | 400 |
//! | `unauthorized` (no token, or the wrong one) | 401 |
//! | `not-found` (no such email, no such endpoint) | 404 |
//! | `method-not-allowed` | 405 |
//! | `conflict` (the email is in the wrong state for the request) | 409 |
//! | `too-large` (a body over the bound) | 413 |
//! | `invalid-message` (an address, an attachment, the size: what `submit` exits 4 for) | 422 |
//! | anything else (`internal`, `invalid-settings`, …) | 500 |

use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// What the API reports when a request fails: the host's failure kind (or one of the API's own,
/// see the crate's table), a message for the caller, and the request's field at fault if known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: String,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
            field: None,
        }
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
        "invalid-message" => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = json_response(status_of(&self.kind), &self.to_json());
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
    /// `POST /v1/messages`: `draft` is the request body (a JSON object, the `--message` JSON),
    /// `idempotency_key` the `Idempotency-Key` header. The answer is the submit report; its
    /// `duplicate` field decides 200 (true) or 201.
    fn submit(
        &self,
        draft: Value,
        idempotency_key: Option<String>,
    ) -> impl Future<Output = Result<Value, ApiError>> + Send;
    /// `GET /v1/messages/{id}`: `queue show --json`.
    fn get(&self, id: String) -> impl Future<Output = Result<Value, ApiError>> + Send;
    /// `GET /v1/messages?state=…`: `queue list --json`.
    fn list(&self, state: Option<String>) -> impl Future<Output = Result<Value, ApiError>> + Send;
    /// `POST /v1/messages/{id}/retry`.
    fn retry(&self, id: String) -> impl Future<Output = Result<Value, ApiError>> + Send;
    /// `DELETE /v1/messages/{id}`.
    fn delete(&self, id: String) -> impl Future<Output = Result<Value, ApiError>> + Send;
    /// `GET /healthz`: an object said beside `"ok": true`, or the error that makes it 500.
    fn health(&self) -> impl Future<Output = Result<Value, ApiError>> + Send;
}

/// How the API behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// The bearer token every `/v1` request must carry ([`Token`]).
    pub token: Token,
    /// The largest request body taken, in bytes; above it: 413. Default 1 MiB.
    pub body_limit: usize,
}

impl Config {
    pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

    pub fn new(token: Token) -> Self {
        Self {
            token,
            body_limit: Self::DEFAULT_BODY_LIMIT,
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

/// The API's routes over `backend`.
pub fn router<B: Backend>(backend: Arc<B>, config: Config) -> Router {
    let limit = config.body_limit;
    let state: AppState<B> = Arc::new(Shared { backend, config });
    let v1 = Router::new()
        .route("/v1/messages", post(submit::<B>).get(list::<B>))
        .route("/v1/messages/{id}", get(show::<B>).delete(delete::<B>))
        .route("/v1/messages/{id}/retry", post(retry::<B>))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            authorize::<B>,
        ));
    Router::new()
        .route("/healthz", get(health::<B>))
        .merge(v1)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes; then stops accepting and lets the
/// requests in flight finish.
pub async fn serve<B: Backend>(
    listener: tokio::net::TcpListener,
    backend: Arc<B>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
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

async fn submit<B: Backend>(
    State(state): State<AppState<B>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let result = async {
        let body = body_of(body)?;
        let draft = json_object(&body)?;
        let key = match headers.get("idempotency-key") {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .filter(|k| !k.trim().is_empty())
                    .ok_or_else(|| {
                        ApiError::new(
                            "usage",
                            "the Idempotency-Key header must be non-empty visible ASCII",
                        )
                        .with_field("Idempotency-Key")
                    })?
                    .trim()
                    .to_string(),
            ),
        };
        state.backend.submit(draft, key).await
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
fn state_param(query: Option<&str>) -> Result<Option<String>, ApiError> {
    let mut state = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("state", value)) if !value.is_empty() => state = Some(value.to_string()),
            Some(("state", _)) | None if pair.starts_with("state") => {
                return Err(ApiError::new("usage", "`state` needs a value").with_field("state"));
            }
            _ => {
                let name = pair.split('=').next().unwrap_or(pair);
                return Err(ApiError::new(
                    "usage",
                    format!("unknown query parameter `{name}`: only `state` is taken"),
                )
                .with_field(name));
            }
        }
    }
    Ok(state)
}

async fn list<B: Backend>(State(state): State<AppState<B>>, RawQuery(query): RawQuery) -> Response {
    match state_param(query.as_deref()) {
        Ok(wanted) => answer(state.backend.list(wanted).await),
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

#[cfg(test)]
mod tests;
