//! The bodies of the commands that read the settings and use the plugin runtime: `plugins`,
//! `check`, `test`, `route` and `send`, each returning its report. The binary prints them;
//! `serve`'s API answers with the same reports (`GET /v1/plugins`, `/v1/senders`, `/v1/route`,
//! `POST /v1/senders/{name}/test`, `/v1/send`).

use std::path::Path;

use crate::dispatch;
use crate::message::Draft;
use crate::outcome::{self, Failure, FailureKind};
use crate::queue::decide;
use crate::report::{
    AttemptReport, AttemptResult, CheckReport, CheckedSender, DefaultValue, JobReport,
    NotSentReport, PluginReport, PluginsReport, ReceiptReport, RefusedReport, Report, RouteReport,
    SendReport, SettingReport, TestReport, VerdictReport,
};
use crate::router::Request;
use crate::runtime::{Plugin, Runtime, Sender};
use crate::senders::{self, Wanted};
use crate::settings::{PluginRef, Settings, SettingsErrors};
use crate::wit::WIT_VERSION;
use crate::wit::event_name;
use crate::wit::types::{SettingDefault, SettingKind};

/// Loads the settings file and makes the senders `wanted` names (see [`senders::assemble`]);
/// all problems at once, as one settings failure. A sender named but not in the file is
/// `unknown`'s failure, listing the senders the file has.
pub async fn load_senders(
    runtime: &Runtime,
    config: &Path,
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

/// `plugins`: the built-ins and every plugin file the settings name.
pub async fn plugins(
    runtime: &Runtime,
    config: &Path,
    explicit: bool,
) -> Result<PluginsReport, Failure> {
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
    let mut plugins = Vec::new();
    for (reference, pin) in &references {
        let plugin = runtime.load(reference, pin.as_deref()).await.map_err(|e| {
            let kind = match reference {
                PluginRef::Builtin(_) => FailureKind::Internal,
                PluginRef::File(_) => FailureKind::InvalidSettings,
            };
            Failure::new(kind, e.to_string())
        })?;
        plugins.push(plugin_report(&plugin));
    }
    Ok(PluginsReport {
        plugins,
        // The keys every sender may set, beside its plugin's: from the settings' own table.
        host_keys: crate::settings::help_text(),
    })
}

/// `check`: the settings file read and every sender made.
pub async fn check(runtime: &Runtime, config: &Path) -> Result<CheckReport, Failure> {
    let (_, senders) =
        load_senders(runtime, config, Wanted::All, FailureKind::InvalidSettings).await?;
    Ok(CheckReport {
        file: config.display().to_string(),
        ok: true,
        senders: senders
            .iter()
            .map(|s| CheckedSender {
                name: s.settings.name.clone(),
                plugin: s.plugin.info.id.clone(),
                preferred: s.settings.preferred,
                allow_job_source: s.settings.allow_job_source,
                allow_job_recipients: s.settings.allow_job_recipients,
                grants: s
                    .context
                    .gate
                    .grants()
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                notes: s.notes.clone(),
                memory_limit_mb: (s.limits.memory_bytes >> 20) as u64,
                cpu_limit_secs: s.limits.guest_cpu.as_secs(),
                call_limit_secs: s.limits.call_wall.as_secs(),
                max_concurrent: s.settings.max_concurrent(),
                max_per_minute: s.settings.max_per_minute(),
            })
            .collect(),
    })
}

/// `test`: the sender `name` (or the only one) verified: connect, secure, log in.
pub async fn test(
    runtime: &Runtime,
    config: &Path,
    name: Option<&str>,
) -> Result<TestReport, Failure> {
    let wanted = name.map_or(Wanted::All, Wanted::Only);
    let (_, senders) = load_senders(runtime, config, wanted, FailureKind::Usage).await?;
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
    let detail = line.map_err(|e| outcome::refine(Failure::from(e), &witnessed))?;
    Ok(TestReport {
        sender: sender.settings.name.clone(),
        plugin: sender.plugin.info.id.clone(),
        ok: true,
        detail,
    })
}

/// `route`: which sender would carry `draft`, and why; nothing is sent.
pub async fn route(runtime: &Runtime, config: &Path, draft: Draft) -> Result<RouteReport, Failure> {
    let event = draft.event()?;
    let wanted = draft.sender.as_deref().map_or(Wanted::All, Wanted::Only);
    let (settings, senders) =
        load_senders(runtime, config, wanted, FailureKind::InvalidSettings).await?;
    let job = draft.job_context();
    let decision = decide(
        &senders,
        &Request {
            event,
            explicit: draft.sender.as_deref(),
            job: job.as_ref(),
        },
    )?;
    let failover = settings.failover && !decision.explicit;
    Ok(RouteReport {
        event: event_name(event).to_string(),
        chosen: decision.chosen().to_string(),
        failover,
        order: if failover {
            decision.order.clone()
        } else {
            vec![decision.chosen().to_string()]
        },
        senders: decision
            .verdicts
            .iter()
            .map(|v| VerdictReport {
                sender: v.sender.clone(),
                plugin: v.plugin.clone(),
                eligible: v.eligible,
                reason: v.reason.clone(),
            })
            .collect(),
    })
}

/// `send`: `draft` delivered now through the router and failover; the email sent
/// ([`Report::Sent`]) or not ([`Report::NotSent`], every attempt in it).
pub async fn send(runtime: &Runtime, config: &Path, draft: Draft) -> Result<Report, Failure> {
    let prepared = draft.prepare()?;
    let message = &prepared.message;
    let wanted = prepared.sender.as_deref().map_or(Wanted::All, Wanted::Only);
    let (settings, senders) =
        load_senders(runtime, config, wanted, FailureKind::InvalidSettings).await?;
    let decision = decide(
        &senders,
        &Request {
            event: message.event,
            explicit: prepared.sender.as_deref(),
            job: prepared.job.as_ref(),
        },
    )?;
    let attempts = dispatch::deliver(
        runtime,
        &senders,
        &decision,
        settings.failover,
        message,
        None,
    )
    .await;
    let last = attempts
        .last()
        .expect("the decision names at least one sender");
    let attempt_reports: Vec<AttemptReport> = attempts
        .iter()
        .map(|a| match &a.result {
            Ok(sent) => AttemptReport {
                sender: a.sender.clone(),
                plugin: a.plugin.clone(),
                result: AttemptResult::Sent,
                detail: sent.receipt.detail.clone(),
            },
            Err(f) => AttemptReport {
                sender: a.sender.clone(),
                plugin: a.plugin.clone(),
                result: AttemptResult::Failed(f.kind),
                detail: f.message.clone(),
            },
        })
        .collect();
    Ok(match &last.result {
        Ok(sent) => {
            let receipt = &sent.receipt;
            Report::Sent(Box::new(SendReport {
                sender: last.sender.clone(),
                plugin: last.plugin.clone(),
                event: event_name(message.event).to_string(),
                job: prepared.job.as_ref().map(|j| JobReport {
                    name: j.name.clone(),
                    source_sender: j.source_sender.clone(),
                    recipients: j.recipients.clone(),
                }),
                message_id: message.message_id.clone(),
                reason: decision.reason_for(&last.sender).to_string(),
                partly: sent.partly(),
                receipt: ReceiptReport {
                    provider_id: receipt.provider_id.clone(),
                    accepted: receipt.accepted.clone(),
                    refused: receipt
                        .refused
                        .iter()
                        .zip(&sent.refused_for_now)
                        .map(|(r, now)| RefusedReport {
                            address: r.address.clone(),
                            reason: r.reason.clone(),
                            for_now: *now,
                        })
                        .collect(),
                    detail: receipt.detail.clone(),
                },
                notes: sent.notes.clone(),
                attempts: attempt_reports,
            }))
        }
        Err(failure) => Report::NotSent(NotSentReport {
            sender: last.sender.clone(),
            plugin: last.plugin.clone(),
            message_id: message.message_id.clone(),
            error: failure.into(),
            attempts: attempt_reports,
        }),
    })
}

pub fn settings_failure(errors: SettingsErrors) -> Failure {
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

fn plugin_report(plugin: &Plugin) -> PluginReport {
    let info = &plugin.info;
    PluginReport {
        id: info.id.clone(),
        version: info.version.clone(),
        label: info.label.clone(),
        description: info.description.clone(),
        wit: format!("scan2x:mail@{WIT_VERSION}"),
        source: source_text(plugin),
        replaces: replaces(plugin).map(str::to_string),
        sha256: plugin.sha256.clone(),
        events: info
            .events
            .iter()
            .map(|e| event_name(*e).to_string())
            .collect(),
        network: info.network.clone(),
        settings: info
            .settings
            .iter()
            .map(|s| SettingReport {
                key: s.key.clone(),
                label: s.label.clone(),
                kind: kind_name(s.kind).to_string(),
                required: s.required,
                default: s.default.as_ref().map(|d| match d {
                    SettingDefault::Text(t) => DefaultValue::Text(t.clone()),
                    SettingDefault::Integer(i) => DefaultValue::Integer(*i),
                    SettingDefault::Boolean(b) => DefaultValue::Boolean(*b),
                }),
                help: s.help.clone(),
            })
            .collect(),
    }
}
