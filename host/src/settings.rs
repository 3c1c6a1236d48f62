//! The settings file: which senders exist, which plugin each uses, and their options.
//!
//! ```toml
//! [senders.relay]
//! plugin = "smtp"                       # a built-in plugin id, or a path to a .wasm component
//! preferred = true                      # host-owned keys: see HOST_KEYS
//! host = "smtp.example.com"             # the rest belong to the plugin and are checked
//! password = { env = "SMTP_PASSWORD" }  # against its own schema (`describe()`)
//! ```
//!
//! Parsing happens in two steps. [`Settings::parse`] reads the file and the host-owned keys,
//! keeping the plugin's keys raw with their line numbers. [`SenderSettings::resolve`] then checks
//! them against the plugin's schema, fills in defaults and reads secrets. Both steps collect
//! every problem, each naming the file, line and key, and neither touches the network.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::gate::Grant;
use crate::secret::Secret;
use crate::wit::types::{SettingDefault, SettingKind, SettingSpec};

/// A key of a sender's table that the host owns; every other key belongs to the plugin.
///
/// [`HOST_KEYS`] is the one description of these keys: parsing reads each by its [`HostKind`]
/// and sets it into [`SenderSettings`] through the kind's setter, an unknown key's error lists
/// the table's keys, and [`help_text`] prints the table.
#[derive(Debug, Clone, Copy)]
pub struct HostKey {
    pub key: &'static str,
    pub kind: HostKind,
    pub help: &'static str,
}

/// What a host key takes, and how its value is set into [`SenderSettings`].
#[derive(Debug, Clone, Copy)]
pub enum HostKind {
    /// Required: a built-in plugin id, or the path of a `.wasm` file (ending in `.wasm` or
    /// holding a `/`), made absolute against the settings file's folder; set with its line.
    Plugin(fn(&mut SenderSettings, PluginRef, usize)),
    /// `true` or `false`; false when absent.
    Bool(fn(&mut SenderSettings, bool)),
    /// The path of an existing file, made absolute against the settings file's folder.
    File(fn(&mut SenderSettings, PathBuf)),
    /// A sha256 pin: 64 hexadecimal digits, set lowercase.
    Sha256(fn(&mut SenderSettings, String)),
    /// A list of destinations, each parsed into a [`Grant`].
    Grants(fn(&mut SenderSettings, Vec<Grant>)),
    /// A whole number from 1 to `max`.
    Whole {
        max: u32,
        set: fn(&mut SenderSettings, u32),
    },
}

/// The keys the host owns in a sender's table, in the order they are listed.
pub const HOST_KEYS: &[HostKey] = &[
    HostKey {
        key: "plugin",
        kind: HostKind::Plugin(|s, plugin, line| {
            s.plugin = plugin;
            s.plugin_line = line;
        }),
        help: "a built-in plugin id (\"smtp\") or the path of a .wasm plugin",
    },
    HostKey {
        key: "preferred",
        kind: HostKind::Bool(|s, on| s.preferred = on),
        help: "Preferred Mail Sender: chosen first among eligible senders",
    },
    HostKey {
        key: "allow_job_source",
        kind: HostKind::Bool(|s, on| s.allow_job_source = on),
        help: "Allow usage from job source settings",
    },
    HostKey {
        key: "allow_job_recipients",
        kind: HostKind::Bool(|s, on| s.allow_job_recipients = on),
        help: "Allow usage from job email recipients",
    },
    HostKey {
        key: "ca_file",
        kind: HostKind::File(|s, path| s.ca_file = Some(path)),
        help: "a PEM file of CA certificates to trust for this sender, besides the system's",
    },
    HostKey {
        key: "sha256",
        kind: HostKind::Sha256(|s, hex| s.sha256 = Some(hex)),
        help: "the expected sha256 of the plugin file; a mismatch refuses to load",
    },
    HostKey {
        key: "allow_hosts",
        kind: HostKind::Grants(|s, grants| s.allow_hosts = Some(grants)),
        help: "the destinations this sender may reach, replacing what its plugin asks for: [\"smtp://mx.example.com:587\", \"https://*.example.com\"]",
    },
    HostKey {
        key: "allow_loopback_names",
        kind: HostKind::Bool(|s, on| s.allow_loopback_names = on),
        help: "let host names this sender connects to resolve to this machine's own addresses (loopback, link-local such as 169.254.169.254, 0.0.0.0); off by default: such an answer is denied (an IP address written as the host is always allowed)",
    },
    HostKey {
        key: "memory_limit_mb",
        kind: HostKind::Whole {
            max: 4096,
            set: |s, mb| s.memory_limit_mb = Some(mb),
        },
        help: "the memory a call of this sender's plugin may use (default 512)",
    },
    HostKey {
        key: "cpu_limit_secs",
        kind: HostKind::Whole {
            max: 3600,
            set: |s, secs| s.cpu_limit_secs = Some(secs),
        },
        help: "the time the plugin's own code may run in one call, host I/O not counted (default 10)",
    },
    HostKey {
        key: "call_limit_secs",
        kind: HostKind::Whole {
            max: 3600,
            set: |s, secs| s.call_limit_secs = Some(secs),
        },
        help: "the most one call of this sender's plugin may take, waits included (default 900); reached while waiting on a server, the send is temporary",
    },
    HostKey {
        key: "max_concurrent",
        kind: HostKind::Whole {
            max: 64,
            set: |s, n| s.max_concurrent = Some(n),
        },
        help: "the most deliveries from the outbox this sender carries at once (default 2; Microsoft Graph allows 4 per mailbox, Exchange Online's SMTP 3)",
    },
    HostKey {
        key: "max_per_minute",
        kind: HostKind::Whole {
            max: 100_000,
            set: |s, n| s.max_per_minute = Some(n),
        },
        help: "the most deliveries from the outbox this sender starts in any 60 seconds (default 30, Exchange Online's rate); the rest wait their turn",
    },
];

/// A sender's `max_concurrent` when the settings leave it out.
pub const DEFAULT_MAX_CONCURRENT: u32 = 2;
/// A sender's `max_per_minute` when the settings leave it out.
pub const DEFAULT_MAX_PER_MINUTE: u32 = 30;

/// The host key named `key`, if the host owns it.
pub fn host_key(key: &str) -> Option<&'static HostKey> {
    HOST_KEYS.iter().find(|k| k.key == key)
}

