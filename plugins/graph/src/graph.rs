//! The Graph sender's protocol flow over the [`Host`] trait: the client-credentials token (kept
//! in the host's per-sender state until shortly before it expires), `sendMail`, the draft and
//! upload-session path for large attachments, and "Test" (a token and a read of the user).
//!
//! | step | request | success |
//! |---|---|---|
//! | token | `POST {authority}/{tenant}/oauth2/v2.0/token` (form; `client_secret` filled in by the host) | 200 |
//! | small message | `POST {graph}/v1.0/users/{username}/sendMail` | 202 |
//! | draft | `POST …/users/{username}/messages` | 201 |
//! | small attachment | `POST …/messages/{id}/attachments` | 201 |
//! | large attachment | `POST …/messages/{id}/attachments/createUploadSession`, then `PUT {uploadUrl}` ranges | 201, 200…, 201 |
//! | send the draft | `POST …/messages/{id}/send` | 202 |
//! | test | `GET …/users/{username}` | 200 |
//!
//! A cached token that Graph refuses (401) is dropped and a new one asked for, once. A failed
//! draft is deleted (best effort). The plugin never retries a throttled request itself: the
//! caller gets `temporary` with Graph's `Retry-After`. Nothing here logs a token or a secret.

use serde_json::Value;

use crate::failure::{Failure, graph_failure, token_failure};
use crate::message::{self, Message, Plan, path_segment, range_at};
use crate::settings::Settings;
use crate::transport::{Body, Host, Level, Method, Part, Request, Response};

/// The state key of the access token.
pub const TOKEN_KEY: &str = "access-token";
/// A token is dropped from the cache this long before Microsoft says it expires.
pub const TOKEN_MARGIN_SECS: u64 = 300;
const TOKEN_TIMEOUT_MS: u32 = 60_000;
const UPLOAD_TIMEOUT_MS: u32 = 300_000;

/// What Graph said when it took the message: the provider id is Graph's `request-id` of the
/// final request; Graph takes or refuses the message as a whole, so nothing is refused one by one.
pub use scan2x_mail_plugin_kit::Receipt;

/// How long to keep a token that lives `expires_in` seconds: until [`TOKEN_MARGIN_SECS`] before
/// it expires, or half its life when it is short. 0: don't keep it.
pub fn cache_ttl(expires_in: u64) -> u32 {
    let ttl = if expires_in > 2 * TOKEN_MARGIN_SECS {
        expires_in - TOKEN_MARGIN_SECS
    } else {
        expires_in / 2
    };
    u32::try_from(ttl).unwrap_or(u32::MAX)
}

pub struct Graph<'h, H: Host> {
    host: &'h mut H,
    settings: &'h Settings<H::Secret>,
}

impl<'h, H: Host> Graph<'h, H> {
    pub fn new(host: &'h mut H, settings: &'h Settings<H::Secret>) -> Self {
        Self { host, settings }
    }

    fn user_url(&self, rest: &str) -> String {
        format!(
            "{}/v1.0/users/{}{rest}",
            self.settings.graph_url,
            path_segment(&self.settings.username)
        )
    }

    /// The sending mailbox's From address when it is another one.
    fn sending_address(&self) -> &str {
        self.settings
            .from_email
            .as_deref()
            .unwrap_or(&self.settings.username)
    }

