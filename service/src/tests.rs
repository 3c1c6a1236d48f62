//! The router over a fake backend, without a socket: the token, the statuses, the error shape,
//! the body bound, the query.

use std::sync::Mutex;

use axum::body::Body;
use axum::http::{Method, Request as HttpRequest};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

use super::*;

#[derive(Default)]
struct Fake {
    submitted: Mutex<Vec<(Value, Option<String>)>>,
}

impl Backend for Fake {
    async fn submit(&self, draft: Value, key: Option<String>) -> Result<Value, ApiError> {
        if draft.get("bogus").is_some() {
            return Err(ApiError::new("usage", "unknown field `bogus`").with_field("bogus"));
        }
        let mut all = self.submitted.lock().unwrap();
        let duplicate = key.is_some() && all.iter().any(|(_, k)| *k == key);
        if !duplicate {
            all.push((draft, key));
        }
        Ok(json!({"id": "1", "message_id": "m@x", "duplicate": duplicate}))
    }
    async fn get(&self, id: String) -> Result<Value, ApiError> {
        match id.as_str() {
            "1" => Ok(json!({"id": "1", "state": "queued"})),
            _ => Err(ApiError::new("not-found", format!("no email {id}"))),
        }
    }
    async fn list(&self, state: Option<String>) -> Result<Value, ApiError> {
        Ok(json!([{"state": state}]))
    }
    async fn retry(&self, id: String) -> Result<Value, ApiError> {
        Err(ApiError::new("conflict", format!("{id} is queued")))
    }
    async fn delete(&self, id: String) -> Result<Value, ApiError> {
        Ok(json!({"action": "deleted", "ids": [id]}))
    }
    async fn health(&self) -> Result<Value, ApiError> {
        Ok(json!({"queued": 0}))
    }
}