impl HostKind {
    /// The value's type, as the help text (and README's table) name it.
    pub fn type_name(self) -> &'static str {
        match self {
            HostKind::Plugin(_) => "string",
            HostKind::Bool(_) => "bool",
            HostKind::File(_) => "path",
            HostKind::Sha256(_) => "hex",
            HostKind::Grants(_) => "list",
            HostKind::Whole { .. } => "integer",
        }
    }

    /// Why a sender without this key is refused; none when the key may be left out.
    fn missing(self) -> Option<&'static str> {
        match self {
            HostKind::Plugin(_) => {
                Some("missing: say which plugin this sender uses, e.g. plugin = \"smtp\"")
            }
            _ => None,
        }
    }
}

/// A top-level key of the settings file.
#[derive(Debug, Clone, Copy)]
pub struct TopKey {
    pub key: &'static str,
    pub kind: TopKind,
    pub help: &'static str,
}

/// What a top-level key takes, and how it is set into [`Settings`].
#[derive(Debug, Clone, Copy)]
pub enum TopKind {
    /// `true` or `false`; false when absent.
    Bool(fn(&mut Settings, bool)),
    /// A whole number from 1 to `max`.
    Whole {
        max: u32,
        set: fn(&mut Settings, u32),
    },
    /// The `[service]` table: what `serve` listens on and may read.
    Service,
    /// The `[senders.NAME]` tables, one per sender.
    Senders,
}

/// The top-level keys of the settings file, in the order they are listed.
pub const TOP_KEYS: &[TopKey] = &[
    TopKey {
        key: "failover",
        kind: TopKind::Bool(|s, on| s.failover = on),
        help: "when the chosen sender fails temporarily, the next eligible one is tried (default false)",
    },
    TopKey {
        key: "keep_delivered_days",
        kind: TopKind::Whole {
            max: 3650,
            set: |s, days| s.keep_delivered_days = Some(days),
        },
        help: "how long the outbox keeps a delivered email (its attempts, its idempotency key, its attachments) before removing it (default 7)",
    },
    TopKey {
        key: "service",
        kind: TopKind::Service,
        help: "what `serve` listens on and may read: listen = \"127.0.0.1:8740\" (loopback by default), attachments_from = [\"scans\"] (the folders an email posted to its API may attach files from by path; none by default); its command line's --listen and --attachments-from replace them",
    },
    TopKey {
        key: "senders",
        kind: TopKind::Senders,
        help: "one table per sender, [senders.NAME]: its plugin, the host's keys and the plugin's",
    },
];

impl TopKind {
    pub fn type_name(self) -> &'static str {
        match self {
            TopKind::Bool(_) => "bool",
            TopKind::Whole { .. } => "integer",
            TopKind::Service => "table",
            TopKind::Senders => "tables",
        }
    }
}

/// The keys of the settings file, one a line (`key (type): help`): the top-level keys, then
/// those the host owns in a sender's table.
pub fn help_text() -> String {
    let mut text = String::from("Top-level keys:\n");
    for k in TOP_KEYS {
        text += &format!("  {} ({}): {}\n", k.key, k.kind.type_name(), k.help);
    }
    text += "Keys the host owns in a [senders.NAME] table (every other key is the plugin's):\n";
    for k in HOST_KEYS {
        let range = match k.kind {
            HostKind::Whole { max, .. } => format!(" from 1 to {max}"),
            _ => String::new(),
        };
        text += &format!("  {} ({}{range}): {}\n", k.key, k.kind.type_name(), k.help);
    }
    text
}

/// The top-level keys as the unknown-key error names them: "`failover`, `keep_delivered_days`,
/// the `service` table and the `senders` tables".
fn top_keys_named() -> String {
    let named: Vec<String> = TOP_KEYS
        .iter()
        .map(|k| match k.kind {
            TopKind::Senders => format!("the `{}` tables", k.key),
            TopKind::Service => format!("the `{}` table", k.key),
            TopKind::Bool(_) | TopKind::Whole { .. } => format!("`{}`", k.key),
        })
        .collect();
    match named.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// One problem in the settings file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError {
    pub file: PathBuf,
    /// 1-based; none when the problem is the file as a whole.
    pub line: Option<usize>,
    /// The dotted key, e.g. `senders.relay.port`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.key, self.message)
        }
    }
}

/// Every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsErrors(pub Vec<SettingsError>);

impl fmt::Display for SettingsErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SettingsErrors {}

/// Where a sender's plugin comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PluginRef {
    /// A plugin embedded in the host binary, by id.
    Builtin(String),
    /// A `.wasm` component file (absolute, or made absolute against the settings file's folder).
    File(PathBuf),
}

impl fmt::Display for PluginRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginRef::Builtin(id) => write!(f, "{id} (built-in)"),
            PluginRef::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

/// A plugin-owned value as written in the file.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    Text(String),
    Integer(i64),
    Boolean(bool),
    Secret(SecretSource),
    /// A TOML type no setting takes (float, date, array, other table); names the type.
    Unsupported(&'static str),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RawEntry {
    pub key: String,
    pub line: usize,
    pub value: RawValue,
}

/// One `[senders.NAME]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct SenderSettings {
    pub name: String,
    /// The line of the table header.
    pub line: usize,
    pub plugin: PluginRef,
    /// The line of the `plugin` key.
    pub plugin_line: usize,
    pub preferred: bool,
    pub allow_job_source: bool,
    pub allow_job_recipients: bool,
    /// `allow_loopback_names`: a name may resolve to this machine's own addresses.
    pub allow_loopback_names: bool,
    /// The PEM file named by `ca_file`, made absolute.
    pub ca_file: Option<PathBuf>,
    /// The pinned sha256 of the plugin file, lowercase hex.
    pub sha256: Option<String>,
    /// `allow_hosts`: when set, the sender's grants instead of its plugin's declared needs.
    pub allow_hosts: Option<Vec<Grant>>,
    pub memory_limit_mb: Option<u32>,
    pub cpu_limit_secs: Option<u32>,
    pub call_limit_secs: Option<u32>,
    /// `max_concurrent`; see [`SenderSettings::max_concurrent`].
    pub max_concurrent: Option<u32>,
    /// `max_per_minute`; see [`SenderSettings::max_per_minute`].
    pub max_per_minute: Option<u32>,
    /// The plugin's keys, in file order.
    pub entries: Vec<RawEntry>,
    file: PathBuf,
}

