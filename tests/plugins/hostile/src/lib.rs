//! A hostile sender plugin, built only by the tests (never shipped): its `send` does what its
//! `attack` setting says, so each test can prove the sandbox holds against one misdeed.
//!
//! | attack | what it tries |
//! |---|---|
//! | `none` | nothing: answers with a receipt (the control) |
//! | `smtp-elsewhere`, `http-elsewhere`, `imap-elsewhere` | to reach `127.0.0.1:{port + 1}`, which it was not granted |
//! | `loop` | to spin forever |
//! | `sleep` | nothing harmful: to wait 3 s of wall time on a timer, computing nothing (the CPU limit must not stop it) |
//! | `alloc` | to allocate without end |
//! | `trap`, `panic` | to crash |
//! | `log-flood` | to write 200 000 log lines |
//! | `huge-message` | to hand the host a 101 MiB message |
//! | `huge-receipt` | to hand back a 2 MiB receipt |
//! | `environment` | to read environment variables and arguments (it reports how many it saw) |
//! | `bare-lf-dot` | to end DATA early with a bare-LF `.` line (and a bare CR), smuggling a second message after it |
//! | `secret-reflect` | to read its password back: sends it in its declared header `X-Declared` to `https://{host}:{port}`, a server that reflects the request, and hands back what came back |
//! | `secret-undeclared` | to send its password in a header it did not declare (`X-Leak`) |
//! | `secret-plain-http` | to send its password in its declared header over plain `http://` |
//! | `state-flood` | to make the host hold 64 state keys of 32 MiB each |
//! | `state-warnings` | to make the host warn 1 000 times (state values too large to keep) |
//! | `huge-error` | to hand back a 48 MiB error text |
//! | `log-forge` | to forge a host `ERROR` line and hide text with terminal escape codes in a log line |
//!
//! Its description holds terminal escape codes, to hide text in the `plugins` listing.

// The canonical-ABI glue wit-bindgen generates is unsafe by nature; only this module has it.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({ path: "../../../wit", world: "sender-plugin" });

    #[cfg(target_arch = "wasm32")]
    use super::Hostile;
    #[cfg(target_arch = "wasm32")]
    export!(Hostile);
}

use bindings::exports::scan2x::mail::mail_sender::Guest;
use bindings::scan2x::mail::types::{
    Credentials, Endpoint, EventKind, Message, MessagePart, PluginInfo, Receipt, SendError,
    Setting, SettingKind, SettingSpec, SettingValue, TlsMode,
};
use bindings::scan2x::mail::{http, imap, log, smtp, state};

struct Hostile;

fn spec(key: &str, kind: SettingKind, required: bool) -> SettingSpec {
    SettingSpec {
        key: key.into(),
        label: key.into(),
        kind,
        required,
        default: None,
        help: String::new(),
    }
}

fn receipt(detail: String) -> Receipt {
    Receipt {
        provider_id: None,
        accepted: Vec::new(),
        refused: Vec::new(),
        detail,
    }
}

impl Guest for Hostile {
    fn describe() -> PluginInfo {
        PluginInfo {
            id: "hostile".into(),
            version: "0.0.1".into(),
            label: "Hostile (tests only)".into(),
            description:
                "Attacks the sandbox on purpose.\x1b[8m hidden grant https://evil.example\x1b[0m"
                    .into(),
            settings: vec![
                spec("host", SettingKind::Text, true),
                spec("port", SettingKind::Integer, true),
                spec("attack", SettingKind::Text, true),
                spec("password", SettingKind::Secret, false),
            ],
            events: vec![
                EventKind::JobOutput,
                EventKind::SavedScanCopy,
                EventKind::PinRequest,
                EventKind::QueueNotification,
            ],
            network: vec![
                "smtp://{host}:{port}".into(),
                "secret password header X-Declared https://{host}:{port}".into(),
            ],
        }
    }

    fn verify(_settings: Vec<Setting>) -> Result<String, SendError> {
        Ok("nothing to verify".into())
    }

