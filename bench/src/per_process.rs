//! `per-process`: one `scan2x-mail send` process (release binary, warm precompiled cache) sending
//! one small email through one SMTP sender, against a bare lettre program (`bare-send`, a
//! process too, built in release beside it) sending the same email to the same server: the
//! harness's discard sink ([`Sink`]) on loopback, plaintext and with STARTTLS. The whole
//! process is timed on both sides, from spawn to exit, every round running each side once and
//! starting with the next, so noise from other work falls on all of them. Also each binary's
//! floor: `--version` (the process starting, dynamic linking, clap, exit).
//!
//! `--baseline OTHER` runs a second `scan2x-mail` (an older build) in the same rounds, for a
//! before/after measured side by side; `--serve` only starts the sink and prints each side's
//! command line, for `strace`, `perf` and the like.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::measure::{Scratch, median};
use crate::message::{FROM, TO};
use crate::plugin::smtp_toml;
use crate::sink::{Options, Sink};

#[derive(clap::Args)]
pub struct Args {
    /// The release `scan2x-mail`.
    #[arg(long, value_name = "PATH")]
    binary: PathBuf,
    /// The bare lettre program [default: `bare-send` beside this harness].
    #[arg(long, value_name = "PATH")]
    bare: Option<PathBuf>,
    /// Rounds: each runs every side once per connection kind (a round takes ≈60 ms).
    #[arg(long, default_value_t = 61)]
    rounds: usize,
    /// Another `scan2x-mail` (an older build, say) to run in the same rounds: column (a′).
    #[arg(long, value_name = "PATH")]
    baseline: Option<PathBuf>,
    /// Measure nothing: start the sink, print the command of each side (for strace, perf, …)
    /// and serve until killed.
    #[arg(long)]
    serve: bool,
}

const SUBJECT: &str = "Scan from Copier 3";
const TEXT: &str = "Your scan is attached.";

/// What one row measures: a command per side, run once each per round.
struct Kind<'a> {
    name: &'static str,
    /// Whether each run must hand the sink one message, and over TLS.
    sends: bool,
    tls: bool,
    /// (a) `scan2x-mail`, (b) bare lettre, then (a′) the baseline's `scan2x-mail` if any.
    sides: Vec<Box<dyn Fn() -> Command + 'a>>,
}

