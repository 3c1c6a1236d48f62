//! The plugin runtime: one wasmtime `Engine`, each plugin compiled once (and cached on disk) and
//! pre-linked into an `InstancePre`; a fresh `Store` and instance for every call.
//!
//! What a plugin gets: the host's capability interfaces (through the gate) and, of WASI, only
//! io, clocks, random and the cli basics with an empty environment. A plugin that imports
//! anything else (filesystem, sockets, a newer WIT version) is refused at load with a message
//! naming the import. Limits per call: memory ([`Limits::memory_bytes`]), guest CPU time
//! ([`Limits::guest_cpu`]: the CPU time the threads running the call used, checked on every
//! epoch tick; see [`cpu`]) and wall-clock time for the whole call ([`Limits::call_wall`]). A trap or limit fails that call only.

mod answers;
pub mod cache;
mod cpu;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, UpdateDeadline};

use crate::capability::blobs::BlobData;
use crate::capability::secrets::SecretValue;
use crate::capability::witness::Witnessed;
use crate::capability::{HostState, SenderContext, state::StateStore};
use crate::message::Email;
use crate::outcome::{Failure, FailureKind};
use crate::settings::{PluginRef, ResolvedSetting, ResolvedValue, SenderSettings};
use crate::wit::types::{
    Attachment, Message, PluginInfo, Receipt, SendError, Setting, SettingValue,
};
use crate::wit::{EXPORT, SenderPlugin, SenderPluginPre, WIT_VERSION};
use cache::{ArtifactCache, CacheOutcome, sha256_hex};

mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));
}

/// Imports a plugin may have. Everything else is refused at load.
const ALLOWED_IMPORTS: &[&str] = &[
    "scan2x:mail/",
    "wasi:io/",
    "wasi:clocks/monotonic-clock@",
    "wasi:clocks/wall-clock@",
    "wasi:random/",
    "wasi:cli/environment@",
    "wasi:cli/exit@",
    "wasi:cli/stdin@",
    "wasi:cli/stdout@",
    "wasi:cli/stderr@",
    "wasi:cli/terminal-",
];

const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Per-call limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Linear memory of one instance, all memories together.
    pub memory_bytes: usize,
    /// CPU time one call may use: the plugin's code and the host's capability work it asks
    /// for; time spent waiting (on a server, for a CPU) is not counted.
    pub guest_cpu: Duration,
    /// The whole call, host I/O included.
    pub call_wall: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // A 30 MB scan is held as the message, its MIME encoding and the bytes handed over.
            memory_bytes: 512 << 20,
            guest_cpu: Duration::from_secs(10),
            call_wall: Duration::from_secs(900),
        }
    }
}

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("unknown plugin \"{id}\"; built-in plugins: {known}")]
    UnknownBuiltin { id: String, known: String },
    #[error("cannot read plugin file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "plugin file {path} has sha256 {actual}, but the settings pin {expected}; refusing to load it"
    )]
    PinMismatch {
        path: String,
        expected: String,
        actual: String,
    },
    #[error("{plugin} is not a valid plugin component: {reason}")]
    Invalid { plugin: String, reason: String },
    #[error(
        "{plugin} imports {import}, which this host does not provide to plugins (no filesystem, sockets or other host access)"
    )]
    ForbiddenImport { plugin: String, import: String },
    #[error(
        "{plugin} was built for WIT {found}; this host supports scan2x:mail@{supported}: rebuild \
         the plugin against that version's `wit/` (in Rust: the plugin kit of this release)"
    )]
    WitVersion {
        plugin: String,
        found: String,
        supported: &'static str,
    },
}

/// A loaded plugin: its description and a pre-linked instance factory.
pub struct Plugin {
    pub reference: PluginRef,
    pub info: PluginInfo,
    pub sha256: String,
    pub wit_version: &'static str,
    pub cache: CacheOutcome,
    pre: SenderPluginPre<HostState>,
}

impl Plugin {
    /// Whether the plugin speaks SMTP: one of its declared destinations is `smtp://…` (the
    /// router puts such senders first among equals).
    pub fn speaks_smtp(&self) -> bool {
        self.info
            .network
            .iter()
            .any(|need| need.trim_start().starts_with("smtp://"))
    }
}