    fn send(settings: Vec<Setting>, _message: Message) -> Result<Receipt, SendError> {
        let text = |key: &str| {
            settings
                .iter()
                .find(|s| s.key == key)
                .and_then(|s| match &s.value {
                    SettingValue::Text(t) => Some(t.clone()),
                    _ => None,
                })
        };
        let port = settings
            .iter()
            .find_map(|s| match (&s.key[..], &s.value) {
                ("port", SettingValue::Integer(p)) => Some(*p as u16),
                _ => None,
            })
            .unwrap_or(25);
        let password = settings.iter().find_map(|s| match (&s.key[..], &s.value) {
            ("password", SettingValue::Secret(secret)) => Some(secret),
            _ => None,
        });
        let host = text("host").unwrap_or_default();
        let elsewhere = Endpoint {
            host: "127.0.0.1".into(),
            port: port.wrapping_add(1),
            tls: TlsMode::Plaintext,
        };
        match text("attack").as_deref().unwrap_or("none") {
            "none" => Ok(receipt("nothing attempted".into())),
            "smtp-elsewhere" => smtp::verify(&elsewhere, None).map(receipt),
            "http-elsewhere" => {
                let request = http::Request {
                    method: http::Method::Get,
                    url: format!("http://127.0.0.1:{}/", elsewhere.port),
                    headers: Vec::new(),
                    body: http::Body::Empty,
                    timeout_ms: Some(2000),
                };
                match http::send(&request) {
                    Ok(r) => Ok(receipt(format!("reached it: HTTP {}", r.status))),
                    Err(http::HttpError::Denied(m)) => Err(SendError::Denied(m)),
                    Err(other) => Err(SendError::Rejected(format!("{other:?}"))),
                }
            }
            "imap-elsewhere" => {
                let password =
                    password.ok_or_else(|| SendError::InvalidSettings("set password".into()))?;
                let credentials = Credentials {
                    username: "someone".into(),
                    password,
                };
                imap::Session::open(&elsewhere, &credentials).map(|_| receipt("reached it".into()))
            }
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "sleep" => {
                // wasi's monotonic clock: the host waits on a timer, the plugin computes nothing.
                std::thread::sleep(std::time::Duration::from_secs(3));
                Ok(receipt("slept 3 s".into()))
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![0x5a; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" => std::process::abort(),
            "panic" => panic!("hostile plugin panics on purpose"),
            "log-flood" => {
                for i in 0..200_000 {
                    log::log(log::Level::Info, &format!("flood line {i}"));
                }
                Ok(receipt("flooded".into()))
            }
            "huge-message" => {
                let endpoint = Endpoint {
                    host,
                    port,
                    tls: TlsMode::Plaintext,
                };
                let envelope = smtp::Envelope {
                    mail_from: "a@example.test".into(),
                    rcpt_to: vec!["b@example.test".into()],
                };
                let raw = vec![b'a'; 101 << 20];
                smtp::send(&endpoint, None, &envelope, &[MessagePart::Text(raw)])
                    .map(|r| receipt(r.reply))
            }
            "huge-receipt" => Ok(receipt("x".repeat(2 << 20))),
            "secret-reflect" | "secret-undeclared" | "secret-plain-http" => {
                let password =
                    password.ok_or_else(|| SendError::InvalidSettings("set password".into()))?;
                let attack = text("attack").unwrap_or_default();
                let (scheme, header) = match attack.as_str() {
                    "secret-undeclared" => ("https", "X-Leak"),
                    "secret-plain-http" => ("http", "X-Declared"),
                    _ => ("https", "X-Declared"),
                };
                let request = http::Request {
                    method: http::Method::Post,
                    url: format!("{scheme}://{host}:{port}/reflect"),
                    headers: vec![http::Header {
                        name: header.into(),
                        value: vec![
                            http::TextPart::Text("Bearer ".into()),
                            http::TextPart::Secret(password),
                        ],
                    }],
                    body: http::Body::Empty,
                    timeout_ms: Some(5000),
                };
                match http::send(&request) {
                    Ok(r) => {
                        let headers: Vec<String> =
                            r.headers.iter().map(|(n, v)| format!("{n}: {v}")).collect();
                        let body = String::from_utf8_lossy(&r.body).into_owned();
                        // Reversed too: what a plugin that read the secret could print in a
                        // spelling no redactor knows.
                        Ok(receipt(format!(
                            "reflected: {} | {body} | reversed: {}",
                            headers.join(" | "),
                            body.chars().rev().collect::<String>()
                        )))
                    }
                    Err(http::HttpError::Denied(m)) => Err(SendError::Denied(m)),
                    Err(other) => Err(SendError::Rejected(format!("{other:?}"))),
                }
            }
            "state-flood" => {
                let mut key = vec![b'k'; 32 << 20];
                for i in 0..64u8 {
                    // A different key each time: its first bytes name it.
                    key[..2].copy_from_slice(&[b'a' + i / 26, b'a' + i % 26]);
                    state::set(std::str::from_utf8(&key).unwrap(), b"v", 3600);
                }
                Ok(receipt("asked the host to keep 64 keys of 32 MiB".into()))
            }
            "state-warnings" => {
                let big = vec![0u8; 65 << 10];
                for i in 0..1000 {
                    state::set(&format!("k{i}"), &big, 3600);
                }
                Ok(receipt("asked 1000 times".into()))
            }
            "huge-error" => Err(SendError::Rejected("e".repeat(48 << 20))),
            "log-forge" => {
                log::log(
                    log::Level::Info,
                    "innocent\nERROR scan2x-mail: forged host line\x1b[8m hidden\x1b[0m",
                );
                Ok(receipt("logged".into()))
            }
            "bare-lf-dot" => {
                let endpoint = Endpoint {
                    host,
                    port,
                    tls: TlsMode::Plaintext,
                };
                let envelope = smtp::Envelope {
                    mail_from: "a@example.test".into(),
                    rcpt_to: vec!["b@example.test".into()],
                };
                let raw =
                    b"Subject: smuggle\r\n\r\nbefore\n.\nMAIL FROM:<smuggled@example.test>\r\n\
                    RCPT TO:<victim@example.test>\r\nDATA\r\nsmuggled\r\n.\r\nafter\rbare cr\r\n";
                smtp::send(
                    &endpoint,
                    None,
                    &envelope,
                    &[MessagePart::Text(raw.to_vec())],
                )
                .map(|r| receipt(r.reply))
            }
            "environment" => Ok(receipt(format!(
                "{} environment variables, {} arguments",
                std::env::vars().count(),
                std::env::args().count()
            ))),
            other => Err(SendError::InvalidSettings(format!(
                "unknown attack {other:?}"
            ))),
        }
    }
}
