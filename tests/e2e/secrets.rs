//! Passwords, wherever they come from (`{ file = … }`, `{ env = … }`, the settings file itself), reach the server and no
//! output: every run here is verbose and must still print neither the password nor its base64
//! forms (checked by the runner on each run). Each run must also succeed, proving the password
//! was really read and used.
//!
//! Must never talk to anything but the loopback test server.

use crate::support::{
    PASSWORD, PASSWORD_ENV, Password, Scan2xMail, SmtpSender, SmtpServer, SmtpServerOptions, USER,
};

fn server(test: &str) -> Option<SmtpServer> {
    SmtpServer::start_or_skip(
        test,
        SmtpServerOptions::new().starttls().user(USER, PASSWORD),
    )
}

/// Every command that handles the password, as verbosely as possible.
fn run_everything(mail: &Scan2xMail) {
    mail.run(["-vv", "check"]).assert_code(0);
    mail.run(["-vv", "plugins"]).assert_code(0);
    mail.run(["-vv", "test"]).assert_code(0);
    mail.run([
        "-vv",
        "send",
        "--json",
        "--to",
        "good@example.test",
        "--subject",
        "secret check",
        "--text",
        "hello",
    ])
    .assert_code(0);
}

#[test]
fn password_from_a_file_appears_in_no_output() {
    let test = "password_from_a_file_appears_in_no_output";
    let Some(server) = server(test) else {
        return;
    };
    // Written the way `echo "$password" > file` would: with a final newline, which is not part
    // of the password.
    let secret_dir = tempfile::tempdir().unwrap();
    let file = secret_dir.path().join("smtp-password");
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    let mail = Scan2xMail::new(
        &SmtpSender::new(server.starttls_port())
            .ca_file(&server.ca_file())
            .password(Password::File(file))
            .toml(),
    )
    .credentials(USER, PASSWORD);

    run_everything(&mail);
    assert_eq!(server.received().len(), 1);
    assert_eq!(server.received()[0].auth_user.as_deref(), Some(USER));
}

#[test]
fn password_from_the_environment_appears_in_no_output() {
    let test = "password_from_the_environment_appears_in_no_output";
    let Some(server) = server(test) else {
        return;
    };
    let mail = Scan2xMail::new(
        &SmtpSender::new(server.starttls_port())
            .ca_file(&server.ca_file())
            .toml(),
    )
    .env(PASSWORD_ENV, PASSWORD)
    .credentials(USER, PASSWORD);

    run_everything(&mail);
    assert_eq!(server.received().len(), 1);
    assert_eq!(server.received()[0].auth_user.as_deref(), Some(USER));
}

#[test]
fn password_written_in_the_settings_appears_in_no_output() {
    let test = "password_written_in_the_settings_appears_in_no_output";
    let Some(server) = server(test) else {
        return;
    };
    let mail = Scan2xMail::new(
        &SmtpSender::new(server.starttls_port())
            .ca_file(&server.ca_file())
            .password(Password::Plain(PASSWORD.to_string()))
            .toml(),
    )
    .credentials(USER, PASSWORD);

    run_everything(&mail);
    assert_eq!(server.received().len(), 1);
}
