//! The outbox end to end: `submit` puts an email in a data folder of the test's own, `queue run`
//! and `queue flush` deliver it through the real binary and plugins to the real test servers,
//! and `queue show --json` lists every attempt. A server that is down, refuses for now or for
//! good, a failover, a repeated idempotency key, a bad email, an attachment deleted after
//! submit, and a Graph 429 with Retry-After.
//!
//! Where a test needs a server "to come back", it starts one and points the sender's settings
//! at it (the test servers choose their own ports): the same sender name, the same queued email.

use std::path::PathBuf;

use mail_parser::MimeHeaders as _;
use serde_json::Value;

use crate::support::binary::Run;
use crate::support::graph_server::{CLIENT_SECRET, CLIENT_SECRET_ENV, GraphSender, GraphServer};
use crate::support::hostile_smtp::HostileSmtp;
use crate::support::ports::free_port;
use crate::support::{
    PASSWORD, PASSWORD_ENV, Scan2xMail, SmtpSender, SmtpServer, SmtpServerOptions, USER,
};

/// The binary with this test's settings and its own data folder (`--data-dir`).
struct Queue {
    mail: Scan2xMail,
}

impl Queue {
    fn new(mail: Scan2xMail) -> Queue {
        Queue { mail }
    }

    fn smtp(settings: &str) -> Queue {
        Queue::new(
            Scan2xMail::new(settings)
                .env(PASSWORD_ENV, PASSWORD)
                .credentials(USER, PASSWORD),
        )
    }

    fn data_dir(&self) -> PathBuf {
        self.mail.dir().join("data")
    }

    fn run(&self, args: &[&str]) -> Run {
        let data = self.data_dir();
        let mut all: Vec<String> = vec!["--data-dir".into(), data.to_string_lossy().into_owned()];
        all.extend(args.iter().map(|a| a.to_string()));
        self.mail.run(all)
    }

    /// Points the senders at other servers: the settings file rewritten.
    fn settings(&self, settings: &str) {
        self.mail.write_file("settings.toml", settings);
    }

    /// `submit --json` of a small email (and `extra` options); its id and Message-ID.
    fn submit(&self, extra: &[&str]) -> (String, String) {
        let mut args = vec![
            "submit",
            "--json",
            "--to",
            "user@example.test",
            "--subject",
            "Scan from the outbox",
            "--text",
            "queued first",
        ];
        args.extend(extra);
        let run = self.run(&args);
        run.assert_code(0);
        let json = run.json();
        assert_eq!(json["duplicate"], false, "{run}");
        (
            json["id"].as_str().unwrap().to_string(),
            json["message_id"].as_str().unwrap().to_string(),
        )
    }

    fn json(&self, args: &[&str]) -> Value {
        let run = self.run(args);
        run.assert_code(0);
        run.json()
    }

    fn show(&self, id: &str) -> Value {
        self.json(&["queue", "show", id, "--json"])
    }

    fn list(&self) -> Vec<Value> {
        self.json(&["queue", "list", "--json"])
            .as_array()
            .unwrap()
            .clone()
    }
}

fn start(test: &str) -> Option<SmtpServer> {
    SmtpServer::start_or_skip(
        test,
        SmtpServerOptions::new().starttls().user(USER, PASSWORD),
    )
}

fn smtp_sender(name: &str, server: &SmtpServer) -> String {
    SmtpSender::new(server.starttls_port())
        .named(name)
        .ca_file(&server.ca_file())
        .toml()
}

/// A sender whose server is down: nothing listens on its port.
fn down_sender(name: &str) -> String {
    SmtpSender::new(free_port()).named(name).toml()
}