const TOKEN: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn app(fake: Arc<Fake>) -> Router {
    let mut config = Config::new(Token(TOKEN.into()));
    config.body_limit = 1000;
    router(fake, config)
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: &str,
    extra: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut request = HttpRequest::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    for (k, v) in extra {
        request = request.header(*k, *v);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    (status, value)
}

fn kind(v: &Value) -> &str {
    v["error"]["kind"]
        .as_str()
        .unwrap_or_else(|| panic!("no error kind in {v}"))
}

#[tokio::test]
async fn every_v1_request_needs_the_token_and_healthz_does_not() {
    let fake = Arc::new(Fake::default());
    let app = app(fake.clone());
    let (s, v) = call(&app, Method::POST, "/v1/messages", None, "{}", &[]).await;
    assert_eq!(
        (s, kind(&v)),
        (StatusCode::UNAUTHORIZED, "unauthorized"),
        "{v}"
    );
    let wrong = TOKEN.replace('0', "1");
    let (s, v) = call(&app, Method::GET, "/v1/messages", Some(&wrong), "", &[]).await;
    assert_eq!(
        (s, kind(&v)),
        (StatusCode::UNAUTHORIZED, "unauthorized"),
        "{v}"
    );
    let lower = [("authorization", &*format!("bearer {TOKEN}"))];
    let (s, _) = call(&app, Method::GET, "/v1/messages/1", None, "", &lower).await;
    assert_eq!(s, StatusCode::OK, "the scheme is case-insensitive");
    let basic = [("authorization", "Basic YWxpY2U6cGFzcw==")];
    let (s, _) = call(&app, Method::GET, "/v1/messages/1", None, "", &basic).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = call(&app, Method::GET, "/v1/messages/1", Some("short"), "", &[]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(fake.submitted.lock().unwrap().is_empty());
    let (s, v) = call(&app, Method::GET, "/healthz", None, "", &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, json!({"ok": true, "queued": 0}));
}

#[tokio::test]
async fn a_submit_is_201_then_200_when_its_key_repeats() {
    let fake = Arc::new(Fake::default());
    let app = app(fake.clone());
    let key = [("idempotency-key", "job-1")];
    let (s, v) = call(
        &app,
        Method::POST,
        "/v1/messages",
        Some(TOKEN),
        r#"{"to":[]}"#,
        &key,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["duplicate"], false);
    let (s, v) = call(
        &app,
        Method::POST,
        "/v1/messages",
        Some(TOKEN),
        r#"{"to":[]}"#,
        &key,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["duplicate"], true);
    let submitted = fake.submitted.lock().unwrap();
    assert_eq!(submitted.len(), 1);
    assert_eq!(submitted[0].1.as_deref(), Some("job-1"));
}

#[tokio::test]
async fn malformed_bodies_are_400_with_the_error_shape_and_reach_no_backend() {
    let fake = Arc::new(Fake::default());
    let app = app(fake.clone());
    for (body, says) in [
        ("{\"to\": [", "line 1"),
        ("[1, 2]", "JSON object"),
        ("", "EOF"),
    ] {
        let (s, v) = call(&app, Method::POST, "/v1/messages", Some(TOKEN), body, &[]).await;
        assert_eq!(
            (s, kind(&v)),
            (StatusCode::BAD_REQUEST, "usage"),
            "{body}: {v}"
        );
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
    let (s, v) = call(
        &app,
        Method::POST,
        "/v1/messages",
        Some(TOKEN),
        r#"{"bogus":1}"#,
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["field"], "bogus");
    assert!(fake.submitted.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_body_over_the_bound_is_413() {
    let fake = Arc::new(Fake::default());
    let app = app(fake.clone());
    let big = format!(r#"{{"text": "{}"}}"#, "x".repeat(2000));
    let (s, v) = call(&app, Method::POST, "/v1/messages", Some(TOKEN), &big, &[]).await;
    assert_eq!(
        (s, kind(&v)),
        (StatusCode::PAYLOAD_TOO_LARGE, "too-large"),
        "{v}"
    );
    assert!(fake.submitted.lock().unwrap().is_empty());
}

#[tokio::test]
async fn each_kind_has_its_status_and_unknown_routes_keep_the_shape() {
    let app = app(Arc::new(Fake::default()));
    let (s, v) = call(&app, Method::GET, "/v1/messages/9", Some(TOKEN), "", &[]).await;
    assert_eq!((s, kind(&v)), (StatusCode::NOT_FOUND, "not-found"));
    let (s, v) = call(
        &app,
        Method::POST,
        "/v1/messages/1/retry",
        Some(TOKEN),
        "",
        &[],
    )
    .await;
    assert_eq!((s, kind(&v)), (StatusCode::CONFLICT, "conflict"));
    let (s, v) = call(&app, Method::DELETE, "/v1/messages/1", Some(TOKEN), "", &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["ids"], json!(["1"]));
    let (s, v) = call(&app, Method::GET, "/v2/nothing", Some(TOKEN), "", &[]).await;
    assert_eq!((s, kind(&v)), (StatusCode::NOT_FOUND, "not-found"));
    let (s, v) = call(&app, Method::PUT, "/v1/messages", Some(TOKEN), "", &[]).await;
    assert_eq!(
        (s, kind(&v)),
        (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed")
    );
    assert_eq!(
        status_of("invalid-message"),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(status_of("internal"), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn the_list_takes_state_and_nothing_else() {
    let app = app(Arc::new(Fake::default()));
    let (s, v) = call(
        &app,
        Method::GET,
        "/v1/messages?state=failed",
        Some(TOKEN),
        "",
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, json!([{"state": "failed"}]));
    let (s, v) = call(&app, Method::GET, "/v1/messages", Some(TOKEN), "", &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, json!([{"state": null}]));
    let (s, v) = call(
        &app,
        Method::GET,
        "/v1/messages?limit=3",
        Some(TOKEN),
        "",
        &[],
    )
    .await;
    assert_eq!((s, kind(&v)), (StatusCode::BAD_REQUEST, "usage"));
    assert_eq!(v["error"]["field"], "limit");
}

#[test]
fn the_token_is_made_once_0600_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let first = Token::load_or_create(dir.path()).unwrap();
    assert_eq!(first.expose().len(), 64);
    let again = Token::load_or_create(dir.path()).unwrap();
    assert_eq!(first.expose(), again.expose());
    assert!(first.matches(again.expose()));
    assert!(!first.matches(&first.expose()[1..]));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join(Token::FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    std::fs::write(dir.path().join(Token::FILE), "short\n").unwrap();
    assert!(Token::load_or_create(dir.path()).is_err());
}
