//! `cargo xtask bench`: what the plugin design costs, measured. This task only orchestrates: it
//! builds `scan2x-mail` and the harness (`bench/`, binary `scan2x-mail-bench`) in release mode,
//! starts the local servers ([`crate::bench_servers`]), runs the harness's subcommands, and
//! writes `target/bench/summary.md` and prints it. The harness does the measuring.
//! `--only service` runs part 6 alone (`scan2x-mail serve` against Postfix as the local queue).
//!
//! Nothing here fails on a slow machine: there are no thresholds, only numbers. A server that
//! is not installed is reported in the summary and its rows are left out.

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use crate::bench_servers::{self as servers, Dovecot, Postfix, PostfixQueue, append};
use crate::{certs, process, toolchain};

const USAGE: &str = "usage: cargo xtask bench [--quick] [--only service]";

pub fn run(args: &[String]) -> Result<()> {
    let (mut quick, mut only_service) = (false, false);
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--only" if rest.next().is_some_and(|part| part == "service") => only_service = true,
            _ => anyhow::bail!("{USAGE}"),
        }
    }
    toolchain::ensure_wasm_target()?;
    // One build: the harness uses the host library as it ships (no bench-only feature), so the
    // binary measured is the one users build.
    process::run(process::cargo().args([
        "build",
        "--release",
        "-p",
        "scan2x-mail",
        "-p",
        "scan2x-mail-bench",
    ]))?;
    let release = process::target_dir().join("release");
    let binary = release.join(format!("scan2x-mail{}", std::env::consts::EXE_SUFFIX));
    let harness = release.join(format!("scan2x-mail-bench{}", std::env::consts::EXE_SUFFIX));

    let out_dir = process::target_dir().join("bench");
    std::fs::create_dir_all(&out_dir)?;
    let summary = out_dir.join("summary.md");
    std::fs::write(&summary, header(&args.join(" ")))?;

    // Servers live under the system temp folder: Postfix's and Dovecot's own users must reach it.
    let work = std::env::temp_dir().join(format!("scan2x-bench-servers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let result = if only_service {
        certs::write(&work.join("certs"))
            .and_then(|certs| postfix(&summary, &work, &certs, "6. The service against Postfix"))
            .and_then(|p| service(&harness, &binary, &summary, &work, quick, p.as_ref()))
    } else {
        measure(&harness, &binary, &summary, &work, quick)
    };
    let _ = std::fs::remove_dir_all(&work);
    result?;

    println!("\n{}", std::fs::read_to_string(&summary)?);
    println!("(written to {})", summary.display());
    Ok(())
}