/// A sender ready to use: its settings checked against its plugin's schema, its grants made.
pub struct Sender {
    pub settings: SenderSettings,
    pub plugin: Arc<Plugin>,
    pub resolved: Vec<ResolvedSetting>,
    pub context: Arc<SenderContext>,
    /// This sender's limits: the host's defaults, or its own `memory_limit_mb`,
    /// `cpu_limit_secs` and `call_limit_secs`.
    pub limits: Limits,
    /// Things an administrator should know that are not errors (e.g. a declared network need
    /// that `allow_hosts` does not grant).
    pub notes: Vec<String>,
}

/// A call that did not reach a plugin answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The plugin answered with an expected failure.
    #[error("{0:?}")]
    Plugin(SendError),
    /// The plugin trapped, panicked or hit a limit; the host is fine.
    #[error("plugin failed: {0}")]
    Crashed(String),
    /// The call reached its wall-clock limit while the host waited on a server for it: that
    /// server's slowness, not the plugin's fault.
    #[error("{0}")]
    Stalled(String),
}

pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache: ArtifactCache,
    state: Arc<StateStore>,
    limits: Limits,
}

/// How a runtime gives each call its fresh instance (memories, tables, stack). Either way every
/// call gets a new instance, under the same limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Allocation {
    /// From a pool of slots reserved when the runtime starts and reused across calls (at most
    /// 100 calls in flight at once): for a process that makes many calls (`serve`, `queue run`,
    /// the bench's in-process sends), where it saves page faults on every call.
    #[default]
    Pooled,
    /// Mapped for each call and unmapped after it: for a command that makes a call or two and
    /// exits (`send`, `test`), for which reserving the pool and tearing it down at exit costs
    /// more (≈1 ms a process, more beside a TLS send) than the pool saves (≈50 µs a call).
    PerCall,
}

impl Runtime {
    /// A runtime whose precompiled-plugin cache is `cache_dir`, its entries authenticated with
    /// the key in [`cache::default_key_file`] (see [`ArtifactCache::open`]), with a pool of
    /// instances ([`Allocation::Pooled`]).
    pub fn new(cache_dir: Option<PathBuf>, limits: Limits) -> wasmtime::Result<Self> {
        Self::new_with(cache_dir, limits, Allocation::Pooled)
    }

    /// [`Runtime::new`], its instances allocated as `allocation` says.
    pub fn new_with(
        cache_dir: Option<PathBuf>,
        limits: Limits,
        allocation: Allocation,
    ) -> wasmtime::Result<Self> {
        let key_file = cache::default_key_file();
        Self::build(
            ArtifactCache::open(cache_dir.as_deref(), key_file.as_deref()),
            limits,
            allocation,
        )
    }

    pub fn with_cache(cache: ArtifactCache, limits: Limits) -> wasmtime::Result<Self> {
        Self::build(cache, limits, Allocation::Pooled)
    }

