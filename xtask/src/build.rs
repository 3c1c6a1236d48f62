//! `cargo xtask build`: the release `scan2x-mail` binary, default plugins embedded, and every
//! plugin crate of the workspace (`plugins/*`, `examples/*`) as a `.wasm` component an
//! administrator can name in a settings file.
//!
//! The host's own build script compiles the default plugins for `wasm32-wasip2`; this task makes
//! sure the target exists first, then builds the other plugin crates into the same folder
//! (`target/plugins`, with the same profile, so the default plugins are not compiled twice) and
//! says where everything is. It never installs the binary.

use std::fs;
use std::path::PathBuf;

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

    let packages = plugin_packages()?;
    let plugin_dir = process::target_dir().join("plugins");
    let mut cargo = process::cargo();
    cargo
        .args(["build", "--release", "--target", toolchain::WASM_TARGET])
        .arg("--target-dir")
        .arg(&plugin_dir)
        // The profile the host's build script uses for the plugins it embeds.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
    for package in &packages {
        cargo.args(["-p", package]);
    }
    process::run(&mut cargo)?;

    println!("\nscan2x-mail is at {}", binary.display());
    println!("plugins (name one in a settings file: plugin = \"PATH\"):");
    for package in &packages {
        let wasm = plugin_dir
            .join(toolchain::WASM_TARGET)
            .join("release")
            .join(format!("{}.wasm", package.replace('-', "_")));
        ensure!(
            wasm.exists(),
            "the build did not produce {}",
            wasm.display()
        );
        println!("  {}", wasm.display());
    }
    Ok(())
}

/// The packages under `plugins/` and `examples/` that build a component (`cdylib`).
fn plugin_packages() -> Result<Vec<String>> {
    let mut packages = Vec::new();
    for folder in ["plugins", "examples"] {
        let Ok(entries) = fs::read_dir(process::root().join(folder)) else {
            continue;
        };
        let mut manifests: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path().join("Cargo.toml")))
            .filter(|m| m.exists())
            .collect();
        manifests.sort();
        for manifest in manifests {
            let text = fs::read_to_string(&manifest)?;
            if !text.contains("\"cdylib\"") {
                continue;
            }
            let name = text
                .lines()
                .find_map(|l| l.strip_prefix("name = \""))
                .and_then(|rest| rest.strip_suffix('"'));
            if let Some(name) = name {
                packages.push(name.to_owned());
            }
        }
    }
    Ok(packages)
}
