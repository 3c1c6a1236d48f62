//! Secret values (passwords, client secrets) in the host, and the one redactor for everything
//! that leaves the process.
//!
//! A [`Secret`] never prints itself: `Debug` shows `<secret>`, there is no `Display`, and the only
//! way to the text is [`Secret::expose`], called where a protocol needs the bytes. Every secret is
//! known to the process's redactor from the moment it is made ([`Secret::new`]), and
//! [`redact`] / [`redact_bytes`] replace it by `<secret>` in every spelling the host itself could
//! have put it in: raw (an IMAP literal too), inside the base64 of `AUTH PLAIN`, `AUTH LOGIN` and
//! HTTP Basic (at each of the three offsets a value can start at, standard and URL-safe
//! alphabets), IMAP-quoted, form- and percent-encoded (either case of hex), JSON- and
//! Rust-escaped, and those escapes of the encodings. Standard output and error, every tracing
//! line, `--json`, receipts, and the server text the host hands to a plugin all pass through it,
//! so a server or plugin that echoes a secret back still never gets it to the terminal or to the
//! plugin.
//!
//! It must never be bypassed by a path that prints, logs or hands text to a plugin.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, LazyLock, RwLock};

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;

/// What a secret is replaced by.
pub const REDACTED: &str = "<secret>";

/// Values shorter than this are not redacted: they would redact ordinary words, and they are no
/// secret worth the name. Encodings shorter than this are left out for the same reason.
const MIN_LEN: usize = 4;

/// A secret value, cheap to clone, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// A secret, known to the redactor from now on.
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        let secret = Self(value.into());
        register(&secret);
        secret
    }

    /// The text, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// The process's redactor: every secret made so far, and a matcher over all their spellings.
#[derive(Default)]
struct Redactor {
    secrets: Vec<Secret>,
    matcher: Option<AhoCorasick>,
}

static REDACTOR: LazyLock<RwLock<Redactor>> = LazyLock::new(Default::default);

fn register(secret: &Secret) {
    if secret.expose().len() < MIN_LEN {
        return;
    }
    let mut redactor = REDACTOR.write().unwrap_or_else(|e| e.into_inner());
    if redactor.secrets.contains(secret) {
        return;
    }
    redactor.secrets.push(secret.clone());
    let mut patterns: Vec<String> = redactor
        .secrets
        .iter()
        .flat_map(|s| spellings(s.expose()))
        .collect();
    patterns.sort();
    patterns.dedup();
    redactor.matcher = AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .build(&patterns)
        .ok();
}

/// `text` with every spelling of every known secret replaced by `<secret>`.
pub fn redact(text: &str) -> Cow<'_, str> {
    let redactor = REDACTOR.read().unwrap_or_else(|e| e.into_inner());
    match &redactor.matcher {
        Some(matcher) if matcher.is_match(text) => {
            Cow::Owned(matcher.replace_all(text, &vec![REDACTED; matcher.patterns_len()]))
        }
        _ => Cow::Borrowed(text),
    }
}

/// [`redact`] for bytes (an HTTP response body).
pub fn redact_bytes(bytes: &[u8]) -> Cow<'_, [u8]> {
    let redactor = REDACTOR.read().unwrap_or_else(|e| e.into_inner());
    match &redactor.matcher {
        Some(matcher) if matcher.is_match(bytes) => Cow::Owned(
            matcher.replace_all_bytes(bytes, &vec![REDACTED.as_bytes(); matcher.patterns_len()]),
        ),
        _ => Cow::Borrowed(bytes),
    }
}

/// [`redact`] in place, for the strings of a value about to be handed on.
pub fn redact_in_place(text: &mut String) {
    if let Cow::Owned(clean) = redact(text) {
        *text = clean;
    }
}

/// Every string of `value` redacted, before it is serialized: so no escaping JSON adds can hide a
/// secret's spelling from the redactor. The CLI's `--json` and the API's answers go through it.
pub fn redact_json(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(text) => redact_in_place(text),
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        Value::Object(map) => map.values_mut().for_each(redact_json),
        _ => {}
    }
}

/// Every spelling of `value` the host may produce, each at least [`MIN_LEN`] long.
fn spellings(value: &str) -> Vec<String> {
    let mut first = vec![value.to_string(), imap_quoted(value)];
    first.extend(percent_encodings(value));
    first.extend(base64_fragments(value.as_bytes()));
    let mut all = Vec::new();
    for spelling in first {
        all.push(json_escaped(&spelling));
        all.push(json_ascii_escaped(&spelling));
        all.push(debug_escaped(&spelling));
        all.push(imap_quoted(&spelling));
        all.push(spelling);
    }
    all.retain(|s| s.len() >= MIN_LEN);
    all.sort();
    all.dedup();
    all
}

