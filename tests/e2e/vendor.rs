//! A vendor's own sender, installed as a file: the example SendGrid plugin (`examples/sendgrid`),
//! built by a nested cargo build during the test run — after the `scan2x-mail` binary under
//! test was built, which never embeds it — is named in a settings file and used by that same
//! binary. And a vendor build of a built-in's id (the SMTP plugin built as a file) replaces the
//! built-in for the senders that name it, visibly.
//!
//! | claim | shown by |
//! |---|---|
//! | `plugins` lists the file's plugin with its schema, network needs and sha256 | [`the_vendor_plugin_is_listed_with_its_schema_and_network_needs`] |
//! | its settings are checked against its own schema | [`check_validates_the_vendor_settings_against_its_own_schema`] |
//! | `send` goes through it; SendGrid receives exactly what was sent | [`send_through_the_vendor_plugin_reaches_sendgrid_as_sent`] |
//! | 429 is temporary (exit 7), 400 rejected (exit 6), a bad key auth-failed (exit 5) | [`sendgrid_refusals_map_to_what_should_happen_next`] |
//! | `test` runs its verify | [`test_checks_the_api_key_through_the_vendor_plugin`] |
//! | a file with a built-in's id replaces it for its senders, and `plugins` says so | [`a_vendor_build_of_a_builtin_id_replaces_it_visibly`] |
//!
//! Tests talk only to the stand-ins on 127.0.0.1.

use std::path::PathBuf;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::sendgrid_server::{API_KEY, SendGridServer};
use crate::support::test_plugins::wasm;
use crate::support::{
    PASSWORD, PASSWORD_ENV, Scan2xMail, SmtpSender, SmtpServer, SmtpServerOptions, USER,
    toml_string,
};

const KEY_ENV: &str = "SENDGRID_API_KEY";

fn sendgrid_wasm() -> PathBuf {
    wasm("sendgrid")
}

fn settings(server: &SendGridServer, extra: &str) -> String {
    format!(
        "[senders.mailer]\nplugin = {}\napi_key = {{ env = \"{KEY_ENV}\" }}\n\
         from_email = \"scans@example.com\"\nfrom_name = \"Scanner\"\napi_url = {}\n\
         ca_file = {}\n{extra}",
        toml_string(&sendgrid_wasm().to_string_lossy()),
        toml_string(&server.api_url()),
        toml_string(&server.ca_file().to_string_lossy()),
    )
}

fn scan2x(server: &SendGridServer, extra: &str) -> Scan2xMail {
    Scan2xMail::new(&settings(server, extra))
        .env(KEY_ENV, API_KEY)
        .secret(API_KEY)
}

fn sha256_of(path: &PathBuf) -> String {
    let bytes = std::fs::read(path).unwrap();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn plugins_with_id<'v>(list: &'v Value, id: &str) -> Vec<&'v Value> {
    list.as_array()
        .unwrap()
        .iter()
        .filter(|p| p["id"] == id)
        .collect()
}

