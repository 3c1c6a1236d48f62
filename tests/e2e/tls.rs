//! Certificates are always verified, on every transport and in every mode: a server whose
//! certificate the system's roots and the sender's `ca_file` don't vouch for is refused during
//! the handshake — `test` and `send` fail naming `ca_file` — before any credential or message is
//! sent, and the server's own record shows it: aiosmtpd heard no AUTH (nothing inside TLS) and
//! took no mail, Dovecot saw no login and stored nothing, the Graph and SendGrid stand-ins (which
//! log a request only after a TLS handshake succeeded) answered no request.
//!
//! | fault | the sender | the server presents |
//! |---|---|---|
//! | [`Fault::NoCaFile`] | no `ca_file` (the system's roots don't know the test CA) | a good leaf |
//! | [`Fault::OtherCa`] | `ca_file` = another CA, with the same name as the one that signed | a good leaf |
//! | [`Fault::WrongName`] | `ca_file` = the CA that signed | a leaf only for `wrong.example` |
//! | [`Fault::Expired`] | `ca_file` = the CA that signed | a leaf for 127.0.0.1 that expired in 2021 |
//!
//! | transport | modes | exit |
//! |---|---|---|
//! | SMTP (aiosmtpd) | STARTTLS; implicit TLS on 465 | 3, `invalid-settings` |
//! | IMAP (Dovecot) | STARTTLS; implicit TLS on 993 | 3, `invalid-settings` |
//! | HTTP: Graph (its token endpoint, the first connection), the SendGrid vendor plugin | https | 3, `invalid-settings`: the plugin only gets a connection error, and the host, which refused the certificate, makes the outcome a settings problem |
//!
//! Each fault is asserted with the reason rustls gives (unknown issuer, bad signature, not valid
//! for the name, expired), so a test can't pass because the handshake failed for some other
//! reason; against a server with a good leaf, a sender trusting its CA then passes `test` (the
//! control). One server per leaf; the fixed implicit-TLS ports (465 for SMTP, 993 for IMAP: the
//! plugins choose implicit TLS by port) take the three leaves in turn in one test, skipped,
//! loudly, when the port can't be bound.
//!
//! These tests must never talk to anything but the servers they start on 127.0.0.1.

use std::path::{Path, PathBuf};

use crate::support::binary::Run;
use crate::support::certs::{Certs, Leaf, WRONG_NAME};
use crate::support::dovecot::{
    DECOY_SENT, Dovecot, DovecotOptions, OUTBOX, SENT_FOLDER, skip_without_dovecot,
};
use crate::support::graph_server::{CLIENT_SECRET, CLIENT_SECRET_ENV, GraphSender, GraphServer};
use crate::support::ports::bindable;
use crate::support::sendgrid_server::{API_KEY, SendGridServer};
use crate::support::smtp_server::skip_without_aiosmtpd;
use crate::support::test_plugins::wasm;
use crate::support::{
    PASSWORD, PASSWORD_ENV, Scan2xMail, SmtpSender, SmtpServer, SmtpServerOptions, USER,
    say_skipped, toml_string,
};

/// One way a server's certificate fails verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    NoCaFile,
    OtherCa,
    WrongName,
    Expired,
}

