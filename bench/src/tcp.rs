//! `tcp`: bare lettre only, over connections the harness opens itself: when `TCP_NODELAY` is
//! set, and whether one rustls `ClientConfig` (TLS 1.3 resumption) is shared. Not run by
//! `cargo xtask bench`; it is how the delayed-ACK stalls were found.

use std::sync::Arc;

use anyhow::Result;

use crate::bare::{Bare, ByHand, FreshTls, HandTls, Nodelay, run_lettre};
use crate::measure::{Server, median};
use crate::message::{compose_natively, message};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    server: Server,
    #[arg(long, default_value_t = 200)]
    sends: usize,
    /// Sends at a time.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// Bare lettre over connections opened by hand, for each way of setting `TCP_NODELAY` and, with
/// STARTTLS, with TLS parameters per connection and shared: what a delayed ACK costs where.
pub async fn run(args: &Args) -> Result<String> {
    let Args {
        sends,
        concurrency,
        rounds,
        ..
    } = *args;
    let Server { port, starttls, .. } = args.server;
    let ca = args.server.ca.as_deref();
    let raw = Arc::new(compose_natively(&message(0, 28 * 1024))?);
    let nodelays = [Nodelay::Never, Nodelay::FromStart, Nodelay::AfterHandshake];
    let mut sides = Vec::new();
    for nodelay in nodelays {
        if starttls {
            let fresh = FreshTls::new(port, ca)?;
            let shared = HandTls::Shared(fresh.parameters()?);
            for (tls, what) in [
                (HandTls::PerConnection(fresh), "per connection"),
                (shared, "shared (TLS 1.3 resumption)"),
            ] {
                sides.push((what, nodelay, ByHand { port, tls, nodelay }));
            }
        } else {
            let tls = HandTls::None;
            sides.push(("none", nodelay, ByHand { port, tls, nodelay }));
        }
    }
    let sides: Vec<_> = sides
        .into_iter()
        .map(|(what, nodelay, hand)| (what, nodelay, Bare::ByHand(Arc::new(hand))))
        .collect();
    for (_, _, side) in &sides {
        run_lettre(side, &raw, 20, 1).await?;
    }
    let mut times = vec![Vec::new(); sides.len()];
    for _ in 0..rounds {
        for ((_, _, side), times) in sides.iter().zip(&mut times) {
            let elapsed = run_lettre(side, &raw, sends, concurrency).await?;
            times.push(elapsed.as_secs_f64() * 1e3 / sends as f64);
        }
    }
    let mut rows = String::new();
    for ((what, nodelay, _), times) in sides.iter().zip(times) {
        rows.push_str(&format!(
            "| {what} | {} | {:.2} ms |\n",
            nodelay.describe(starttls),
            median(times)
        ));
    }
    Ok(format!(
        "\n### TCP_NODELAY and TLS sharing: {sends} sends of a {} KB message, bare lettre, {}\n\n\
         | TLS parameters | `TCP_NODELAY` | wall time per send |\n|---|---|---|\n{rows}\n\
         Median of {rounds} rounds, the variants alternating; {concurrency} send(s) at a time; \
         `AsyncSmtpConnection` over a TCP connection opened by the harness.\n",
        raw.len() / 1024,
        if starttls { "STARTTLS" } else { "no TLS" },
    ))
}
