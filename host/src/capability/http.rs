//! The `http` interface: HTTP(S) requests done by the host with reqwest (hyper, rustls on ring),
//! for plugins that speak to web APIs (the Microsoft Graph sender).
//!
//! | step | rule |
//! |---|---|
//! | URL | parsed once (WHATWG rules, the parser reqwest connects by); only `http`/`https`, no user info |
//! | gate | scheme, host and port of that parsed URL must match a grant, before anything else |
//! | values | header and form values are text and `secret` handles, joined by the host; a header that carries a secret is marked sensitive |
//! | headers | the host owns framing and routing headers (`Host`, `Content-Length`, `Transfer-Encoding`, `Connection`, …) |
//! | redirects | never followed: the plugin sees the 3xx, and a request to the new location passes the gate again |
//! | proxies | none: the environment's `HTTP(S)_PROXY` is ignored, so the granted origin is the one connected to |
//! | limits | connect 30 s; whole request `timeout-ms` (default 120 s, at most 15 min); response body 16 MiB, counted while it streams |
//! | TLS | always verified: the system's roots (`SSL_CERT_FILE` honoured) plus the sender's `ca_file` |
//!
//! One reqwest client per sender, made at its first request and kept for the sender's life, so
//! connections (and TLS sessions) are reused across the calls of a process.
//!
//! This module never logs or formats a header or form value, and error texts never carry a URL's
//! query (an upload URL's query is a credential).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Url};

use super::blobs::blob_bytes;
use super::secrets::{Field, secret_value};
use super::witness::Witness;
use super::{HostState, SenderContext, error_chain, gate};
use crate::wit::http::{Body, Host, HttpError, Method, Request, Response, TextPart};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A request's whole time limit when the plugin gives none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// The most a plugin may ask for: the whole call's wall-clock limit.
const MAX_TIMEOUT: Duration = Duration::from_secs(900);
/// The largest response body handed to a plugin.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// Headers the host sets itself: a plugin's value would change framing or routing.
const HOST_OWNED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
];

/// The sender's HTTP client, made at its first request.
#[derive(Debug, Default)]
pub struct ClientSlot(OnceLock<Result<Client, String>>);

impl ClientSlot {
    fn get(&self, ctx: &SenderContext) -> Result<Client, HttpError> {
        self.0
            .get_or_init(|| build_client(ctx.ca_pem.as_deref(), ctx.allow_loopback_names))
            .clone()
            .map_err(HttpError::Connection)
    }
}

impl Host for HostState {
    async fn send(&mut self, request: Request) -> wasmtime::Result<Result<Response, HttpError>> {
        let url = match destination(&request.url) {
            Ok(url) => url,
            Err(e) => return Ok(Err(e)),
        };
        let (scheme, host, port) = origin_parts(&url);
        let server = format!("http {scheme}://{host}:{port}");
        gate!(self, scheme, &host, port, HttpError::Denied);
        let prepared = match prepare(self, request, url)? {
            Ok(prepared) => prepared,
            Err(e) => return Ok(Err(e)),
        };
        let client = match self.sender.http.get(&self.sender) {
            Ok(client) => client,
            Err(e) => return Ok(Err(e)),
        };
        let _waiting = self.witness.waiting_on(server);
        let result = self
            .host_io
            .wait(perform(&client, prepared, &self.sender.name, &self.witness))
            .await;
        Ok(result.map_err(scrubbed))
    }
}

/// A failure's text scrubbed of every secret, before the plugin sees it.
fn scrubbed(mut e: HttpError) -> HttpError {
    crate::secret::redact_in_place(error_text(&mut e));
    e
}

/// The text of a failure, whichever case it is.
fn error_text(e: &mut HttpError) -> &mut String {
    match e {
        HttpError::Denied(text)
        | HttpError::InvalidRequest(text)
        | HttpError::Connection(text)
        | HttpError::Timeout(text)
        | HttpError::TooLarge(text) => text,
    }
}