    /// A new token from the identity platform, kept in the host's state.
    fn fresh_token(&mut self) -> Result<String, Failure> {
        let s = self.settings;
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            s.authority_url,
            path_segment(&s.tenant_id)
        );
        let text = |t: &str| vec![Part::Text(t.to_owned())];
        let mut request = Request::new(Method::Post, url).header("Accept", "application/json");
        request.body = Body::Form(vec![
            ("client_id".to_owned(), text(&s.client_id)),
            (
                "scope".to_owned(),
                text(&format!("{}/.default", s.graph_url)),
            ),
            (
                "client_secret".to_owned(),
                vec![Part::Secret(&s.client_secret)],
            ),
            ("grant_type".to_owned(), text("client_credentials")),
        ]);
        request.timeout_ms = Some(TOKEN_TIMEOUT_MS);
        let doing = format!("getting an access token from {}", s.authority_url);
        let response = self
            .host
            .http(request)
            .map_err(|e| e.into_send_error(&doing))?;
        if response.status != 200 {
            return Err(token_failure(&response, &s.tenant_id, &s.client_id));
        }
        let v = response.json().unwrap_or_default();
        let token = v["access_token"].as_str().filter(|t| !t.is_empty());
        let bearer = v["token_type"]
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case("bearer"));
        let expires_in = v["expires_in"]
            .as_u64()
            .or_else(|| v["expires_in"].as_str().and_then(|t| t.parse().ok()));
        let (Some(token), true, Some(expires_in)) = (token, bearer, expires_in) else {
            return Err(Failure::AuthFailed(format!(
                "{doing}: the answer is not a bearer token with access_token and expires_in; is \
                 authority_url the identity platform?"
            )));
        };
        let ttl = cache_ttl(expires_in);
        if ttl > 0 {
            self.host.state_set(TOKEN_KEY, token.as_bytes(), ttl);
        }
        self.host.log(
            Level::Debug,
            &format!("new access token, valid {expires_in} s, kept {ttl} s"),
        );
        Ok(token.to_owned())
    }

    /// The kept token, or a new one; and whether it was kept.
    fn token(&mut self) -> Result<(String, bool), Failure> {
        if let Some(kept) = self.host.state_get(TOKEN_KEY)
            && let Ok(token) = String::from_utf8(kept)
            && !token.is_empty()
        {
            return Ok((token, true));
        }
        Ok((self.fresh_token()?, false))
    }

    /// A Graph request with the bearer token; a kept token Graph refuses is renewed once.
    fn call(
        &mut self,
        method: Method,
        url: &str,
        json: Option<&Value>,
        doing: &str,
    ) -> Result<Response, Failure> {
        let (mut token, mut kept) = self.token()?;
        loop {
            let mut request = Request::new(method, url.to_owned());
            request.headers.push((
                "Authorization".to_owned(),
                vec![Part::Text(format!("Bearer {token}"))],
            ));
            request = match json {
                Some(v) => request.json(v),
                // Graph wants a length on a POST without body (`send`): an empty body has one.
                None if method == Method::Post => {
                    let mut r = request;
                    r.body = Body::Bytes(Vec::new());
                    r
                }
                None => request,
            };
            let response = self
                .host
                .http(request)
                .map_err(|e| e.into_send_error(doing))?;
            if response.status == 401 && kept {
                self.host.log(
                    Level::Info,
                    "Microsoft Graph refused the kept access token; getting a new one",
                );
                self.host.state_remove(TOKEN_KEY);
                token = self.fresh_token()?;
                kept = false;
                continue;
            }
            return Ok(response);
        }
    }

    /// "Test": a new token, then read the user. No mail.
    pub fn verify(&mut self) -> Result<String, Failure> {
        self.host.state_remove(TOKEN_KEY);
        let _ = self.fresh_token()?;
        let url = self.user_url("?$select=id,displayName,mail,userPrincipalName");
        let doing = format!("reading user {}", self.settings.username);
        let response = self.call(Method::Get, &url, None, &doing)?;
        if response.status == 403 {
            let e = crate::failure::GraphError::parse(&response.body);
            return Err(Failure::AuthFailed(format!(
                "{doing}: access denied ({} {}); the test reads the user, which needs the \
                 User.Read.All application permission besides Mail.Send",
                e.code, e.message
            )));
        }
        if response.status != 200 {
            return Err(graph_failure(
                &response,
                &doing,
                &self.settings.username,
                self.sending_address(),
            ));
        }
        let user = response.json().unwrap_or_default();
        let upn = user["userPrincipalName"]
            .as_str()
            .unwrap_or(&self.settings.username);
        let mail = user["mail"].as_str().unwrap_or("no mail address");
        Ok(format!(
            "token for application {} in tenant {} issued; user {upn} ({mail}) found; no mail sent",
            self.settings.client_id, self.settings.tenant_id
        ))
    }

    pub fn send(&mut self, message: &Message) -> Result<Receipt, Failure> {
        let plan = message::plan(
            message,
            &self.settings.username,
            self.settings.from_email.as_deref(),
        )
        .map_err(|e| Failure::InvalidMessage(e.0))?;
        let (response, via) = match plan {
            Plan::SendMail(body) => {
                let url = self.user_url("/sendMail");
                let response = self.call(Method::Post, &url, Some(&body), "sending the message")?;
                (response, "sendMail".to_owned())
            }
            Plan::Draft {
                draft,
                small,
                large,
            } => {
                let id = self.create_draft(&draft)?;
                match self.complete_draft(message, &id, &small, &large) {
                    Ok(response) if response.status == 202 => {
                        let via = format!(
                            "draft with {} attachment(s) added and {} uploaded",
                            small.len(),
                            large.len()
                        );
                        (response, via)
                    }
                    outcome => {
                        self.delete_draft(&id);
                        (outcome?, String::new())
                    }
                }
            }
        };
        if response.status != 202 {
            return Err(graph_failure(
                &response,
                "sending the message",
                &self.settings.username,
                self.sending_address(),
            ));
        }
        Ok(Receipt {
            provider_id: response.header("request-id").map(str::to_owned),
            accepted: message.recipients(),
            refused: Vec::new(),
            detail: format!("202 Accepted by Microsoft Graph ({via})"),
        })
    }

    fn expect(&self, response: Response, status: u16, doing: &str) -> Result<Response, Failure> {
        if response.status == status {
            Ok(response)
        } else {
            Err(graph_failure(
                &response,
                doing,
                &self.settings.username,
                self.sending_address(),
            ))
        }
    }

    fn create_draft(&mut self, draft: &Value) -> Result<String, Failure> {
        let url = self.user_url("/messages");
        let doing = "creating the draft";
        let response = self.call(Method::Post, &url, Some(draft), doing)?;
        let response = self.expect(response, 201, doing)?;
        response
            .json()
            .and_then(|v| v["id"].as_str().map(str::to_owned))
            .filter(|id| !id.is_empty())
            .ok_or_else(|| Failure::Rejected(format!("{doing}: Graph's answer has no message id")))
    }

    /// Adds the attachments and sends the draft; the response is `send`'s.
    fn complete_draft(
        &mut self,
        message: &Message,
        id: &str,
        small: &[usize],
        large: &[usize],
    ) -> Result<Response, Failure> {
        let base = format!("/messages/{}", path_segment(id));
        for &i in small {
            let a = &message.attachments[i];
            let doing = format!("attaching {:?}", a.filename);
            let url = self.user_url(&format!("{base}/attachments"));
            let response = self.call(
                Method::Post,
                &url,
                Some(&message::file_attachment_json(a)),
                &doing,
            )?;
            self.expect(response, 201, &doing)?;
        }
        for &i in large {
            self.upload(&base, &message.attachments[i])?;
        }
        let url = self.user_url(&format!("{base}/send"));
        self.call(Method::Post, &url, None, "sending the draft")
    }

    fn upload(&mut self, base: &str, a: &message::Attachment) -> Result<(), Failure> {
        let doing = format!("uploading {:?}", a.filename);
        let url = self.user_url(&format!("{base}/attachments/createUploadSession"));
        let response = self.call(
            Method::Post,
            &url,
            Some(&message::upload_session_json(a)),
            &doing,
        )?;
        let session = self
            .expect(response, 201, &doing)?
            .json()
            .unwrap_or_default();
        let Some(upload_url) = session["uploadUrl"].as_str().map(str::to_owned) else {
            return Err(Failure::Rejected(format!(
                "{doing}: Graph's upload session has no uploadUrl"
            )));
        };
        // An attachment fits in memory, so its size fits in usize.
        let total = a.content.len() as usize;
        let mut start = message::next_expected(&session).unwrap_or(0);
        // Each range must move forward; a server that asks for the same bytes again is stuck.
        let mut puts = 0usize;
        let limit = total.div_ceil(message::CHUNK_BYTES) * 2 + 4;
        loop {
            puts += 1;
            if puts > limit || start >= total {
                return Err(Failure::Rejected(format!(
                    "{doing}: the upload session did not finish after {} ranges",
                    puts - 1
                )));
            }
            let range = range_at(start, total);
            let mut request = Request::new(Method::Put, upload_url.clone())
                .header("Content-Type", "application/octet-stream")
                .header("Content-Range", &range.content_range());
            request.body = Body::Content {
                content: a.content.clone(),
                offset: range.start as u64,
                length: (range.end - range.start) as u64,
            };
            request.timeout_ms = Some(UPLOAD_TIMEOUT_MS);
            let response =
                self.host
                    .http(request)
                    .map_err(|e| match e.into_send_error(&doing) {
                        Failure::Denied(m) => Failure::Denied(format!(
                            "{m}; Graph's upload URL is on another origin than outlook_url: set \
                     outlook_url to the Outlook endpoint of your cloud"
                        )),
                        other => other,
                    })?;
            match response.status {
                201 if range.end == total => return Ok(()),
                200 => {
                    let next = response
                        .json()
                        .and_then(|v| message::next_expected(&v))
                        .unwrap_or(range.end);
                    start = next;
                }
                _ => {
                    return Err(graph_failure(
                        &response,
                        &doing,
                        &self.settings.username,
                        self.sending_address(),
                    ));
                }
            }
        }
    }

    /// Deletes a draft that could not be sent, so it does not linger in the mailbox.
    fn delete_draft(&mut self, id: &str) {
        let url = self.user_url(&format!("/messages/{}", path_segment(id)));
        match self.call(Method::Delete, &url, None, "deleting the unsent draft") {
            Ok(r) if r.status == 204 => {}
            _ => self.host.log(
                Level::Warn,
                "an unsent draft could not be deleted; it stays in the mailbox's Drafts folder",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Attachment, Mailbox};
    use crate::transport::TransportError;
    use std::collections::{HashMap, VecDeque};

    /// A request as the fake saw it: method, URL, headers and body with secrets filled in, and
    /// whether a secret handle went into it.
    type Seen = (Method, String, Vec<(String, String)>, Vec<u8>, bool);

    /// A host whose HTTP answers are scripted per (method, URL suffix), recording every request.
    #[derive(Default)]
    struct Fake {
        answers: VecDeque<(Method, String, Response)>,
        requests: Vec<Seen>,
        state: HashMap<String, (Vec<u8>, u32)>,
    }

    fn reply(status: u16, body: Value) -> Response {
        Response {
            status,
            headers: vec![("request-id".into(), "req-1".into())],
            body: if body.is_null() {
                Vec::new()
            } else {
                body.to_string().into_bytes()
            },
        }
    }

    impl Fake {
        fn answer(&mut self, method: Method, suffix: &str, response: Response) -> &mut Self {
            self.answers.push_back((method, suffix.into(), response));
            self
        }

        fn token(&mut self) -> &mut Self {
            self.answer(
                Method::Post,
                "/oauth2/v2.0/token",
                reply(
                    200,
                    serde_json::json!({"token_type": "Bearer", "expires_in": 3599, "access_token": "tok-1"}),
                ),
            )
        }

        fn urls(&self) -> Vec<String> {
            self.requests.iter().map(|r| r.1.clone()).collect()
        }
    }

    impl Host for Fake {
        type Secret = &'static str;

        fn http(&mut self, request: Request<'_, Self::Secret>) -> Result<Response, TransportError> {
            let join = |parts: &[Part<'_, &'static str>]| -> (String, bool) {
                let mut secret = false;
                let text = parts
                    .iter()
                    .map(|p| match p {
                        Part::Text(t) => t.clone(),
                        Part::Secret(s) => {
                            secret = true;
                            (**s).to_owned()
                        }
                    })
                    .collect();
                (text, secret)
            };
            let headers = request
                .headers
                .iter()
                .map(|(n, v)| (n.clone(), join(v).0))
                .collect();
            let (body, secret) = match &request.body {
                Body::Empty => (Vec::new(), false),
                Body::Bytes(b) => (b.clone(), false),
                Body::Content {
                    content,
                    offset,
                    length,
                } => (content.read(*offset, *length), false),
                Body::Form(fields) => {
                    let mut any = false;
                    let text: Vec<String> = fields
                        .iter()
                        .map(|(n, v)| {
                            let (t, s) = join(v);
                            any |= s;
                            format!("{n}={t}")
                        })
                        .collect();
                    (text.join("&").into_bytes(), any)
                }
            };
            self.requests
                .push((request.method, request.url.clone(), headers, body, secret));
            let (method, suffix, response) = self.answers.pop_front().unwrap_or_else(|| {
                panic!("unexpected request {:?} {}", request.method, request.url)
            });
            assert_eq!(method, request.method, "{}", request.url);
            let path = request.url.split('?').next().unwrap();
            assert!(
                path.ends_with(&suffix),
                "{} does not end with {suffix}",
                request.url
            );
            Ok(response)
        }

        fn state_get(&mut self, key: &str) -> Option<Vec<u8>> {
            self.state.get(key).map(|(v, _)| v.clone())
        }

        fn state_set(&mut self, key: &str, value: &[u8], ttl_secs: u32) {
            self.state.insert(key.into(), (value.to_vec(), ttl_secs));
        }

        fn state_remove(&mut self, key: &str) {
            self.state.remove(key);
        }

        fn log(&mut self, _level: Level, _message: &str) {}
    }

    fn settings() -> Settings<&'static str> {
        Settings {
            tenant_id: "contoso.onmicrosoft.com".into(),
            client_id: "0b7b1a2c-3d4e-4f50-8a6b-7c8d9e0f1a2b".into(),
            client_secret: "the-secret",
            username: "scanner@contoso.example".into(),
            from_email: None,
            authority_url: "https://login.example.test".into(),
            graph_url: "https://graph.example.test".into(),
            outlook_url: "https://outlook.example.test".into(),
        }
    }

    fn message(sizes: &[usize]) -> Message {
        Message {
            message_id: "m1@scan2x-mail".into(),
            from: None,
            to: vec![Mailbox {
                name: None,
                address: "to@example.test".into(),
            }],
            cc: vec![],
            bcc: vec![Mailbox {
                name: None,
                address: "bcc@example.test".into(),
            }],
            reply_to: vec![],
            subject: "s".into(),
            text_body: Some("t".into()),
            html_body: None,
            attachments: sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| Attachment {
                    filename: format!("f{i}.pdf"),
                    content_type: "application/pdf".into(),
                    content: (0..n).map(|b| (b % 251) as u8).collect::<Vec<u8>>().into(),
                })
                .collect(),
        }
    }

    #[test]
    fn token_ttl_keeps_a_margin_before_expiry() {
        assert_eq!(cache_ttl(3599), 3299);
        assert_eq!(cache_ttl(601), 301);
        assert_eq!(cache_ttl(600), 300);
        assert_eq!(cache_ttl(10), 5);
        assert_eq!(cache_ttl(1), 0);
    }

    #[test]
    fn the_token_request_is_a_client_credentials_grant_with_the_secret_as_a_handle() {
        let mut host = Fake::default();
        host.token().answer(
            Method::Post,
            "/users/scanner@contoso.example/sendMail",
            reply(202, Value::Null),
        );
        let s = settings();
        Graph::new(&mut host, &s).send(&message(&[])).unwrap();
        let (method, url, _, body, secret) = &host.requests[0];
        assert_eq!(*method, Method::Post);
        assert_eq!(
            url,
            "https://login.example.test/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(
            String::from_utf8(body.clone()).unwrap(),
            "client_id=0b7b1a2c-3d4e-4f50-8a6b-7c8d9e0f1a2b&scope=https://graph.example.test/.default\
             &client_secret=the-secret&grant_type=client_credentials"
        );
        assert!(secret, "client_secret must travel as a secret handle");
        assert_eq!(host.state[TOKEN_KEY], (b"tok-1".to_vec(), 3299));
        let auth = &host.requests[1].2;
        assert!(auth.contains(&("Authorization".into(), "Bearer tok-1".into())));
    }

    #[test]
    fn a_kept_token_is_reused_across_sends() {
        let mut host = Fake::default();
        host.token();
        for _ in 0..3 {
            host.answer(Method::Post, "/sendMail", reply(202, Value::Null));
        }
        let s = settings();
        for _ in 0..3 {
            Graph::new(&mut host, &s).send(&message(&[10])).unwrap();
        }
        let tokens = host.urls().iter().filter(|u| u.ends_with("/token")).count();
        assert_eq!(tokens, 1, "{:?}", host.urls());
    }

    #[test]
    fn a_kept_token_graph_refuses_is_renewed_once() {
        let mut host = Fake::default();
        host.state_set(TOKEN_KEY, b"stale", 100);
        host.answer(
            Method::Post,
            "/sendMail",
            reply(401, serde_json::json!({"error": {"code": "InvalidAuthenticationToken", "message": "expired"}})),
        )
        .token()
        .answer(Method::Post, "/sendMail", reply(202, Value::Null));
        let s = settings();
        let receipt = Graph::new(&mut host, &s).send(&message(&[])).unwrap();
        assert_eq!(receipt.provider_id.as_deref(), Some("req-1"));
        assert_eq!(host.requests.len(), 3);
        assert_eq!(host.state[TOKEN_KEY].0, b"tok-1");
    }

    #[test]
    fn a_fresh_token_graph_refuses_is_auth_failed_without_a_loop() {
        let mut host = Fake::default();
        host.token().answer(
            Method::Post,
            "/sendMail",
            reply(401, serde_json::json!({"error": {"code": "InvalidAuthenticationToken", "message": "bad"}})),
        );
        let s = settings();
        let e = Graph::new(&mut host, &s).send(&message(&[])).unwrap_err();
        assert_eq!(e.kind(), "auth-failed");
        assert_eq!(host.requests.len(), 2);
    }

    #[test]
    fn a_large_attachment_goes_through_a_draft_and_ranged_puts() {
        let total = 9_000_000;
        let mut host = Fake::default();
        host.token()
            .answer(Method::Post, "/users/scanner@contoso.example/messages", reply(201, serde_json::json!({"id": "AAMk=/x"})))
            .answer(Method::Post, "/messages/AAMk%3D%2Fx/attachments", reply(201, serde_json::json!({"id": "att"})))
            .answer(
                Method::Post,
                "/messages/AAMk%3D%2Fx/attachments/createUploadSession",
                reply(201, serde_json::json!({"uploadUrl": "https://outlook.example.test/up/1?authtoken=x", "nextExpectedRanges": ["0-"]})),
            );
        let mut start = 0;
        while start < total {
            let r = range_at(start, total);
            if r.end == total {
                host.answer(Method::Put, "/up/1", reply(201, Value::Null));
            } else {
                host.answer(
                    Method::Put,
                    "/up/1",
                    reply(
                        200,
                        serde_json::json!({"nextExpectedRanges": [format!("{}", r.end)]}),
                    ),
                );
            }
            start = r.end;
        }
        host.answer(
            Method::Post,
            "/messages/AAMk%3D%2Fx/send",
            reply(202, Value::Null),
        );
        let s = settings();
        let msg = message(&[100, total]);
        let receipt = Graph::new(&mut host, &s).send(&msg).unwrap();
        assert_eq!(
            receipt.accepted,
            vec!["to@example.test", "bcc@example.test"]
        );
        let puts: Vec<_> = host
            .requests
            .iter()
            .filter(|r| r.0 == Method::Put)
            .collect();
        assert_eq!(puts.len(), 3);
        let mut assembled = Vec::new();
        for put in &puts {
            assert!(
                !put.2.iter().any(|(n, _)| n == "Authorization"),
                "PUT must not carry the token"
            );
            let range = put.2.iter().find(|(n, _)| n == "Content-Range").unwrap();
            assert_eq!(
                range.1,
                format!(
                    "bytes {}-{}/{total}",
                    assembled.len(),
                    assembled.len() + put.3.len() - 1
                )
            );
            assembled.extend_from_slice(&put.3);
        }
        assert_eq!(assembled, msg.attachments[1].content.to_vec());
        let send = host.requests.last().unwrap();
        assert!(send.3.is_empty());
    }

    #[test]
    fn a_failed_upload_deletes_the_draft_and_says_why() {
        let mut host = Fake::default();
        host.token()
            .answer(Method::Post, "/messages", reply(201, serde_json::json!({"id": "d1"})))
            .answer(
                Method::Post,
                "/createUploadSession",
                reply(429, serde_json::json!({"error": {"code": "ApplicationThrottled", "message": "slow down"}})),
            )
            .answer(Method::Delete, "/messages/d1", reply(204, Value::Null));
        let mut throttled = host.answers[2].2.clone();
        throttled.headers.push(("Retry-After".into(), "9".into()));
        host.answers[2].2 = throttled;
        let s = settings();
        let e = Graph::new(&mut host, &s)
            .send(&message(&[3_500_000]))
            .unwrap_err();
        assert!(
            matches!(
                e,
                Failure::Temporary {
                    retry_after_secs: Some(9),
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(host.requests.last().unwrap().0, Method::Delete);
    }

    #[test]
    fn an_upload_url_outside_the_grants_is_denied_naming_outlook_url() {
        struct Denying(Fake);
        impl Host for Denying {
            type Secret = &'static str;
            fn http(&mut self, r: Request<'_, &'static str>) -> Result<Response, TransportError> {
                if r.method == Method::Put {
                    return Err(TransportError::Denied("not granted".into()));
                }
                self.0.http(r)
            }
            fn state_get(&mut self, k: &str) -> Option<Vec<u8>> {
                self.0.state_get(k)
            }
            fn state_set(&mut self, k: &str, v: &[u8], t: u32) {
                self.0.state_set(k, v, t)
            }
            fn state_remove(&mut self, k: &str) {
                self.0.state_remove(k)
            }
            fn log(&mut self, _: Level, _: &str) {}
        }
        let mut fake = Fake::default();
        fake.token()
            .answer(Method::Post, "/messages", reply(201, serde_json::json!({"id": "d1"})))
            .answer(
                Method::Post,
                "/createUploadSession",
                reply(201, serde_json::json!({"uploadUrl": "https://elsewhere.test/up", "nextExpectedRanges": ["0-"]})),
            )
            .answer(Method::Delete, "/messages/d1", reply(204, Value::Null));
        let mut host = Denying(fake);
        let s = settings();
        let e = Graph::new(&mut host, &s)
            .send(&message(&[3_000_000]))
            .unwrap_err();
        assert_eq!(e.kind(), "denied");
        assert!(e.message().contains("outlook_url"), "{e:?}");
    }

    #[test]
    fn verify_gets_a_new_token_and_reads_the_user_without_sending() {
        let mut host = Fake::default();
        host.state_set(TOKEN_KEY, b"kept", 100);
        host.token().answer(
            Method::Get,
            "/users/scanner@contoso.example",
            reply(200, serde_json::json!({"id": "1", "userPrincipalName": "scanner@contoso.example", "mail": "scanner@contoso.example"})),
        );
        let s = settings();
        let line = Graph::new(&mut host, &s).verify().unwrap();
        assert!(line.contains("no mail sent"), "{line}");
        assert!(host.urls().iter().all(|u| !u.contains("sendMail")));
        assert_eq!(host.requests.len(), 2);
    }
}
