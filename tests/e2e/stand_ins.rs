//! The stand-ins refuse what the services they stand for refuse, each rule shown by its own test:
//! the Graph stand-in (`tests/servers/graph_server.py`: the token endpoint, Graph, the upload
//! URLs) and the SendGrid stand-in (`tests/servers/sendgrid_server.py`). Each test talks to the
//! stand-in directly — reqwest, or raw bytes over TLS where a client library would not send the
//! request (a Content-Length that is not a number) — and asserts the status and the error the
//! service sends (its code, or SendGrid's field and message), next to the same request made
//! well, which is taken: a rule that refused everything would pass no test here.
//!
//! | stand-in | rules shown |
//! |---|---|
//! | token endpoint | grant_type, client_id, scope and client_secret required; client_credentials only; the secret; a form body; the tenant (unknown, malformed); the application; POST only; scope `…/.default` of its own Graph; one value a parameter |
//! | Graph | the token's tenant (tid) and not-before (nbf); Content-Length (400 not a number, 411 none, 413 over 4 MiB); requests no check foresaw answered, never dropped; the message, recipient and attachment shapes; users, mailboxes and roles; routes |
//! | upload URLs | authtoken missing or wrong; Content-Range malformed; start, end, length and total arithmetic; no Authorization; octet-stream; PUT only; 4 MiB a range; no send while a session is pending |
//! | SendGrid | 411 without Content-Length; 400 for one that is not a number; 413 over 30 MB before the key; 401 for any other key; 404; Content-Type and JSON; every mail/send shape rule, naming its field |
//!
//! Tests talk only to the stand-ins on 127.0.0.1.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

/// Sends `request` as it is over TLS to 127.0.0.1:`port`, trusting only `ca_file`, and reads one
/// answer: its status and body. For requests a client library would refuse to make.
async fn raw(ca_file: &Path, port: u16, request: &[u8]) -> (u16, Vec<u8>) {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pem = std::fs::read(ca_file).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    tls.write_all(request).await.unwrap();
    tls.flush().await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(answer) = whole_answer(&got) {
            return answer;
        }
        let read = tokio::time::timeout(Duration::from_secs(20), tls.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no answer in 20 s: {:?}", String::from_utf8_lossy(&got)));
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    panic!(
        "the connection ended without a whole answer: {:?}",
        String::from_utf8_lossy(&got)
    )
}

/// The status and body of the HTTP answer in `got`, once all of it (by Content-Length) is there.
fn whole_answer(got: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = got.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&got[..end]);
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let body = &got[end + 4..];
    (body.len() >= length).then(|| (status, body[..length].to_vec()))
}

/// The port of an `https://127.0.0.1:PORT` origin.
fn port_of(origin: &str) -> u16 {
    origin.rsplit(':').next().unwrap().parse().unwrap()
}

