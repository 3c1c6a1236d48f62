//! The precompiled-plugin cache: a cold cache compiles the plugin and stores it; the next run
//! with the same cache loads the stored code and compiles nothing.
//!
//! Uses only `plugins -v` (the info log says `compiled … cached …` or `loaded precompiled …`);
//! needs no server and must never open a connection.

use std::fs;

use crate::support::{PASSWORD, PASSWORD_ENV, Scan2xMail, SmtpSender, USER};

/// Whether a log mentions compiling afresh: "compiled" not as part of "precompiled".
fn compiled_afresh(log: &str) -> bool {
    log.match_indices("compiled")
        .any(|(at, _)| !log[..at].ends_with("pre"))
}

#[test]
fn compiled_afresh_ignores_precompiled() {
    assert!(compiled_afresh(
        "plugin smtp: compiled in 1.2s, cached at x"
    ));
    assert!(!compiled_afresh("plugin smtp: loaded precompiled x"));
}

#[test]
fn plugin_is_compiled_once_then_loaded_precompiled() {
    let mail = Scan2xMail::new(&SmtpSender::new(10587).toml())
        .env(PASSWORD_ENV, PASSWORD)
        .credentials(USER, PASSWORD);

    let cold = mail.run(["-v", "plugins"]);
    cold.assert_code(0);
    assert!(
        compiled_afresh(&cold.stderr),
        "a cold cache should compile: {cold}"
    );
    let cached = fs::read_dir(mail.cache_dir())
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert!(cached > 0, "nothing was stored in the cache dir: {cold}");

    let warm = mail.run(["-v", "plugins"]);
    warm.assert_code(0);
    assert!(
        warm.stderr.contains("loaded precompiled"),
        "a warm cache should be used: {warm}"
    );
    assert!(
        !compiled_afresh(&warm.stderr),
        "a warm cache should not compile again: {warm}"
    );
}