/// Each attempt of `queue show --json` as (sender, outcome).
fn attempts(show: &Value) -> Vec<(String, String)> {
    show["attempts"]
        .as_array()
        .unwrap_or_else(|| panic!("no attempts in {show}"))
        .iter()
        .map(|a| {
            (
                a["sender"].as_str().unwrap().to_string(),
                a["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn an_email_submitted_while_the_server_is_down_is_delivered_once_it_is_back() {
    let test = "an_email_submitted_while_the_server_is_down_is_delivered_once_it_is_back";
    if crate::support::smtp_server::skip_without_aiosmtpd(test) {
        return;
    }
    let q = Queue::smtp(&down_sender("relay"));
    let (id, message_id) = q.submit(&[]);

    let run = q.run(&["queue", "run", "--json"]);
    run.assert_code(0);
    let json = run.json();
    assert_eq!(json["deferred"], 1, "{run}");
    assert_eq!(json["emails"][0]["outcome"], "temporary", "{run}");
    assert!(
        run.stderr.contains(&id) && run.stderr.contains("temporary"),
        "one line of progress per email on stderr: {run}"
    );
    let listed = q.list();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["state"], "queued");
    assert_eq!(listed[0]["attempts"], 1);

    let server = start(test).unwrap();
    q.settings(&smtp_sender("relay", &server));
    let flush = q.run(&["queue", "flush", "--json"]);
    flush.assert_code(0);
    assert_eq!(flush.json()["delivered"], 1, "{flush}");

    let received = server.only_received();
    assert_eq!(received.rcpt_tos, ["user@example.test"]);
    assert_eq!(
        received.parsed().message_id(),
        Some(message_id.as_str()),
        "the Message-ID printed at submit"
    );
    let show = q.show(&id);
    assert_eq!(show["state"], "delivered", "{show}");
    assert_eq!(
        attempts(&show),
        pairs(&[("relay", "temporary"), ("relay", "delivered")])
    );
    assert!(
        show["attempts"][0]["detail"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("refused"),
        "{show}"
    );
    assert_eq!(show["recipients"][0]["state"], "accepted", "{show}");

    // Delivered is delivered: another flush sends nothing.
    let again = q.run(&["queue", "flush", "--json"]);
    assert!(again.json()["emails"].as_array().unwrap().is_empty());
    assert_eq!(server.received().len(), 1);
}

#[test]
fn a_5xx_fails_the_email_at_once_after_one_attempt() {
    let server = HostileSmtp::start_with("reply", &["--reply", "MAIL=550"]);
    let q = Queue::new(server.plaintext_sender());
    let (id, _) = q.submit(&[]);
    let flush = q.run(&["queue", "flush", "--json"]);
    flush.assert_code(0);
    let json = flush.json();
    assert_eq!(json["failed"], 1, "{flush}");
    assert_eq!(json["emails"][0]["outcome"], "permanent", "{flush}");
    let show = q.show(&id);
    assert_eq!(show["state"], "failed", "{show}");
    assert_eq!(attempts(&show), pairs(&[("relay", "permanent")]));
    let detail = show["attempts"][0]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("rejected: ") && detail.contains("550"),
        "{show}"
    );
    // Failed is not tried again by a flush.
    let again = q.run(&["queue", "flush", "--json"]);
    assert!(again.json()["emails"].as_array().unwrap().is_empty());
    let mails = server
        .lines()
        .iter()
        .filter(|l| l.starts_with("MAIL"))
        .count();
    assert_eq!(mails, 1, "one MAIL FROM: {:?}", server.lines());
}

#[test]
fn a_4xx_then_a_250_is_delivered_on_the_second_attempt() {
    let busy = HostileSmtp::start_with("reply", &["--reply", "MAIL=451"]);
    let q = Queue::new(busy.plaintext_sender());
    let (id, message_id) = q.submit(&[]);
    let first = q.run(&["queue", "flush", "--json"]);
    assert_eq!(first.json()["deferred"], 1, "{first}");
    let show = q.show(&id);
    assert_eq!(show["state"], "queued", "{show}");
    let next = show["next_attempt_at"].as_i64().unwrap();
    let at = show["attempts"][0]["at"].as_i64().unwrap();
    assert_eq!(next - at, 5 * 60 * 1000, "the first backoff is 5 minutes");
    // `run` honours the backoff: not due yet.
    let early = q.run(&["queue", "run", "--json"]);
    assert!(
        early.json()["emails"].as_array().unwrap().is_empty(),
        "{early}"
    );

    let accepting = HostileSmtp::start("reflect");
    q.settings(&accepting.plaintext_settings("relay", ""));
    let second = q.run(&["queue", "flush", "--json"]);
    assert_eq!(second.json()["delivered"], 1, "{second}");
    let data = accepting.data();
    assert_eq!(data.len(), 1, "one message taken");
    assert!(
        String::from_utf8_lossy(&data[0]).contains(&format!("<{message_id}>")),
        "the same Message-ID on the retry"
    );
    let show = q.show(&id);
    assert_eq!(show["state"], "delivered");
    assert_eq!(
        attempts(&show),
        pairs(&[("relay", "temporary"), ("relay", "delivered")])
    );
    assert!(
        show["attempts"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("451"),
        "{show}"
    );
}

#[test]
fn a_failover_delivers_through_the_second_sender_and_records_both_attempts() {
    let test = "a_failover_delivers_through_the_second_sender_and_records_both_attempts";
    let Some(second) = start(test) else {
        return;
    };
    let settings = format!(
        "failover = true\n\n{}\n{}",
        down_sender("first"),
        smtp_sender("second", &second)
    );
    let q = Queue::smtp(&settings);
    let (id, _) = q.submit(&[]);
    let run = q.run(&["queue", "run", "--json"]);
    run.assert_code(0);
    let json = run.json();
    assert_eq!(json["delivered"], 1, "{run}");
    assert_eq!(json["emails"][0]["sender"], "second", "{run}");
    assert_eq!(second.received().len(), 1);
    let show = q.show(&id);
    assert_eq!(
        attempts(&show),
        pairs(&[("first", "temporary"), ("second", "delivered")])
    );
}

#[test]
fn a_repeated_idempotency_key_queues_the_email_once() {
    let test = "a_repeated_idempotency_key_queues_the_email_once";
    let Some(server) = start(test) else {
        return;
    };
    let q = Queue::smtp(&smtp_sender("relay", &server));
    let (id, message_id) = q.submit(&["--idempotency-key", "job-42"]);
    let again = q.run(&[
        "submit",
        "--json",
        "--to",
        "user@example.test",
        "--subject",
        "Scan from the outbox",
        "--text",
        "queued first",
        "--idempotency-key",
        "job-42",
    ]);
    again.assert_code(0);
    let json = again.json();
    assert_eq!(json["id"], id.as_str(), "{again}");
    assert_eq!(json["message_id"], message_id.as_str(), "{again}");
    assert_eq!(json["duplicate"], true, "{again}");
    let text = q.run(&[
        "submit",
        "--to",
        "user@example.test",
        "--subject",
        "Scan from the outbox",
        "--text",
        "queued first",
        "--idempotency-key",
        "job-42",
    ]);
    text.assert_code(0);
    assert!(
        text.stdout
            .contains("already queued: idempotency key reused"),
        "{text}"
    );
    // The same key with another email is refused: a usage error, nothing queued.
    let other = q.run(&[
        "submit",
        "--json",
        "--to",
        "user@example.test",
        "--subject",
        "Another email",
        "--text",
        "x",
        "--idempotency-key",
        "job-42",
    ]);
    other.assert_code(2);
    assert!(
        other.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("job-42"),
        "{other}"
    );
    assert_eq!(q.list().len(), 1);
    let flush = q.run(&["queue", "flush", "--json"]);
    assert_eq!(flush.json()["delivered"], 1, "{flush}");
    assert_eq!(server.received().len(), 1, "one email delivered");
}

#[test]
fn a_bad_email_is_refused_at_submit_and_nothing_is_queued() {
    let q = Queue::smtp(&down_sender("relay"));
    let bad_address = q.run(&[
        "submit",
        "--json",
        "--to",
        "not an address",
        "--subject",
        "s",
        "--text",
        "t",
    ]);
    bad_address.assert_code(4);
    assert_eq!(
        bad_address.json()["error"]["kind"],
        "invalid-message",
        "{bad_address}"
    );
    let missing = q.mail.dir().join("missing.pdf");
    let no_file = q.run(&[
        "submit",
        "--to",
        "user@example.test",
        "--subject",
        "s",
        "--text",
        "t",
        "--attach",
        missing.to_str().unwrap(),
    ]);
    no_file.assert_code(4);
    let no_subject = q.run(&["submit", "--to", "user@example.test", "--text", "t"]);
    no_subject.assert_code(4);
    // A settings file that does not load is exit 3, nothing queued either.
    q.settings("[senders.relay]\nplugin = \n");
    let bad_settings = q.run(&[
        "submit",
        "--to",
        "user@example.test",
        "--subject",
        "s",
        "--text",
        "t",
    ]);
    bad_settings.assert_code(3);
    assert!(q.list().is_empty(), "nothing was queued");
}

#[test]
fn an_attachment_deleted_after_submit_is_still_delivered_with_its_bytes() {
    let test = "an_attachment_deleted_after_submit_is_still_delivered_with_its_bytes";
    let Some(server) = start(test) else {
        return;
    };
    let q = Queue::smtp(&smtp_sender("relay", &server));
    let bytes: Vec<u8> = (0..70_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let file = q.mail.write_file("Scan 0001.pdf", &bytes);
    let (id, _) = q.submit(&["--attach", file.to_str().unwrap()]);
    std::fs::remove_file(&file).unwrap();
    let flush = q.run(&["queue", "flush", "--json"]);
    assert_eq!(flush.json()["delivered"], 1, "{flush}");
    let received = server.only_received();
    let message = received.parsed();
    let attachment = message.attachments().next().expect("one attachment");
    assert_eq!(attachment.attachment_name(), Some("Scan 0001.pdf"));
    assert_eq!(
        attachment.contents(),
        bytes.as_slice(),
        "the bytes submitted"
    );
    let show = q.show(&id);
    assert_eq!(show["attachments"][0]["size"], bytes.len(), "{show}");
    assert_eq!(
        show["attachments"][0]["content_type"], "application/pdf",
        "{show}"
    );
}

#[test]
fn a_graph_429_with_retry_after_is_not_tried_again_before_it() {
    let server = GraphServer::start();
    server.fail_next("sendMail", 429, "ApplicationThrottled", Some(900));
    let sender = GraphSender::new(&server);
    let q = Queue::new(
        Scan2xMail::new(&sender.toml())
            .secrets_issued_in(sender.issued_secrets.clone())
            .env(CLIENT_SECRET_ENV, CLIENT_SECRET)
            .secret(CLIENT_SECRET),
    );
    let (id, _) = q.submit(&[]);
    let first = q.run(&["queue", "run", "--json"]);
    first.assert_code(0);
    let json = first.json();
    assert_eq!(json["deferred"], 1, "{first}");
    assert_eq!(json["emails"][0]["outcome"], "temporary", "{first}");

    let show = q.show(&id);
    let attempt = &show["attempts"][0];
    assert_eq!(attempt["sender"], "office365", "{show}");
    assert_eq!(attempt["retry_after_secs"], 900, "{show}");
    let wait = show["next_attempt_at"].as_i64().unwrap() - attempt["at"].as_i64().unwrap();
    assert_eq!(
        wait, 900_000,
        "the server's 15 minutes, not the 5-minute backoff"
    );
    let text = q.run(&["queue", "show", &id]);
    assert!(text.stdout.contains("next attempt not before"), "{text}");
    assert!(
        text.stdout.contains("the server asked to wait 900 s"),
        "{text}"
    );

    // Right after, `run` finds nothing due: the Retry-After is honoured.
    let early = q.run(&["queue", "run", "--json"]);
    early.assert_code(0);
    assert!(
        early.json()["emails"].as_array().unwrap().is_empty(),
        "{early}"
    );
    assert!(server.sent().is_empty(), "nothing sent before the wait");

    // `flush` is the administrator's "now": it goes out.
    let flush = q.run(&["queue", "flush", "--json"]);
    assert_eq!(flush.json()["delivered"], 1, "{flush}");
    assert_eq!(server.sent().len(), 1);
}

#[test]
fn an_uncertain_email_is_retried_only_through_the_sender_it_is_pinned_to() {
    use crate::support::hostile_smtp::{TIMEOUT_SCALE, TIMEOUT_SCALE_ENV};
    let lost = HostileSmtp::start("close-at-data-end");
    let other = HostileSmtp::start("reflect");
    let settings = format!(
        "failover = true\n\n{}\n{}",
        lost.plaintext_settings("first", ""),
        other.plaintext_settings("second", "")
    );
    let q = Queue::new(Scan2xMail::new(&settings).env(TIMEOUT_SCALE_ENV, TIMEOUT_SCALE));
    let (id, _) = q.submit(&[]);
    for round in 1..=2 {
        if round == 2 {
            // Now the settings would choose the other sender first: the pin still wins.
            q.settings(&format!(
                "failover = true\n\n{}\n{}",
                lost.plaintext_settings("first", ""),
                other.plaintext_settings("second", "preferred = true")
            ));
        }
        let flush = q.run(&["queue", "flush", "--json"]);
        flush.assert_code(0);
        let json = flush.json();
        assert_eq!(json["emails"][0]["outcome"], "uncertain", "{flush}");
        assert_eq!(json["emails"][0]["sender"], "first", "{flush}");
        let show = q.show(&id);
        assert_eq!(show["state"], "queued", "round {round}: {show}");
        assert_eq!(show["pinned_sender"], "first", "round {round}: {show}");
        assert!(
            other.data().is_empty(),
            "round {round}: an uncertain email was failed over"
        );
    }
    assert_eq!(
        attempts(&q.show(&id)),
        pairs(&[("first", "uncertain"), ("first", "uncertain")])
    );
    let mails = lost
        .lines()
        .iter()
        .filter(|l| l.starts_with("MAIL"))
        .count();
    assert_eq!(mails, 2, "each retry through the pinned sender");
}
