//! The router over a fake backend, without a socket: the token, the statuses, the error shape,
//! the body bound, the query, the multipart body and its bounds; and, over a socket, the bound
//! on open connections.

use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request as HttpRequest};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

use super::*;

/// An upload as the backend found it: filename, type, the staged bytes.
type Seen = (String, Option<String>, Vec<u8>);

struct Fake {
    submitted: Mutex<Vec<(Value, Option<String>)>>,
    /// Per submit, each upload as the backend found it.
    uploaded: Mutex<Vec<Vec<Seen>>>,
    routed: Mutex<Vec<RouteQuery>>,
    sent: Mutex<Vec<Value>>,
    reloads: Mutex<usize>,
    /// The data folder uploads are staged in.
    data: tempfile::TempDir,
}

impl Default for Fake {
    fn default() -> Self {
        Fake {
            submitted: Mutex::default(),
            uploaded: Mutex::default(),
            routed: Mutex::default(),
            sent: Mutex::default(),
            reloads: Mutex::default(),
            data: tempfile::tempdir().unwrap(),
        }
    }
}

impl Fake {
    /// What the upload folder holds: nothing once every request is done.
    fn staged(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(self.upload_dir()) {
            Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        }
    }
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
    fn upload_dir(&self) -> PathBuf {
        self.data.path().join("uploads")
    }
    async fn submit(
        &self,
        draft: Value,
        uploads: Uploads,
        key: Option<String>,
    ) -> Result<Value, ApiError> {
        if draft.get("bogus").is_some() {
            return Err(ApiError::new("usage", "unknown field `bogus`").with_field("bogus"));
        }
        let files = uploads
            .files()
            .iter()
            .map(|u| {
                let bytes = std::fs::read(&u.path).unwrap();
                assert_eq!(bytes.len() as u64, u.size);
                assert!(u.path.starts_with(self.upload_dir()), "{:?}", u.path);
                (u.filename.clone(), u.content_type.clone(), bytes)
            })
            .collect();
        self.uploaded.lock().unwrap().push(files);
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
    async fn list(&self, state: Option<String>, limit: usize) -> Result<Value, ApiError> {
        Ok(json!([{"state": state, "limit": limit}]))
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
async fn the_list_takes_state_and_a_limit_up_to_its_bound_and_nothing_else() {
    let app = app(Arc::new(Fake::default()));
    let get = |uri: &'static str| {
        let app = app.clone();
        async move { call(&app, Method::GET, uri, Some(TOKEN), "", &[]).await }
    };
    let (s, v) = get("/v1/messages?state=failed").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, json!([{"state": "failed", "limit": MAX_LIST}]));
    let (s, v) = get("/v1/messages").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, json!([{"state": null, "limit": MAX_LIST}]));
    let (s, v) = get("/v1/messages?limit=3&state=queued").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, json!([{"state": "queued", "limit": 3}]));
    assert_eq!(MAX_LIST, 1000);
    for (uri, field) in [
        ("/v1/messages?limit=0", "limit"),
        ("/v1/messages?limit=1001", "limit"),
        ("/v1/messages?limit=ten", "limit"),
        ("/v1/messages?limit=", "limit"),
        ("/v1/messages?state", "state"),
        ("/v1/messages?page=2", "page"),
    ] {
        let (s, v) = get(uri).await;
        assert_eq!(
            (s, kind(&v)),
            (StatusCode::BAD_REQUEST, "usage"),
            "{uri}: {v}"
        );
        assert_eq!(v["error"]["field"], field, "{uri}");
    }
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
    let upload = &doc["paths"]["/v1/messages"]["post"]["requestBody"]["content"]["multipart/form-data"]
        ["schema"];
    assert_eq!(upload["required"], json!(["message"]));
    assert_eq!(
        upload["properties"]["attachment"]["maxItems"],
        Config::DEFAULT_MAX_UPLOADS,
        "the document says the bound"
    );
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

/// One part of a multipart body.
struct Part<'a> {
    name: &'a str,
    filename: Option<&'a str>,
    content_type: Option<&'a str>,
    content: &'a [u8],
}

fn message(json: &str) -> Part<'_> {
    Part {
        name: "message",
        filename: None,
        content_type: None,
        content: json.as_bytes(),
    }
}

fn file<'a>(filename: &'a str, content_type: Option<&'a str>, content: &'a [u8]) -> Part<'a> {
    Part {
        name: "attachment",
        filename: Some(filename),
        content_type,
        content,
    }
}

