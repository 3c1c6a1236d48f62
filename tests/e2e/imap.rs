//! The IMAP sender against a real Dovecot on loopback: `send` places the message, composed as
//! the SMTP sender composes it, in the right folder of the account — flagged \Seen, headers,
//! bodies and attachment bytes intact — over implicit TLS (993) and over STARTTLS; the default
//! folder is the one the server marks \Sent, whatever its name; and each failure (wrong
//! password, missing folder, no STARTTLS) has its exit code, says what to fix, and sends no
//! credentials it must not.
//!
//! These tests must never reach anything but the loopback Dovecot they start.

use std::path::{Path, PathBuf};
use std::time::Instant;

use mail_parser::{Address, MimeHeaders};
use serde_json::Value;

use crate::support::dovecot::{
    DECOY_SENT, Dovecot, DovecotOptions, OUTBOX, SENT_FOLDER, Stored, skip_without_dovecot,
};
use crate::support::ports::bindable;
use crate::support::{Scan2xMail, say_skipped, toml_string};

const USER: &str = "alice";
/// Distinctive, so a leak can't be a coincidence.
const PASSWORD: &str = "imap-e2e-Pa55-w0rd-Zq";
const PASSWORD_ENV: &str = "IMAP_PASSWORD";
const FROM: &str = "scanner@example.test";
const SUBJECT: &str = "Scan 📄 Prüfbericht für Jürgen – IMAP";
const TEXT: &str = "Hallo Åsa,\n\nanbei der Scan.\n.\n.leading dot\nGrüße ✓\n";
const HTML: &str = "<html><body><p>Hallo Åsa,</p><p>anbei der <b>Scan</b>.</p></body></html>\n";
const PDF_NAME: &str = "Prüfbericht März 2025.pdf";
const NOTE_NAME: &str = "notiz.txt";
const NOTE: &str = "a small second attachment\n";

/// The settings of one IMAP sender, in the product's words.
#[derive(Clone, Debug)]
struct ImapSender {
    port: u16,
    ca_file: PathBuf,
    password: String,
    mailbox: Option<String>,
    create_mailbox: bool,
}

impl ImapSender {
    fn new(port: u16, ca_file: &Path) -> Self {
        ImapSender {
            port,
            ca_file: ca_file.to_path_buf(),
            password: PASSWORD.to_string(),
            mailbox: None,
            create_mailbox: false,
        }
    }

    fn mailbox(mut self, folder: &str) -> Self {
        self.mailbox = Some(folder.to_string());
        self
    }

    fn create_mailbox(mut self) -> Self {
        self.create_mailbox = true;
        self
    }

    fn password(mut self, password: &str) -> Self {
        self.password = password.to_string();
        self
    }

    /// The settings file and a runner whose output is checked for the password (the one set
    /// and the right one).
    fn scan2x(&self) -> Scan2xMail {
        let mut toml = format!(
            "[senders.mailbox]\nplugin = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\n\
             enable_ssl = true\nusername = {}\npassword = {{ env = {} }}\nfrom_email = {}\n\
             ca_file = {}\ncreate_mailbox = {}\n",
            self.port,
            toml_string(USER),
            toml_string(PASSWORD_ENV),
            toml_string(FROM),
            toml_string(&self.ca_file.to_string_lossy()),
            self.create_mailbox,
        );
        if let Some(folder) = &self.mailbox {
            toml += &format!("mailbox = {}\n", toml_string(folder));
        }
        Scan2xMail::new(&toml)
            .env(PASSWORD_ENV, &self.password)
            .credentials(USER, &self.password)
            .credentials(USER, PASSWORD)
    }
}

fn options() -> DovecotOptions {
    DovecotOptions::new().user(USER, PASSWORD)
}

