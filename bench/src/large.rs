//! `large`: peak RSS and time of the release binary sending a large scan (30 MB by default)
//! through one sender of a settings file, a process per send.

use anyhow::{Context, Result};

use crate::binary::send_scan;
use crate::measure::{Scratch, median};
use crate::message::pdf;

#[derive(clap::Args)]
pub struct Args {
    /// The release binary.
    #[arg(long, value_name = "PATH")]
    binary: String,
    /// The settings file that has the sender.
    #[arg(long, value_name = "FILE")]
    config: String,
    /// The sender's name (`[senders.NAME]`).
    #[arg(long, value_name = "NAME")]
    sender: String,
    /// The row's label (default: the sender's name).
    #[arg(long)]
    label: Option<String>,
    /// The scan's size in MB (10^6 bytes).
    #[arg(long, default_value_t = 30)]
    size_mb: usize,
    /// Runs measured, after a first one that fills the precompiled cache.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

pub fn run(args: &Args) -> Result<String> {
    let (binary, config, sender) = (&args.binary, &args.config, &args.sender);
    let label = args.label.as_deref().unwrap_or(sender);
    let (size_mb, runs) = (args.size_mb, args.runs);
    let dir = Scratch::new("large")?;
    let scan = dir.join("scan.pdf");
    std::fs::write(&scan, pdf(size_mb * 1_000_000))?;
    let cache = dir.join("cache");
    let (mut times, mut peaks) = (Vec::new(), Vec::new());
    for i in 0..=runs {
        let (elapsed, stderr) =
            send_scan(binary, config, sender, &cache, &scan).with_context(|| label.to_string())?;
        let peak: f64 = stderr
            .lines()
            .find_map(|l| l.split("peak resident memory: ").nth(1))
            .and_then(|v| v.trim().trim_end_matches("MiB").trim().parse().ok())
            .context("no \"peak resident memory\" line at -vv")?;
        if i > 0 {
            // The first run fills the precompiled cache.
            times.push(elapsed);
            peaks.push(peak);
        }
    }
    let payload = size_mb as f64 * 1e6 / f64::from(1 << 20);
    let peak = median(peaks);
    Ok(format!(
        "| {label} | {size_mb} MB ({payload:.1} MiB) | {peak:.0} MiB | {:.1}× | {:.2} s |\n",
        peak / payload,
        median(times)
    ))
}
