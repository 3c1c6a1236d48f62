//! The benchmark harness `cargo xtask bench` runs (a plain binary, not criterion: whole sends
//! against a real server and whole processes are timed, which criterion's sampling model does
//! not fit, and nothing here may fail on a slow machine). Each subcommand measures one part of
//! the cost of the plugin design, prints a Markdown section and appends it to `--out FILE`:
//!
//! | subcommand | module | measures |
//! |---|---|---|
//! | `throughput` | [`throughput`] | N sends through the SMTP plugin (`Runtime::send`, in process) against the same sends with bare lettre, sequential and concurrent |
//! | `tcp` | [`tcp`] | bare lettre only, over connections it opens itself: when `TCP_NODELAY` is set, and whether one rustls `ClientConfig` (TLS 1.3 resumption) is shared (not run by `cargo xtask bench`) |
//! | `overhead` | [`overhead`] | a fresh `Store` + instance + `send` against bare lettre composing and sending the same email, both to the harness's own SMTP sink ([`sink`]) on loopback (µs), and 1/10/30 MB attachments the same way |
//! | `startup` | [`startup`] | `scan2x-mail plugins` with an empty and with a warm precompiled cache |
//! | `per-process` | [`per_process`] | one `scan2x-mail send` process (release, warm cache) through one SMTP sender against a bare lettre program (`bare-send`, `src/bin/bare-send.rs`) sending the same email, both to the [`sink`] on loopback, plaintext and STARTTLS |
//! | `large` | [`large`] | peak RSS and time of the release binary sending a 30 MB scan through a sender |
//! | `graph-upload` | [`graph_upload`] | the Graph plugin's 30 MB send (release binary, and in process) against a raw upload of the same bytes to the same server with reqwest: the same requests, the same range size |
//! | `service` | [`service`] | `scan2x-mail serve` (release binary) as the local queue against Postfix as one: submit latency (p50/p99/max) and emails/s from submit to delivered at the same discard Postfix, one client and several |
//!
//! Shared by them: [`message`] (the email and its native composition), [`plugin`] (the plugin
//! side: a runtime and an SMTP sender), [`bare`] (the bare-lettre sides), [`sink`] (the discard
//! SMTP listener), [`binary`] (runs of the release binary), [`measure`] (medians, scratch
//! folders, the section appended to the summary).
//!
//! Every figure is the median of several rounds; the rounds alternate the sides compared so that
//! noise from other work on the machine falls on each.

mod bare;
mod binary;
mod graph_upload;
mod large;
mod measure;
mod message;
mod overhead;
mod per_process;
mod plugin;
mod service;
mod sink;
mod startup;
mod tcp;
mod throughput;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

/// The benchmark harness `cargo xtask bench` runs: each subcommand prints a Markdown section
/// and appends it to `--out FILE`.
#[derive(Parser)]
#[command(name = "scan2x-mail-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The SMTP plugin against bare lettre: N sends to a local server, sequential and concurrent.
    Throughput {
        #[command(flatten)]
        args: throughput::Args,
        #[command(flatten)]
        out: Out,
    },
    /// Bare lettre only: when `TCP_NODELAY` is set, and whether TLS parameters are shared.
    Tcp {
        #[command(flatten)]
        args: tcp::Args,
        #[command(flatten)]
        out: Out,
    },
    /// The plugin path's own cost: each call against bare lettre, both to the harness's sink.
    Overhead {
        #[command(flatten)]
        args: overhead::Args,
        #[command(flatten)]
        out: Out,
    },
    /// Start-up of the release binary with a cold and a warm precompiled cache.
    Startup {
        #[command(flatten)]
        args: startup::Args,
        #[command(flatten)]
        out: Out,
    },
    /// One `scan2x-mail send` process against a bare lettre program, the same email to the
    /// same server.
    PerProcess {
        #[command(flatten)]
        args: per_process::Args,
        #[command(flatten)]
        out: Out,
    },
    /// Peak RSS and time of the release binary sending a large scan through a sender.
    Large {
        #[command(flatten)]
        args: large::Args,
        #[command(flatten)]
        out: Out,
    },
    /// The Graph plugin's large upload against a raw upload of the same bytes.
    GraphUpload {
        #[command(flatten)]
        args: graph_upload::Args,
        #[command(flatten)]
        out: Out,
    },
    /// `scan2x-mail serve` as the local queue against Postfix as one: submit latency and
    /// emails/s to the same relay.
    Service {
        #[command(flatten)]
        args: service::Args,
        #[command(flatten)]
        out: Out,
    },
}

/// Where the section goes.
#[derive(Args)]
struct Out {
    /// Append the section (Markdown) to FILE.
    #[arg(long = "out", value_name = "FILE")]
    path: PathBuf,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (section, out) = match cli.command {
        Command::Throughput { args, out } => (rt.block_on(throughput::run(&args))?, out),
        Command::Tcp { args, out } => (rt.block_on(tcp::run(&args))?, out),
        Command::Overhead { args, out } => (rt.block_on(overhead::run(&args))?, out),
        Command::Startup { args, out } => (startup::run(&args)?, out),
        Command::PerProcess { args, out } => (per_process::run(&args)?, out),
        Command::Large { args, out } => (large::run(&args)?, out),
        Command::GraphUpload { args, out } => (rt.block_on(graph_upload::run(&args))?, out),
        Command::Service { args, out } => (service::run(&args)?, out),
    };
    measure::emit(&section, &out.path)
}