const BOUNDARY: &str = "b0undary-7f3a";
const EMAIL: &str = r#"{"to":["a@example.test"],"subject":"s"}"#;

fn multipart(parts: &[Part<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for p in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let mut disposition = format!("Content-Disposition: form-data; name=\"{}\"", p.name);
        if let Some(f) = p.filename {
            disposition += &format!("; filename=\"{f}\"");
        }
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(b"\r\n");
        if let Some(t) = p.content_type {
            body.extend_from_slice(format!("Content-Type: {t}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(p.content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn upload_app(fake: Arc<Fake>, edit: impl FnOnce(&mut Config)) -> Router {
    let mut config = Config::new(Token(TOKEN.into()));
    config.body_limit = 1000;
    edit(&mut config);
    router(fake, config)
}

async fn post_body(app: &Router, body: Body, extra: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut request = HttpRequest::builder()
        .method(Method::POST)
        .uri("/v1/messages")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        );
    for (k, v) in extra {
        request = request.header(*k, *v);
    }
    let response = app
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    (status, value)
}

async fn post_parts(app: &Router, parts: &[Part<'_>]) -> (StatusCode, Value) {
    post_body(app, Body::from(multipart(parts)), &[]).await
}

/// [`refused`] is `expected` (status, kind, field) and its message contains `says`.
#[track_caller]
fn refused_saying(
    fake: &Fake,
    s: StatusCode,
    v: &Value,
    expected: (StatusCode, &str, Option<&str>),
    says: &str,
) {
    let (status, kind, field) = refused(fake, s, v);
    assert_eq!((status, kind.as_str(), field.as_deref()), expected, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains(says), "{message}");
}

/// The error's kind and field, and that nothing is left staged.
#[track_caller]
fn refused(fake: &Fake, s: StatusCode, v: &Value) -> (StatusCode, String, Option<String>) {
    assert!(fake.staged().is_empty(), "left staged: {:?}", fake.staged());
    (
        s,
        kind(v).to_string(),
        v["error"]["field"].as_str().map(str::to_string),
    )
}

#[tokio::test]
async fn a_multipart_submit_hands_over_its_files_in_order_then_unstages_them() {
    let fake = Arc::new(Fake::default());
    let app = upload_app(fake.clone(), |_| {});
    // Bytes that look like the boundary and CRLFs must come through as they are.
    let pdf: Vec<u8> = b"%PDF-1.7\r\n--b0undary-7f3\r\n"
        .iter()
        .copied()
        .chain((0..=255u8).cycle().take(70_000))
        .collect();
    let json = r#"{"to":["a@example.test"],"subject":"s","attachments":["/in/cover.txt"]}"#;
    let body = multipart(&[
        file("scan.pdf", Some("application/pdf"), &pdf),
        message(json),
        file("notes.txt", Some("application/octet-stream"), b"notes"),
        file("empty.dat", None, b""),
    ]);
    let key = [("idempotency-key", "job-7")];
    let (s, v) = post_body(&app, Body::from(body.clone()), &key).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert!(fake.staged().is_empty(), "{:?}", fake.staged());
    {
        let submitted = fake.submitted.lock().unwrap();
        assert_eq!(submitted[0].0, serde_json::from_str::<Value>(json).unwrap());
        assert_eq!(submitted[0].1.as_deref(), Some("job-7"));
        let uploaded = fake.uploaded.lock().unwrap();
        assert_eq!(
            uploaded[0],
            [
                (
                    "scan.pdf".into(),
                    Some("application/pdf".into()),
                    pdf.clone()
                ),
                ("notes.txt".into(), None, b"notes".to_vec()),
                ("empty.dat".into(), None, Vec::new()),
            ]
        );
    }
    let (s, v) = post_body(&app, Body::from(body), &key).await;
    assert_eq!((s, &v["duplicate"]), (StatusCode::OK, &json!(true)), "{v}");
    assert_eq!(fake.submitted.lock().unwrap().len(), 1);
    assert!(fake.staged().is_empty());
    // A JSON body still works beside it, with no uploads.
    let (s, _) = call(&app, Method::POST, "/v1/messages", Some(TOKEN), EMAIL, &[]).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(fake.uploaded.lock().unwrap()[2], []);
}

#[tokio::test]
async fn a_multipart_body_needs_exactly_one_message_part_and_no_other_names() {
    let fake = Arc::new(Fake::default());
    let app = upload_app(fake.clone(), |_| {});
    let (s, v) = post_parts(&app, &[file("a.pdf", None, b"a")]).await;
    refused_saying(
        &fake,
        s,
        &v,
        (StatusCode::BAD_REQUEST, "usage", Some("message")),
        "no `message` part",
    );
    let (s, v) = post_parts(
        &app,
        &[message(EMAIL), file("a.pdf", None, b"a"), message(EMAIL)],
    )
    .await;
    refused_saying(
        &fake,
        s,
        &v,
        (StatusCode::BAD_REQUEST, "usage", Some("message")),
        "two `message` parts",
    );
    let typo = Part {
        name: "attachments",
        ..file("a.pdf", None, b"a")
    };
    let (s, v) = post_parts(&app, &[message(EMAIL), typo]).await;
    refused_saying(
        &fake,
        s,
        &v,
        (StatusCode::BAD_REQUEST, "usage", Some("attachments")),
        "unknown part `attachments`",
    );
    assert!(fake.submitted.lock().unwrap().is_empty());
}

#[tokio::test]
async fn bad_json_in_the_message_part_is_400_naming_the_part_or_its_field() {
    let fake = Arc::new(Fake::default());
    let app = upload_app(fake.clone(), |_| {});
    for (json, says) in [
        ("{\"to\": [", "line 1"),
        ("[1, 2]", "JSON object"),
        ("", "EOF"),
    ] {
        let (s, v) = post_parts(&app, &[message(json), file("a.pdf", None, b"a")]).await;
        assert_eq!(
            refused(&fake, s, &v),
            (
                StatusCode::BAD_REQUEST,
                "usage".into(),
                Some("message".into())
            ),
            "{json}"
        );
        let text = v["error"]["message"].as_str().unwrap();
        assert!(
            text.contains(says) && text.contains("`message` part"),
            "{json}: {text}"
        );
    }
    // A field the backend refuses is named as for a JSON body.
    let (s, v) = post_parts(
        &app,
        &[message(r#"{"bogus":1}"#), file("a.pdf", None, b"a")],
    )
    .await;
    assert_eq!(
        refused(&fake, s, &v),
        (
            StatusCode::BAD_REQUEST,
            "usage".into(),
            Some("bogus".into())
        )
    );
    // The part is bounded as a JSON body is (`body_limit`, 1000 here).
    let big = format!(r#"{{"text": "{}"}}"#, "x".repeat(1000));
    let (s, v) = post_parts(&app, &[message(&big)]).await;
    assert_eq!(
        refused(&fake, s, &v),
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large".into(),
            Some("message".into())
        )
    );
    assert!(fake.submitted.lock().unwrap().is_empty());
}

#[tokio::test]
async fn one_attachment_part_more_than_the_bound_is_413() {
    let fake = Arc::new(Fake::default());
    let app = upload_app(fake.clone(), |c| c.max_uploads = 3);
    let files = ["a", "b", "c", "d"].map(|name| file(name, None, b"x"));
    let mut parts = vec![message(EMAIL)];
    parts.extend(files);
    let (s, v) = post_parts(&app, &parts[..4]).await;
    assert_eq!(s, StatusCode::CREATED, "three are taken: {v}");
    let (s, v) = post_parts(&app, &parts).await;
    refused_saying(
        &fake,
        s,
        &v,
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            Some("attachment"),
        ),
        "more than 3",
    );
    assert_eq!(fake.submitted.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn files_over_the_byte_bound_together_are_413_and_nothing_stays_staged() {
    let fake = Arc::new(Fake::default());
    let app = upload_app(fake.clone(), |c| c.upload_limit = 100_000);
    let half = vec![7u8; 50_000];
    let (s, v) = post_parts(
        &app,
        &[
            message(EMAIL),
            file("a", None, &half),
            file("b", None, &half),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "exactly the bound is taken: {v}");
    let more = vec![7u8; 50_001];
    let (s, v) = post_parts(
        &app,
        &[
            message(EMAIL),
            file("a", None, &half),
            file("b", None, &more),
        ],
    )
    .await;
    refused_saying(
        &fake,
        s,
        &v,
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            Some("attachment"),
        ),
        "100000 bytes",
    );
    assert_eq!(fake.submitted.lock().unwrap().len(), 1);
    assert_eq!(Config::new(Token(TOKEN.into())).upload_limit, 100 << 20);
}

#[tokio::test]
async fn a_filename_is_only_its_last_component_and_must_name_a_file() {
    let fake = Arc::new(Fake::default());
    let app = upload_app(fake.clone(), |_| {});
    for (given, taken) in [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\scan.pdf", "scan.pdf"),
        ("C:\\Users\\me\\scan 2.pdf", "scan 2.pdf"),
        (&*"n".repeat(255), &*"n".repeat(255)),
    ] {
        let (s, v) = post_parts(&app, &[message(EMAIL), file(given, None, b"x")]).await;
        assert_eq!(s, StatusCode::CREATED, "{given}: {v}");
        let uploaded = fake.uploaded.lock().unwrap();
        assert_eq!(uploaded.last().unwrap()[0].0, taken, "{given}");
    }
    assert!(!fake.data.path().join("etc").exists());
    assert!(fake.staged().is_empty());
    for given in ["..", "in/", ".", "a\tb.pdf", &"n".repeat(256)] {
        let (s, v) = post_parts(&app, &[message(EMAIL), file(given, None, b"x")]).await;
        assert_eq!(
            refused(&fake, s, &v),
            (
                StatusCode::BAD_REQUEST,
                "usage".into(),
                Some("attachment".into())
            ),
            "{given}"
        );
    }
    let nameless = Part {
        filename: None,
        ..file("", None, b"x")
    };
    let (s, v) = post_parts(&app, &[message(EMAIL), nameless]).await;
    refused_saying(
        &fake,
        s,
        &v,
        (StatusCode::BAD_REQUEST, "usage", Some("attachment")),
        "no filename",
    );
    assert_eq!(fake.submitted.lock().unwrap().len(), 4);
}

/// A body that sends its frames — one a poll as a network does (`paced`), or each at once as a
/// fast client's are — then ends, or (`hang_up`) fails as a connection the client closed does,
/// noting how many staging folders there were then.
struct Frames {
    sent: std::collections::VecDeque<Bytes>,
    paced: bool,
    wait: bool,
    hang_up: bool,
    root: PathBuf,
    staged_then: Arc<Mutex<Option<usize>>>,
}

impl Frames {
    fn new(body: &[u8], frame: usize, fake: &Fake) -> Frames {
        Frames {
            sent: body.chunks(frame).map(Bytes::copy_from_slice).collect(),
            paced: false,
            wait: false,
            hang_up: false,
            root: fake.upload_dir(),
            staged_then: Arc::default(),
        }
    }
}

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        self.wait = self.paced && !self.wait;
        if self.wait {
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        if let Some(bytes) = self.sent.pop_front() {
            return std::task::Poll::Ready(Some(Ok(http_body::Frame::data(bytes))));
        }
        if !self.hang_up {
            return std::task::Poll::Ready(None);
        }
        let n = std::fs::read_dir(&self.root).map_or(0, |d| d.count());
        *self.staged_then.lock().unwrap() = Some(n);
        std::task::Poll::Ready(Some(Err(io::ErrorKind::ConnectionReset.into())))
    }
}

#[tokio::test]
async fn a_client_gone_mid_upload_leaves_nothing_staged_and_submits_nothing() {
    let fake = Arc::new(Fake::default());
    let app = upload_app(fake.clone(), |_| {});
    let whole = multipart(&[message(EMAIL), file("scan.pdf", None, &[1u8; 20_000])]);
    let body = Frames {
        paced: true,
        hang_up: true,
        ..Frames::new(&whole[..whole.len() / 2], 1000, &fake)
    };
    let staged_then = body.staged_then.clone();
    let (s, v) = post_body(&app, Body::new(body), &[]).await;
    assert_eq!(
        *staged_then.lock().unwrap(),
        Some(1),
        "the file was being staged"
    );
    assert_eq!(
        refused(&fake, s, &v),
        (StatusCode::BAD_REQUEST, "usage".into(), None)
    );
    assert!(fake.submitted.lock().unwrap().is_empty());
}

#[tokio::test]
async fn files_sent_faster_than_they_are_written_are_taken_whole() {
    // Each frame ready at once: the parser would read them all ahead; it is held back instead,
    // and held back is not mistaken for headers that never end.
    let fake = Arc::new(Fake::default());
    let app = upload_app(fake.clone(), |_| {});
    let big: Vec<u8> = (0..6 << 20).map(|i: u32| (i % 251) as u8).collect();
    let whole = multipart(&[
        message(EMAIL),
        file("a.bin", None, &big),
        file("b.bin", None, &big[..3 << 20]),
    ]);
    let (s, v) = post_body(&app, Body::new(Frames::new(&whole, 64 << 10, &fake)), &[]).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let uploaded = fake.uploaded.lock().unwrap();
    assert_eq!(uploaded[0][0].2, big);
    assert_eq!(uploaded[0][1].2, big[..3 << 20]);
    assert!(fake.staged().is_empty());
}

#[tokio::test]
async fn headers_or_a_preamble_without_end_are_413_not_buffered() {
    let fake = Arc::new(Fake::default());
    let app = upload_app(fake.clone(), |_| {});
    let junk = "x".repeat(3 << 20);
    let endless_header = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"attachment\"; \
         filename=\"a\"\r\nX-Junk: {junk}"
    );
    let preamble = format!("{junk}\r\n--{BOUNDARY}\r\n");
    for body in [endless_header, preamble] {
        let (s, v) = post_body(&app, Body::from(body), &[]).await;
        assert_eq!(
            refused(&fake, s, &v),
            (StatusCode::PAYLOAD_TOO_LARGE, "too-large".into(), None)
        );
        assert!(
            v["error"]["message"].as_str().unwrap().contains("headers"),
            "{v}"
        );
    }
    assert!(fake.submitted.lock().unwrap().is_empty());
}

#[tokio::test]
async fn other_multipart_types_are_415_and_form_data_needs_a_boundary() {
    let fake = Arc::new(Fake::default());
    let app = upload_app(fake.clone(), |_| {});
    let body = String::from_utf8(multipart(&[message(EMAIL)])).unwrap();
    let mixed = [("content-type", "multipart/mixed; boundary=b0undary-7f3a")];
    let (s, v) = call(
        &app,
        Method::POST,
        "/v1/messages",
        Some(TOKEN),
        &body,
        &mixed,
    )
    .await;
    assert_eq!(
        (s, kind(&v)),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-type")
    );
    let bare = [("content-type", "multipart/form-data")];
    let (s, v) = call(
        &app,
        Method::POST,
        "/v1/messages",
        Some(TOKEN),
        &body,
        &bare,
    )
    .await;
    assert_eq!((s, kind(&v)), (StatusCode::BAD_REQUEST, "usage"));
    assert!(v["error"]["message"].as_str().unwrap().contains("boundary"));
    // JSON with any other type is read as JSON, as before.
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let (s, _) = call(
        &app,
        Method::POST,
        "/v1/messages",
        Some(TOKEN),
        EMAIL,
        &form,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(fake.submitted.lock().unwrap().len(), 1);
}

#[test]
fn staging_folders_a_crash_left_are_cleared_and_live_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let long_ago = std::time::SystemTime::now() - upload::STALE - Duration::from_secs(60);
    let age = |path: &Path| {
        std::fs::File::open(path)
            .unwrap()
            .set_modified(long_ago)
            .unwrap()
    };
    for name in ["old", "live"] {
        std::fs::create_dir_all(root.join(name).join("0")).unwrap();
        std::fs::write(root.join(name).join("0").join("scan.pdf"), b"x").unwrap();
    }
    std::fs::write(root.join("stray"), b"x").unwrap();
    // `live` is a slow upload: its folders are old, the file it is writing is not.
    for path in ["old/0/scan.pdf", "old/0", "old", "live/0", "live", "stray"] {
        age(&root.join(path));
    }
    assert_eq!(upload::clear_stale(root), 2);
    assert!(!root.join("old").exists() && !root.join("stray").exists());
    assert!(root.join("live/0/scan.pdf").exists());
    assert_eq!(upload::clear_stale(&root.join("missing")), 0);
}

#[tokio::test]
async fn no_more_connections_than_the_bound_are_served_and_a_closed_one_frees_a_place() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpStream;

    let fake = Arc::new(Fake::default());
    let mut config = Config::new(Token(TOKEN.into()));
    config.max_connections = 2;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, fake, config, async {
        let _ = stopped.await;
    }));
    let health = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let answer = |mut stream: TcpStream| async move {
        stream.write_all(health).await.unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.unwrap();
        String::from_utf8_lossy(&got).into_owned()
    };
    // Two idle connections hold both places.
    let first = TcpStream::connect(address).await.unwrap();
    let second = TcpStream::connect(address).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A third is connected by the kernel but not served while they are open.
    let third = tokio::spawn(answer(TcpStream::connect(address).await.unwrap()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!third.is_finished(), "served past the bound");
    drop(first);
    let said = tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .expect("a closed connection frees a place")
        .unwrap();
    assert!(said.starts_with("HTTP/1.1 200"), "{said}");
    drop(second);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
