//! `serve`'s multipart `POST /v1/messages` end to end: the real binary, spoken to over plain
//! HTTP/1.1, delivering to the real SMTP server. Files uploaded arrive with the same bytes and
//! names after the JSON's own attachment paths, their types as given or guessed from the name;
//! an upload over the default bound (100 MiB) is 413 with nothing queued; a client that hangs
//! up mid-upload leaves nothing behind; the staging folder is empty after each. The default
//! bound is the outbox's own on one email's attachments.

use std::io::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mail_parser::MimeHeaders as _;
use serde_json::{Value, json};

use crate::support::served::{DEADLINE, Served, http, relay};
use crate::support::{PASSWORD, PASSWORD_ENV, Scan2xMail, SmtpSender, USER};

const BOUNDARY: &str = "e2e-b0undary-5c1d";

/// One part of a multipart body: name, filename, Content-Type, content.
type Part<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [u8]);

fn multipart(parts: &[Part<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, filename, content_type, content) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        body.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"{name}\"").as_bytes(),
        );
        if let Some(f) = filename {
            body.extend_from_slice(format!("; filename=\"{f}\"").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        if let Some(t) = content_type {
            body.extend_from_slice(format!("Content-Type: {t}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

impl Served {
    /// `POST /v1/messages` with `body` as multipart/form-data: the status and the answer.
    fn post_multipart(&self, body: &[u8], key: Option<&str>) -> (u16, Value) {
        let bearer = self.bearer();
        let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
        let mut headers = vec![
            ("Authorization", bearer.as_str()),
            ("Content-Type", content_type.as_str()),
        ];
        if let Some(key) = key {
            headers.push(("Idempotency-Key", key));
        }
        http(self.port, "POST", "/v1/messages", &headers, body)
    }
}

/// The request head of a multipart `POST /v1/messages` of `length` bytes, for a client that
/// writes the body itself (and hangs up partway).
fn head(served: &Served, length: usize, key: Option<&str>) -> Vec<u8> {
    let mut head = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\
         Authorization: {}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
         Content-Length: {length}\r\n",
        served.port,
        served.bearer()
    );
    if let Some(key) = key {
        head += &format!("Idempotency-Key: {key}\r\n");
    }
    head += "\r\n";
    head.into_bytes()
}

/// What the staging folder holds (nothing once every request is done).
fn staged(data: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(data.join("uploads")) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

fn email() -> Value {
    json!({
        "to": ["user@example.test"],
        "subject": "Scan uploaded to the service",
        "text": "see the attachments",
    })
}

/// A sender whose server is down, with the data folder beside its settings.
fn down() -> (Scan2xMail, PathBuf) {
    let port = crate::support::ports::free_port();
    let mail = Scan2xMail::new(&SmtpSender::new(port).named("relay").toml())
        .env(PASSWORD_ENV, PASSWORD)
        .credentials(USER, PASSWORD);
    let data = mail.dir().join("data");
    (mail, data)
}

#[test]
fn a_pdf_uploaded_arrives_at_the_server_with_its_bytes_and_name_and_nothing_stays_staged() {
    let test =
        "a_pdf_uploaded_arrives_at_the_server_with_its_bytes_and_name_and_nothing_stays_staged";
    let Some((server, mail)) = relay(test, "") else {
        return;
    };
    let data = mail.dir().join("data");
    let allowed = mail.dir().join("allowed");
    std::fs::create_dir(&allowed).unwrap();
    let cover = allowed.join("cover.txt");
    std::fs::write(&cover, b"the cover page\n").unwrap();
    let allowed_arg = allowed.to_string_lossy().into_owned();
    let served = Served::start(&mail, &data, &["--attachments-from", &allowed_arg]);

    // Every byte value, CRLFs and a line that starts like the boundary, in a PDF.
    let mut pdf = b"%PDF-1.7\r\n%\xe2\xe3\xcf\xd3\r\n--e2e-b0undary-5c1\r\n".to_vec();
    pdf.extend((0..=255u8).cycle().take(300_000));
    pdf.extend_from_slice(b"\r\n%%EOF\r\n");
    let mut message = email();
    message["attachments"] = json!([cover]);
    let message = message.to_string();
    let body = multipart(&[
        (
            "message",
            None,
            Some("application/json"),
            message.as_bytes(),
        ),
        (
            "attachment",
            Some("scan 0001.pdf"),
            Some("application/pdf"),
            &pdf,
        ),
        (
            "attachment",
            Some("notes.txt"),
            Some("application/octet-stream"),
            b"typed by its name\n",
        ),
    ]);
    let (status, submitted) = served.post_multipart(&body, Some("upload-1"));
    assert_eq!(status, 201, "{submitted}");
    assert!(staged(&data).is_empty(), "left staged: {:?}", staged(&data));
    let (status, again) = served.post_multipart(&body, Some("upload-1"));
    assert_eq!((status, &again["id"]), (200, &submitted["id"]), "{again}");
    assert!(staged(&data).is_empty(), "left staged: {:?}", staged(&data));

    let id = submitted["id"].as_str().unwrap();
    let show = served.wait_delivered(id);
    let types: Vec<&str> = show["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["content_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["text/plain", "application/pdf", "text/plain"],
        "{show}"
    );

    let received = server.only_received();
    let parsed = received.parsed();
    let attachments: Vec<(String, Vec<u8>)> = parsed
        .attachments()
        .map(|part| {
            (
                part.attachment_name().unwrap_or_default().to_string(),
                part.contents().to_vec(),
            )
        })
        .collect();
    let names: Vec<&str> = attachments.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["cover.txt", "scan 0001.pdf", "notes.txt"]);
    assert_eq!(attachments[0].1, b"the cover page\n");
    assert!(
        attachments[1].1 == pdf,
        "the PDF changed on the way ({} bytes sent, {} received)",
        pdf.len(),
        attachments[1].1.len()
    );
    assert_eq!(attachments[2].1, b"typed by its name\n");
    assert!(staged(&data).is_empty(), "left staged: {:?}", staged(&data));
}

#[test]
fn an_upload_over_the_default_bound_is_413_and_nothing_is_queued() {
    let (mail, data) = down();
    let served = Served::start(&mail, &data, &[]);
    let message = email().to_string();
    // 100 MiB is the bound on the files together: one byte more.
    let big = vec![b'x'; (100 << 20) + 1];
    let body = multipart(&[
        ("message", None, None, message.as_bytes()),
        (
            "attachment",
            Some("huge.pdf"),
            Some("application/pdf"),
            &big,
        ),
    ]);
    let started = Instant::now();
    let (status, answer) = served.post_multipart(&body, None);
    let took = started.elapsed();
    assert_eq!(
        (status, &answer["error"]["kind"], &answer["error"]["field"]),
        (413, &json!("too-large"), &json!("attachment")),
        "{answer}"
    );
    assert!(staged(&data).is_empty(), "left staged: {:?}", staged(&data));
    assert!(served.list().is_empty(), "nothing queued");
    served.assert_up();
    eprintln!("101 MiB refused in {took:?}");

    // Exactly the bound is taken.
    let body = multipart(&[
        ("message", None, None, message.as_bytes()),
        (
            "attachment",
            Some("huge.pdf"),
            Some("application/pdf"),
            &big[1..],
        ),
    ]);
    let (status, answer) = served.post_multipart(&body, None);
    assert_eq!(status, 201, "{answer}");
    assert!(staged(&data).is_empty(), "left staged: {:?}", staged(&data));
    assert_eq!(served.list().len(), 1);
}

#[test]
fn a_client_that_hangs_up_mid_upload_leaves_nothing_staged() {
    let (mail, data) = down();
    let served = Served::start(&mail, &data, &[]);
    let message = email().to_string();
    let file = vec![b'y'; 8 << 20];
    let body = multipart(&[
        ("message", None, None, message.as_bytes()),
        ("attachment", Some("scan.pdf"), None, &file),
    ]);
    let mut stream = TcpStream::connect(("127.0.0.1", served.port)).unwrap();
    stream.write_all(&head(&served, body.len(), None)).unwrap();
    stream.write_all(&body[..2 << 20]).unwrap();
    // The file is being staged, then the client is gone.
    let deadline = Instant::now() + DEADLINE;
    while staged(&data).is_empty() {
        assert!(
            Instant::now() < deadline,
            "nothing staged within {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(stream);
    while !staged(&data).is_empty() {
        assert!(
            Instant::now() < deadline,
            "still staged {DEADLINE:?} after the hang-up: {:?}",
            staged(&data)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(served.list().is_empty(), "nothing queued");
    served.assert_up();
}

#[test]
fn the_upload_bound_is_the_outboxs_bound_on_an_emails_attachments() {
    assert_eq!(
        scan2x_mail_service::Config::DEFAULT_UPLOAD_LIMIT,
        scan2x_mail_outbox::Options::default().max_message_bytes
    );
}
