//! The `log` interface: plugin diagnostics into the host's tracing, tagged with the sender.
//! Volume is bounded per call, so a chatty or hostile plugin can't flood the host's log.

use super::HostState;
use crate::wit::log::{Host, Level};

/// At most this many log lines per call; the rest are counted and reported once.
const MAX_LINES: usize = 200;
/// Longer lines are cut.
const MAX_LINE_BYTES: usize = 2000;

#[derive(Debug, Default)]
pub struct LogBudget {
    lines: usize,
}

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.log.lines += 1;
        if self.log.lines > MAX_LINES {
            if self.log.lines == MAX_LINES + 1 {
                tracing::warn!(sender = %self.sender.name, "plugin log limit reached; further lines of this call are dropped");
            }
            return Ok(());
        }
        let mut message = message;
        if message.len() > MAX_LINE_BYTES {
            let mut cut = MAX_LINE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let sender = self.sender.name.as_str();
        match level {
            Level::Trace => tracing::trace!(target: "plugin", sender, "{message}"),
            Level::Debug => tracing::debug!(target: "plugin", sender, "{message}"),
            Level::Info => tracing::info!(target: "plugin", sender, "{message}"),
            Level::Warn => tracing::warn!(target: "plugin", sender, "{message}"),
            Level::Error => tracing::error!(target: "plugin", sender, "{message}"),
        }
        Ok(())
    }
}