/// The request's URL, parsed the way reqwest will connect by. Only `http` and `https`, with a
/// host, and without user info (it would be sent as credentials nobody granted).
fn destination(text: &str) -> Result<Url, HttpError> {
    let url = Url::parse(text)
        .map_err(|e| HttpError::InvalidRequest(format!("{:?} is not a URL: {e}", redact(text))))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(HttpError::InvalidRequest(format!(
            "{}: only http and https URLs are supported",
            shown(&url)
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(HttpError::InvalidRequest(format!(
            "{:?} has no host",
            redact(text)
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(HttpError::InvalidRequest(format!(
            "{}: user info in a URL is not allowed; send credentials in a header",
            shown(&url)
        )));
    }
    Ok(url)
}

/// (scheme, host, port) of a parsed URL, as the gate compares them.
fn origin_parts(url: &Url) -> (&str, String, u16) {
    let host = url.host_str().unwrap_or_default().to_string();
    let port = url.port_or_known_default().unwrap_or(0);
    (url.scheme(), host, port)
}

/// A URL as it may appear in logs and errors: no query, no fragment.
fn shown(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

/// A URL text that did not parse, cut before any query.
fn redact(text: &str) -> &str {
    text.split(['?', '#']).next().unwrap_or_default()
}

/// A request ready to go: secrets filled in, the body encoded. No `Debug`: a form body may hold
/// a secret.
struct Prepared {
    method: reqwest::Method,
    url: Url,
    /// `HeaderValue`s holding a secret are marked sensitive (their `Debug` hides them).
    headers: HeaderMap,
    /// Shared, not copied: a blob range is a slice of the attachment's bytes.
    body: Option<Bytes>,
    timeout: Duration,
    /// A POST or PATCH that is not an OAuth token request: once its last byte is out, the
    /// server may act on it ([`witness`](super::witness)).
    hands_over: bool,
}

/// A header or form value: its text, and whether a secret went into it.
struct Joined {
    text: String,
    secret: bool,
}

/// The parts of `field` `name` joined, each secret checked against where the plugin declared
/// it may go ([`SecretUses`](super::secrets::SecretUses)): an undeclared place is `denied`.
fn join(
    state: &HostState,
    parts: &[TextPart],
    field: Field,
    name: &str,
    url: &Url,
) -> wasmtime::Result<Result<Joined, HttpError>> {
    let mut joined = Joined {
        text: String::new(),
        secret: false,
    };
    for part in parts {
        match part {
            TextPart::Text(t) => joined.text.push_str(t),
            TextPart::Secret(handle) => {
                let secret = secret_value(state, handle)?;
                if let Err(refused) = state
                    .sender
                    .secret_uses
                    .check_http(&secret, field, name, url)
                {
                    return Ok(Err(HttpError::Denied(refused)));
                }
                joined.text.push_str(secret.expose());
                joined.secret = true;
            }
        }
    }
    Ok(Ok(joined))
}

/// Resolves the plugin's request into a [`Prepared`] one. The outer error is a host bug (a
/// dangling handle) and traps; the inner one is the plugin's mistake.
fn prepare(
    state: &HostState,
    request: Request,
    url: Url,
) -> wasmtime::Result<Result<Prepared, HttpError>> {
    let mut headers = HeaderMap::new();
    for header in &request.headers {
        let name = match HeaderName::from_bytes(header.name.as_bytes()) {
            Ok(name) => name,
            Err(_) => {
                return Ok(Err(HttpError::InvalidRequest(format!(
                    "{:?} is not a header name",
                    header.name
                ))));
            }
        };
        if HOST_OWNED_HEADERS.contains(&name.as_str()) {
            return Ok(Err(HttpError::InvalidRequest(format!(
                "header {name} is set by the host, not by a plugin"
            ))));
        }
        let joined = match join(state, &header.value, Field::Header, name.as_str(), &url)? {
            Ok(joined) => joined,
            Err(e) => return Ok(Err(e)),
        };
        // The value is never quoted in the error: it may hold a secret.
        let Ok(mut value) = HeaderValue::from_str(&joined.text) else {
            return Ok(Err(HttpError::InvalidRequest(format!(
                "header {name}: the value holds characters a header can't carry"
            ))));
        };
        value.set_sensitive(joined.secret || name == reqwest::header::AUTHORIZATION);
        headers.append(name, value);
    }
    // A form with a secret or a `grant_type` in it is an OAuth token request (RFC 6749 §4):
    // it hands over no message.
    let mut token_request = false;
    let body = match request.body {
        Body::Empty => None,
        Body::Bytes(bytes) => Some(Bytes::from(bytes)),
        Body::Blob(range) => {
            let bytes = blob_bytes(&state.table, &range.blob)?;
            let size = bytes.len() as u64;
            match range.offset.checked_add(range.length) {
                Some(end) if end <= size => {
                    // Both fit in usize: they are at most the size of bytes in memory.
                    Some(bytes.slice(range.offset as usize..end as usize))
                }
                _ => {
                    return Ok(Err(HttpError::InvalidRequest(format!(
                        "the body's range {}+{} goes past the end of the blob ({size} bytes)",
                        range.offset, range.length
                    ))));
                }
            }
        }
        Body::Form(fields) => {
            let mut pairs = Vec::with_capacity(fields.len());
            for field in fields {
                match join(state, &field.value, Field::Form, &field.name, &url)? {
                    Ok(joined) => {
                        token_request |= joined.secret || field.name == "grant_type";
                        pairs.push((field.name.clone(), joined.text));
                    }
                    Err(e) => return Ok(Err(e)),
                }
            }
            if !headers.contains_key(reqwest::header::CONTENT_TYPE) {
                headers.insert(
                    reqwest::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/x-www-form-urlencoded"),
                );
            }
            Some(Bytes::from(form_urlencode(&pairs)))
        }
    };
    let timeout = request
        .timeout_ms
        .map(|ms| Duration::from_millis(u64::from(ms)).min(MAX_TIMEOUT))
        .unwrap_or(DEFAULT_TIMEOUT);
    Ok(Ok(Prepared {
        method: match request.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
        },
        url,
        headers,
        body,
        timeout,
        hands_over: matches!(request.method, Method::Post | Method::Patch) && !token_request,
    }))
}

/// `application/x-www-form-urlencoded` (the WHATWG serializer): unreserved bytes as they are,
/// space as `+`, everything else percent-encoded from UTF-8.
fn form_urlencode(pairs: &[(String, String)]) -> String {
    fn encode(out: &mut String, text: &str) {
        for &b in text.as_bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                    out.push(b as char);
                }
                b' ' => out.push('+'),
                _ => {
                    let _ = write!(out, "%{b:02X}");
                }
            }
        }
    }
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode(&mut out, name);
        out.push('=');
        encode(&mut out, value);
    }
    out
}

/// The client of one sender: no redirects, no proxy, HTTP/1.1, TLS on the host's roots, names
/// resolved by [`CheckedResolver`].
fn build_client(ca_pem: Option<&[u8]>, allow_loopback_names: bool) -> Result<Client, String> {
    let tls = tls_config(ca_pem)?;
    Client::builder()
        .dns_resolver(CheckedResolver {
            allow_loopback_names,
        })
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .http1_only()
        .referer(false)
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("scan2x-mail/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {}", error_chain(&e)))
}

