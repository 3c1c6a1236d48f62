//! How Microsoft's answers map to failures as the host must hear them (the kit's [`Failure`],
//! the WIT `send-error` in plain Rust): the identity platform's `AADSTS` codes, Graph's error
//! codes and HTTP statuses, `Retry-After`. Network trouble and `Retry-After` are read by the kit.
//!
//! | answer | failure |
//! |---|---|
//! | AADSTS90002, 900023 (tenant) | `invalid-settings`, naming `tenant_id` |
//! | AADSTS700016 (application) | `invalid-settings`, naming `client_id` |
//! | AADSTS7000215, 7000222 (secret wrong or expired) | `auth-failed`, naming `client_secret` |
//! | AADSTS70011, 1002012, 500011 (scope / resource) | `invalid-settings`, naming `graph_url` |
//! | 401 from Graph | `auth-failed` |
//! | 403 ErrorSendAsDenied | `rejected`, naming `from_email` |
//! | 403 ErrorAccessDenied and other 403 | `auth-failed`, naming the permission |
//! | 404 MailboxNotEnabledForRESTAPI | `invalid-settings`, naming `username` |
//! | 413 | `invalid-message` |
//! | 429, 500, 502, 503, 504 | `temporary`, with the server's `Retry-After` |
//! | other 4xx | `rejected` |
//!
//! Messages quote Microsoft's code and the first sentence of its text, never a token or secret.

pub use scan2x_mail_plugin_kit::SendError as Failure;
use scan2x_mail_plugin_kit::error::is_temporary_status;

use crate::transport::Response;

/// The first sentence of a Microsoft error text (the rest is trace and correlation ids).
fn first_sentence(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default().trim();
    match line.find(". ") {
        Some(i) => line[..=i].to_owned(),
        None => line.to_owned(),
    }
}

/// What the token endpoint's error body says: its AADSTS code and first sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    pub error: String,
    pub code: Option<u64>,
    pub description: String,
}

impl TokenError {
    pub fn parse(body: &[u8]) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let error = v.get("error")?.as_str()?.to_owned();
        let full = v
            .get("error_description")
            .and_then(|d| d.as_str())
            .unwrap_or_default();
        let code = v
            .get("error_codes")
            .and_then(|c| c.as_array())
            .and_then(|c| c.first())
            .and_then(|c| c.as_u64())
            .or_else(|| {
                let digits: String = full
                    .strip_prefix("AADSTS")?
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                digits.parse().ok()
            });
        Some(Self {
            error,
            code,
            description: first_sentence(full),
        })
    }
}

/// The failure for a token endpoint answer other than 200.
pub fn token_failure(response: &Response, tenant_id: &str, client_id: &str) -> Failure {
    let status = response.status;
    if is_temporary_status(status) {
        return Failure::Temporary {
            reason: format!("the token endpoint answered {status}; try again later"),
            retry_after_secs: response.retry_after(),
        };
    }
    let Some(e) = TokenError::parse(&response.body) else {
        if status == 404 {
            return Failure::InvalidSettings(
                "authority_url: the token endpoint answered 404; is authority_url the identity \
                 platform's address (e.g. https://login.microsoftonline.com)?"
                    .to_owned(),
            );
        }
        return Failure::AuthFailed(format!(
            "the token endpoint answered {status} without an error description"
        ));
    };
    let said = format!("{} ({})", e.description, e.error);
    match e.code {
        Some(90002 | 900023 | 90013 | 900384) => Failure::InvalidSettings(format!(
            "tenant_id: Microsoft does not know the tenant {tenant_id:?}: {said}; set tenant_id \
             to your Directory (tenant) ID"
        )),
        Some(700016) => Failure::InvalidSettings(format!(
            "client_id: no application {client_id} in tenant {tenant_id}: {said}; set client_id \
             to the app registration's Application (client) ID, in that tenant"
        )),
        Some(7000215) => Failure::AuthFailed(format!(
            "client_secret: Microsoft refused the client secret: {said}; use the secret's Value \
             (not its Secret ID), from this app registration"
        )),
        Some(7000222) => Failure::AuthFailed(format!(
            "client_secret: the client secret has expired: {said}; create a new one in the app \
             registration and set client_secret"
        )),
        Some(70011 | 1002012 | 500011) => Failure::InvalidSettings(format!(
            "graph_url: Microsoft refused the scope for it: {said}; graph_url must be the \
             Microsoft Graph endpoint of your cloud"
        )),
        _ => Failure::AuthFailed(format!("the token request was refused: {said}")),
    }
}

/// Graph's `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GraphError {
    pub code: String,
    pub message: String,
}

impl GraphError {
    pub fn parse(body: &[u8]) -> Self {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let e = &v["error"];
        Self {
            code: e["code"].as_str().unwrap_or_default().to_owned(),
            message: first_sentence(e["message"].as_str().unwrap_or_default()),
        }
    }
}

