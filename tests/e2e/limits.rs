//! The CPU limit counts CPU, and the work a message makes grows with its size, not with its
//! square: a plugin that only waits is never stopped by `cpu_limit_secs`, and a message to
//! 10 000 recipients with 100 attachments goes out well within the default limit (10 s).
//! Composing that message took 40 s of CPU while lettre re-read its To header for every address
//! and the envelope's duplicates were found by scanning the whole list.
//!
//! These tests must never send anywhere but the loopback test server. Neither is a timing test:
//! each passes on a busy machine. The waiting plugin could not pass under the old limit (wall
//! time minus host I/O) at any speed; the large message needed four times the default limit
//! natively before any connection, more in the plugin.

use crate::support::test_plugins::wasm;
use crate::support::{
    PASSWORD, PASSWORD_ENV, Scan2xMail, SmtpSender, SmtpServer, SmtpServerOptions, USER,
    toml_string,
};

const RECIPIENTS: usize = 10_000;
const ATTACHMENTS: usize = 100;

#[test]
fn ten_thousand_recipients_and_a_hundred_attachments_go_out_under_the_default_cpu_limit() {
    let test =
        "ten_thousand_recipients_and_a_hundred_attachments_go_out_under_the_default_cpu_limit";
    let options = SmtpServerOptions::new().starttls().user(USER, PASSWORD);
    let Some(server) = SmtpServer::start_or_skip(test, options) else {
        return;
    };
    let mail = Scan2xMail::new(
        &SmtpSender::new(server.starttls_port())
            .ca_file(&server.ca_file())
            .toml(),
    )
    .env(PASSWORD_ENV, PASSWORD)
    .credentials(USER, PASSWORD);
    let mut args: Vec<String> = ["send", "--subject", "to everyone", "--text", "hello"]
        .map(String::from)
        .to_vec();
    for i in 0..RECIPIENTS {
        // To, Cc and Bcc all grow: each is a list the plugin handles.
        let flag = ["--to", "--cc", "--bcc"][i % 3];
        args.extend([
            flag.to_owned(),
            format!("Person {i} <person{i}@example.test>"),
        ]);
    }
    for i in 0..ATTACHMENTS {
        let path = mail.write_file(&format!("page-{i}.txt"), format!("page {i}\n"));
        args.extend(["--attach".to_owned(), path.to_string_lossy().into_owned()]);
    }

    let run = mail.run(&args);

    run.assert_code(0);
    let received = server.only_received();
    assert_eq!(received.rcpt_tos.len(), RECIPIENTS);
    assert_eq!(received.parsed().attachment_count(), ATTACHMENTS);
}

#[test]
fn a_plugin_that_waits_longer_than_its_cpu_limit_is_not_stopped() {
    // Three seconds on a timer against a one-second limit: the old limit (wall time minus host
    // I/O) stopped it after one.
    let settings = format!(
        "[senders.hostile]\nplugin = {}\nhost = \"127.0.0.1\"\nport = 2525\nattack = \"sleep\"\npassword = {{ env = \"HOSTILE_PASSWORD\" }}\ncpu_limit_secs = 1\n",
        toml_string(&wasm("hostile").to_string_lossy())
    );
    let run = Scan2xMail::new(&settings)
        .env("HOSTILE_PASSWORD", "unused")
        .run([
            "send",
            "--to",
            "a@example.test",
            "--subject",
            "x",
            "--text",
            "x",
        ]);

    run.assert_code(0);
    assert!(!run.stderr.contains("ran for more than"), "{run}");
}