/// reqwest's resolver for a sender: `resolve::addresses`, so a name whose answer is this
/// machine's own address is refused as it is for SMTP and IMAP. reqwest asks it for names only;
/// a URL with an IP address connects to that address, as the gate saw it.
struct CheckedResolver {
    allow_loopback_names: bool,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow_loopback_names;
        let host = crate::gate::Host::parse(name.as_str());
        Box::pin(async move {
            let host =
                host.map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            // reqwest puts the URL's port on each address.
            let found = super::resolve::addresses(&host, 0, allow).await?;
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

fn tls_config(ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, String> {
    let mut config = super::tls::client_config(ca_pem)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// What a failed request means for the plugin.
fn map_error(e: reqwest::Error, url: &Url) -> HttpError {
    let at = shown(url);
    let timeout = e.is_timeout();
    let builder = e.is_builder();
    let e = e.without_url();
    let what = error_chain(&e);
    if let Some(refusal) = local_answer(&e) {
        HttpError::Denied(format!("{at}: {refusal}"))
    } else if timeout {
        HttpError::Timeout(format!("{at}: {what}"))
    } else if builder {
        HttpError::InvalidRequest(format!("{at}: {what}"))
    } else {
        let hint = if what.contains("certificate") || what.contains("UnknownIssuer") {
            "; if the server's certificate comes from a private CA, trust it with ca_file"
        } else {
            ""
        };
        HttpError::Connection(format!("{at}: {what}{hint}"))
    }
}

/// What rustls said of the server's certificate, when that is why a request failed. An
/// `io::Error` hides the error it wraps from `source()`, so each one is opened.
fn refused_certificate(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    if let Some(refusal @ rustls::Error::InvalidCertificate(_)) = e.downcast_ref::<rustls::Error>()
    {
        return Some(refusal.to_string());
    }
    let wrapped = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref());
    wrapped
        .and_then(|inner| refused_certificate(inner))
        .or_else(|| e.source().and_then(refused_certificate))
}

/// The resolver's refusal somewhere in a failed request's causes.
fn local_answer<'e>(
    e: &'e (dyn std::error::Error + 'static),
) -> Option<&'e super::resolve::LookupError> {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if let Some(refusal) = e.downcast_ref::<super::resolve::LookupError>() {
            return refusal.is_denied().then_some(refusal);
        }
        cause = e.source();
    }
    None
}

