//! The `scan2x-mail` binary: parses the command line, runs the command, prints the result and
//! exits with the code of its outcome (see `outcome`). Everything printed, logs included, passes
//! through the redactor (`secret::redact`), so no secret value reaches the terminal even if a
//! server echoed it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use scan2x_mail::cli::{Cli, Command, QueueCommand, SubmitArgs};
use scan2x_mail::commands;
use scan2x_mail::outcome::{Failure, FailureKind};
use scan2x_mail::queue::{self, Deliverer, outbox_failure};
use scan2x_mail::report::{
    ErrorReport, QueueChangeReport, QueueEntry, QueueListReport, QueueRunEmail, QueueRunReport,
    QueueShowReport, Report, SubmitReport, bare_message_id,
};
use scan2x_mail::runtime::{Allocation, Limits, Runtime, cache};
use scan2x_mail::secret;
use scan2x_mail_outbox::Outbox;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(FailureKind::Internal.exit_code());
        }
    };
    let app = App {
        json: cli.command.json(),
        stdout_failed: std::cell::RefCell::new(None),
    };
    let result = runtime.block_on(app.run(cli));
    log_peak_memory();
    app.finish(result)
}

/// The process's peak resident memory, at debug level: what a plugin's allocations cost the
/// host (Linux only; elsewhere nothing is logged).
fn log_peak_memory() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(kib) = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    {
        tracing::debug!("peak resident memory: {} MiB", kib / 1024);
    }
}

fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("SCAN2X_MAIL_LOG") {
        Ok(filter) if !filter.is_empty() => EnvFilter::new(filter),
        _ => {
            let level = match verbose {
                0 => "warn",
                1 => "info",
                2 => "debug",
                _ => "trace",
            };
            EnvFilter::new(format!("warn,scan2x_mail={level},plugin={level}"))
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| RedactingWriter(std::io::stderr()))
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .init();
}

/// Standard error for log lines, with every secret redacted. tracing's formatter writes each
/// event in one `write`, so a secret is never split across two.
struct RedactingWriter(std::io::Stderr);