/// `len` bytes that start like a PDF and then hold every byte value, CR/LF and dot runs.
fn binary_pdf(len: usize) -> Vec<u8> {
    let mut bytes = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut x: u32 = 0x9e37_79b9;
    while bytes.len() < len {
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

/// The command line of a full message and the attachments it carries.
struct FullMessage {
    args: Vec<String>,
    attachments: Vec<(String, Vec<u8>)>,
}

fn full_message(mail: &Scan2xMail, pdf_len: usize) -> FullMessage {
    let pdf = binary_pdf(pdf_len);
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    let pdf_path = path(mail.write_file(PDF_NAME, &pdf));
    let note_path = path(mail.write_file(NOTE_NAME, NOTE));
    let html_path = path(mail.write_file("body.html", HTML));
    let args = [
        "send",
        "--json",
        "--event",
        "job-output",
        "--to",
        "Åsa Öberg <asa@example.test>",
        "--cc",
        "Carl Cc <carl@example.test>",
        "--bcc",
        "hidden-bcc@example.test",
        "--reply-to",
        "Scan Desk <desk@example.test>",
        "--subject",
        SUBJECT,
        "--text",
        TEXT,
        "--html-file",
        &html_path,
        "--attach",
        &pdf_path,
        "--attach",
        &note_path,
    ]
    .iter()
    .map(|s| s.to_string())
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

/// Everything the "placed intact" claims check, for any way of connecting.
fn assert_placed_intact(sent: &FullMessage, json: &Value, stored: &Stored, folder: &str) {
    assert_eq!(json["sender"], "mailbox", "{json}");
    assert_eq!(json["plugin"], "imap", "{json}");
    // Honest receipt: no recipient "accepted" it; it is in a folder of the account.
    assert_eq!(json["receipt"]["accepted"], Value::Array(vec![]), "{json}");
    let detail = json["receipt"]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(&format!("{folder:?}")), "{json}");
    assert!(detail.contains("IMAP delivers to no one else"), "{json}");
    // Dovecot has UIDPLUS: the receipt carries the UID, and it names the stored message.
    let uid = json["receipt"]["provider_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no provider_id (UID) in {json}"));
    assert!(uid.parse::<u32>().is_ok_and(|uid| uid > 0), "{json}");
    assert!(detail.contains(&format!("UID {uid}")), "{json}");

    assert!(
        stored.seen(),
        "the message is not flagged \\Seen: {}",
        stored.path.display()
    );
    let message = stored.parsed();
    assert_eq!(addresses(message.from()), vec![(None, FROM.to_string())]);
    assert_eq!(
        addresses(message.to()),
        vec![(
            Some("Åsa Öberg".to_string()),
            "asa@example.test".to_string()
        )]
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
    assert!(message.date().is_some(), "no Date header");
    assert_eq!(
        message.body_text(0).map(|t| normalized(&t)),
        Some(normalized(TEXT))
    );
    assert_eq!(
        message.body_html(0).map(|t| normalized(&t)),
        Some(normalized(HTML))
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
            "the bytes of {sent_name} changed on the way ({} bytes sent, {} stored)",
            sent_bytes.len(),
            bytes.len()
        );
    }
    // As with SMTP, Bcc appears in no header.
    assert!(message.bcc().is_none(), "a Bcc header was stored");
    assert!(!String::from_utf8_lossy(&stored.eml).contains("hidden-bcc"));
    let reported = json["message_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no message_id in {json}"));
    assert_eq!(
        message.message_id(),
        Some(reported.trim_start_matches('<').trim_end_matches('>')),
        "Message-ID header vs --json message_id"
    );
}

/// The lines of Dovecot's log that record a successful login.
fn logins(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("Login: user=<"))
        .collect()
}

#[test]
fn message_placed_over_starttls_lands_intact_and_seen_in_the_folder_marked_sent() {
    let test = "message_placed_over_starttls_lands_intact_and_seen_in_the_folder_marked_sent";
    let Some(dovecot) = Dovecot::start_or_skip(test, options()) else {
        return;
    };
    // At trace, so the leak check reads all the host can say about an IMAP session.
    let mail = ImapSender::new(dovecot.starttls_port(), &dovecot.ca_file())
        .scan2x()
        .at_trace();
    let sent = full_message(&mail, 200 * 1024);

    let run = mail.run(&sent.args);
    run.assert_traced();
    run.assert_code(0);
    let stored = dovecot.only_stored(USER, SENT_FOLDER);
    assert_placed_intact(&sent, &run.json(), &stored, SENT_FOLDER);
    // SPECIAL-USE, not the name: the folder literally named "Sent" got nothing.
    assert!(dovecot.stored(USER, DECOY_SENT).is_empty());
    assert!(dovecot.stored(USER, "INBOX").is_empty());

    // One login, with AUTHENTICATE PLAIN, over TLS (Dovecot notes TLS on the login line).
    let log = dovecot.log();
    let logins = logins(&log);
    assert_eq!(logins.len(), 1, "{log}");
    assert!(
        logins[0].contains("method=PLAIN") && logins[0].contains("TLS"),
        "not PLAIN over TLS: {}",
        logins[0]
    );
}

