//! `overhead`: the plugin path's own cost. A warm `Runtime::send` (a fresh `Store` + instance,
//! the plugin composing, the host's `smtp` capability sending) against bare lettre composing the
//! same email natively and sending it, both to the harness's discard listener ([`Sink`]) over a
//! new loopback connection per send: both sides pay the same SMTP dialogue, so their difference
//! is the plugin design's. Then the same for 1/10/30 MB attachments.

use std::time::Instant;

use anyhow::Result;
use lettre::address::Envelope as LettreEnvelope;

use scan2x_mail::message::Email;

use crate::bare::{ByHand, envelope};
use crate::measure::{Scratch, median, seconds};
use crate::message::{compose_natively, message};
use crate::plugin::{self, smtp_sender, smtp_toml};
use crate::sink::Sink;

#[derive(clap::Args)]
pub struct Args {
    /// Warm sends measured per message and side, in 5 batches.
    #[arg(long, default_value_t = 2000)]
    calls: usize,
}

/// Warm-up sends per message and side before the small messages are measured.
const WARM_UP: usize = 200;

pub async fn run(args: &Args) -> Result<String> {
    let batch = (args.calls / 5).max(1);
    let sink = Sink::start()?;
    let dir = Scratch::new("overhead")?;
    let (runtime, sender) = smtp_sender(dir.path(), &smtp_toml(sink.port(), false, None)).await?;
    // (b) connects as the host's `smtp` capability does: its own TCP connection, plaintext,
    // `TCP_NODELAY` after EHLO.
    let bare = ByHand::plain(sink.port());
    let envelope = envelope()?;
    let plugin_send = async |m: &Email| plugin::send(&runtime, &sender, m).await;
    let bare_send = async |m: &Email| bare_send(&bare, &envelope, m).await;

    let mut rows = String::new();
    for (what, m) in [
        ("text only, no attachment", {
            let mut m = message(0, 1024);
            m.attachments.clear();
            m.text_body = Some("Your scan is attached.".into());
            m
        }),
        ("50 KB message (28 KB PDF)", message(0, 28 * 1024)),
    ] {
        for _ in 0..WARM_UP {
            plugin_send(&m).await?;
        }
        let wire_a = sink.last_message_bytes();
        for _ in 0..WARM_UP {
            bare_send(&m).await?;
        }
        let wire_b = sink.last_message_bytes();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let started = Instant::now();
            for _ in 0..batch {
                plugin_send(&m).await?;
            }
            a.push(seconds(started) * 1e6 / batch as f64);
            let started = Instant::now();
            for _ in 0..batch {
                bare_send(&m).await?;
            }
            b.push(seconds(started) * 1e6 / batch as f64);
        }
        let (a, b) = (median(a), median(b));
        let native = time_native(&m, WARM_UP)?;
        rows.push_str(&format!(
            "| {what} | {a:.1} µs | {b:.1} µs | {:.1} µs | {native:.1} µs | {:.1} / {:.1} KB |\n",
            a - b,
            wire_a as f64 / 1024.0,
            wire_b as f64 / 1024.0,
        ));
    }

    let mut big = String::new();
    for mb in [1usize, 10, 30] {
        let m = message(0, mb * 1_000_000);
        plugin_send(&m).await?;
        let wire_a = sink.last_message_bytes();
        bare_send(&m).await?;
        let wire_b = sink.last_message_bytes();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let started = Instant::now();
            plugin_send(&m).await?;
            a.push(seconds(started) * 1e3);
            let started = Instant::now();
            bare_send(&m).await?;
            b.push(seconds(started) * 1e3);
        }
        let (a, b) = (median(a), median(b));
        let native = time_native(&m, 5)? / 1e3;
        big.push_str(&format!(
            "| {mb} MB | {a:.1} ms | {b:.1} ms | {:.2} | {native:.1} ms | {:.1} / {:.1} MB |\n",
            a / b,
            wire_a as f64 / 1e6,
            wire_b as f64 / 1e6,
        ));
    }
    Ok(format!(
        "\n### 2. The plugin path's own cost: each send against bare lettre, both to the harness's SMTP sink (loopback, no TLS)\n\n\
         | message | (a) SMTP plugin: fresh Store + instance + `send`, warm | (b) bare lettre: compose + send | the plugin design's share (a − b) | composing natively (part of b) | on the wire, a / b |\n\
         |---|---|---|---|---|---|\n{rows}\n\
         Every send, on both sides, is a whole SMTP dialogue (EHLO, MAIL, RCPT, DATA, QUIT) on a \
         new loopback connection to the harness's own discard listener (`bench/src/sink.rs`: it \
         answers at once, reads the message and drops it), so the figures include that dialogue \
         and both sides pay the same one. (a) is `Runtime::send`: the plugin composes the email \
         and the host's `smtp` capability connects and writes it. (b) composes the same email \
         with lettre's builder in the harness and sends it with lettre's `AsyncSmtpConnection` \
         over a TCP connection opened as the host opens it. a − b is what the plugin design adds \
         to a send; \"composing natively\" is (b)'s composing alone, what any sender has to do. \
         Median of 5 batches of {batch} sends per side, the sides alternating, after {WARM_UP} \
         warm-up sends each.\n\n\
         | attachment | (a) through the plugin | (b) bare lettre: compose + send | a / b | composing natively (part of b) | on the wire, a / b |\n\
         |---|---|---|---|---|---|\n{big}\n\
         Median of 5 sends per side, the sides alternating, after one each; both to the sink, \
         writing the whole message over loopback. Through the plugin, the attachment never \
         enters the guest: it goes in as a `blob` handle, comes back as a `message-part`, and \
         the host base64-encodes it in 1 MiB pieces as it writes them to the connection. (b) \
         builds the whole formatted message with lettre, as a sender without plugins would, then \
         writes it.\n",
    ))
}

/// (b): compose `m` natively, then send it over a connection opened as the host opens one.
async fn bare_send(bare: &ByHand, envelope: &LettreEnvelope, m: &Email) -> Result<()> {
    let raw = compose_natively(m)?;
    bare.send(envelope, &raw).await
}

/// µs per native compose of `m`, median of `n`.
fn time_native(m: &Email, n: usize) -> Result<f64> {
    let mut samples = Vec::new();
    for _ in 0..n {
        let started = Instant::now();
        let composed = compose_natively(m)?;
        samples.push(seconds(started) * 1e6);
        drop(composed);
    }
    Ok(median(samples))
}
