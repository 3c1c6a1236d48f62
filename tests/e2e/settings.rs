//! Settings-file errors: `check` (and every command) refuses a bad settings file with exit 3 and
//! a line `FILE:LINE: senders.NAME.KEY: what is wrong`, so an administrator can go straight to
//! the mistake. A valid file passes, so each refusal below is about its one mistake.
//!
//! These tests need no server and must never open a connection.

use crate::support::{PASSWORD, PASSWORD_ENV, Scan2xMail, USER};

/// A good settings file; each test changes one line. The comment and the blank line make the
/// line numbers differ from the table's own line numbers.
const GOOD: &[&str] = &[
    "# scan2x-mail settings for the front-desk scanner",
    "",
    "[senders.relay]",
    "plugin = \"smtp\"",
    "host = \"127.0.0.1\"",
    "port = 10587",
    "enable_ssl = true",
    "username = \"alice\"",
    "password = { env = \"SMTP_PASSWORD\" }",
    "email_address = \"scanner@example.test\"",
];

/// The 1-based line number of the first line starting with `start`.
fn line_of(lines: &[String], start: &str) -> usize {
    lines
        .iter()
        .position(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starts with {start:?}"))
        + 1
}

fn good_lines() -> Vec<String> {
    GOOD.iter().map(|s| s.to_string()).collect()
}

fn scan2x(lines: &[String]) -> Scan2xMail {
    Scan2xMail::new(&(lines.join("\n") + "\n"))
        .env(PASSWORD_ENV, PASSWORD)
        .credentials(USER, PASSWORD)
}

/// `check` exits 3 and stderr holds `FILE:LINE: senders.relay.KEY`.
#[track_caller]
fn assert_settings_error(lines: &[String], line: usize, key: &str) {
    let mail = scan2x(lines);
    let run = mail.run(["check"]);
    run.assert_code(3);
    let expected = format!(
        "{}:{line}: senders.relay.{key}",
        mail.settings_path().display()
    );
    assert!(
        run.stderr.contains(&expected),
        "stderr should contain {expected:?}: {run}"
    );
}

#[test]
fn valid_settings_pass_check() {
    scan2x(&good_lines()).run(["check"]).assert_code(0);
}

#[test]
fn unknown_key_is_a_settings_error_naming_key_and_line() {
    let mut lines = good_lines();
    lines.push("colour = \"blue\"".to_string());
    let line = line_of(&lines, "colour");
    assert_settings_error(&lines, line, "colour");
}

#[test]
fn missing_required_key_is_a_settings_error_naming_key_and_the_senders_table() {
    let mut lines = good_lines();
    lines.retain(|l| !l.starts_with("email_address"));
    // A missing key has no line of its own: the error points at the sender's table header.
    let line = line_of(&lines, "[senders.relay]");
    assert_settings_error(&lines, line, "email_address");
}

#[test]
fn wrong_type_is_a_settings_error_naming_key_and_line() {
    let mut lines = good_lines();
    let line = line_of(&lines, "port");
    lines[line - 1] = "port = \"abc\"".to_string();
    assert_settings_error(&lines, line, "port");
}

#[test]
fn unknown_plugin_is_a_settings_error_naming_key_and_line() {
    let mut lines = good_lines();
    let line = line_of(&lines, "plugin");
    lines[line - 1] = "plugin = \"carrier-pigeon\"".to_string();
    assert_settings_error(&lines, line, "plugin");
}

#[test]
fn settings_errors_stop_send_before_any_connection() {
    // A settings error is found before anything is sent: the exit code is 3, not 7 (the port
    // below is closed, so a connection attempt would show up as a temporary failure).
    let mut lines = good_lines();
    let line = line_of(&lines, "port");
    lines[line - 1] = format!("port = {}", crate::support::ports::free_port());
    lines.push("colour = \"blue\"".to_string());
    scan2x(&lines)
        .run([
            "send",
            "--to",
            "good@example.test",
            "--subject",
            "never",
            "--text",
            "never",
        ])
        .assert_code(3);
}
