//! Round two of the sandbox: servers that echo secrets back, plugins that try to read or spread
//! them, and plugins or servers that try to make the host hold their memory or forge its output.
//!
//! | attack | what stops it |
//! |---|---|
//! | an SMTP or IMAP server quoting the login line (base64 `AUTH PLAIN`, IMAP-quoted `LOGIN`, the decoded password) in its error | the one redactor, over every output and every encoding, and over what goes back to the plugin |
//! | a plugin sending its secret where it did not declare, or over plain `http` | `denied` before anything is sent |
//! | a declared origin reflecting the request to the plugin | the response scrubbed before the plugin sees it |
//! | 64 state keys of 32 MiB; 1,000 state warnings | state bounds (key length, bytes per sender); one log budget |
//! | a 48 MiB error text | cut and marked |
//! | an IMAP server answering LIST without end | 8 MiB per answer, 20,000 untagged responses per command |
//! | a log line or description with a newline or terminal escape codes | escaped |
//!
//! Every run's output is checked for every spelling of the secrets (see `Scan2xMail::secret`).

use crate::support::echo_server::EchoServer;
use crate::support::test_plugins::wasm;
use crate::support::{Scan2xMail, toml_string};

/// A password with characters each encoding treats differently: quotes, a backslash, a space,
/// `~`, `+` and non-ASCII.
const TRICKY: &str = "Pa\"ss\\ w~rd+é-Leak7";
const USER: &str = "alice";

const SEND: [&str; 7] = [
    "send",
    "--to",
    "a@example.test",
    "--subject",
    "x",
    "--text",
    "x",
];

/// Whatever spelling a server mangles the password into, its plain tail stays recognisable:
/// it must be gone too.
fn assert_no_fragment(stdout: &str, stderr: &str) {
    for fragment in ["w~rd", "Leak7"] {
        assert!(
            !stdout.contains(fragment) && !stderr.contains(fragment),
            "part of the password ({fragment}) leaked:\n{stdout}\n{stderr}"
        );
    }
}

fn smtp_sender(server: &EchoServer) -> Scan2xMail {
    let toml = format!(
        "[senders.relay]\nplugin = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\nenable_ssl = true\n\
         username = \"{USER}\"\npassword = {{ env = \"ECHO_PASSWORD\" }}\n\
         email_address = \"scanner@example.test\"\nca_file = {}\n",
        server.port,
        toml_string(&server.ca_file().to_string_lossy())
    );
    Scan2xMail::new(&toml)
        .env("ECHO_PASSWORD", TRICKY)
        .credentials(USER, TRICKY)
}

fn imap_sender(server: &EchoServer, extra: &str) -> Scan2xMail {
    let toml = format!(
        "[senders.mailbox]\nplugin = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\nenable_ssl = true\n\
         username = \"{USER}\"\npassword = {{ env = \"ECHO_PASSWORD\" }}\n\
         from_email = \"scanner@example.test\"\nca_file = {}\n{extra}\n",
        server.port,
        toml_string(&server.ca_file().to_string_lossy())
    );
    Scan2xMail::new(&toml)
        .env("ECHO_PASSWORD", TRICKY)
        .credentials(USER, TRICKY)
}

/// A sender running the hostile plugin with `attack` against `port`.
fn hostile(attack: &str, port: u16, extra: &str) -> Scan2xMail {
    let toml = format!(
        "[senders.hostile]\nplugin = {}\nhost = \"127.0.0.1\"\nport = {port}\nattack = \"{attack}\"\n\
         password = {{ env = \"HOSTILE_PASSWORD\" }}\n{extra}\n",
        toml_string(&wasm("hostile").to_string_lossy())
    );
    Scan2xMail::new(&toml)
        .env("HOSTILE_PASSWORD", TRICKY)
        .secret(TRICKY)
}

#[test]
fn an_smtp_server_echoing_the_login_shows_the_password_nowhere() {
    let server = EchoServer::start("smtp", &[]);
    let mail = smtp_sender(&server);
    for (global, json) in [
        (&["-vv"][..], &[][..]),
        (&[], &["--json"]),
        (&["-vvv"], &[]),
    ] {
        let run = mail.run(global.iter().chain(&SEND).chain(json));
        assert_no_fragment(&run.stdout, &run.stderr);
        run.assert_code(5);
        assert!(
            run.stdout.contains("<secret>") || run.stderr.contains("<secret>"),
            "the server's echo was not seen, so this proves nothing: {run}"
        );
    }
    let run = mail.env("SCAN2X_MAIL_LOG", "trace").run(["test"]);
    run.assert_code(5);
    assert!(
        server.received().contains("AUTH PLAIN "),
        "the login was never tried:\n{}",
        server.received()
    );
}

#[test]
fn an_imap_server_echoing_login_or_authenticate_shows_the_password_nowhere() {
    for extra in [&[][..], &["--plain"][..]] {
        let server = EchoServer::start("imap", extra);
        let mail = imap_sender(&server, "mailbox = \"Sent\"");
        for (global, json) in [(&["-vvv"][..], &[][..]), (&[], &["--json"])] {
            let run = mail.run(global.iter().chain(&SEND).chain(json));
            assert_no_fragment(&run.stdout, &run.stderr);
            run.assert_code(5);
            assert!(
                run.stdout.contains("<secret>") || run.stderr.contains("<secret>"),
                "the server's echo was not seen ({extra:?}), so this proves nothing: {run}"
            );
        }
        let seen = server.received();
        let verb = if extra.is_empty() {
            " LOGIN "
        } else {
            " AUTHENTICATE PLAIN"
        };
        assert!(seen.contains(verb), "{verb} never tried:\n{seen}");
    }
}

