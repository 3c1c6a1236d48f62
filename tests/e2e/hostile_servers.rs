//! The host against SMTP servers that misbehave on purpose (`tests/servers/hostile_smtp.py`,
//! Python standard library only): a reply that never ends costs a fixed few KiB, bytes injected
//! after the `220` to STARTTLS stop the send before any credential, and a plugin's bare-LF `.`
//! line is dot-stuffed, not taken as the end of DATA.
//!
//! These tests must never talk to anything but the hostile server on 127.0.0.1.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::support::certs::Certs;
use crate::support::smtp_server::python;
use crate::support::test_plugins::wasm;
use crate::support::{PASSWORD, PASSWORD_ENV, Scan2xMail, SmtpSender, USER, base64, toml_string};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/servers/hostile_smtp.py"
);

/// The most an endless reply may write here: far past any cap, and small enough that a host
/// without the cap survives it (it buffers the whole line) on a test machine.
const ENDLESS_LIMIT: u64 = 512 << 20;
/// The host's peak resident memory must stay under this under attack.
const MAX_PEAK_MIB: u64 = 100;

const SEND: [&str; 8] = [
    "-vv",
    "send",
    "--to",
    "b@example.test",
    "--subject",
    "x",
    "--text",
    "x",
];

/// One hostile server in one mode, stopped when dropped.
struct HostileSmtp {
    child: Child,
    dir: TempDir,
    port: u16,
    certs: Certs,
}

impl HostileSmtp {
    fn start(mode: &str) -> HostileSmtp {
        let certs = Certs::generate();
        let dir = tempfile::Builder::new()
            .prefix("scan2x-hostile-smtp-")
            .tempdir()
            .unwrap();
        let mut child = Command::new(python())
            .arg(SCRIPT)
            .args(["--mode", mode, "--dir"])
            .arg(dir.path())
            .arg("--cert")
            .arg(certs.cert())
            .arg("--key")
            .arg(certs.key())
            .args(["--limit", &ENDLESS_LIMIT.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {} {SCRIPT}: {e}", python()));
        let rx = crate::support::stdout_lines(&mut child);
        let port = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line
                .strip_prefix("READY ")
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("the hostile SMTP server said {line:?}, not READY")),
            Err(e) => {
                let _ = child.kill();
                panic!("the hostile SMTP server did not start: {e}");
            }
        };
        HostileSmtp {
            child,
            dir,
            port,
            certs,
        }
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every command line the server heard, as (over TLS, line).
    fn commands(&self) -> Vec<(bool, String)> {
        let text = fs::read_to_string(self.dir().join("commands.log")).unwrap_or_default();
        text.lines()
            .map(|line| {
                let v: Value = serde_json::from_str(line).unwrap();
                (
                    v["tls"].as_bool().unwrap(),
                    v["line"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// The raw DATA of each message the server took, in order.
    fn data(&self) -> Vec<Vec<u8>> {
        (1..)
            .map(|n| self.dir().join(format!("data-{n}.bin")))
            .take_while(|path| path.exists())
            .map(|path| fs::read(path).unwrap())
            .collect()
    }

    /// A STARTTLS sender (the default) with a login, trusting the server's CA.
    fn sender(&self) -> Scan2xMail {
        let sender = SmtpSender::new(self.port).ca_file(&self.certs.ca());
        Scan2xMail::new(&sender.toml())
            .env(PASSWORD_ENV, PASSWORD)
            .credentials(USER, PASSWORD)
    }
}

impl Drop for HostileSmtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `peak resident memory: N MiB` the binary logs at `-vv`.
fn peak_mib(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|line| {
            let (_, rest) = line.split_once("peak resident memory: ")?;
            rest.trim().strip_suffix(" MiB")?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no peak resident memory in stderr:\n{stderr}"))
}

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
    let peak = peak_mib(&run.stderr);
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
    let peak = peak_mib(&run.stderr);
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
