//! The words the `imap` capability puts on the wire: folder names (quoted, in IMAP's modified
//! UTF-7), flags and the APPEND date, built from values a plugin chose, and the login's
//! arguments (LOGIN's quoted strings or literals, AUTHENTICATE PLAIN's base64 response), built
//! from the sender's credentials. Pure functions, unit-tested here. base64 is the `base64`
//! crate's, the host's one: the standard alphabet for SASL, IMAP's modified one for folder names.
//!
//! Nothing a plugin passes may end a command early or start another one: every text that lands
//! in a command is checked or quoted here, and a CR, LF or NUL is refused, never sent.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::{self, GeneralPurpose};

use crate::secret::REDACTED;

/// Why a value can't go on the wire; the text names the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsendable(pub String);

/// A folder name as an IMAP quoted string, non-ASCII in modified UTF-7 (RFC 3501 5.1.3).
pub fn quoted_folder(name: &str) -> Result<String, Unsendable> {
    if name.is_empty() {
        return Err(Unsendable("the folder name is empty".into()));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(Unsendable(format!(
            "the folder name {name:?} holds a control character (a line break?)"
        )));
    }
    Ok(quoted(&encode_mutf7(name)))
}

/// An IMAP quoted string of ASCII text without CR/LF: `"` and `\` escaped.
fn quoted(ascii: &str) -> String {
    let mut out = String::with_capacity(ascii.len() + 2);
    out.push('"');
    for c in ascii.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Bytes that carry a credential (a LOGIN argument, a SASL response): never shown, and cleared
/// when dropped, so no copy of the password outlives the write that needed it.
pub struct Hidden(Vec<u8>);

impl Hidden {
    pub fn with_capacity(capacity: usize) -> Self {
        Self(Vec::with_capacity(capacity))
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Hidden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Drop for Hidden {
    fn drop(&mut self) {
        self.0.fill(0);
        // The cleared bytes are "used", so the clearing is not optimized away before the free.
        std::hint::black_box(&self.0);
    }
}

/// How LOGIN carries one of its arguments (an RFC 3501 `astring`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried {
    /// A quoted string: any text but CR, LF and NUL, `"` and `\` escaped (8-bit text as is,
    /// which is how servers take a UTF-8 password in LOGIN).
    Quoted,
    /// A literal (`{N}`, then the bytes once the server says `+`): for text with CR or LF.
    Literal,
}

/// How LOGIN can carry `value`, the sender's `what` (`username`, `password`): NUL fits in
/// neither a quoted string nor a literal.
pub fn login_argument(what: &str, value: &str) -> Result<Carried, Unsendable> {
    if value.contains('\0') {
        return Err(Unsendable(format!(
            "the {what} holds a NUL, which IMAP LOGIN can't carry"
        )));
    }
    if value.contains(['\r', '\n']) {
        return Ok(Carried::Literal);
    }
    Ok(Carried::Quoted)
}

/// `value` as an IMAP quoted string, appended to `out`: `"` and `\` escaped. The caller made
/// sure it holds no CR, LF or NUL ([`login_argument`]).
pub fn push_quoted(value: &[u8], out: &mut Hidden) {
    out.0.reserve(value.len() + 2);
    out.0.push(b'"');
    for &b in value {
        if matches!(b, b'"' | b'\\') {
            out.0.push(b'\\');
        }
        out.0.push(b);
    }
    out.0.push(b'"');
}

/// SASL PLAIN's response (RFC 4616: `\0username\0password`, no authorization identity) in
/// standard base64, as AUTHENTICATE carries it (RFC 4959 initial response, or the line after
/// the server's `+`), appended to `out`.
pub fn push_sasl_plain(username: &str, password: &str, out: &mut Hidden) -> Result<(), Unsendable> {
    for (what, value) in [("username", username), ("password", password)] {
        if value.contains('\0') {
            return Err(Unsendable(format!(
                "the {what} holds a NUL, which SASL PLAIN can't carry"
            )));
        }
    }
    let mut raw = Hidden::with_capacity(username.len() + password.len() + 2);
    raw.push(b"\0");
    raw.push(username.as_bytes());
    raw.push(b"\0");
    raw.push(password.as_bytes());
    let start = out.0.len();
    let len = base64::encoded_len(raw.0.len(), true).expect("a login fits in memory");
    out.0.resize(start + len, 0);
    general_purpose::STANDARD
        .encode_slice(raw.bytes(), &mut out.0[start..])
        .expect("the buffer holds the base64 of the response");
    Ok(())
}

/// Flags as an APPEND flag list, e.g. `(\Seen \Flagged)`. A flag is `\` + atom or an atom
/// (a keyword); `\Recent` can't be set by a client.
pub fn flag_list(flags: &[String]) -> Result<String, Unsendable> {
    let mut out = Vec::with_capacity(flags.len());
    for flag in flags {
        let atom = flag.strip_prefix('\\').unwrap_or(flag);
        let valid = !atom.is_empty()
            && atom.bytes().all(|b| {
                b.is_ascii_graphic()
                    && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
            });
        if !valid || flag.eq_ignore_ascii_case("\\Recent") {
            return Err(Unsendable(format!(
                "{flag:?} is not a flag a client may set"
            )));
        }
        out.push(flag.as_str());
    }
    Ok(format!("({})", out.join(" ")))
}

/// Seconds since the Unix epoch as an IMAP date-time, quoted: `"26-Nov-2026 23:05:09 +0000"`.
pub fn date_time(unix_secs: i64) -> Result<String, Unsendable> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let at = crate::civil::Civil::from_unix(unix_secs);
    if !(1..=9999).contains(&at.year) {
        return Err(Unsendable(format!(
            "{unix_secs} s is not a date IMAP can carry"
        )));
    }
    Ok(format!(
        "\"{:02}-{}-{:04} {:02}:{:02}:{:02} +0000\"",
        at.day,
        MONTHS[(at.month - 1) as usize],
        at.year,
        at.hour,
        at.minute,
        at.second
    ))
}

/// Modified base64 of modified UTF-7 (RFC 3501 5.1.3): `,` for `/`, no padding. Decoding
/// lets trailing bits pass, as a lenient reader of what servers send.
const MBASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::IMAP_MUTF7,
    general_purpose::NO_PAD.with_decode_allow_trailing_bits(true),
);

