//! The sandbox holds against plugins that misbehave on purpose (`tests/plugins/hostile*`):
//! every misdeed fails that one call with a clear reason, and nothing else.
//!
//! | misdeed | what stops it |
//! |---|---|
//! | reaching an ungranted destination (smtp, http, imap) | the gate: `denied`, exit 8, no connection made |
//! | a loop without end | the CPU limit (`cpu_limit_secs`, default 10 s; 1 s here) |
//! | allocating without end | the memory limit (`memory_limit_mb`, default 512; 64 here) |
//! | a trap, a panic | reported as a plugin failure with its message, exit 1 |
//! | a log flood | 200 lines a call, then one warning |
//! | a huge message or receipt | the host's bounds (100 MiB message, 1 MiB receipt) |
//! | files, sockets, environment | not linked: refused at load; the environment is empty |
//! | a tampered file, a foreign cache entry, another WIT version | refused, or recompiled |

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::support::test_plugins::wasm;
use crate::support::{Scan2xMail, toml_string};

const PASSWORD: &str = "hostile-pw-5150";

/// A sender running the hostile plugin with `attack`, granted `smtp://127.0.0.1:{port}`.
fn hostile(attack: &str, port: u16, extra: &str) -> Scan2xMail {
    let settings = format!(
        "[senders.hostile]\nplugin = {}\nhost = \"127.0.0.1\"\nport = {port}\nattack = \"{attack}\"\npassword = {{ env = \"HOSTILE_PASSWORD\" }}\n{extra}\n",
        toml_string(&wasm("hostile").to_string_lossy())
    );
    Scan2xMail::new(&settings)
        .env("HOSTILE_PASSWORD", PASSWORD)
        .secret(PASSWORD)
}

const SEND: [&str; 7] = [
    "send",
    "--to",
    "a@example.test",
    "--subject",
    "x",
    "--text",
    "x",
];

/// A listener on `port + 1` of a free pair: what the plugin reaches for but was not granted.
fn bait() -> (TcpListener, u16) {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if port > 1024 {
            listener.set_nonblocking(true).unwrap();
            return (listener, port - 1);
        }
    }
}

fn nobody_connected(listener: &TcpListener) -> bool {
    matches!(listener.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock)
}

#[test]
fn ungranted_destinations_are_denied_through_every_capability() {
    let (listener, port) = bait();
    for attack in ["smtp-elsewhere", "http-elsewhere", "imap-elsewhere"] {
        let run = hostile(attack, port, "").run(SEND);
        run.assert_code(8);
        assert!(
            run.stderr.contains("is not granted")
                && run.stderr.contains(&format!("127.0.0.1:{}", port + 1)),
            "{attack}: {run}"
        );
    }
    assert!(
        nobody_connected(&listener),
        "a denied destination was connected to"
    );
}