impl Fault {
    /// The faults shown against a server presenting `leaf`.
    fn against(leaf: Leaf) -> &'static [Fault] {
        match leaf {
            Leaf::Good => &[Fault::NoCaFile, Fault::OtherCa],
            Leaf::WrongName => &[Fault::WrongName],
            Leaf::Expired => &[Fault::Expired],
        }
    }

    /// The name of the sender that has this fault.
    fn sender(self) -> &'static str {
        match self {
            Fault::NoCaFile => "no_ca_file",
            Fault::OtherCa => "other_ca",
            Fault::WrongName => "wrong_name",
            Fault::Expired => "expired",
        }
    }

    /// The sender's `ca_file`, given the CA that signed the server's leaf and an unrelated one.
    fn ca_file(self, signer: &Path, unrelated: &Path) -> Option<PathBuf> {
        match self {
            Fault::NoCaFile => None,
            Fault::OtherCa => Some(unrelated.to_path_buf()),
            Fault::WrongName | Fault::Expired => Some(signer.to_path_buf()),
        }
    }

    /// Words of rustls' reason that must be in the error: the handshake failed for this fault.
    fn reason(self) -> &'static str {
        match self {
            Fault::NoCaFile => "UnknownIssuer",
            // The other CA has the leaf's issuer name, so it is tried, and its key did not sign.
            Fault::OtherCa => "BadSignature",
            Fault::WrongName => "not valid for name",
            Fault::Expired => "certificate expired",
        }
    }
}

/// A server of one transport, presenting one leaf, as the faults need it.
trait Target {
    /// What it is, for assertion messages ("SMTP STARTTLS on 127.0.0.1:40123").
    fn what(&self) -> String;
    /// The CA that signed the leaf it presents.
    fn signer(&self) -> PathBuf;
    /// The settings table of a sender `name` of this server trusting `ca_file` (and the system).
    fn sender(&self, name: &str, ca_file: Option<&Path>) -> String;
    /// A runner for `settings`, with the sender's secret in its environment and checked for.
    fn scan2x(&self, settings: &str) -> Scan2xMail;
    /// What the server's own record shows got through: a credential, a request, a message.
    /// Empty when nothing did.
    fn got_through(&self) -> Vec<String>;
    /// How many TLS handshakes the server's record shows begun, where it shows them.
    fn handshakes(&self) -> Option<usize> {
        None
    }
}

/// The arguments of `test` and `send` through sender `name`, with `--json`.
fn commands(name: &str) -> [Vec<String>; 2] {
    let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    [
        args(&["test", name, "--json"]),
        args(&[
            "send",
            "--sender",
            name,
            "--json",
            "--to",
            "someone@example.test",
            "--subject",
            "never sent",
            "--text",
            "never sent",
        ]),
    ]
}

/// The outcome of a refused certificate: its exit code and error kind.
#[derive(Clone, Copy, Debug)]
struct Refusal {
    code: i32,
    kind: &'static str,
}

/// What the README promises for a certificate nothing trusts: a settings problem.
const SETTINGS_ERROR: Refusal = Refusal {
    code: 3,
    kind: "invalid-settings",
};

/// Why `run` is not the refusal `fault` must get: `expected`'s exit code and kind, a message
/// naming `ca_file` and giving rustls' reason.
fn not_refused(run: &Run, fault: Fault, expected: Refusal) -> Option<String> {
    let Refusal { code, kind } = expected;
    if run.code != code {
        return Some(format!("exit {} instead of {code} ({kind})", run.code));
    }
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&run.stdout) else {
        return Some("stdout is not JSON".to_string());
    };
    let found = json["error"]["kind"].as_str().unwrap_or_default();
    let message = json["error"]["message"].as_str().unwrap_or_default();
    if found != kind {
        return Some(format!("error kind {found:?} instead of {kind:?}"));
    }
    if !message.contains("ca_file") {
        return Some("the message does not name ca_file".to_string());
    }
    if !message.contains(fault.reason()) {
        return Some(format!(
            "the message does not give the reason {:?}",
            fault.reason()
        ));
    }
    None
}

