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
    routed: Mutex<Vec<RouteQuery>>,
    sent: Mutex<Vec<Value>>,
    reloads: Mutex<usize>,
}

impl Backend for Fake {
    async fn metrics(&self) -> Result<Metrics, ApiError> {
        let mut m = Metrics {
            queue: vec![("queued".into(), 2), ("delivered".into(), 1)],
            ..Metrics::default()
        };
        m.attempts
            .insert(("relay \"1\"".into(), "delivered".into()), 3);
        m.delivery_seconds.observe(0.5);
        m.delivery_seconds.observe(20.0);
        m.delivery_seconds.observe(1e6);
        Ok(m)
    }
    async fn reload(&self) -> Result<Value, ApiError> {
        let mut n = self.reloads.lock().unwrap();
        *n += 1;
        match *n {
            2 => Err(ApiError::new(
                "invalid-settings",
                "line 3: unknown key `hots`",
            )),
            _ => Ok(json!({"reloaded": true, "senders": ["office"]})),
        }
    }
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
    async fn senders(&self) -> Result<Value, ApiError> {
        Ok(json!({"ok": true, "senders": [{"name": "office"}]}))
    }
    async fn plugins(&self) -> Result<Value, ApiError> {
        Ok(json!({"plugins": [{"id": "smtp"}]}))
    }
    async fn route(&self, query: RouteQuery) -> Result<Value, ApiError> {
        self.routed.lock().unwrap().push(query);
        Ok(json!({"chosen": "office"}))
    }
    async fn test_sender(&self, name: String) -> Result<Value, ApiError> {
        match name.as_str() {
            "office" => Ok(json!({"sender": "office", "ok": true})),
            "cloud" => Err(ApiError::new("auth-failed", "535 no")),
            _ => Err(ApiError::new(
                "not-found",
                format!("no sender named {name}"),
            )),
        }
    }
    async fn send(&self, draft: Value) -> Result<Value, ApiError> {
        self.sent.lock().unwrap().push(draft.clone());
        let not_sent = |kind: &str| json!({"sender": "office", "error": {"kind": kind, "message": "no"}, "attempts": []});
        match draft["subject"].as_str() {
            Some("later") => Err(ApiError::new("temporary", "421 busy")
                .with_retry_after(Some(30))
                .with_body(not_sent("temporary"))),
            Some("maybe") => {
                Err(ApiError::new("uncertain", "lost").with_body(not_sent("uncertain")))
            }
            _ => Ok(json!({"sender": "office", "message_id": "m@x"})),
        }
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

/// Every endpoint this slice added, with a body it takes.
const NEW: [(&str, &str, &str); 6] = [
    ("POST", "/v1/reload", ""),
    ("GET", "/v1/senders", ""),
    ("GET", "/v1/plugins", ""),
    ("GET", "/v1/route?event=job-output", ""),
    ("POST", "/v1/senders/office/test", ""),
    ("POST", "/v1/send", r#"{"to":["a@example.test"]}"#),
];

#[tokio::test]
async fn the_settings_endpoints_need_the_token_and_answer_the_reports() {
    let fake = Arc::new(Fake::default());
    let app = app(fake.clone());
    for (method, uri, body) in NEW {
        let method: Method = method.parse().unwrap();
        let (s, v) = call(&app, method.clone(), uri, None, body, &[]).await;
        assert_eq!(
            (s, kind(&v)),
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            "{uri}"
        );
        let (s, v) = call(&app, method, uri, Some(TOKEN), body, &[]).await;
        assert_eq!(s, StatusCode::OK, "{uri}: {v}");
    }
    assert_eq!(
        fake.sent.lock().unwrap().len(),
        1,
        "only the authorized send"
    );
    let (_, v) = call(&app, Method::GET, "/v1/senders", Some(TOKEN), "", &[]).await;
    assert_eq!(v["senders"][0]["name"], "office");
    let (_, v) = call(&app, Method::GET, "/v1/plugins", Some(TOKEN), "", &[]).await;
    assert_eq!(v["plugins"][0]["id"], "smtp");
    let (s, _) = call(&app, Method::GET, "/v1/send", Some(TOKEN), "", &[]).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_test_of_an_unknown_sender_is_404_and_a_failed_one_its_kinds_status() {
    let app = app(Arc::new(Fake::default()));
    let (s, v) = call(
        &app,
        Method::POST,
        "/v1/senders/nobody/test",
        Some(TOKEN),
        "",
        &[],
    )
    .await;
    assert_eq!((s, kind(&v)), (StatusCode::NOT_FOUND, "not-found"));
    let (s, v) = call(
        &app,
        Method::POST,
        "/v1/senders/cloud/test",
        Some(TOKEN),
        "",
        &[],
    )
    .await;
    assert_eq!((s, kind(&v)), (StatusCode::BAD_GATEWAY, "auth-failed"));
    let (s, v) = call(
        &app,
        Method::POST,
        "/v1/senders/office/test",
        Some(TOKEN),
        "",
        &[],
    )
    .await;
    assert_eq!((s, v["ok"].clone()), (StatusCode::OK, json!(true)));
}

#[tokio::test]
async fn the_route_query_is_the_route_commands_options_and_nothing_else() {
    let fake = Arc::new(Fake::default());
    let app = app(fake.clone());
    let uri = "/v1/route?event=saved-scan-copy&sender=office&job=Scan%201&job-source=cloud\
               &job_recipient=a%40example.test&job_recipient=b+c%40example.test";
    let (s, v) = call(&app, Method::GET, uri, Some(TOKEN), "", &[]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        fake.routed.lock().unwrap().pop().unwrap(),
        RouteQuery {
            event: Some("saved-scan-copy".into()),
            sender: Some("office".into()),
            job: Some("Scan 1".into()),
            job_source: Some("cloud".into()),
            job_recipient: vec!["a@example.test".into(), "b c@example.test".into()],
        }
    );
    let (s, _) = call(&app, Method::GET, "/v1/route", Some(TOKEN), "", &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        fake.routed.lock().unwrap().pop().unwrap(),
        RouteQuery::default()
    );
    for (bad, field) in [
        ("colour=red", Some("colour")),
        ("job_source_sender=x", Some("job_source_sender")),
        ("event=", Some("event")),
        ("sender=a&sender=b", Some("sender")),
        ("job=%zz", None),
        ("job=%ff", None),
    ] {
        let uri = format!("/v1/route?{bad}");
        let (s, v) = call(&app, Method::GET, &uri, Some(TOKEN), "", &[]).await;
        assert_eq!(
            (s, kind(&v)),
            (StatusCode::BAD_REQUEST, "usage"),
            "{bad}: {v}"
        );
        assert_eq!(v["error"]["field"].as_str(), field, "{bad}");
    }
    assert!(
        fake.routed.lock().unwrap().is_empty(),
        "no bad query reaches the backend"
    );
}

#[tokio::test]
async fn a_send_answers_by_its_outcome() {
    let fake = Arc::new(Fake::default());
    let app = app(fake.clone());
    let request = |subject: &str| {
        HttpRequest::builder()
            .method(Method::POST)
            .uri("/v1/send")
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::from(format!(r#"{{"subject":"{subject}"}}"#)))
            .unwrap()
    };
    let response = app.clone().oneshot(request("later")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "30");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        (kind(&v), v["sender"].as_str()),
        ("temporary", Some("office"))
    );
    let response = app.clone().oneshot(request("maybe")).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert!(response.headers().get("retry-after").is_none());
    let (s, v) = call(
        &app,
        Method::POST,
        "/v1/send",
        Some(TOKEN),
        r#"{"subject":"s"}"#,
        &[],
    )
    .await;
    assert_eq!((s, v["message_id"].as_str()), (StatusCode::OK, Some("m@x")));
    let (s, v) = call(&app, Method::POST, "/v1/send", Some(TOKEN), "[1]", &[]).await;
    assert_eq!((s, kind(&v)), (StatusCode::BAD_REQUEST, "usage"));
    assert_eq!(
        fake.sent.lock().unwrap().len(),
        3,
        "a body not an object reaches no backend"
    );
    assert_eq!(status_of("temporary"), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(status_of("rejected"), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(status_of("denied"), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_refused_reload_is_422_with_the_settings_errors() {
    let fake = Arc::new(Fake::default());
    let app = app(fake.clone());
    let (s, v) = call(&app, Method::POST, "/v1/reload", Some(TOKEN), "", &[]).await;
    assert_eq!((s, &v["reloaded"]), (StatusCode::OK, &json!(true)));
    let (s, v) = call(&app, Method::POST, "/v1/reload", Some(TOKEN), "", &[]).await;
    assert_eq!(
        (s, kind(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid-settings")
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("line 3"),
        "{v}"
    );
    let (s, v) = call(&app, Method::POST, "/v1/reload", Some(TOKEN), "", &[]).await;
    assert_eq!((s, &v["reloaded"]), (StatusCode::OK, &json!(true)));
    let (s, _) = call(&app, Method::GET, "/v1/reload", Some(TOKEN), "", &[]).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn metrics_need_the_token_and_are_prometheus_text() {
    let app = app(Arc::new(Fake::default()));
    let (s, v) = call(&app, Method::GET, "/metrics", None, "", &[]).await;
    assert_eq!((s, kind(&v)), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let response = app
        .clone()
        .oneshot(
            HttpRequest::builder()
                .uri("/metrics")
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4"
    );
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    for line in [
        "# TYPE scan2x_mail_queue_messages gauge",
        "scan2x_mail_queue_messages{state=\"queued\"} 2",
        "scan2x_mail_queue_messages{state=\"delivered\"} 1",
        "# TYPE scan2x_mail_attempts_total counter",
        "scan2x_mail_attempts_total{sender=\"relay \\\"1\\\"\",outcome=\"delivered\"} 3",
        "# TYPE scan2x_mail_delivery_seconds histogram",
        "scan2x_mail_delivery_seconds_bucket{le=\"1\"} 1",
        "scan2x_mail_delivery_seconds_bucket{le=\"15\"} 1",
        "scan2x_mail_delivery_seconds_bucket{le=\"60\"} 2",
        "scan2x_mail_delivery_seconds_bucket{le=\"86400\"} 2",
        "scan2x_mail_delivery_seconds_bucket{le=\"+Inf\"} 3",
        "scan2x_mail_delivery_seconds_sum 1000020.5",
        "scan2x_mail_delivery_seconds_count 3",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    // Every sample line is `name{labels} value` or `name value`, after its HELP and TYPE.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = l.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{l}");
        assert!(name.starts_with("scan2x_mail_"), "{l}");
    }
    assert_eq!(text.matches("# HELP ").count(), 3);
}

#[tokio::test]
async fn the_openapi_document_has_every_route_and_method_and_no_other() {
    let doc: Value = serde_json::from_str(OPENAPI).expect("the OpenAPI document is JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["Error"]["properties"]["error"].is_object());
    let paths = doc["paths"].as_object().unwrap();
    let mut documented: Vec<&str> = paths.keys().map(String::as_str).collect();
    let mut routed: Vec<&str> = routes::<Fake>().iter().map(|(p, _, _)| *p).collect();
    documented.sort_unstable();
    routed.sort_unstable();
    assert_eq!(documented, routed, "the document's paths are the router's");

    // Each path's methods: the router takes exactly those the document lists.
    let app = app(Arc::new(Fake::default()));
    for (path, item) in paths {
        let uri = path.replace("{id}", "1").replace("{name}", "office");
        for method in ["get", "post", "delete", "put", "patch"] {
            let request = HttpRequest::builder()
                .method(method.to_uppercase().as_str())
                .uri(&uri)
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(Body::from("{}"))
                .unwrap();
            let s = app.clone().oneshot(request).await.unwrap().status();
            let taken = s != StatusCode::METHOD_NOT_ALLOWED;
            assert_eq!(taken, item.get(method).is_some(), "{method} {path}: {s}");
            if let Some(operation) = item.get(method) {
                assert!(operation["responses"].is_object(), "{method} {path}");
                let open = operation.get("security") == Some(&json!([]));
                assert_eq!(open, path == "/healthz", "{method} {path}: the token");
            }
        }
    }
    let (s, v) = call(&app, Method::GET, "/v1/openapi.json", Some(TOKEN), "", &[]).await;
    assert_eq!((s, &v), (StatusCode::OK, &doc));
}
