//! The plugins the tests install as files: those built only for the tests (`tests/plugins/*`)
//! and the example vendor plugin (`examples/sendgrid`). Compiled for `wasm32-wasip2` once per
//! test run, into their own target folder, by a nested cargo build — after the `scan2x-mail`
//! binary under test was built, which never embeds them; a test points a settings file at the
//! `.wasm`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The test plugins: (name used by tests, cargo package).
const PLUGINS: &[(&str, &str)] = &[
    ("hostile", "scan2x-mail-test-hostile"),
    ("hostile-wasi", "scan2x-mail-test-hostile-wasi"),
    ("future-wit", "scan2x-mail-test-future-wit"),
    ("sendgrid", "scan2x-mail-example-sendgrid"),
    // The built-in SMTP plugin as a vendor would ship it: the same id, installed as a file.
    ("smtp-vendor-build", "scan2x-mail-plugin-smtp"),
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The built `.wasm` of test plugin `name`; builds them all on first use.
pub fn wasm(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = BUILT
        .get_or_init(build_all)
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"));
    let (_, package) = PLUGINS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no test plugin named {name}"));
    dir.join(format!("{}.wasm", package.replace('-', "_")))
}

fn build_all() -> Result<PathBuf, String> {
    let root = workspace();
    let target_dir = root.join("target").join("test-plugins");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir)
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    for (_, package) in PLUGINS {
        command.args(["--package", package]);
    }
    let output = command
        .output()
        .map_err(|e| format!("could not run cargo to build the test plugins: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "building the test plugins failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(target_dir.join("wasm32-wasip2").join("release"))
}