/// A setting checked against the plugin's schema, ready to hand to the plugin.
#[derive(Debug, Clone, PartialEq)]
pub enum ResolvedValue {
    Text(String),
    Integer(i64),
    Boolean(bool),
    Secret(Secret),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedSetting {
    pub key: String,
    pub value: ResolvedValue,
}

/// The whole settings file.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub path: PathBuf,
    /// `failover = true`: when the chosen sender fails temporarily, the next eligible one is tried.
    pub failover: bool,
    /// `keep_delivered_days`; see [`Settings::keep_delivered`].
    pub keep_delivered_days: Option<u32>,
    /// The `[service]` table.
    pub service: ServiceSettings,
    pub senders: Vec<SenderSettings>,
}

/// The `[service]` table: what `serve` listens on and which folders its API may attach files
/// from by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceSettings {
    /// `listen`: the address, when the file gives one.
    pub listen: Option<std::net::SocketAddr>,
    /// `attachments_from`: existing folders, made absolute against the settings file's folder.
    pub attachments_from: Vec<PathBuf>,
}

impl Settings {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Self, SettingsErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            SettingsErrors(vec![SettingsError {
                file: path.to_path_buf(),
                line: None,
                key: String::new(),
                message: format!("cannot read the settings file: {e}"),
            }])
        })?;
        Self::parse(path, &text)
    }

    /// Parses settings text; `path` names the file in errors and anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Self, SettingsErrors> {
        let mut p = Parser {
            file: path.to_path_buf(),
            text,
            errors: Vec::new(),
        };
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let root = match DeTable::parse(text) {
            Ok(root) => root,
            Err(e) => {
                let line = e.span().map(|s| p.line_of(s.start));
                p.error(line, "", format!("not valid TOML: {}", e.message()));
                return Err(SettingsErrors(p.errors));
            }
        };
        let mut settings = Settings {
            path: path.to_path_buf(),
            failover: false,
            keep_delivered_days: None,
            service: ServiceSettings::default(),
            senders: Vec::new(),
        };
        for (key, value) in root.get_ref() {
            let key_name = key.get_ref().as_ref();
            let key_line = p.line_of(key.span().start);
            let Some(top) = TOP_KEYS.iter().find(|k| k.key == key_name) else {
                p.error(
                    Some(key_line),
                    key_name,
                    format!("unknown key; the settings file has {}", top_keys_named()),
                );
                continue;
            };
            match (top.kind, value.get_ref()) {
                (TopKind::Bool(set), DeValue::Boolean(on)) => set(&mut settings, *on),
                (TopKind::Bool(_), other) => p.error(
                    Some(key_line),
                    key_name,
                    format!("expected true or false, found {}", other.type_str()),
                ),
                (TopKind::Whole { max, set }, _) => match raw_value(&base, value) {
                    RawValue::Integer(n) if (1..=i64::from(max)).contains(&n) => {
                        set(&mut settings, n as u32)
                    }
                    other => p.error(
                        Some(key_line),
                        key_name,
                        format!(
                            "expected a whole number from 1 to {max}, found {}",
                            describe(&other)
                        ),
                    ),
                },
                (TopKind::Service, DeValue::Table(table)) => {
                    settings.service = p.service(&base, table);
                }
                (TopKind::Service, _) => p.error(
                    Some(key_line),
                    key_name,
                    "must be a table: [service] with listen = \"127.0.0.1:8740\" or attachments_from = [\"scans\"]",
                ),
                (TopKind::Senders, DeValue::Table(table)) => {
                    for (name, sender) in table {
                        if let Some(s) = p.sender(&base, name, sender) {
                            settings.senders.push(s);
                        }
                    }
                }
                (TopKind::Senders, _) => p.error(
                    Some(key_line),
                    key_name,
                    "must be a table of senders, e.g. [senders.relay]",
                ),
            }
        }
        if p.errors.is_empty() && settings.senders.is_empty() {
            p.error(
                None,
                "senders",
                "no senders are configured; add a [senders.NAME] table",
            );
        }
        let preferred: Vec<&SenderSettings> =
            settings.senders.iter().filter(|s| s.preferred).collect();
        if preferred.len() > 1 {
            let names: Vec<&str> = preferred.iter().map(|s| s.name.as_str()).collect();
            let line = preferred[1].line;
            p.error(
                Some(line),
                &format!("senders.{}.preferred", preferred[1].name),
                format!(
                    "at most one sender may be preferred; these are: {}",
                    names.join(", ")
                ),
            );
        }
        if p.errors.is_empty() {
            Ok(settings)
        } else {
            Err(SettingsErrors(p.errors))
        }
    }

    pub fn sender(&self, name: &str) -> Option<&SenderSettings> {
        self.senders.iter().find(|s| s.name == name)
    }

    /// Every distinct plugin the senders use, in first-use order.
    pub fn plugins(&self) -> Vec<PluginRef> {
        let mut seen = BTreeSet::new();
        self.senders
            .iter()
            .filter(|s| seen.insert(s.plugin.clone()))
            .map(|s| s.plugin.clone())
            .collect()
    }
}

struct Parser<'a> {
    file: PathBuf,
    text: &'a str,
    errors: Vec<SettingsError>,
}