/// `pairs` as an `application/x-www-form-urlencoded` body, every reserved byte escaped.
fn form(pairs: &[(&str, &str)]) -> String {
    let escape = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

// --- the Graph stand-in ------------------------------------------------------------------------

mod graph {
    use super::*;
    use crate::support::certs::Certs;
    use crate::support::graph_server::{
        CLIENT_ID, CLIENT_SECRET, GraphServer, MAILBOX, NO_MAILBOX, SEND_AS, TENANT_DOMAIN,
        TENANT_ID,
    };
    use base64::Engine as _;
    use reqwest::{Client, Method};

    /// A second tenant, with its own application and user.
    const OTHER_TENANT_ID: &str = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    const OTHER_DOMAIN: &str = "fabrikam.example";
    const OTHER_CLIENT_ID: &str = "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f";
    const OTHER_SECRET: &str = "e2e~Fabrikam.S3cret-42";
    const OTHER_USER: &str = "desk@fabrikam.example";
    /// An application of the standard tenant that may send mail and nothing else.
    const SEND_ONLY_CLIENT_ID: &str = "d4c3b2a1-0f9e-4d8c-b7a6-5f4e3d2c1b0a";
    const SEND_ONLY_SECRET: &str = "e2e~SendOnly.S3cret-7";

    /// The standard stand-in plus [`OTHER_TENANT_ID`] and [`SEND_ONLY_CLIENT_ID`].
    fn start_with_more(edit: impl FnOnce(&mut Value)) -> GraphServer {
        GraphServer::start_configured(3599, Certs::generate(), |config| {
            config["tenants"][OTHER_TENANT_ID] = json!({
                "domains": [OTHER_DOMAIN],
                "apps": { OTHER_CLIENT_ID: {
                    "secret": OTHER_SECRET,
                    "roles": ["Mail.Send", "Mail.ReadWrite", "User.Read.All"],
                }},
            });
            config["tenants"][TENANT_ID]["apps"][SEND_ONLY_CLIENT_ID] =
                json!({ "secret": SEND_ONLY_SECRET, "roles": ["Mail.Send"] });
            config["users"][OTHER_USER] = json!({
                "id": "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9",
                "displayName": "Fabrikam desk",
                "mail": OTHER_USER,
                "mailbox": true,
            });
            edit(config);
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn client(server: &GraphServer) -> Client {
        crate::support::https_client(&server.ca_file())
    }

    async fn json_of(response: reqwest::Response) -> Value {
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or_default()
    }

    /// The standard token request's form fields.
    fn token_form(server: &GraphServer) -> Vec<(String, String)> {
        [
            ("client_id", CLIENT_ID.to_string()),
            ("scope", format!("{}/.default", server.graph_url())),
            ("client_secret", CLIENT_SECRET.to_string()),
            ("grant_type", "client_credentials".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The standard token request's form, and `extra` pairs after it.
    fn token_body(server: &GraphServer, extra: &[(&str, &str)]) -> String {
        let fields = token_form(server);
        let mut pairs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        pairs.extend_from_slice(extra);
        form(&pairs)
    }

    /// POST `body` (as `content_type`) to the token endpoint of `tenant`: status and answer.
    async fn token_request(
        server: &GraphServer,
        tenant: &str,
        content_type: &str,
        body: String,
    ) -> (u16, Value) {
        let response = client(server)
            .post(format!(
                "{}/{tenant}/oauth2/v2.0/token",
                server.authority_url()
            ))
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), json_of(response).await)
    }

    /// The standard form with `field` changed to `value` (None: left out).
    async fn token_with(server: &GraphServer, field: &str, value: Option<&str>) -> (u16, Value) {
        let mut fields = token_form(server);
        fields.retain(|(k, _)| k != field);
        if let Some(v) = value {
            fields.push((field.to_string(), v.to_string()));
        }
        let pairs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        token_request(
            server,
            TENANT_ID,
            "application/x-www-form-urlencoded",
            form(&pairs),
        )
        .await
    }

    /// The identity platform's error: (`error`, the AADSTS number).
    fn aad(v: &Value) -> (&str, u64) {
        (
            v["error"].as_str().unwrap_or_default(),
            v["error_codes"][0].as_u64().unwrap_or_default(),
        )
    }

    /// A token of `client` in `tenant`.
    async fn token_of(server: &GraphServer, tenant: &str, client_id: &str, secret: &str) -> String {
        let scope = format!("{}/.default", server.graph_url());
        let body = form(&[
            ("client_id", client_id),
            ("scope", &scope),
            ("client_secret", secret),
            ("grant_type", "client_credentials"),
        ]);
        let (status, v) =
            token_request(server, tenant, "application/x-www-form-urlencoded", body).await;
        assert_eq!(status, 200, "{v}");
        v["access_token"].as_str().unwrap().to_string()
    }

    async fn token(server: &GraphServer) -> String {
        token_of(server, TENANT_ID, CLIENT_ID, CLIENT_SECRET).await
    }

    /// `method` `/v1.0/users/{user}{rest}` with `body` as JSON (None: no body at all).
    async fn call(
        server: &GraphServer,
        method: Method,
        token: &str,
        user: &str,
        rest: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut request = client(server)
            .request(
                method,
                format!("{}/v1.0/users/{user}{rest}", server.graph_url()),
            )
            .bearer_auth(token);
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), json_of(response).await)
    }

    async fn post(server: &GraphServer, token: &str, rest: &str, body: &Value) -> (u16, Value) {
        call(server, Method::POST, token, MAILBOX, rest, Some(body)).await
    }

    /// Graph's error code.
    fn code(v: &Value) -> &str {
        v["error"]["code"].as_str().unwrap_or_default()
    }

    fn message() -> Value {
        json!({
            "subject": "s",
            "body": {"contentType": "Text", "content": "t"},
            "toRecipients": [{"emailAddress": {"address": "a@example.test"}}],
        })
    }

    fn send_mail() -> Value {
        json!({ "message": message() })
    }

    // --- the token endpoint ---

    #[tokio::test]
    async fn token_endpoint_issues_a_token_for_the_standard_request() {
        let server = GraphServer::start();
        let (status, v) = token_request(
            &server,
            TENANT_ID,
            "application/x-www-form-urlencoded",
            token_body(&server, &[]),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["token_type"], "Bearer");
        assert_eq!(v["expires_in"], 3599);
    }

    #[tokio::test]
    async fn token_endpoint_refuses_a_grant_type_other_than_client_credentials() {
        let server = GraphServer::start();
        let (status, v) = token_with(&server, "grant_type", Some("password")).await;
        assert_eq!(
            (status, aad(&v)),
            (400, ("unsupported_grant_type", 70003)),
            "{v}"
        );
    }

    #[tokio::test]
    async fn token_endpoint_refuses_a_request_without_client_secret() {
        let server = GraphServer::start();
        let (status, v) = token_with(&server, "client_secret", None).await;
        assert_eq!((status, aad(&v)), (401, ("invalid_client", 7000218)), "{v}");
        assert!(
            v["error_description"]
                .as_str()
                .unwrap()
                .contains("'client_assertion' or 'client_secret'"),
            "{v}"
        );
    }

    #[tokio::test]
    async fn token_endpoint_refuses_a_wrong_client_secret() {
        let server = GraphServer::start();
        for wrong in ["Wr0ng~secret", "", &CLIENT_SECRET.to_uppercase()] {
            let (status, v) = token_with(&server, "client_secret", Some(wrong)).await;
            assert_eq!(
                (status, aad(&v)),
                (401, ("invalid_client", 7000215)),
                "{wrong}: {v}"
            );
        }
    }

    #[tokio::test]
    async fn token_endpoint_refuses_each_missing_required_parameter() {
        let server = GraphServer::start();
        for field in ["grant_type", "client_id", "scope"] {
            let (status, v) = token_with(&server, field, None).await;
            assert_eq!(
                (status, aad(&v)),
                (400, ("invalid_request", 900144)),
                "{field}: {v}"
            );
            assert!(
                v["error_description"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("'{field}'")),
                "{v}"
            );
        }
    }

    #[tokio::test]
    async fn token_endpoint_refuses_a_body_that_is_not_a_form() {
        let server = GraphServer::start();
        let fields: serde_json::Map<String, Value> = token_form(&server)
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        let (status, v) = token_request(
            &server,
            TENANT_ID,
            "application/json",
            Value::Object(fields).to_string(),
        )
        .await;
        // The identity platform reads only a form; a JSON body has no grant_type for it.
        assert_eq!((status, aad(&v)), (400, ("invalid_request", 900144)), "{v}");
        assert!(
            v["error_description"]
                .as_str()
                .unwrap()
                .contains("'grant_type'"),
            "{v}"
        );
    }

    #[tokio::test]
    async fn token_endpoint_refuses_a_parameter_given_twice() {
        let server = GraphServer::start();
        let (status, v) = token_request(
            &server,
            TENANT_ID,
            "application/x-www-form-urlencoded",
            token_body(&server, &[("client_id", CLIENT_ID)]),
        )
        .await;
        assert_eq!(
            (status, aad(&v)),
            (400, ("invalid_request", 9002313)),
            "{v}"
        );
    }

    #[tokio::test]
    async fn token_endpoint_refuses_an_unknown_tenant_and_takes_its_domain() {
        let server = GraphServer::start();
        let body = token_body(&server, &[]);
        let ct = "application/x-www-form-urlencoded";
        for unknown in ["11111111-2222-4333-8444-555555555555", "fabrikam.example"] {
            let (status, v) = token_request(&server, unknown, ct, body.clone()).await;
            assert_eq!(
                (status, aad(&v)),
                (400, ("invalid_tenant", 90002)),
                "{unknown}: {v}"
            );
        }
        let (status, v) = token_request(&server, TENANT_DOMAIN, ct, body).await;
        assert_eq!(status, 200, "the tenant's domain names it too: {v}");
    }

    #[tokio::test]
    async fn token_endpoint_refuses_a_tenant_that_is_neither_a_guid_nor_a_domain() {
        let server = GraphServer::start();
        let (status, v) = token_request(
            &server,
            "not_a_tenant",
            "application/x-www-form-urlencoded",
            token_body(&server, &[]),
        )
        .await;
        assert_eq!((status, aad(&v)), (400, ("invalid_request", 900023)), "{v}");
    }

    #[tokio::test]
    async fn token_endpoint_refuses_an_application_the_tenant_does_not_have() {
        let server = start_with_more(|_| {});
        // The other tenant's application, asked for in this tenant.
        let (status, v) = token_with(&server, "client_id", Some(OTHER_CLIENT_ID)).await;
        assert_eq!(
            (status, aad(&v)),
            (400, ("unauthorized_client", 700016)),
            "{v}"
        );
    }

    #[tokio::test]
    async fn token_endpoint_takes_post_only() {
        let server = GraphServer::start();
        let response = client(&server)
            .get(format!(
                "{}/{TENANT_ID}/oauth2/v2.0/token",
                server.authority_url()
            ))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let v = json_of(response).await;
        assert_eq!((status, aad(&v)), (405, ("invalid_request", 900561)), "{v}");
        let response = client(&server)
            .post(format!(
                "{}/{TENANT_ID}/oauth2/token",
                server.authority_url()
            ))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(token_body(&server, &[]))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status().as_u16(),
            404,
            "the v1 endpoint is not there"
        );
    }

    #[tokio::test]
    async fn token_endpoint_refuses_a_scope_not_ending_in_default() {
        let server = GraphServer::start();
        for scope in [
            format!("{}/Mail.Send", server.graph_url()),
            format!("offline_access {}/.default", server.graph_url()),
        ] {
            let (status, v) = token_with(&server, "scope", Some(&scope)).await;
            assert_eq!(
                (status, aad(&v)),
                (400, ("invalid_scope", 1002012)),
                "{scope}: {v}"
            );
        }
    }

    // --- Graph: tokens ---

    #[tokio::test]
    async fn graph_finds_users_only_in_the_tenant_the_token_was_issued_for() {
        let server = start_with_more(|_| {});
        let ours = token(&server).await;
        let theirs = token_of(&server, OTHER_DOMAIN, OTHER_CLIENT_ID, OTHER_SECRET).await;
        // A token of the other tenant: the standard mailbox is not in its directory.
        let (status, v) = post(&server, &theirs, "/sendMail", &send_mail()).await;
        assert_eq!((status, code(&v)), (404, "ErrorInvalidUser"), "{v}");
        let (status, v) = call(&server, Method::GET, &theirs, MAILBOX, "", None).await;
        assert_eq!((status, code(&v)), (404, "Request_ResourceNotFound"), "{v}");
        let (status, v) = call(
            &server,
            Method::POST,
            &ours,
            OTHER_USER,
            "/sendMail",
            Some(&send_mail()),
        )
        .await;
        assert_eq!((status, code(&v)), (404, "ErrorInvalidUser"), "{v}");
        assert!(server.sent().is_empty());
        // Each tenant's token reaches its own users.
        let (status, v) = call(
            &server,
            Method::POST,
            &theirs,
            OTHER_USER,
            "/sendMail",
            Some(&send_mail()),
        )
        .await;
        assert_eq!(status, 202, "{v}");
        assert_eq!(post(&server, &ours, "/sendMail", &send_mail()).await.0, 202);
        assert_eq!(server.sent().len(), 2);
    }

    #[tokio::test]
    async fn graph_refuses_a_token_that_is_not_yet_valid() {
        let server = start_with_more(|config| config["not_before_offset"] = json!(3600));
        let token = token(&server).await;
        let payload = token.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            claims["nbf"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            3600,
            "{claims}"
        );
        let (status, v) = post(&server, &token, "/sendMail", &send_mail()).await;
        assert_eq!(
            (status, code(&v)),
            (401, "InvalidAuthenticationToken"),
            "{v}"
        );
        let said = v["error"]["message"].as_str().unwrap();
        assert!(
            said.starts_with("IDX10222") && said.contains("not yet valid"),
            "{v}"
        );
        assert!(server.sent().is_empty());
    }

    #[tokio::test]
    async fn graph_refuses_a_bearer_token_it_cannot_parse_without_failing() {
        let server = GraphServer::start();
        let token = token(&server).await;
        let (header, rest) = token.split_once('.').unwrap();
        for spoiled in [
            "no-dots".to_string(),
            format!("{header}.{rest}.extra"),
            format!("{token}\u{e9}"),
        ] {
            let value = reqwest::header::HeaderValue::from_bytes(
                format!("Bearer {spoiled}")
                    .chars()
                    .map(|c| c as u32 as u8)
                    .collect::<Vec<u8>>()
                    .as_slice(),
            )
            .unwrap();
            let response = client(&server)
                .post(format!(
                    "{}/v1.0/users/{MAILBOX}/sendMail",
                    server.graph_url()
                ))
                .header("Authorization", value)
                .header("Content-Type", "application/json")
                .body(send_mail().to_string())
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let v = json_of(response).await;
            assert_eq!(
                (status, code(&v)),
                (401, "InvalidAuthenticationToken"),
                "{spoiled}: {v}"
            );
        }
        assert_no_traceback(&server);
    }

    // --- Graph: the request's framing ---

    fn assert_no_traceback(server: &GraphServer) {
        let stderr = std::fs::read_to_string(server.dir().join("server.stderr")).unwrap();
        assert!(
            !stderr.contains("Traceback"),
            "the stand-in failed:\n{stderr}"
        );
    }

    #[tokio::test]
    async fn graph_answers_a_content_length_that_is_not_one_number_with_400() {
        let server = GraphServer::start();
        let token = token(&server).await;
        let port = port_of(&server.graph_url());
        for length in [
            "Content-Length: abc",
            "Content-Length: -1",
            "Content-Length: +5",
            "Content-Length: 0x10",
            "Content-Length: 5\r\nContent-Length: 6",
        ] {
            let request = format!(
                "POST /v1.0/users/{MAILBOX}/sendMail HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
                 Authorization: Bearer {token}\r\nContent-Type: application/json\r\n{length}\r\n\
                 Connection: close\r\n\r\n"
            );
            let (status, body) = raw(&server.ca_file(), port, request.as_bytes()).await;
            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
            assert_eq!((status, code(&v)), (400, "BadRequest"), "{length:?}: {v}");
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("Content-Length"),
                "{v}"
            );
        }
        // The same request with its length is taken; the stand-in never failed.
        let body = send_mail().to_string();
        let request = format!(
            "POST /v1.0/users/{MAILBOX}/sendMail HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        assert_eq!(
            raw(&server.ca_file(), port, request.as_bytes()).await.0,
            202
        );
        assert_eq!(server.sent().len(), 1);
        assert_no_traceback(&server);
    }

    #[tokio::test]
    async fn graph_answers_a_post_without_content_length_with_411() {
        let server = GraphServer::start();
        let token = token(&server).await;
        let (status, v) = call(&server, Method::POST, &token, MAILBOX, "/sendMail", None).await;
        assert_eq!((status, code(&v)), (411, "LengthRequired"), "{v}");
    }

    #[tokio::test]
    async fn graph_answers_a_body_over_4_mib_with_413() {
        let server = GraphServer::start();
        let token = token(&server).await;
        let send = |len: usize| {
            let request = client(&server)
                .post(format!(
                    "{}/v1.0/users/{MAILBOX}/sendMail",
                    server.graph_url()
                ))
                .bearer_auth(&token)
                .header("Content-Type", "application/json")
                .body(vec![b' '; len]);
            async move {
                let response = request.send().await.unwrap();
                (response.status().as_u16(), json_of(response).await)
            }
        };
        let (status, v) = send(4 * 1024 * 1024 + 1).await;
        assert_eq!((status, code(&v)), (413, "RequestEntityTooLarge"), "{v}");
        // 4 MiB itself is read (and is no JSON).
        let (status, v) = send(4 * 1024 * 1024).await;
        assert_eq!((status, code(&v)), (400, "BadRequest"), "{v}");
    }

    #[tokio::test]
    async fn graph_answers_requests_no_check_foresaw_and_never_drops_them() {
        let server = GraphServer::start();
        let token = token(&server).await;
        let port = port_of(&server.graph_url());
        // JSON nested deeper than any parser follows.
        let deep = "[".repeat(100_000);
        let (status, v) = {
            let response = client(&server)
                .post(format!(
                    "{}/v1.0/users/{MAILBOX}/sendMail",
                    server.graph_url()
                ))
                .bearer_auth(&token)
                .header("Content-Type", "application/json")
                .body(deep)
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), json_of(response).await)
        };
        assert_eq!((status, code(&v)), (400, "BadRequest"), "{v}");
        // Request targets without a path, or that do not parse: the asterisk form, an authority
        // alone, an IPv6 literal left open.
        for target in [
            "*",
            "https://graph.microsoft.com",
            "https://[::1/v1.0/users",
        ] {
            let request = format!(
                "GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
            );
            let (status, body) = raw(&server.ca_file(), port, request.as_bytes()).await;
            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
            assert_eq!((status, code(&v)), (400, "BadRequest"), "{target}: {v}");
        }
        assert_no_traceback(&server);
        assert_eq!(
            post(&server, &token, "/sendMail", &send_mail()).await.0,
            202
        );
    }

    // --- Graph: the request's shape ---

    #[tokio::test]
    async fn graph_refuses_a_body_that_is_not_a_json_object() {
        let server = GraphServer::start();
        let token = token(&server).await;
        let send = |content_type: &'static str, body: String| {
            let request = client(&server)
                .post(format!(
                    "{}/v1.0/users/{MAILBOX}/sendMail",
                    server.graph_url()
                ))
                .bearer_auth(&token)
                .header("Content-Type", content_type)
                .body(body);
            async move {
                let response = request.send().await.unwrap();
                (response.status().as_u16(), json_of(response).await)
            }
        };
        let good = send_mail().to_string();
        let (status, v) = send("text/plain", good.clone()).await;
        assert_eq!((status, code(&v)), (415, "UnsupportedMediaType"), "{v}");
        let (status, v) = send("application/json", "{\"message\": ".into()).await;
        assert_eq!((status, code(&v)), (400, "BadRequest"), "{v}");
        let (status, v) = send("application/json", "[]".into()).await;
        assert_eq!((status, code(&v)), (400, "BadRequest"), "{v}");
        let (status, v) = send("application/json; charset=utf-8", good).await;
        assert_eq!(status, 202, "{v}");
    }

    #[tokio::test]
    async fn graph_refuses_each_message_shape_graph_refuses() {
        let server = GraphServer::start();
        let token = token(&server).await;
        type Spoil = Box<dyn Fn(&mut Value)>;
        let file = |extra: Value| {
            let mut a = json!({"@odata.type": "#microsoft.graph.fileAttachment", "name": "a.txt",
                               "contentType": "text/plain", "contentBytes": "QUJD"});
            for (k, v) in extra.as_object().unwrap() {
                if v.is_null() {
                    a.as_object_mut().unwrap().remove(k);
                } else {
                    a[k] = v.clone();
                }
            }
            a
        };
        // How to spoil {"message": message()}; the status, code and a word of the message.
        let cases: Vec<(Spoil, u16, &str, &str)> = vec![
            (
                Box::new(|r| r["extra"] = json!(1)),
                400,
                "UnableToDeserializePostBody",
                "extra",
            ),
            (
                Box::new(|r| {
                    r.as_object_mut().unwrap().remove("message");
                }),
                400,
                "ErrorInvalidParameter",
                "'message'",
            ),
            (
                Box::new(|r| r["saveToSentItems"] = json!("yes")),
                400,
                "RequestBodyRead",
                "saveToSentItems",
            ),
            (
                Box::new(|r| r["message"] = json!("text")),
                400,
                "RequestBodyRead",
                "'message'",
            ),
            (
                Box::new(|r| r["message"]["subject"] = json!(7)),
                400,
                "RequestBodyRead",
                "'subject'",
            ),
            (
                Box::new(|r| {
                    r["message"]["toRecipients"] =
                        json!({"emailAddress": {"address": "a@example.test"}})
                }),
                400,
                "RequestBodyRead",
                "toRecipients",
            ),
            (
                Box::new(|r| r["message"]["toRecipients"][0]["type"] = json!("to")),
                400,
                "RequestBodyRead",
                "'type'",
            ),
            (
                Box::new(|r| {
                    r["message"]["toRecipients"][0]["emailAddress"] = json!("a@example.test")
                }),
                400,
                "RequestBodyRead",
                "toRecipients",
            ),
            (
                Box::new(|r| {
                    r["message"]["toRecipients"][0]["emailAddress"]["displayName"] = json!("A")
                }),
                400,
                "RequestBodyRead",
                "'displayName'",
            ),
            (
                Box::new(|r| {
                    r["message"]["toRecipients"][0]["emailAddress"]["address"] =
                        json!("not an address")
                }),
                400,
                "ErrorInvalidRecipients",
                "not an address",
            ),
            (
                Box::new(|r| r["message"]["body"] = json!("t")),
                400,
                "RequestBodyRead",
                "'body'",
            ),
            (
                Box::new(|r| r["message"]["body"]["charset"] = json!("utf-8")),
                400,
                "RequestBodyRead",
                "'charset'",
            ),
            (
                Box::new(|r| r["message"]["body"]["contentType"] = json!("markdown")),
                400,
                "RequestBodyRead",
                "'markdown'",
            ),
            (
                Box::new(|r| r["message"]["isReadReceiptRequested"] = json!("yes")),
                400,
                "RequestBodyRead",
                "isReadReceiptRequested",
            ),
            (
                Box::new(|r| r["message"]["internetMessageId"] = json!("no-brackets@example.test")),
                400,
                "ErrorInvalidInternetMessageHeader",
                "angle brackets",
            ),
            (
                Box::new(|r| r["message"]["importance"] = json!("urgent")),
                400,
                "RequestBodyRead",
                "importance",
            ),
            (
                Box::new(|r| r["message"]["attachments"] = json!({})),
                400,
                "RequestBodyRead",
                "attachments",
            ),
            (
                Box::new(|r| {
                    r["message"].as_object_mut().unwrap().remove("toRecipients");
                }),
                400,
                "ErrorInvalidRecipients",
                "no recipients",
            ),
            (
                Box::new(|r| {
                    r["message"]["from"] =
                        json!({"emailAddress": {"address": "boss@contoso.example"}})
                }),
                403,
                "ErrorSendAsDenied",
                "on behalf of",
            ),
        ];
        let attachment_cases: Vec<(Value, u16, &str, &str)> = vec![
            (
                file(json!({"@odata.type": null})),
                400,
                "RequestBodyRead",
                "abstract",
            ),
            (
                file(json!({"name": null})),
                400,
                "ErrorInvalidParameter",
                "'name'",
            ),
            (
                file(json!({"contentBytes": null})),
                400,
                "ErrorInvalidParameter",
                "'contentBytes'",
            ),
            (file(json!({"size": 3})), 400, "RequestBodyRead", "'size'"),
            (
                file(json!({"isInline": "no"})),
                400,
                "RequestBodyRead",
                "isInline",
            ),
            (
                file(json!({"contentBytes": "QUJD="})),
                400,
                "RequestBodyRead",
                "Edm.Binary",
            ),
            (
                file(json!({"contentBytes": "QU J"})),
                400,
                "RequestBodyRead",
                "Edm.Binary",
            ),
        ];
        let mut all: Vec<(Spoil, u16, &str, &str)> = cases;
        for (a, status, code, word) in attachment_cases {
            all.push((
                Box::new(move |r| r["message"]["attachments"] = json!([a.clone()])),
                status,
                code,
                word,
            ));
        }
        for (spoil, status, expected, word) in all {
            let mut request = send_mail();
            spoil(&mut request);
            let (got, v) = post(&server, &token, "/sendMail", &request).await;
            assert_eq!((got, code(&v)), (status, expected), "{request}: {v}");
            let said = v["error"]["message"].as_str().unwrap();
            assert!(
                said.contains(word),
                "{request}: {said:?} should say {word:?}"
            );
        }
        assert!(server.sent().is_empty(), "{}", server.requests_text());
        // Spoiled one at a time, from a request that is taken whole.
        let mut whole = send_mail();
        whole["message"]["from"] = json!({"emailAddress": {"address": SEND_AS}});
        whole["message"]["attachments"] = json!([file(json!({"isInline": false}))]);
        whole["saveToSentItems"] = json!(true);
        let (status, v) = post(&server, &token, "/sendMail", &whole).await;
        assert_eq!(status, 202, "{v}");
    }

    #[tokio::test]
    async fn graph_refuses_users_it_does_not_have_and_mailboxes_without_exchange() {
        let server = GraphServer::start();
        let token = token(&server).await;
        let nobody = "nobody@contoso.example";
        let (status, v) = call(&server, Method::GET, &token, nobody, "", None).await;
        assert_eq!((status, code(&v)), (404, "Request_ResourceNotFound"), "{v}");
        let (status, v) = call(
            &server,
            Method::POST,
            &token,
            nobody,
            "/sendMail",
            Some(&send_mail()),
        )
        .await;
        assert_eq!((status, code(&v)), (404, "ErrorInvalidUser"), "{v}");
        let (status, v) = call(
            &server,
            Method::POST,
            &token,
            NO_MAILBOX,
            "/sendMail",
            Some(&send_mail()),
        )
        .await;
        assert_eq!(
            (status, code(&v)),
            (404, "MailboxNotEnabledForRESTAPI"),
            "{v}"
        );
        // A user without a mailbox is still a user.
        let (status, v) = call(&server, Method::GET, &token, NO_MAILBOX, "", None).await;
        assert_eq!(status, 200, "{v}");
        let (status, v) = call(
            &server,
            Method::GET,
            &token,
            MAILBOX,
            "?$select=id,shoeSize",
            None,
        )
        .await;
        assert_eq!((status, code(&v)), (400, "Request_BadRequest"), "{v}");
        let (status, v) = call(
            &server,
            Method::GET,
            &token,
            MAILBOX,
            "?$select=id,mail",
            None,
        )
        .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["mail"], MAILBOX);
        assert!(v.get("displayName").is_none(), "{v}");
    }

    #[tokio::test]
    async fn graph_refuses_what_the_applications_roles_do_not_allow() {
        let server = start_with_more(|_| {});
        let token = token_of(&server, TENANT_ID, SEND_ONLY_CLIENT_ID, SEND_ONLY_SECRET).await;
        let (status, v) = call(&server, Method::GET, &token, MAILBOX, "", None).await;
        assert_eq!(
            (status, code(&v)),
            (403, "Authorization_RequestDenied"),
            "{v}"
        );
        let (status, v) = post(&server, &token, "/messages", &message()).await;
        assert_eq!((status, code(&v)), (403, "ErrorAccessDenied"), "{v}");
        let (status, v) = post(&server, &token, "/sendMail", &send_mail()).await;
        assert_eq!(status, 202, "Mail.Send is enough for sendMail: {v}");
    }

    #[tokio::test]
    async fn graph_refuses_paths_and_methods_it_does_not_have() {
        let server = GraphServer::start();
        let token = token(&server).await;
        let response = client(&server)
            .get(format!("{}/beta/users/{MAILBOX}", server.graph_url()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let v = json_of(response).await;
        assert_eq!((status, code(&v)), (400, "BadRequest"), "{v}");
        let (status, v) = call(&server, Method::GET, &token, MAILBOX, "/sendMail", None).await;
        assert_eq!((status, code(&v)), (405, "BadRequest"), "{v}");
        let (status, v) = post(&server, &token, "/mailFolders", &json!({})).await;
        assert_eq!((status, code(&v)), (400, "BadRequest"), "{v}");
    }

    // --- drafts and upload sessions ---

    /// A draft of `message()`: its id as it goes in a path.
    async fn draft(server: &GraphServer, token: &str) -> String {
        let (status, v) = post(server, token, "/messages", &message()).await;
        assert_eq!(status, 201, "{v}");
        assert_eq!(v["isDraft"], true);
        v["id"].as_str().unwrap().replace('=', "%3D")
    }

    fn session_request(size: u64) -> Value {
        json!({"AttachmentItem": {"attachmentType": "file", "name": "scan.pdf", "size": size,
                                   "contentType": "application/pdf"}})
    }

    /// A draft and an upload session for `size` bytes on it: the draft's id and the upload URL.
    async fn session(server: &GraphServer, token: &str, size: u64) -> (String, String) {
        let id = draft(server, token).await;
        let rest = format!("/messages/{id}/attachments/createUploadSession");
        let (status, v) = post(server, token, &rest, &session_request(size)).await;
        assert_eq!(status, 201, "{v}");
        assert_eq!(v["nextExpectedRanges"], json!(["0-"]));
        (id, v["uploadUrl"].as_str().unwrap().to_string())
    }

    /// One PUT to an upload URL, as the plugin makes it unless told otherwise.
    struct Put<'a> {
        url: &'a str,
        range: Option<String>,
        len: usize,
        content_type: Option<&'a str>,
        bearer: Option<&'a str>,
        method: Method,
    }

    impl<'a> Put<'a> {
        fn new(url: &'a str, range: &str, len: usize) -> Self {
            Put {
                url,
                range: Some(range.to_string()),
                len,
                content_type: Some("application/octet-stream"),
                bearer: None,
                method: Method::PUT,
            }
        }

        async fn send(self, server: &GraphServer) -> (u16, Value) {
            let mut request = client(server)
                .request(self.method, self.url)
                .body(vec![7u8; self.len]);
            if let Some(range) = &self.range {
                request = request.header("Content-Range", range);
            }
            if let Some(ct) = self.content_type {
                request = request.header("Content-Type", ct);
            }
            if let Some(token) = self.bearer {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            (response.status().as_u16(), json_of(response).await)
        }
    }

    #[tokio::test]
    async fn upload_session_sizes_and_items_are_checked() {
        let server = GraphServer::start();
        let token = token(&server).await;
        let id = draft(&server, &token).await;
        let rest = format!("/messages/{id}/attachments/createUploadSession");
        let item = |edit: Value| {
            let mut r = session_request(3_000_000);
            for (k, v) in edit.as_object().unwrap() {
                if v.is_null() {
                    r["AttachmentItem"].as_object_mut().unwrap().remove(k);
                } else {
                    r["AttachmentItem"][k] = v.clone();
                }
            }
            r
        };
        let mut extra = session_request(3_000_000);
        extra["name"] = json!("x");
        let cases = [
            (
                item(json!({"size": 157_286_401})),
                400,
                "ErrorAttachmentSizeExceedsMaximum",
            ),
            (
                item(json!({"size": 2_999_999})),
                400,
                "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
            ),
            (item(json!({"size": "3000000"})), 400, "RequestBodyRead"),
            (
                item(json!({"attachmentType": "item"})),
                400,
                "ErrorInvalidParameter",
            ),
            (item(json!({"name": null})), 400, "ErrorInvalidParameter"),
            (
                item(json!({"contentBytes": "QUJD"})),
                400,
                "RequestBodyRead",
            ),
            (
                json!({"AttachmentItem": "scan.pdf"}),
                400,
                "RequestBodyRead",
            ),
            (extra, 400, "RequestBodyRead"),
        ];
        for (request, status, expected) in cases {
            let (got, v) = post(&server, &token, &rest, &request).await;
            assert_eq!((got, code(&v)), (status, expected), "{request}: {v}");
        }
        let (status, v) = post(&server, &token, &rest, &item(json!({"size": 157_286_400}))).await;
        assert_eq!(status, 201, "150 MB itself is taken: {v}");
        let (status, v) = post(
            &server,
            &token,
            "/messages/AAAAnotadraft/attachments/createUploadSession",
            &session_request(3_000_000),
        )
        .await;
        assert_eq!((status, code(&v)), (404, "ErrorItemNotFound"), "{v}");
    }

    #[tokio::test]
    async fn upload_refuses_a_missing_authtoken() {
        let server = GraphServer::start();
        let token = token(&server).await;
        let (_, url) = session(&server, &token, 3_000_000).await;
        let bare = url.split('?').next().unwrap();
        let (status, v) = Put::new(bare, "bytes 0-9/3000000", 10).send(&server).await;
        assert_eq!(
            (status, code(&v)),
            (401, "InvalidAuthenticationToken"),
            "{v}"
        );
        // Nor does a bearer token stand in for it.
        let mut put = Put::new(bare, "bytes 0-9/3000000", 10);
        put.bearer = Some(&token);
        let (status, v) = put.send(&server).await;
        assert_eq!(
            (status, code(&v)),
            (401, "InvalidAuthenticationToken"),
            "{v}"
        );
        assert_eq!(
            Put::new(&url, "bytes 0-9/3000000", 10)
                .send(&server)
                .await
                .0,
            200
        );
    }

    #[tokio::test]
    async fn upload_refuses_a_wrong_authtoken() {
        let server = GraphServer::start();
        let token = token(&server).await;
        let (_, url) = session(&server, &token, 3_000_000).await;
        let (_, other) = session(&server, &token, 3_000_000).await;
        let (base, authtoken) = url.split_once("?authtoken=").unwrap();
        let other_token = other.split_once("?authtoken=").unwrap().1;
        for wrong in [
            format!("{base}?authtoken={other_token}"),
            format!("{base}?authtoken={}", &authtoken[1..]),
            format!("{base}?authtoken="),
        ] {
            let (status, v) = Put::new(&wrong, "bytes 0-9/3000000", 10)
                .send(&server)
                .await;
            assert_eq!(
                (status, code(&v)),
                (401, "InvalidAuthenticationToken"),
                "{wrong}: {v}"
            );
        }
        assert_eq!(
            Put::new(&url, "bytes 0-9/3000000", 10)
                .send(&server)
                .await
                .0,
            200
        );
    }

    #[tokio::test]
    async fn upload_refuses_a_malformed_content_range() {
        let server = GraphServer::start();
        let token = token(&server).await;
        let (_, url) = session(&server, &token, 3_000_000).await;
        for range in [
            Some("bytes 0-9"),
            Some("0-9/3000000"),
            Some("bytes=0-9/3000000"),
            Some("bytes 0-9/*"),
            Some("bytes -9/3000000"),
            Some("items 0-9/3000000"),
            None,
        ] {
            let mut put = Put::new(&url, "", 10);
            put.range = range.map(str::to_string);
            let (status, v) = put.send(&server).await;
            assert_eq!(
                (status, code(&v)),
                (400, "ErrorInvalidRequest"),
                "{range:?}: {v}"
            );
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("Content-Range"),
                "{v}"
            );
        }
        assert_eq!(
            Put::new(&url, "bytes 0-9/3000000", 10)
                .send(&server)
                .await
                .0,
            200
        );
    }

    /// Graph's answer to a range that does not fit: 416 and where to go on from.
    fn assert_invalid_range(answer: (u16, Value), next: &str, what: &str) {
        let (status, v) = answer;
        assert_eq!(
            (status, code(&v)),
            (416, "ErrorInvalidRange"),
            "{what}: {v}"
        );
        assert_eq!(
            v["error"]["nextExpectedRanges"],
            json!([next]),
            "{what}: {v}"
        );
    }

    #[tokio::test]
    async fn upload_refuses_a_range_not_starting_at_the_next_expected_byte() {
        let server = GraphServer::start();
        let token = token(&server).await;
        let (_, url) = session(&server, &token, 3_000_000).await;
        assert_invalid_range(
            Put::new(&url, "bytes 10-19/3000000", 10)
                .send(&server)
                .await,
            "0-",
            "a gap before the first range",
        );
        let (status, v) = Put::new(&url, "bytes 0-9/3000000", 10).send(&server).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["nextExpectedRanges"], json!(["10"]), "{v}");
        assert_invalid_range(
            Put::new(&url, "bytes 0-9/3000000", 10).send(&server).await,
            "10-",
            "the same range again",
        );
        assert_invalid_range(
            Put::new(&url, "bytes 20-29/3000000", 10)
                .send(&server)
                .await,
            "10-",
            "a gap",
        );
        assert_eq!(
            Put::new(&url, "bytes 10-19/3000000", 10)
                .send(&server)
                .await
                .0,
            200
        );
    }

    #[tokio::test]
    async fn upload_refuses_a_total_other_than_the_declared_size() {
        let server = GraphServer::start();
        let token = token(&server).await;
        let (_, url) = session(&server, &token, 3_000_000).await;
        for total in ["3000001", "2999999", "10"] {
            assert_invalid_range(
                Put::new(&url, &format!("bytes 0-9/{total}"), 10)
                    .send(&server)
                    .await,
                "0-",
                total,
            );
        }
        assert_eq!(
            Put::new(&url, "bytes 0-9/3000000", 10)
                .send(&server)
                .await
                .0,
            200
        );
    }

    #[tokio::test]
    async fn upload_refuses_a_length_or_an_end_the_range_does_not_add_up_to() {
        let server = GraphServer::start();
        let token = token(&server).await;
        let (_, url) = session(&server, &token, 3_000_000).await;
        assert_invalid_range(
            Put::new(&url, "bytes 0-9/3000000", 11).send(&server).await,
            "0-",
            "11 bytes for 10",
        );
        assert_invalid_range(
            Put::new(&url, "bytes 0-9/3000000", 9).send(&server).await,
            "0-",
            "9 bytes for 10",
        );
        assert_invalid_range(
            Put::new(&url, "bytes 9-0/3000000", 1).send(&server).await,
            "0-",
            "an end before the start",
        );
        assert_invalid_range(
            Put::new(&url, "bytes 0-3000000/3000000", 3_000_001)
                .send(&server)
                .await,
            "0-",
            "an end past the last byte",
        );
        let (status, _) = Put::new(&url, "bytes 0-2999999/3000000", 3_000_000)
            .send(&server)
            .await;
        assert_eq!(status, 201, "the whole file in one range completes it");
    }

    #[tokio::test]
    async fn upload_refuses_an_authorization_header_and_other_content_types() {
        let server = GraphServer::start();
        let token = token(&server).await;
        let (_, url) = session(&server, &token, 3_000_000).await;
        let mut put = Put::new(&url, "bytes 0-9/3000000", 10);
        put.bearer = Some(&token);
        let (status, v) = put.send(&server).await;
        assert_eq!((status, code(&v)), (400, "ErrorInvalidRequest"), "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Authorization"),
            "{v}"
        );
        for content_type in [Some("application/pdf"), Some("application/json"), None] {
            let mut put = Put::new(&url, "bytes 0-9/3000000", 10);
            put.content_type = content_type;
            let (status, v) = put.send(&server).await;
            assert_eq!(
                (status, code(&v)),
                (400, "ErrorInvalidRequest"),
                "{content_type:?}: {v}"
            );
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("octet-stream"),
                "{v}"
            );
        }
        assert_eq!(
            Put::new(&url, "bytes 0-9/3000000", 10)
                .send(&server)
                .await
                .0,
            200
        );
    }

    #[tokio::test]
    async fn upload_urls_take_put_only_on_session_paths() {
        let server = GraphServer::start();
        let token = token(&server).await;
        let (_, url) = session(&server, &token, 3_000_000).await;
        let mut put = Put::new(&url, "bytes 0-9/3000000", 10);
        put.method = Method::POST;
        let (status, v) = put.send(&server).await;
        assert_eq!((status, code(&v)), (405, "ErrorInvalidRequest"), "{v}");
        let elsewhere = format!("{}/api/v2.0/Users", server.outlook_url());
        let (status, v) = Put::new(&elsewhere, "bytes 0-9/3000000", 10)
            .send(&server)
            .await;
        assert_eq!((status, code(&v)), (404, "ErrorInvalidRequest"), "{v}");
        // Without a length, as any PUT.
        let response = client(&server)
            .put(&url)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", "bytes 0-9/3000000")
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let v = json_of(response).await;
        assert_eq!((status, code(&v)), (411, "LengthRequired"), "{v}");
    }

    #[tokio::test]
    async fn upload_refuses_a_range_over_4_mib() {
        let server = GraphServer::start();
        let token = token(&server).await;
        let (_, url) = session(&server, &token, 5_000_000).await;
        let over = 4 * 1024 * 1024 + 1;
        let (status, v) = Put::new(&url, &format!("bytes 0-{}/5000000", over - 1), over)
            .send(&server)
            .await;
        assert_eq!((status, code(&v)), (413, "RequestEntityTooLarge"), "{v}");
        let most = 4 * 1024 * 1024;
        let (status, v) = Put::new(&url, &format!("bytes 0-{}/5000000", most - 1), most)
            .send(&server)
            .await;
        assert_eq!(status, 200, "4 MiB is taken: {v}");
    }

    #[tokio::test]
    async fn send_refuses_a_draft_whose_upload_session_is_pending() {
        let server = GraphServer::start();
        let token = token(&server).await;
        let (id, url) = session(&server, &token, 3_000_000).await;
        let send = format!("/messages/{id}/send");
        let send_draft = || call(&server, Method::POST, &token, MAILBOX, &send, None);
        // reqwest sends no length without a body; Graph's send takes an empty one.
        let send_empty = || {
            let request = client(&server)
                .post(format!("{}/v1.0/users/{MAILBOX}{send}", server.graph_url()))
                .bearer_auth(&token)
                .header("Content-Length", "0");
            async move {
                let response = request.send().await.unwrap();
                (response.status().as_u16(), json_of(response).await)
            }
        };
        assert_eq!(send_draft().await.0, 411);
        let (status, v) = send_empty().await;
        assert_eq!(
            (status, code(&v)),
            (400, "ErrorInvalidRequest"),
            "nothing uploaded: {v}"
        );
        assert_eq!(
            Put::new(&url, "bytes 0-9/3000000", 10)
                .send(&server)
                .await
                .0,
            200
        );
        let (status, v) = send_empty().await;
        assert_eq!(
            (status, code(&v)),
            (400, "ErrorInvalidRequest"),
            "10 bytes uploaded: {v}"
        );
        assert!(server.sent().is_empty());
        let (status, v) = post(&server, &token, &send, &json!({})).await;
        assert_eq!(
            (status, code(&v)),
            (400, "UnableToDeserializePostBody"),
            "a body: {v}"
        );
        let rest = Put::new(&url, "bytes 10-2999999/3000000", 2_999_990);
        assert_eq!(rest.send(&server).await.0, 201);
        let (status, v) = send_empty().await;
        assert_eq!(status, 202, "{v}");
        let sent = server.only_sent();
        assert_eq!(sent.via, "draft");
        assert_eq!(sent.attachments.len(), 1);
        assert_eq!(sent.attachments[0].bytes.len(), 3_000_000);
        assert_eq!(sent.attachments[0].how, "uploaded");
        // The draft is gone once sent.
        let (status, v) = send_empty().await;
        assert_eq!((status, code(&v)), (404, "ErrorItemNotFound"), "{v}");
    }
}

