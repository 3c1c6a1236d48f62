//! The command line: arguments as clap types. `main.rs` runs them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::message::{AttachmentSpec, Draft, JobDraft};
use crate::outcome::{Failure, FailureKind};
use crate::wit::event_name;
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

    /// Where the outbox keeps queued emails (`submit`, `queue`) [default: $SCAN2X_MAIL_DATA_DIR,
    /// else $XDG_DATA_HOME/scan2x-mail or ~/.local/share/scan2x-mail]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

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
    /// Send one email; prints the sender used, why, and the server's receipt
    Send(Box<SendArgs>),
    /// Say which sender would carry an email, and why, without sending it (takes the same
    /// options as `send`; only the routing ones matter)
    Route(Box<SendArgs>),
    /// Put one email in the outbox (checked as `send` checks it); exit 0 once it is durable.
    /// `queue flush` or `queue run` delivers it
    Submit(Box<SubmitArgs>),
    /// The outbox: list, show, retry, hold, release, delete, flush, run
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// Run the delivery worker and the local HTTP API until SIGTERM or SIGINT (SIGHUP reloads
    /// the settings); every /v1 request needs the bearer token kept in the data folder's
    /// `api-token`
    Serve(ServeArgs),
}

/// `serve`: where to listen, which folders attachments may come from.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on, instead of the settings' `[service] listen` (default
    /// 127.0.0.1:8740, loopback only: another address is reachable by others); port 0 takes a
    /// free one (the address is said on stderr)
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,

    /// A folder whose files a submitted email may attach by path (repeatable), instead of the
    /// settings' `[service] attachments_from`; without either, the API takes no attachment
    /// paths (the service reads them with its own rights)
    #[arg(long, value_name = "DIR")]
    pub attachments_from: Vec<PathBuf>,
}

/// `submit`: everything `send` takes, and an idempotency key.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub send: SendArgs,

    /// A key of the caller's: a second submit with the same key (and the same email) queues
    /// nothing and answers with the first one's id; with another email it is a usage error
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
}

/// `queue …`: the outbox's commands, after Postfix's (`mailq`, `postqueue -f`, `postsuper`).
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// List the emails in the outbox, oldest first (as `mailq`)
    List {
        /// Only the emails in this state: queued, sending, delivered, failed or held
        #[arg(long, value_name = "STATE")]
        state: Option<scan2x_mail_outbox::State>,
        #[arg(long)]
        json: bool,
    },
    /// One email: what it is, its recipients' states, every attempt
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Try an email again now, with a fresh lifetime (recipients refused for good owed again);
    /// with --failed, every failed email
    Retry {
        #[arg(required_unless_present = "failed", conflicts_with = "failed")]
        id: Option<String>,
        /// Every failed email
        #[arg(long)]
        failed: bool,
        #[arg(long)]
        json: bool,
    },
    /// Park a queued email: it is not delivered until released (as `postsuper -h`)
    Hold {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Queue a held email again, due now (as `postsuper -H`)
    Release {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove an email and its attachments from the outbox (as `postsuper -d`)
    Delete {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Make every queued email due now and deliver them in the foreground (as `postqueue -f`);
    /// one line per email on stderr, then a summary
    Flush {
        #[arg(long)]
        json: bool,
    },
    /// Deliver only the emails due now (what a service does on a timer)
    Run {
        #[arg(long)]
        json: bool,
    },
}

impl QueueCommand {
    pub fn json(&self) -> bool {
        match self {
            QueueCommand::List { json, .. }
            | QueueCommand::Show { json, .. }
            | QueueCommand::Retry { json, .. }
            | QueueCommand::Hold { json, .. }
            | QueueCommand::Release { json, .. }
            | QueueCommand::Delete { json, .. }
            | QueueCommand::Flush { json }
            | QueueCommand::Run { json } => *json,
        }
    }
}

impl Command {
    /// Whether to print the result as JSON (`--json`): the one place the output format is
    /// decided.
    pub fn json(&self) -> bool {
        match self {
            Command::Plugins { json } | Command::Check { json } | Command::Test { json, .. } => {
                *json
            }
            Command::Send(args) | Command::Route(args) => args.route.json,
            Command::Submit(args) => args.send.route.json,
            Command::Queue { command } => command.json(),
            Command::Serve(_) => false,
        }
    }
}

/// What decides the sender: shared by `send` and `route`.
#[derive(Debug, Args)]
pub struct RouteArgs {
    /// Use this sender instead of letting the settings choose
    #[arg(long, value_name = "NAME")]
    pub sender: Option<String>,

    /// Why the email is sent [default: job-output]
    #[arg(long, value_enum)]
    pub event: Option<Event>,

    /// The name of the job the email comes from
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,

    /// The sender named in the job's source settings (used if it has allow_job_source)
    #[arg(long, value_name = "SENDER")]
    pub job_source: Option<String>,

    /// A recipient from the job configuration, added to To; only senders with
    /// allow_job_recipients may carry such an email (repeatable)
    #[arg(long, value_name = "ADDR")]
    pub job_recipient: Vec<String>,

    /// Read the email from a JSON file (see the README); the other options add to it or
    /// override it
    #[arg(long, value_name = "FILE")]
    pub message: Option<PathBuf>,

    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

impl RouteArgs {
    /// What these options say about the email.
    pub fn draft(&self) -> Draft {
        let job =
            (self.job.is_some() || self.job_source.is_some() || !self.job_recipient.is_empty())
                .then(|| JobDraft {
                    name: self.job.clone(),
                    source_sender: self.job_source.clone(),
                    recipients: self.job_recipient.clone(),
                });
        Draft {
            event: self.event.map(|e| event_name(e.into()).to_string()),
            sender: self.sender.clone(),
            job,
            ..Draft::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub route: RouteArgs,

    /// A recipient: `user@example.com` or `Name <user@example.com>` (repeatable)
    #[arg(long, value_name = "ADDR")]
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
    pub subject: Option<String>,

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

    /// Send with this Message-ID (angle brackets optional): to send again an email whose
    /// outcome was uncertain, so recipients' systems can tell it is the same [default: a new one]
    #[arg(long, value_name = "ID")]
    pub message_id: Option<String>,
}

impl SendArgs {
    /// The email as these options and the `--message` file describe it.
    pub fn draft(&self) -> Result<Draft, Failure> {
        let read = |path: &PathBuf| {
            crate::message::read_text_file(path).map_err(|e| {
                Failure::new(
                    FailureKind::InvalidMessage,
                    format!("cannot read {}: {e}", path.display()),
                )
            })
        };
        let file = match &self.route.message {
            Some(path) => Draft::from_file(path)?,
            None => Draft::default(),
        };
        let text = match (&self.text, &self.text_file) {
            (Some(text), _) => Some(text.clone()),
            (None, Some(path)) => Some(read(path)?),
            (None, None) => None,
        };
        let flags = Draft {
            from: self.from.clone(),
            to: self.to.clone(),
            cc: self.cc.clone(),
            bcc: self.bcc.clone(),
            reply_to: self.reply_to.clone(),
            subject: self.subject.clone(),
            message_id: self.message_id.clone(),
            text,
            html: self.html_file.as_ref().map(read).transpose()?,
            attachments: self
                .attach
                .iter()
                .cloned()
                .map(AttachmentSpec::Path)
                .collect(),
            ..self.route.draft()
        };
        Ok(file.merge(flags))
    }
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
