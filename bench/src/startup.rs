//! `startup`: `scan2x-mail plugins` (it loads every built-in plugin) through the release
//! binary, with an empty and with a warm precompiled cache.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Result, bail};

use scan2x_mail::runtime::Runtime;

use crate::measure::{Scratch, median};

#[derive(clap::Args)]
pub struct Args {
    /// The release binary.
    #[arg(long, value_name = "PATH")]
    binary: String,
    #[arg(long, default_value_t = 11)]
    runs: usize,
}

pub fn run(args: &Args) -> Result<String> {
    let (binary, runs) = (args.binary.as_str(), args.runs);
    let dir = Scratch::new("startup")?;
    // No settings file: `plugins` lists the built-in plugins only.
    let run = |cache: &Path| -> Result<f64> {
        let started = Instant::now();
        let out = Command::new(binary)
            .arg("--cache-dir")
            .arg(cache)
            .arg("plugins")
            .current_dir(dir.path())
            .env_remove("SCAN2X_MAIL_CONFIG")
            .output()?;
        let elapsed = started.elapsed().as_secs_f64() * 1e3;
        if !out.status.success() {
            bail!(
                "{binary} plugins failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(elapsed)
    };
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    let warm_cache = dir.join("warm");
    run(&warm_cache)?;
    for i in 0..runs {
        let cold_cache = dir.join(format!("cold-{i}"));
        cold.push(run(&cold_cache)?);
        warm.push(run(&warm_cache)?);
    }
    let n = Runtime::builtin_ids().count();
    Ok(format!(
        "\n### 3. Start-up: `scan2x-mail plugins` (loads all {n} built-in plugins), release build\n\n\
         | precompiled cache | median of {runs} runs |\n|---|---|\n\
         | cold (empty `--cache-dir`: Cranelift compiles every plugin) | {:.1} ms |\n\
         | warm | {:.1} ms |\n",
        median(cold),
        median(warm)
    ))
}