// --- the SendGrid stand-in ---------------------------------------------------------------------

mod sendgrid {
    use super::*;
    use crate::support::sendgrid_server::{API_KEY, SendGridServer};

    const NOT_THE_KEY: &str = "SG.not-the-key";

    fn good() -> Value {
        json!({
            "personalizations": [{"to": [{"email": "a@example.test"}]}],
            "from": {"email": "scans@example.com"},
            "subject": "s",
            "content": [{"type": "text/plain", "value": "t"}],
        })
    }

    /// POST `body` to mail/send with `key` (None: no Authorization) as `content_type`.
    async fn post_raw(
        server: &SendGridServer,
        key: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, Vec<u8>) {
        let mut request = crate::support::https_client(&server.ca_file())
            .post(format!("{}/v3/mail/send", server.api_url()))
            .header("Content-Type", content_type)
            .body(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.bytes().await.unwrap().to_vec())
    }

    async fn post(server: &SendGridServer, key: &str, body: &Value) -> (u16, Value) {
        let (status, body) = post_raw(
            server,
            Some(key),
            "application/json",
            body.to_string().into_bytes(),
        )
        .await;
        (status, serde_json::from_slice(&body).unwrap_or_default())
    }

    /// SendGrid's first error: (field, message).
    fn first_error(v: &Value) -> (Value, &str) {
        (
            v["errors"][0]["field"].clone(),
            v["errors"][0]["message"].as_str().unwrap_or_default(),
        )
    }

