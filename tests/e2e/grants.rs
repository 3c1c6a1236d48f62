//! Grants compare the addresses hosts mean, and a name never leads to this machine by surprise:
//!
//! | claim | shown with |
//! |---|---|
//! | a numeric host (`2130706433`) is the address it means, in a setting and in `allow_hosts` | the SMTP sender and the test server on 127.0.0.1 |
//! | a numeric spelling of another address is not granted | the same, nothing reaches the server |
//! | a name (not `localhost`) that resolves to a loopback address is `denied`, naming it and `allow_loopback_names`, and nothing is connected to | SMTP, IMAP and HTTP (the Graph sender), a listener that counts connections |
//! | `allow_loopback_names = true` lets the same name connect | the same listener |
//!
//! The loopback name is one this machine's resolver already has (its host name, or Debian's
//! `ip6-localhost`); the tests never change the resolver's files. Without such a name a test
//! says `SKIPPED`, and fails under CI. These tests must never reach anything but loopback.

use std::net::{IpAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::support::certs::Certs;
use crate::support::graph_server::{CLIENT_ID, GraphSender, MAILBOX, TENANT_ID};
use crate::support::{Scan2xMail, SmtpServer, SmtpServerOptions, say_skipped, toml_string};

const FROM: &str = "scanner@example.test";
const PASSWORD: &str = "grants-e2e-pw-4711";
const PASSWORD_ENV: &str = "GRANTS_PASSWORD";

const SEND: [&str; 8] = [
    "send",
    "--json",
    "--to",
    "a@example.test",
    "--subject",
    "s",
    "--text",
    "t",
];

/// An SMTP sender without TLS or login (the test server's plain port takes EHLO from anyone).
fn smtp_sender(host: &str, port: u16, extra: &str) -> Scan2xMail {
    Scan2xMail::new(&format!(
        "[senders.relay]\nplugin = \"smtp\"\nhost = {}\nport = {port}\nenable_ssl = false\n\
         email_address = {}\n{extra}\n",
        toml_string(host),
        toml_string(FROM)
    ))
}

fn error_of(run: &crate::support::binary::Run) -> (String, String) {
    let json: Value = run.json();
    (
        json["error"]["kind"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        json["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

fn plain_server(test: &str) -> Option<SmtpServer> {
    SmtpServer::start_or_skip(test, SmtpServerOptions::new().plain())
}

/// How many times the server heard EHLO on its plain port.
fn ehlos(server: &SmtpServer) -> usize {
    server
        .commands_on(server.plain_port())
        .iter()
        .filter(|c| c.verb() == "EHLO")
        .count()
}

#[test]
fn numeric_host_setting_is_the_granted_address() {
    let Some(server) = plain_server("numeric_host_setting_is_the_granted_address") else {
        return;
    };
    let port = server.plain_port();
    let mail = smtp_sender(
        "2130706433",
        port,
        &format!("allow_hosts = [\"smtp://127.0.0.1:{port}\"]"),
    );
    mail.run(["test"]).assert_code(0);
    assert_eq!(ehlos(&server), 1, "{}", server.commands_text());
}

#[test]
fn numeric_grant_allows_the_address_it_means() {
    let Some(server) = plain_server("numeric_grant_allows_the_address_it_means") else {
        return;
    };
    let port = server.plain_port();
    for grant in ["2130706433", "0x7f.1", "0177.0.0.1", "127.1", "0x7f000001"] {
        let mail = smtp_sender(
            "127.0.0.1",
            port,
            &format!("allow_hosts = [\"smtp://{grant}:{port}\"]"),
        );
        let check = mail.run(["check", "--json"]);
        check.assert_code(0);
        assert_eq!(
            check.json()["senders"][0]["grants"][0],
            format!("smtp://127.0.0.1:{port}"),
            "{grant}: {check}"
        );
        mail.run(["test"]).assert_code(0);
    }
    assert_eq!(ehlos(&server), 5, "{}", server.commands_text());
}

#[test]
fn numeric_spelling_of_another_address_is_denied() {
    let Some(server) = plain_server("numeric_spelling_of_another_address_is_denied") else {
        return;
    };
    let port = server.plain_port();
    // 2130706434 is 127.0.0.2: loopback too, but not the address granted. The refusal names the
    // address the call's host means.
    for (host, grant, refused) in [
        ("127.0.0.1", "2130706434", "127.0.0.1"),
        ("2130706434", "127.0.0.1", "127.0.0.2"),
    ] {
        let mail = smtp_sender(
            host,
            port,
            &format!("allow_hosts = [\"smtp://{grant}:{port}\"]"),
        );
        let run = mail.run(SEND);
        run.assert_code(8);
        let (kind, message) = error_of(&run);
        assert_eq!(kind, "denied", "{run}");
        assert!(
            message.contains(&format!("not granted smtp://{refused}:{port}")),
            "{run}"
        );
    }
    assert_eq!(ehlos(&server), 0, "{}", server.commands_text());
}

/// A name other than `localhost` that this machine's resolver answers with loopback addresses
/// only, and those addresses; or the test is skipped (locally) or fails (under CI).
fn loopback_name(test: &str) -> Option<(String, Vec<IpAddr>)> {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_ascii_lowercase())
        .unwrap_or_default();
    for name in [hostname.as_str(), "ip6-localhost", "ip6-loopback"] {
        let plain = !name.is_empty()
            && name != "localhost"
            && !name.ends_with(".localhost")
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !plain {
            continue;
        }
        let Ok(found) = (name, 0).to_socket_addrs() else {
            continue;
        };
        let mut ips: Vec<IpAddr> = found.map(|a| a.ip()).collect();
        ips.sort();
        ips.dedup();
        if !ips.is_empty() && ips.iter().all(IpAddr::is_loopback) {
            return Some((name.to_string(), ips));
        }
    }
    let why = format!(
        "no name but localhost resolves to a loopback address here (tried the host name \
         {hostname:?}, ip6-localhost, ip6-loopback); map the host name to 127.0.1.1 in the \
         resolver's hosts file to run it"
    );
    say_skipped(test, &why);
    None
}

/// Listeners on one port of every address a name resolves to, counting the connections they
/// accept (each is closed at once, so a client fails fast instead of waiting for a greeting).
struct Watch {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

impl Watch {
    fn on(ips: &[IpAddr]) -> Watch {
        let listeners = (0..50)
            .find_map(|_| {
                let first = TcpListener::bind((ips[0], 0)).ok()?;
                let port = first.local_addr().ok()?.port();
                let mut all = vec![first];
                for ip in &ips[1..] {
                    all.push(TcpListener::bind((*ip, port)).ok()?);
                }
                Some(all)
            })
            .expect("one free port on every loopback address of the name");
        let port = listeners[0].local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        for listener in listeners {
            let accepted = accepted.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    drop(stream);
                }
            });
        }
        Watch { port, accepted }
    }

    fn accepted(&self) -> usize {
        // A connection the client made is accepted within this time.
        std::thread::sleep(Duration::from_millis(100));
        self.accepted.load(Ordering::SeqCst)
    }
}

/// What every capability must say about `name`: `denied`, exit 8, naming the address and the
/// setting, with nothing connected; and with `allow_loopback_names = true`, a connection.
fn assert_denied_then_allowed(
    name: &str,
    ips: &[IpAddr],
    watch: &Watch,
    mail: impl Fn(&str) -> Scan2xMail,
) {
    let run = mail("").run(SEND);
    run.assert_code(8);
    let (kind, message) = error_of(&run);
    assert_eq!(kind, "denied", "{run}");
    assert!(
        message.contains(name) && ips.iter().any(|ip| message.contains(&ip.to_string())),
        "the refusal names {name} and its address: {run}"
    );
    assert!(message.contains("allow_loopback_names"), "{run}");
    assert_eq!(
        watch.accepted(),
        0,
        "a refused name was connected to: {run}"
    );

    let run = mail("allow_loopback_names = true").run(SEND);
    assert_ne!(run.code, 8, "still denied with the opt-in: {run}");
    let (kind, message) = error_of(&run);
    assert!(
        kind != "denied" && !message.contains("allow_loopback_names"),
        "the opt-in was not used: {run}"
    );
    assert!(
        watch.accepted() >= 1,
        "the opt-in did not connect to {name}: {run}"
    );
}

#[test]
fn a_name_that_resolves_to_loopback_is_denied_for_smtp_unless_allowed() {
    let test = "a_name_that_resolves_to_loopback_is_denied_for_smtp_unless_allowed";
    let Some((name, ips)) = loopback_name(test) else {
        return;
    };
    let watch = Watch::on(&ips);
    assert_denied_then_allowed(&name, &ips, &watch, |extra| {
        smtp_sender(&name, watch.port, extra)
    });
}

#[test]
fn a_name_that_resolves_to_loopback_is_denied_for_imap_unless_allowed() {
    let test = "a_name_that_resolves_to_loopback_is_denied_for_imap_unless_allowed";
    let Some((name, ips)) = loopback_name(test) else {
        return;
    };
    let watch = Watch::on(&ips);
    let certs = Certs::generate();
    assert_denied_then_allowed(&name, &ips, &watch, |extra| {
        Scan2xMail::new(&format!(
            "[senders.mailbox]\nplugin = \"imap\"\nhost = {}\nport = {}\nenable_ssl = true\n\
             username = \"alice\"\npassword = {{ env = {} }}\nfrom_email = {}\nca_file = {}\n\
             {extra}\n",
            toml_string(&name),
            watch.port,
            toml_string(PASSWORD_ENV),
            toml_string(FROM),
            toml_string(&certs.ca().to_string_lossy()),
        ))
        .env(PASSWORD_ENV, PASSWORD)
        .secret(PASSWORD)
    });
}

#[test]
fn a_name_that_resolves_to_loopback_is_denied_for_http_unless_allowed() {
    let test = "a_name_that_resolves_to_loopback_is_denied_for_http_unless_allowed";
    let Some((name, ips)) = loopback_name(test) else {
        return;
    };
    let watch = Watch::on(&ips);
    let certs = Certs::generate();
    let origin = format!("https://{name}:{}", watch.port);
    assert_denied_then_allowed(&name, &ips, &watch, |extra| {
        let sender = GraphSender {
            name: "office365".to_string(),
            tenant_id: TENANT_ID.to_string(),
            client_id: CLIENT_ID.to_string(),
            client_secret: format!("{{ env = {} }}", toml_string(PASSWORD_ENV)),
            username: MAILBOX.to_string(),
            from_email: None,
            authority_url: origin.clone(),
            graph_url: origin.clone(),
            outlook_url: Some(origin.clone()),
            ca_file: certs.ca(),
            // No stand-in here: nothing issues a token.
            issued_secrets: certs.dir().join("issued-secrets.txt"),
        };
        Scan2xMail::new(&format!("{}{extra}\n", sender.toml()))
            .env(PASSWORD_ENV, PASSWORD)
            .secret(PASSWORD)
    });
}

#[test]
fn a_numeric_host_is_verified_by_tls_as_the_address_it_means() {
    use crate::support::{PASSWORD as SMTP_PASSWORD, PASSWORD_ENV as SMTP_PASSWORD_ENV, USER};
    let test = "a_numeric_host_is_verified_by_tls_as_the_address_it_means";
    let Some(server) = SmtpServer::start_or_skip(
        test,
        SmtpServerOptions::new()
            .starttls()
            .user(USER, SMTP_PASSWORD),
    ) else {
        return;
    };
    let toml = crate::support::SmtpSender::new(server.starttls_port())
        .ca_file(&server.ca_file())
        .toml()
        .replace("host = \"127.0.0.1\"", "host = \"2130706433\"");
    assert!(toml.contains("2130706433"), "{toml}");
    let run = Scan2xMail::new(&toml)
        .env(SMTP_PASSWORD_ENV, SMTP_PASSWORD)
        .credentials(USER, SMTP_PASSWORD)
        .run(SEND);
    run.assert_code(0);
    assert_eq!(server.received().len(), 1, "{run}");
}