#[test]
fn allow_hosts_widens_and_narrows_the_grants() {
    let (listener, port) = bait();
    // Widened: the destination is now granted, and the plugin reaches it.
    let widened = format!("allow_hosts = [\"smtp://127.0.0.1:{}\"]", port + 1);
    let mail = hostile("smtp-elsewhere", port, &widened);
    let check = mail.run(["check", "--json"]);
    check.assert_code(0);
    let json = check.json();
    assert_eq!(
        json["senders"][0]["grants"][0],
        format!("smtp://127.0.0.1:{}", port + 1),
        "{check}"
    );
    assert!(
        json["senders"][0]["notes"][0]
            .as_str()
            .unwrap_or_default()
            .contains("allow_hosts does not grant"),
        "the plugin's own need is no longer granted and check says so: {check}"
    );
    let run = mail.run(SEND);
    assert_ne!(run.code, 8, "still denied: {run}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while nobody_connected(&listener) {
        assert!(
            Instant::now() < deadline,
            "the widened grant was not used: {run}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Narrowed: its declared destination is not in allow_hosts, so even that is denied.
    let narrowed = "allow_hosts = [\"smtp://mail.example.com:587\"]";
    let run = hostile("huge-message", port, narrowed).run(SEND);
    run.assert_code(8);
}

#[test]
fn a_plugin_stuck_in_a_loop_is_stopped_at_its_cpu_limit() {
    // An unstopped loop would run into the harness's own time-out and fail the test; the
    // message says which limit stopped it. (No wall-clock bound here: the machine may be busy.)
    let run = hostile("loop", 2525, "cpu_limit_secs = 1").run(SEND);
    run.assert_code(1);
    assert!(run.stderr.contains("ran for more than 1 s"), "{run}");
}

#[test]
fn a_looping_plugin_does_not_stop_the_next_send() {
    use scan2x_mail::message::Email;
    use scan2x_mail::runtime::{CallError, Limits, Runtime};
    use scan2x_mail::senders;
    use scan2x_mail::settings::Settings;
    use scan2x_mail::wit::types::{EventKind, Mailbox};

    let dir = tempfile::tempdir().unwrap();
    let plugin = toml_string(&wasm("hostile").to_string_lossy());
    let text = format!(
        "[senders.stuck]\nplugin = {plugin}\nhost = \"127.0.0.1\"\nport = 2525\nattack = \"loop\"\ncpu_limit_secs = 1\n\n[senders.fine]\nplugin = {plugin}\nhost = \"127.0.0.1\"\nport = 2525\nattack = \"none\"\n"
    );
    let settings = Settings::parse(&dir.path().join("s.toml"), &text).unwrap();
    let message = Email {
        event: EventKind::JobOutput,
        message_id: "1@test".into(),
        from: None,
        to: vec![Mailbox {
            name: None,
            address: "a@example.test".into(),
        }],
        cc: vec![],
        bcc: vec![],
        reply_to: vec![],
        subject: "x".into(),
        text_body: None,
        html_body: None,
        attachments: vec![],
    };
    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio.block_on(async {
        // A private key too, so the test never touches the user's own `~/.config`.
        let (cache, key) = (
            dir.path().join("cache"),
            dir.path().join("key").join("cache.key"),
        );
        let cache = scan2x_mail::runtime::cache::ArtifactCache::open(Some(&cache), Some(&key));
        let runtime = Runtime::with_cache(cache, Limits::default()).unwrap();
        let loaded = std::sync::Arc::new(
            runtime
                .load(&settings.senders[0].plugin, None)
                .await
                .unwrap(),
        );
        let stuck = senders::make(&runtime, &settings.senders[0], loaded.clone()).unwrap();
        let fine = senders::make(&runtime, &settings.senders[1], loaded).unwrap();
        let started = Instant::now();
        let result = runtime.send(&stuck, &message).await;
        assert!(
            matches!(&result, Err(CallError::Crashed(m)) if m.contains("ran for more than 1 s")),
            "{result:?}"
        );
        // Generous, so a busy machine can't fail it: an unstopped loop never returns at all.
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "stopped after {:?}",
            started.elapsed()
        );
        let receipt = runtime
            .send(&fine, &message)
            .await
            .expect("the next send works");
        assert_eq!(receipt.detail, "nothing attempted");
    });
}

#[test]
fn a_plugin_that_allocates_without_end_is_stopped_at_its_memory_limit() {
    let run = hostile("alloc", 2525, "memory_limit_mb = 64").run([
        "-vv",
        "send",
        "--to",
        "a@example.test",
        "--subject",
        "x",
    ]);
    run.assert_code(1);
    assert!(run.stderr.contains("memory limit (64 MiB)"), "{run}");
    let peak: u64 = run
        .stderr
        .lines()
        .find_map(|l| l.split("peak resident memory: ").nth(1))
        .and_then(|v| v.trim_end_matches(" MiB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak memory line: {run}"));
    assert!(peak < 400, "the host's peak memory grew to {peak} MiB");
}

#[test]
fn a_trap_and_a_panic_are_plugin_failures_with_their_message() {
    let run = hostile("trap", 2525, "").run(SEND);
    run.assert_code(1);
    assert!(
        run.stderr.contains("plugin failed") && run.stderr.contains("unreachable"),
        "{run}"
    );
    let run = hostile("panic", 2525, "").run(SEND);
    run.assert_code(1);
    assert!(
        run.stderr.contains("hostile plugin panics on purpose"),
        "{run}"
    );
}

#[test]
fn a_log_flood_is_cut_short() {
    let run = hostile("log-flood", 2525, "").run([
        "-v",
        "send",
        "--to",
        "a@example.test",
        "--subject",
        "x",
    ]);
    run.assert_code(0);
    let flood_lines = run
        .stderr
        .lines()
        .filter(|l| l.contains("flood line"))
        .count();
    assert_eq!(flood_lines, 200, "{}", run.stderr.lines().count());
    assert!(run.stderr.contains("plugin log limit reached"), "{run}");
}

#[test]
fn a_huge_message_or_receipt_is_refused_at_the_bound() {
    let run = hostile("huge-message", 2525, "").run(SEND);
    run.assert_code(4);
    assert!(run.stderr.contains("at most 100 MiB"), "{run}");
    let run = hostile("huge-receipt", 2525, "").run(SEND);
    run.assert_code(1);
    assert!(run.stderr.contains("receipt is 2097152 bytes"), "{run}");
}

#[test]
fn a_plugin_sees_no_environment_and_no_arguments() {
    let run = hostile("environment", 2525, "")
        .env("SOME_HOST_SETTING", "visible?")
        .run(["send", "--json", "--to", "a@example.test", "--subject", "x"]);
    run.assert_code(0);
    assert_eq!(
        run.json()["receipt"]["detail"],
        "0 environment variables, 0 arguments",
        "{run}"
    );
}

#[test]
fn a_plugin_that_uses_files_or_sockets_is_refused_at_load() {
    let settings = format!(
        "[senders.snoop]\nplugin = {}\n",
        toml_string(&wasm("hostile-wasi").to_string_lossy())
    );
    let run = Scan2xMail::new(&settings).run(["check"]);
    run.assert_code(3);
    assert!(
        run.stderr.contains("senders.snoop.plugin")
            && (run.stderr.contains("imports wasi:filesystem")
                || run.stderr.contains("imports wasi:sockets")),
        "{run}"
    );
}

#[test]
fn a_plugin_built_for_another_wit_version_is_refused_with_both_versions() {
    let settings = format!(
        "[senders.future]\nplugin = {}\n",
        toml_string(&wasm("future-wit").to_string_lossy())
    );
    let run = Scan2xMail::new(&settings).run(["check"]);
    run.assert_code(3);
    assert!(
        run.stderr.contains("scan2x:mail/mail-sender@9.0.0")
            && run
                .stderr
                .contains(&format!("scan2x:mail@{}", scan2x_mail::wit::WIT_VERSION))
            && run.stderr.contains("rebuild the plugin"),
        "{run}"
    );
}

fn sha256_hex(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn a_tampered_plugin_file_with_a_sha256_pin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("vendor.wasm");
    std::fs::copy(wasm("hostile"), &copy).unwrap();
    let pin = sha256_hex(&copy);
    let settings = format!(
        "[senders.vendor]\nplugin = {}\nsha256 = \"{pin}\"\nhost = \"127.0.0.1\"\nport = 2525\nattack = \"none\"\n",
        toml_string(&copy.to_string_lossy())
    );
    let mail = Scan2xMail::new(&settings);
    mail.run(["check"]).assert_code(0);

    let mut bytes = std::fs::read(&copy).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&copy, &bytes).unwrap();
    let run = mail.run(["check"]);
    run.assert_code(3);
    let actual = sha256_hex(&copy);
    assert!(
        run.stderr.contains(&pin) && run.stderr.contains(&actual),
        "both hashes are named: {run}"
    );
}

