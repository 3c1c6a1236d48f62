//! The Microsoft Graph sender against the Graph stand-in (`tests/servers/graph_server.py`): what
//! the real binary and the built-in plugin send is what the stand-in, checking Microsoft's
//! documented shapes, received — small messages in one sendMail, a 30 MB scan through an upload
//! session, recipients of every kind, non-ASCII text — and each of Microsoft's refusals ends in
//! its documented kind and exit code, with the client secret in no output.
//!
//! Two claims need one process for many sends or a gate narrower than the settings give; they
//! use the library (`scan2x_mail::runtime::Runtime`) directly, with the same built-in plugin.
//!
//! These tests must never talk to anything but the stand-in on 127.0.0.1.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use crate::support::Scan2xMail;
use crate::support::graph_server::{
    CLIENT_SECRET, CLIENT_SECRET_ENV, GraphSender, GraphServer, MAILBOX, NO_MAILBOX, SEND_AS,
};

const SUBJECT: &str = "Scan 📄 Prüfbericht für Jürgen – Größe ≈ 200 KB";
const TEXT: &str = "Hallo Åsa,\n\nanbei der Scan.\nGrüße ✓\n";
const HTML: &str =
    "<html><body><p>Hallo Åsa,</p><p>anbei der <b>Scan</b>. Grüße ✓</p></body></html>\n";
const PDF_NAME: &str = "Prüfbericht März 2025.pdf";
const NOTE_NAME: &str = "notiz – ü.txt";
const NOTE: &str = "a small second attachment\n";

fn scan2x(sender: &GraphSender) -> Scan2xMail {
    Scan2xMail::new(&sender.toml())
        .secrets_issued_in(sender.issued_secrets.clone())
        .env(CLIENT_SECRET_ENV, CLIENT_SECRET)
        .secret(CLIENT_SECRET)
}

/// `len` bytes that look like nothing in particular: every byte value, no repeating pattern.
fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn error_of(json: &Value) -> (&str, &str) {
    (
        json["error"]["kind"].as_str().unwrap_or_default(),
        json["error"]["message"].as_str().unwrap_or_default(),
    )
}

