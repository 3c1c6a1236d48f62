//! The host's `http`, `state` and `log` capabilities as a plain Rust trait, [`Host`]: HTTP
//! requests whose header and form values may hold a secret handle, the per-sender state (a token
//! cache) and the log. [`Wasm`] implements it over the WIT imports; a plugin's tests implement it
//! over a scripted fake, so a whole protocol flow tests natively.
//!
//! Also here: what an HTTP request that got no answer means for the message
//! ([`TransportError::into_send_error`]) and `Retry-After`. Nothing here may read a secret: `S` is
//! an opaque handle only the host resolves.

use crate::error::SendError;
use crate::message::Content;

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
    /// `length` bytes of an attachment from `offset`: the host sends the bytes it holds, without
    /// copying them through the plugin.
    Content {
        content: Content,
        offset: u64,
        length: u64,
    },
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

    /// A header whose value is `prefix` followed by a secret the host fills in, e.g.
    /// `Authorization: Bearer <api key>`.
    pub fn secret_header(mut self, name: &str, prefix: &str, secret: &'a S) -> Self {
        self.headers.push((
            name.to_owned(),
            vec![Part::Text(prefix.to_owned()), Part::Secret(secret)],
        ));
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

/// The host capabilities an HTTP sender uses.
pub trait Host {
    type Secret;
    fn http(&mut self, request: Request<'_, Self::Secret>) -> Result<Response, TransportError>;
    fn state_get(&mut self, key: &str) -> Option<Vec<u8>>;
    fn state_set(&mut self, key: &str, value: &[u8], ttl_secs: u32);
    fn state_remove(&mut self, key: &str);
    fn log(&mut self, level: Level, message: &str);
}

impl TransportError {
    /// What a request that got no response means: `doing` says what it was for ("getting a
    /// token"). A refused destination is `denied`; a broken or slow connection `temporary`; a
    /// request the host can't make `invalid-settings` (a URL setting); an oversized answer
    /// `rejected`.
    pub fn into_send_error(self, doing: &str) -> SendError {
        match self {
            Self::Denied(m) => SendError::Denied(format!("{doing}: {m}")),
            Self::InvalidRequest(m) => {
                SendError::InvalidSettings(format!("{doing}: the request could not be made: {m}"))
            }
            Self::Connection(m) => SendError::temporary(format!("{doing}: {m}"), None),
            Self::Timeout(m) => SendError::temporary(format!("{doing}: timed out: {m}"), None),
            Self::TooLarge(m) => SendError::Rejected(format!("{doing}: {m}")),
        }
    }
}

impl Response {
    /// `Retry-After` in seconds: given as seconds (the form HTTP mail APIs use), or as an HTTP
    /// date (RFC 9110 IMF-fixdate), counted from the clock's now; a date past is 0.
    pub fn retry_after(&self) -> Option<u32> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs();
        self.retry_after_at(now)
    }

    /// [`Response::retry_after`] with `now` in seconds since the Unix epoch.
    pub fn retry_after_at(&self, now: u64) -> Option<u32> {
        let value = self.header("Retry-After")?.trim();
        if let Ok(secs) = value.parse::<u32>() {
            return Some(secs);
        }
        let at = http_date(value)?;
        Some(u32::try_from(at.saturating_sub(now)).unwrap_or(u32::MAX))
    }
}

/// An IMF-fixdate (`Wed, 21 Oct 2015 07:28:00 GMT`) in seconds since the Unix epoch.
fn http_date(text: &str) -> Option<u64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (_weekday, rest) = text.split_once(", ")?;
    let fields: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = fields.as_slice() else {
        return None;
    };
    let day: u64 = day.parse().ok().filter(|d| (1..=31).contains(d))?;
    let month = MONTHS.iter().position(|m| m == month)? as u64 + 1;
    let year: u64 = year.parse().ok().filter(|y| *y >= 1970)?;
    let hms: Vec<u64> = time
        .split(':')
        .map(|n| n.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, sec] = hms.as_slice() else {
        return None;
    };
    if *h > 23 || *m > 59 || *sec > 60 {
        return None;
    }
    // Days from 1970-01-01 to the date (Howard Hinnant's days_from_civil).
    let (y, mo) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + h * 3_600 + m * 60 + sec)
}

/// The host's own capabilities, through the WIT imports: what a plugin uses at run time.
#[derive(Debug, Default, Clone, Copy)]
pub struct Wasm;

impl Host for Wasm {
    type Secret = crate::Secret;