/// Sends the request and reads the whole response. A request that [hands
/// over](Prepared::hands_over) is owed its answer from the moment hyper takes its last byte until
/// the response is read in full: an error or a time-out in between leaves it lost in the
/// [`Witness`], and the email maybe delivered.
async fn perform(
    client: &Client,
    prepared: Prepared,
    sender: &str,
    witness: &Witness,
) -> Result<Response, HttpError> {
    let Prepared {
        method,
        url,
        headers,
        body,
        timeout,
        hands_over,
    } = prepared;
    let started = Instant::now();
    let mut builder = client
        .request(method.clone(), url.clone())
        .headers(headers)
        .timeout(timeout);
    let sends_body = matches!(
        method,
        reqwest::Method::POST | reqwest::Method::PUT | reqwest::Method::PATCH
    );
    let body = body.unwrap_or_default();
    // An empty body is out with the request's head.
    let taken = Arc::new(AtomicBool::new(body.is_empty()));
    if !body.is_empty() && hands_over {
        builder = builder.body(reqwest::Body::wrap(Handed {
            rest: body,
            taken: taken.clone(),
        }));
    } else if !body.is_empty() {
        builder = builder.body(body);
    } else if sends_body {
        // hyper leaves the length out of an empty body, and servers (Graph among them) answer
        // 411 to a POST without one.
        builder = builder.header(reqwest::header::CONTENT_LENGTH, "0");
    }
    let hand_over = hands_over.then(|| {
        witness.hand_over_once(
            format!("the whole request {method} {} was sent", shown(&url)),
            taken,
        )
    });
    let result = read_response(builder, &url, witness).await;
    match (hand_over, &result) {
        (Some(hand_over), Err((e, true))) => hand_over.lost(error_text(&mut e.clone())),
        (Some(hand_over), Err((_, false))) => hand_over.never_made(),
        (Some(hand_over), Ok(_)) => hand_over.answered(),
        (None, _) => {}
    }
    let response = result.map_err(|(e, _)| e)?;
    tracing::debug!(
        sender,
        "{method} {} -> {} ({} bytes in {} ms)",
        shown(&url),
        response.status,
        response.body.len(),
        started.elapsed().as_millis()
    );
    Ok(response)
}

/// A request body handed to hyper a piece at a time, which says when its last piece is taken.
/// Its exact size goes out as `Content-Length`, as a plain body's would.
struct Handed {
    rest: Bytes,
    taken: Arc<AtomicBool>,
}

/// What hyper takes of a [`Handed`] body at a time: it asks for the next piece once it has
/// written the one before, so "the last piece taken" is close to "the request written".
const HANDED_PIECE: usize = 64 << 10;

impl http_body::Body for Handed {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.rest.is_empty() {
            return std::task::Poll::Ready(None);
        }
        let piece = this.rest.split_to(this.rest.len().min(HANDED_PIECE));
        if this.rest.is_empty() {
            this.taken.store(true, Ordering::Release);
        }
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.rest.len() as u64)
    }
}