    fn build(
        cache: ArtifactCache,
        limits: Limits,
        allocation: Allocation,
    ) -> wasmtime::Result<Self> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = match allocation {
            Allocation::Pooled => {
                config.allocation_strategy(pooling());
                match Engine::new(&config) {
                    Ok(engine) => engine,
                    Err(e) => {
                        // The pool reserves address space for every slot up front (no memory,
                        // but terabytes of it), which a process limited in address space
                        // (`ulimit -v`) can't have.
                        tracing::info!(
                            "the plugin memory pool could not be reserved ({e:#}); each plugin \
                             call maps its own memory instead, which is slower"
                        );
                        Engine::new(&unreserved())?
                    }
                }
            }
            // Nothing is reserved up front here, so a limit on address space would only show
            // when a call maps its memory (4 GiB of reservation and a guard): read it now.
            Allocation::PerCall if address_space_is_limited() => {
                tracing::info!(
                    "address space is limited (ulimit -v): each plugin call maps only the memory \
                     it uses, bounds-checked"
                );
                Engine::new(&unreserved())?
            }
            Allocation::PerCall => Engine::new(&config)?,
        };
        start_epoch_ticker(&engine);
        let mut linker = Linker::<HostState>::new(&engine);
        add_wasi_to_linker(&mut linker)?;
        SenderPlugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)?;
        Ok(Self {
            engine,
            linker,
            cache,
            state: Arc::default(),
            limits,
        })
    }

    pub fn cache_dir(&self) -> Option<&std::path::Path> {
        self.cache.dir()
    }

    /// The ids of the plugins built into this binary.
    pub fn builtin_ids() -> impl Iterator<Item = &'static str> {
        builtin::BUILTIN_PLUGINS.iter().map(|(id, _)| *id)
    }

    /// Loads a plugin: reads it (checking a sha256 pin), compiles or loads it from the cache,
    /// checks its imports and exports, links it and asks it to describe itself.
    pub async fn load(
        &self,
        reference: &PluginRef,
        pin: Option<&str>,
    ) -> Result<Plugin, LoadError> {
        let (label, bytes): (String, std::borrow::Cow<'static, [u8]>) = match reference {
            PluginRef::Builtin(id) => {
                let found = builtin::BUILTIN_PLUGINS.iter().find(|(b, _)| b == id);
                let Some((_, bytes)) = found else {
                    return Err(LoadError::UnknownBuiltin {
                        id: id.clone(),
                        known: Self::builtin_ids().collect::<Vec<_>>().join(", "),
                    });
                };
                (id.clone(), (*bytes).into())
            }
            PluginRef::File(path) => {
                let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
                    path: path.clone(),
                    source,
                })?;
                (path.display().to_string(), bytes.into())
            }
        };
        let sha256 = sha256_hex(&bytes);
        if let Some(expected) = pin.filter(|expected| *expected != sha256) {
            return Err(LoadError::PinMismatch {
                path: label,
                expected: expected.to_string(),
                actual: sha256,
            });
        }
        let invalid = |e: wasmtime::Error| LoadError::Invalid {
            plugin: label.clone(),
            reason: format!("{e:#}"),
        };
        let (component, cache) = self
            .cache
            .load_or_compile(&self.engine, &label, &bytes, &sha256)
            .map_err(invalid)?;
        self.check_interface(&label, &component)?;
        let pre = self.linker.instantiate_pre(&component).map_err(invalid)?;
        let pre = SenderPluginPre::new(pre).map_err(invalid)?;
        let mut plugin = Plugin {
            reference: reference.clone(),
            info: PluginInfo {
                id: String::new(),
                version: String::new(),
                label: String::new(),
                description: String::new(),
                settings: Vec::new(),
                events: Vec::new(),
                network: Vec::new(),
            },
            sha256,
            wit_version: WIT_VERSION,
            cache,
            pre,
        };
        let context = Arc::new(SenderContext {
            name: format!("({label})"),
            ..SenderContext::default()
        });
        let (described, _) = self
            .call(&plugin, context, self.limits, async |store, instance| {
                instance
                    .scan2x_mail_mail_sender()
                    .call_describe(store)
                    .await
            })
            .await;
        plugin.info = described.map_err(|e| LoadError::Invalid {
            plugin: label.clone(),
            reason: format!("describe() failed: {e}"),
        })?;
        answers::plugin_info(&mut plugin.info);
        Ok(plugin)
    }

    fn check_interface(&self, label: &str, component: &Component) -> Result<(), LoadError> {
        let ty = component.component_type();
        for (name, _) in ty.imports(&self.engine) {
            if name.starts_with("scan2x:mail/") && !name.ends_with(&format!("@{WIT_VERSION}")) {
                return Err(LoadError::WitVersion {
                    plugin: label.to_string(),
                    found: name.to_string(),
                    supported: WIT_VERSION,
                });
            }
            if !ALLOWED_IMPORTS
                .iter()
                .any(|allowed| name.starts_with(allowed))
            {
                return Err(LoadError::ForbiddenImport {
                    plugin: label.to_string(),
                    import: name.to_string(),
                });
            }
        }
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        if !exports.iter().any(|e| e == EXPORT) {
            if let Some(other) = exports
                .iter()
                .find(|e| e.starts_with("scan2x:mail/mail-sender"))
            {
                return Err(LoadError::WitVersion {
                    plugin: label.to_string(),
                    found: other.clone(),
                    supported: WIT_VERSION,
                });
            }
            return Err(LoadError::Invalid {
                plugin: label.to_string(),
                reason: format!(
                    "it does not export {EXPORT} (its exports: {})",
                    if exports.is_empty() {
                        "none".into()
                    } else {
                        exports.join(", ")
                    }
                ),
            });
        }
        Ok(())
    }

    /// The limits a sender gets unless its settings say otherwise.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The per-sender state store every sender of this runtime shares.
    pub(crate) fn state(&self) -> Arc<StateStore> {
        self.state.clone()
    }

    /// "Test settings" through the sender's plugin, and what the host saw of the call (see
    /// [`crate::outcome::refine`]).
    pub async fn verify(&self, sender: &Sender) -> (Result<String, CallError>, Witnessed) {
        let settings = &sender.resolved;
        let (result, witnessed) = self
            .call(
                &sender.plugin,
                sender.context.clone(),
                sender.limits,
                async move |store, instance| {
                    let settings = to_wit_settings(store, settings)?;
                    instance
                        .scan2x_mail_mail_sender()
                        .call_verify(store, &settings)
                        .await
                },
            )
            .await;
        let result = result.and_then(|answer| {
            answer
                .map_err(plugin_error)
                .and_then(|mut line| match line.len() {
                    n if n > MAX_ANSWER_BYTES => Err(too_large("answer", n)),
                    _ => {
                        answers::line(&mut line, answers::MAX_TEXT);
                        Ok(line)
                    }
                })
        });
        (result, witnessed)
    }

    /// Sends one message through the sender's plugin.
    pub async fn send(&self, sender: &Sender, email: &Email) -> Result<Receipt, CallError> {
        self.send_witnessed(sender, email).await.0
    }

    /// [`Runtime::send`], and what the host itself saw of the call: hand-overs whose answer was
    /// lost, recipients refused for now ([`Witnessed`]). [`crate::outcome::judge`] makes the
    /// outcome of both.
    pub async fn send_witnessed(
        &self,
        sender: &Sender,
        email: &Email,
    ) -> (Result<Receipt, CallError>, Witnessed) {
        let settings = &sender.resolved;
        let (result, witnessed) = self
            .call(
                &sender.plugin,
                sender.context.clone(),
                sender.limits,
                async move |store, instance| {
                    let settings = to_wit_settings(store, settings)?;
                    let message = to_wit_message(store, email)?;
                    instance
                        .scan2x_mail_mail_sender()
                        .call_send(store, &settings, &message)
                        .await
                },
            )
            .await;
        let result = result.and_then(|answer| {
            answer
                .map_err(plugin_error)
                .and_then(|mut receipt| match receipt_size(&receipt) {
                    n if n > MAX_ANSWER_BYTES => Err(too_large("receipt", n)),
                    _ => {
                        answers::receipt(&mut receipt);
                        Ok(receipt)
                    }
                })
        });
        (result, witnessed)
    }

    /// One call in a fresh store and instance, under the limits, and what its
    /// [`Witness`](crate::capability::witness::Witness) saw.
    /// The wall-clock limit reached while the host waits on a server is [`CallError::Stalled`].
    async fn call<R>(
        &self,
        plugin: &Plugin,
        context: Arc<SenderContext>,
        limits: Limits,
        work: impl AsyncFnOnce(&mut Store<HostState>, &SenderPlugin) -> wasmtime::Result<R>,
    ) -> (Result<R, CallError>, Witnessed) {
        let mut store = Store::new(&self.engine, HostState::new(context, limits.memory_bytes));
        let witness = store.data().witness.clone();
        store.limiter(|state| &mut state.limits);
        let cpu = cpu::CallCpu::new();
        let used = cpu.clone();
        let guest_cpu = limits.guest_cpu;
        store.epoch_deadline_callback(move |ctx| {
            if used.used(ctx.data()) > guest_cpu {
                wasmtime::bail!(
                    "the plugin's code ran for more than {} s",
                    guest_cpu.as_secs()
                );
            }
            // Yield to the async runtime on every tick: the poll ends, so its CPU time is
            // counted, and the wall-clock limit can end a call.
            Ok(UpdateDeadline::Yield(1))
        });
        store.set_epoch_deadline(1);
        let (finished, waiting_on) = {
            let run = std::pin::pin!(cpu.metered(async {
                let instance = plugin.pre.instantiate_async(&mut store).await?;
                work(&mut store, &instance).await
            }));
            let finished = tokio::time::timeout(limits.call_wall, run).await;
            // Read before the call's future is dropped, which ends every wait in it.
            (finished, witness.snapshot().waiting_on)
        };
        tracing::debug!("the plugin call used {:?} of CPU", cpu.used(store.data()));
        let result = match finished {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                let mut message = crash_message(&e, &limits);
                if let Some(said) = store.data().stderr_tail() {
                    message.push_str(&format!("; it wrote: {said}"));
                }
                Err(CallError::Crashed(message))
            }
            Err(_) => {
                let limit = limits.call_wall.as_secs();
                Err(match waiting_on {
                    Some(server) => CallError::Stalled(format!(
                        "the call reached its {limit} s limit while waiting on {server}, and was stopped"
                    )),
                    None => CallError::Crashed(format!(
                        "the call took longer than {limit} s and was stopped"
                    )),
                })
            }
        };
        (result, witness.snapshot())
    }
}

