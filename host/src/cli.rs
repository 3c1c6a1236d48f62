//! The command line: arguments as clap types. `main.rs` runs them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::wit::types::EventKind;

/// Send the scanning product's email through sandboxed sender plugins (SMTP, Microsoft Graph,
/// IMAP, or a vendor's).
#[derive(Debug, Parser)]
#[command(name = "scan2x-mail", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// The settings file [default: $SCAN2X_MAIL_CONFIG, else ./scan2x-mail.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Where compiled plugins are cached [default: $SCAN2X_MAIL_CACHE_DIR, else
    /// $XDG_CACHE_HOME/scan2x-mail or ~/.cache/scan2x-mail]
    #[arg(long, global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// More log output on stderr (-v: info, -vv: debug, -vvv: trace); SCAN2X_MAIL_LOG takes a
    /// tracing filter instead
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

pub const EXIT_CODES: &str = "\
Exit codes:
  0  done
  1  a plugin crashed or hit a limit, or another failure
  2  usage error
  3  settings error: fix the settings file or the sender's settings
  4  message error: an address, an attachment or the size
  5  authentication failed: fix the credentials
  6  rejected for good by the server
  7  temporary failure: try again later
  8  denied by the sandbox: the sender was not granted that destination";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the plugins (built-in and those the settings file names) with their settings schema
    Plugins {
        #[arg(long)]
        json: bool,
    },
    /// Validate the settings file without touching the network
    Check {
        #[arg(long)]
        json: bool,
    },
    /// Test a sender's settings ("Test SMTP Settings"): connect, secure, log in; no mail is sent
    Test {
        /// The sender to test [default: the only sender]
        sender: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Send one email
    Send(Box<SendArgs>),
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Use this sender instead of letting the settings choose
    #[arg(long, value_name = "NAME")]
    pub sender: Option<String>,

    /// Why the email is sent
    #[arg(long, value_enum, default_value_t = Event::JobOutput)]
    pub event: Event,

    /// A recipient: `user@example.com` or `Name <user@example.com>` (repeatable)
    #[arg(long, value_name = "ADDR", required = true)]
    pub to: Vec<String>,

    /// A Cc recipient (repeatable)
    #[arg(long, value_name = "ADDR")]
    pub cc: Vec<String>,

    /// A Bcc recipient: receives the email, appears in no header (repeatable)
    #[arg(long, value_name = "ADDR")]
    pub bcc: Vec<String>,

    /// A Reply-To address (repeatable)
    #[arg(long, value_name = "ADDR")]
    pub reply_to: Vec<String>,

    /// The From address [default: the sender's configured address]
    #[arg(long, value_name = "ADDR")]
    pub from: Option<String>,

    #[arg(long)]
    pub subject: String,

    /// The plain-text body
    #[arg(long, conflicts_with = "text_file")]
    pub text: Option<String>,

    /// Read the plain-text body from a file (UTF-8)
    #[arg(long, value_name = "FILE")]
    pub text_file: Option<PathBuf>,

    /// Read an HTML body from a file (UTF-8)
    #[arg(long, value_name = "FILE")]
    pub html_file: Option<PathBuf>,

    /// Attach a file; its type comes from its extension (repeatable)
    #[arg(long, value_name = "FILE")]
    pub attach: Vec<PathBuf>,

    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Event {
    /// The output of a "Scan to Email" job
    JobOutput,
    /// A copy of a saved scan
    SavedScanCopy,
    /// A new login PIN
    PinRequest,
    /// Documents left as draft or in error in a user's scan queue
    QueueNotification,
}

impl From<Event> for EventKind {
    fn from(e: Event) -> Self {
        match e {
            Event::JobOutput => EventKind::JobOutput,
            Event::SavedScanCopy => EventKind::SavedScanCopy,
            Event::PinRequest => EventKind::PinRequest,
            Event::QueueNotification => EventKind::QueueNotification,
        }
    }
}
