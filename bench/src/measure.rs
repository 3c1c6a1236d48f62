//! What every subcommand uses to measure and report: medians, a scratch folder, and the
//! section appended to the summary (`--out`, `target/bench/summary.md` under `cargo xtask bench`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

/// The median of `v` (NaN when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Seconds since `started`.
pub fn seconds(started: Instant) -> f64 {
    started.elapsed().as_secs_f64()
}

/// A fresh folder under the system temp folder, removed when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("scan2x-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(Scratch(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Print a subcommand's section and append it to `out`.
pub fn emit(section: &str, out: &Path) -> Result<()> {
    print!("{section}");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .with_context(|| format!("open {}", out.display()))?;
    file.write_all(section.as_bytes())?;
    Ok(())
}

/// The SMTP server a subcommand sends to: on 127.0.0.1, with or without STARTTLS.
#[derive(clap::Args)]
pub struct Server {
    /// The server's port on 127.0.0.1.
    #[arg(long)]
    pub port: u16,
    /// STARTTLS (required) on every connection.
    #[arg(long)]
    pub starttls: bool,
    /// A CA certificate (PEM) to trust besides the system's.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<String>,
}