impl Parser<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    fn error(&mut self, line: Option<usize>, key: &str, message: impl Into<String>) {
        self.errors.push(SettingsError {
            file: self.file.clone(),
            line,
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// The `[service]` table: `listen` an address, `attachments_from` a list of existing
    /// folders; any other key refused.
    fn service(&mut self, base: &Path, table: &DeTable<'_>) -> ServiceSettings {
        let mut service = ServiceSettings::default();
        for (key, value) in table {
            let name = key.get_ref().as_ref();
            let line = Some(self.line_of(key.span().start));
            let dotted = format!("service.{name}");
            match name {
                "listen" => match value.get_ref().as_str().map(str::parse) {
                    Some(Ok(address)) => service.listen = Some(address),
                    _ => self.error(
                        line,
                        &dotted,
                        "expected an address and port, e.g. \"127.0.0.1:8740\" (loopback) or \"[::1]:8740\"",
                    ),
                },
                "attachments_from" => {
                    let Some(list) = value.get_ref().as_array() else {
                        self.error(line, &dotted, "expected a list of folders, e.g. [\"scans\"]");
                        continue;
                    };
                    for item in list {
                        let line = Some(self.line_of(item.span().start));
                        match item.get_ref().as_str() {
                            Some(folder) => {
                                let folder = absolute(base, Path::new(folder));
                                if folder.is_dir() {
                                    service.attachments_from.push(folder);
                                } else {
                                    self.error(
                                        line,
                                        &dotted,
                                        format!("no such folder: {}", folder.display()),
                                    );
                                }
                            }
                            None => self.error(
                                line,
                                &dotted,
                                format!("expected a folder, found {}", item.get_ref().type_str()),
                            ),
                        }
                    }
                }
                _ => self.error(
                    line,
                    &dotted,
                    "unknown key; [service] has `listen` and `attachments_from`",
                ),
            }
        }
        service
    }

    fn sender(
        &mut self,
        base: &Path,
        name: &Spanned<toml::de::DeString<'_>>,
        value: &Spanned<DeValue<'_>>,
    ) -> Option<SenderSettings> {
        let sender = name.get_ref().to_string();
        let line = self.line_of(name.span().start);
        let prefix = format!("senders.{sender}");
        let Some(table) = value.get_ref().as_table() else {
            self.error(
                Some(line),
                &prefix,
                "must be a table: [senders.NAME] with `plugin = …` and the plugin's settings",
            );
            return None;
        };
        let errors_before = self.errors.len();
        let mut settings = SenderSettings {
            name: sender,
            line,
            // Set by the `plugin` key; a sender without one is refused below.
            plugin: PluginRef::Builtin(String::new()),
            plugin_line: line,
            preferred: false,
            allow_job_source: false,
            allow_job_recipients: false,
            allow_loopback_names: false,
            ca_file: None,
            sha256: None,
            allow_hosts: None,
            memory_limit_mb: None,
            cpu_limit_secs: None,
            call_limit_secs: None,
            max_concurrent: None,
            max_per_minute: None,
            entries: Vec::new(),
            file: self.file.clone(),
        };
        let mut given = Vec::new();
        for (key, value) in table {
            let key_name = key.get_ref().as_ref();
            let key_line = self.line_of(key.span().start);
            match host_key(key_name) {
                Some(host) => {
                    let dotted = format!("{prefix}.{key_name}");
                    if self.host_value(base, host.kind, key_line, &dotted, value, &mut settings) {
                        given.push(host.key);
                    }
                }
                None => settings.entries.push(RawEntry {
                    key: key_name.to_string(),
                    line: key_line,
                    value: raw_value(base, value),
                }),
            }
        }
        for host in HOST_KEYS.iter().filter(|k| !given.contains(&k.key)) {
            if let Some(missing) = host.kind.missing() {
                self.error(Some(line), &format!("{prefix}.{}", host.key), missing);
            }
        }
        (self.errors.len() == errors_before).then_some(settings)
    }

    /// Reads the host-owned key `dotted` (written at `line`) as `kind` says and sets it into
    /// `settings`; false, with the problem recorded, when its value is refused.
    fn host_value(
        &mut self,
        base: &Path,
        kind: HostKind,
        line: usize,
        dotted: &str,
        value: &Spanned<DeValue<'_>>,
        settings: &mut SenderSettings,
    ) -> bool {
        let refused = match (kind, raw_value(base, value)) {
            (HostKind::Grants(set), _) => {
                let errors_before = self.errors.len();
                set(settings, self.grants(line, dotted, value));
                return self.errors.len() == errors_before;
            }
            (HostKind::Plugin(set), RawValue::Text(text)) if !text.is_empty() => {
                let plugin = if text.ends_with(".wasm") || text.contains('/') {
                    PluginRef::File(absolute(base, Path::new(&text)))
                } else {
                    PluginRef::Builtin(text)
                };
                set(settings, plugin, line);
                return true;
            }
            (HostKind::Plugin(_), _) => {
                "must be a built-in plugin id (\"smtp\") or the path of a .wasm file".to_string()
            }
            (HostKind::Bool(set), RawValue::Boolean(on)) => {
                set(settings, on);
                return true;
            }
            (HostKind::Bool(_), other) => {
                format!("expected true or false, found {}", describe(&other))
            }
            (HostKind::File(set), RawValue::Text(path)) => {
                let path = absolute(base, Path::new(&path));
                if path.is_file() {
                    set(settings, path);
                    return true;
                }
                format!("no such file: {}", path.display())
            }
            (HostKind::File(_), other) => {
                format!("expected a file path, found {}", describe(&other))
            }
            (HostKind::Sha256(set), RawValue::Text(hex))
                if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) =>
            {
                set(settings, hex.to_ascii_lowercase());
                return true;
            }
            (HostKind::Sha256(_), _) => {
                "expected 64 hexadecimal digits (the plugin file's sha256)".to_string()
            }
            (HostKind::Whole { max, set }, RawValue::Integer(n))
                if (1..=i64::from(max)).contains(&n) =>
            {
                set(settings, n as u32);
                return true;
            }
            (HostKind::Whole { max, .. }, other) => format!(
                "expected a whole number from 1 to {max}, found {}",
                describe(&other)
            ),
        };
        self.error(Some(line), dotted, refused);
        false
    }

    /// `allow_hosts`: a list of destinations, each parsed into a grant.
    fn grants(&mut self, line: usize, key: &str, value: &Spanned<DeValue<'_>>) -> Vec<Grant> {
        let Some(list) = value.get_ref().as_array() else {
            self.error(
                Some(line),
                key,
                "expected a list of destinations, e.g. [\"smtp://mx.example.com:587\"]",
            );
            return Vec::new();
        };
        let mut grants = Vec::new();
        for (i, item) in list.iter().enumerate() {
            let item_line = self.line_of(item.span().start);
            match item.get_ref().as_str().map(Grant::parse) {
                Some(Ok(grant)) => grants.push(grant),
                Some(Err(e)) => self.error(Some(item_line), &format!("{key}[{i}]"), e),
                None => self.error(
                    Some(item_line),
                    &format!("{key}[{i}]"),
                    "expected a string like \"smtp://mx.example.com:587\"",
                ),
            }
        }
        grants
    }
}

/// A plugin-owned value as written, for its plugin's schema to check.
fn raw_value(base: &Path, value: &Spanned<DeValue<'_>>) -> RawValue {
    match value.get_ref() {
        DeValue::String(s) => RawValue::Text(s.to_string()),
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
            .map(RawValue::Integer)
            .unwrap_or(RawValue::Unsupported("an integer out of range")),
        DeValue::Boolean(b) => RawValue::Boolean(*b),
        DeValue::Table(t) => {
            let pairs: Vec<(&str, Option<&str>)> = t
                .iter()
                .map(|(k, v)| (k.get_ref().as_ref(), v.get_ref().as_str()))
                .collect();
            match pairs.as_slice() {
                [("env", Some(name))] => RawValue::Secret(SecretSource::Env(name.to_string())),
                [("file", Some(path))] => {
                    RawValue::Secret(SecretSource::File(absolute(base, Path::new(path))))
                }
                _ => RawValue::Unsupported("a table"),
            }
        }
        DeValue::Float(_) => RawValue::Unsupported("a float"),
        DeValue::Datetime(_) => RawValue::Unsupported("a date"),
        DeValue::Array(_) => RawValue::Unsupported("an array"),
    }
}

fn absolute(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

fn describe(value: &RawValue) -> String {
    match value {
        RawValue::Text(t) => format!("the string {t:?}"),
        RawValue::Integer(i) => format!("the integer {i}"),
        RawValue::Boolean(b) => format!("the boolean {b}"),
        RawValue::Secret(_) => "a secret reference".to_string(),
        RawValue::Unsupported(what) => what.to_string(),
    }
}

fn kind_name(kind: SettingKind) -> &'static str {
    match kind {
        SettingKind::Text => "a string",
        SettingKind::Integer => "an integer",
        SettingKind::Boolean => "true or false",
        SettingKind::Secret => "a secret: a string, { env = \"VAR\" } or { file = \"path\" }",
    }
}

/// How long the outbox keeps a delivered email when the settings do not say.
pub const DEFAULT_KEEP_DELIVERED_DAYS: u32 = 7;

impl Settings {
    /// How long the outbox keeps a delivered email before removing it.
    pub fn keep_delivered(&self) -> std::time::Duration {
        let days = self
            .keep_delivered_days
            .unwrap_or(DEFAULT_KEEP_DELIVERED_DAYS);
        std::time::Duration::from_secs(u64::from(days) * 86_400)
    }
}

impl SenderSettings {
    /// The most deliveries from the outbox this sender carries at once.
    pub fn max_concurrent(&self) -> u32 {
        self.max_concurrent.unwrap_or(DEFAULT_MAX_CONCURRENT)
    }

