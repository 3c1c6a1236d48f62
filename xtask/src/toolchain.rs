//! The Rust toolchain pieces the build needs: the `wasm32-wasip2` target the plugins compile to.
//!
//! Only ever adds a target through rustup; never changes the toolchain itself.

use std::process::Command;

use anyhow::{Context, Result};

use crate::process;

pub const WASM_TARGET: &str = "wasm32-wasip2";

/// Add the wasm target with rustup unless it is installed already.
pub fn ensure_wasm_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("run `rustup target list --installed` (is rustup installed?)")?;
    let installed = String::from_utf8_lossy(&installed.stdout);
    if installed.lines().any(|line| line.trim() == WASM_TARGET) {
        return Ok(());
    }
    process::run(Command::new("rustup").args(["target", "add", WASM_TARGET]))
}