/// The failure for a Graph answer that is not a success. `doing` says what the request was for.
pub fn graph_failure(response: &Response, doing: &str, username: &str, from: &str) -> Failure {
    let status = response.status;
    let e = GraphError::parse(&response.body);
    let said = if e.code.is_empty() {
        format!("{status}")
    } else {
        format!("{status} {}: {}", e.code, e.message)
    };
    if is_temporary_status(status) {
        return Failure::Temporary {
            reason: format!("{doing}: Microsoft Graph answered {said}"),
            retry_after_secs: response.retry_after(),
        };
    }
    match (status, e.code.as_str()) {
        (401, _) => Failure::AuthFailed(format!(
            "{doing}: Microsoft Graph refused the access token: {said}"
        )),
        (403, "ErrorSendAsDenied") => Failure::Rejected(format!(
            "{doing}: {username} may not send as {from}: {said}; give {username} Send As \
             permission on {from}, or change from_email"
        )),
        (403, _) => Failure::AuthFailed(format!(
            "{doing}: access denied: {said}; the app registration needs the Mail.Send \
             application permission (and Mail.ReadWrite for attachments over 3 MB) with admin \
             consent, and no application access policy may exclude {username}"
        )),
        (404, "MailboxNotEnabledForRESTAPI" | "MailboxNotSupportedForRESTAPI") => {
            Failure::InvalidSettings(format!(
                "username: {username} has no Exchange Online mailbox ({said}); set username to a \
                 user with a mailbox"
            ))
        }
        (404, "Request_ResourceNotFound" | "ErrorInvalidUser" | "ResourceNotFound") => {
            Failure::InvalidSettings(format!(
                "username: Microsoft Graph found no user {username} ({said}); set username to a \
                 user principal name or object ID of your tenant"
            ))
        }
        (413, _) => Failure::InvalidMessage(format!("{doing}: the request is too large: {said}")),
        _ => Failure::Rejected(format!("{doing}: Microsoft Graph answered {said}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str, headers: &[(&str, &str)]) -> Response {
        Response {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn aad(status: u16, error: &str, code: u64, text: &str) -> Response {
        let body = serde_json::json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {text} Trace ID: 1 Correlation ID: 2 Timestamp: 3"),
            "error_codes": [code],
        });
        response(status, &body.to_string(), &[])
    }

    #[test]
    fn aadsts_codes_name_the_setting_to_fix() {
        let cases = [
            (
                aad(400, "invalid_request", 90002, "Tenant 'x' not found."),
                "invalid-settings",
                "tenant_id:",
            ),
            (
                aad(
                    400,
                    "invalid_request",
                    900023,
                    "Specified tenant identifier is neither a valid DNS name, nor a valid external domain.",
                ),
                "invalid-settings",
                "tenant_id:",
            ),
            (
                aad(
                    400,
                    "unauthorized_client",
                    700016,
                    "Application with identifier 'x' was not found in the directory.",
                ),
                "invalid-settings",
                "client_id:",
            ),
            (
                aad(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided.",
                ),
                "auth-failed",
                "client_secret:",
            ),
            (
                aad(
                    401,
                    "invalid_client",
                    7000222,
                    "The provided client secret keys are expired.",
                ),
                "auth-failed",
                "client_secret:",
            ),
            (
                aad(
                    400,
                    "invalid_scope",
                    1002012,
                    "The provided value for scope is not valid.",
                ),
                "invalid-settings",
                "graph_url:",
            ),
        ];
        for (resp, kind, key) in cases {
            let f = token_failure(&resp, "tenant", "client");
            assert_eq!(f.kind(), kind, "{f:?}");
            assert!(f.message().starts_with(key), "{f:?}");
            assert!(!f.message().contains("Trace ID"), "{f:?}");
        }
    }

    #[test]
    fn aadsts_code_is_read_from_the_description_when_the_list_is_missing() {
        let body = r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#;
        assert_eq!(
            TokenError::parse(body.as_bytes()).unwrap().code,
            Some(7000215)
        );
    }

    #[test]
    fn throttled_token_endpoint_is_temporary_with_retry_after() {
        let f = token_failure(&response(429, "", &[("Retry-After", "12")]), "t", "c");
        assert_eq!(
            f,
            Failure::Temporary {
                reason: "the token endpoint answered 429; try again later".into(),
                retry_after_secs: Some(12)
            }
        );
    }

    fn graph(status: u16, code: &str, retry: Option<&str>) -> Failure {
        let body = serde_json::json!({"error": {"code": code, "message": "Details here. More."}});
        let headers: Vec<(&str, &str)> =
            retry.map(|r| vec![("Retry-After", r)]).unwrap_or_default();
        graph_failure(
            &response(status, &body.to_string(), &headers),
            "sending",
            "scanner@contoso.example",
            "desk@contoso.example",
        )
    }

    #[test]
    fn graph_statuses_and_codes_map_to_what_to_do_next() {
        assert_eq!(
            graph(401, "InvalidAuthenticationToken", None).kind(),
            "auth-failed"
        );
        assert_eq!(graph(403, "ErrorAccessDenied", None).kind(), "auth-failed");
        assert!(
            graph(403, "ErrorAccessDenied", None)
                .message()
                .contains("Mail.Send")
        );
        let send_as = graph(403, "ErrorSendAsDenied", None);
        assert_eq!(send_as.kind(), "rejected");
        assert!(send_as.message().contains("from_email"), "{send_as:?}");
        let no_mailbox = graph(404, "MailboxNotEnabledForRESTAPI", None);
        assert_eq!(no_mailbox.kind(), "invalid-settings");
        assert!(
            no_mailbox.message().starts_with("username:"),
            "{no_mailbox:?}"
        );
        assert_eq!(
            graph(413, "RequestEntityTooLarge", None).kind(),
            "invalid-message"
        );
        assert_eq!(
            graph(400, "ErrorInvalidRecipients", None).kind(),
            "rejected"
        );
        for status in [429, 503, 504] {
            assert_eq!(
                graph(status, "ApplicationThrottled", Some("7")),
                Failure::Temporary {
                    reason: format!(
                        "sending: Microsoft Graph answered {status} ApplicationThrottled: Details here."
                    ),
                    retry_after_secs: Some(7),
                }
            );
        }
    }
}