#[test]
fn a_corrupted_or_foreign_cache_entry_is_recompiled_not_trusted() {
    let mail = Scan2xMail::new(
        "[senders.relay]\nplugin = \"smtp\"\nhost = \"127.0.0.1\"\nemail_address = \"a@example.test\"\nenable_ssl = false\n",
    );
    mail.run(["-v", "plugins"]).assert_code(0);
    let entries: Vec<_> = std::fs::read_dir(mail.cache_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert!(!entries.is_empty(), "nothing was cached");

    // Corrupted: the bytes no longer match the MAC written beside them.
    for entry in &entries {
        std::fs::write(entry, b"garbage, not a compiled component").unwrap();
    }
    let run = mail.run(["-v", "plugins"]);
    run.assert_code(0);
    assert!(run.stderr.contains("not authenticated"), "{run}");

    // Foreign: garbage with a checksum recomputed beside it; without the key it is refused
    // before wasmtime ever sees it, and recompiled.
    for entry in &entries {
        let garbage = b"foreign bytes that are not a component".to_vec();
        std::fs::write(entry, &garbage).unwrap();
        let mut sidecar = entry.as_os_str().to_owned();
        sidecar.push(".hmac");
        std::fs::write(sidecar, hex::encode(Sha256::digest(&garbage))).unwrap();
    }
    let run = mail.run(["-v", "plugins"]);
    run.assert_code(0);
    assert!(
        run.stderr.contains("not authenticated") && run.stderr.contains("recompiling"),
        "{run}"
    );
    let run = mail.run(["-v", "plugins"]);
    assert!(
        run.stderr.contains("loaded precompiled"),
        "the recompiled entry is used again: {run}"
    );
}
