//! The words the `imap` capability puts on the wire, built from values a plugin chose: folder
//! names (quoted, in IMAP's modified UTF-7), flags, the APPEND date, and base64 for
//! AUTHENTICATE PLAIN. Pure functions, unit-tested here.
//!
//! Nothing a plugin passes may end a command early or start another one: every text that lands
//! in a command is checked or quoted here, and a CR, LF or NUL is refused, never sent.

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

/// The inside of a quoted string carrying a password for LOGIN (without the quotes): `"` and
/// `\` escaped. CR, LF and NUL can't be carried by a quoted string.
pub fn quoted_password_body(password: &str) -> Result<String, Unsendable> {
    if password.chars().any(|c| matches!(c, '\r' | '\n' | '\0')) {
        return Err(Unsendable(
            "the password holds a line break or NUL, which IMAP LOGIN can't carry".into(),
        ));
    }
    let q = quoted(password);
    Ok(q[1..q.len() - 1].to_string())
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
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    if !(1..=9999).contains(&year) {
        return Err(Unsendable(format!(
            "{unix_secs} s is not a date IMAP can carry"
        )));
    }
    Ok(format!(
        "\"{day:02}-{}-{year:04} {:02}:{:02}:{:02} +0000\"",
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    ))
}

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648), as AUTHENTICATE carries SASL data.
pub fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Modified base64 of modified UTF-7: `,` for `/`, no padding.
fn mbase64_encode(bytes: &[u8]) -> String {
    base64(bytes).trim_end_matches('=').replace('/', ",")
}

fn mbase64_decode(text: &str) -> Option<Vec<u8>> {
    let mut bits: u32 = 0;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes() {
        let c = if c == b',' { b'/' } else { c };
        let value = BASE64.iter().position(|&a| a == c)? as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    Some(out)
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

    #[test]
    fn login_password_is_escaped_and_line_breaks_refused() {
        assert_eq!(quoted_password_body("p\"a\\ss").unwrap(), "p\\\"a\\\\ss");
        assert!(quoted_password_body("pa\r\nss").is_err());
        assert!(quoted_password_body("pa\0ss").is_err());
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
    fn base64_matches_the_rfc_4648_test_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }
}
