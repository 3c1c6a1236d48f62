//! Running commands for the tasks: each is printed before it runs (so a reader can repeat it by
//! hand), streams its output, and fails the task when it fails.
//!
//! Also knows where the workspace and its target directory are. Never runs a command through
//! a shell: arguments go to the program as they are.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The workspace root (the parent of this crate).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// The cargo target directory: `CARGO_TARGET_DIR` when set, else `<root>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root().join(dir),
        None => root().join("target"),
    }
}

/// The cargo that runs xtask (so the same toolchain builds everything).
pub fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(root());
    command
}

/// How a command looks when printed: program and arguments, quoted where needed.
pub fn shown(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(quoted)
        .collect::<Vec<_>>()
        .join(" ")
}

fn quoted(arg: &OsStr) -> String {
    let arg = arg.to_string_lossy();
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_alphanumeric() || "-_./:=@+,%".contains(c));
    if plain {
        arg.into_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Print `$ command`, run it with inherited stdio, and fail unless it exits 0.
pub fn run(command: &mut Command) -> Result<()> {
    let code = run_status(command)?;
    if code != 0 {
        bail!("`{}` failed with exit code {code}", shown(command));
    }
    Ok(())
}

/// Print `$ command`, run it with inherited stdio, and return its exit code.
pub fn run_status(command: &mut Command) -> Result<i32> {
    println!("$ {}", shown(command));
    let status = command
        .status()
        .with_context(|| format!("could not start `{}`", shown(command)))?;
    status
        .code()
        .with_context(|| format!("`{}` was killed: {status}", shown(command)))
}

/// Run `command` quietly; true when it exits 0 (a probe, e.g. "is this installed?").
pub fn succeeds(command: &mut Command) -> bool {
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