#[test]
fn message_placed_over_implicit_tls_on_993_lands_intact_and_seen() {
    let test = "message_placed_over_implicit_tls_on_993_lands_intact_and_seen";
    let _port = crate::support::ports::hold(993);
    // The IMAP plugin uses implicit TLS on port 993 only, so the server must sit on 993.
    let skip = |why: &str| {
        say_skipped(
            test,
            &format!("127.0.0.1:993 {why}; the IMAP plugin chooses implicit TLS only on port 993"),
        )
    };
    if bindable(993).is_none() {
        return skip("can't be bound here (taken, or binding it needs privileges)");
    }
    if skip_without_dovecot(test) {
        return;
    }
    let dovecot = match Dovecot::start(options().implicit_tls_on(993)) {
        Ok(dovecot) => dovecot,
        Err(e) if e.contains("Address already in use") || e.contains("address already in use") => {
            return skip("was taken by another process just now");
        }
        Err(e) => panic!("{test}: {e}"),
    };
    let mail = ImapSender::new(dovecot.implicit_tls_port(), &dovecot.ca_file()).scan2x();
    let sent = full_message(&mail, 200 * 1024);

    let run = mail.run(&sent.args);
    run.assert_code(0);
    let stored = dovecot.only_stored(USER, SENT_FOLDER);
    assert_placed_intact(&sent, &run.json(), &stored, SENT_FOLDER);

    let log = dovecot.log();
    let logins = logins(&log);
    assert_eq!(logins.len(), 1, "{log}");
    assert!(
        logins[0].contains("lport=993") || logins[0].contains("TLS"),
        "{}",
        logins[0]
    );
}

#[test]
fn twenty_megabyte_attachment_arrives_intact() {
    let test = "twenty_megabyte_attachment_arrives_intact";
    let Some(dovecot) = Dovecot::start_or_skip(test, options()) else {
        return;
    };
    let mail = ImapSender::new(dovecot.starttls_port(), &dovecot.ca_file()).scan2x();
    let sent = full_message(&mail, 20 * 1024 * 1024);

    let started = Instant::now();
    let run = mail.run(&sent.args);
    let took = started.elapsed();
    run.assert_code(0);
    let stored = dovecot.only_stored(USER, SENT_FOLDER);
    assert_placed_intact(&sent, &run.json(), &stored, SENT_FOLDER);
    // Written to the real stderr, so the number shows even when the test passes.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "MEASURED: {test}: 20 MiB attachment ({} bytes stored) placed in {took:.2?}, \
         binary start and plugin compilation included",
        stored.eml.len()
    );
}

#[test]
fn configured_folder_is_used_and_a_pin_request_goes_there_too() {
    let test = "configured_folder_is_used_and_a_pin_request_goes_there_too";
    let Some(dovecot) = Dovecot::start_or_skip(test, options()) else {
        return;
    };
    let mail = ImapSender::new(dovecot.starttls_port(), &dovecot.ca_file())
        .mailbox(OUTBOX)
        .scan2x();

    let run = mail.run([
        "send",
        "--json",
        "--event",
        "pin-request",
        "--to",
        "user@example.test",
        "--subject",
        "Your PIN",
        "--text",
        "PIN 4711",
    ]);
    run.assert_code(0);
    let json = run.json();
    assert!(
        json["receipt"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("\"Outbox\" (the mailbox setting)")),
        "{json}"
    );
    let stored = dovecot.only_stored(USER, OUTBOX);
    assert!(stored.seen());
    assert_eq!(stored.parsed().subject(), Some("Your PIN"));
    assert!(dovecot.stored(USER, SENT_FOLDER).is_empty());
}

#[test]
fn missing_folder_is_a_settings_error_naming_it_and_nothing_is_created() {
    let test = "missing_folder_is_a_settings_error_naming_it_and_nothing_is_created";
    let Some(dovecot) = Dovecot::start_or_skip(test, options()) else {
        return;
    };
    let folder = "Scans/Nowhere";
    let mail = ImapSender::new(dovecot.starttls_port(), &dovecot.ca_file())
        .mailbox(folder)
        .scan2x();

    let run = mail.run([
        "send",
        "--json",
        "--to",
        "a@example.test",
        "--subject",
        "x",
        "--text",
        "y",
    ]);
    run.assert_code(3);
    let json = run.json();
    assert_eq!(json["error"]["kind"], "invalid-settings", "{json}");
    let message = json["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("mailbox:"), "{json}");
    assert!(message.contains("\"Scans/Nowhere\""), "{json}");
    assert!(message.contains("TRYCREATE"), "the server's answer: {json}");
    assert!(message.contains("create_mailbox"), "the way out: {json}");
    assert!(
        !dovecot.maildir(USER, folder).exists(),
        "the folder was created"
    );

    // "Test" says the same before anything is sent.
    let run = mail.run(["test", "--json"]);
    run.assert_code(3);
    assert!(
        run.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("mailbox:") && m.contains("\"Scans/Nowhere\"")),
        "{run}"
    );
}