impl From<CallError> for Failure {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Plugin(e) => e.into(),
            CallError::Crashed(m) => {
                Failure::new(FailureKind::PluginFailed, format!("plugin failed: {m}"))
            }
            CallError::Stalled(m) => Failure::new(FailureKind::Temporary, m),
        }
    }
}

/// What went wrong, in one line: the trap or the limit, without the wasm backtrace (which goes
/// to the debug log).
fn crash_message(e: &wasmtime::Error, limits: &Limits) -> String {
    tracing::debug!("plugin failure in full: {e:?}");
    if format!("{e:#}").contains("when growing memory") {
        return format!(
            "the plugin reached its memory limit ({} MiB) and was stopped",
            limits.memory_bytes >> 20
        );
    }
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => e.root_cause().to_string(),
    }
}

/// A plugin's expected failure, bounded and escaped.
fn plugin_error(mut e: SendError) -> CallError {
    answers::send_error(&mut e);
    CallError::Plugin(e)
}

/// What a plugin may hand back from one call: a receipt or a verify line. Receipts are a few
/// lines; anything near this is a plugin trying to make the host hold its memory.
const MAX_ANSWER_BYTES: usize = 1 << 20;

fn receipt_size(r: &Receipt) -> usize {
    r.detail.len()
        + r.provider_id.as_ref().map_or(0, String::len)
        + r.accepted.iter().map(String::len).sum::<usize>()
        + r.refused
            .iter()
            .map(|x| x.address.len() + x.reason.len())
            .sum::<usize>()
}

