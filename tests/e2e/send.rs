//! `scan2x-mail send` against the test server: the message that arrives is the message that
//! was asked for — headers, non-ASCII text, bodies, attachment bytes, a hidden Bcc — and each
//! recipient's fate is reported and mapped to the documented exit codes.
//!
//! These tests must never send anywhere but the loopback test server.

use std::path::PathBuf;

use mail_parser::{Address, MimeHeaders};
use serde_json::Value;

use crate::support::ports::bindable;
use crate::support::say_skipped;
use crate::support::smtp_server::{Received, skip_without_aiosmtpd};
use crate::support::{
    FROM, PASSWORD, PASSWORD_ENV, Scan2xMail, SmtpSender, SmtpServer, SmtpServerOptions, USER,
};

const SUBJECT: &str = "Scan 📄 Prüfbericht für Jürgen – Größe ≈ 200 KB";
/// Non-ASCII, a lone dot line and a dot-led line: SMTP transparency must keep them.
const TEXT: &str = "Hallo Åsa,\n\nanbei der Scan.\n.\n.leading dot\nGrüße ✓\n";
const HTML: &str =
    "<html><body><p>Hallo Åsa,</p><p>anbei der <b>Scan</b>. Grüße ✓</p></body></html>\n";
const PDF_NAME: &str = "Prüfbericht März 2025.pdf";
const NOTE_NAME: &str = "notiz.txt";
const NOTE: &str = "a small second attachment\n";
const BCC: &str = "hidden-bcc@example.test";

fn server_options() -> SmtpServerOptions {
    SmtpServerOptions::new().starttls().user(USER, PASSWORD)
}

fn scan2x(sender: SmtpSender) -> Scan2xMail {
    Scan2xMail::new(&sender.toml())
        .env(PASSWORD_ENV, PASSWORD)
        .credentials(USER, PASSWORD)
}

/// ~200 KB that starts like a PDF and then holds every byte value, CR/LF and dot runs included.
fn binary_pdf() -> Vec<u8> {
    let mut bytes = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut x: u32 = 0x9e37_79b9;
    while bytes.len() < 200 * 1024 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        bytes.push((x >> 24) as u8);
        if bytes.len().is_multiple_of(4096) {
            bytes.extend_from_slice(b"\r\n.\r\n..\n\0");
        }
    }
    bytes.extend_from_slice(b"\n%%EOF\n");
    bytes
}

/// The message every "arrives intact" test sends, and what it should look like on arrival.
struct FullMessage {
    args: Vec<String>,
    attachments: Vec<(String, Vec<u8>)>,
}

fn full_message(mail: &Scan2xMail) -> FullMessage {
    let pdf = binary_pdf();
    let pdf_path = mail.write_file(PDF_NAME, &pdf);
    let note_path = mail.write_file(NOTE_NAME, NOTE);
    let html_path = mail.write_file("body.html", HTML);
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    let args = [
        "send",
        "--json",
        "--event",
        "job-output",
        "--to",
        "Åsa Öberg <asa@example.test>",
        "--to",
        "bo@example.test",
        "--cc",
        "Carl Cc <carl@example.test>",
        "--bcc",
        BCC,
        "--reply-to",
        "Scan Desk <desk@example.test>",
        "--subject",
        SUBJECT,
        "--text",
        TEXT,
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "--html-file".to_string(),
        path(html_path),
        "--attach".to_string(),
        path(pdf_path),
        "--attach".to_string(),
        path(note_path),
    ])
    .collect();
    FullMessage {
        args,
        attachments: vec![
            (PDF_NAME.to_string(), pdf),
            (NOTE_NAME.to_string(), NOTE.as_bytes().to_vec()),
        ],
    }
}

