//! `cargo xtask test`: every test of the workspace, end-to-end tests included, on a machine
//! that has only rustup and python3: adds the wasm target and makes the test Python (a venv
//! with aiosmtpd) first, then runs `cargo test --workspace` with `SCAN2X_TEST_PYTHON` set.
//!
//! Never installs Python packages outside `target/test-python`.

use anyhow::Result;

use crate::{process, python, toolchain};

pub fn run(cargo_test_args: &[String]) -> Result<()> {
    toolchain::ensure_wasm_target()?;
    let python = python::ensure_test_python()?;
    println!("SCAN2X_TEST_PYTHON={}", python.display());
    process::run(
        process::cargo()
            .args(["test", "--workspace"])
            .args(cargo_test_args)
            .env("SCAN2X_TEST_PYTHON", &python),
    )
}