#[test]
fn missing_folder_is_created_when_create_mailbox_allows_it() {
    let test = "missing_folder_is_created_when_create_mailbox_allows_it";
    let Some(dovecot) = Dovecot::start_or_skip(test, options()) else {
        return;
    };
    let folder = "Scans/Archiv März";
    let mail = ImapSender::new(dovecot.starttls_port(), &dovecot.ca_file())
        .mailbox(folder)
        .create_mailbox()
        .scan2x();

    let run = mail.run(["test", "--json"]);
    run.assert_code(0);
    assert!(
        run.json()["detail"]
            .as_str()
            .is_some_and(|d| d.contains("will be created at the first send")),
        "{run}"
    );
    assert!(
        !dovecot.maildir(USER, folder).exists(),
        "`test` created the folder"
    );

    let run = mail.run([
        "send",
        "--json",
        "--to",
        "a@example.test",
        "--subject",
        "into a new folder",
        "--text",
        "y",
    ]);
    run.assert_code(0);
    assert!(
        run.json()["receipt"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("(folder created)")),
        "{run}"
    );
    // Dovecot keeps the name in modified UTF-7 on disk: "März" as "M&AOQ-rz".
    let stored = dovecot.only_stored(USER, "Scans/Archiv M&AOQ-rz");
    assert!(stored.seen());
    assert_eq!(stored.parsed().subject(), Some("into a new folder"));
}

#[test]
fn wrong_password_is_an_authentication_failure_and_never_printed() {
    let test = "wrong_password_is_an_authentication_failure_and_never_printed";
    let Some(dovecot) = Dovecot::start_or_skip(test, options()) else {
        return;
    };
    let wrong = "wrong-imap-Pa55-9Xk";
    let mail = ImapSender::new(dovecot.starttls_port(), &dovecot.ca_file())
        .password(wrong)
        .scan2x();

    // The runner fails the test if either password shows up, in clear or base64.
    let run = mail.run([
        "send",
        "--json",
        "--to",
        "a@example.test",
        "--subject",
        "x",
        "--text",
        "y",
    ]);
    run.assert_code(5);
    let json = run.json();
    assert_eq!(json["error"]["kind"], "auth-failed", "{json}");
    assert!(
        json["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("AUTHENTICATIONFAILED") && m.contains("password")),
        "{json}"
    );
    assert!(dovecot.stored(USER, SENT_FOLDER).is_empty());

    // With async-imap's own trace log on, which writes every command it sends, the password
    // still appears nowhere: async-imap never had it.
    let traced = ImapSender::new(dovecot.starttls_port(), &dovecot.ca_file())
        .password(wrong)
        .scan2x()
        .env("SCAN2X_MAIL_LOG", "async_imap=trace,scan2x_mail=trace");
    let run = traced.run(["test"]);
    run.assert_code(5);
    assert!(
        run.stderr.contains("AUTHENTICATE PLAIN"),
        "async-imap's command trace is not in the output, so this proves nothing: {run}"
    );
}

#[test]
fn starttls_required_but_not_offered_fails_without_sending_credentials() {
    let test = "starttls_required_but_not_offered_fails_without_sending_credentials";
    let Some(dovecot) = Dovecot::start_or_skip(test, options().plain_without_starttls()) else {
        return;
    };
    let mail = ImapSender::new(dovecot.plain_port(), &dovecot.ca_file()).scan2x();

    for args in [
        vec!["test", "--json"],
        vec![
            "send",
            "--json",
            "--to",
            "a@example.test",
            "--subject",
            "x",
            "--text",
            "y",
        ],
    ] {
        let run = mail.run(&args);
        run.assert_code(3);
        let json = run.json();
        assert_eq!(json["error"]["kind"], "invalid-settings", "{json}");
        let message = json["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("does not offer STARTTLS"), "{json}");
        assert!(message.contains("no credentials were sent"), "{json}");
    }
    // This server would have taken a login in clear; it saw connections, and no login attempt.
    let log = dovecot.plain_log();
    assert!(log.contains("no auth attempts"), "{log}");
    assert!(
        !log.contains(&format!("user=<{USER}>")),
        "a login reached the server: {log}"
    );
    assert!(dovecot.stored(USER, SENT_FOLDER).is_empty());
}

#[test]
fn test_logs_in_examines_the_sent_folder_and_places_nothing() {
    let test = "test_logs_in_examines_the_sent_folder_and_places_nothing";
    let Some(dovecot) = Dovecot::start_or_skip(test, options()) else {
        return;
    };
    let mail = ImapSender::new(dovecot.starttls_port(), &dovecot.ca_file()).scan2x();

    let run = mail.run(["test", "--json"]);
    run.assert_code(0);
    let json = run.json();
    let detail = json["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("STARTTLS"), "{json}");
    assert!(
        detail.contains("\"Sent Items\" (the server marks it \\Sent)"),
        "{json}"
    );
    assert!(detail.contains("holds 0 messages"), "{json}");
    assert!(detail.ends_with("no mail placed"), "{json}");
    let log = dovecot.log();
    assert_eq!(logins(&log).len(), 1, "{log}");
    for folder in [SENT_FOLDER, DECOY_SENT, OUTBOX, "INBOX"] {
        assert!(dovecot.stored(USER, folder).is_empty(), "{folder}");
    }
}
