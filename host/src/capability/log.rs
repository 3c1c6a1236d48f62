//! The `log` interface: plugin diagnostics into the host's tracing, tagged with the sender.
//! Volume is bounded per call, so a chatty or hostile plugin can't flood the host's log, and
//! every line is cut and has its control characters escaped, so it can't forge a line of the
//! host's own (a newline, then `ERROR …`) or hide text with terminal escape codes.
//!
//! The budget covers every line a plugin can cause, not only its own: the host's warnings about
//! what a call did (a `state` value not kept) are counted against it too ([`LogBudget::allow`]).

use super::HostState;
use crate::secret::{escape_controls, truncate_marked};
use crate::wit::log::{Host, Level};

/// At most this many log lines per call; the rest are counted and reported once.
pub const MAX_LINES: usize = 200;
/// Longer lines are cut.
const MAX_LINE_BYTES: usize = 2000;

#[derive(Debug, Default)]
pub struct LogBudget {
    lines: usize,
}

impl LogBudget {
    /// Whether one more line may be written for this call; at the first line over the budget,
    /// says once that the rest are dropped.
    pub fn allow(&mut self, sender: &str) -> bool {
        self.lines += 1;
        if self.lines == MAX_LINES + 1 {
            tracing::warn!(
                sender,
                "plugin log limit reached ({MAX_LINES} lines); further lines of this call are dropped"
            );
        }
        self.lines <= MAX_LINES
    }
}

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let sender = self.sender.name.as_str();
        if !self.log.allow(sender) {
            return Ok(());
        }
        let mut message = message;
        truncate_marked(&mut message, MAX_LINE_BYTES);
        let message = escape_controls(&message);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_ends_after_max_lines() {
        let mut budget = LogBudget::default();
        let allowed = (0..MAX_LINES + 50).filter(|_| budget.allow("s")).count();
        assert_eq!(allowed, MAX_LINES);
    }
}
