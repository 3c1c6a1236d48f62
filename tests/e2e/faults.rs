//! Every way an SMTP server fails a send, one fault per mode of `tests/servers/hostile_smtp.py`,
//! and what the caller is told: each refusal at each step maps to its exit code; a stalled step
//! is `temporary` within its bound; a message handed over whose answer is lost is `uncertain`
//! (exit 9), with its Message-ID, and is never failed over, so a second sender receives nothing;
//! recipients refused for now and for good are told apart (exit 10, 11); the whole call's limit
//! reached while the host waits on a server is that server's time-out, not a plugin crash.
//!
//! Bounds are shortened with the host's SMTP time-out scale so stalls cost seconds; every time
//! is asserted as its bound plus a margin for a busy machine. Graph's lost answer is in
//! [`crate::graph`]. These tests talk to the hostile servers on 127.0.0.1 only.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::Scan2xMail;
use crate::support::binary::Run;
use crate::support::hostile_smtp::{
    HostileSmtp, SEND, TIMEOUT_SCALE, TIMEOUT_SCALE_ENV, assert_within, timed,
};

/// Said in every `uncertain` outcome.
const MAYBE_DELIVERED: &str = "The email may have been delivered";

/// `failover = true`, the first server's sender preferred, the backup's second.
fn failover_settings(first: &HostileSmtp, backup: &HostileSmtp) -> Scan2xMail {
    let settings = format!(
        "failover = true\n{}{}",
        first.plaintext_settings("office", "preferred = true\n"),
        backup.plaintext_settings("backup", "")
    );
    Scan2xMail::new(&settings).env(TIMEOUT_SCALE_ENV, TIMEOUT_SCALE)
}

/// `send --json` to one recipient.
fn send_json(mail: &Scan2xMail) -> (Run, Duration) {
    let started = Instant::now();
    let run = mail.run([
        "send",
        "--json",
        "--to",
        "b@example.test",
        "--subject",
        "x",
        "--text",
        "x",
    ]);
    (run, started.elapsed())
}

