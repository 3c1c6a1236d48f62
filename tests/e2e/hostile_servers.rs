//! The host against SMTP servers that misbehave on purpose (`tests/servers/hostile_smtp.py`,
//! Python standard library only): a reply that never ends costs a fixed few KiB, bytes injected
//! after the `220` to STARTTLS stop the send before any credential, and a plugin's bare-LF `.`
//! line is dot-stuffed, not taken as the end of DATA; a server that stops answering costs the
//! step's bound and is `temporary`, and a refused or cut STARTTLS is `temporary` too.
//!
//! The stall tests shorten every SMTP bound with [`TIMEOUT_SCALE_ENV`] so they end in seconds;
//! the texts still name the bound that applied.
//!
//! These tests must never talk to anything but the hostile server on 127.0.0.1.

use std::fs;
use std::time::{Duration, Instant};

use crate::support::hostile_smtp::{HostileSmtp, SEND, TIMEOUT_SCALE_ENV, assert_within, timed};
use crate::support::test_plugins::wasm;
use crate::support::{PASSWORD, PASSWORD_ENV, Scan2xMail, SmtpSender, USER, base64, toml_string};

/// The host's peak resident memory must stay under this under attack.
const MAX_PEAK_MIB: u64 = 100;

#[test]
fn an_endless_greeting_line_is_cut_at_the_line_cap_and_the_host_stays_small() {
    let server = HostileSmtp::start("endless-greeting");
    let run = server.sender().run(SEND);
    run.assert_code(7);
    assert!(
        run.stderr
            .contains("the server's reply line exceeded 4096 bytes"),
        "{run}"
    );
    let peak = run.peak_resident_mib();
    assert!(
        peak < MAX_PEAK_MIB,
        "the host reached {peak} MiB under an endless greeting (at most {MAX_PEAK_MIB} MiB)"
    );
}

#[test]
fn an_endless_multiline_reply_is_cut_at_the_reply_cap_and_the_host_stays_small() {
    let server = HostileSmtp::start("long-multiline");
    let run = server.sender().run(SEND);
    run.assert_code(7);
    assert!(
        run.stderr
            .contains("the server's reply exceeded 65536 bytes"),
        "{run}"
    );
    let peak = run.peak_resident_mib();
    assert!(
        peak < MAX_PEAK_MIB,
        "the host reached {peak} MiB under an endless EHLO reply (at most {MAX_PEAK_MIB} MiB)"
    );
    let verbs: Vec<String> = server.commands().into_iter().map(|(_, l)| l).collect();
    assert_eq!(verbs.len(), 1, "only the EHLO was sent: {verbs:?}");
}

#[test]
fn bytes_injected_after_the_220_to_starttls_stop_the_send_before_any_credential() {
    let server = HostileSmtp::start("starttls-inject");
    let run = server.sender().run(SEND);
    run.assert_code(7);
    assert!(
        run.stderr.contains("before the TLS handshake"),
        "the refusal names the injection: {run}"
    );
    let commands = server.commands();
    let shown = format!("{commands:?}");
    assert!(
        commands.iter().all(|(tls, line)| !tls
            && !line.to_ascii_uppercase().starts_with("AUTH")
            && !line.to_ascii_uppercase().starts_with("MAIL")),
        "nothing was sent after the STARTTLS, let alone a login: {shown}"
    );
    let plain = base64(format!("\0{USER}\0{PASSWORD}").as_bytes());
    let log = fs::read_to_string(server.dir().join("commands.log")).unwrap_or_default();
    assert!(
        !log.contains(PASSWORD)
            && !log.contains(&plain)
            && !log.contains(&base64(PASSWORD.as_bytes())),
        "no credential reached the server: {shown}"
    );
    assert_eq!(
        commands.last().map(|(_, l)| l.as_str()),
        Some("STARTTLS"),
        "{shown}"
    );
}

#[test]
fn a_plugins_bare_lf_dot_line_is_dot_stuffed_and_smuggles_no_second_message() {
    let server = HostileSmtp::start("reflect");
    let settings = format!(
        "[senders.hostile]\nplugin = {}\nhost = \"127.0.0.1\"\nport = {}\nattack = \"bare-lf-dot\"\n",
        toml_string(&wasm("hostile").to_string_lossy()),
        server.port
    );
    let run = Scan2xMail::new(&settings).run(&SEND[1..]);
    run.assert_code(0);
    let data = server.data();
    assert_eq!(
        data.len(),
        1,
        "one message, not two: {:?}",
        data.iter()
            .map(|d| String::from_utf8_lossy(d).into_owned())
            .collect::<Vec<_>>()
    );
    let data = &data[0];
    let shown = String::from_utf8_lossy(data);
    assert!(
        data.windows(b"\r\nbefore\r\n..\r\nMAIL FROM:<smuggled".len())
            .any(|w| w == b"\r\nbefore\r\n..\r\nMAIL FROM:<smuggled"),
        "the bare-LF dot line arrives as CRLF and dot-stuffed: {shown:?}"
    );
    assert!(
        data.windows(b"\r\nafter\r\nbare cr\r\n".len())
            .any(|w| w == b"\r\nafter\r\nbare cr\r\n"),
        "the bare CR arrives as CRLF: {shown:?}"
    );
    for (i, &byte) in data.iter().enumerate() {
        if byte == b'\n' {
            assert!(i > 0 && data[i - 1] == b'\r', "a bare LF at {i}: {shown:?}");
        }
        if byte == b'\r' {
            assert_eq!(data.get(i + 1), Some(&b'\n'), "a bare CR at {i}: {shown:?}");
        }
    }
    let mails: Vec<String> = server
        .commands()
        .into_iter()
        .map(|(_, line)| line)
        .filter(|line| line.to_ascii_uppercase().starts_with("MAIL"))
        .collect();
    assert_eq!(
        mails,
        ["MAIL FROM:<a@example.test>"],
        "no smuggled transaction"
    );
}