    /// The most deliveries from the outbox this sender starts in any 60 seconds.
    pub fn max_per_minute(&self) -> u32 {
        self.max_per_minute.unwrap_or(DEFAULT_MAX_PER_MINUTE)
    }

    fn error(&self, line: Option<usize>, key: &str, message: impl Into<String>) -> SettingsError {
        SettingsError {
            file: self.file.clone(),
            line,
            key: if key.is_empty() {
                format!("senders.{}", self.name)
            } else {
                format!("senders.{}.{key}", self.name)
            },
            message: message.into(),
        }
    }

    /// A settings error about this sender as a whole, or one of its host-owned keys.
    pub fn whole_error(&self, key: &str, message: impl Into<String>) -> SettingsError {
        let line = match host_key(key).map(|k| k.kind) {
            Some(HostKind::Plugin(_)) => self.plugin_line,
            _ => self.line,
        };
        self.error(Some(line), key, message)
    }

    /// Checks the plugin's keys against its schema, fills in defaults and reads secrets.
    pub fn resolve(
        &self,
        plugin_id: &str,
        schema: &[SettingSpec],
    ) -> Result<Vec<ResolvedSetting>, SettingsErrors> {
        let mut errors = Vec::new();
        let mut resolved = Vec::new();
        for entry in &self.entries {
            let Some(spec) = schema.iter().find(|s| s.key == entry.key) else {
                let known: Vec<&str> = schema
                    .iter()
                    .map(|s| s.key.as_str())
                    .chain(HOST_KEYS.iter().map(|k| k.key))
                    .collect();
                errors.push(self.error(
                    Some(entry.line),
                    &entry.key,
                    format!(
                        "unknown key for plugin \"{plugin_id}\"; known keys: {}",
                        known.join(", ")
                    ),
                ));
                continue;
            };
            match self.convert(spec, &entry.value) {
                Ok(value) => resolved.push(ResolvedSetting {
                    key: spec.key.clone(),
                    value,
                }),
                Err(message) => errors.push(self.error(Some(entry.line), &entry.key, message)),
            }
        }
        for spec in schema {
            if self.entries.iter().any(|e| e.key == spec.key) {
                continue;
            }
            match &spec.default {
                Some(default) => resolved.push(ResolvedSetting {
                    key: spec.key.clone(),
                    value: match default {
                        SettingDefault::Text(t) => ResolvedValue::Text(t.clone()),
                        SettingDefault::Integer(i) => ResolvedValue::Integer(*i),
                        SettingDefault::Boolean(b) => ResolvedValue::Boolean(*b),
                    },
                }),
                None if spec.required => errors.push(self.error(
                    Some(self.line),
                    &spec.key,
                    format!(
                        "missing required key ({}): {}",
                        spec.label,
                        kind_name(spec.kind)
                    ),
                )),
                None => {}
            }
        }
        if errors.is_empty() {
            Ok(resolved)
        } else {
            Err(SettingsErrors(errors))
        }
    }

