//! Runs of the release binary (`large`, `graph-upload`).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Result, bail};

use crate::message::TO;

/// One `-vv send` of `scan` through the release binary: the whole process's time and its log.
pub fn send_scan(
    binary: &str,
    config: &str,
    sender: &str,
    cache: &Path,
    scan: &Path,
) -> Result<(f64, String)> {
    let started = Instant::now();
    let out = Command::new(binary)
        .args(["-vv", "--config", config, "--cache-dir"])
        .arg(cache)
        .args([
            "send",
            "--sender",
            sender,
            "--to",
            TO,
            "--subject",
            "A large scan",
        ])
        .arg("--attach")
        .arg(scan)
        .output()?;
    let elapsed = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        bail!("send failed: {stderr}");
    }
    Ok((elapsed, stderr))
}