fn too_large(what: &str, size: usize) -> CallError {
    CallError::Crashed(format!(
        "the plugin's {what} is {size} bytes; the host accepts at most {MAX_ANSWER_BYTES}"
    ))
}

/// Settings as the plugin receives them; secrets become handles in this call's table.
fn to_wit_settings(
    store: &mut Store<HostState>,
    settings: &[ResolvedSetting],
) -> wasmtime::Result<Vec<Setting>> {
    let table: &mut ResourceTable = &mut store.data_mut().table;
    settings
        .iter()
        .map(|s| {
            let value = match &s.value {
                ResolvedValue::Text(t) => SettingValue::Text(t.clone()),
                ResolvedValue::Integer(i) => SettingValue::Integer(*i),
                ResolvedValue::Boolean(b) => SettingValue::Boolean(*b),
                ResolvedValue::Secret(secret) => {
                    SettingValue::Secret(table.push(SecretValue(secret.clone()))?)
                }
            };
            Ok(Setting {
                key: s.key.clone(),
                value,
            })
        })
        .collect()
}

/// The email as the plugin receives it; each attachment becomes a `blob` handle in this call's
/// table, sharing the bytes the host holds (no copy).
fn to_wit_message(store: &mut Store<HostState>, email: &Email) -> wasmtime::Result<Message> {
    let table: &mut ResourceTable = &mut store.data_mut().table;
    let attachments = email
        .attachments
        .iter()
        .map(|a| {
            Ok(Attachment {
                filename: a.filename.clone(),
                content_type: a.content_type.clone(),
                content: table.push(BlobData(a.content.clone()))?,
            })
        })
        .collect::<wasmtime::Result<_>>()?;
    Ok(Message {
        event: email.event,
        message_id: email.message_id.clone(),
        from: email.from.clone(),
        to: email.to.clone(),
        cc: email.cc.clone(),
        bcc: email.bcc.clone(),
        reply_to: email.reply_to.clone(),
        subject: email.subject.clone(),
        text_body: email.text_body.clone(),
        html_body: email.html_body.clone(),
        attachments,
    })
}