    fn convert(&self, spec: &SettingSpec, value: &RawValue) -> Result<ResolvedValue, String> {
        let wrong = || {
            format!(
                "expected {}, found {}",
                kind_name(spec.kind),
                describe(value)
            )
        };
        match (spec.kind, value) {
            (SettingKind::Text, RawValue::Text(t)) => Ok(ResolvedValue::Text(t.clone())),
            (SettingKind::Integer, RawValue::Integer(i)) => Ok(ResolvedValue::Integer(*i)),
            (SettingKind::Boolean, RawValue::Boolean(b)) => Ok(ResolvedValue::Boolean(*b)),
            (SettingKind::Secret, RawValue::Text(t)) => {
                Ok(ResolvedValue::Secret(Secret::new(t.as_str())))
            }
            (SettingKind::Secret, RawValue::Secret(source)) => {
                read_secret(source).map(ResolvedValue::Secret)
            }
            (_, RawValue::Secret(_)) => Err(format!(
                "only secret settings take {{ env = … }} or {{ file = … }}; expected {}",
                kind_name(spec.kind)
            )),
            _ => Err(wrong()),
        }
    }
}

fn read_secret(source: &SecretSource) -> Result<Secret, String> {
    match source {
        SecretSource::Env(name) => match std::env::var(name) {
            Ok(value) if !value.is_empty() => Ok(Secret::new(value)),
            Ok(_) => Err(format!("the environment variable {name} is empty")),
            Err(_) => Err(format!("the environment variable {name} is not set")),
        },
        SecretSource::File(path) => match std::fs::read_to_string(path) {
            Ok(text) => {
                let value = text.trim_end_matches(['\r', '\n']);
                if value.is_empty() {
                    Err(format!("the secret file {} is empty", path.display()))
                } else {
                    Ok(Secret::new(value))
                }
            }
            Err(e) => Err(format!(
                "cannot read the secret file {}: {e}",
                path.display()
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(
        key: &str,
        kind: SettingKind,
        required: bool,
        default: Option<SettingDefault>,
    ) -> SettingSpec {
        SettingSpec {
            key: key.into(),
            label: key.into(),
            kind,
            required,
            default,
            help: String::new(),
        }
    }

    fn schema() -> Vec<SettingSpec> {
        vec![
            spec("host", SettingKind::Text, true, None),
            spec(
                "port",
                SettingKind::Integer,
                false,
                Some(SettingDefault::Integer(587)),
            ),
            spec(
                "enable_ssl",
                SettingKind::Boolean,
                false,
                Some(SettingDefault::Boolean(true)),
            ),
            spec("password", SettingKind::Secret, false, None),
        ]
    }

    fn parse(text: &str) -> Result<Settings, SettingsErrors> {
        Settings::parse(Path::new("/etc/scan2x/mail.toml"), text)
    }

    fn only_error(result: Result<impl fmt::Debug, SettingsErrors>) -> SettingsError {
        let errors = result.expect_err("expected a settings error").0;
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors.into_iter().next().unwrap()
    }

    /// A value `kind` takes (`ca.pem` must exist beside the settings file).
    fn valid(kind: HostKind) -> String {
        match kind {
            HostKind::Plugin(_) => "\"vendor/send.wasm\"".into(),
            HostKind::Bool(_) => "true".into(),
            HostKind::File(_) => "\"ca.pem\"".into(),
            HostKind::Sha256(_) => format!("\"{}\"", "aB".repeat(32)),
            HostKind::Grants(_) => "[\"smtp://mx.example.com:587\"]".into(),
            HostKind::Whole { max, .. } => max.to_string(),
        }
    }

    /// What `kind` says of a float, a type no host key takes.
    fn refusal_of_a_float(kind: HostKind) -> String {
        match kind {
            HostKind::Plugin(_) => {
                "must be a built-in plugin id (\"smtp\") or the path of a .wasm file".into()
            }
            HostKind::Bool(_) => "expected true or false, found a float".into(),
            HostKind::File(_) => "expected a file path, found a float".into(),
            HostKind::Sha256(_) => {
                "expected 64 hexadecimal digits (the plugin file's sha256)".into()
            }
            HostKind::Grants(_) => {
                "expected a list of destinations, e.g. [\"smtp://mx.example.com:587\"]".into()
            }
            HostKind::Whole { max, .. } => {
                format!("expected a whole number from 1 to {max}, found a float")
            }
        }
    }

    /// A settings file whose sender `relay` (table on line 2) sets `key = value` on line 4,
    /// with a valid `plugin` unless `key` is the plugin's.
    fn with_host_key(key: &HostKey, value: &str) -> String {
        let plugin = match key.kind {
            HostKind::Plugin(_) => "# no other plugin",
            _ => "plugin = \"smtp\"",
        };
        format!("# c\n[senders.relay]\n{plugin}\n{} = {value}\n", key.key)
    }

    #[test]
    fn every_host_key_is_set_from_a_valid_value_each_into_its_own_field() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), "pem").unwrap();
        let path = dir.path().join("mail.toml");
        let plain = Settings::parse(&path, "[senders.relay]\nplugin = \"smtp\"\n").unwrap();
        let mut seen: Vec<SenderSettings> = Vec::new();
        for key in HOST_KEYS {
            let text = with_host_key(key, &valid(key.kind));
            let settings = Settings::parse(&path, &text)
                .unwrap_or_else(|e| panic!("{}: {e}", key.key))
                .senders
                .remove(0);
            assert!(settings.entries.is_empty(), "{}: the host's key", key.key);
            let mut unchanged = plain.senders[0].clone();
            unchanged.line = settings.line;
            unchanged.plugin_line = settings.plugin_line;
            assert_ne!(settings, unchanged, "{} set nothing", key.key);
            for other in &seen {
                assert_ne!(&settings, other, "{} sets what another key sets", key.key);
            }
            seen.push(settings);
        }
        let sha256 = host_key("sha256").unwrap();
        let s = Settings::parse(&path, &with_host_key(sha256, &valid(sha256.kind))).unwrap();
        assert_eq!(s.senders[0].sha256, Some("ab".repeat(32)));
    }

    #[test]
    fn every_host_key_refuses_a_wrong_type_naming_the_key_and_its_line() {
        for key in HOST_KEYS {
            let errors = parse(&with_host_key(key, "1.5")).unwrap_err().0;
            let found: Vec<(Option<usize>, &str, &str)> = errors
                .iter()
                .map(|e| (e.line, e.key.as_str(), e.message.as_str()))
                .collect();
            let dotted = format!("senders.relay.{}", key.key);
            let refusal = refusal_of_a_float(key.kind);
            let mut expected = vec![(Some(4), dotted.as_str(), refusal.as_str())];
            if let Some(missing) = key.kind.missing() {
                expected.push((Some(2), dotted.as_str(), missing));
            }
            assert_eq!(found, expected, "{}", key.key);
        }
    }

    #[test]
    fn the_known_keys_are_the_schemas_then_exactly_the_tables() {
        let s = parse("[senders.relay]\nplugin = \"smtp\"\nprot = 25\nhost = \"mx\"\n").unwrap();
        let e = only_error(s.senders[0].resolve("smtp", &schema()));
        let host_keys: Vec<&str> = HOST_KEYS.iter().map(|k| k.key).collect();
        assert_eq!(
            e.message,
            format!(
                "unknown key for plugin \"smtp\"; known keys: host, port, enable_ssl, password, {}",
                host_keys.join(", ")
            )
        );
        assert_eq!(
            host_keys,
            [
                "plugin",
                "preferred",
                "allow_job_source",
                "allow_job_recipients",
                "ca_file",
                "sha256",
                "allow_hosts",
                "allow_loopback_names",
                "memory_limit_mb",
                "cpu_limit_secs",
                "call_limit_secs",
                "max_concurrent",
                "max_per_minute",
            ]
        );
    }

    #[test]
    fn whole_number_ranges_come_from_the_table() {
        let mut ranges = Vec::new();
        for key in HOST_KEYS {
            let HostKind::Whole { max, .. } = key.kind else {
                continue;
            };
            ranges.push((key.key, max));
            assert!(
                parse(&with_host_key(key, &max.to_string())).is_ok(),
                "{}",
                key.key
            );
            for refused in [0, i64::from(max) + 1] {
                let e = only_error(parse(&with_host_key(key, &refused.to_string())));
                assert_eq!(
                    e.message,
                    format!("expected a whole number from 1 to {max}, found the integer {refused}")
                );
            }
        }
        assert_eq!(
            ranges,
            [
                ("memory_limit_mb", 4096),
                ("cpu_limit_secs", 3600),
                ("call_limit_secs", 3600),
                ("max_concurrent", 64),
                ("max_per_minute", 100_000)
            ]
        );
        let s = parse("[senders.a]\nplugin = \"smtp\"\nmemory_limit_mb = 4096\ncpu_limit_secs = 1\ncall_limit_secs = 3600\n").unwrap();
        let a = &s.senders[0];
        assert_eq!(
            (a.memory_limit_mb, a.cpu_limit_secs, a.call_limit_secs),
            (Some(4096), Some(1), Some(3600))
        );
    }

    #[test]
    fn an_unknown_top_level_key_is_told_the_tables_top_level_keys() {
        let e = only_error(parse("fail_over = true\n[senders.a]\nplugin = \"smtp\"\n"));
        assert_eq!(
            e.message,
            "unknown key; the settings file has `failover`, `keep_delivered_days`, the `service` table and the `senders` tables"
        );
        for top in TOP_KEYS {
            assert!(e.message.contains(&format!("`{}`", top.key)), "{e}");
        }
    }

    #[test]
    fn the_plugin_keys_errors_name_its_line_and_other_host_keys_the_tables() {
        let s = parse("[senders.a]\nhost = \"mx\"\nplugin = \"smtp\"\n").unwrap();
        assert_eq!(s.senders[0].whole_error("plugin", "x").line, Some(3));
        assert_eq!(s.senders[0].whole_error("ca_file", "x").line, Some(1));
        assert_eq!(s.senders[0].whole_error("", "x").line, Some(1));
    }

    #[test]
    fn the_help_text_lists_every_key_with_its_type_range_and_help() {
        let help = help_text();
        for top in TOP_KEYS {
            let line = format!("  {} ({}): {}\n", top.key, top.kind.type_name(), top.help);
            assert!(help.contains(&line), "{line:?} in {help}");
        }
        for key in HOST_KEYS {
            assert!(
                help.contains(&format!("  {} ({}", key.key, key.kind.type_name())),
                "{} in {help}",
                key.key
            );
            assert!(help.contains(&format!("): {}\n", key.help)), "{help}");
        }
        assert!(
            help.contains("  memory_limit_mb (integer from 1 to 4096): "),
            "{help}"
        );
        assert_eq!(help.lines().count(), 2 + TOP_KEYS.len() + HOST_KEYS.len());
    }

    /// README's "Keys the host owns" table lists the same keys, in the same order, with the
    /// same types.
    #[test]
    fn the_readmes_host_keys_are_the_tables() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        let table = readme
            .split("**Keys the host owns**")
            .nth(1)
            .expect("README has the host keys' table");
        let rows: Vec<(&str, &str)> = table
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| {
                let mut cells = l.split('|').map(str::trim).skip(1);
                let key = cells.next()?.strip_prefix('`')?.strip_suffix('`')?;
                Some((key, cells.next()?))
            })
            .collect();
        let expected: Vec<(&str, &str)> = HOST_KEYS
            .iter()
            .map(|k| (k.key, k.kind.type_name()))
            .collect();
        assert_eq!(rows, expected);
    }