/// Each attempt of a `--json` send, as "sender result".
fn attempts(run: &Run) -> Vec<String> {
    run.json()["attempts"]
        .as_array()
        .unwrap_or_else(|| panic!("no attempts in {run}"))
        .iter()
        .map(|a| {
            format!(
                "{} {}",
                a["sender"].as_str().unwrap(),
                a["result"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn a_server_that_never_answers_the_final_dot_is_uncertain_within_the_bound() {
    let server = HostileSmtp::start("stall-at-data-end");
    let (run, took) = timed(&server.plaintext_sender());
    run.assert_code(9);
    assert!(
        run.stderr.contains(&format!(
            "uncertain: the whole message was written to 127.0.0.1:{}; then no answer came within 6 s",
            server.port
        )) && run.stderr.contains(MAYBE_DELIVERED),
        "says what was handed over, the bound, and that the mail may have arrived: {run}"
    );
    assert!(
        run.stderr.contains("error: message-id: <"),
        "the Message-ID is said, so the caller can look for it: {run}"
    );
    assert_within(took, Duration::from_secs(6), &run);
    assert_eq!(server.data().len(), 1, "the server read the whole message");
    let lines = server.lines();
    assert_eq!(
        lines.last().map(String::as_str),
        Some("DATA"),
        "nothing after the message, not even QUIT: {lines:?}"
    );
    assert!(server.saw_close(), "the host dropped the connection");
}

#[test]
fn a_server_that_closes_after_the_whole_message_is_uncertain_at_once() {
    let server = HostileSmtp::start("close-at-data-end");
    let (run, took) = send_json(&server.plaintext_sender());
    run.assert_code(9);
    let json = run.json();
    assert_eq!(json["error"]["kind"], "uncertain", "{run}");
    assert!(
        json["message_id"]
            .as_str()
            .is_some_and(|id| id.contains('@')),
        "{run}"
    );
    assert_within(took, Duration::ZERO, &run);
    assert_eq!(server.data().len(), 1, "the server read the whole message");
}

#[test]
fn a_reset_in_the_middle_of_the_message_is_temporary_and_nothing_was_taken() {
    let server = HostileSmtp::start("reset-mid-data");
    let sender = server.plaintext_sender();
    // Larger than the socket buffers hold, so the reset comes while the host still writes.
    let scan: Vec<u8> = (0..8u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let attachment = sender.write_file("scan.pdf", scan);
    let mut args = SEND.map(std::ffi::OsString::from).to_vec();
    args.extend(["--attach".into(), attachment.into_os_string()]);
    let started = Instant::now();
    let run = sender.run(args);
    run.assert_code(7);
    assert!(
        run.stderr.contains("transferring the message to") && !run.stderr.contains(MAYBE_DELIVERED),
        "a message cut off in the middle was not delivered, and a retry may send it: {run}"
    );
    assert_within(started.elapsed(), Duration::ZERO, &run);
    assert!(server.data().is_empty(), "the server took no message");
    assert!(
        server.dir().join("reset.log").exists(),
        "the server reset it"
    );
}

#[test]
fn after_an_uncertain_outcome_failover_sends_nothing_to_the_next_sender() {
    let first = HostileSmtp::start("stall-at-data-end");
    let backup = HostileSmtp::start("reflect");
    let (run, took) = send_json(&failover_settings(&first, &backup));
    run.assert_code(9);
    assert_eq!(attempts(&run), ["office uncertain"], "{run}");
    assert_eq!(run.json()["error"]["kind"], "uncertain", "{run}");
    assert_within(took, Duration::from_secs(6), &run);
    assert_eq!(first.data().len(), 1, "the first server has the message");
    assert!(
        backup.lines().is_empty() && backup.data().is_empty(),
        "the backup was not even connected to: {:?}",
        backup.lines()
    );

    // The caller's say-so: the same email again, through the backup, with the same Message-ID.
    let id = run.json()["message_id"].as_str().unwrap().to_string();
    let again = failover_settings(&first, &backup).run([
        "send",
        "--sender",
        "backup",
        "--message-id",
        &format!("<{id}>"),
        "--to",
        "b@example.test",
        "--subject",
        "x",
        "--text",
        "x",
    ]);
    again.assert_code(0);
    assert!(
        again.stdout.contains(&format!("message-id: <{id}>")),
        "{again}"
    );
    let sent = String::from_utf8_lossy(&backup.data()[0]).into_owned();
    assert!(
        sent.contains(&format!("Message-ID: <{id}>\r\n")),
        "the backup got the same Message-ID: {sent}"
    );
}

#[test]
fn failover_moves_the_email_on_from_a_server_that_stopped_answering() {
    let stalled = HostileSmtp::start("stall-after-greeting");
    let backup = HostileSmtp::start("reflect");
    let (run, took) = send_json(&failover_settings(&stalled, &backup));
    run.assert_code(0);
    assert_eq!(run.json()["sender"], "backup", "{run}");
    assert_eq!(attempts(&run), ["office temporary", "backup sent"], "{run}");
    assert_within(took, Duration::from_secs(3), &run);
    assert_eq!(backup.data().len(), 1, "the backup took the email");
}

#[test]
fn every_refusal_at_each_step_maps_to_what_to_do_next() {
    // (the step's reply, recipients, exit code, the outcome's kind)
    let cases: [(&str, &[&str], u8, &str); 10] = [
        ("MAIL=451", &["b@example.test"], 7, "temporary"),
        ("MAIL=550", &["b@example.test"], 6, "rejected"),
        ("MAIL=530", &["b@example.test"], 5, "auth-failed"),
        ("RCPT=451", &["a@refused.test"], 7, "temporary"),
        ("RCPT=550", &["a@refused.test"], 6, "rejected"),
        (
            "RCPT=452",
            &["b@example.test", "a@refused.test"],
            10,
            "partly-sent-refused-for-now",
        ),
        (
            "RCPT=553",
            &["b@example.test", "a@refused.test"],
            11,
            "partly-sent-refused-for-good",
        ),
        ("DATA=451", &["b@example.test"], 7, "temporary"),
        ("DATA=554", &["b@example.test"], 6, "rejected"),
        ("END=452", &["b@example.test"], 7, "temporary"),
    ];
    for (reply, recipients, code, kind) in cases {
        let server = HostileSmtp::start_with("reply", &["--reply", reply]);
        let mut args = vec!["send", "--json", "--subject", "x", "--text", "x"];
        for to in recipients {
            args.extend(["--to", to]);
        }
        let run = server.plaintext_sender().run(&args);
        assert_eq!(run.code, i32::from(code), "{reply} {recipients:?}: {run}");
        let json: Value = run.json();
        let said = json["error"]["kind"]
            .as_str()
            .or(json["outcome"].as_str())
            .unwrap_or_default();
        assert_eq!(said, kind, "{reply}: {run}");
        let delivered = usize::from(code >= 10);
        assert_eq!(
            server.data().len(),
            delivered,
            "{reply}: what the server took"
        );
    }
    // A refusal of the final "." is an answer: the message was not taken, and nothing is owed.
    let server = HostileSmtp::start_with("reply", &["--reply", "END=554"]);
    let (run, _) = send_json(&server.plaintext_sender());
    run.assert_code(6);
    assert!(!run.stdout.contains(MAYBE_DELIVERED), "{run}");
}

#[test]
fn the_call_limit_reached_while_waiting_on_a_server_is_temporary_not_a_crash() {
    let server = HostileSmtp::start("stall-after-greeting");
    // RFC 5321's own bounds (MAIL FROM: 5 min): the call's 2 s limit comes first.
    let mail = Scan2xMail::new(&server.plaintext_settings("relay", "call_limit_secs = 2\n"))
        .env(TIMEOUT_SCALE_ENV, "1");
    let (run, took) = send_json(&mail);
    run.assert_code(7);
    let message = run.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains(&format!(
            "the call reached its 2 s limit while waiting on smtp 127.0.0.1:{}",
            server.port
        )),
        "{run}"
    );
    assert_within(took, Duration::from_secs(2), &run);
}

#[test]
fn the_call_limit_reached_while_awaiting_the_final_dot_is_uncertain() {
    let server = HostileSmtp::start("stall-at-data-end");
    let mail = Scan2xMail::new(&server.plaintext_settings("relay", "call_limit_secs = 2\n"))
        .env(TIMEOUT_SCALE_ENV, "1");
    let (run, took) = send_json(&mail);
    run.assert_code(9);
    let message = run.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("then the call ended before the answer came")
            && message.contains(MAYBE_DELIVERED),
        "{run}"
    );
    assert_within(took, Duration::from_secs(2), &run);
    assert_eq!(server.data().len(), 1);
}
