//! The two requests the sender makes, over the kit's [`Host`] trait (so they test natively
//! against a scripted host), and what SendGrid's answers mean:
//!
//! | request | answer | result |
//! |---|---|---|
//! | `POST {api_url}/v3/mail/send` | 202 with `X-Message-Id` | a receipt naming every recipient |
//! | `GET {api_url}/v3/scopes` ("Test") | 200 listing `mail.send` | ok; without it `auth-failed` naming `api_key` |
//! | either | 401 | `auth-failed`, naming `api_key` |
//! | either | 403 about a Sender Identity | `invalid-settings`, naming `from_email` |
//! | either | 413 | `invalid-message` |
//! | either | 408, 429, 500, 502, 503, 504 | `temporary`, with `Retry-After` when given |
//! | either | other 4xx and 5xx | `rejected`, quoting SendGrid's first error |
//!
//! The API key travels only as a secret part of `Authorization`; the host fills it in.

use serde_json::Value;

use scan2x_mail_plugin_kit::host::{Host, Level, Method, Request, Response};
use scan2x_mail_plugin_kit::{Message, Receipt, SendError};

use crate::body::{self, From};
use crate::settings::Settings;

fn request<'a, S>(method: Method, settings: &'a Settings<S>, path: &str) -> Request<'a, S> {
    Request::new(method, format!("{}{path}", settings.api_url))
        .secret_header("Authorization", "Bearer ", &settings.api_key)
        .header("Accept", "application/json")
}

/// Sends one message with `POST /v3/mail/send`.
pub fn send<H: Host>(
    host: &mut H,
    settings: &Settings<H::Secret>,
    message: &Message,
) -> Result<Receipt, SendError> {
    let from = From {
        email: &settings.from_email,
        name: settings.from_name.as_deref(),
    };
    let json = body::mail_send(message, &from)?;
    let request = request(Method::Post, settings, "/v3/mail/send").json(&json);
    host.log(
        Level::Debug,
        &format!("mail/send with {} attachments", message.attachments.len()),
    );
    let doing = "sending with SendGrid";
    let response = host.http(request).map_err(|e| e.into_send_error(doing))?;
    if response.status != 202 && response.status != 200 {
        return Err(failure(&response, doing));
    }
    let provider_id = response.header("X-Message-Id").map(str::to_owned);
    Ok(Receipt {
        detail: format!(
            "SendGrid accepted the message ({}){}",
            response.status,
            provider_id
                .as_deref()
                .map(|id| format!(", X-Message-Id {id}"))
                .unwrap_or_default()
        ),
        provider_id,
        accepted: message.recipients(),
        refused: Vec::new(),
    })
}