/// Every fault a server presenting `target`'s leaf can show: `test` and `send` through a sender
/// with that fault are refused as `expected`, naming `ca_file`, and the server's record shows
/// the handshakes and nothing after them. Against a good leaf, a sender trusting its CA then
/// passes `test`.
fn assert_refused_before_credentials(target: &dyn Target, leaf: Leaf, expected: Refusal) {
    let faults = Fault::against(leaf);
    // Another CA, with the same name as the signer's: its subject is the leaf's issuer, its key
    // did not sign it.
    let unrelated = Certs::generate();
    let signer = target.signer();
    let mut settings = String::new();
    for fault in faults {
        settings += &target.sender(
            fault.sender(),
            fault.ca_file(&signer, &unrelated.ca()).as_deref(),
        );
        settings.push('\n');
    }
    let control = leaf == Leaf::Good;
    if control {
        settings += &target.sender("trusted", Some(&signer));
    }
    let mail = target.scan2x(&settings);

    let mut wrong = Vec::new();
    let mut runs = 0;
    for &fault in faults {
        for args in commands(fault.sender()) {
            let run = mail.run(&args);
            runs += 1;
            if let Some(why) = not_refused(&run, fault, expected) {
                wrong.push(format!("{fault:?}: {why}: {run}"));
            }
        }
    }
    if let Some(seen) = target.handshakes()
        && seen < runs
    {
        wrong.push(format!(
            "the server saw {seen} TLS handshake(s) begin for {runs} runs"
        ));
    }
    let through = target.got_through();
    if !through.is_empty() {
        wrong.push(format!(
            "the server's record shows what got through:\n  {}",
            through.join("\n  ")
        ));
    }
    assert!(
        wrong.is_empty(),
        "{}, presenting a {leaf:?} leaf: a certificate nothing trusts was not refused before any \
         credential:\n\n{}",
        target.what(),
        wrong.join("\n\n")
    );

    if control {
        // The same server, trusted: it was the certificate that was refused, not the server.
        let run = mail.run(["test", "trusted", "--json"]);
        assert_eq!(
            run.code,
            0,
            "{}: the control, a sender trusting the server's CA, failed: {run}",
            target.what()
        );
    }
}

// ---- SMTP (aiosmtpd) ----

struct Smtp {
    server: SmtpServer,
    port: u16,
    implicit: bool,
}

impl Smtp {
    fn options() -> SmtpServerOptions {
        SmtpServerOptions::new().user(USER, PASSWORD)
    }

    /// A server with a STARTTLS port presenting `leaf`, or `None` (said) without aiosmtpd.
    fn starttls(test: &str, leaf: Leaf) -> Option<Smtp> {
        if skip_without_aiosmtpd(test) {
            return None;
        }
        let server =
            SmtpServer::start_with_certs(Self::options().starttls(), Certs::generate_with(leaf))
                .unwrap_or_else(|e| panic!("{test}: {e}"));
        let port = server.starttls_port();
        Some(Smtp {
            server,
            port,
            implicit: false,
        })
    }

    /// A server on 465 presenting `leaf`, or `None` when 465 can't be had (said).
    fn implicit(test: &str, leaf: Leaf) -> Option<Smtp> {
        let skip = |why: &str| {
            say_skipped(
                test,
                &format!(
                    "127.0.0.1:465 {why}; the SMTP plugin chooses implicit TLS only on port 465"
                ),
            )
        };
        if bindable(465).is_none() {
            skip("can't be bound here (taken, or binding it needs privileges)");
            return None;
        }
        if skip_without_aiosmtpd(test) {
            return None;
        }
        match SmtpServer::start_with_certs(
            Self::options().smtps_on(465),
            Certs::generate_with(leaf),
        ) {
            Ok(server) => Some(Smtp {
                server,
                port: 465,
                implicit: true,
            }),
            Err(e) if e.contains("address already in use") => {
                skip("was taken by another process just now");
                None
            }
            Err(e) => panic!("{test}: {e}"),
        }
    }
}

impl Target for Smtp {
    fn what(&self) -> String {
        let mode = if self.implicit {
            "implicit TLS"
        } else {
            "STARTTLS"
        };
        format!("SMTP {mode} on 127.0.0.1:{}", self.port)
    }

    fn signer(&self) -> PathBuf {
        self.server.ca_file()
    }

    fn sender(&self, name: &str, ca_file: Option<&Path>) -> String {
        let sender = SmtpSender::new(self.port).named(name);
        match ca_file {
            Some(ca) => sender.ca_file(ca).toml(),
            None => sender.toml(),
        }
    }

