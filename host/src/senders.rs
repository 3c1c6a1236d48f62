//! The one place that turns settings into live senders: each plugin loaded once (by reference
//! and pin), each sender's settings checked against its plugin's schema and its secrets read
//! (which feeds the redactor), its plugin's network needs filled in as grants (or its
//! `allow_hosts`), its `ca_file` read, its limits set. The CLI uses it, and so will every other
//! front end; nothing else makes a [`Sender`].
//!
//! A command loads only what it needs ([`Wanted`]): `test X` and `send --sender X` make sender
//! X alone, so another sender's plugin is neither loaded nor able to fail the command.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::capability::SenderContext;
use crate::capability::secrets::{SecretUses, is_declaration};
use crate::gate::Gate;
use crate::runtime::{Limits, Plugin, Runtime, Sender};
use crate::settings::{PluginRef, SenderSettings, Settings, SettingsErrors};

/// Which senders of the settings a command needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted<'a> {
    /// Every sender: routing, `check`, `plugins`.
    All,
    /// This one sender (none if the settings have no sender of that name).
    Only(&'a str),
}

/// The senders of `settings` that `wanted` names, every plugin they use loaded once; every
/// problem at once.
pub async fn assemble(
    runtime: &Runtime,
    settings: &Settings,
    wanted: Wanted<'_>,
) -> Result<Vec<Sender>, SettingsErrors> {
    let chosen: Vec<&SenderSettings> = settings
        .senders
        .iter()
        .filter(|s| match wanted {
            Wanted::All => true,
            Wanted::Only(name) => s.name == name,
        })
        .collect();
    if !chosen.is_empty() {
        // A sender will almost always connect over TLS: the system's roots are read while its
        // plugin loads, not after (`cargo xtask bench`, part 5).
        crate::capability::tls::prefetch_system_roots();
    }
    let mut plugins: BTreeMap<(PluginRef, Option<String>), Result<Arc<Plugin>, String>> =
        BTreeMap::new();
    for s in &chosen {
        let key = (s.plugin.clone(), s.sha256.clone());
        if let std::collections::btree_map::Entry::Vacant(slot) = plugins.entry(key) {
            let loaded = runtime.load(&s.plugin, s.sha256.as_deref()).await;
            slot.insert(loaded.map(Arc::new).map_err(|e| e.to_string()));
        }
    }
    let mut errors = Vec::new();
    let mut senders = Vec::new();
    for s in chosen {
        match &plugins[&(s.plugin.clone(), s.sha256.clone())] {
            Ok(plugin) => match make(runtime, s, plugin.clone()) {
                Ok(sender) => senders.push(sender),
                Err(e) => errors.extend(e.0),
            },
            Err(e) => errors.push(s.whole_error("plugin", e.clone())),
        }
    }
    if errors.is_empty() {
        Ok(senders)
    } else {
        Err(SettingsErrors(errors))
    }
}