/// "Test settings": asks which scopes the API key has, and wants `mail.send` among them.
pub fn verify<H: Host>(host: &mut H, settings: &Settings<H::Secret>) -> Result<String, SendError> {
    let doing = "checking the API key";
    let response = host
        .http(request(Method::Get, settings, "/v3/scopes"))
        .map_err(|e| e.into_send_error(doing))?;
    if response.status != 200 {
        return Err(failure(&response, doing));
    }
    let scopes: Vec<String> = response
        .json()
        .and_then(|v| v.get("scopes").and_then(Value::as_array).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect();
    if !scopes.iter().any(|s| s == "mail.send") {
        return Err(SendError::auth_failed(
            "api_key: the API key is valid but lacks the Mail Send permission (scope mail.send); \
             give it Mail Send access in SendGrid's API Keys settings",
        ));
    }
    Ok(format!(
        "{}: the API key is valid and may send mail (mail.send)",
        settings.api_url
    ))
}

/// SendGrid's first error message: `{"errors": [{"message", "field", "help"}]}`.
fn first_error(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    let Some(e) = v["errors"].as_array().and_then(|e| e.first()) else {
        return String::new();
    };
    let message = e["message"].as_str().unwrap_or_default();
    match e["field"].as_str() {
        Some(field) if !field.is_empty() => format!("{field}: {message}"),
        _ => message.to_owned(),
    }
}

/// The failure for an answer other than success; `doing` says what the request was for.
pub fn failure(response: &Response, doing: &str) -> SendError {
    let said = first_error(&response.body);
    match response.status {
        401 => SendError::auth_failed(format!(
            "api_key: SendGrid refused the API key ({doing}): {said}"
        )),
        403 if said.contains("Sender Identity") => SendError::invalid_settings(format!(
            "from_email: SendGrid sends only from a verified Sender Identity: {said}"
        )),
        status => {
            let e = SendError::from_status(status, &said, response.retry_after());
            match e {
                SendError::Temporary {
                    reason,
                    retry_after_secs,
                } => SendError::temporary(format!("{doing}: {reason}"), retry_after_secs),
                SendError::AuthFailed(m) => SendError::auth_failed(format!("{doing}: {m}")),
                SendError::InvalidMessage(m) => SendError::invalid_message(format!("{doing}: {m}")),
                other => SendError::rejected(format!("{doing}: {}", other.message())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scan2x_mail_plugin_kit::Mailbox;
    use scan2x_mail_plugin_kit::host::{Body, Part, TransportError};

    /// A request as the scripted host got it; a secret header part shows as `<secret NAME>`.
    struct Seen {
        method: Method,
        url: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    /// A host that answers each request with the next scripted response and keeps what it got.
    #[derive(Default)]
    struct Scripted {
        answers: Vec<Response>,
        seen: Vec<Seen>,
    }

    impl Host for Scripted {
        type Secret = &'static str;

        fn http(&mut self, r: Request<'_, &'static str>) -> Result<Response, TransportError> {
            let headers = r
                .headers
                .iter()
                .map(|(n, parts)| {
                    let value = parts
                        .iter()
                        .map(|p| match p {
                            Part::Text(t) => t.clone(),
                            Part::Secret(s) => format!("<secret {s}>"),
                        })
                        .collect();
                    (n.clone(), value)
                })
                .collect();
            let body = match r.body {
                Body::Bytes(b) => b,
                _ => Vec::new(),
            };
            self.seen.push(Seen {
                method: r.method,
                url: r.url,
                headers,
                body,
            });
            Ok(self.answers.remove(0))
        }
        fn state_get(&mut self, _: &str) -> Option<Vec<u8>> {
            None
        }
        fn state_set(&mut self, _: &str, _: &[u8], _: u32) {}
        fn state_remove(&mut self, _: &str) {}
        fn log(&mut self, _: Level, _: &str) {}
    }

    fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        Response {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn settings() -> Settings<&'static str> {
        Settings {
            api_key: "key",
            from_email: "scans@example.com".into(),
            from_name: None,
            api_url: "https://127.0.0.1:8443".into(),
        }
    }

    fn message() -> Message {
        Message {
            to: vec![Mailbox {
                name: None,
                address: "a@example.com".into(),
            }],
            subject: "Scan".into(),
            ..Message::default()
        }
    }

    #[test]
    fn send_posts_json_with_the_key_as_a_secret_bearer_and_reads_the_message_id() {
        let mut host = Scripted {
            answers: vec![answer(202, &[("x-message-id", "abc123")], "")],
            ..Scripted::default()
        };
        let receipt = send(&mut host, &settings(), &message()).unwrap();
        assert_eq!(receipt.provider_id.as_deref(), Some("abc123"));
        assert_eq!(receipt.accepted, vec!["a@example.com"]);
        let seen = &host.seen[0];
        assert_eq!(seen.method, Method::Post);
        assert_eq!(seen.url, "https://127.0.0.1:8443/v3/mail/send");
        let header = |name: &str, value: &str| (name.to_owned(), value.to_owned());
        assert!(
            seen.headers
                .contains(&header("Authorization", "Bearer <secret key>"))
        );
        assert!(
            seen.headers
                .contains(&header("Content-Type", "application/json"))
        );
        let json: Value = serde_json::from_slice(&seen.body).unwrap();
        assert_eq!(json["subject"], "Scan");
    }

    #[test]
    fn throttling_is_temporary_with_retry_after_and_a_bad_request_is_rejected() {
        let throttled = answer(
            429,
            &[("Retry-After", "30")],
            r#"{"errors":[{"message":"too many requests"}]}"#,
        );
        assert_eq!(
            failure(&throttled, "sending"),
            SendError::temporary("sending: HTTP 429: too many requests", Some(30))
        );
        let bad = answer(
            400,
            &[],
            r#"{"errors":[{"message":"The subject is required.","field":"subject"}]}"#,
        );
        assert_eq!(
            failure(&bad, "sending"),
            SendError::rejected("sending: HTTP 400: subject: The subject is required.")
        );
        assert_eq!(
            failure(&answer(503, &[], ""), "sending").kind(),
            "temporary"
        );
    }

    #[test]
    fn a_refused_key_names_api_key_and_an_unverified_sender_names_from_email() {
        let e = failure(
            &answer(401, &[], r#"{"errors":[{"message":"bad key"}]}"#),
            "sending",
        );
        assert!(
            matches!(&e, SendError::AuthFailed(m) if m.starts_with("api_key:")),
            "{e}"
        );
        let e = failure(
            &answer(
                403,
                &[],
                r#"{"errors":[{"message":"The from address does not match a verified Sender Identity."}]}"#,
            ),
            "sending",
        );
        assert!(
            matches!(&e, SendError::InvalidSettings(m) if m.starts_with("from_email:")),
            "{e}"
        );
    }

    #[test]
    fn verify_wants_the_mail_send_scope() {
        let mut host = Scripted {
            answers: vec![answer(
                200,
                &[],
                r#"{"scopes":["mail.send","user.profile.read"]}"#,
            )],
            ..Scripted::default()
        };
        assert!(
            verify(&mut host, &settings())
                .unwrap()
                .contains("mail.send")
        );
        assert_eq!(host.seen[0].url, "https://127.0.0.1:8443/v3/scopes");
        let mut host = Scripted {
            answers: vec![answer(200, &[], r#"{"scopes":["user.profile.read"]}"#)],
            ..Scripted::default()
        };
        assert_eq!(
            verify(&mut host, &settings()).unwrap_err().kind(),
            "auth-failed"
        );
    }
}