#[test]
fn a_small_message_with_attachments_goes_out_in_one_sendmail_intact() {
    let server = GraphServer::start();
    let sender = GraphSender::new(&server);
    let mail = scan2x(&sender);
    let pdf = noise(200 * 1024, 7);
    let pdf_path = mail.write_file(PDF_NAME, &pdf);
    let note_path = mail.write_file(NOTE_NAME, NOTE);
    let html_path = mail.write_file("body.html", HTML);
    // -vv: the debug log is checked for the secret too.
    let mut a = args(&[
        "-vv",
        "send",
        "--json",
        "--to",
        "Åsa Öberg <asa@example.test>",
        "--to",
        "bo@example.test",
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
    ]);
    a.extend(["--html-file".into(), path(&html_path)]);
    a.extend(["--attach".into(), path(&pdf_path)]);
    a.extend(["--attach".into(), path(&note_path)]);
    let run = mail.run(&a);
    run.assert_code(0);
    let json = run.json();
    assert_eq!(json["plugin"], "graph", "{run}");
    assert!(
        json["receipt"]["detail"].as_str().unwrap().contains("202"),
        "{run}"
    );
    let mut accepted: Vec<&str> = json["receipt"]["accepted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    accepted.sort();
    assert_eq!(
        accepted,
        [
            "asa@example.test",
            "bo@example.test",
            "carl@example.test",
            "hidden-bcc@example.test"
        ]
    );

    let sent = server.only_sent();
    assert_eq!(sent.user, MAILBOX);
    assert_eq!(sent.via, "sendMail", "{}", server.requests_text());
    let m = &sent.message;
    assert_eq!(m["subject"], SUBJECT);
    // Graph takes one body: the HTML one.
    assert_eq!(m["body"]["contentType"], "HTML");
    assert_eq!(m["body"]["content"], HTML);
    assert_eq!(
        sent.addresses("toRecipients"),
        vec![
            (Some("Åsa Öberg".into()), "asa@example.test".into()),
            (None, "bo@example.test".into())
        ]
    );
    assert_eq!(
        sent.addresses("ccRecipients"),
        vec![(Some("Carl Cc".into()), "carl@example.test".into())]
    );
    assert_eq!(
        sent.addresses("bccRecipients"),
        vec![(None, "hidden-bcc@example.test".into())]
    );
    assert_eq!(
        sent.addresses("replyTo"),
        vec![(Some("Scan Desk".into()), "desk@example.test".into())]
    );
    assert_eq!(
        m["internetMessageId"],
        format!("<{}>", json["message_id"].as_str().unwrap())
    );
    assert!(
        m.get("from").is_none(),
        "no from_email: the mailbox's own address"
    );
    let names: Vec<(&str, &str, &str)> = sent
        .attachments
        .iter()
        .map(|a| {
            (
                a.name.as_str(),
                a.content_type.as_deref().unwrap_or(""),
                a.how.as_str(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            (PDF_NAME, "application/pdf", "inline"),
            (NOTE_NAME, "text/plain", "inline")
        ]
    );
    assert!(sent.attachments[0].bytes == pdf, "the PDF's bytes differ");
    assert_eq!(sent.attachments[1].bytes, NOTE.as_bytes());
    // One token, one sendMail, nothing else.
    let ops: Vec<String> = server.requests().into_iter().map(|r| r.op).collect();
    assert_eq!(ops, ["token", "sendMail"]);
}

#[test]
fn a_30_mb_scan_goes_through_an_upload_session_and_arrives_byte_for_byte() {
    let server = GraphServer::start();
    let sender = GraphSender::new(&server);
    // At trace: the token, the draft, the upload session and its authtoken all pass through
    // this run, and none may show in what the host can say.
    let mail = scan2x(&sender).at_trace();
    let scan = noise(30 * 1000 * 1000, 30);
    let scan_path = mail.write_file("Scan 30 MB – Größe.pdf", &scan);
    let note_path = mail.write_file(NOTE_NAME, NOTE);
    let mut a = args(&[
        "send",
        "--json",
        "--to",
        "asa@example.test",
        "--subject",
        SUBJECT,
        "--text",
        TEXT,
    ]);
    a.extend(["--attach".into(), path(&scan_path)]);
    a.extend(["--attach".into(), path(&note_path)]);
    let started = Instant::now();
    let run = mail.run(&a);
    let took = started.elapsed();
    run.assert_code(0);
    run.assert_traced();
    let issued = std::fs::read_to_string(&sender.issued_secrets).unwrap_or_default();
    assert!(
        issued.lines().count() >= 2,
        "a token and an upload authtoken were issued, so the leak check had them: {issued:?}"
    );
    crate::support::graph_server::say_measured(&format!(
        "30 MB attachment through Graph upload session (debug build): {:.2} s",
        took.as_secs_f64()
    ));

    let sent = server.only_sent();
    assert_eq!(sent.via, "draft");
    assert_eq!(sent.message["subject"], SUBJECT);
    assert_eq!(sent.attachments.len(), 2);
    let (big, small) = (&sent.attachments[1], &sent.attachments[0]);
    assert_eq!(
        (small.name.as_str(), small.how.as_str()),
        (NOTE_NAME, "posted")
    );
    assert_eq!(big.name, "Scan 30 MB – Größe.pdf");
    assert_eq!(big.how, "uploaded");
    assert_eq!(big.bytes.len(), scan.len());
    assert!(
        big.bytes == scan,
        "the reassembled upload differs from the file"
    );

    let requests = server.requests();
    let ops: Vec<&str> = requests
        .iter()
        .filter(|r| r.op != "upload")
        .map(|r| r.op.as_str())
        .collect();
    assert_eq!(
        ops,
        [
            "token",
            "createDraft",
            "addAttachment",
            "createUploadSession",
            "send"
        ]
    );
    let puts: Vec<u16> = requests
        .iter()
        .filter(|r| r.op == "upload")
        .map(|r| r.status)
        .collect();
    // Ranges of 3.75 MiB: 8 PUTs, the last one completes the session.
    assert_eq!(puts.len(), scan.len().div_ceil(12 * 320 * 1024));
    assert!(puts[..puts.len() - 1].iter().all(|s| *s == 200), "{puts:?}");
    assert_eq!(*puts.last().unwrap(), 201);
    assert!(
        requests
            .iter()
            .filter(|r| r.op == "upload")
            .all(|r| r.origin == "upload" && r.method == "PUT")
    );
}

#[test]
fn from_email_other_than_the_mailbox_is_sent_as_that_address() {
    let server = GraphServer::start();
    let mut sender = GraphSender::new(&server);
    sender.from_email = Some(SEND_AS.to_string());
    let run = scan2x(&sender).run([
        "send",
        "--to",
        "a@example.test",
        "--subject",
        "s",
        "--text",
        "t",
    ]);
    run.assert_code(0);
    let sent = server.only_sent();
    assert_eq!(
        sent.message["from"]["emailAddress"]["address"], SEND_AS,
        "{:?}",
        sent.message
    );
}

#[test]
fn sending_as_an_address_without_send_as_is_rejected_naming_from_email() {
    let server = GraphServer::start();
    let mut sender = GraphSender::new(&server);
    sender.from_email = Some("boss@contoso.example".to_string());
    let run = scan2x(&sender).run([
        "send",
        "--json",
        "--to",
        "a@example.test",
        "--subject",
        "s",
        "--text",
        "t",
    ]);
    run.assert_code(6);
    let json = run.json();
    let (kind, message) = error_of(&json);
    assert_eq!(kind, "rejected", "{run}");
    assert!(message.contains("ErrorSendAsDenied"), "{run}");
    assert!(message.contains("from_email"), "{run}");
    assert!(server.sent().is_empty());
}

#[test]
fn a_wrong_client_secret_is_auth_failed_naming_client_secret_and_never_shown() {
    let server = GraphServer::start();
    let wrong = "Wr0ng~client-secret.value";
    let mut sender = GraphSender::new(&server);
    sender.client_secret = crate::support::toml_string(wrong);
    let run = Scan2xMail::new(&sender.toml())
        .secrets_issued_in(sender.issued_secrets.clone())
        .secret(wrong)
        .secret(CLIENT_SECRET)
        .run([
            "-vv",
            "send",
            "--json",
            "--to",
            "a@example.test",
            "--subject",
            "s",
            "--text",
            "t",
        ]);
    run.assert_code(5);
    let json = run.json();
    let (kind, message) = error_of(&json);
    assert_eq!(kind, "auth-failed", "{run}");
    assert!(message.contains("client_secret"), "{run}");
    assert!(message.contains("AADSTS7000215"), "{run}");
    assert_eq!(server.count("token"), 1);
    assert_eq!(server.count("sendMail"), 0);
}

#[test]
fn an_unknown_tenant_is_a_settings_error_naming_tenant_id() {
    let server = GraphServer::start();
    let mut sender = GraphSender::new(&server);
    sender.tenant_id = "11111111-2222-4333-8444-555555555555".to_string();
    let run = scan2x(&sender).run([
        "send",
        "--json",
        "--to",
        "a@example.test",
        "--subject",
        "s",
        "--text",
        "t",
    ]);
    run.assert_code(3);
    let json = run.json();
    let (kind, message) = error_of(&json);
    assert_eq!(kind, "invalid-settings", "{run}");
    assert!(message.contains("tenant_id"), "{run}");
    assert!(message.contains("AADSTS90002"), "{run}");
}

#[test]
fn an_unknown_application_is_a_settings_error_naming_client_id() {
    let server = GraphServer::start();
    let mut sender = GraphSender::new(&server);
    sender.client_id = "99999999-8888-4777-8666-555555555555".to_string();
    let run = scan2x(&sender).run([
        "send",
        "--json",
        "--to",
        "a@example.test",
        "--subject",
        "s",
        "--text",
        "t",
    ]);
    run.assert_code(3);
    let json = run.json();
    let (kind, message) = error_of(&json);
    assert_eq!(kind, "invalid-settings", "{run}");
    assert!(message.contains("client_id"), "{run}");
    assert!(message.contains("AADSTS700016"), "{run}");
}

#[test]
fn a_mailbox_without_exchange_is_a_settings_error_naming_username() {
    let server = GraphServer::start();
    let mut sender = GraphSender::new(&server);
    sender.username = NO_MAILBOX.to_string();
    let run = scan2x(&sender).run([
        "send",
        "--json",
        "--to",
        "a@example.test",
        "--subject",
        "s",
        "--text",
        "t",
    ]);
    run.assert_code(3);
    let json = run.json();
    let (kind, message) = error_of(&json);
    assert_eq!(kind, "invalid-settings", "{run}");
    assert!(message.contains("username"), "{run}");
    assert!(message.contains("MailboxNotEnabledForRESTAPI"), "{run}");
    assert!(server.sent().is_empty());
}

#[test]
fn throttling_is_temporary_with_retry_after_and_the_callers_retry_goes_out() {
    let server = GraphServer::start();
    server.fail_next("sendMail", 429, "ApplicationThrottled", Some(7));
    let sender = GraphSender::new(&server);
    let mail = scan2x(&sender);
    let send = [
        "send",
        "--json",
        "--to",
        "a@example.test",
        "--subject",
        "s",
        "--text",
        "t",
    ];
    let first = mail.run(send);
    first.assert_code(7);
    let json = first.json();
    let (kind, message) = error_of(&json);
    assert_eq!(kind, "temporary", "{first}");
    assert!(message.contains("429"), "{first}");
    assert_eq!(json["error"]["retry_after_secs"], 7, "{first}");
    assert!(server.sent().is_empty());

    // Without --json, the wait is said in words too.
    server.fail_next("sendMail", 429, "ApplicationThrottled", Some(9));
    let words: Vec<&str> = send.iter().copied().filter(|a| *a != "--json").collect();
    let text = mail.run(words);
    text.assert_code(7);
    assert!(
        text.stderr
            .contains("the server asked to wait 9 s before trying again"),
        "{text}"
    );

    let second = mail.run(send);
    second.assert_code(0);
    assert_eq!(server.sent().len(), 1);
}

#[test]
fn a_sendmail_whose_answer_is_lost_is_uncertain_and_not_sent_again() {
    let server = GraphServer::start();
    server.lose_next_answer("sendMail", "close");
    let mail = scan2x(&GraphSender::new(&server));
    let run = mail.run([
        "send",
        "--json",
        "--to",
        "a@example.test",
        "--subject",
        "s",
        "--text",
        "t",
    ]);
    run.assert_code(9);
    let json = run.json();
    let (kind, message) = error_of(&json);
    assert_eq!(kind, "uncertain", "{run}");
    assert!(
        message.contains("the whole request POST")
            && message.contains("/sendMail was sent")
            && message.contains("may have been delivered"),
        "says what was handed over and that it may have arrived: {run}"
    );
    let message_id = json["message_id"].as_str().unwrap_or_default();
    assert!(
        !message_id.is_empty(),
        "the Message-ID is in the output: {run}"
    );
    assert_eq!(server.sent().len(), 1, "Graph did send it");
    let sends = server
        .requests()
        .iter()
        .filter(|r| r.op == "sendMail")
        .count();
    assert_eq!(sends, 1, "the host did not post it again");
    assert_eq!(
        server.sent()[0].message["internetMessageId"],
        format!("<{message_id}>"),
        "the Message-ID the caller was told is the one Graph sent"
    );
}

#[test]
fn an_upload_url_on_an_ungranted_origin_is_denied_by_the_host() {
    let server = GraphServer::start();
    let mut sender = GraphSender::new(&server);
    // Granted: Microsoft's Outlook origin (the default), not the stand-in's upload origin.
    sender.outlook_url = None;
    let mail = scan2x(&sender);
    let scan = mail.write_file("scan.pdf", noise(3_500_000, 3));
    let run = mail.run([
        "send",
        "--json",
        "--to",
        "a@example.test",
        "--subject",
        "s",
        "--text",
        "t",
        "--attach",
        &path(&scan),
    ]);
    run.assert_code(8);
    let json = run.json();
    let (kind, message) = error_of(&json);
    assert_eq!(kind, "denied", "{run}");
    assert!(message.contains(&server.outlook_url()), "{run}");
    assert!(message.contains("outlook_url"), "{run}");
    assert_eq!(server.count("upload"), 0, "{}", server.requests_text());
    // The unsent draft was cleaned up, and nothing was sent.
    assert_eq!(server.count("delete"), 1, "{}", server.requests_text());
    assert!(server.sent().is_empty());
}

#[test]
fn test_gets_a_token_and_reads_the_user_without_sending() {
    let server = GraphServer::start();
    let sender = GraphSender::new(&server);
    let run = scan2x(&sender).run(["test", "--json"]);
    run.assert_code(0);
    let json = run.json();
    assert_eq!(json["plugin"], "graph");
    let detail = json["detail"].as_str().unwrap();
    assert!(detail.contains(MAILBOX), "{run}");
    assert!(detail.contains("no mail sent"), "{run}");
    let ops: Vec<String> = server.requests().into_iter().map(|r| r.op).collect();
    assert_eq!(ops, ["token", "user"]);
}

#[test]
fn plugins_shows_the_graph_plugin_and_its_settings_table() {
    // A settings file with a Graph sender; `plugins` reads it but reaches no server.
    let toml = "[senders.office365]\nplugin = \"graph\"\ntenant_id = \"contoso.example\"\n\
                client_id = \"0b7b1a2c-3d4e-4f50-8a6b-7c8d9e0f1a2b\"\nclient_secret = \"x-secret\"\n\
                username = \"scanner@contoso.example\"\n";
    let mail = Scan2xMail::new(toml);
    let run = mail.run(["plugins", "--json"]);
    run.assert_code(0);
    let plugins = run.json();
    let graph = plugins
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "graph")
        .unwrap_or_else(|| panic!("no graph plugin in {run}"));
    assert_eq!(graph["label"], "Microsoft Graph");
    assert_eq!(graph["source"], "built-in");
    let keys: Vec<&str> = graph["settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "tenant_id",
            "client_id",
            "client_secret",
            "username",
            "from_email",
            "authority_url",
            "graph_url",
            "outlook_url"
        ]
    );
    assert_eq!(graph["settings"][2]["kind"], "secret");
    assert_eq!(
        graph["settings"][6]["default"],
        "https://graph.microsoft.com"
    );
    assert_eq!(
        graph["events"],
        serde_json::json!(["job-output", "saved-scan-copy", "pin-request"])
    );

    let text = mail.run(["plugins"]);
    text.assert_code(0);
    assert!(
        text.stdout.contains("graph 0.1.0 - Microsoft Graph"),
        "{text}"
    );
    assert!(
        text.stdout
            .lines()
            .any(|l| l.trim_start().starts_with("client_secret") && l.contains("secret")),
        "{text}"
    );
}

// --- the library, one process ----------------------------------------------------------------

mod in_process {
    use super::*;
    use scan2x_mail::capability::SenderContext;
    use scan2x_mail::gate::{Gate, Grant};
    use scan2x_mail::message::Email;
    use scan2x_mail::runtime::{CallError, Limits, Runtime, Sender};
    use scan2x_mail::settings::{PluginRef, Settings};
    use scan2x_mail::wit::types::{EventKind, Mailbox, SendError};

    /// A runtime with a private cache and the sender of `toml`, loaded as the binary would.
    async fn sender(dir: &Path, toml: &str) -> (Runtime, Sender) {
        let settings_path = dir.join("settings.toml");
        std::fs::write(&settings_path, toml).unwrap();
        let settings = Settings::load(&settings_path).unwrap_or_else(|e| panic!("{e}"));
        // A private key too, so the test never touches the user's own `~/.config`.
        let (cache, key) = (dir.join("cache"), dir.join("key").join("cache.key"));
        let cache = scan2x_mail::runtime::cache::ArtifactCache::open(Some(&cache), Some(&key));
        let runtime = Runtime::with_cache(cache, Limits::default()).unwrap();
        let plugin = runtime
            .load(&PluginRef::Builtin("graph".into()), None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let sender = scan2x_mail::senders::make(&runtime, &settings.senders[0], Arc::new(plugin))
            .unwrap_or_else(|e| panic!("{e}"));
        (runtime, sender)
    }

    fn message(n: usize) -> Email {
        Email {
            event: EventKind::JobOutput,
            message_id: format!("in-process-{n}@scan2x-mail"),
            from: None,
            to: vec![Mailbox {
                name: None,
                address: "a@example.test".into(),
            }],
            cc: vec![],
            bcc: vec![],
            reply_to: vec![],
            subject: format!("scan {n}"),
            text_body: Some("t".into()),
            html_body: None,
            attachments: vec![],
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn n_sends_in_one_process_ask_for_one_token() {
        let server = GraphServer::start();
        let dir = tempfile::tempdir().unwrap();
        let toml = GraphSender::new(&server).toml().replace(
            &format!("{{ env = \"{CLIENT_SECRET_ENV}\" }}"),
            &crate::support::toml_string(CLIENT_SECRET),
        );
        let (runtime, sender) = sender(dir.path(), &toml).await;
        const N: usize = 5;
        let started = Instant::now();
        for n in 0..N {
            runtime
                .send(&sender, &message(n))
                .await
                .unwrap_or_else(|e| panic!("send {n}: {e:?}\n{}", server.requests_text()));
        }
        crate::support::graph_server::say_measured(&format!(
            "{N} Graph sends in one process (one token, loopback, debug build): {:.1} ms each",
            started.elapsed().as_secs_f64() * 1000.0 / N as f64
        ));
        assert_eq!(server.sent().len(), N);
        assert_eq!(server.count("token"), 1, "{}", server.requests_text());
        assert_eq!(server.count("sendMail"), N);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_token_is_kept_only_until_shortly_before_it_expires() {
        // Tokens live 12 s here, so the sender keeps one for 6 s: the two sends that must share
        // it take a fraction of a second, with room for a busy machine.
        let server = GraphServer::start_with(12).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let toml = GraphSender::new(&server).toml().replace(
            &format!("{{ env = \"{CLIENT_SECRET_ENV}\" }}"),
            &crate::support::toml_string(CLIENT_SECRET),
        );
        let (runtime, sender) = sender(dir.path(), &toml).await;
        runtime.send(&sender, &message(0)).await.unwrap();
        runtime.send(&sender, &message(1)).await.unwrap();
        assert_eq!(server.count("token"), 1, "{}", server.requests_text());
        tokio::time::sleep(std::time::Duration::from_millis(6500)).await;
        runtime.send(&sender, &message(2)).await.unwrap();
        assert_eq!(server.count("token"), 2, "{}", server.requests_text());
        assert_eq!(server.sent().len(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_graph_url_the_sender_was_not_granted_is_denied_by_the_host() {
        let server = GraphServer::start();
        let dir = tempfile::tempdir().unwrap();
        let toml = GraphSender::new(&server).toml().replace(
            &format!("{{ env = \"{CLIENT_SECRET_ENV}\" }}"),
            &crate::support::toml_string(CLIENT_SECRET),
        );
        let (runtime, mut sender) = sender(dir.path(), &toml).await;
        // The same sender, granted everything but its graph_url's origin.
        let grants: Vec<Grant> = sender
            .context
            .gate
            .grants()
            .iter()
            .filter(|g| g.port != Some(server_port(&server.graph_url())))
            .cloned()
            .collect();
        assert_eq!(grants.len(), 2, "{grants:?}");
        sender.context = Arc::new(SenderContext {
            name: sender.context.name.clone(),
            gate: Gate::new(sender.context.name.clone(), grants),
            ca_pem: sender.context.ca_pem.clone(),
            secret_uses: sender.context.secret_uses.clone(),
            ..SenderContext::default()
        });
        let error = runtime.send(&sender, &message(0)).await.unwrap_err();
        match error {
            CallError::Plugin(SendError::Denied(m)) => {
                assert!(m.contains(&server.graph_url()), "{m}")
            }
            other => panic!("expected denied, got {other:?}"),
        }
        // The token was fetched (its origin is granted); Graph itself was never reached.
        assert_eq!(server.count("token"), 1, "{}", server.requests_text());
        assert!(
            server.requests().iter().all(|r| r.origin != "graph"),
            "{}",
            server.requests_text()
        );
    }

    fn server_port(url: &str) -> u16 {
        url.rsplit(':').next().unwrap().parse().unwrap()
    }
}

// --- the stand-in itself: it refuses what Graph refuses ---------------------------------------

mod stand_in {
    use super::*;
    use reqwest::{Client, StatusCode};
    use serde_json::json;

    /// The body as JSON; null when it is none.
    async fn json_of(response: reqwest::Response) -> Value {
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or_default()
    }

    fn client(server: &GraphServer) -> Client {
        crate::support::https_client(&server.ca_file())
    }

    async fn token_response(server: &GraphServer, scope: &str) -> reqwest::Response {
        let body = format!(
            "client_id={CLIENT_ID}&scope={}&client_secret={}&grant_type=client_credentials",
            scope.replace(':', "%3A").replace('/', "%2F"),
            CLIENT_SECRET.replace('~', "%7E")
        );
        client(server)
            .post(format!(
                "{}/{}/oauth2/v2.0/token",
                server.authority_url(),
                crate::support::graph_server::TENANT_ID
            ))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn token(server: &GraphServer) -> String {
        let scope = format!("{}/.default", server.graph_url());
        let response = token_response(server, &scope).await;
        assert_eq!(response.status(), StatusCode::OK);
        let v = json_of(response).await;
        v["access_token"].as_str().unwrap().to_string()
    }

    use crate::support::graph_server::CLIENT_ID;

    /// POST JSON to a path under the mailbox; the status and Graph's error code.
    async fn post(server: &GraphServer, token: &str, rest: &str, body: &Value) -> (u16, String) {
        let response = client(server)
            .post(format!("{}/v1.0/users/{MAILBOX}{rest}", server.graph_url()))
            .bearer_auth(token)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let v = json_of(response).await;
        (
            status,
            v["error"]["code"].as_str().unwrap_or_default().to_string(),
        )
    }

    fn message() -> Value {
        json!({
            "subject": "s",
            "body": {"contentType": "Text", "content": "t"},
            "toRecipients": [{"emailAddress": {"address": "a@example.test"}}],
        })
    }

    #[tokio::test]
    async fn it_refuses_a_message_property_graph_does_not_have() {
        let server = GraphServer::start();
        let token = token(&server).await;
        let mut m = message();
        m["toRecipient"] = m["toRecipients"].clone();
        let answer = post(&server, &token, "/sendMail", &json!({"message": m})).await;
        assert_eq!(answer, (400, "RequestBodyRead".to_string()));
        let answer = post(&server, &token, "/sendMail", &json!({"message": message()})).await;
        assert_eq!(answer.0, 202, "the well-formed message is taken");
    }

    #[tokio::test]
    async fn it_refuses_content_bytes_that_are_not_base64_and_unknown_attachment_types() {
        let server = GraphServer::start();
        let token = token(&server).await;
        for attachment in [
            json!({"@odata.type": "#microsoft.graph.fileAttachment", "name": "a", "contentBytes": "not base64!"}),
            json!({"@odata.type": "#microsoft.graph.fileAttachment", "name": "a", "contentBytes": "QUJD="}),
            json!({"name": "a", "contentBytes": "QUJD"}),
        ] {
            let mut m = message();
            m["attachments"] = json!([attachment]);
            let (status, code) = post(&server, &token, "/sendMail", &json!({"message": m})).await;
            assert_eq!(
                (status, code.as_str()),
                (400, "RequestBodyRead"),
                "{attachment}"
            );
        }
        assert!(server.sent().is_empty());
    }

    #[tokio::test]
    async fn it_refuses_missing_forged_and_expired_tokens() {
        let server = GraphServer::start_with(1).unwrap();
        let token = token(&server).await;
        let mut forged = token.clone();
        forged.pop();
        forged.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(
            post(&server, "", "/sendMail", &json!({"message": message()})).await,
            (401, "InvalidAuthenticationToken".to_string())
        );
        assert_eq!(
            post(
                &server,
                &forged,
                "/sendMail",
                &json!({"message": message()})
            )
            .await,
            (401, "InvalidAuthenticationToken".to_string())
        );
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
        assert_eq!(
            post(&server, &token, "/sendMail", &json!({"message": message()})).await,
            (401, "InvalidAuthenticationToken".to_string())
        );
        assert!(server.sent().is_empty());
    }

    #[tokio::test]
    async fn it_refuses_a_scope_that_is_not_its_own_graph_default() {
        let server = GraphServer::start();
        let response = token_response(&server, "https://graph.microsoft.com/.default").await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let v = json_of(response).await;
        assert_eq!(v["error_codes"][0], 500011);
        let response = token_response(&server, &server.graph_url()).await;
        let v = json_of(response).await;
        assert_eq!(v["error_codes"][0], 1002012);
    }

    #[tokio::test]
    async fn it_refuses_requests_over_4_mib_and_posts_without_a_length() {
        let server = GraphServer::start();
        let token = token(&server).await;
        let mut m = message();
        m["body"]["content"] = json!("x".repeat(4 * 1024 * 1024));
        let (status, _) = post(&server, &token, "/sendMail", &json!({"message": m})).await;
        assert_eq!(status, 413);
        let response = client(&server)
            .post(format!(
                "{}/v1.0/users/{MAILBOX}/messages/x/send",
                server.graph_url()
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 411);
    }

    #[tokio::test]
    async fn it_checks_upload_sessions_sizes_headers_and_range_arithmetic() {
        let server = GraphServer::start();
        let token = token(&server).await;
        let draft = client(&server)
            .post(format!(
                "{}/v1.0/users/{MAILBOX}/messages",
                server.graph_url()
            ))
            .bearer_auth(&token)
            .header("Content-Type", "application/json")
            .body(message().to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(draft.status().as_u16(), 201);
        let id = json_of(draft).await["id"].as_str().unwrap().to_string();
        let session = |size: usize| json!({"AttachmentItem": {"attachmentType": "file", "name": "a.pdf", "size": size}});
        let rest = format!(
            "/messages/{}/attachments/createUploadSession",
            id.replace('=', "%3D")
        );
        assert_eq!(
            post(&server, &token, &rest, &session(2_999_999)).await,
            (
                400,
                "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize".to_string()
            )
        );
        let response = client(&server)
            .post(format!("{}/v1.0/users/{MAILBOX}{rest}", server.graph_url()))
            .bearer_auth(&token)
            .header("Content-Type", "application/json")
            .body(session(3_000_000).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
        let url = json_of(response).await["uploadUrl"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(url.starts_with(&server.outlook_url()), "{url}");
        let put = |range: &str, len: usize, auth: bool| {
            let mut request = client(&server)
                .put(&url)
                .header("Content-Type", "application/octet-stream")
                .header("Content-Range", range)
                .body(vec![7u8; len]);
            if auth {
                request = request.bearer_auth(&token);
            }
            async move { request.send().await.unwrap().status().as_u16() }
        };
        // Not from the expected start; a length that disagrees with the range; a wrong total;
        // a bearer token on a pre-authenticated URL.
        assert_eq!(put("bytes 10-19/3000000", 10, false).await, 416);
        assert_eq!(put("bytes 0-9/3000000", 11, false).await, 416);
        assert_eq!(put("bytes 0-9/3000001", 10, false).await, 416);
        assert_eq!(put("bytes 0-9/3000000", 10, true).await, 400);
        assert_eq!(put("bytes 0-9/3000000", 10, false).await, 200);
        assert_eq!(put("bytes 10-2999999/3000000", 2_999_990, false).await, 201);
    }
}
