//! The `scan2x-mail` binary: parses the command line, runs the command, prints the result and
//! exits with the code of its outcome (see `outcome`). Everything printed, logs included, passes
//! through the redactor (`secret::redact`), so no secret value reaches the terminal even if a
//! server echoed it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use serde_json::{Value, json};

use scan2x_mail::cli::{Cli, Command, SendArgs};
use scan2x_mail::dispatch;
use scan2x_mail::message::event_name;
use scan2x_mail::outcome::{self, Failure, FailureKind};
use scan2x_mail::router::{self, Candidate, Decision, Request};
use scan2x_mail::runtime::{Limits, Plugin, Runtime, Sender, cache};
use scan2x_mail::secret;
use scan2x_mail::senders::{self, Wanted};
use scan2x_mail::settings::{PluginRef, Settings, SettingsErrors};
use scan2x_mail::wit::WIT_VERSION;
use scan2x_mail::wit::types::{SettingDefault, SettingKind};

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
    let mut app = App {
        stdout_failed: std::cell::RefCell::new(None),
        json: matches!(
            &cli.command,
            Command::Plugins { json: true }
                | Command::Check { json: true }
                | Command::Test { json: true, .. }
        ) || matches!(&cli.command, Command::Send(a) if a.route.json)
            || matches!(&cli.command, Command::Route(a) if a.route.json),
    };
    let mut outcome = runtime.block_on(app.run(cli));
    log_peak_memory();
    // A closed or full standard output is a failure of its own, said on stderr (where else).
    if let Some(e) = app.stdout_failed.borrow_mut().take() {
        app.json = false;
        if let Err(failure) = &outcome {
            app.report(failure);
        }
        outcome = Err(Failure::new(
            FailureKind::Internal,
            format!("cannot write to standard output: {e}"),
        ));
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            app.report(&failure);
            ExitCode::from(failure.kind.exit_code())
        }
    }
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
    json: bool,
    /// Why writing to standard output failed (closed, full), once it has.
    stdout_failed: std::cell::RefCell<Option<std::io::Error>>,
}

/// Every string of `value` redacted, before it is serialized: so no escaping JSON adds can hide a
/// secret's spelling from the redactor.
fn redact_json(value: &mut Value) {
    match value {
        Value::String(text) => secret::redact_in_place(text),
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        Value::Object(map) => map.values_mut().for_each(redact_json),
        _ => {}
    }
}

impl App {
    fn report(&self, failure: &Failure) {
        let message = secret::redact(&failure.message);
        if self.json {
            let mut error = json!({ "kind": failure.kind.as_str(), "message": message });
            if let Some(secs) = failure.retry_after_secs {
                error["retry_after_secs"] = json!(secs);
            }
            self.print_json(&json!({ "error": error }));
        } else {
            // Partly sent is an outcome to act on, not an error.
            let label = if failure.kind.partly_sent() {
                "partly sent"
            } else {
                "error"
            };
            for line in message.lines() {
                eprintln!("{label}: {line}");
            }
            if let Some(secs) = failure.retry_after_secs {
                eprintln!("error: the server asked to wait {secs} s before trying again");
            }
        }
    }

    fn print(&self, text: &str) {
        self.write_out(&secret::redact(text));
    }