#[test]
fn a_server_that_never_answers_mail_from_is_temporary_within_the_bound() {
    let server = HostileSmtp::start("stall-after-greeting");
    let (run, took) = timed(&server.plaintext_sender());
    run.assert_code(7);
    assert!(
        run.stderr.contains(&format!(
            "timed out after 3 s waiting for 127.0.0.1:{} to answer MAIL FROM",
            server.port
        )),
        "the text names the step and its bound: {run}"
    );
    assert_within(took, Duration::from_secs(3), &run);
    let lines = server.lines();
    assert!(
        lines.len() == 2
            && lines[0].starts_with("EHLO ")
            && lines[1].starts_with("MAIL FROM:<scanner@example.test>"),
        "EHLO and MAIL FROM, and no QUIT into the silence: {lines:?}"
    );
    assert!(server.saw_close(), "the host dropped the connection");
}

#[test]
fn a_server_that_never_answers_rcpt_to_is_temporary_within_the_bound() {
    let server = HostileSmtp::start("stall-at-rcpt");
    let (run, took) = timed(&server.plaintext_sender());
    run.assert_code(7);
    assert!(
        run.stderr.contains(&format!(
            "timed out after 3 s waiting for 127.0.0.1:{} to answer RCPT TO",
            server.port
        )),
        "the text names the step and its bound: {run}"
    );
    assert_within(took, Duration::from_secs(3), &run);
    let lines = server.lines();
    assert_eq!(
        lines.last().map(String::as_str),
        Some("RCPT TO:<b@example.test>"),
        "nothing after the unanswered RCPT TO, not even QUIT: {lines:?}"
    );
    assert!(server.saw_close(), "the host dropped the connection");
}

#[test]
fn a_quit_never_answered_still_sends_within_a_few_seconds() {
    let server = HostileSmtp::start("quit-never-answered");
    // The real bounds: QUIT's own 5 s, not a test's scale.
    let sender = server.plaintext_sender().env(TIMEOUT_SCALE_ENV, "1");
    let (run, took) = timed(&sender);
    run.assert_code(0);
    assert_within(took, Duration::from_secs(5), &run);
    assert_eq!(server.data().len(), 1, "the message was delivered");
    assert_eq!(
        server.lines().last().map(String::as_str),
        Some("QUIT"),
        "{:?}",
        server.lines()
    );
    assert!(server.saw_close(), "the host dropped the connection");
}

#[test]
fn starttls_refused_with_454_is_temporary_and_sends_no_credential() {
    let server = HostileSmtp::start("starttls-454");
    let (run, took) = timed(&server.sender());
    run.assert_code(7);
    assert!(
        run.stderr.contains("454") && !run.stderr.contains("ca_file"),
        "the server's 454 is said, and no ca_file advice: {run}"
    );
    assert_within(took, Duration::ZERO, &run);
    let commands = server.commands();
    assert_eq!(
        commands.last().map(|(_, l)| l.as_str()),
        Some("STARTTLS"),
        "nothing after the refused STARTTLS: {commands:?}"
    );
    assert!(commands.iter().all(|(tls, _)| !tls), "{commands:?}");
}

#[test]
fn a_tls_handshake_the_server_cuts_off_is_temporary() {
    let server = HostileSmtp::start("starttls-cut");
    let (run, took) = timed(&server.sender());
    run.assert_code(7);
    assert!(
        run.stderr
            .contains(&format!("TLS with 127.0.0.1:{} failed", server.port))
            && !run.stderr.contains("ca_file"),
        "a cut handshake names TLS, and no ca_file advice: {run}"
    );
    assert_within(took, Duration::ZERO, &run);
}

#[test]
fn a_certificate_the_roots_do_not_vouch_for_stays_a_settings_problem_naming_ca_file() {
    let server = HostileSmtp::start("starttls");
    // The sender without the server's CA: the handshake finds an unknown issuer.
    let run = Scan2xMail::new(&SmtpSender::new(server.port).toml())
        .env(PASSWORD_ENV, PASSWORD)
        .credentials(USER, PASSWORD)
        .run(SEND);
    run.assert_code(3);
    assert!(run.stderr.contains("ca_file"), "{run}");
    assert!(
        server.commands().iter().all(|(tls, _)| !tls),
        "nothing was sent inside the TLS that failed"
    );
}

#[test]
fn a_server_that_stops_reading_the_message_is_temporary_within_the_data_block_bound() {
    let server = HostileSmtp::start("stall-reading-data");
    let sender = server.plaintext_sender();
    // Far more than the loopback socket buffers hold, so lettre's writes block.
    let scan: Vec<u8> = (0..24u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let attachment = sender.write_file("scan.pdf", scan);
    let started = Instant::now();
    let mut args = SEND.map(std::ffi::OsString::from).to_vec();
    args.extend(["--attach".into(), attachment.into_os_string()]);
    let run = sender.run(args);
    let took = started.elapsed();
    run.assert_code(7);
    assert!(
        run.stderr.contains(&format!(
            "timed out after 1.8 s writing the message to 127.0.0.1:{}: the server stopped reading it",
            server.port
        )),
        "the text names the step and its bound: {run}"
    );
    assert_within(took, Duration::from_secs(2), &run);
    assert!(
        server.dir().join("stalled.log").exists(),
        "the server took DATA"
    );
}
