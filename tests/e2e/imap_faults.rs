//! APPEND's faults, one per mode of `tests/servers/hostile_imap.py`, and what the caller is
//! told: a server that read the whole literal and then closed (or never answered until the
//! call's limit) may have stored the message, so the outcome is `uncertain` (exit 9) with the
//! Message-ID; a literal cut off by a reset was not stored, so it is `temporary` (exit 7) and
//! says nothing of a delivery. The same server, well-behaved, stores the message: the faults are
//! the modes', not a session the host can't have.
//!
//! APPEND's own wait for its answer is 10 min, so the "never answers" case is cut short by the
//! sender's `call_limit_secs`. These tests talk to the scripted server on 127.0.0.1 only.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use crate::support::Scan2xMail;
use crate::support::binary::Run;
use crate::support::hostile_imap::HostileImap;
use crate::support::hostile_smtp::{MARGIN, assert_within};

/// Said in every `uncertain` outcome.
const MAYBE_DELIVERED: &str = "may have been delivered";

/// `send --json` to one recipient, with `extra` arguments, and how long it took.
fn send_json(mail: &Scan2xMail, extra: Vec<OsString>) -> (Run, Duration) {
    let mut args: Vec<OsString> = [
        "send",
        "--json",
        "--to",
        "x@example.test",
        "--subject",
        "s",
        "--text",
        "t",
    ]
    .map(OsString::from)
    .to_vec();
    args.extend(extra);
    let started = Instant::now();
    let run = mail.run(args);
    (run, started.elapsed())
}

/// The outcome's message in `--json`.
fn message(run: &Run) -> String {
    run.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The Message-ID `--json` reported, without its angle brackets.
fn message_id(run: &Run) -> String {
    let id = run.json()["message_id"]
        .as_str()
        .unwrap_or_default()
        .trim_matches(['<', '>'])
        .to_string();
    assert!(id.contains('@'), "a Message-ID is reported: {run}");
    id
}

/// Whether `haystack` holds `needle`.
fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn an_append_whose_answer_is_lost_is_uncertain() {
    let server = HostileImap::start("append-close");
    let (run, took) = send_json(&server.sender(""), Vec::new());
    run.assert_code(9);
    assert_eq!(run.json()["error"]["kind"], "uncertain", "{run}");
    let said = message(&run);
    assert!(
        said.contains(&format!(
            "the whole message was written to 127.0.0.1:{} (APPEND)",
            server.port
        )) && said.contains(MAYBE_DELIVERED),
        "says what was handed over, and that the mail may be there: {run}"
    );
    let id = message_id(&run);
    assert_within(took, Duration::ZERO, &run);
    let appends = server.appends();
    assert_eq!(appends.len(), 1, "the server read one whole literal: {run}");
    assert!(
        holds(&appends[0], &id),
        "the literal the server read is the message with the reported Message-ID {id}: {run}"
    );
    let lines = server.lines();
    assert!(
        lines.last().is_some_and(|l| l.contains(" APPEND ")),
        "nothing after APPEND, as the server closed: {lines:?}\n{run}"
    );
    assert!(server.saw_close(), "the server closed it: {run}");
}

#[test]
fn an_append_cut_off_in_the_middle_is_temporary() {
    let server = HostileImap::start("append-reset");
    let sender = server.sender("");
    // Larger than the socket buffers hold, so the reset comes while the host still writes.
    let scan: Vec<u8> = (0..8u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let attachment = sender.write_file("scan.pdf", scan);
    let (run, took) = send_json(
        &sender,
        vec!["--attach".into(), attachment.into_os_string()],
    );
    run.assert_code(7);
    assert_eq!(run.json()["error"]["kind"], "temporary", "{run}");
    assert!(
        !run.stdout.contains(MAYBE_DELIVERED) && !run.stderr.contains(MAYBE_DELIVERED),
        "a literal cut off in the middle was not stored, and a retry may send it: {run}"
    );
    assert!(
        message(&run).contains(&format!(
            "failed writing the message to 127.0.0.1:{}",
            server.port
        )),
        "names the step and the server: {run}"
    );
    assert_within(took, Duration::ZERO, &run);
    assert!(
        server.appends().is_empty(),
        "the server stored nothing: {run}"
    );
    assert!(server.saw_reset(), "the server reset it: {run}");
}

#[test]
fn the_call_limit_reached_while_awaiting_appends_answer_is_uncertain() {
    let server = HostileImap::start("append-hang");
    let (run, took) = send_json(&server.sender("call_limit_secs = 2\n"), Vec::new());
    run.assert_code(9);
    assert_eq!(run.json()["error"]["kind"], "uncertain", "{run}");
    let said = message(&run);
    assert!(
        said.contains("(APPEND); then the call ended before the answer came")
            && said.contains(MAYBE_DELIVERED),
        "{run}"
    );
    message_id(&run);
    assert!(
        took < Duration::from_secs(2) + MARGIN,
        "took {took:?}, more than the call's 2 s limit plus {MARGIN:?}: {run}"
    );
    assert_eq!(
        server.appends().len(),
        1,
        "the server read the whole literal: {run}"
    );
    // The host drops the connection when the call ends; the server sees it close.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.saw_close() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.saw_close(), "the host closed the connection: {run}");
}

#[test]
fn a_well_behaved_server_stores_the_message() {
    let server = HostileImap::start("well-behaved");
    let (run, _) = send_json(&server.sender(""), Vec::new());
    run.assert_code(0);
    let json = run.json();
    assert_eq!(json["plugin"], "imap", "{run}");
    assert_eq!(
        json["receipt"]["provider_id"], "1",
        "the APPENDUID's UID: {run}"
    );
    let detail = json["receipt"]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("\"Sent\" (the server marks it \\Sent)"),
        "the folder the server marks \\Sent: {run}"
    );
    let id = message_id(&run);
    let appends = server.appends();
    assert_eq!(appends.len(), 1, "{run}");
    assert!(holds(&appends[0], &id), "the stored message is {id}: {run}");
    let commands = server.commands();
    let verbs: Vec<String> = commands
        .iter()
        .filter_map(|(_, line)| line.split(' ').nth(1))
        .map(str::to_ascii_uppercase)
        .collect();
    for verb in ["STARTTLS", "AUTHENTICATE", "LIST", "APPEND", "LOGOUT"] {
        assert!(
            verbs.iter().any(|v| v == verb),
            "the session had {verb}: {commands:?}\n{run}"
        );
    }
    assert!(
        commands
            .iter()
            .filter(|(_, line)| !line.contains(" CAPABILITY") && !line.contains(" STARTTLS"))
            .all(|(tls, _)| *tls),
        "nothing but CAPABILITY and STARTTLS in clear: {commands:?}\n{run}"
    );
    assert!(!server.saw_close() && !server.saw_reset(), "{run}");
}
