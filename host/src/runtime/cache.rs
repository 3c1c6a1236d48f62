//! The precompiled-plugin cache: Cranelift output kept on disk so a plugin is compiled once, not
//! on every start (≈100 ms → ≈1 ms per plugin).
//!
//! An entry is named by the sha256 of the component and the engine's compatibility hash, so a
//! changed plugin or a different wasmtime/CPU never picks up a stale artifact. Each artifact has
//! a sidecar with its own sha256; an entry whose bytes do not match (truncated, corrupted,
//! replaced) is recompiled, never deserialized. Entries are written to a temporary file and
//! renamed, so a crash leaves no half-written artifact. The folder is created private (0700).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where a loaded component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Deserialized from a verified cache entry.
    Loaded,
    /// Compiled now (and stored, when the cache is writable).
    Compiled { millis: u128 },
}

#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: Option<PathBuf>,
}

/// Feeds `Hash` output into sha256, for a hash that is stable across processes.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        unreachable!("only the digest is read")
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ArtifactCache {
    /// `dir: None` disables the cache (every start compiles).
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir }
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn entry(&self, engine: &Engine, wasm_sha256: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = hex::encode(hasher.0.finalize());
        Some(dir.join(format!("{wasm_sha256}-{}.cwasm", &engine_hash[..16])))
    }

    /// The component for `wasm`, from the cache when a verified entry exists, else compiled.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        label: &str,
        wasm: &[u8],
        wasm_sha256: &str,
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let entry = self.entry(engine, wasm_sha256);
        if let Some(component) = entry
            .as_ref()
            .and_then(|path| self.read(engine, label, path))
        {
            return Ok((component, CacheOutcome::Loaded));
        }
        let started = Instant::now();
        let component = Component::new(engine, wasm)?;
        let millis = started.elapsed().as_millis();
        match &entry {
            Some(path) => match self.write(&component, path) {
                Ok(()) => tracing::info!(
                    "plugin {label}: compiled in {millis} ms, cached as {}",
                    path.display()
                ),
                Err(e) => tracing::warn!(
                    "plugin {label}: compiled in {millis} ms; could not cache it in {}: {e:#}",
                    path.display()
                ),
            },
            None => tracing::info!("plugin {label}: compiled in {millis} ms (no cache folder)"),
        }
        Ok((component, CacheOutcome::Compiled { millis }))
    }

    fn read(&self, engine: &Engine, label: &str, path: &Path) -> Option<Component> {
        let bytes = std::fs::read(path).ok()?;
        let expected = std::fs::read_to_string(sidecar(path)).ok()?;
        if sha256_hex(&bytes) != expected.trim() {
            tracing::warn!(
                "plugin {label}: cache entry {} does not match its checksum; recompiling",
                path.display()
            );
            return None;
        }
        // SAFETY: wasmtime requires that deserialized bytes come from `Component::serialize` of
        // a trusted engine. These do: the entry lives in the host's own cache folder (created
        // 0700), was written by `write` below from a component this host compiled, is keyed by
        // the engine's compatibility hash, and its bytes were just checked against the sha256
        // recorded when it was written.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(engine, &bytes) };
        match component {
            Ok(component) => {
                tracing::info!("plugin {label}: loaded precompiled {}", path.display());
                Some(component)
            }
            Err(e) => {
                tracing::warn!(
                    "plugin {label}: cache entry {} is unusable ({e}); recompiling",
                    path.display()
                );
                None
            }
        }
    }

    fn write(&self, component: &Component, path: &Path) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let dir = path.parent().context("cache entry has no folder")?;
        create_private_dir(dir)?;
        let bytes = component.serialize()?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, &bytes).context("write the artifact")?;
        std::fs::write(sidecar(&tmp), sha256_hex(&bytes)).context("write the checksum")?;
        std::fs::rename(sidecar(&tmp), sidecar(path)).context("rename the checksum")?;
        std::fs::rename(&tmp, path).context("rename the artifact")?;
        Ok(())
    }
}

fn sidecar(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

/// The default cache folder: `$XDG_CACHE_HOME/scan2x-mail`, else `~/.cache/scan2x-mail`.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(xdg).join("scan2x-mail"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|home| PathBuf::from(home).join(".cache").join("scan2x-mail"))
}