pub fn run(args: &Args) -> Result<String> {
    let bare = match &args.bare {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("the harness has no folder")?
            .join(format!("bare-send{}", std::env::consts::EXE_SUFFIX)),
    };
    // Absolute: the processes run in the scratch folder.
    let bare = std::fs::canonicalize(&bare).with_context(|| {
        format!(
            "{}: build it (`cargo build --release -p scan2x-mail-bench`)",
            bare.display()
        )
    })?;
    let absolute = |p: &Path| std::fs::canonicalize(p).with_context(|| p.display().to_string());
    let mut hosts = vec![absolute(&args.binary)?];
    if let Some(baseline) = &args.baseline {
        hosts.push(absolute(baseline)?);
    }
    let rounds = args.rounds.max(1);
    let (sink, ca_pem) = Sink::start_with(Options {
        starttls: true,
        quick_ack: true,
    })?;
    let ca_pem = ca_pem.context("the sink's CA")?;
    let dir = Scratch::new("per-process")?;
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &ca_pem)?;
    let ca_arg = ca.to_string_lossy().into_owned();
    let port = sink.port();
    for (name, tls) in [("plain", false), ("starttls", true)] {
        let ca = tls.then_some(ca_arg.as_str());
        std::fs::write(dir.join(format!("{name}.toml")), smtp_toml(port, tls, ca))?;
    }
    let cache = dir.join("cache");
    let key = dir.join("key").join("cache.key");

    let host = |binary: &Path, settings: &str| {
        let mut c = Command::new(binary);
        c.arg("--config")
            .arg(dir.join(settings))
            .arg("--cache-dir")
            .arg(&cache)
            .args([
                "send",
                "--sender",
                "bench",
                "--to",
                TO,
                "--subject",
                SUBJECT,
                "--text",
                TEXT,
            ]);
        quiet(&mut c, dir.path(), &key);
        c
    };
    let lettre = |tls: bool| {
        let mut c = Command::new(&bare);
        c.args(["--port", &port.to_string(), "--from", FROM, "--to", TO])
            .args(["--subject", SUBJECT, "--text", TEXT]);
        if tls {
            c.args(["--ca", &ca_arg]);
        }
        quiet(&mut c, dir.path(), &key);
        c
    };
    let version = |program: &Path| {
        let mut c = Command::new(program);
        c.arg("--version");
        quiet(&mut c, dir.path(), &key);
        c
    };
    let (host, lettre, version) = (&host, &lettre, &version);
    let sides = |settings: &'static str, tls: bool| {
        let mut sides: Vec<Box<dyn Fn() -> Command + '_>> = vec![];
        for (i, binary) in hosts.iter().enumerate() {
            sides.push(Box::new(move || host(binary, settings)));
            if i == 0 {
                sides.push(Box::new(move || lettre(tls)));
            }
        }
        sides
    };
    let mut floor: Vec<Box<dyn Fn() -> Command + '_>> = vec![];
    for (i, binary) in hosts.iter().enumerate() {
        floor.push(Box::new(move || version(binary)));
        if i == 0 {
            floor.push(Box::new(|| version(&bare)));
        }
    }
    let kinds = [
        Kind {
            name: "no TLS",
            sends: true,
            tls: false,
            sides: sides("plain.toml", false),
        },
        Kind {
            name: "STARTTLS",
            sends: true,
            tls: true,
            sides: sides("starttls.toml", true),
        },
        Kind {
            name: "`--version` (no send: the process's floor)",
            sends: false,
            tls: false,
            sides: floor,
        },
    ];
    if args.serve {
        for kind in &kinds[..2] {
            for (side, which) in kind
                .sides
                .iter()
                .zip(["scan2x-mail", "bare lettre", "baseline"])
            {
                println!("{}, {which}:\n  {}", kind.name, shell(side()));
            }
        }
        println!("serving on 127.0.0.1:{port} until killed");
        loop {
            std::thread::park();
        }
    }

    for binary in hosts.iter().chain([&bare]) {
        evict(binary).with_context(|| format!("drop {} from the page cache", binary.display()))?;
    }
    // Once each first: the host fills its precompiled cache (and makes its key), and every
    // binary and its libraries are in the page cache.
    for kind in &kinds {
        for side in &kind.sides {
            time(side(), kind, &sink).with_context(|| format!("warm-up, {}", kind.name))?;
        }
    }
    let mut times: Vec<Vec<Vec<f64>>> = kinds
        .iter()
        .map(|k| vec![Vec::new(); k.sides.len()])
        .collect();
    for round in 0..rounds {
        for (kind, times) in kinds.iter().zip(&mut times) {
            // Each round starts with the next side.
            let n = kind.sides.len();
            for i in 0..n {
                let side = (round + i) % n;
                times[side].push(time((kind.sides[side])(), kind, &sink)?);
            }
        }
    }
    let baseline = args.baseline.is_some();
    let mut rows = String::new();
    for (kind, times) in kinds.iter().zip(times) {
        let m: Vec<f64> = times.into_iter().map(median).collect();
        let (a, b) = (m[0], m[1]);
        rows.push_str(&format!(
            "| {} | {a:.1} ms | {b:.1} ms | **{:.2}×** | {:.1} ms |",
            kind.name,
            a / b,
            a - b
        ));
        if baseline {
            rows.push_str(&format!(" {:.1} ms | {:.2}× |", m[2], m[2] / b));
        }
        rows.push('\n');
    }
    let (extra_head, extra_rule, extra_text) = match &args.baseline {
        Some(path) => (
            " (a′) baseline `scan2x-mail` | a′ / b |",
            "---|---|",
            format!(
                " (a′) is `{}`, run in the same rounds with the same settings and cache folder.",
                path.display()
            ),
        ),
        None => (Default::default(), Default::default(), String::new()),
    };
    Ok(format!(
        "\n### 5. One `send` per process: `scan2x-mail send` against a bare lettre program, the same email to the same server\n\n\
         | connection | (a) `scan2x-mail send`, one SMTP sender, warm cache | (b) bare lettre program (`bare-send`) | a / b | a − b |{extra_head}\n\
         |---|---|---|---|---|{extra_rule}\n{rows}\n\
         Whole processes, spawn to exit, both release builds: (a) loads its settings and the SMTP \
         plugin (precompiled cache warm), calls it once, the host connects and sends; (b) is a \
         minimal tokio + lettre program (`bench/src/bin/bare-send.rs`: parse the arguments, \
         compose with lettre's builder, build an `AsyncSmtpTransport`, send, exit), trusting the \
         system's roots plus the sink's CA as (a) does with `ca_file`. Both send one text email to \
         the harness's discard sink on loopback over a new connection; with STARTTLS both verify \
         the sink's certificate (TLS 1.3; the sink sends session tickets, as Postfix does). The \
         sink acknowledges every segment at once (`TCP_QUICKACK`): lettre writes the message and \
         its final `.` line in two writes without `TCP_NODELAY`, and against a server that \
         delays its ACK that second write waits ≈40 ms (the host sets `TCP_NODELAY`), which \
         would be lettre's artefact, not the cost of either program. Every binary is dropped from \
         the page cache first, so each is read back the same way. Median of {rounds} rounds, \
         each running every side once, each round starting with the next side, after one \
         warm-up run each.{extra_text}\n",
    ))
}