fn addresses(address: Option<&Address<'_>>) -> Vec<(Option<String>, String)> {
    address
        .map(|a| {
            a.iter()
                .map(|addr| {
                    (
                        addr.name().map(str::to_string),
                        addr.address().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn normalized(text: &str) -> String {
    text.replace("\r\n", "\n").trim_end().to_string()
}

fn strings(value: &Value) -> Vec<String> {
    let mut list: Vec<String> = value
        .as_array()
        .unwrap_or_else(|| panic!("expected a JSON list, got {value}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    list.sort();
    list
}

/// Everything the "arrives intact" claims check, for any transport.
fn assert_arrived_intact(sent: &FullMessage, json: &Value, received: &Received) {
    let mut all_rcpts = vec![
        "asa@example.test".to_string(),
        "bo@example.test".to_string(),
        "carl@example.test".to_string(),
        BCC.to_string(),
    ];
    all_rcpts.sort();

    // What the binary reported.
    assert_eq!(json["sender"], "relay", "{json}");
    assert_eq!(json["plugin"], "smtp", "{json}");
    assert_eq!(strings(&json["receipt"]["accepted"]), all_rcpts, "{json}");
    assert_eq!(json["receipt"]["refused"], Value::Array(vec![]), "{json}");

    // The envelope.
    assert_eq!(received.mail_from, FROM);
    let mut rcpts = received.rcpt_tos.clone();
    rcpts.sort();
    assert_eq!(
        rcpts, all_rcpts,
        "every recipient, Bcc included, is in the envelope"
    );
    assert_eq!(received.auth_user.as_deref(), Some(USER));

    // The message.
    let message = received.parsed();
    assert_eq!(
        addresses(message.from()),
        vec![(None, FROM.to_string())],
        "From is the sender's email_address"
    );
    assert_eq!(
        addresses(message.to()),
        vec![
            (
                Some("Åsa Öberg".to_string()),
                "asa@example.test".to_string()
            ),
            (None, "bo@example.test".to_string()),
        ]
    );
    assert_eq!(
        addresses(message.cc()),
        vec![(Some("Carl Cc".to_string()), "carl@example.test".to_string())]
    );
    assert_eq!(
        addresses(message.reply_to()),
        vec![(
            Some("Scan Desk".to_string()),
            "desk@example.test".to_string()
        )]
    );
    assert_eq!(message.subject(), Some(SUBJECT));
    assert_eq!(
        message.body_text(0).map(|t| normalized(&t)),
        Some(normalized(TEXT)),
        "the text body"
    );
    assert_eq!(
        message.body_html(0).map(|t| normalized(&t)),
        Some(normalized(HTML)),
        "the HTML body"
    );
    let attachments: Vec<(String, Vec<u8>)> = message
        .attachments()
        .map(|part| {
            (
                part.attachment_name().unwrap_or_default().to_string(),
                part.contents().to_vec(),
            )
        })
        .collect();
    assert_eq!(
        attachments.len(),
        sent.attachments.len(),
        "attachment count"
    );
    for ((name, bytes), (sent_name, sent_bytes)) in attachments.iter().zip(&sent.attachments) {
        assert_eq!(name, sent_name, "attachment file name");
        assert!(
            bytes == sent_bytes,
            "the bytes of {sent_name} changed on the way ({} bytes sent, {} received)",
            sent_bytes.len(),
            bytes.len()
        );
    }

    // Bcc: in the envelope (above), in no header and nowhere in the message.
    assert!(message.bcc().is_none(), "a Bcc header was sent");
    assert!(
        !String::from_utf8_lossy(&received.eml).contains("hidden-bcc"),
        "the Bcc address appears in the message"
    );

    // The Message-ID the binary reported is the one in the header.
    let reported = json["message_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no message_id in {json}"));
    assert_eq!(
        message.message_id(),
        Some(reported.trim_start_matches('<').trim_end_matches('>')),
        "Message-ID header vs --json message_id"
    );
}

#[test]
fn message_sent_over_starttls_arrives_intact() {
    let test = "message_sent_over_starttls_arrives_intact";
    let Some(server) = SmtpServer::start_or_skip(test, server_options()) else {
        return;
    };
    // At trace, so the leak check reads all the host can say about an SMTP session.
    let mail =
        scan2x(SmtpSender::new(server.starttls_port()).ca_file(&server.ca_file())).at_trace();
    let sent = full_message(&mail);

    let run = mail.run(&sent.args);
    run.assert_traced();
    run.assert_code(0);
    let received = server.only_received();
    assert_eq!(received.port, server.starttls_port());
    assert_arrived_intact(&sent, &run.json(), &received);

    // Credentials and mail went only over TLS, and TLS came from STARTTLS on this port.
    let commands = server.commands_on(server.starttls_port());
    let log = server.commands_text();
    assert!(
        commands.iter().any(|c| c.verb() == "STARTTLS" && !c.tls),
        "no STARTTLS:\n{log}"
    );
    assert!(
        commands.iter().any(|c| c.verb() == "AUTH" && c.tls),
        "no AUTH over TLS:\n{log}"
    );
    assert!(
        commands.iter().all(|c| c.tls || !c.is_auth_or_mail()),
        "AUTH or mail commands in clear:\n{log}"
    );
}

/// A host that limits address space (`ulimit -v`) can't give the engine its memory pool, which
/// reserves terabytes of it up front; the engine then maps each call's memory on its own.
#[test]
fn a_send_works_when_the_address_space_is_limited() {
    let test = "a_send_works_when_the_address_space_is_limited";
    let Some(server) = SmtpServer::start_or_skip(test, server_options()) else {
        return;
    };
    // 4 GiB: far below the pool's reservation, above what one process needs.
    let mail = scan2x(SmtpSender::new(server.starttls_port()).ca_file(&server.ca_file()))
        .address_space_kib(4 << 20);
    let sent = full_message(&mail);
    let run = mail.run(&sent.args);
    run.assert_code(0);
    assert_arrived_intact(&sent, &run.json(), &server.only_received());
}

#[test]
fn message_sent_over_implicit_tls_arrives_intact() {
    let test = "message_sent_over_implicit_tls_arrives_intact";
    let _port = crate::support::ports::hold(465);
    // The SMTP plugin uses implicit TLS for port 465 only (RFC 8314's submissions port), so the
    // server must sit on exactly 465.
    let skip = |why: &str| {
        say_skipped(
            test,
            &format!("127.0.0.1:465 {why}; the SMTP plugin chooses implicit TLS only on port 465"),
        )
    };
    if bindable(465).is_none() {
        return skip("can't be bound here (taken, or binding it needs privileges)");
    }
    if skip_without_aiosmtpd(test) {
        return;
    }
    let server = match SmtpServer::start(server_options().smtps_on(465)) {
        Ok(server) => server,
        Err(e) if e.contains("address already in use") => {
            return skip("was taken by another process just now");
        }
        Err(e) => panic!("{test}: {e}"),
    };
    let mail = scan2x(SmtpSender::new(server.smtps_port()).ca_file(&server.ca_file()));
    let sent = full_message(&mail);

    let run = mail.run(&sent.args);
    run.assert_code(0);
    let received = server.only_received();
    assert_eq!(received.port, 465);
    assert_arrived_intact(&sent, &run.json(), &received);

    let commands = server.commands_on(465);
    let log = server.commands_text();
    assert!(!commands.is_empty(), "nothing was said on port 465");
    assert!(
        commands.iter().all(|c| c.tls),
        "a command in clear on the implicit-TLS port:\n{log}"
    );
    assert!(
        commands.iter().all(|c| c.verb() != "STARTTLS"),
        "STARTTLS on an implicit-TLS connection:\n{log}"
    );
}

#[test]
fn refused_recipient_is_reported_for_good_while_the_others_receive_the_message() {
    let test = "refused_recipient_is_reported_for_good_while_the_others_receive_the_message";
    let Some(server) = SmtpServer::start_or_skip(test, server_options()) else {
        return;
    };
    let mail = scan2x(SmtpSender::new(server.starttls_port()).ca_file(&server.ca_file()));

    let run = mail.run([
        "send",
        "--json",
        "--to",
        "good@example.test",
        "--to",
        "nobody@refused.test",
        "--subject",
        "partly refused",
        "--text",
        "hello",
    ]);
    run.assert_code(11);
    let json = run.json();
    assert_eq!(json["outcome"], "partly-sent-refused-for-good", "{json}");
    let receipt = &json["receipt"];
    assert_eq!(
        strings(&receipt["accepted"]),
        ["good@example.test"],
        "{json}"
    );
    let refused = receipt["refused"]
        .as_array()
        .unwrap_or_else(|| panic!("no refused list in {json}"));
    assert_eq!(refused.len(), 1, "{json}");
    assert_eq!(refused[0]["address"], "nobody@refused.test", "{json}");
    assert_eq!(refused[0]["for_now"], false, "{json}");
    let reason = refused[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("550"),
        "the reason should carry the server's 550: {json}"
    );
    assert!(
        run.stderr.contains(
            "partly sent: sent to good@example.test; refused for good: nobody@refused.test"
        ),
        "one line on stderr says what happened: {run}"
    );

    let received = server.only_received();
    assert_eq!(received.rcpt_tos, ["good@example.test"]);
}

#[test]
fn recipients_refused_for_now_are_told_apart_from_those_refused_for_good() {
    let test = "recipients_refused_for_now_are_told_apart_from_those_refused_for_good";
    let Some(server) = SmtpServer::start_or_skip(test, server_options()) else {
        return;
    };
    let mail = scan2x(SmtpSender::new(server.starttls_port()).ca_file(&server.ca_file()));
    let args = |json: bool| {
        let mut args = vec![
            "send",
            "--to",
            "good@example.test",
            "--to",
            "nobody@refused.test",
            "--cc",
            "later@tempfail.test",
            "--subject",
            "partly",
            "--text",
            "hello",
        ];
        if json {
            args.insert(1, "--json");
        }
        args
    };

    let run = mail.run(args(true));
    run.assert_code(10);
    let json = run.json();
    assert_eq!(json["outcome"], "partly-sent-refused-for-now", "{json}");
    let refused: Vec<(String, bool)> = json["receipt"]["refused"]
        .as_array()
        .unwrap_or_else(|| panic!("no refused list in {json}"))
        .iter()
        .map(|r| {
            (
                r["address"].as_str().unwrap().to_string(),
                r["for_now"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        refused,
        [
            ("nobody@refused.test".to_string(), false),
            ("later@tempfail.test".to_string(), true)
        ],
        "{json}"
    );
    assert!(
        run.stderr
            .contains("refused for now: later@tempfail.test: send it again later to just those"),
        "{run}"
    );

    let run = mail.run(args(false));
    run.assert_code(10);
    assert!(
        run.stdout
            .contains("  refused for good: nobody@refused.test (")
            && run
                .stdout
                .contains("  refused for now: later@tempfail.test ("),
        "{run}"
    );
    let received = server.received();
    assert_eq!(received.len(), 2, "one message per run");
    assert!(
        received.iter().all(|m| m.rcpt_tos == ["good@example.test"]),
        "only the accepted recipient received it"
    );
}

#[test]
fn all_recipients_refused_is_a_permanent_rejection() {
    let test = "all_recipients_refused_is_a_permanent_rejection";
    let Some(server) = SmtpServer::start_or_skip(test, server_options()) else {
        return;
    };
    let mail = scan2x(SmtpSender::new(server.starttls_port()).ca_file(&server.ca_file()));

    let run = mail.run([
        "send",
        "--json",
        "--to",
        "nobody@refused.test",
        "--subject",
        "refused",
        "--text",
        "hello",
    ]);
    run.assert_code(6);
    let json = run.json();
    assert_eq!(json["sender"], "relay", "{json}");
    assert_eq!(json["error"]["kind"], "rejected", "{json}");
    assert!(server.received().is_empty(), "a refused message was stored");
}

#[test]
fn temporarily_refused_recipient_is_a_temporary_failure() {
    let test = "temporarily_refused_recipient_is_a_temporary_failure";
    let Some(server) = SmtpServer::start_or_skip(test, server_options()) else {
        return;
    };
    let mail = scan2x(SmtpSender::new(server.starttls_port()).ca_file(&server.ca_file()));

    let run = mail.run([
        "send",
        "--json",
        "--to",
        "later@tempfail.test",
        "--subject",
        "try later",
        "--text",
        "hello",
    ]);
    run.assert_code(7);
    assert_eq!(run.json()["error"]["kind"], "temporary", "{run}");
    assert!(server.received().is_empty(), "a refused message was stored");
}

#[test]
fn unreadable_attachment_is_a_message_error_and_nothing_is_sent() {
    let test = "unreadable_attachment_is_a_message_error_and_nothing_is_sent";
    let Some(server) = SmtpServer::start_or_skip(test, server_options()) else {
        return;
    };
    let mail = scan2x(SmtpSender::new(server.starttls_port()).ca_file(&server.ca_file()));
    let missing = mail.dir().join("no-such-scan.pdf");
    let missing = missing.to_string_lossy();

    let run = mail.run([
        "send",
        "--to",
        "good@example.test",
        "--subject",
        "missing file",
        "--text",
        "hello",
        "--attach",
        &missing,
    ]);
    run.assert_code(4);
    assert!(server.received().is_empty(), "a message was sent anyway");
}

#[test]
fn an_attachment_that_is_no_regular_file_is_refused_at_once() {
    let mail = scan2x(SmtpSender::new(9));
    let fifo = mail.dir().join("scan.pdf");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo failed");
    for path in [fifo.as_path(), std::path::Path::new("/dev/zero")] {
        let started = std::time::Instant::now();
        let run = mail.run([
            "send",
            "--to",
            "a@example.test",
            "--subject",
            "s",
            "--text",
            "t",
            "--attach",
            path.to_str().unwrap(),
        ]);
        run.assert_code(4);
        assert!(run.stderr.contains("not a regular file"), "{run}");
        // Loosely: a FIFO used to block forever, /dev/zero to fill memory.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{run}"
        );
    }
}
