//! `scan2x-mail plugins`: the built-in SMTP plugin is listed with what an administrator needs
//! to judge it — id, version, where it comes from, its sha256 and its settings keys — in text
//! and as JSON a program can read.
//!
//! These tests need no server and must never open a connection.

use serde_json::Value;

use crate::support::{PASSWORD, PASSWORD_ENV, Scan2xMail, SmtpSender, USER};

const SMTP_SETTINGS: &[&str] = &[
    "host",
    "port",
    "enable_ssl",
    "username",
    "password",
    "email_address",
];

fn scan2x() -> Scan2xMail {
    Scan2xMail::new(&SmtpSender::new(10587).toml())
        .env(PASSWORD_ENV, PASSWORD)
        .credentials(USER, PASSWORD)
}

fn has_sha256_hex(text: &str) -> bool {
    text.split(|c: char| !c.is_ascii_hexdigit())
        .any(|word| word.len() == 64)
}

#[test]
fn plugins_lists_smtp_with_its_settings_keys() {
    let run = scan2x().run(["plugins"]);
    run.assert_code(0);
    assert!(run.stdout.contains("smtp"), "{run}");
    for key in SMTP_SETTINGS {
        assert!(run.stdout.contains(key), "setting {key} not listed: {run}");
    }
    assert!(has_sha256_hex(&run.stdout), "no sha256 listed: {run}");
    assert!(run.stdout.contains("built-in"), "source not listed: {run}");
}

/// The first JSON object anywhere in `value` whose "id" is `id`.
fn find_by_id<'v>(value: &'v Value, id: &str) -> Option<&'v Value> {
    match value {
        Value::Object(map) if map.get("id").and_then(Value::as_str) == Some(id) => Some(value),
        Value::Object(map) => map.values().find_map(|v| find_by_id(v, id)),
        Value::Array(list) => list.iter().find_map(|v| find_by_id(v, id)),
        _ => None,
    }
}

#[test]
fn plugins_json_is_valid_json_describing_smtp() {
    let run = scan2x().run(["plugins", "--json"]);
    run.assert_code(0);
    let json = run.json();
    let smtp = find_by_id(&json, "smtp").unwrap_or_else(|| panic!("no plugin with id smtp: {run}"));
    let keys: Vec<String> = match &smtp["settings"] {
        Value::Array(specs) => specs
            .iter()
            .filter_map(|s| s["key"].as_str().map(str::to_string))
            .collect(),
        Value::Object(map) => map.keys().cloned().collect(),
        other => panic!("settings is neither a list nor a table: {other}"),
    };
    for key in SMTP_SETTINGS {
        assert!(
            keys.iter().any(|k| k == key),
            "setting {key} missing: {smtp}"
        );
    }
    assert!(has_sha256_hex(&smtp.to_string()), "no sha256: {smtp}");
}

#[test]
fn a_full_standard_output_is_an_error_and_an_exit_code_not_a_panic() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        crate::support::say_skipped(
            "a_full_standard_output_is_an_error_and_an_exit_code_not_a_panic",
            "no /dev/full on this system",
        );
        return;
    };
    // No settings file: `plugins` lists the built-in plugins, many lines for a full stdout.
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_scan2x-mail"))
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .arg("plugins")
        .current_dir(dir.path())
        .env_remove("SCAN2X_MAIL_CONFIG")
        .env_remove("SCAN2X_MAIL_CACHE_DIR")
        .env(
            "SCAN2X_MAIL_CACHE_KEY_FILE",
            dir.path().join("key").join("cache.key"),
        )
        .stdout(full)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot write to standard output"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