/// Links the part of WASI a plugin may use: io, clocks, random, and the cli basics.
fn add_wasi_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView as _};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView as _};
    use wasmtime_wasi::p2::bindings::{cli, clocks, random};
    use wasmtime_wasi::random::WasiRandom;

    wasmtime_wasi_io::add_to_linker_async(linker)?;
    let l = linker;
    clocks::wall_clock::add_to_linker::<HostState, WasiClocks>(l, HostState::clocks)?;
    clocks::monotonic_clock::add_to_linker::<HostState, WasiClocks>(l, HostState::clocks)?;
    random::random::add_to_linker::<HostState, WasiRandom>(l, |t| t.wasi_ctx().random())?;
    random::insecure::add_to_linker::<HostState, WasiRandom>(l, |t| t.wasi_ctx().random())?;
    random::insecure_seed::add_to_linker::<HostState, WasiRandom>(l, |t| t.wasi_ctx().random())?;
    cli::exit::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::environment::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::stdin::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::stdout::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::stderr::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_input::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_output::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_stdin::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_stdout::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_stderr::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    Ok(())
}

/// Each call maps just the memory it uses, bounds-checked, with no reservation beyond it: for a
/// process limited in address space.
fn unreserved() -> Config {
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .memory_reservation(0)
        .memory_guard_size(0)
        .memory_reservation_for_growth(1 << 20);
    config
}

/// Whether this process may map only so much address space (`RLIMIT_AS`, `ulimit -v`).
fn address_space_is_limited() -> bool {
    #[cfg(unix)]
    return rustix::process::getrlimit(rustix::process::Resource::As)
        .current
        .is_some();
    #[cfg(not(unix))]
    return false;
}

/// Every call gets a fresh instance; the pooling allocator hands it memory, tables and a stack
/// from slots reused across calls instead of mapping and unmapping them each time (a fresh
/// mapping made every call pay page faults for the guest's heap: `cargo xtask bench`, part 2).
/// The pool bounds the calls in flight at once per runtime; the per-call memory limit stays the
/// store limiter's, so slots may grow to the 4 GiB a 32-bit memory can address.
fn pooling() -> wasmtime::InstanceAllocationStrategy {
    let calls = MAX_CALLS_IN_FLIGHT;
    let mut pool = wasmtime::PoolingAllocationConfig::new();
    pool.total_component_instances(calls)
        .total_core_instances(calls * 8)
        .total_memories(calls * 4)
        .total_tables(calls * 8)
        .total_stacks(calls)
        .max_memory_size(4 << 30)
        // A warm slot keeps the pages a typical send touches (zeroed by memset on release)
        // instead of faulting them in again on the next call.
        .linear_memory_keep_resident(4 << 20)
        .table_keep_resident(64 << 10);
    wasmtime::InstanceAllocationStrategy::Pooling(pool)
}

/// Plugin calls that may run at once in one runtime (each holds one slot of the pool).
const MAX_CALLS_IN_FLIGHT: u32 = 100;

/// Advances the engine's epoch every tick while the engine lives.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("scan2x-mail-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawn the epoch thread");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_runtime_without_the_pool_loads_and_calls_a_plugin() {
        let runtime = Runtime::new_with(None, Limits::default(), Allocation::PerCall).unwrap();
        let smtp = PluginRef::Builtin("smtp".into());
        for _ in 0..2 {
            // Each load calls `describe` in a fresh instance, mapped for that call.
            let plugin = runtime.load(&smtp, None).await.unwrap();
            assert_eq!(plugin.info.id, "smtp");
        }
    }

    #[test]
    fn a_call_stopped_while_waiting_on_a_server_is_temporary_and_a_crash_is_not() {
        let stalled = Failure::from(CallError::Stalled("waiting on smtp mx:25".into()));
        assert_eq!(stalled.kind, FailureKind::Temporary);
        let crashed = Failure::from(CallError::Crashed("unreachable".into()));
        assert_eq!(
            (crashed.kind, crashed.message.as_str()),
            (FailureKind::PluginFailed, "plugin failed: unreachable")
        );
    }
}