    fn scan2x(&self, settings: &str) -> Scan2xMail {
        Scan2xMail::new(settings)
            .env(PASSWORD_ENV, PASSWORD)
            .credentials(USER, PASSWORD)
    }

    fn got_through(&self) -> Vec<String> {
        let mut through: Vec<String> = self
            .server
            .commands()
            .into_iter()
            .filter(|c| c.tls || c.is_auth_or_mail())
            .map(|c| {
                let tls = if c.tls { "inside TLS" } else { "in clear" };
                format!("heard {tls} on conn {}: {}", c.conn, c.line)
            })
            .collect();
        through.extend(
            self.server
                .received()
                .iter()
                .map(|r| format!("took a message from {}", r.mail_from)),
        );
        through
    }

    /// On the STARTTLS port, each STARTTLS heard (in clear) begins one; implicit TLS logs none.
    fn handshakes(&self) -> Option<usize> {
        (!self.implicit).then(|| {
            self.server
                .commands_on(self.port)
                .iter()
                .filter(|c| c.verb() == "STARTTLS")
                .count()
        })
    }
}

#[test]
fn smtp_starttls_refuses_a_certificate_from_a_ca_the_sender_does_not_trust() {
    let test = "smtp_starttls_refuses_a_certificate_from_a_ca_the_sender_does_not_trust";
    let Some(server) = Smtp::starttls(test, Leaf::Good) else {
        return;
    };
    assert_refused_before_credentials(&server, Leaf::Good, SETTINGS_ERROR);
}

#[test]
fn smtp_starttls_refuses_a_leaf_for_another_name() {
    let test = "smtp_starttls_refuses_a_leaf_for_another_name";
    let Some(server) = Smtp::starttls(test, Leaf::WrongName) else {
        return;
    };
    assert_refused_before_credentials(&server, Leaf::WrongName, SETTINGS_ERROR);
}

#[test]
fn smtp_starttls_refuses_an_expired_leaf() {
    let test = "smtp_starttls_refuses_an_expired_leaf";
    let Some(server) = Smtp::starttls(test, Leaf::Expired) else {
        return;
    };
    assert_refused_before_credentials(&server, Leaf::Expired, SETTINGS_ERROR);
}

#[test]
fn smtp_implicit_tls_on_465_refuses_every_certificate_fault() {
    let test = "smtp_implicit_tls_on_465_refuses_every_certificate_fault";
    // 465 is one port: the three leaves take it in turn, and no other test of this binary.
    let _port = crate::support::ports::hold(465);
    for leaf in [Leaf::Good, Leaf::WrongName, Leaf::Expired] {
        let Some(server) = Smtp::implicit(test, leaf) else {
            return;
        };
        assert_refused_before_credentials(&server, leaf, SETTINGS_ERROR);
    }
}

// ---- IMAP (Dovecot) ----

const IMAP_PASSWORD: &str = "imap-tls-Pa55-w0rd-Kq";
const IMAP_PASSWORD_ENV: &str = "IMAP_PASSWORD";

struct Imap {
    dovecot: Dovecot,
    port: u16,
    implicit: bool,
}

impl Imap {
    fn options() -> DovecotOptions {
        DovecotOptions::new().user(USER, IMAP_PASSWORD)
    }

    /// Dovecot presenting `leaf`, on its STARTTLS port, or `None` (said) without Dovecot.
    fn starttls(test: &str, leaf: Leaf) -> Option<Imap> {
        if skip_without_dovecot(test) {
            return None;
        }
        let dovecot = Dovecot::start_with_certs(Self::options(), Certs::generate_with(leaf))
            .unwrap_or_else(|e| panic!("{test}: {e}"));
        let port = dovecot.starttls_port();
        Some(Imap {
            dovecot,
            port,
            implicit: false,
        })
    }