#[test]
fn a_reflected_secret_reaches_the_plugin_only_as_a_placeholder() {
    let server = EchoServer::start("https", &[]);
    let grants = format!(
        "allow_hosts = [\"https://127.0.0.1:{}\"]\nca_file = {}",
        server.port,
        toml_string(&server.ca_file().to_string_lossy())
    );
    let run = hostile("secret-reflect", server.port, &grants).run(SEND);
    run.assert_code(0);
    assert!(
        run.stdout.contains("reflected") && run.stdout.contains("Bearer <secret>"),
        "{run}"
    );
    // The plugin itself saw only the placeholder: what it wrote reversed holds no secret.
    let reversed: String = TRICKY.chars().rev().collect();
    assert!(
        !run.stdout.contains(&reversed),
        "the plugin read the secret: {run}"
    );
    assert!(run.stdout.contains(">terces< reraeB"), "{run}");
    assert!(
        server
            .received()
            .contains(&format!("X-Declared: Bearer {TRICKY}"))
            || server.received().to_ascii_lowercase().contains(&format!(
                "x-declared: bearer {}",
                TRICKY.to_ascii_lowercase()
            )),
        "the declared header did not carry the secret:\n{}",
        server.received()
    );
}

#[test]
fn a_secret_in_an_undeclared_place_or_over_plain_http_is_denied_before_sending() {
    let server = EchoServer::start("https", &[]);
    let grants = format!(
        "allow_hosts = [\"https://127.0.0.1:{0}\", \"http://127.0.0.1:{0}\"]\nca_file = {1}",
        server.port,
        toml_string(&server.ca_file().to_string_lossy())
    );
    for attack in ["secret-undeclared", "secret-plain-http"] {
        let run = hostile(attack, server.port, &grants).run(SEND);
        run.assert_code(8);
        assert!(
            run.stderr.contains("may not go into header"),
            "{attack}: {run}"
        );
    }
    assert_eq!(server.received(), "", "a request was sent");
}

#[test]
fn state_keys_a_plugin_floods_are_not_kept_and_host_memory_stays_bounded() {
    let run =
        hostile("state-flood", 9, "memory_limit_mb = 64").run(["-vv"].into_iter().chain(SEND));
    run.assert_code(0);
    let peak = run.peak_resident_mib();
    eprintln!("host peak resident memory: {peak} MiB");
    // The plugin's 64 MiB, one 32 MiB key lifted at a time, and the process itself.
    assert!(
        peak < 64 + 32 + 96,
        "peak resident memory {peak} MiB: {run}"
    );
    assert!(run.stderr.contains("key over 256 bytes"), "{run}");
}

#[test]
fn warnings_a_plugin_causes_count_against_its_log_budget() {
    let run = hostile("state-warnings", 9, "").run(["-v"].into_iter().chain(SEND));
    run.assert_code(0);
    let warnings = run
        .stderr
        .lines()
        .filter(|l| l.contains("value over 65536 bytes"))
        .count();
    assert_eq!(warnings, 200, "{run}");
    assert!(run.stderr.contains("plugin log limit reached"), "{run}");
}

#[test]
fn a_huge_error_text_is_cut_and_marked() {
    let run = hostile("huge-error", 9, "memory_limit_mb = 64").run(SEND);
    run.assert_code(6);
    assert!(
        run.stderr.len() < 16 << 10,
        "{} bytes of stderr",
        run.stderr.len()
    );
    assert!(
        run.stderr.contains("[cut: 50331648 bytes"),
        "{}",
        &run.stderr[..200.min(run.stderr.len())]
    );
}

#[test]
fn a_forged_log_line_and_escape_codes_do_not_reach_the_terminal() {
    let run = hostile("log-forge", 9, "").run(["-v"].into_iter().chain(SEND));
    run.assert_code(0);
    assert!(
        !run.stderr
            .lines()
            .any(|l| l.trim_start().starts_with("ERROR")),
        "a forged line: {run}"
    );
    assert!(!run.stderr.contains('\x1b'), "an escape code: {run}");
    assert!(run.stderr.contains("innocent\\nERROR"), "{run}");

    for args in [vec!["plugins"], vec!["plugins", "--json"]] {
        let listing = hostile("none", 9, "").run(args);
        listing.assert_code(0);
        assert!(
            !listing.stdout.contains('\x1b'),
            "an escape code: {listing}"
        );
        assert!(listing.stdout.contains("hidden grant"), "{listing}");
    }
}

#[test]
fn an_imap_server_listing_without_end_is_cut_off_and_host_memory_stays_bounded() {
    let server = EchoServer::start("imap", &["--mode", "flood"]);
    let run = imap_sender(&server, "memory_limit_mb = 64").run(["-vv"].into_iter().chain(SEND));
    run.assert_code(7);
    assert!(
        run.stderr.contains("MiB in answer to one command")
            || run.stderr.contains("untagged responses to one command"),
        "{run}"
    );
    let peak = run.peak_resident_mib();
    eprintln!("host peak resident memory: {peak} MiB");
    assert!(peak < 64 + 96, "peak resident memory {peak} MiB: {run}");
}