/// IMAP's quoted string body (RFC 3501): `\` and `"` escaped.
fn imap_quoted(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// JSON's escaping as serde_json writes it, without the quotes.
fn json_escaped(value: &str) -> String {
    let quoted = serde_json::to_string(value).unwrap_or_default();
    quoted[1..quoted.len() - 1].to_string()
}

/// JSON with every non-ASCII character as `\uXXXX` (as Python's `json.dumps` writes it).
fn json_ascii_escaped(value: &str) -> String {
    let mut out = String::new();
    for c in json_escaped(value).chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            for unit in c.encode_utf16(&mut [0; 2]) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// Rust's `{:?}` of a string, without the quotes.
fn debug_escaped(value: &str) -> String {
    let debug = format!("{value:?}");
    debug[1..debug.len() - 1].to_string()
}

/// Percent-encoding as URLs (every byte but the unreserved ones) and HTML forms (`+` for a
/// space; `*-._` kept) write it, with upper- and lower-case hex.
fn percent_encodings(value: &str) -> Vec<String> {
    let url = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
    let form = |b: u8| b.is_ascii_alphanumeric() || b"*-._".contains(&b);
    let mut out = Vec::new();
    for upper in [true, false] {
        for (keep, plus) in [(&url as &dyn Fn(u8) -> bool, false), (&form, true)] {
            let mut text = String::new();
            for &b in value.as_bytes() {
                if keep(b) {
                    text.push(b as char);
                } else if plus && b == b' ' {
                    text.push('+');
                } else if upper {
                    text.push_str(&format!("%{b:02X}"));
                } else {
                    text.push_str(&format!("%{b:02x}"));
                }
            }
            out.push(text);
        }
    }
    out
}

/// The base64 characters that depend only on `value`'s bytes, for each of the three offsets
/// `value` can start at inside a longer encoded text (`\0user\0password`, `user:password`), in
/// the standard and URL-safe alphabets.
fn base64_fragments(value: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for offset in 0..3usize {
        let mut padded = vec![0u8; offset];
        padded.extend_from_slice(value);
        let encoded = base64::engine::general_purpose::STANDARD.encode(&padded);
        // Character i holds bits [6i, 6i + 6); the value's bits are [8·offset, 8·len).
        let first = (8 * offset).div_ceil(6);
        let end = (8 * padded.len()) / 6;
        if end > first {
            let fragment = &encoded[first..end];
            out.push(fragment.to_string());
            out.push(fragment.replace('+', "-").replace('/', "_"));
        }
    }
    out
}

/// Text a plugin or a server gave, made safe to print on one line: control characters
/// (C0, DEL, C1), and the Unicode bidirectional controls that reorder what a terminal shows, are
/// written as escapes (`\n`, `\u{1b}`), so such text can neither forge a line of the host's own
/// nor hide part of a line.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `text` cut to at most `max` bytes (at a character boundary), marked with how much was cut.
pub fn truncate_marked(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let total = text.len();
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(&format!("… [cut: {total} bytes, at most {max} kept]"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_value() {
        let s = Secret::new("hunter22");
        assert_eq!(format!("{s:?}"), "<secret>");
        assert!(!format!("{:?}", Some(s)).contains("hunter22"));
    }

    #[test]
    fn redactor_replaces_every_occurrence() {
        Secret::new("hunter22");
        assert_eq!(
            redact("535 bad password hunter22 (hunter22)"),
            "535 bad password <secret> (<secret>)"
        );
    }

    /// Every encoding the host itself puts a secret into, and what a server echoing it back
    /// would print.
    #[test]
    fn every_encoding_of_a_secret_is_redacted() {
        let value = "pa\"ss w~rd/é+1";
        Secret::new(value);
        let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
        let b64url = |t: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(t);
        let cases = [
            value.to_string(),
            format!("AUTH PLAIN {}", b64(&format!("\0user\0{value}"))),
            format!("AUTH PLAIN {}", b64(&format!("\0u\0{value}"))),
            format!("AUTH PLAIN {}", b64(&format!("\0us\0{value}"))),
            format!("334 {}", b64(value)),
            format!("Basic {}", b64(&format!("user:{value}"))),
            b64url(&format!("x{value}")),
            format!("LOGIN \"user\" \"{}\"", imap_quoted(value)),
            format!("LOGIN user {{{}}}\r\n{value}", value.len()),
            format!("client_secret={}", percent_encodings(value)[0]),
            format!("client_secret={}", percent_encodings(value)[1]),
            format!("client_secret={}", percent_encodings(value)[2]),
            format!("client_secret={}", percent_encodings(value)[3]),
            serde_json::json!({ "echo": value }).to_string(),
            serde_json::json!({ "echo": format!("LOGIN \"u\" \"{}\"", imap_quoted(value)) })
                .to_string(),
            format!("{:?}", format!("said {value}")),
            format!("\"{}\"", json_ascii_escaped(value)),
        ];
        for case in cases {
            let out = redact(&case);
            assert!(out.contains(REDACTED), "not redacted: {case:?} → {out:?}");
            for spelling in spellings(value) {
                assert!(!out.contains(&spelling), "{spelling:?} left in {out:?}");
            }
        }
    }

    #[test]
    fn bytes_are_redacted_like_text() {
        Secret::new("bytes-secret-77");
        assert_eq!(
            redact_bytes(b"{\"echo\":\"bytes-secret-77\"}").as_ref(),
            b"{\"echo\":\"<secret>\"}"
        );
        assert!(matches!(redact_bytes(b"nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn short_values_are_not_redacted() {
        Secret::new("abc");
        assert_eq!(redact("abc abc"), "abc abc");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            escape_controls("ok\nERROR forged\x1b[8m\u{202e}"),
            "ok\\nERROR forged\\u{1b}[8m\\u{202e}"
        );
        assert!(matches!(escape_controls("plain text é"), Cow::Borrowed(_)));
    }

    #[test]
    fn truncation_is_marked_and_keeps_characters_whole() {
        let mut text = "éé".repeat(10);
        truncate_marked(&mut text, 5);
        assert!(text.starts_with("éé…"), "{text}");
        assert!(text.contains("40 bytes"), "{text}");
    }
}
