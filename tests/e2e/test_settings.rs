//! `scan2x-mail test` — "Test SMTP Settings": it proves a sender's settings work by connecting,
//! securing the connection and logging in, and it never sends mail. Each failure has its own
//! exit code, and credentials never cross a connection in clear.
//!
//! These tests must never reach anything but the loopback test server (or a closed loopback port).

use crate::support::ports::free_port;
use crate::support::{
    PASSWORD, PASSWORD_ENV, Scan2xMail, SmtpSender, SmtpServer, SmtpServerOptions, USER,
};

fn server_options() -> SmtpServerOptions {
    SmtpServerOptions::new()
        .starttls()
        .plain()
        .user(USER, PASSWORD)
}

#[test]
fn test_succeeds_with_good_settings_and_sends_no_mail() {
    let test = "test_succeeds_with_good_settings_and_sends_no_mail";
    let Some(server) = SmtpServer::start_or_skip(test, server_options()) else {
        return;
    };
    let mail = Scan2xMail::new(
        &SmtpSender::new(server.starttls_port())
            .ca_file(&server.ca_file())
            .toml(),
    )
    .env(PASSWORD_ENV, PASSWORD)
    .credentials(USER, PASSWORD);

    mail.run(["test"]).assert_code(0);
    mail.run(["test", "relay"]).assert_code(0);

    let log = server.commands_text();
    let commands = server.commands_on(server.starttls_port());
    assert!(
        commands
            .iter()
            .filter(|c| c.verb() == "AUTH" && c.tls)
            .count()
            >= 2,
        "each test run should log in over TLS:\n{log}"
    );
    assert!(
        commands
            .iter()
            .all(|c| !matches!(c.verb().as_str(), "MAIL" | "RCPT" | "DATA")),
        "`test` started a mail transaction:\n{log}"
    );
    assert!(server.received().is_empty(), "`test` sent a message");
}

#[test]
fn wrong_password_fails_authentication_and_is_never_printed() {
    let test = "wrong_password_fails_authentication_and_is_never_printed";
    let Some(server) = SmtpServer::start_or_skip(test, server_options()) else {
        return;
    };
    let wrong = "e2e-Wr0ng-pa55-9kZt";
    let mail = Scan2xMail::new(
        &SmtpSender::new(server.starttls_port())
            .ca_file(&server.ca_file())
            .toml(),
    )
    .env(PASSWORD_ENV, wrong)
    .credentials(USER, wrong)
    .secret(PASSWORD);

    mail.run(["test"]).assert_code(5);
    mail.run(["-vv", "test"]).assert_code(5);
    let run = mail.run([
        "send",
        "--json",
        "--to",
        "good@example.test",
        "--subject",
        "never",
        "--text",
        "never",
    ]);
    run.assert_code(5);
    assert_eq!(run.json()["error"]["kind"], "auth-failed", "{run}");
    assert!(server.received().is_empty(), "a message got through");
}

#[test]
fn closed_port_is_a_temporary_failure() {
    // Nothing listens on this port: connection refused means "try again later".
    let mail = Scan2xMail::new(&SmtpSender::new(free_port()).toml())
        .env(PASSWORD_ENV, PASSWORD)
        .credentials(USER, PASSWORD);

    mail.run(["test"]).assert_code(7);
    let run = mail.run([
        "send",
        "--json",
        "--to",
        "good@example.test",
        "--subject",
        "nobody home",
        "--text",
        "hello",
    ]);
    run.assert_code(7);
    assert_eq!(run.json()["error"]["kind"], "temporary", "{run}");
}

#[test]
fn starttls_is_required_when_ssl_is_enabled() {
    let test = "starttls_is_required_when_ssl_is_enabled";
    let Some(server) = SmtpServer::start_or_skip(test, server_options()) else {
        return;
    };
    // The plain port offers no STARTTLS but offers AUTH: the sender must give up, not fall back.
    let mail = Scan2xMail::new(
        &SmtpSender::new(server.plain_port())
            .ca_file(&server.ca_file())
            .toml(),
    )
    .env(PASSWORD_ENV, PASSWORD)
    .credentials(USER, PASSWORD);

    let run = mail.run(["test"]);
    assert_ne!(run.code, 0, "`test` succeeded without TLS: {run}");
    run.assert_code(3);
    let run = mail.run([
        "send",
        "--to",
        "good@example.test",
        "--subject",
        "no tls",
        "--text",
        "hello",
    ]);
    run.assert_code(3);

    let log = server.commands_text();
    assert!(
        server
            .commands_on(server.plain_port())
            .iter()
            .all(|c| !c.is_auth_or_mail()),
        "AUTH or mail commands sent in clear:\n{log}"
    );
    assert!(server.received().is_empty(), "a message went out in clear");
}

#[test]
fn credentials_are_never_sent_without_tls() {
    let test = "credentials_are_never_sent_without_tls";
    let Some(server) = SmtpServer::start_or_skip(test, server_options()) else {
        return;
    };
    // enable_ssl = false with a username and password: refused as a settings error, because the
    // password would cross the network in clear (the plain port would happily take it).
    let mail = Scan2xMail::new(
        &SmtpSender::new(server.plain_port())
            .enable_ssl(false)
            .toml(),
    )
    .env(PASSWORD_ENV, PASSWORD)
    .credentials(USER, PASSWORD);

    mail.run(["test"]).assert_code(3);
    mail.run([
        "send",
        "--to",
        "good@example.test",
        "--subject",
        "in clear",
        "--text",
        "hello",
    ])
    .assert_code(3);

    let log = server.commands_text();
    assert!(
        server
            .commands()
            .iter()
            .all(|c| c.verb() != "AUTH" && c.line != "<auth data>"),
        "credentials were sent:\n{log}"
    );
    assert!(server.received().is_empty(), "a message went out");
}

#[test]
fn test_without_a_sender_name_needs_exactly_one_sender() {
    // Two senders and no name: `test` can't guess which one; it must not pick one silently.
    let first = SmtpSender::new(free_port()).named("first").toml();
    let second = SmtpSender::new(free_port()).named("second").toml();
    let mail = Scan2xMail::new(&format!("{first}\n{second}"))
        .env(PASSWORD_ENV, PASSWORD)
        .credentials(USER, PASSWORD);

    let run = mail.run(["test"]);
    assert_ne!(run.code, 0, "`test` picked a sender: {run}");
    assert_ne!(run.code, 7, "`test` tried to connect somewhere: {run}");
}
