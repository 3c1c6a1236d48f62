//! `cargo xtask test`: every test of the workspace, end-to-end tests included, on a machine
//! that has only rustup and python3: adds the wasm target and makes the test Python (a venv
//! with aiosmtpd) first, then runs `cargo test --workspace` with `SCAN2X_TEST_PYTHON` set.
//!
//! The benchmark harness is left out (`--exclude scan2x-mail-bench`): it has no tests of its
//! own, so building it would only make a test run longer; clippy still checks it.
//!
//! Every test that can't run here says so and records it in [`SKIP_LOG`]; the task ends with
//! their count and reasons. Under `CI` a skip fails its test, and any recorded skip fails the
//! task.
//!
//! Never installs Python packages outside `target/test-python`.

use anyhow::{Context, Result, bail};

use crate::{process, python, toolchain};

/// Where the tests record their skips, under the target directory; named to them by
/// `SCAN2X_TEST_SKIP_LOG`.
const SKIP_LOG: &str = "test-skips.log";

pub fn run(cargo_test_args: &[String]) -> Result<()> {
    toolchain::ensure_wasm_target()?;
    let python = python::ensure_test_python()?;
    println!("SCAN2X_TEST_PYTHON={}", python.display());
    let skip_log = process::target_dir().join(SKIP_LOG);
    match std::fs::remove_file(&skip_log) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("remove {}", skip_log.display()));
        }
        _ => {}
    }
    let tested = process::run(
        process::cargo()
            .args(["test", "--workspace", "--exclude", "scan2x-mail-bench"])
            .args(cargo_test_args)
            .env("SCAN2X_TEST_PYTHON", &python)
            .env("SCAN2X_TEST_SKIP_LOG", &skip_log),
    );
    let skips = match std::fs::read_to_string(&skip_log) {
        Ok(text) => text.lines().map(str::to_owned).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("read {}", skip_log.display())),
    };
    println!("\nskipped: {} tests", skips.len());
    for skip in &skips {
        println!("  {skip}");
    }
    tested?;
    if !skips.is_empty() && std::env::var_os("CI").is_some() {
        bail!(
            "{} tests were skipped under CI, where every test must run",
            skips.len()
        );
    }
    Ok(())
}