    #[test]
    fn host_owned_keys_are_read_and_plugin_keys_kept_in_order() {
        let s = parse(
            "[senders.relay]\nplugin = \"smtp\"\npreferred = true\nhost = \"mx\"\nport = 25\n\n[senders.vendor]\nplugin = \"vendor/send.wasm\"\n",
        )
        .unwrap();
        assert_eq!(s.senders.len(), 2);
        let relay = &s.senders[0];
        assert_eq!(relay.name, "relay");
        assert_eq!(relay.line, 1);
        assert_eq!(relay.plugin, PluginRef::Builtin("smtp".into()));
        assert!(relay.preferred && !relay.allow_job_source);
        let keys: Vec<(&str, usize)> = relay
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e.line))
            .collect();
        assert_eq!(keys, [("host", 4), ("port", 5)]);
        assert_eq!(
            s.senders[1].plugin,
            PluginRef::File("/etc/scan2x/vendor/send.wasm".into())
        );
    }

    #[test]
    fn unknown_top_level_key_names_the_line() {
        let e = only_error(parse(
            "[senders.a]\nplugin = \"smtp\"\n\n[sendres.b]\nplugin = \"smtp\"\n",
        ));
        assert_eq!(e.line, Some(4));
        assert_eq!(e.key, "sendres");
    }

    #[test]
    fn missing_plugin_is_an_error_on_the_table_line() {
        let e = only_error(parse("\n[senders.relay]\nhost = \"mx\"\n"));
        assert_eq!((e.line, e.key.as_str()), (Some(2), "senders.relay.plugin"));
    }

    #[test]
    fn failover_is_off_unless_switched_on() {
        let text = "[senders.a]\nplugin = \"smtp\"\n";
        assert!(!parse(text).unwrap().failover);
        assert!(parse(&format!("failover = true\n{text}")).unwrap().failover);
        let e = only_error(parse(&format!("failover = \"yes\"\n{text}")));
        assert_eq!((e.line, e.key.as_str()), (Some(1), "failover"));
    }

    #[test]
    fn the_service_table_takes_an_address_and_existing_folders_made_absolute() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("scans")).unwrap();
        let file = dir.path().join("s.toml");
        let senders = "[senders.a]\nplugin = \"smtp\"\n";
        let parsed = |text: &str| Settings::parse(&file, &format!("{text}{senders}"));
        assert_eq!(parsed("").unwrap().service, ServiceSettings::default());
        let s =
            parsed("[service]\nlisten = \"[::1]:9000\"\nattachments_from = [\"scans\"]\n").unwrap();
        assert_eq!(s.service.listen, Some("[::1]:9000".parse().unwrap()));
        assert_eq!(s.service.attachments_from, [dir.path().join("scans")]);
        for (text, key, line, message) in [
            (
                "[service]\nlisten = \"localhost\"\n",
                "service.listen",
                2,
                "expected an address and port",
            ),
            (
                "[service]\nattachments_from = [\"scans\", \"gone\"]\n",
                "service.attachments_from",
                2,
                "no such folder: ",
            ),
            (
                "[service]\nattachments_from = \"scans\"\n",
                "service.attachments_from",
                2,
                "expected a list of folders",
            ),
            (
                "[service]\nport = 8740\n",
                "service.port",
                2,
                "unknown key; [service] has `listen` and `attachments_from`",
            ),
            ("service = 1\n", "service", 1, "must be a table"),
        ] {
            let e = only_error(parsed(text));
            assert_eq!((e.key.as_str(), e.line), (key, Some(line)), "{text}");
            assert!(e.message.starts_with(message), "{text}: {}", e.message);
        }
    }

    #[test]
    fn delivered_emails_are_kept_seven_days_unless_the_settings_say_how_many() {
        let text = "[senders.a]\nplugin = \"smtp\"\n";
        let day = std::time::Duration::from_secs(86_400);
        assert_eq!(parse(text).unwrap().keep_delivered(), 7 * day);
        let kept = parse(&format!("keep_delivered_days = 30\n{text}")).unwrap();
        assert_eq!(kept.keep_delivered(), 30 * day);
        for (value, found) in [
            ("0", "the integer 0"),
            ("3651", "the integer 3651"),
            ("\"7\"", "the string \"7\""),
        ] {
            let e = only_error(parse(&format!("keep_delivered_days = {value}\n{text}")));
            assert_eq!((e.line, e.key.as_str()), (Some(1), "keep_delivered_days"));
            assert_eq!(
                e.message,
                format!("expected a whole number from 1 to 3650, found {found}")
            );
        }
    }

    #[test]
    fn loopback_names_are_refused_unless_the_sender_allows_them() {
        let text = "[senders.a]\nplugin = \"smtp\"\n";
        assert!(!parse(text).unwrap().senders[0].allow_loopback_names);
        let allowed = parse(&format!("{text}allow_loopback_names = true\n")).unwrap();
        assert!(allowed.senders[0].allow_loopback_names);
        assert!(
            allowed.senders[0].entries.is_empty(),
            "a host key, not the plugin's"
        );
        let e = only_error(parse(&format!("{text}allow_loopback_names = 1\n")));
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(3), "senders.a.allow_loopback_names")
        );
    }

    #[test]
    fn allow_hosts_are_parsed_into_grants_and_bad_entries_named() {
        let s = parse(
            "[senders.a]\nplugin = \"smtp\"\nallow_hosts = [\"smtp://mx.example.com:587\", \"https://*.example.com\"]\nmemory_limit_mb = 64\n",
        )
        .unwrap();
        let grants: Vec<String> = s.senders[0]
            .allow_hosts
            .as_ref()
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            grants,
            ["smtp://mx.example.com:587", "https://*.example.com:443"]
        );
        assert_eq!(s.senders[0].memory_limit_mb, Some(64));
        let e = only_error(parse(
            "[senders.a]\nplugin = \"smtp\"\nallow_hosts = [\n  \"smtp://ok.example.com:25\",\n  \"smtp://bad host:25\",\n]\n",
        ));
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(5), "senders.a.allow_hosts[1]")
        );
        let e = only_error(parse(
            "[senders.a]\nplugin = \"smtp\"\ncpu_limit_secs = 0\n",
        ));
        assert!(e.message.contains("from 1 to 3600"), "{e}");
    }

    #[test]
    fn two_preferred_senders_are_refused() {
        let e = only_error(parse(
            "[senders.a]\nplugin = \"smtp\"\npreferred = true\n[senders.b]\nplugin = \"smtp\"\npreferred = true\n",
        ));
        assert!(
            e.message.contains("at most one sender may be preferred"),
            "{e}"
        );
        assert!(e.message.contains("a, b"), "{e}");
    }

    #[test]
    fn invalid_toml_reports_its_line() {
        let e = only_error(parse("[senders.a]\nplugin = \"smtp\"\nport = = 3\n"));
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.starts_with("not valid TOML"), "{e}");
    }

    #[test]
    fn resolve_fills_defaults_and_checks_types() {
        let s = parse("[senders.relay]\nplugin = \"smtp\"\nhost = \"mx\"\npassword = \"pw-123\"\n")
            .unwrap();
        let resolved = s.senders[0].resolve("smtp", &schema()).unwrap();
        let keys: Vec<&str> = resolved.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["host", "password", "port", "enable_ssl"]);
        assert_eq!(resolved[2].value, ResolvedValue::Integer(587));
        assert_eq!(
            resolved[1].value,
            ResolvedValue::Secret(Secret::new("pw-123"))
        );
    }

    #[test]
    fn resolve_reports_unknown_missing_and_mistyped_keys_with_lines() {
        let s = parse("[senders.relay]\nplugin = \"smtp\"\nprot = 25\nport = \"abc\"\n").unwrap();
        let errors = s.senders[0].resolve("smtp", &schema()).unwrap_err().0;
        let summary: Vec<(Option<usize>, &str)> =
            errors.iter().map(|e| (e.line, e.key.as_str())).collect();
        assert_eq!(
            summary,
            [
                (Some(3), "senders.relay.prot"),
                (Some(4), "senders.relay.port"),
                (Some(1), "senders.relay.host"),
            ]
        );
        assert!(
            errors[0]
                .message
                .contains("unknown key for plugin \"smtp\"")
        );
        assert!(
            errors[1]
                .message
                .contains("expected an integer, found the string \"abc\"")
        );
        assert!(errors[2].message.contains("missing required key"));
    }

    #[test]
    fn secrets_come_from_env_and_files_and_errors_never_show_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "from-file-secret\n").unwrap();
        let path = dir.path().join("mail.toml");
        let text =
            "[senders.relay]\nplugin = \"smtp\"\nhost = \"mx\"\npassword = { file = \"pw\" }\n";
        let s = Settings::parse(&path, text).unwrap();
        let resolved = s.senders[0].resolve("smtp", &schema()).unwrap();
        assert_eq!(
            resolved[1].value,
            ResolvedValue::Secret(Secret::new("from-file-secret"))
        );

        let text = "[senders.relay]\nplugin = \"smtp\"\nhost = \"mx\"\npassword = { env = \"SCAN2X_TEST_SURELY_UNSET\" }\n";
        let s = Settings::parse(&path, text).unwrap();
        let e = s.senders[0].resolve("smtp", &schema()).unwrap_err();
        assert!(
            e.to_string()
                .contains("SCAN2X_TEST_SURELY_UNSET is not set"),
            "{e}"
        );
    }

    #[test]
    fn secret_references_are_refused_for_plain_settings() {
        let s = parse("[senders.relay]\nplugin = \"smtp\"\nhost = { env = \"HOST\" }\n").unwrap();
        let e = s.senders[0].resolve("smtp", &schema()).unwrap_err();
        assert!(e.to_string().contains("only secret settings take"), "{e}");
    }
}