fn measure(harness: &Path, binary: &Path, summary: &Path, work: &Path, quick: bool) -> Result<()> {
    let certs = certs::write(&work.join("certs"))?;
    let ca = certs.ca.to_string_lossy().into_owned();
    let bench = |args: &[&str]| -> Result<()> {
        let mut command = Command::new(harness);
        command.args(args).arg("--out").arg(summary);
        process::run(&mut command)
    };
    let sends = if quick { "200" } else { "1000" };
    let rounds = if quick { "1" } else { "3" };

    // 1. Throughput against a fast local SMTP server. Without Postfix this part is left out:
    // the project's aiosmtpd is slower than either client and requires a login, so its numbers
    // would hide the client's share rather than show it.
    let postfix = postfix(
        summary,
        work,
        &certs,
        "1. Throughput, 6. the service against Postfix",
    )?;
    if let Some(postfix) = &postfix {
        for tls in [false, true] {
            let port = if tls {
                postfix.starttls_port
            } else {
                postfix.plain_port
            }
            .to_string();
            let mut args = vec![
                "throughput",
                "--port",
                &port,
                "--sends",
                sends,
                "--rounds",
                rounds,
                "--concurrency",
                "8",
                "--label",
                "Postfix (discard transport)",
            ];
            if tls {
                args.extend(["--starttls", "--ca", &ca]);
            }
            bench(&args)?;
        }
    }

    // 2. The plugin path's own cost: the plugin and bare lettre, both to the harness's SMTP sink.
    bench(&["overhead", "--calls", if quick { "500" } else { "2000" }])?;

    // 3. Start-up.
    let binary_arg = binary.to_string_lossy().into_owned();
    bench(&[
        "startup",
        "--binary",
        &binary_arg,
        "--runs",
        if quick { "3" } else { "11" },
    ])?;

    // 4. Large scans through each sender.
    append(
        summary,
        "\n### 4. A 30 MB scan through each sender (release binary, one process per send)\n\n\
         | sender → server | payload | peak RSS (VmHWM) | RSS / payload | time |\n|---|---|---|---|---|\n",
    )?;
    let mut notes = Vec::new();
    let settings = work.join("large.toml");
    let mut toml = String::new();
    let mut senders: Vec<(&str, &str)> = Vec::new();
    if let Some(postfix) = &postfix {
        toml += &format!(
            "[senders.smtp]\nplugin = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\n\
             enable_ssl = true\nemail_address = \"scanner@example.test\"\nca_file = {ca:?}\n\n",
            postfix.starttls_port
        );
        senders.push(("smtp", "SMTP → Postfix (STARTTLS)"));
    } else {
        notes.push("SMTP: Postfix is not available".to_string());
    }
    let dovecot = match Dovecot::unavailable() {
        None => Some(Dovecot::start(work, &certs)?),
        Some(why) => {
            notes.push(format!("IMAP: {why}"));
            None
        }
    };
    if let Some(d) = &dovecot {
        toml += &format!(
            "[senders.imap]\nplugin = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\nenable_ssl = true\n\
             username = {:?}\npassword = {:?}\nfrom_email = \"scanner@example.test\"\nca_file = {ca:?}\n\n",
            d.port,
            servers::IMAP_USER,
            servers::IMAP_PASSWORD
        );
        senders.push(("imap", "IMAP → Dovecot (STARTTLS)"));
    }
    // The stand-in needs only Python's standard library.
    let python = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
    let graph = if process::succeeds(Command::new(&python).arg("--version")) {
        Some(servers::graph(Path::new(&python), work, &certs)?)
    } else {
        notes.push("Graph: no python3 for the stand-in".to_string());
        None
    };
    if let Some(g) = &graph {
        toml += &format!(
            "[senders.graph]\nplugin = \"graph\"\ntenant_id = {:?}\nclient_id = {:?}\n\
             client_secret = {:?}\nusername = {:?}\nauthority_url = \"https://127.0.0.1:{}\"\n\
             graph_url = \"https://127.0.0.1:{}\"\noutlook_url = \"https://127.0.0.1:{}\"\nca_file = {ca:?}\n\n",
            servers::GRAPH_TENANT,
            servers::GRAPH_CLIENT,
            servers::GRAPH_SECRET,
            servers::GRAPH_MAILBOX,
            g.ports[0],
            g.ports[1],
            g.ports[2]
        );
        senders.push(("graph", "Graph → the test stand-in (HTTPS)"));
    }
    std::fs::write(&settings, &toml)?;
    let settings_arg = settings.to_string_lossy().into_owned();
    for (sender, label) in senders {
        bench(&[
            "large",
            "--binary",
            &binary_arg,
            "--config",
            &settings_arg,
            "--sender",
            sender,
            "--label",
            label,
            "--runs",
            if quick { "1" } else { "3" },
        ])?;
    }
    let mut tail = String::from(
        "\nMedian of the runs after a first one that fills the precompiled cache. Peak RSS is the \
         whole process's high-water mark (`/proc/self/status` VmHWM), logged by `-vv`.\n",
    );
    for note in notes {
        tail += &format!("\n> not measured: {note}\n");
    }
    append(summary, &tail)?;

    // 4. The Graph plugin's upload against a raw upload of the same bytes to the same stand-in.
    if graph.is_some() {
        bench(&[
            "graph-upload",
            "--binary",
            &binary_arg,
            "--config",
            &settings_arg,
            "--sender",
            "graph",
            "--runs",
            // A round takes well under a second; its spread on a busy machine needs many.
            if quick { "3" } else { "15" },
        ])?;
    }

    // 5. One `send` per process against a bare lettre program, both to the harness's sink (no
    // server needed). The bare program is a binary of the harness's package, built above.
    let bare = harness.with_file_name(format!("bare-send{}", std::env::consts::EXE_SUFFIX));
    bench(&[
        "per-process",
        "--binary",
        &binary_arg,
        "--bare",
        &bare.to_string_lossy(),
        "--rounds",
        if quick { "15" } else { "61" },
    ])?;

    // 6. `scan2x-mail serve` against Postfix as the local queue, both relaying to the discard
    // Postfix.
    service(harness, binary, summary, work, quick, postfix.as_ref())
}

/// The discard Postfix, or none (said in the summary: `part` was not measured) when it is not
/// available.
fn postfix(
    summary: &Path,
    work: &Path,
    certs: &certs::CertFiles,
    part: &str,
) -> Result<Option<Postfix>> {
    match Postfix::unavailable() {
        None => Ok(Some(Postfix::start(work, certs)?)),
        Some(why) => {
            println!("note: {why}; {part} is left out");
            append(summary, &format!("\n> **{part}: not measured**: {why}.\n"))?;
            Ok(None)
        }
    }
}

/// Part 6: the harness's `service` against a second Postfix, the local queue, that relays to
/// `relay` (the discard Postfix) as `serve`'s sender does. Left out without Postfix (the summary
/// already says why).
fn service(
    harness: &Path,
    binary: &Path,
    summary: &Path,
    work: &Path,
    quick: bool,
    relay: Option<&Postfix>,
) -> Result<()> {
    let Some(relay) = relay else {
        return Ok(());
    };
    let queue = PostfixQueue::start(work, relay.plain_port)?;
    let mut command = Command::new(harness);
    command
        .arg("service")
        .arg("--binary")
        .arg(binary)
        .args(["--relay-port", &relay.plain_port.to_string()])
        .args(["--postfix-port", &queue.port.to_string()])
        .arg("--postfix-config")
        .arg(queue.config())
        .arg("--postfix-log")
        .arg(&queue.log)
        .args(["--emails", if quick { "100" } else { "500" }])
        .args(["--concurrency", "8"])
        .arg("--out")
        .arg(summary);
    process::run(&mut command)
}

/// The summary's first lines: the command (with `args`) and the machine.
fn header(args: &str) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or("unknown".into(), |kib| {
            format!("{:.1} GiB", kib as f64 / 1048576.0)
        });
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    format!(
        "## scan2x-mail benchmark\n\n\
         Command: `cargo xtask bench{}`. Machine: {cores} cores, {cpu}, {memory} memory; load \
         average at the start {load}. Release builds; every server on 127.0.0.1.\n",
        if args.is_empty() {
            String::new()
        } else {
            format!(" {args}")
        }
    )
}