#[test]
fn the_vendor_plugin_is_listed_with_its_schema_and_network_needs() {
    let server = SendGridServer::start();
    let mail = scan2x(&server, "");
    let run = mail.run(["plugins", "--json"]);
    run.assert_code(0);
    let list = run.json();
    let found = plugins_with_id(&list, "sendgrid");
    assert_eq!(found.len(), 1, "{run}");
    let sendgrid = found[0];
    assert_eq!(
        sendgrid["source"],
        sendgrid_wasm().to_string_lossy().as_ref()
    );
    assert_eq!(sendgrid["sha256"], sha256_of(&sendgrid_wasm()));
    assert_eq!(
        sendgrid["network"],
        json!(["{api_url}", "secret api_key header Authorization {api_url}"])
    );
    assert_eq!(sendgrid["replaces"], Value::Null);
    let schema: Vec<(&str, &str, bool)> = sendgrid["settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["key"].as_str().unwrap(),
                s["kind"].as_str().unwrap(),
                s["required"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        schema,
        [
            ("api_key", "secret", true),
            ("from_email", "text", true),
            ("from_name", "text", false),
            ("api_url", "text", false),
        ]
    );
    // The binary's own plugins are there too, and none of them is SendGrid: it came from the file.
    for builtin in ["smtp", "imap", "graph"] {
        let found = plugins_with_id(&list, builtin);
        assert_eq!(found.len(), 1, "{builtin}: {run}");
        assert_eq!(found[0]["source"], "built-in");
    }

    let text = mail.run(["plugins"]);
    text.assert_code(0);
    assert!(text.stdout.contains("sendgrid"), "{text}");
    assert!(text.stdout.contains("network:  {api_url}"), "{text}");
}

#[test]
fn check_validates_the_vendor_settings_against_its_own_schema() {
    let server = SendGridServer::start();

    let run = scan2x(&server, "").run(["check"]);
    run.assert_code(0);
    assert!(
        run.stdout.contains(&format!(
            "mailer (sendgrid): may reach {}",
            server.api_url()
        )),
        "{run}"
    );

    let run = scan2x(&server, "api_token = \"x\"\n").run(["check"]);
    run.assert_code(3);
    assert!(run.stderr.contains("api_token"), "{run}");

    let wrong_kind = settings(&server, "").replace("from_name = \"Scanner\"", "from_name = 7");
    let run = Scan2xMail::new(&wrong_kind)
        .env(KEY_ENV, API_KEY)
        .run(["check"]);
    run.assert_code(3);
    assert!(run.stderr.contains("from_name"), "{run}");
    assert!(
        server.requests().is_empty(),
        "check must not reach SendGrid"
    );
}

#[test]
fn send_through_the_vendor_plugin_reaches_sendgrid_as_sent() {
    let server = SendGridServer::start();
    // At trace, so the leak check reads all the host can say about the vendor's HTTP requests.
    let mail = scan2x(&server, "").at_trace();
    let pdf = b"%PDF-1.7\n\x00\x01\x02\xff scanned page\n%%EOF\n".to_vec();
    let pdf_path = mail.write_file("scan.pdf", &pdf);
    let html_path = mail.write_file("body.html", "<p>Your scan</p>");
    let run = mail.run([
        "send",
        "--json",
        "--to",
        "Ann Example <ann@example.test>",
        "--cc",
        "cc@example.test",
        "--bcc",
        "hidden@example.test",
        "--reply-to",
        "desk@example.test",
        "--subject",
        "Scan 42",
        "--text",
        "Your scan is attached.",
        "--html-file",
        &html_path.to_string_lossy(),
        "--attach",
        &pdf_path.to_string_lossy(),
    ]);
    run.assert_code(0);
    run.assert_traced();
    let out = run.json();
    let sent = server.sent();
    assert_eq!(sent.len(), 1, "{run}");
    let sent = &sent[0];
    assert_eq!(out["plugin"], "sendgrid");
    assert_eq!(out["receipt"]["provider_id"], sent.message_id.as_str());
    assert_eq!(
        out["receipt"]["accepted"],
        json!(["ann@example.test", "cc@example.test", "hidden@example.test"])
    );
    let expected = json!({
        "personalizations": [{
            "to": [{"email": "ann@example.test", "name": "Ann Example"}],
            "cc": [{"email": "cc@example.test"}],
            "bcc": [{"email": "hidden@example.test"}],
        }],
        "from": {"email": "scans@example.com", "name": "Scanner"},
        "reply_to": {"email": "desk@example.test"},
        "subject": "Scan 42",
        "content": [
            {"type": "text/plain", "value": "Your scan is attached."},
            {"type": "text/html", "value": "<p>Your scan</p>"},
        ],
        "attachments": [{
            "content": crate::support::base64(&pdf),
            "filename": "scan.pdf",
            "type": "application/pdf",
            "disposition": "attachment",
        }],
        "custom_args": {"scan2x_message_id": out["message_id"]},
    });
    assert_eq!(sent.body, expected);
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (requests[0].method.as_str(), requests[0].path.as_str()),
        ("POST", "/v3/mail/send")
    );
}

#[test]
fn sendgrid_refusals_map_to_what_should_happen_next() {
    let server = SendGridServer::start();
    let send = [
        "send",
        "--to",
        "a@example.test",
        "--subject",
        "x",
        "--text",
        "x",
    ];

    server.fail_next("mail/send", 429, "too many requests", Some(30));
    let run = scan2x(&server, "").run(send.iter().chain(&["--json"]));
    run.assert_code(7);
    let error = &run.json()["error"];
    assert_eq!(error["kind"], "temporary", "{run}");
    assert_eq!(error["retry_after_secs"], 30, "{run}");
    assert!(run.stdout.contains("429"), "{run}");

    server.fail_next("mail/send", 503, "Service Unavailable", None);
    scan2x(&server, "").run(send).assert_code(7);

    server.fail_next("mail/send", 400, "The subject is required.", None);
    let run = scan2x(&server, "").run(send);
    run.assert_code(6);
    assert!(run.stderr.contains("The subject is required."), "{run}");

    let wrong_key = Scan2xMail::new(&settings(&server, ""))
        .env(KEY_ENV, "SG.not-the-key")
        .secret("SG.not-the-key");
    let run = wrong_key.run(send);
    run.assert_code(5);
    assert!(run.stderr.contains("api_key"), "{run}");

    assert!(server.sent().is_empty(), "a refused message was recorded");
    let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 503, 400, 401]);
}

#[test]
fn test_checks_the_api_key_through_the_vendor_plugin() {
    let server = SendGridServer::start();
    let run = scan2x(&server, "").run(["test", "mailer"]);
    run.assert_code(0);
    assert!(run.stdout.contains("mail.send"), "{run}");
    assert_eq!(server.requests()[0].path, "/v3/scopes");
    assert!(server.sent().is_empty(), "test sent mail");
}