/// The response, read in full and scrubbed. An error says whether the request may have
/// reached the server and been acted on: true once a connection was made, unless the server's
/// status already refused it (4xx, 5xx).
async fn read_response(
    builder: reqwest::RequestBuilder,
    url: &Url,
    witness: &Witness,
) -> Result<Response, (HttpError, bool)> {
    let mut response = match builder.send().await {
        Ok(response) => response,
        Err(e) => {
            if let Some(reason) = refused_certificate(&e) {
                witness.certificate_refused(format!(
                    "TLS with {} failed: the server's certificate was refused ({reason}); if it \
                     comes from a private CA, trust it with ca_file",
                    shown(url)
                ));
            }
            let connected = !e.is_connect();
            return Err((map_error(e, url), connected));
        }
    };
    let status = response.status().as_u16();
    let accepted = status < 400;
    let too_large = || {
        let e = HttpError::TooLarge(format!(
            "{}: the response is larger than {} MiB",
            shown(url),
            MAX_RESPONSE_BYTES >> 20
        ));
        (e, accepted)
    };
    if response
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
    {
        return Err(too_large());
    }
    // What the server said is scrubbed of every secret before the plugin sees it: an origin
    // that reflects the request must not hand a plugin the secret the host filled in.
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                crate::secret::redact(&String::from_utf8_lossy(value.as_bytes())).into_owned(),
            )
        })
        .collect();
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) if body.len() + chunk.len() > MAX_RESPONSE_BYTES => {
                return Err(too_large());
            }
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => return Err((map_error(e, url), accepted)),
        }
    }
    if let std::borrow::Cow::Owned(scrubbed) = crate::secret::redact_bytes(&body) {
        body = scrubbed;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::secrets::SecretValue;
    use crate::gate::{Gate, Grant};
    use crate::secret::Secret;
    use crate::wit::http::{FormField, Header};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A one-connection-at-a-time HTTP/1.1 server on 127.0.0.1 that answers every request with
    /// `reply` and hands the raw requests it read to the test.
    async fn server(reply: Vec<u8>) -> (u16, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Read until the end of the headers plus any Content-Length body.
                loop {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&buf[..n]);
                    if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let _ = tx.send(request);
                let _ = socket.write_all(&reply).await;
                let _ = socket.shutdown().await;
            }
        });
        (port, rx)
    }

    fn state_for(port: u16) -> HostState {
        let gate = Gate::new(
            "graph",
            vec![Grant::parse(&format!("http://127.0.0.1:{port}")).unwrap()],
        );
        let ctx = SenderContext {
            name: "graph".into(),
            gate,
            ..SenderContext::default()
        };
        HostState::new(Arc::new(ctx), 64 << 20)
    }

    fn get(url: String) -> Request {
        Request {
            method: Method::Get,
            url,
            headers: Vec::new(),
            body: Body::Empty,
            timeout_ms: Some(5_000),
        }
    }

    fn ok(body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn granted_origin_is_reached_and_the_response_comes_back() {
        let (port, mut seen) = server(ok("hello")).await;
        let mut state = state_for(port);
        let response = state
            .send(get(format!(
                "http://127.0.0.1:{port}/v1.0/users/x?$select=id"
            )))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"hello");
        assert!(
            response
                .headers
                .iter()
                .any(|(n, v)| n == "content-type" && v == "text/plain")
        );
        let request = String::from_utf8(seen.recv().await.unwrap()).unwrap();
        assert!(
            request.starts_with("GET /v1.0/users/x?$select=id HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(state.host_io.total() > Duration::ZERO);
    }

    #[tokio::test]
    async fn a_post_sent_in_full_whose_answer_is_lost_is_witnessed_and_a_get_or_token_request_is_not()
     {
        // Reads each whole request, then closes without a word.
        let (port, mut seen) = server(Vec::new()).await;
        let mut state = state_for(port);
        let url = format!("http://127.0.0.1:{port}/v1.0/users/x/sendMail");
        let mut post = get(format!("{url}?secret=query"));
        post.method = Method::Post;
        post.body = Body::Bytes(vec![b'x'; 200_000]);
        let error = state.send(post).await.unwrap().unwrap_err();
        assert!(matches!(error, HttpError::Connection(_)), "{error:?}");
        let request = seen.recv().await.unwrap();
        let head = String::from_utf8_lossy(&request[..request.len() - 200_000]).to_lowercase();
        assert!(
            head.contains("content-length: 200000\r\n") && !head.contains("transfer-encoding"),
            "the body in pieces still goes out with its length: {head}"
        );
        let lost = state.witness.snapshot().lost;
        assert_eq!(lost.len(), 1, "{lost:?}");
        assert!(
            lost[0].starts_with(&format!("the whole request POST {url} was sent; then ")),
            "{lost:?}"
        );

        let _ = state.send(get(url.clone())).await.unwrap().unwrap_err();
        let mut token = get(url);
        token.method = Method::Post;
        token.body = Body::Form(vec![FormField {
            name: "grant_type".into(),
            value: vec![TextPart::Text("client_credentials".into())],
        }]);
        let _ = state.send(token).await.unwrap().unwrap_err();
        assert_eq!(
            state.witness.snapshot().lost.len(),
            1,
            "a GET and a token request hand nothing over"
        );
    }

    #[tokio::test]
    async fn a_post_that_never_connected_hands_nothing_over() {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut state = state_for(port);
        let mut post = get(format!("http://127.0.0.1:{port}/v1.0/users/x/sendMail"));
        post.method = Method::Post;
        let error = state.send(post).await.unwrap().unwrap_err();
        assert!(matches!(error, HttpError::Connection(_)), "{error:?}");
        assert!(state.witness.snapshot().lost.is_empty());
    }

    #[tokio::test]
    async fn ungranted_port_is_denied_before_any_connection() {
        let (port, mut seen) = server(ok("x")).await;
        let (other, _) = server(ok("x")).await;
        let mut state = state_for(other);
        let error = state
            .send(get(format!("http://127.0.0.1:{port}/")))
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&error, HttpError::Denied(m) if m.contains(&format!("127.0.0.1:{port}"))),
            "{error:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(seen.try_recv().is_err(), "the ungranted server was reached");
    }

    #[tokio::test]
    async fn ungranted_scheme_and_host_are_denied() {
        let mut state = state_for(1);
        for url in [
            "https://127.0.0.1:1/",
            "http://localhost:1/",
            "http://127.0.0.2:1/",
        ] {
            let error = state.send(get(url.into())).await.unwrap().unwrap_err();
            assert!(matches!(error, HttpError::Denied(_)), "{url}: {error:?}");
        }
    }

    #[tokio::test]
    async fn redirects_are_returned_not_followed() {
        let (target, mut target_seen) = server(ok("moved here")).await;
        let redirect = format!(
            "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{target}/\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
        let (port, _) = server(redirect.into_bytes()).await;
        let mut state = state_for(port);
        let response = state
            .send(get(format!("http://127.0.0.1:{port}/")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(response.status, 302);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(target_seen.try_recv().is_err(), "the redirect was followed");
    }

    #[tokio::test]
    async fn a_response_over_the_limit_is_too_large() {
        let body = vec![b'x'; MAX_RESPONSE_BYTES + 1];
        let mut reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        reply.extend_from_slice(&body);
        let (port, _) = server(reply).await;
        let mut state = state_for(port);
        let error = state
            .send(get(format!("http://127.0.0.1:{port}/")))
            .await
            .unwrap()
            .unwrap_err();
        assert!(matches!(error, HttpError::TooLarge(_)), "{error:?}");
    }

    #[tokio::test]
    async fn a_streamed_response_over_the_limit_is_too_large() {
        // No Content-Length: the limit is counted while the body streams.
        let mut reply = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_vec();
        reply.extend(std::iter::repeat_n(b'x', MAX_RESPONSE_BYTES + 1));
        let (port, _) = server(reply).await;
        let mut state = state_for(port);
        let error = state
            .send(get(format!("http://127.0.0.1:{port}/")))
            .await
            .unwrap()
            .unwrap_err();
        assert!(matches!(error, HttpError::TooLarge(_)), "{error:?}");
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(socket);
        });
        let mut state = state_for(port);
        let mut request = get(format!("http://127.0.0.1:{port}/"));
        request.timeout_ms = Some(300);
        let started = Instant::now();
        let error = state.send(request).await.unwrap().unwrap_err();
        assert!(matches!(error, HttpError::Timeout(_)), "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        held.abort();
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connection_error() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut state = state_for(port);
        let error = state
            .send(get(format!("http://127.0.0.1:{port}/")))
            .await
            .unwrap()
            .unwrap_err();
        assert!(matches!(error, HttpError::Connection(_)), "{error:?}");
    }

    #[tokio::test]
    async fn secrets_never_go_over_plain_http_even_where_declared() {
        let (port, mut seen) = server(ok("{}")).await;
        let secret = Secret::new("s3cr3t value&=");
        let settings = vec![crate::settings::ResolvedSetting {
            key: "client_secret".into(),
            value: crate::settings::ResolvedValue::Secret(secret.clone()),
        }];
        let declared = [
            format!("secret client_secret header X-Test https://127.0.0.1:{port}"),
            format!("secret client_secret form client_secret https://127.0.0.1:{port}"),
        ];
        let ctx = SenderContext {
            name: "graph".into(),
            gate: Gate::new(
                "graph",
                vec![Grant::parse(&format!("http://127.0.0.1:{port}")).unwrap()],
            ),
            secret_uses: crate::capability::secrets::SecretUses::new(&declared, &settings).unwrap(),
            ..SenderContext::default()
        };
        let mut state = HostState::new(Arc::new(ctx), 64 << 20);
        let handle = state.table.push(SecretValue(secret)).unwrap();
        let borrowed = || wasmtime::component::Resource::<SecretValue>::new_borrow(handle.rep());
        let request = |headers: Vec<Header>, body: Body| Request {
            method: Method::Post,
            url: format!("http://127.0.0.1:{port}/tenant/oauth2/v2.0/token"),
            headers,
            body,
            timeout_ms: None,
        };
        let header = request(
            vec![Header {
                name: "X-Test".into(),
                value: vec![
                    TextPart::Text("Bearer ".into()),
                    TextPart::Secret(borrowed()),
                ],
            }],
            Body::Empty,
        );
        let form = request(
            Vec::new(),
            Body::Form(vec![FormField {
                name: "client_secret".into(),
                value: vec![TextPart::Secret(borrowed())],
            }]),
        );
        for request in [header, form] {
            let refused = state.send(request).await.unwrap().unwrap_err();
            let HttpError::Denied(text) = refused else {
                panic!("not denied: {refused:?}")
            };
            assert!(text.contains("only over https"), "{text}");
        }
        assert!(seen.try_recv().is_err(), "a request reached the server");
    }

    #[tokio::test]
    async fn an_empty_post_carries_content_length_zero() {
        let (port, mut seen) = server(ok("")).await;
        let mut state = state_for(port);
        let mut request = get(format!("http://127.0.0.1:{port}/send"));
        request.method = Method::Post;
        request.body = Body::Bytes(Vec::new());
        state.send(request).await.unwrap().unwrap();
        let raw = String::from_utf8(seen.recv().await.unwrap()).unwrap();
        assert!(
            raw.to_ascii_lowercase()
                .contains("\r\ncontent-length: 0\r\n"),
            "{raw}"
        );
    }

    #[tokio::test]
    async fn a_blob_range_body_sends_exactly_those_bytes_and_no_more() {
        use crate::capability::blobs::BlobData;
        use crate::wit::http::BlobRange;
        let (port, mut seen) = server(ok("")).await;
        let mut state = state_for(port);
        let bytes: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let handle = state
            .table
            .push(BlobData(bytes::Bytes::from(bytes.clone())))
            .unwrap();
        let borrowed = || wasmtime::component::Resource::<BlobData>::new_borrow(handle.rep());
        let put = |offset: u64, length: u64| {
            let mut request = get(format!("http://127.0.0.1:{port}/upload"));
            request.method = Method::Put;
            request.body = Body::Blob(BlobRange {
                blob: borrowed(),
                offset,
                length,
            });
            request
        };
        state.send(put(4_000, 5_000)).await.unwrap().unwrap();
        let raw = seen.recv().await.unwrap();
        let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
        assert!(head.contains("\r\ncontent-length: 5000\r\n"), "{head}");
        assert_eq!(&raw[head_end..], &bytes[4_000..9_000]);

        for (offset, length) in [(9_000, 1_001), (10_001, 0), (u64::MAX, 2)] {
            let error = state.send(put(offset, length)).await.unwrap().unwrap_err();
            assert!(
                matches!(&error, HttpError::InvalidRequest(m) if m.contains("past the end of the blob (10000 bytes)")),
                "{offset}+{length}: {error:?}"
            );
        }
    }

    #[tokio::test]
    async fn host_owned_headers_are_refused() {
        let mut state = state_for(1);
        for name in ["Host", "content-length", "Transfer-Encoding", "Connection"] {
            let mut request = get("http://127.0.0.1:1/".into());
            request.headers.push(Header {
                name: name.into(),
                value: vec![TextPart::Text("x".into())],
            });
            let error = state.send(request).await.unwrap().unwrap_err();
            assert!(
                matches!(&error, HttpError::InvalidRequest(m) if m.contains("set by the host")),
                "{name}: {error:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_bad_header_value_is_refused_without_quoting_it() {
        let mut state = state_for(1);
        let mut request = get("http://127.0.0.1:1/".into());
        request.headers.push(Header {
            name: "Authorization".into(),
            value: vec![TextPart::Text("Bearer abc\r\nX-Evil: 1".into())],
        });
        let error = state.send(request).await.unwrap().unwrap_err();
        match error {
            HttpError::InvalidRequest(m) => assert!(!m.contains("abc"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_http_urls_with_a_host_and_no_user_info_are_accepted() {
        assert!(destination("https://graph.example.test/v1.0/users").is_ok());
        for bad in [
            "ftp://graph.example.test/",
            "file:///etc/passwd",
            "https://user:pw@graph.example.test/",
            "https://user@graph.example.test/",
            "not a url",
            "https://",
        ] {
            assert!(
                matches!(destination(bad), Err(HttpError::InvalidRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_gate_sees_the_host_the_client_connects_to() {
        // Parser tricks must not make the gate and the connection disagree.
        let url = destination("https://good.example.test\\@evil.example.test/").unwrap();
        let (scheme, host, port) = origin_parts(&url);
        assert_eq!(
            (scheme, host.as_str(), port),
            ("https", "good.example.test", 443)
        );
        let url = destination("HTTPS://[::1]:8443/x").unwrap();
        let (scheme, host, port) = origin_parts(&url);
        assert_eq!((scheme, host.as_str(), port), ("https", "[::1]", 8443));
        let gate = Gate::new("g", vec![Grant::parse("https://[::1]:8443").unwrap()]);
        assert!(gate.check(scheme, &host, port).is_ok());
    }

    #[test]
    fn shown_urls_carry_no_query() {
        let url = Url::parse("https://upload.example.test/s/1?authtoken=abc#frag").unwrap();
        assert_eq!(shown(&url), "https://upload.example.test/s/1");
        assert_eq!(redact("bad url?authtoken=abc"), "bad url");
    }

    #[test]
    fn forms_are_encoded_like_a_browser() {
        let pairs = [
            (
                "scope".to_string(),
                "https://graph.example.test/.default".to_string(),
            ),
            ("name".to_string(), "Grüße & a+b=c ~".to_string()),
        ];
        assert_eq!(
            form_urlencode(&pairs),
            "scope=https%3A%2F%2Fgraph.example.test%2F.default&name=Gr%C3%BC%C3%9Fe+%26+a%2Bb%3Dc+%7E"
        );
    }

    #[test]
    fn tls_config_takes_the_senders_ca_and_refuses_garbage() {
        assert!(tls_config(None).is_ok());
        let error = tls_config(Some(
            b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        ))
        .unwrap_err();
        assert!(error.contains("ca_file"), "{error}");
    }
}