    /// nginx's error page for `status`, as SendGrid's front end sends it.
    fn assert_nginx_page(body: &[u8], status_line: &str) {
        let page = String::from_utf8_lossy(body);
        assert!(
            page.contains(&format!("<title>{status_line}</title>")) && page.contains("nginx"),
            "{page}"
        );
    }

    #[tokio::test]
    async fn a_post_without_content_length_is_411() {
        let server = SendGridServer::start();
        // No body: reqwest sends no Content-Length.
        let response = crate::support::https_client(&server.ca_file())
            .post(format!("{}/v3/mail/send", server.api_url()))
            .bearer_auth(API_KEY)
            .header("Content-Type", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 411);
        assert_nginx_page(&response.bytes().await.unwrap(), "411 Length Required");
        // Before the key: the same without one.
        let port = port_of(&server.api_url());
        let request = format!(
            "POST /v3/mail/send HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        );
        let (status, body) = raw(&server.ca_file(), port, request.as_bytes()).await;
        assert_eq!(status, 411);
        assert_nginx_page(&body, "411 Length Required");
        assert!(server.sent().is_empty());
    }

    #[tokio::test]
    async fn a_content_length_that_is_not_one_number_is_400() {
        let server = SendGridServer::start();
        let port = port_of(&server.api_url());
        for length in [
            "Content-Length: abc",
            "Content-Length: -1",
            "Content-Length: 1.5",
            "Content-Length: 2\r\nContent-Length: 3",
        ] {
            let request = format!(
                "POST /v3/mail/send HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
                 Authorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\n{length}\r\n\
                 Connection: close\r\n\r\n"
            );
            let (status, body) = raw(&server.ca_file(), port, request.as_bytes()).await;
            assert_eq!(status, 400, "{length:?}");
            assert_nginx_page(&body, "400 Bad Request");
        }
        assert!(
            !server.stderr().contains("Traceback"),
            "{}",
            server.stderr()
        );
        assert_eq!(
            post(&server, API_KEY, &good()).await.0,
            202,
            "and it still serves"
        );
    }

    #[tokio::test]
    async fn a_body_over_30_mb_is_413_before_the_api_key_is_read() {
        let server = SendGridServer::start();
        for key in [None, Some(NOT_THE_KEY), Some(API_KEY)] {
            let (status, body) =
                post_raw(&server, key, "application/json", vec![b' '; 30_000_001]).await;
            assert_eq!(status, 413, "{key:?}: {}", String::from_utf8_lossy(&body));
            assert_nginx_page(&body, "413 Request Entity Too Large");
        }
        // 30 MB itself passes the front end, and meets the key check.
        let (status, body) = post_raw(
            &server,
            Some(NOT_THE_KEY),
            "application/json",
            vec![b' '; 30_000_000],
        )
        .await;
        assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
        assert!(server.sent().is_empty());
    }

    #[tokio::test]
    async fn any_other_api_key_is_401() {
        let server = SendGridServer::start();
        let said = "The provided authorization grant is invalid, expired, or revoked";
        for key in [Some(NOT_THE_KEY), Some(""), None] {
            let (status, body) = post_raw(
                &server,
                key,
                "application/json",
                good().to_string().into_bytes(),
            )
            .await;
            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
            assert_eq!(
                (status, first_error(&v)),
                (401, (Value::Null, said)),
                "{key:?}: {v}"
            );
        }
        let response = crate::support::https_client(&server.ca_file())
            .post(format!("{}/v3/mail/send", server.api_url()))
            .header("Authorization", format!("Token {API_KEY}"))
            .header("Content-Type", "application/json")
            .body(good().to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status().as_u16(),
            401,
            "the key, not as a Bearer token"
        );
        let response = crate::support::https_client(&server.ca_file())
            .get(format!("{}/v3/scopes", server.api_url()))
            .bearer_auth(NOT_THE_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 401, "scopes too");
        assert!(server.sent().is_empty());
    }

    #[tokio::test]
    async fn an_unknown_path_or_method_is_404() {
        let server = SendGridServer::start();
        let client = crate::support::https_client(&server.ca_file());
        for (method, path) in [
            (reqwest::Method::POST, "/v3/mail/sendx"),
            (reqwest::Method::GET, "/v3/mail/send"),
            (reqwest::Method::POST, "/v3/scopes"),
        ] {
            let response = client
                .request(method.clone(), format!("{}{path}", server.api_url()))
                .bearer_auth(API_KEY)
                .header("Content-Type", "application/json")
                .body(good().to_string())
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let v: Value =
                serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or_default();
            assert_eq!(
                (status, first_error(&v).1),
                (404, "Not found"),
                "{method} {path}: {v}"
            );
        }
        assert!(server.sent().is_empty());
    }

    #[tokio::test]
    async fn a_body_that_is_not_a_json_object_is_400() {
        let server = SendGridServer::start();
        let good = good().to_string().into_bytes();
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "text/plain",
                good.clone(),
                "Content-Type should be application/json.",
            ),
            (
                "application/json",
                b"{\"personalizations\": ".to_vec(),
                "Bad Request",
            ),
            ("application/json", vec![0xff, 0xfe], "Bad Request"),
            (
                "application/json",
                "[".repeat(100_000).into_bytes(),
                "Bad Request",
            ),
            (
                "application/json",
                b"[]".to_vec(),
                "The request body must be a JSON object.",
            ),
        ];
        for (content_type, body, said) in cases {
            let (status, answer) = post_raw(&server, Some(API_KEY), content_type, body).await;
            let v: Value = serde_json::from_slice(&answer).unwrap_or_default();
            assert_eq!(
                (status, first_error(&v).1),
                (400, said),
                "{content_type}: {v}"
            );
        }
        let (status, _) = post_raw(
            &server,
            Some(API_KEY),
            "application/json; charset=utf-8",
            good,
        )
        .await;
        assert_eq!(status, 202);
    }

    #[tokio::test]
    async fn each_mail_send_rule_refuses_naming_its_field() {
        let server = SendGridServer::start();
        type Spoil = Box<dyn Fn(&mut Value)>;
        let many = |n: usize| -> Value {
            (0..n)
                .map(|i| json!({"email": format!("r{i}@example.test")}))
                .collect()
        };
        // How to spoil the good body; the field SendGrid names and the start of its message.
        let cases: Vec<(Spoil, Option<&str>, &str)> = vec![
            (
                Box::new(|m| m["replyTo"] = json!({"email": "r@example.test"})),
                Some("replyTo"),
                "Unknown property replyTo.",
            ),
            (
                Box::new(|m| {
                    m.as_object_mut().unwrap().remove("personalizations");
                }),
                Some("personalizations"),
                "The personalizations field is required",
            ),
            (
                Box::new(|m| m["personalizations"] = json!([])),
                Some("personalizations"),
                "The personalizations field is required",
            ),
            (
                Box::new(move |m| {
                    m["personalizations"] = (0..1001)
                        .map(|i| json!({"to": [{"email": format!("p{i}@example.test")}]}))
                        .collect()
                }),
                Some("personalizations"),
                "The personalizations field is required",
            ),
            (
                Box::new(|m| m["personalizations"][0]["tos"] = json!([])),
                Some("personalizations.0"),
                "Unknown property in a personalization.",
            ),
            (
                Box::new(|m| {
                    m["personalizations"][0] = json!({"cc": [{"email": "a@example.test"}]})
                }),
                Some("personalizations.0.to"),
                "The to array is required",
            ),
            (
                Box::new(|m| m["personalizations"][0]["to"] = json!([])),
                Some("personalizations.0.to"),
                "The to array is required",
            ),
            (
                Box::new(|m| m["personalizations"][0]["cc"] = json!([])),
                Some("personalizations.0.cc"),
                "The cc array must have at least one email object.",
            ),
            (
                Box::new(|m| m["personalizations"][0]["bcc"] = json!({"email": "b@example.test"})),
                Some("personalizations.0.bcc"),
                "The bcc array must have at least one email object.",
            ),
            (
                Box::new(|m| m["personalizations"][0]["to"][0] = json!("a@example.test")),
                Some("personalizations.0.to.0"),
                "The email object must be an object.",
            ),
            (
                Box::new(|m| {
                    m["personalizations"][0]["to"][0]["address"] = json!("a@example.test")
                }),
                Some("personalizations.0.to.0"),
                "Unknown property address.",
            ),
            (
                Box::new(|m| {
                    m["personalizations"][0]["to"][0]["email"] = json!("Ann <a@example.test>")
                }),
                Some("personalizations.0.to.0.email"),
                "Does not contain a valid address.",
            ),
            (
                Box::new(|m| m["personalizations"][0]["to"][0]["name"] = json!(7)),
                Some("personalizations.0.to.0.name"),
                "The name must be a string.",
            ),
            (
                Box::new(|m| m["personalizations"][0]["cc"] = json!([{"email": "A@Example.test"}])),
                Some("personalizations.0.cc"),
                "Each email address in the personalization block should be unique",
            ),
            (
                Box::new(move |m| {
                    m["personalizations"][0]["to"] = many(600);
                    let list = m["personalizations"].as_array_mut().unwrap();
                    list.push(json!({"to": many(401)}));
                }),
                Some("personalizations"),
                "The total number of recipients must be no more than 1000.",
            ),
            (
                Box::new(|m| {
                    m.as_object_mut().unwrap().remove("from");
                }),
                Some("from"),
                "The from object must be provided for every email send.",
            ),
            (
                Box::new(|m| m["from"]["email"] = json!("scans")),
                Some("from.email"),
                "Does not contain a valid address.",
            ),
            (
                Box::new(|m| {
                    m["reply_to"] = json!({"email": "r@example.test"});
                    m["reply_to_list"] = json!([{"email": "s@example.test"}]);
                }),
                Some("reply_to_list"),
                "reply_to and reply_to_list cannot be used together.",
            ),
            (
                Box::new(|m| m["reply_to"] = json!({"email": "r@"})),
                Some("reply_to.email"),
                "Does not contain a valid address.",
            ),
            (
                Box::new(|m| m["reply_to_list"] = json!([])),
                Some("reply_to_list"),
                "The reply_to_list must have at least one email object.",
            ),
            (
                Box::new(|m| {
                    m["reply_to_list"] = json!([{"email": "r@example.test"}, {"email": "bad"}])
                }),
                Some("reply_to_list.1.email"),
                "Does not contain a valid address.",
            ),
            (
                Box::new(|m| m["subject"] = json!("")),
                Some("subject"),
                "The subject is required.",
            ),
            (
                Box::new(|m| {
                    m.as_object_mut().unwrap().remove("subject");
                }),
                Some("subject"),
                "The subject is required.",
            ),
            (
                Box::new(|m| m["content"] = json!([])),
                Some("content"),
                "Unless a valid template_id is provided",
            ),
            (
                Box::new(|m| m["content"][0]["charset"] = json!("utf-8")),
                Some("content.0"),
                "Content blocks have exactly type and value.",
            ),
            (
                Box::new(|m| m["content"][0]["type"] = json!("")),
                Some("content.0.type"),
                "The content type is required.",
            ),
            (
                Box::new(|m| m["content"][0]["value"] = json!("")),
                Some("content.0.value"),
                "The content value must be a string at least one character in length.",
            ),
            (
                Box::new(
                    |m| m["content"] = json!([{"type": "text/html", "value": "h"}, {"type": "text/plain", "value": "t"}]),
                ),
                Some("content"),
                "If present, text/plain must be first",
            ),
            (
                Box::new(|m| m["attachments"] = json!({"content": "QUJD", "filename": "a"})),
                Some("attachments"),
                "The attachments must be an array of attachment objects.",
            ),
            (
                Box::new(|m| {
                    m["attachments"] = json!([{"content": "QUJD", "filename": "a", "size": 3}])
                }),
                Some("attachments.0"),
                "Unknown property in an attachment.",
            ),
            (
                Box::new(|m| {
                    m["attachments"] = json!([{"content": "not base64!", "filename": "a"}])
                }),
                Some("attachments.0.content"),
                "The attachment content must be base64 encoded.",
            ),
            (
                Box::new(|m| m["attachments"] = json!([{"content": "QUJD=", "filename": "a"}])),
                Some("attachments.0.content"),
                "The attachment content must be base64 encoded.",
            ),
            (
                Box::new(|m| m["attachments"] = json!([{"content": "QUJD"}])),
                Some("attachments.0.filename"),
                "The attachment filename parameter is required.",
            ),
            (
                Box::new(
                    |m| m["attachments"] = json!([{"content": "QUJD", "filename": "a", "type": "text/plain; charset=utf-8"}]),
                ),
                Some("attachments.0.type"),
                "The attachment type must be a MIME type without parameters.",
            ),
            (
                Box::new(|m| {
                    m["attachments"] =
                        json!([{"content": "QUJD", "filename": "a", "disposition": "embedded"}])
                }),
                Some("attachments.0.disposition"),
                "The disposition must be attachment or inline.",
            ),
            (
                Box::new(|m| {
                    m["attachments"] =
                        json!([{"content": "QUJD", "filename": "a", "disposition": "inline"}])
                }),
                Some("attachments.0.content_id"),
                "The content_id parameter is required for inline attachments.",
            ),
            (
                Box::new(|m| m["custom_args"] = json!({"n": 7})),
                Some("custom_args"),
                "custom_args values must be strings.",
            ),
        ];
        for (spoil, field, said) in cases {
            let mut body = good();
            spoil(&mut body);
            let (status, v) = post(&server, API_KEY, &body).await;
            let (got_field, got_said) = first_error(&v);
            assert_eq!(status, 400, "{field:?}: {v}");
            assert_eq!(got_field, json!(field), "{v}");
            assert!(
                got_said.starts_with(said),
                "{field:?}: {got_said:?} should start {said:?}"
            );
        }
        assert!(server.sent().is_empty());
        // Each rule refuses only its own fault: the good body, with every optional part, is taken.
        let mut whole = good();
        whole["personalizations"][0]["cc"] = json!([{"email": "c@example.test", "name": "C"}]);
        whole["personalizations"][0]["bcc"] = many(998);
        whole["reply_to_list"] = json!([{"email": "r@example.test"}]);
        whole["content"] = json!([
            {"type": "text/plain", "value": "t"},
            {"type": "text/html", "value": "<p>h</p>"},
        ]);
        whole["attachments"] = json!([
            {"content": "QUJD", "filename": "a.txt", "type": "text/plain"},
            {"content": "QUI=", "filename": "b.png", "disposition": "inline", "content_id": "b"},
        ]);
        whole["custom_args"] = json!({"n": "7"});
        let (status, v) = post(&server, API_KEY, &whole).await;
        assert_eq!(status, 202, "{v}");
        assert_eq!(server.sent().len(), 1);
    }
}