    /// Dovecot presenting `leaf` on 993, or `None` when 993 can't be had (said).
    fn implicit(test: &str, leaf: Leaf) -> Option<Imap> {
        let skip = |why: &str| {
            say_skipped(
                test,
                &format!(
                    "127.0.0.1:993 {why}; the IMAP plugin chooses implicit TLS only on port 993"
                ),
            )
        };
        if bindable(993).is_none() {
            skip("can't be bound here (taken, or binding it needs privileges)");
            return None;
        }
        if skip_without_dovecot(test) {
            return None;
        }
        match Dovecot::start_with_certs(
            Self::options().implicit_tls_on(993),
            Certs::generate_with(leaf),
        ) {
            Ok(dovecot) => Some(Imap {
                dovecot,
                port: 993,
                implicit: true,
            }),
            Err(e) if e.to_ascii_lowercase().contains("address already in use") => {
                skip("was taken by another process just now");
                None
            }
            Err(e) => panic!("{test}: {e}"),
        }
    }
}

impl Target for Imap {
    fn what(&self) -> String {
        let mode = if self.implicit {
            "implicit TLS"
        } else {
            "STARTTLS"
        };
        format!("IMAP {mode} on 127.0.0.1:{}", self.port)
    }

    fn signer(&self) -> PathBuf {
        self.dovecot.ca_file()
    }

    fn sender(&self, name: &str, ca_file: Option<&Path>) -> String {
        let mut toml = format!(
            "[senders.{name}]\nplugin = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\n\
             enable_ssl = true\nusername = {}\npassword = {{ env = {} }}\nfrom_email = {}\n",
            self.port,
            toml_string(USER),
            toml_string(IMAP_PASSWORD_ENV),
            toml_string("scanner@example.test"),
        );
        if let Some(ca) = ca_file {
            toml += &format!("ca_file = {}\n", toml_string(&ca.to_string_lossy()));
        }
        toml
    }

    fn scan2x(&self, settings: &str) -> Scan2xMail {
        Scan2xMail::new(settings)
            .env(IMAP_PASSWORD_ENV, IMAP_PASSWORD)
            .credentials(USER, IMAP_PASSWORD)
    }

    fn got_through(&self) -> Vec<String> {
        // Dovecot names the user on every login, and on every failed attempt.
        let mut through: Vec<String> = self
            .dovecot
            .log()
            .lines()
            .filter(|l| l.contains("Login: ") || l.contains(&format!("user=<{USER}>")))
            .map(|l| format!("logged: {l}"))
            .collect();
        for folder in [SENT_FOLDER, DECOY_SENT, OUTBOX, "INBOX"] {
            let stored = self.dovecot.stored(USER, folder).len();
            if stored > 0 {
                through.push(format!("stored {stored} message(s) in {folder:?}"));
            }
        }
        through
    }
}

#[test]
fn imap_starttls_refuses_a_certificate_from_a_ca_the_sender_does_not_trust() {
    let test = "imap_starttls_refuses_a_certificate_from_a_ca_the_sender_does_not_trust";
    let Some(server) = Imap::starttls(test, Leaf::Good) else {
        return;
    };
    assert_refused_before_credentials(&server, Leaf::Good, SETTINGS_ERROR);
}

#[test]
fn imap_starttls_refuses_a_leaf_for_another_name() {
    let test = "imap_starttls_refuses_a_leaf_for_another_name";
    let Some(server) = Imap::starttls(test, Leaf::WrongName) else {
        return;
    };
    assert_refused_before_credentials(&server, Leaf::WrongName, SETTINGS_ERROR);
}

#[test]
fn imap_starttls_refuses_an_expired_leaf() {
    let test = "imap_starttls_refuses_an_expired_leaf";
    let Some(server) = Imap::starttls(test, Leaf::Expired) else {
        return;
    };
    assert_refused_before_credentials(&server, Leaf::Expired, SETTINGS_ERROR);
}