    fn http(&mut self, request: Request<'_, crate::Secret>) -> Result<Response, TransportError> {
        use crate::bindings::scan2x::mail::http;
        fn parts<'a>(list: &[Part<'a, crate::Secret>]) -> Vec<http::TextPart<'a>> {
            list.iter()
                .map(|p| match p {
                    Part::Text(t) => http::TextPart::Text(t.clone()),
                    Part::Secret(s) => http::TextPart::Secret(s),
                })
                .collect()
        }
        let headers = request
            .headers
            .iter()
            .map(|(name, value)| http::Header {
                name: name.clone(),
                value: parts(value),
            })
            .collect();
        // Taken out of the request, so the bytes move and a blob handle outlives the call.
        let mut own_body = request.body;
        let body = match &mut own_body {
            Body::Empty => http::Body::Empty,
            Body::Bytes(bytes) => http::Body::Bytes(std::mem::take(bytes)),
            Body::Content {
                content,
                offset,
                length,
            } => match content.blob() {
                Some(blob) => http::Body::Blob(http::BlobRange {
                    blob,
                    offset: *offset,
                    length: *length,
                }),
                None => http::Body::Bytes(content.read(*offset, *length)),
            },
            Body::Form(fields) => http::Body::Form(
                fields
                    .iter()
                    .map(|(name, value)| http::FormField {
                        name: name.clone(),
                        value: parts(value),
                    })
                    .collect(),
            ),
        };
        let request = http::Request {
            method: match request.method {
                Method::Get => http::Method::Get,
                Method::Post => http::Method::Post,
                Method::Put => http::Method::Put,
                Method::Delete => http::Method::Delete,
            },
            url: request.url,
            headers,
            body,
            timeout_ms: request.timeout_ms,
        };
        match http::send(&request) {
            Ok(r) => Ok(Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
            Err(http::HttpError::Denied(m)) => Err(TransportError::Denied(m)),
            Err(http::HttpError::InvalidRequest(m)) => Err(TransportError::InvalidRequest(m)),
            Err(http::HttpError::Connection(m)) => Err(TransportError::Connection(m)),
            Err(http::HttpError::Timeout(m)) => Err(TransportError::Timeout(m)),
            Err(http::HttpError::TooLarge(m)) => Err(TransportError::TooLarge(m)),
        }
    }

    fn state_get(&mut self, key: &str) -> Option<Vec<u8>> {
        crate::bindings::scan2x::mail::state::get(key)
    }

    fn state_set(&mut self, key: &str, value: &[u8], ttl_secs: u32) {
        crate::bindings::scan2x::mail::state::set(key, value, ttl_secs);
    }

    fn state_remove(&mut self, key: &str) {
        crate::bindings::scan2x::mail::state::remove(key);
    }

    fn log(&mut self, level: Level, message: &str) {
        log(level, message);
    }
}

/// The kit's own warning that it encodes attachment bytes inside the plugin, where the host
/// would have written them without a copy: the plugin's memory then holds the whole encoding.
/// Off wasm32 (the kit's native unit tests) there is no host to tell.
pub(crate) fn warn_encoding_here(bytes: u64, why: &str) {
    let line = format!(
        "encoding {bytes} bytes of attachments inside the plugin ({why}); the host writes them \
         without a copy when it can"
    );
    #[cfg(target_arch = "wasm32")]
    log(Level::Warn, &line);
    #[cfg(not(target_arch = "wasm32"))]
    let _ = line;
}

/// A line in the host's log, tagged with the sender. Never a secret, an address or content.
pub fn log(level: Level, message: &str) {
    use crate::bindings::scan2x::mail::log as wit;
    let level = match level {
        Level::Debug => wit::Level::Debug,
        Level::Info => wit::Level::Info,
        Level::Warn => wit::Level::Warn,
    };
    wit::log(level, message);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_answer_maps_to_what_should_happen_next() {
        let e = |t: TransportError| t.into_send_error("sending").kind();
        assert_eq!(e(TransportError::Denied("no".into())), "denied");
        assert_eq!(e(TransportError::Connection("reset".into())), "temporary");
        assert_eq!(e(TransportError::Timeout("slow".into())), "temporary");
        assert_eq!(
            e(TransportError::InvalidRequest("url".into())),
            "invalid-settings"
        );
        assert_eq!(e(TransportError::TooLarge("big".into())), "rejected");
    }

    #[test]
    fn retry_after_is_read_in_seconds_or_as_an_http_date() {
        let with = |v: &str| Response {
            status: 429,
            headers: vec![("retry-after".into(), v.into())],
            body: Vec::new(),
        };
        // 2015-10-21 07:28:00 UTC is 1445412480 (`date -u -d @1445412480`).
        let now = 1_445_412_480 - 90;
        assert_eq!(with(" 12 ").retry_after_at(now), Some(12));
        assert_eq!(
            with("Wed, 21 Oct 2015 07:28:00 GMT").retry_after_at(now),
            Some(90)
        );
        assert_eq!(
            with("Wed, 21 Oct 2015 07:28:00 GMT").retry_after_at(now + 200),
            Some(0)
        );
        assert_eq!(
            with("Thu, 29 Feb 2024 00:00:00 GMT").retry_after_at(0),
            Some(1_709_164_800)
        );
        for bad in [
            "soon",
            "-5",
            "Wed, 21 Oct 2015 07:28:00 PST",
            "Wed, 32 Oct 2015 07:28:00 GMT",
        ] {
            assert_eq!(with(bad).retry_after_at(now), None, "{bad}");
        }
    }
}
