//! Builds the default sender plugins for `wasm32-wasip2` and hands them to the host crate, which
//! embeds them (`include_bytes!`), so the one `scan2x-mail` binary is a whole installation.
//!
//! The plugins are built by a nested `cargo build` into their own target directory (the outer
//! build holds a lock on `target/`). A missing `wasm32-wasip2` target is added with rustup, so a
//! fresh machine needs no manual step.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The default plugins: (plugin id, cargo package).
const PLUGINS: &[(&str, &str)] = &[
    ("smtp", "scan2x-mail-plugin-smtp"),
    ("imap", "scan2x-mail-plugin-imap"),
    ("graph", "scan2x-mail-plugin-graph"),
];

const WASM_TARGET: &str = "wasm32-wasip2";

/// The plugins' stack in linear memory (rustc's wasm32 default is 1 MiB). The host resets every
/// page of a memory slot in use after each call, and a 1 MiB stack was most of a small call's
/// pages. Rust keeps most locals in wasm locals, not in this stack: every test passes with
/// 4 KiB, so 64 KiB leaves a wide margin. A plugin that overran it would trap: the stack comes
/// first in memory, so an overflow is out of bounds, never a corruption.
const PLUGIN_STACK_BYTES: usize = 64 << 10;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    for dir in ["wit", "plugins"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );

    ensure_wasm_target();
    let target_dir = plugin_target_dir(&root);
    let mut cargo = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .current_dir(&root)
        .args(["build", "--release", "--locked", "--target", WASM_TARGET])
        .arg("--target-dir")
        .arg(&target_dir);
    for (_, package) in PLUGINS {
        cargo.args(["--package", package]);
    }
    // The outer cargo's settings describe the host build, not this one: a clippy or coverage
    // wrapper, host RUSTFLAGS or a `--target` would break or slow the wasm build.
    for var in [
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_LLVM_COV",
        "CARGO_PRIMARY_PACKAGE",
        "RUSTC",
    ] {
        cargo.env_remove(var);
    }
    cargo.env(
        "CARGO_ENCODED_RUSTFLAGS",
        format!("-Clink-arg=-zstack-size={PLUGIN_STACK_BYTES}"),
    );
    // Plugins are embedded in the binary: no debug info, which would multiply their size.
    cargo.env("CARGO_PROFILE_RELEASE_DEBUG", "false");
    cargo.env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
    let status = cargo.status().expect("run cargo to build the plugins");
    assert!(
        status.success(),
        "building the default plugins for {WASM_TARGET} failed (see the errors above)"
    );

    let mut table = String::from(
        "/// The default plugins embedded in this binary: (plugin id, component bytes).\n",
    );
    table.push_str("pub static BUILTIN_PLUGINS: &[(&str, &[u8])] = &[\n");
    for (id, package) in PLUGINS {
        let built = target_dir
            .join(WASM_TARGET)
            .join("release")
            .join(format!("{}.wasm", package.replace('-', "_")));
        let embedded = out_dir.join(format!("{id}.wasm"));
        std::fs::copy(&built, &embedded)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", built.display(), embedded.display()));
        table.push_str(&format!(
            "    ({id:?}, include_bytes!({:?})),\n",
            embedded.display().to_string()
        ));
    }
    table.push_str("];\n");
    std::fs::write(out_dir.join("builtin_plugins.rs"), table).unwrap();
}

/// `target/plugins` beside the outer build's target directory.
fn plugin_target_dir(root: &Path) -> PathBuf {
    let outer = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    outer.join("plugins")
}

/// Adds the wasm target with rustup when this toolchain lacks it.
fn ensure_wasm_target() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if sysroot.is_some_and(|root| {
        Path::new(&root)
            .join("lib/rustlib")
            .join(WASM_TARGET)
            .exists()
    }) {
        return;
    }
    println!("cargo:warning=adding the {WASM_TARGET} target with rustup (one time)");
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status();
    match status {
        Ok(s) if s.success() => {}
        _ => panic!(
            "the {WASM_TARGET} target is missing and `rustup target add {WASM_TARGET}` failed; \
             install it by hand and build again"
        ),
    }
}