#[test]
fn imap_implicit_tls_on_993_refuses_every_certificate_fault() {
    let test = "imap_implicit_tls_on_993_refuses_every_certificate_fault";
    // 993 is one port: the three leaves take it in turn, and no other test of this binary.
    let _port = crate::support::ports::hold(993);
    for leaf in [Leaf::Good, Leaf::WrongName, Leaf::Expired] {
        let Some(server) = Imap::implicit(test, leaf) else {
            return;
        };
        assert_refused_before_credentials(&server, leaf, SETTINGS_ERROR);
    }
}

// ---- Microsoft Graph (the stand-in; the token endpoint is the first TLS connection) ----

struct Graph(GraphServer);

impl Graph {
    fn start(leaf: Leaf) -> Graph {
        Graph(
            GraphServer::start_with_certs(3599, Certs::generate_with(leaf))
                .unwrap_or_else(|e| panic!("{e}")),
        )
    }
}

impl Target for Graph {
    fn what(&self) -> String {
        format!(
            "the Graph stand-in's token endpoint {}",
            self.0.authority_url()
        )
    }

    fn signer(&self) -> PathBuf {
        self.0.ca_file()
    }

    fn sender(&self, name: &str, ca_file: Option<&Path>) -> String {
        let mut sender = GraphSender::new(&self.0);
        sender.name = name.to_string();
        match ca_file {
            Some(ca) => {
                sender.ca_file = ca.to_path_buf();
                sender.toml()
            }
            // GraphSender always writes one: leave it out.
            None => sender
                .toml()
                .lines()
                .filter(|l| !l.starts_with("ca_file ="))
                .map(|l| format!("{l}\n"))
                .collect(),
        }
    }

    fn scan2x(&self, settings: &str) -> Scan2xMail {
        Scan2xMail::new(settings)
            .env(CLIENT_SECRET_ENV, CLIENT_SECRET)
            .secret(CLIENT_SECRET)
    }

    fn got_through(&self) -> Vec<String> {
        // A request is logged only once its TLS handshake succeeded.
        let mut through: Vec<String> = self
            .0
            .requests()
            .iter()
            .map(|r| format!("answered {} {} {} [{}]", r.origin, r.method, r.path, r.op))
            .collect();
        through.extend(
            self.0
                .sent()
                .iter()
                .map(|s| format!("sent a message for {}", s.user)),
        );
        through
    }
}

#[test]
fn graph_refuses_a_certificate_from_a_ca_the_sender_does_not_trust() {
    assert_refused_before_credentials(&Graph::start(Leaf::Good), Leaf::Good, SETTINGS_ERROR);
}

#[test]
fn graph_refuses_a_leaf_for_another_name() {
    assert_refused_before_credentials(
        &Graph::start(Leaf::WrongName),
        Leaf::WrongName,
        SETTINGS_ERROR,
    );
}

#[test]
fn graph_refuses_an_expired_leaf() {
    assert_refused_before_credentials(&Graph::start(Leaf::Expired), Leaf::Expired, SETTINGS_ERROR);
}

// ---- the vendor example plugin (SendGrid stand-in) ----

const SENDGRID_KEY_ENV: &str = "SENDGRID_API_KEY";

struct SendGrid(SendGridServer);

impl SendGrid {
    fn start(leaf: Leaf) -> SendGrid {
        SendGrid(SendGridServer::start_with_certs(Certs::generate_with(leaf)))
    }
}

impl Target for SendGrid {
    fn what(&self) -> String {
        format!(
            "the SendGrid stand-in {} (the vendor plugin)",
            self.0.api_url()
        )
    }

    fn signer(&self) -> PathBuf {
        self.0.ca_file()
    }

