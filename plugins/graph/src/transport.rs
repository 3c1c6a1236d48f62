//! What the Graph sender needs from the host, as a plain Rust trait: HTTP requests whose header
//! and form values may hold a secret handle, the per-sender state (the token cache) and the log.
//!
//! `lib.rs` implements [`Host`] over the WIT imports; tests implement it over a scripted fake,
//! so the whole protocol flow (token reuse, uploads, error mapping) tests natively.
//! Nothing here may read a secret: `S` is an opaque handle that only the host resolves.

/// A piece of a header or form value: text, or a secret the host fills in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part<'a, S> {
    Text(String),
    Secret(&'a S),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body<'a, S> {
    Empty,
    Bytes(Vec<u8>),
    /// `application/x-www-form-urlencoded`, encoded by the host.
    Form(Vec<(String, Vec<Part<'a, S>>)>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a, S> {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, Vec<Part<'a, S>>)>,
    pub body: Body<'a, S>,
    pub timeout_ms: Option<u32>,
}

impl<'a, S> Request<'a, S> {
    pub fn new(method: Method, url: String) -> Self {
        Self {
            method,
            url,
            headers: Vec::new(),
            body: Body::Empty,
            timeout_ms: None,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_owned(), vec![Part::Text(value.to_owned())]));
        self
    }

    /// A JSON body with its content type.
    pub fn json(self, value: &serde_json::Value) -> Self {
        let mut this = self.header("Content-Type", "application/json");
        this.body = Body::Bytes(serde_json::to_vec(value).unwrap_or_default());
        this
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// A header's value; names compare without case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// The host's `http-error`: the request did not get a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    Denied(String),
    InvalidRequest(String),
    Connection(String),
    Timeout(String),
    TooLarge(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
}

/// The host capabilities the Graph sender uses.
pub trait Host {
    type Secret;
    fn http(&mut self, request: Request<'_, Self::Secret>) -> Result<Response, TransportError>;
    fn state_get(&mut self, key: &str) -> Option<Vec<u8>>;
    fn state_set(&mut self, key: &str, value: &[u8], ttl_secs: u32);
    fn state_remove(&mut self, key: &str);
    fn log(&mut self, level: Level, message: &str);
}
