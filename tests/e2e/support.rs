//! What every end-to-end test stands on: throw-away certificates, free loopback ports, the
//! project's own SMTP test server, and a runner for the real `scan2x-mail` binary.
//!
//! | module | gives a test |
//! |---|---|
//! | [`certs`] | a test CA and a `localhost`/127.0.0.1 leaf signed by it, as PEM files |
//! | [`echo_server`] | `tests/servers/echo_server.py`, a hostile server that echoes logins and requests back, or floods |
//! | [`dovecot`] | a throw-away Dovecot (IMAP) with a test user, SPECIAL-USE folders and Maildir storage, read back |
//! | [`hostile_imap`] | `tests/servers/hostile_imap.py`, an IMAP server that fails APPEND in one mode (closes, hangs, resets); what it heard and stored; an IMAP sender pointed at it |
//! | [`hostile_smtp`] | `tests/servers/hostile_smtp.py`, an SMTP server misbehaving in one mode; what it heard and took; senders pointed at it |
//! | [`graph_server`] | `tests/servers/graph_server.py`, the Microsoft Graph stand-in, started and stopped; what it received and sent; a Graph sender's settings |
//! | [`ports`] | free 127.0.0.1 ports |
//! | [`sendgrid_server`] | `tests/servers/sendgrid_server.py`, the SendGrid stand-in, started and stopped; what it received |
//! | [`smtp_server`] | `tests/servers/smtp_server.py` started and stopped, what it received and heard |
//! | [`sender`] | the settings file of an SMTP sender that works against the test server |
//! | [`test_plugins`] | the plugins installed as files: the hostile and broken ones, and the example vendor plugin |
//! | [`binary`] | `scan2x-mail` run with a settings file, a private cache and a timeout; its output checked for secrets |
//!
//! The support code never talks to anything but 127.0.0.1 and never reads the user's own
//! settings, cache or environment-provided configuration: every run gets its own files.

pub mod binary;
pub mod certs;
pub mod dovecot;
pub mod echo_server;
pub mod graph_server;
pub mod hostile_imap;
pub mod hostile_smtp;
pub mod ports;
pub mod sender;
pub mod sendgrid_server;
pub mod served;
pub mod smtp_server;
pub mod test_plugins;

pub use binary::Scan2xMail;
pub use sender::{FROM, PASSWORD, PASSWORD_ENV, Password, SmtpSender, USER};
pub use smtp_server::{SmtpServer, SmtpServerOptions};

/// The lines a server started with a piped stdout prints, read on a thread: a blocking read
/// can't time out, a channel's `recv_timeout` can (servers print `READY` once they listen).
pub fn stdout_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The environment variable that names the file where every skip is recorded, one line each;
/// `cargo xtask test` sets it, counts the lines when the tests end and lists them.
pub const SKIP_LOG_ENV: &str = "SCAN2X_TEST_SKIP_LOG";

/// `test` can't run here, for `why`. Under `CI` that is a broken setup and the test fails;
/// elsewhere it is said on the real stderr (not through `eprintln!`, which the test harness
/// captures and shows only on failure) and recorded in the file [`SKIP_LOG_ENV`] names, so a
/// skip is never silent. The caller returns early after it.
pub fn say_skipped(test: &str, why: &str) {
    use std::io::Write;
    if std::env::var_os("CI").is_some() {
        panic!("{test} must not skip under CI: {why}");
    }
    let _ = writeln!(
        std::io::stderr(),
        "\n==========\nSKIPPED: {test}: {why}\n==========\n"
    );
    if let Some(log) = std::env::var_os(SKIP_LOG_ENV) {
        let line = format!("{test}: {}\n", why.replace('\n', " "));
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = appended {
            panic!(
                "{test}: cannot record its skip in {}: {e}",
                log.to_string_lossy()
            );
        }
    }
}

/// An HTTPS client for a stand-in that trusts only the test CA in `ca_file`: rustls on ring, as
/// the host, and no proxy (a test must never leave loopback).
pub fn https_client(ca_file: &std::path::Path) -> reqwest::Client {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let pem = std::fs::read(ca_file).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .no_proxy()
        .build()
        .unwrap()
}

/// Quote `value` as a TOML basic string (paths in settings files).
pub fn toml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Standard base64 (with padding): how a password would look inside an SMTP AUTH exchange.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.len();
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= n {
                out.push(ALPHABET[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn base64_matches_the_rfc_4648_test_vectors() {
    let vectors = [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ];
    for (plain, encoded) in vectors {
        assert_eq!(base64(plain.as_bytes()), encoded);
    }
}
