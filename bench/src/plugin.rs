//! The plugin side: a runtime and an SMTP sender made from settings as the binary makes them,
//! and sends through `Runtime::send`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use scan2x_mail::runtime::{Limits, Runtime, Sender};
use scan2x_mail::senders::{self, Wanted};
use scan2x_mail::settings::Settings;

use crate::message::{FROM, message};

/// A runtime with a private cache (under `dir`) and the one SMTP sender of `toml`, made as the
/// binary makes it (`senders::assemble`).
pub async fn smtp_sender(dir: &Path, toml: &str) -> Result<(Arc<Runtime>, Arc<Sender>)> {
    let path = dir.join("settings.toml");
    std::fs::write(&path, toml)?;
    let settings = Settings::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let runtime = Runtime::new(Some(dir.join("cache")), Limits::default())?;
    let sender = senders::assemble(&runtime, &settings, Wanted::All)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .pop()
        .context("the settings have no sender")?;
    Ok((Arc::new(runtime), Arc::new(sender)))
}

/// The settings of the SMTP sender: 127.0.0.1:`port`, STARTTLS or plaintext, no login.
pub fn smtp_toml(port: u16, starttls: bool, ca: Option<&str>) -> String {
    let mut toml = format!(
        "[senders.bench]\nplugin = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\n\
         enable_ssl = {starttls}\nemail_address = \"{FROM}\"\n"
    );
    if let Some(ca) = ca {
        toml.push_str(&format!("ca_file = {ca:?}\n"));
    }
    toml
}

/// One send of `m` through the plugin.
pub async fn send(
    runtime: &Runtime,
    sender: &Sender,
    m: &scan2x_mail::message::Email,
) -> Result<()> {
    runtime
        .send(sender, m)
        .await
        .map_err(|e| anyhow::anyhow!("plugin send: {e}"))?;
    Ok(())
}

/// `sends` sends spread over `tasks` tokio tasks; the wall time.
pub async fn run_plugin(
    runtime: &Arc<Runtime>,
    sender: &Arc<Sender>,
    sends: usize,
    tasks: usize,
    pdf_bytes: usize,
) -> Result<Duration> {
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (runtime, sender) = (runtime.clone(), sender.clone());
        let mine = sends / tasks + usize::from(t < sends % tasks);
        handles.push(tokio::spawn(async move {
            let message = message(t, pdf_bytes);
            for _ in 0..mine {
                send(&runtime, &sender, &message).await?;
            }
            anyhow::Ok(())
        }));
    }
    for h in handles {
        h.await??;
    }
    Ok(started.elapsed())
}
