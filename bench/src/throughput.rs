//! `throughput`: N sends through the SMTP plugin (`Runtime::send`, in process) against the same
//! sends with bare lettre, to a local server (Postfix under `cargo xtask bench`), sequential and
//! concurrent; a new connection per send on every side.

use std::sync::Arc;

use anyhow::Result;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, Tokio1Executor};

use crate::bare::{Bare, ByHand, FreshTls, HandTls, Nodelay, run_lettre};
use crate::measure::{Scratch, Server, median};
use crate::message::{compose_natively, message};
use crate::plugin::{run_plugin, smtp_sender, smtp_toml};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    server: Server,
    #[arg(long, default_value_t = 1000)]
    sends: usize,
    /// The concurrent sends of the second row.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The server, as the section's title names it.
    #[arg(long, default_value = "local SMTP server")]
    label: String,
    /// One side alone, sequentially, for a profiler: a (the plugin) or c (bare lettre as the
    /// host connects).
    #[arg(long, value_enum)]
    only: Option<Only>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Only {
    /// The plugin.
    A,
    /// Bare lettre, connected as the host connects.
    C,
}

impl Only {
    fn letter(self) -> char {
        match self {
            Only::A => 'a',
            Only::C => 'c',
        }
    }
}

pub async fn run(args: &Args) -> Result<String> {
    let Args {
        sends,
        concurrency,
        rounds,
        ..
    } = *args;
    let Server { port, starttls, .. } = args.server;
    let ca = args.server.ca.as_deref();
    let label = args.label.as_str();
    let pdf_bytes = 28 * 1024;

    let dir = Scratch::new("throughput")?;
    let (runtime, sender) = smtp_sender(dir.path(), &smtp_toml(port, starttls, ca)).await?;
    let raw = Arc::new(compose_natively(&message(0, pdf_bytes))?);
    let mut builder =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1").port(port);
    if starttls {
        let mut tls = TlsParameters::builder("127.0.0.1".into());
        if let Some(ca) = ca {
            tls = tls.add_root_certificate(Certificate::from_pem(&std::fs::read(ca)?)?);
        }
        builder = builder.tls(Tls::Required(tls.build_rustls()?));
    }
    // (b), (b′) with STARTTLS only, and (c).
    let mut sides = vec![Bare::Transport(Arc::new(builder.build()))];
    if starttls {
        sides.push(Bare::FreshTransport(Arc::new(FreshTls::new(port, ca)?)));
    }
    sides.push(Bare::ByHand(Arc::new(ByHand {
        port,
        tls: if starttls {
            HandTls::PerConnection(FreshTls::new(port, ca)?)
        } else {
            HandTls::None
        },
        nodelay: Nodelay::AfterHandshake,
    })));

    // Warm-up: connections, the plugin's first instance, the server's processes.
    run_plugin(&runtime, &sender, 20, 1, pdf_bytes).await?;
    run_lettre(&sides[0], &raw, 20, 1).await?;

    // One side alone, sequentially, for a profiler (`perf record` of the whole process).
    if let Some(only) = args.only {
        let elapsed = match only {
            Only::A => run_plugin(&runtime, &sender, sends, 1, pdf_bytes).await?,
            Only::C => run_lettre(&sides[sides.len() - 1], &raw, sends, 1).await?,
        };
        return Ok(format!(
            "\n{sends} sequential sends, side ({}) only: {:.3} ms a send\n",
            only.letter(),
            elapsed.as_secs_f64() * 1e3 / sends as f64
        ));
    }

    let mut rows = String::new();
    for tasks in [1, concurrency] {
        let mut a = Vec::new();
        let mut b = vec![Vec::new(); sides.len()];
        for _ in 0..rounds {
            a.push(
                run_plugin(&runtime, &sender, sends, tasks, pdf_bytes)
                    .await?
                    .as_secs_f64(),
            );
            for (side, times) in sides.iter().zip(&mut b) {
                times.push(run_lettre(side, &raw, sends, tasks).await?.as_secs_f64());
            }
        }
        let a = median(a);
        let mode = if tasks == 1 {
            "sequential".to_string()
        } else {
            format!("{tasks} concurrent")
        };
        rows.push_str(&format!(
            "| {mode} | {a:.2} s ({:.0}/s) |",
            sends as f64 / a
        ));
        for times in b {
            let b = median(times);
            rows.push_str(&format!(
                " {b:.2} s ({:.0}/s) | **{:.3}** |",
                sends as f64 / b,
                a / b
            ));
        }
        rows.push('\n');
    }
    let (head, rule, note) = if starttls {
        (
            "(b) bare lettre | a/b | (b′) bare lettre, TLS set up per connection | a/b′ | \
             (c) bare lettre, connected as the host connects | a/c |",
            "---|---|---|---|---|---|",
            " (b) is one `AsyncSmtpTransport` and so shares one rustls `ClientConfig` across \
             connections: it resumes TLS 1.3 sessions, and every resumed handshake waits ≈41 ms \
             for a delayed ACK (see the `tcp` subcommand); (b′) builds a transport, and so the \
             TLS parameters, for every send, from roots read once. (c) is what the host does: \
             `AsyncSmtpConnection` over a TCP connection it opens itself, TLS parameters per \
             connection, `TCP_NODELAY` set after STARTTLS and its EHLO.",
        )
    } else {
        (
            "(b) bare lettre | a/b | (c) bare lettre, connected as the host connects | a/c |",
            "---|---|---|---|",
            " (b) is one `AsyncSmtpTransport`, as a lettre program would build it; (c) is what \
             the host does: `AsyncSmtpConnection` over a TCP connection it opens itself, \
             `TCP_NODELAY` set after EHLO.",
        )
    };
    Ok(format!(
        "\n### 1. Throughput: {sends} sends of a {} KB message ({} KB PDF), {label}{}\n\n\
         | sends | (a) SMTP plugin, `Runtime::send` | {head}\n|---|---|{rule}\n{rows}\n\
         Median of {rounds} rounds, the sides alternating; a new connection per send on every \
         side.{note}\n",
        raw.len() / 1024,
        pdf_bytes / 1024,
        if starttls { ", STARTTLS" } else { ", no TLS" },
    ))
}