/// Makes a sender from its settings and its loaded plugin: checks the plugin's keys, reads
/// secrets and the CA file, and turns the plugin's network needs into grants.
pub fn make(
    runtime: &Runtime,
    settings: &SenderSettings,
    plugin: Arc<Plugin>,
) -> Result<Sender, SettingsErrors> {
    let resolved = settings.resolve(&plugin.info.id, &plugin.info.settings)?;
    let mut errors = Vec::new();
    let mut declared = Vec::new();
    let secret_uses = match SecretUses::new(&plugin.info.network, &resolved) {
        Ok(uses) => uses,
        Err(e) => {
            errors.extend(e.into_iter().map(|e| settings.whole_error("", e)));
            SecretUses::default()
        }
    };
    for template in plugin.info.network.iter().filter(|n| !is_declaration(n)) {
        match crate::template::grant_from_template(template, &resolved) {
            Ok(grant) => declared.push(grant),
            Err(e) => errors.push(settings.whole_error("", e)),
        }
    }
    let mut notes = Vec::new();
    let grants = match &settings.allow_hosts {
        None => declared,
        Some(allowed) => {
            for need in declared
                .iter()
                .filter(|need| !allowed.iter().any(|a| need.covered_by(a)))
            {
                notes.push(format!(
                    "its plugin needs {need}, which allow_hosts does not grant: calls there will be denied"
                ));
            }
            allowed.clone()
        }
    };
    let limits = Limits {
        memory_bytes: settings
            .memory_limit_mb
            .map_or(runtime.limits().memory_bytes, |mb| (mb as usize) << 20),
        guest_cpu: settings
            .cpu_limit_secs
            .map_or(runtime.limits().guest_cpu, |secs| {
                Duration::from_secs(secs.into())
            }),
        call_wall: settings
            .call_limit_secs
            .map_or(runtime.limits().call_wall, |secs| {
                Duration::from_secs(secs.into())
            }),
    };
    let ca_pem = match &settings.ca_file {
        Some(path) => match std::fs::read(path) {
            Ok(pem) if pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") => Some(pem),
            Ok(_) => {
                errors.push(settings.whole_error(
                    "ca_file",
                    format!("{} holds no PEM certificate", path.display()),
                ));
                None
            }
            Err(e) => {
                errors.push(
                    settings.whole_error("ca_file", format!("cannot read {}: {e}", path.display())),
                );
                None
            }
        },
        None => None,
    };
    if !errors.is_empty() {
        return Err(SettingsErrors(errors));
    }
    Ok(Sender {
        settings: settings.clone(),
        context: Arc::new(SenderContext {
            name: settings.name.clone(),
            gate: Gate::new(settings.name.clone(), grants),
            allow_loopback_names: settings.allow_loopback_names,
            ca_pem,
            state: runtime.state(),
            secret_uses,
            ..SenderContext::default()
        }),
        plugin,
        resolved,
        limits,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_RELAYS: &str = "\
[senders.office]
plugin = \"smtp\"
host = \"Mail.Example.TEST\"
port = 2525
email_address = \"scanner@example.test\"
cpu_limit_secs = 3

[senders.backup]
plugin = \"smtp\"
host = \"backup.example.test\"
email_address = \"scanner@example.test\"
memory_limit_mb = 64
call_limit_secs = 60
allow_hosts = [\"smtp://*.example.test\"]
";

    async fn assembled(wanted: Wanted<'_>) -> Vec<Sender> {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::parse(&dir.path().join("s.toml"), TWO_RELAYS).unwrap();
        // No cache: each plugin compiled in memory, as often as it is loaded.
        let runtime = Runtime::new(None, Limits::default()).unwrap();
        assemble(&runtime, &settings, wanted).await.unwrap()
    }

    fn grants(sender: &Sender) -> Vec<String> {
        sender
            .context
            .gate
            .grants()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[tokio::test]
    async fn templates_are_filled_each_plugin_is_loaded_once_and_limits_come_from_settings() {
        let senders = assembled(Wanted::All).await;
        let names: Vec<&str> = senders.iter().map(|s| s.settings.name.as_str()).collect();
        assert_eq!(names, ["office", "backup"]);
        let (office, backup) = (&senders[0], &senders[1]);
        assert_eq!(grants(office), ["smtp://mail.example.test:2525"]);
        assert_eq!(
            grants(backup),
            ["smtp://*.example.test:25"],
            "allow_hosts replaces the declared needs"
        );
        assert!(
            Arc::ptr_eq(&office.plugin, &backup.plugin),
            "one load of the smtp plugin for both"
        );
        let defaults = Limits::default();
        assert_eq!(office.limits.guest_cpu, Duration::from_secs(3));
        assert_eq!(office.limits.memory_bytes, defaults.memory_bytes);
        assert_eq!(office.limits.call_wall, defaults.call_wall);
        assert_eq!(backup.limits.memory_bytes, 64 << 20);
        assert_eq!(backup.limits.call_wall, Duration::from_secs(60));
        assert_eq!(backup.limits.guest_cpu, defaults.guest_cpu);
    }

    #[tokio::test]
    async fn only_the_sender_a_command_names_is_made() {
        let senders = assembled(Wanted::Only("backup")).await;
        let names: Vec<&str> = senders.iter().map(|s| s.settings.name.as_str()).collect();
        assert_eq!(names, ["backup"]);
        assert!(assembled(Wanted::Only("nobody")).await.is_empty());
    }
}