    fn print_json(&self, value: &Value) {
        let mut value = value.clone();
        redact_json(&mut value);
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

    async fn run(&mut self, cli: Cli) -> Result<(), Failure> {
        let cache_dir = cli
            .cache_dir
            .clone()
            .or_else(|| {
                std::env::var_os("SCAN2X_MAIL_CACHE_DIR")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .or_else(cache::default_dir);
        let runtime = Runtime::new(cache_dir, Limits::default()).map_err(|e| {
            Failure::new(
                FailureKind::Internal,
                format!("cannot start the plugin runtime: {e:#}"),
            )
        })?;
        let (config, explicit) = match (&cli.config, std::env::var_os("SCAN2X_MAIL_CONFIG")) {
            (Some(path), _) => (path.clone(), true),
            (None, Some(path)) if !path.is_empty() => (PathBuf::from(path), true),
            _ => (PathBuf::from("scan2x-mail.toml"), false),
        };
        match cli.command {
            Command::Plugins { json } => self.plugins(&runtime, &config, explicit, json).await,
            Command::Check { json } => self.check(&runtime, &config, json).await,
            Command::Test { sender, json } => {
                self.test(&runtime, &config, sender.as_deref(), json).await
            }
            Command::Send(args) => self.send(&runtime, &config, *args).await,
            Command::Route(args) => self.route(&runtime, &config, *args).await,
        }
    }

    /// Loads the settings file and makes the senders `wanted` names (see [`senders::assemble`]);
    /// all problems at once, as one settings failure. A sender named but not in the file is
    /// `unknown`'s failure, listing the senders the file has.
    async fn senders(
        &mut self,
        runtime: &Runtime,
        config: &std::path::Path,
        wanted: Wanted<'_>,
        unknown: FailureKind,
    ) -> Result<(Settings, Vec<Sender>), Failure> {
        let settings = Settings::load(config).map_err(settings_failure)?;
        if let Wanted::Only(name) = wanted
            && !settings.senders.iter().any(|s| s.name == name)
        {
            let names: Vec<&str> = settings.senders.iter().map(|s| s.name.as_str()).collect();
            return Err(Failure::new(
                unknown,
                format!(
                    "no sender named '{name}'; the settings file has: {}",
                    names.join(", ")
                ),
            ));
        }
        let senders = senders::assemble(runtime, &settings, wanted)
            .await
            .map_err(settings_failure)?;
        Ok((settings, senders))
    }

    async fn plugins(
        &mut self,
        runtime: &Runtime,
        config: &std::path::Path,
        explicit: bool,
        json: bool,
    ) -> Result<(), Failure> {
        let mut references: Vec<(PluginRef, Option<String>)> = Runtime::builtin_ids()
            .map(|id| (PluginRef::Builtin(id.to_string()), None))
            .collect();
        if explicit || config.exists() {
            let settings = Settings::load(config).map_err(settings_failure)?;
            for s in &settings.senders {
                let key = (s.plugin.clone(), s.sha256.clone());
                if !references.iter().any(|(r, _)| *r == key.0) {
                    references.push(key);
                }
            }
        }
        let mut loaded = Vec::new();
        for (reference, pin) in &references {
            let plugin = runtime.load(reference, pin.as_deref()).await.map_err(|e| {
                let kind = match reference {
                    PluginRef::Builtin(_) => FailureKind::Internal,
                    PluginRef::File(_) => FailureKind::InvalidSettings,
                };
                Failure::new(kind, e.to_string())
            })?;
            loaded.push(plugin);
        }
        if json {
            let list: Vec<Value> = loaded.iter().map(plugin_json).collect();
            self.print_json(&Value::Array(list));
        } else {
            for (i, plugin) in loaded.iter().enumerate() {
                if i > 0 {
                    self.print("");
                }
                self.print(&plugin_text(plugin));
            }
            // The keys every sender may set, beside its plugin's: from the settings' own table.
            self.print("");
            self.print(scan2x_mail::settings::help_text().trim_end());
        }
        Ok(())
    }

    async fn check(
        &mut self,
        runtime: &Runtime,
        config: &std::path::Path,
        json: bool,
    ) -> Result<(), Failure> {
        let (_, senders) = self
            .senders(runtime, config, Wanted::All, FailureKind::InvalidSettings)
            .await?;
        if json {
            let list: Vec<Value> = senders
                .iter()
                .map(|s| {
                    json!({
                        "name": s.settings.name,
                        "plugin": s.plugin.info.id,
                        "preferred": s.settings.preferred,
                        "allow_job_source": s.settings.allow_job_source,
                        "allow_job_recipients": s.settings.allow_job_recipients,
                        "grants": s.context.gate.grants().iter().map(ToString::to_string).collect::<Vec<_>>(),
                        "notes": s.notes,
                        "memory_limit_mb": s.limits.memory_bytes >> 20,
                        "cpu_limit_secs": s.limits.guest_cpu.as_secs(),
                        "call_limit_secs": s.limits.call_wall.as_secs(),
                    })
                })
                .collect();
            self.print_json(
                &json!({ "file": config.display().to_string(), "ok": true, "senders": list }),
            );
        } else {
            self.print(&format!("{}: settings are valid", config.display()));
            for s in &senders {
                let grants: Vec<String> = s
                    .context
                    .gate
                    .grants()
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                let mut options = Vec::new();
                for (on, name) in [
                    (s.settings.preferred, "preferred"),
                    (s.settings.allow_job_source, "allow_job_source"),
                    (s.settings.allow_job_recipients, "allow_job_recipients"),
                ] {
                    if on {
                        options.push(name);
                    }
                }
                self.print(&format!(
                    "  {} ({}){}: may reach {}",
                    s.settings.name,
                    s.plugin.info.id,
                    if options.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", options.join(", "))
                    },
                    if grants.is_empty() {
                        "nothing".into()
                    } else {
                        grants.join(", ")
                    }
                ));
                for note in &s.notes {
                    self.print(&format!("    note: {note}"));
                }
            }
        }
        Ok(())
    }

    async fn test(
        &mut self,
        runtime: &Runtime,
        config: &std::path::Path,
        name: Option<&str>,
        json: bool,
    ) -> Result<(), Failure> {
        let wanted = name.map_or(Wanted::All, Wanted::Only);
        let (_, senders) = self
            .senders(runtime, config, wanted, FailureKind::Usage)
            .await?;
        let sender = match name {
            Some(_) => &senders[0],
            None if senders.len() == 1 => &senders[0],
            None => {
                let names: Vec<&str> = senders.iter().map(|s| s.settings.name.as_str()).collect();
                return Err(Failure::new(
                    FailureKind::Usage,
                    format!("say which sender to test: {}", names.join(", ")),
                ));
            }
        };
        let (line, witnessed) = runtime.verify(sender).await;
        let line = line.map_err(|e| outcome::refine(Failure::from(e), &witnessed))?;
        if json {
            self.print_json(&json!({ "sender": sender.settings.name, "plugin": sender.plugin.info.id, "ok": true, "detail": line }));
        } else {
            self.print(&format!(
                "sender '{}' ({}): OK: {line}",
                sender.settings.name, sender.plugin.info.id
            ));
        }
        Ok(())
    }

    /// Routes an email: the decision, or the failure that explains why no sender may carry it.
    fn decide(senders: &[Sender], request: &Request<'_>) -> Result<Decision, Failure> {
        let candidates: Vec<Candidate<'_>> = senders
            .iter()
            .map(|s| Candidate {
                name: &s.settings.name,
                plugin_id: &s.plugin.info.id,
                speaks_smtp: s.plugin.speaks_smtp(),
                preferred: s.settings.preferred,
                allow_job_source: s.settings.allow_job_source,
                allow_job_recipients: s.settings.allow_job_recipients,
                events: &s.plugin.info.events,
            })
            .collect();
        router::choose(&candidates, request)
    }

    async fn route(
        &mut self,
        runtime: &Runtime,
        config: &std::path::Path,
        args: SendArgs,
    ) -> Result<(), Failure> {
        let draft = args.draft()?;
        let event = draft.event()?;
        let wanted = draft.sender.as_deref().map_or(Wanted::All, Wanted::Only);
        let (settings, senders) = self
            .senders(runtime, config, wanted, FailureKind::InvalidSettings)
            .await?;
        let job = draft.job_context();
        let decision = Self::decide(
            &senders,
            &Request {
                event,
                explicit: draft.sender.as_deref(),
                job: job.as_ref(),
            },
        )?;
        let failover = settings.failover && !decision.explicit;
        if args.route.json {
            self.print_json(&json!({
                "event": event_name(event),
                "chosen": decision.chosen(),
                "failover": failover,
                "order": if failover { decision.order.clone() } else { vec![decision.chosen().to_string()] },
                "senders": decision.verdicts.iter().map(|v| json!({
                    "sender": v.sender,
                    "plugin": v.plugin,
                    "eligible": v.eligible,
                    "reason": v.reason,
                })).collect::<Vec<_>>(),
            }));
            return Ok(());
        }
        let mut rows = vec![[
            "SENDER".to_string(),
            "PLUGIN".into(),
            "ELIGIBLE".into(),
            "REASON".into(),
        ]];
        for v in &decision.verdicts {
            rows.push([
                v.sender.clone(),
                v.plugin.clone(),
                if v.eligible {
                    "yes".into()
                } else {
                    "no".into()
                },
                v.reason.clone(),
            ]);
        }
        self.print(&format!("event: {}", event_name(event)));
        self.print(&table(&rows));
        let mut last = format!("chosen: {}", decision.chosen());
        if failover && decision.order.len() > 1 {
            last.push_str(&format!(
                "; on a temporary failure then: {}",
                decision.order[1..].join(", ")
            ));
        }
        self.print(&last);
        Ok(())
    }

    async fn send(
        &mut self,
        runtime: &Runtime,
        config: &std::path::Path,
        args: SendArgs,
    ) -> Result<(), Failure> {
        let prepared = args.draft()?.prepare()?;
        let message = &prepared.message;
        let wanted = prepared.sender.as_deref().map_or(Wanted::All, Wanted::Only);
        let (settings, senders) = self
            .senders(runtime, config, wanted, FailureKind::InvalidSettings)
            .await?;
        let decision = Self::decide(
            &senders,
            &Request {
                event: message.event,
                explicit: prepared.sender.as_deref(),
                job: prepared.job.as_ref(),
            },
        )?;
        let attempts =
            dispatch::deliver(runtime, &senders, &decision, settings.failover, message).await;
        let last = attempts
            .last()
            .expect("the decision names at least one sender");
        let attempts_json: Vec<Value> = attempts
            .iter()
            .map(|a| match &a.result {
                Ok(sent) => json!({ "sender": a.sender, "plugin": a.plugin, "result": "sent", "detail": sent.receipt.detail }),
                Err(f) => json!({ "sender": a.sender, "plugin": a.plugin, "result": f.kind.as_str(), "detail": f.message }),
            })
            .collect();
        let job_json = prepared.job.as_ref().map(|j| {
            json!({ "name": j.name, "source_sender": j.source_sender, "recipients": j.recipients })
        });
        match &last.result {
            Ok(sent) => {
                let receipt = &sent.receipt;
                let partly = sent.partly();
                if args.route.json {
                    let refused: Vec<Value> = receipt
                        .refused
                        .iter()
                        .zip(&sent.refused_for_now)
                        .map(|(r, now)| json!({ "address": r.address, "reason": r.reason, "for_now": now }))
                        .collect();
                    self.print_json(&json!({
                        "sender": last.sender,
                        "plugin": last.plugin,
                        "event": event_name(message.event),
                        "job": job_json,
                        "message_id": message.message_id,
                        "outcome": partly.as_ref().map_or("sent", |p| p.kind.as_str()),
                        "receipt": {
                            "provider_id": receipt.provider_id,
                            "accepted": receipt.accepted,
                            "refused": refused,
                            "detail": receipt.detail,
                        },
                        "notes": sent.notes,
                        "attempts": attempts_json,
                    }));
                    // Printed already; keep stderr to one line.
                    self.json = false;
                } else {
                    for a in &attempts[..attempts.len() - 1] {
                        if let Err(f) = &a.result {
                            self.print(&format!(
                                "tried '{}' ({}): {}: {}",
                                a.sender,
                                a.plugin,
                                f.kind.as_str(),
                                f.message
                            ));
                        }
                    }
                    self.print(&format!(
                        "sent through '{}' ({}; {})",
                        last.sender,
                        last.plugin,
                        decision.reason_for(&last.sender)
                    ));
                    self.print(&format!("  message-id: <{}>", message.message_id));
                    if let Some(id) = &receipt.provider_id {
                        self.print(&format!("  provider id: {id}"));
                    }
                    self.print(&format!("  accepted: {}", receipt.accepted.join(", ")));
                    for (r, now) in receipt.refused.iter().zip(&sent.refused_for_now) {
                        let how = if *now { "for now" } else { "for good" };
                        self.print(&format!("  refused {how}: {} ({})", r.address, r.reason));
                    }
                    for note in &sent.notes {
                        self.print(&format!("  note: {note}"));
                    }
                    self.print(&format!("  server: {}", receipt.detail));
                }
                partly.map_or(Ok(()), Err)
            }
            Err(failure) => {
                let mut failure = failure.clone();
                if args.route.json {
                    let mut error =
                        json!({ "kind": failure.kind.as_str(), "message": failure.message });
                    if let Some(secs) = failure.retry_after_secs {
                        error["retry_after_secs"] = json!(secs);
                    }
                    self.print_json(&json!({
                        "sender": last.sender,
                        "plugin": last.plugin,
                        "message_id": message.message_id,
                        "error": error,
                        "attempts": attempts_json,
                    }));
                    // Printed already; keep stderr to one line.
                    self.json = false;
                    failure.message = format!("{} ({})", failure.kind.as_str(), last.sender);
                } else {
                    let tried: Vec<String> = attempts
                        .iter()
                        .map(|a| match &a.result {
                            Ok(_) => format!("'{}' sent", a.sender),
                            Err(f) => format!(
                                "'{}' ({}): {}: {}",
                                a.sender,
                                a.plugin,
                                f.kind.as_str(),
                                f.message
                            ),
                        })
                        .collect();
                    failure.message = tried.join("\n");
                    if failure.kind == FailureKind::Uncertain {
                        failure
                            .message
                            .push_str(&format!("\nmessage-id: <{}>", message.message_id));
                    }
                }
                Err(failure)
            }
        }
    }
}

/// Left-aligned columns; the last column is not padded.
fn table(rows: &[[String; 4]]) -> String {
    let mut widths = [0usize; 3];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (w, cell) in widths.iter().zip(row.iter()) {
                line.push_str(&format!("{cell:<w$}  "));
            }
            line.push_str(&row[3]);
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn settings_failure(errors: SettingsErrors) -> Failure {
    Failure::new(FailureKind::InvalidSettings, errors.to_string())
}

fn kind_name(kind: SettingKind) -> &'static str {
    match kind {
        SettingKind::Text => "text",
        SettingKind::Integer => "integer",
        SettingKind::Boolean => "boolean",
        SettingKind::Secret => "secret",
    }
}

fn default_text(default: &Option<SettingDefault>) -> String {
    match default {
        Some(SettingDefault::Text(t)) => format!("{t:?}"),
        Some(SettingDefault::Integer(i)) => i.to_string(),
        Some(SettingDefault::Boolean(b)) => b.to_string(),
        None => "-".into(),
    }
}

fn source_text(plugin: &Plugin) -> String {
    match &plugin.reference {
        PluginRef::Builtin(_) => "built-in".into(),
        PluginRef::File(path) => path.display().to_string(),
    }
}

/// The built-in a plugin file stands in for: its id is a built-in's. The senders that name the
/// file use it; `plugin = "<id>"` still means the built-in.
fn replaces(plugin: &Plugin) -> Option<&str> {
    match &plugin.reference {
        PluginRef::File(_) => Runtime::builtin_ids().find(|id| *id == plugin.info.id),
        PluginRef::Builtin(_) => None,
    }
}

fn plugin_json(plugin: &Plugin) -> Value {
    let info = &plugin.info;
    json!({
        "id": info.id,
        "version": info.version,
        "label": info.label,
        "description": info.description,
        "wit": format!("scan2x:mail@{WIT_VERSION}"),
        "source": source_text(plugin),
        "replaces": replaces(plugin),
        "sha256": plugin.sha256,
        "events": info.events.iter().map(|e| event_name(*e)).collect::<Vec<_>>(),
        "network": info.network,
        "settings": info.settings.iter().map(|s| json!({
            "key": s.key,
            "label": s.label,
            "kind": kind_name(s.kind),
            "required": s.required,
            "default": match &s.default {
                Some(SettingDefault::Text(t)) => json!(t),
                Some(SettingDefault::Integer(i)) => json!(i),
                Some(SettingDefault::Boolean(b)) => json!(b),
                None => Value::Null,
            },
            "help": s.help,
        })).collect::<Vec<_>>(),
    })
}

fn plugin_text(plugin: &Plugin) -> String {
    let info = &plugin.info;
    let mut out = format!("{} {} - {}\n", info.id, info.version, info.label);
    if !info.description.is_empty() {
        out.push_str(&format!("  {}\n", info.description));
    }
    out.push_str(&format!("  source:   {}\n", source_text(plugin)));
    if let Some(id) = replaces(plugin) {
        out.push_str(&format!(
            "  replaces: the built-in {id}, for the senders that name this file\n"
        ));
    }
    out.push_str(&format!("  sha256:   {}\n", plugin.sha256));
    out.push_str(&format!("  WIT:      scan2x:mail@{WIT_VERSION}\n"));
    let events: Vec<&str> = info.events.iter().map(|e| event_name(*e)).collect();
    out.push_str(&format!("  events:   {}\n", events.join(", ")));
    out.push_str(&format!("  network:  {}\n", info.network.join(", ")));
    out.push_str("  settings:\n");
    let rows: Vec<[String; 5]> = info
        .settings
        .iter()
        .map(|s| {
            [
                s.key.clone(),
                kind_name(s.kind).to_string(),
                if s.required {
                    "yes".into()
                } else {
                    "no".into()
                },
                default_text(&s.default),
                if s.help.is_empty() {
                    s.label.clone()
                } else {
                    format!("{}: {}", s.label, s.help)
                },
            ]
        })
        .collect();
    let header = ["KEY", "KIND", "REQUIRED", "DEFAULT", "DESCRIPTION"].map(String::from);
    let mut widths = [0usize; 4];
    for row in std::iter::once(&header).chain(rows.iter()) {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(rows.iter()) {
        out.push_str("    ");
        for (w, cell) in widths.iter().zip(row.iter()) {
            out.push_str(&format!("{cell:<w$}  "));
        }
        out.push_str(&row[4]);
        out.push('\n');
    }
    out.trim_end().to_string()
}