#[test]
fn a_vendor_build_of_a_builtin_id_replaces_it_visibly() {
    let test = "a_vendor_build_of_a_builtin_id_replaces_it_visibly";
    let Some(server) = SmtpServer::start_or_skip(
        test,
        SmtpServerOptions::new().starttls().user(USER, PASSWORD),
    ) else {
        return;
    };
    // The SMTP plugin as a vendor would ship it: built on its own, installed as a file.
    let file = wasm("smtp-vendor-build");
    let toml = SmtpSender::new(server.starttls_port())
        .ca_file(&server.ca_file())
        .toml()
        .replace(
            "plugin = \"smtp\"",
            &format!("plugin = {}", toml_string(&file.to_string_lossy())),
        );
    let mail = Scan2xMail::new(&toml)
        .env(PASSWORD_ENV, PASSWORD)
        .credentials(USER, PASSWORD);

    let run = mail.run(["plugins", "--json"]);
    run.assert_code(0);
    let list = run.json();
    let smtp = plugins_with_id(&list, "smtp");
    assert_eq!(smtp.len(), 2, "built-in and file both listed: {run}");
    assert_eq!(smtp[0]["source"], "built-in");
    assert_eq!(smtp[0]["replaces"], Value::Null);
    assert_eq!(smtp[1]["source"], file.to_string_lossy().as_ref());
    assert_eq!(smtp[1]["replaces"], "smtp");
    assert_eq!(smtp[1]["sha256"], sha256_of(&file));

    let text = mail.run(["plugins"]);
    assert!(
        text.stdout
            .contains("replaces: the built-in smtp, for the senders that name this file"),
        "{text}"
    );

    let run = mail.run([
        "send",
        "--to",
        "a@example.test",
        "--subject",
        "x",
        "--text",
        "x",
    ]);
    run.assert_code(0);
    assert_eq!(server.only_received().rcpt_tos, ["a@example.test"]);
}

/// The SendGrid stand-in refuses what SendGrid refuses, so a passing send means the plugin's
/// request has SendGrid's documented shape.
mod stand_in {
    use super::*;

    async fn post(server: &SendGridServer, key: &str, body: &Value) -> (u16, Value) {
        let response = crate::support::https_client(&server.ca_file())
            .post(format!("{}/v3/mail/send", server.api_url()))
            .bearer_auth(key)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or_default();
        (status, body)
    }

    fn good() -> Value {
        json!({
            "personalizations": [{"to": [{"email": "a@example.test"}]}],
            "from": {"email": "scans@example.com"},
            "subject": "s",
            "content": [{"type": "text/plain", "value": "t"}],
        })
    }

    #[tokio::test]
    async fn it_refuses_each_shape_sendgrid_refuses_naming_the_field() {
        let server = SendGridServer::start();
        /// How to spoil the good body; the field SendGrid's error names for it.
        type Spoil = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Spoil)> = vec![
            (
                "personalizations.0.to",
                Box::new(|m| {
                    m["personalizations"][0] = json!({"bcc": [{"email": "a@example.test"}]})
                }),
            ),
            (
                "personalizations.0.bcc",
                Box::new(|m| {
                    m["personalizations"][0]["bcc"] = json!([{"email": "A@example.test"}])
                }),
            ),
            (
                "content",
                Box::new(
                    |m| m["content"] = json!([{"type": "text/html", "value": "h"}, {"type": "text/plain", "value": "t"}]),
                ),
            ),
            (
                "content.0.value",
                Box::new(|m| m["content"][0]["value"] = json!("")),
            ),
            (
                "attachments.0.content",
                Box::new(|m| {
                    m["attachments"] = json!([{"content": "not base64!", "filename": "a"}])
                }),
            ),
            (
                "reply_to_list",
                Box::new(|m| {
                    m["reply_to"] = json!({"email": "r@example.test"});
                    m["reply_to_list"] = json!([{"email": "s@example.test"}]);
                }),
            ),
            ("subject", Box::new(|m| m["subject"] = json!(""))),
            (
                "replyTo",
                Box::new(|m| m["replyTo"] = json!({"email": "r@example.test"})),
            ),
        ];
        for (field, break_it) in cases {
            let mut body = good();
            break_it(&mut body);
            let (status, answer) = post(&server, API_KEY, &body).await;
            assert_eq!(status, 400, "{field}: {answer}");
            assert_eq!(answer["errors"][0]["field"], field, "{answer}");
        }
        assert!(server.sent().is_empty());
        assert_eq!(
            post(&server, API_KEY, &good()).await.0,
            202,
            "the good shape is taken"
        );
    }

    #[tokio::test]
    async fn it_refuses_any_other_api_key() {
        let server = SendGridServer::start();
        assert_eq!(post(&server, "SG.other", &good()).await.0, 401);
        assert!(server.sent().is_empty());
    }
}