    fn sender(&self, name: &str, ca_file: Option<&Path>) -> String {
        let mut toml = format!(
            "[senders.{name}]\nplugin = {}\napi_key = {{ env = {} }}\n\
             from_email = \"scans@example.com\"\napi_url = {}\n",
            toml_string(&wasm("sendgrid").to_string_lossy()),
            toml_string(SENDGRID_KEY_ENV),
            toml_string(&self.0.api_url()),
        );
        if let Some(ca) = ca_file {
            toml += &format!("ca_file = {}\n", toml_string(&ca.to_string_lossy()));
        }
        toml
    }

    fn scan2x(&self, settings: &str) -> Scan2xMail {
        Scan2xMail::new(settings)
            .env(SENDGRID_KEY_ENV, API_KEY)
            .secret(API_KEY)
    }

    fn got_through(&self) -> Vec<String> {
        let mut through: Vec<String> = self
            .0
            .requests()
            .iter()
            .map(|r| format!("answered {} {} -> {}", r.method, r.path, r.status))
            .collect();
        through.extend(
            self.0
                .sent()
                .iter()
                .map(|s| format!("accepted message {}", s.message_id)),
        );
        through
    }
}

#[test]
fn sendgrid_vendor_plugin_refuses_a_certificate_from_a_ca_the_sender_does_not_trust() {
    assert_refused_before_credentials(&SendGrid::start(Leaf::Good), Leaf::Good, SETTINGS_ERROR);
}

#[test]
fn sendgrid_vendor_plugin_refuses_a_leaf_for_another_name() {
    let server = SendGrid::start(Leaf::WrongName);
    assert_refused_before_credentials(&server, Leaf::WrongName, SETTINGS_ERROR);
}

#[test]
fn sendgrid_vendor_plugin_refuses_an_expired_leaf() {
    assert_refused_before_credentials(
        &SendGrid::start(Leaf::Expired),
        Leaf::Expired,
        SETTINGS_ERROR,
    );
}

/// The faulty leaves are faulty in exactly the one way they claim, by rustls' own verifier (as
/// the host's, on ring): a good leaf verifies for 127.0.0.1 against its CA and no other; the
/// wrong-name leaf verifies for [`WRONG_NAME`] only; the expired leaf verified in 2020 passes.
#[test]
fn the_faulty_leaves_fail_verification_for_their_one_fault_only() {
    use std::sync::Arc;
    use std::time::Duration;

    use rustls::client::danger::ServerCertVerifier as _;
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    let verify = |ca: &Path, certs: &Certs, name: &str, at: UnixTime| {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(ca).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        let leaf = CertificateDer::from_pem_file(certs.cert()).unwrap();
        verifier
            .verify_server_cert(&leaf, &[], &ServerName::try_from(name).unwrap(), &[], at)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let now = UnixTime::now();
    // 2020-06-01, inside the expired leaf's validity.
    let in_2020 = UnixTime::since_unix_epoch(Duration::from_secs(1_590_969_600));

    let good = Certs::generate();
    let other = Certs::generate();
    assert_eq!(verify(&good.ca(), &good, "127.0.0.1", now), Ok(()));
    assert_eq!(verify(&good.ca(), &good, "localhost", now), Ok(()));
    let unknown = verify(&other.ca(), &good, "127.0.0.1", now).unwrap_err();
    assert!(unknown.contains(Fault::OtherCa.reason()), "{unknown}");

    let wrong = Certs::generate_with(Leaf::WrongName);
    assert_eq!(verify(&wrong.ca(), &wrong, WRONG_NAME, now), Ok(()));
    for name in ["127.0.0.1", "localhost"] {
        let e = verify(&wrong.ca(), &wrong, name, now).unwrap_err();
        assert!(e.contains(Fault::WrongName.reason()), "{name}: {e}");
    }

    let expired = Certs::generate_with(Leaf::Expired);
    assert_eq!(
        verify(&expired.ca(), &expired, "127.0.0.1", in_2020),
        Ok(())
    );
    let e = verify(&expired.ca(), &expired, "127.0.0.1", now).unwrap_err();
    assert!(e.contains(Fault::Expired.reason()), "{e}");
}