fn mbase64_encode(bytes: &[u8]) -> String {
    MBASE64.encode(bytes)
}

fn mbase64_decode(text: &str) -> Option<Vec<u8>> {
    MBASE64.decode(text).ok()
}

/// A folder name in IMAP's modified UTF-7: printable ASCII as is (`&` as `&-`), every other
/// run as `&` + modified base64 of its UTF-16BE + `-`.
pub fn encode_mutf7(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut run: Vec<u16> = Vec::new();
    let flush = |run: &mut Vec<u16>, out: &mut String| {
        if !run.is_empty() {
            let bytes: Vec<u8> = run.iter().flat_map(|u| u.to_be_bytes()).collect();
            out.push('&');
            out.push_str(&mbase64_encode(&bytes));
            out.push('-');
            run.clear();
        }
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut run, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut units = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut units));
        }
    }
    flush(&mut run, &mut out);
    out
}

/// The name a server sent, decoded from modified UTF-7; a name that is not valid modified
/// UTF-7 (some servers send raw UTF-8) is returned as sent.
pub fn decode_mutf7(wire: &str) -> String {
    let mut out = String::with_capacity(wire.len());
    let mut rest = wire;
    while let Some(start) = rest.find('&') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('-') else {
            return wire.to_string();
        };
        let encoded = &after[..end];
        if encoded.is_empty() {
            out.push('&');
        } else {
            let Some(bytes) = mbase64_decode(encoded) else {
                return wire.to_string();
            };
            if bytes.len() % 2 != 0 {
                return wire.to_string();
            }
            let units: Vec<u16> = bytes
                .chunks(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                .collect();
            match String::from_utf16(&units) {
                Ok(text) => out.push_str(&text),
                Err(_) => return wire.to_string(),
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modified_utf7_round_trips_the_rfc_3501_example_and_non_ascii_names() {
        // RFC 3501 5.1.3: "~peter/mail/台北/日本語"
        let name = "~peter/mail/\u{53f0}\u{5317}/\u{65e5}\u{672c}\u{8a9e}";
        assert_eq!(encode_mutf7(name), "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
        assert_eq!(decode_mutf7("~peter/mail/&U,BTFw-/&ZeVnLIqe-"), name);
        for name in [
            "Éléments envoyés",
            "Gesendete Objekte",
            "A&B",
            "Entwürfe",
            "📄 Scans",
        ] {
            assert_eq!(decode_mutf7(&encode_mutf7(name)), name, "{name}");
            assert!(encode_mutf7(name).is_ascii(), "{name}");
        }
        assert_eq!(encode_mutf7("A&B"), "A&-B");
    }

    #[test]
    fn invalid_modified_utf7_is_kept_as_the_server_sent_it() {
        assert_eq!(decode_mutf7("Sent&"), "Sent&");
        assert_eq!(decode_mutf7("Gesendet €"), "Gesendet €");
    }

    #[test]
    fn folder_names_are_quoted_and_line_breaks_refused() {
        assert_eq!(quoted_folder("Sent Items").unwrap(), "\"Sent Items\"");
        assert_eq!(quoted_folder("a\"b\\c").unwrap(), "\"a\\\"b\\\\c\"");
        assert_eq!(quoted_folder("Entwürfe").unwrap(), "\"Entw&APw-rfe\"");
        for bad in ["", "Sent\r\nA1 DELETE INBOX", "x\0"] {
            assert!(quoted_folder(bad).is_err(), "{bad:?}");
        }
    }

    fn quoted_bytes(value: &str) -> Vec<u8> {
        let mut out = Hidden::with_capacity(0);
        push_quoted(value.as_bytes(), &mut out);
        out.bytes().to_vec()
    }

    #[test]
    fn login_arguments_are_quoted_or_literal_and_nul_refused() {
        assert_eq!(
            login_argument("password", "p\"a\\ss é"),
            Ok(Carried::Quoted)
        );
        assert_eq!(quoted_bytes("p\"a\\ss é"), "\"p\\\"a\\\\ss é\"".as_bytes());
        assert_eq!(login_argument("password", "pa\r\nss"), Ok(Carried::Literal));
        assert_eq!(login_argument("password", "pa\nss"), Ok(Carried::Literal));
        let refused = login_argument("password", "pa\0ss").unwrap_err();
        assert!(
            refused.0.contains("password") && refused.0.contains("NUL"),
            "{refused:?}"
        );
    }

    #[test]
    fn sasl_plain_is_the_standard_base64_of_nul_user_nul_password() {
        let mut out = Hidden::with_capacity(0);
        out.push(b"L1 AUTHENTICATE PLAIN ");
        push_sasl_plain("scanner", "pw-1234", &mut out).unwrap();
        // base64("\0scanner\0pw-1234"), padded (RFC 4648), as RFC 4616 and 4959 have it.
        assert_eq!(
            out.bytes(),
            b"L1 AUTHENTICATE PLAIN AHNjYW5uZXIAcHctMTIzNA=="
        );
        let mut out = Hidden::with_capacity(0);
        push_sasl_plain("tim", "tanstaaftanstaaf", &mut out).unwrap();
        // RFC 4616's example without its authorization identity.
        assert_eq!(out.bytes(), b"AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
        let mut out = Hidden::with_capacity(0);
        assert!(push_sasl_plain("a\0b", "pw", &mut out).is_err());
        assert!(push_sasl_plain("a", "p\0w", &mut out).is_err());
    }

    #[test]
    fn hidden_bytes_never_show() {
        let mut hidden = Hidden::with_capacity(8);
        hidden.push(b"hunter22");
        assert_eq!(format!("{hidden:?}"), "<secret>");
    }

    #[test]
    fn system_flags_and_keywords_pass_and_injections_do_not() {
        let flags = ["\\Seen".to_string(), "$Forwarded".to_string()];
        assert_eq!(flag_list(&flags).unwrap(), "(\\Seen $Forwarded)");
        assert_eq!(flag_list(&[]).unwrap(), "()");
        for bad in ["\\Seen) {5}", "", "\\", "a b", "\\Recent", "x\r\n"] {
            assert!(flag_list(&[bad.to_string()]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dates_are_imap_date_times_in_utc() {
        assert_eq!(date_time(0).unwrap(), "\"01-Jan-1970 00:00:00 +0000\"");
        // 2026-11-26 23:05:09 UTC
        assert_eq!(
            date_time(1_795_734_309).unwrap(),
            "\"26-Nov-2026 23:05:09 +0000\""
        );
        // 2024-02-29 12:00:00 UTC, a leap day
        assert_eq!(
            date_time(1_709_208_000).unwrap(),
            "\"29-Feb-2024 12:00:00 +0000\""
        );
        assert!(date_time(i64::MAX / 2).is_err());
    }

    #[test]
    fn modified_base64_uses_comma_and_no_padding() {
        // U+FFFF U+FFFF U+FFFF: every 6-bit group is 63, which standard base64 writes as `/`.
        assert_eq!(encode_mutf7("\u{ffff}\u{ffff}\u{ffff}"), "&,,,,,,,,-");
        assert_eq!(decode_mutf7("&,,,,,,,,-"), "\u{ffff}\u{ffff}\u{ffff}");
        // One UTF-16 unit: 16 bits in three characters, no `=`.
        assert_eq!(encode_mutf7("é"), "&AOk-");
        assert_eq!(decode_mutf7("&AOk-"), "é");
        // Padding and the standard alphabet's `/` are not modified base64.
        assert_eq!(decode_mutf7("&AOk=-"), "&AOk=-");
        assert_eq!(decode_mutf7("&////-"), "&////-");
    }
}