/// Drops `binary` from the page cache (after writing it out), so that its first run reads it back
/// like any installed program's. How a file's pages sit in the page cache changes how fast it
/// starts: a binary just written by the linker, or copied, started up to 1 ms slower per run
/// than the same bytes read back from disk, which would skew the comparison between binaries.
fn evict(binary: &Path) -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        let file = std::fs::File::open(binary)?;
        file.sync_all()?;
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)?;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = binary;
    Ok(())
}

/// `command` as a line to paste into a shell (from the scratch folder).
fn shell(command: Command) -> String {
    let quote = |s: &std::ffi::OsStr| {
        let s = s.to_string_lossy();
        if s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=@:".contains(c))
        {
            s.into_owned()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    let mut line = String::new();
    if let Some(dir) = command.get_current_dir() {
        line.push_str(&format!("cd {} && ", quote(dir.as_os_str())));
    }
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            line.push_str(&format!("{}={} ", quote(key), quote(value)));
        }
    }
    line.push_str(&quote(command.get_program()));
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&quote(arg));
    }
    line
}

/// Same settings for every process: run in `dir`, no variables of the host's that would change
/// what it does, its cache key in the scratch folder, output captured.
fn quiet(c: &mut Command, dir: &Path, key: &Path) {
    c.current_dir(dir)
        .env_remove("SCAN2X_MAIL_CONFIG")
        .env_remove("SCAN2X_MAIL_CACHE_DIR")
        .env_remove("SCAN2X_MAIL_LOG")
        .env("SCAN2X_MAIL_CACHE_KEY_FILE", key);
}

/// One run: milliseconds from spawn to exit. A send must have handed the sink one message (over
/// TLS when it should).
fn time(mut command: Command, kind: &Kind<'_>, sink: &Sink) -> Result<f64> {
    let (messages, over_tls) = sink.messages();
    let started = Instant::now();
    let out = command.output()?;
    let elapsed = started.elapsed().as_secs_f64() * 1e3;
    if !out.status.success() {
        bail!(
            "{:?} failed ({}): {}{}",
            command.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if kind.sends {
        let (now, now_tls) = sink.messages();
        anyhow::ensure!(
            now == messages + 1,
            "{:?} exited but the sink took no message",
            command.get_program()
        );
        anyhow::ensure!(
            (now_tls - over_tls == 1) == kind.tls,
            "{:?}: the message came {} TLS",
            command.get_program(),
            if kind.tls { "without" } else { "over" }
        );
    }
    Ok(elapsed)
}
