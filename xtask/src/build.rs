//! `cargo xtask build`: the release `scan2x-mail` binary, default plugins embedded.
//!
//! The host's own build script compiles the plugins for `wasm32-wasip2`; this task only makes
//! sure the target exists first and says where the result is. It never installs the binary.

use anyhow::{Result, ensure};

use crate::{process, toolchain};

pub fn run() -> Result<()> {
    toolchain::ensure_wasm_target()?;
    process::run(process::cargo().args(["build", "--release", "-p", "scan2x-mail"]))?;
    let binary = process::target_dir()
        .join("release")
        .join(format!("scan2x-mail{}", std::env::consts::EXE_SUFFIX));
    ensure!(
        binary.exists(),
        "the build did not produce {}",
        binary.display()
    );
    println!("\nscan2x-mail is at {}", binary.display());
    Ok(())
}