impl std::io::Write for RedactingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(secret::redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

struct App {
    /// `--json`: every report and error is printed as JSON.
    json: bool,
    /// Why writing to standard output failed (closed, full), once it has.
    stdout_failed: std::cell::RefCell<Option<std::io::Error>>,
}

impl App {
    /// Prints what the run ended with, once, and gives its exit code. A report goes to stdout,
    /// as JSON or text; the failure its exit code says beside it (partly sent, not sent) goes to
    /// stderr as text. A failure without a report takes the report's place: JSON on stdout, or
    /// text on stderr.
    fn finish(&self, result: Result<Report, Failure>) -> ExitCode {
        let mut failure = match result {
            Err(failure) => {
                if self.json {
                    self.print_json(&ErrorReport::from(&failure));
                } else {
                    self.print_error(&failure);
                }
                return ExitCode::from(failure.kind.exit_code());
            }
            // In text, an email not sent is said as its failure, every attempt in it.
            Ok(Report::NotSent(not_sent)) if !self.json => Some(not_sent.failure_in_full()),
            Ok(report) => {
                if self.json {
                    self.print_json(&report);
                } else {
                    self.print_text(&report);
                }
                report.failure()
            }
        };
        // A closed or full standard output is a failure of its own, said on stderr (where else).
        if let Some(e) = self.stdout_failed.borrow_mut().take() {
            if let Some(failure) = &failure {
                self.print_error(failure);
            }
            failure = Some(Failure::new(
                FailureKind::Internal,
                format!("cannot write to standard output: {e}"),
            ));
        }
        match failure {
            None => ExitCode::SUCCESS,
            Some(failure) => {
                self.print_error(&failure);
                ExitCode::from(failure.kind.exit_code())
            }
        }
    }

    /// A failure as text on stderr (`error: …`, one line per line of its message).
    fn print_error(&self, failure: &Failure) {
        let mut failure = failure.clone();
        secret::redact_in_place(&mut failure.message);
        let text = ErrorReport::from(&failure).to_string();
        if !text.is_empty() {
            eprintln!("{}", secret::redact(&text));
        }
    }

    fn print_text(&self, report: &impl std::fmt::Display) {
        self.write_out(&secret::redact(&report.to_string()));
    }

    fn print_json(&self, report: &impl serde::Serialize) {
        let mut value = serde_json::to_value(report).expect("JSON of plain values");
        secret::redact_json(&mut value);
        let text = serde_json::to_string_pretty(&value).expect("JSON of plain values");
        self.write_out(&secret::redact(&text));
    }

    /// One line to standard output; a failure to write is kept for the exit, never a panic
    /// (`println!` panics on a closed or full stdout).
    fn write_out(&self, text: &str) {
        use std::io::Write as _;
        let mut failed = self.stdout_failed.borrow_mut();
        if failed.is_some() {
            return;
        }
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush()) {
            *failed = Some(e);
        }
    }

    /// Runs the command: its report, or the failure that stopped it.
    async fn run(&self, cli: Cli) -> Result<Report, Failure> {
        let (config, explicit) = config_path(&cli);
        // The outbox's own commands need no plugin runtime.
        match cli.command {
            Command::Submit(args) => {
                let dir = queue::data_dir(cli.data_dir.as_deref())?;
                return submit(&config, &dir, *args).map(Report::Submitted);
            }
            Command::Queue { command }
                if !matches!(
                    command,
                    QueueCommand::Flush { .. } | QueueCommand::Run { .. }
                ) =>
            {
                let dir = queue::data_dir(cli.data_dir.as_deref())?;
                return queue_admin(&open_outbox(&dir)?, command);
            }
            _ => {}
        }
        let cache_dir = cli
            .cache_dir
            .clone()
            .or_else(|| {
                std::env::var_os("SCAN2X_MAIL_CACHE_DIR")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .or_else(cache::default_dir);
        // `serve` and `queue flush/run` make many plugin calls: the pool pays for itself there.
        // A one-shot command maps its call or two instead of setting up and tearing down the
        // pool (≈1 ms of a one-email send; `cargo xtask bench`, part 5).
        let allocation = match &cli.command {
            Command::Serve(..) | Command::Queue { .. } => Allocation::Pooled,
            _ => Allocation::PerCall,
        };
        let runtime = Runtime::new_with(cache_dir, Limits::default(), allocation).map_err(|e| {
            Failure::new(
                FailureKind::Internal,
                format!("cannot start the plugin runtime: {e:#}"),
            )
        })?;
        match cli.command {
            Command::Plugins { .. } => commands::plugins(&runtime, &config, explicit)
                .await
                .map(Report::Plugins),
            Command::Check { .. } => commands::check(&runtime, &config).await.map(Report::Check),
            Command::Test { sender, .. } => commands::test(&runtime, &config, sender.as_deref())
                .await
                .map(Report::Test),
            Command::Send(args) => commands::send(&runtime, &config, args.draft()?).await,
            Command::Route(args) => commands::route(&runtime, &config, args.draft()?)
                .await
                .map(Report::Route),
            Command::Queue { command } => {
                let dir = queue::data_dir(cli.data_dir.as_deref())?;
                let flush = matches!(command, QueueCommand::Flush { .. });
                queue_deliver(&runtime, &config, &dir, flush)
                    .await
                    .map(Report::QueueRun)
            }
            Command::Serve(args) => {
                let dir = queue::data_dir(cli.data_dir.as_deref())?;
                let options = scan2x_mail::serve::ServeOptions {
                    listen: args.listen,
                    attachments_from: args.attachments_from,
                };
                scan2x_mail::serve::run(std::sync::Arc::new(runtime), &config, &dir, options)
                    .await
                    .map(Report::Served)
            }
            Command::Submit(_) => unreachable!("handled before the runtime is made"),
        }
    }
}

/// The settings file: `--config`, else `$SCAN2X_MAIL_CONFIG`, else `./scan2x-mail.toml`; and
/// whether it was named (then it must exist).
fn config_path(cli: &Cli) -> (PathBuf, bool) {
    match (&cli.config, std::env::var_os("SCAN2X_MAIL_CONFIG")) {
        (Some(path), _) => (path.clone(), true),
        (None, Some(path)) if !path.is_empty() => (PathBuf::from(path), true),
        _ => (PathBuf::from("scan2x-mail.toml"), false),
    }
}

fn open_outbox(dir: &std::path::Path) -> Result<Outbox, Failure> {
    Outbox::open(dir).map_err(outbox_failure)
}

/// `submit`: the email checked as `send` checks it (addresses, subject, files: exit 4), the
/// settings file read (exit 3), its Message-ID fixed, then handed to the outbox; returns once it
/// is durable.
fn submit(
    config: &std::path::Path,
    data_dir: &std::path::Path,
    args: SubmitArgs,
) -> Result<SubmitReport, Failure> {
    let draft = args.send.draft()?;
    let submitted = queue::submit(
        config,
        &open_outbox(data_dir)?,
        &draft,
        args.idempotency_key,
        FailureKind::InvalidSettings,
    )?;
    Ok(SubmitReport {
        id: submitted.id,
        message_id: bare_message_id(&submitted.message_id),
        duplicate: submitted.duplicate,
    })
}

/// `queue list`, `show`, `retry`, `hold`, `release`, `delete`: the outbox alone.
fn queue_admin(outbox: &Outbox, command: QueueCommand) -> Result<Report, Failure> {
    let change = |action, ids| Ok(Report::QueueChange(QueueChangeReport { action, ids }));
    match command {
        QueueCommand::List { state, .. } => {
            let emails = outbox.list(state).map_err(outbox_failure)?;
            Ok(Report::QueueList(QueueListReport {
                emails: emails.iter().map(QueueEntry::from).collect(),
            }))
        }
        QueueCommand::Show { id, .. } => {
            let d = outbox.show(&id).map_err(outbox_failure)?;
            Ok(Report::QueueShow(Box::new(QueueShowReport::from(d))))
        }
        QueueCommand::Retry {
            id: Some(id),
            failed: false,
            ..
        } => {
            outbox.retry(&id).map_err(outbox_failure)?;
            change("retried", vec![id])
        }
        QueueCommand::Retry { .. } => {
            let failed: Vec<String> = outbox
                .list(Some(scan2x_mail_outbox::State::Failed))
                .map_err(outbox_failure)?
                .into_iter()
                .map(|s| s.id)
                .collect();
            let n = outbox.retry_failed().map_err(outbox_failure)?;
            // Another process may have changed one between the list and the retry.
            change(
                "retried",
                failed.into_iter().take(n).collect::<Vec<String>>(),
            )
        }
        QueueCommand::Hold { id, .. } => {
            outbox.hold(&id).map_err(outbox_failure)?;
            change("held", vec![id])
        }
        QueueCommand::Release { id, .. } => {
            outbox.release(&id).map_err(outbox_failure)?;
            change("released", vec![id])
        }
        QueueCommand::Delete { id, .. } => {
            outbox.delete(&id).map_err(outbox_failure)?;
            change("deleted", vec![id])
        }
        QueueCommand::Flush { .. } | QueueCommand::Run { .. } => Err(Failure::new(
            FailureKind::Internal,
            "queue flush and run need the plugin runtime",
        )),
    }
}

/// `queue flush` (everything queued made due now) and `queue run` (only what is due): each
/// email delivered in the foreground, one line of progress on stderr per email.
async fn queue_deliver(
    runtime: &Runtime,
    config: &std::path::Path,
    data_dir: &std::path::Path,
    flush: bool,
) -> Result<QueueRunReport, Failure> {
    let deliverer = Deliverer::new(runtime, config).await?;
    // Each claim outlasts the longest delivery these senders can make.
    let options = scan2x_mail_outbox::Options {
        lease: deliverer.lease(),
        ..Default::default()
    };
    let outbox = Outbox::open_with(
        data_dir,
        options,
        std::sync::Arc::new(scan2x_mail_outbox::SystemClock),
    )
    .map_err(outbox_failure)?;
    if flush {
        outbox.make_all_due().map_err(outbox_failure)?;
    }
    let mut emails = Vec::new();
    let counts = outbox
        .flush(&deliverer, |done| {
            let email = QueueRunEmail {
                id: done.id.clone(),
                message_id: bare_message_id(&done.message_id),
                sender: done.sender.clone(),
                outcome: done.outcome.to_string(),
                state: done.state.to_string(),
            };
            eprintln!("{}", secret::redact(&email.to_string()));
            emails.push(email);
        })
        .await
        .map_err(outbox_failure)?;
    // As `serve` does hourly: delivered emails past `keep_delivered_days` go.
    outbox
        .purge_delivered(deliverer.settings().keep_delivered())
        .map_err(outbox_failure)?;
    Ok(QueueRunReport {
        command: if flush { "flush" } else { "run" },
        delivered: counts.delivered,
        deferred: counts.deferred,
        failed: counts.failed,
        other: counts.other,
        emails,
    })
}
