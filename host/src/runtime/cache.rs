//! The precompiled-plugin cache: Cranelift output kept on disk so a plugin is compiled once, not
//! on every start (≈100 ms → ≈1 ms per plugin).
//!
//! Deserializing an artifact runs it as native code, so this module must never deserialize bytes
//! this installation did not write. Three things make sure of that:
//!
//! | what | how |
//! |---|---|
//! | the folder | used only if this user owns it and no one else can write it (checked on the folder actually opened, through a symlink too, and every file then reached relative to that open folder); otherwise there is no cache and every start compiles |
//! | each entry | authenticated: beside each artifact, `<entry>.hmac` holds HMAC-SHA256 over its entry name and bytes with this installation's key; an entry that does not verify is recompiled, never deserialized. The name binds it to one plugin (the component's sha256) and one engine (wasmtime's compatibility hash) |
//! | between the check and the use | an entry this user owns and no one else may write is read once for its MAC and then mapped by wasmtime from the same open file (its code runs from the page cache; no second copy, no path resolved again): only this user or root could change it after the check, and either could also read the key and forge a MAC. Any other entry is read into memory, checked, and deserialized from that copy |
//! | the key | 32 random bytes in a file (0600) outside the cache folder — `$SCAN2X_MAIL_CACHE_KEY_FILE`, else `$XDG_CONFIG_HOME/scan2x-mail/cache.key` or `~/.config/scan2x-mail/cache.key` — in a folder only this user can write; made on first use. No safe place for it: no cache |
//! | writes | into a new file with an unpredictable name, created exclusively (never through a symlink, mode 0600), then renamed into place: a crash leaves no half-written entry, and a planted symlink is replaced, never written through |
//!
//! A cache that cannot be used never fails a command: the run compiles, and says why at `-v`.
//! Permissions can be checked only on Unix; elsewhere there is no cache (see [`ArtifactCache::open`]).

use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use hmac::{Hmac, Mac as _};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The variable that names the cache key file, for a user and for tests.
pub const KEY_FILE_ENV: &str = "SCAN2X_MAIL_CACHE_KEY_FILE";

/// The sidecar beside each artifact: its MAC, in hex.
const MAC_SUFFIX: &str = ".hmac";

/// What the MAC covers first, so a MAC over an entry can never be mistaken for another use of
/// the key.
const MAC_CONTEXT: &[u8] = b"scan2x-mail precompiled plugin v1\0";

type HmacSha256 = Hmac<Sha256>;

/// Where a loaded component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Deserialized from an authenticated cache entry.
    Loaded,
    /// Compiled now (and stored, when there is a cache).
    Compiled { millis: u128 },
}

/// Why there is no cache this run. Never an error of the command: it compiles instead.
#[derive(Debug, thiserror::Error)]
pub enum NotUsed {
    #[error("no cache folder (no --cache-dir, SCAN2X_MAIL_CACHE_DIR, XDG_CACHE_HOME or HOME)")]
    NoFolder,
    #[error(
        "no place for the cache key outside the cache folder (no {KEY_FILE_ENV}, XDG_CONFIG_HOME or HOME)"
    )]
    NoKeyPlace,
    #[error("others can write {} (mode {mode:03o}); only its owner may", path.display())]
    OthersCanWrite { path: PathBuf, mode: u32 },
    #[error("{} is owned by uid {owner}, not by this user (uid {me})", path.display())]
    NotOwned { path: PathBuf, owner: u32, me: u32 },
    #[error("{} is not a folder", path.display())]
    NotAFolder { path: PathBuf },
    #[error("others can read or write the cache key {} (mode {mode:03o}); it must be 0600", path.display())]
    KeyExposed { path: PathBuf, mode: u32 },
    #[error("{} does not hold a cache key (64 hex digits)", path.display())]
    BadKey { path: PathBuf },
    #[error("the cache key {} would be inside the cache folder", path.display())]
    KeyInCacheFolder { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the cache folder's owner and permissions can be checked only on Unix")]
    Unsupported,
}

impl NotUsed {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> NotUsed + '_ {
        move |source| NotUsed::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The installation's key for cache entries: 32 random bytes. Never printed.
#[derive(Clone)]
struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// The MAC of the entry `name` holding `bytes`, ready to finalize or verify.
    fn mac(&self, name: &str, bytes: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(MAC_CONTEXT);
        mac.update(&(name.len() as u64).to_be_bytes());
        mac.update(name.as_bytes());
        mac.update(bytes);
        mac
    }

    fn tag_hex(&self, name: &str, bytes: &[u8]) -> String {
        hex::encode(self.mac(name, bytes).finalize().into_bytes())
    }

    /// Whether `tag_hex` is the MAC of entry `name` holding `bytes` (compared in constant time).
    #[cfg(test)]
    fn verifies(&self, name: &str, bytes: &[u8], tag_hex: &str) -> bool {
        tag_matches(self.mac(name, bytes), tag_hex)
    }
}

/// Whether `tag_hex` is what `mac` (every byte fed) finalizes to, compared in constant time.
fn tag_matches(mac: HmacSha256, tag_hex: &str) -> bool {
    hex::decode(tag_hex.trim()).is_ok_and(|tag| mac.verify_slice(&tag).is_ok())
}

#[derive(Debug)]
struct Open {
    folder: folder::Folder,
    key: Key,
}

/// The cache, or none: [`ArtifactCache::open`] decides once per run whether it may be used.
#[derive(Debug, Clone, Default)]
pub struct ArtifactCache {
    open: Option<Arc<Open>>,
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
    /// No cache: every start compiles.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// The cache in `dir`, its entries authenticated with the key in `key_file` (made if
    /// missing) — if both are safe to use; otherwise no cache, and the log says why.
    ///
    /// On other platforms than Unix there is no cache: the folder's owner and who may write it
    /// can't be checked there without ACL code, and an artifact from an unchecked folder is
    /// native code anyone with write access could have chosen. Compiling is slower, never unsafe.
    pub fn open(dir: Option<&Path>, key_file: Option<&Path>) -> Self {
        match Self::try_open(dir, key_file) {
            Ok(open) => {
                tracing::debug!("precompiled-plugin cache: {}", open.folder.path().display());
                Self {
                    open: Some(Arc::new(open)),
                }
            }
            Err(reason @ (NotUsed::NoFolder | NotUsed::NoKeyPlace | NotUsed::Unsupported)) => {
                tracing::info!(
                    "precompiled-plugin cache not used, every plugin is compiled: {reason}"
                );
                Self::disabled()
            }
            Err(reason) => {
                tracing::warn!(
                    "precompiled-plugin cache not used, every plugin is compiled: {reason}"
                );
                Self::disabled()
            }
        }
    }

    fn try_open(dir: Option<&Path>, key_file: Option<&Path>) -> Result<Open, NotUsed> {
        let dir = dir.ok_or(NotUsed::NoFolder)?;
        let key_file = key_file.ok_or(NotUsed::NoKeyPlace)?;
        let folder = folder::Folder::open_private(dir)?;
        let key = load_or_make_key(key_file, &folder)?;
        Ok(Open { folder, key })
    }

    /// The cache folder, when there is a cache.
    pub fn dir(&self) -> Option<&Path> {
        self.open.as_deref().map(|open| open.folder.path())
    }

    fn entry_name(engine: &Engine, wasm_sha256: &str) -> String {
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = hex::encode(hasher.0.finalize());
        format!("{wasm_sha256}-{}.cwasm", &engine_hash[..16])
    }

    /// The component for `wasm`, from the cache when an authenticated entry exists, else
    /// compiled (and stored).
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        label: &str,
        wasm: &[u8],
        wasm_sha256: &str,
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let name = Self::entry_name(engine, wasm_sha256);
        let open = self.open.as_deref();
        if let Some(component) = open.and_then(|open| open.read(engine, label, &name)) {
            return Ok((component, CacheOutcome::Loaded));
        }
        let started = Instant::now();
        let component = Component::new(engine, wasm)?;
        let millis = started.elapsed().as_millis();
        match open {
            Some(open) => {
                let path = open.folder.path().join(&name);
                match open.write(&component, &name) {
                    Ok(()) => tracing::info!(
                        "plugin {label}: compiled in {millis} ms, cached as {}",
                        path.display()
                    ),
                    Err(e) => tracing::warn!(
                        "plugin {label}: compiled in {millis} ms; could not cache it as {}: {e}",
                        path.display()
                    ),
                }
            }
            None => tracing::info!("plugin {label}: compiled in {millis} ms (no cache)"),
        }
        Ok((component, CacheOutcome::Compiled { millis }))
    }
}

impl Open {
    fn read(&self, engine: &Engine, label: &str, name: &str) -> Option<Component> {
        let path = self.folder.path().join(name);
        let cannot_read = |e: std::io::Error| {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(
                    "plugin {label}: cache entry {} cannot be read ({e}); recompiling",
                    path.display()
                );
            }
        };
        let file = match self.folder.open(name) {
            Ok(file) => file,
            Err(e) => {
                cannot_read(e);
                return None;
            }
        };
        let tag = self
            .folder
            .read(&format!("{name}{MAC_SUFFIX}"), Some(1024))
            .ok()
            .and_then(|tag| String::from_utf8(tag).ok());
        let Some(tag) = tag else {
            tracing::info!(
                "plugin {label}: cache entry {} has no MAC; recompiling",
                path.display()
            );
            return None;
        };
        let not_authenticated = || {
            tracing::warn!(
                "plugin {label}: cache entry {} is not authenticated by this installation's key \
                 (changed, or not written here); recompiling",
                path.display()
            );
        };
        // Mapped: the artifact's bytes are hashed as they are read, through a small buffer, and
        // wasmtime then maps the same open file. Only for a file no one but this user can write
        // (see the module's table); and if mapping fails, the copy below is tried.
        let mapped = match folder::only_this_user_can_write(&file) {
            true => {
                let mut mac = self.key.mac(name, &[]);
                if let Err(e) = folder::each_piece(&file, |piece| mac.update(piece)) {
                    cannot_read(e);
                    return None;
                }
                if !tag_matches(mac, &tag) {
                    not_authenticated();
                    return None;
                }
                // SAFETY: as for the copy below: the bytes just hashed carry this
                // installation's MAC over this entry's name, so they are what `write` stored for
                // a component this host compiled. wasmtime maps the same file (the open file,
                // reached again through the process's own descriptor, not by its path), which
                // only this user (or root) may write: anyone who could change it after the check
                // could also read the key and forge the MAC. Entries are never rewritten in
                // place (`write` renames a new file over them), so this host doesn't either.
                #[allow(unsafe_code)]
                let component =
                    unsafe { Component::deserialize_file(engine, folder::reopen_path(&file)) };
                component
                    .inspect_err(|e| {
                        tracing::debug!(
                            "plugin {label}: cache entry {} could not be mapped ({e:#}); \
                             copying it instead",
                            path.display()
                        );
                    })
                    .ok()
            }
            false => None,
        };
        let component = match mapped {
            Some(component) => Ok(component),
            None => {
                let bytes = match self.folder.read(name, None) {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        cannot_read(e);
                        return None;
                    }
                };
                if !tag_matches(self.key.mac(name, &bytes), &tag) {
                    not_authenticated();
                    return None;
                }
                // SAFETY: wasmtime requires that deserialized bytes come from
                // `Component::serialize` of a trusted engine. These do: their MAC, just
                // verified, was made with this installation's key (kept outside the cache
                // folder, readable only by this user) over this entry's name and bytes, and only
                // `write` below makes such MACs, over what `Component::serialize` returned for a
                // component this host compiled. The name carries the component's sha256 and the
                // engine's compatibility hash, so these bytes are this plugin's, compiled for an
                // engine like this one. They are a copy in this process's memory: nothing can
                // change them between the check and the use.
                #[allow(unsafe_code)]
                let component = unsafe { Component::deserialize(engine, &bytes) };
                component
            }
        };
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

    fn write(&self, component: &Component, name: &str) -> std::io::Result<()> {
        let bytes = component.serialize().map_err(std::io::Error::other)?;
        let tag = self.key.tag_hex(name, &bytes);
        let mac_name = format!("{name}{MAC_SUFFIX}");
        let artifact = self.folder.create_new_temp(name)?;
        let mut temps = vec![artifact.0.clone()];
        let written = self.folder.create_new_temp(&mac_name).and_then(|mac| {
            temps.push(mac.0.clone());
            write_all(&artifact, &bytes)?;
            write_all(&mac, tag.as_bytes())?;
            // The MAC first: until the artifact lands, an old artifact meets a new MAC and is
            // recompiled; never the other way round with a MAC that fits other bytes.
            self.folder.rename(&mac.0, &mac_name)?;
            self.folder.rename(&artifact.0, name)
        });
        if written.is_err() {
            for temp in &temps {
                self.folder.remove(temp);
            }
        }
        written
    }
}

fn write_all((_, file): &(String, std::fs::File), bytes: &[u8]) -> std::io::Result<()> {
    let mut file = file;
    file.write_all(bytes)?;
    file.flush()
}

/// The key in `key_file`, made (32 random bytes, hex, 0600) if there is none yet. Its folder must
/// be private and must not be the cache folder.
fn load_or_make_key(key_file: &Path, cache: &folder::Folder) -> Result<Key, NotUsed> {
    let key_dir = key_file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = key_file
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| NotUsed::BadKey {
            path: key_file.to_path_buf(),
        })?;
    let folder = folder::Folder::open_private(key_dir)?;
    if folder.same_as(cache) {
        return Err(NotUsed::KeyInCacheFolder {
            path: key_file.to_path_buf(),
        });
    }
    let text = match folder.read_private(file_name, 1024) {
        Ok(text) => text,
        Err(NotUsed::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| NotUsed::Io {
                path: key_file.to_path_buf(),
                source: std::io::Error::other(e),
            })?;
            let made = hex::encode(key);
            // Into a temp file, then linked into place: two first runs at once end with one
            // key, never a half-written one.
            let temp = folder
                .create_new_temp(file_name)
                .map_err(NotUsed::io(key_file))?;
            let linked = write_all(&temp, format!("{made}\n").as_bytes())
                .and_then(|()| folder.link_new(&temp.0, file_name));
            folder.remove(&temp.0);
            match linked {
                Ok(()) => tracing::info!("made the cache key {}", key_file.display()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(NotUsed::io(key_file)(e)),
            }
            folder.read_private(file_name, 1024)?
        }
        Err(e) => return Err(e),
    };
    let bytes = std::str::from_utf8(&text)
        .ok()
        .and_then(|t| hex::decode(t.trim()).ok())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| NotUsed::BadKey {
            path: key_file.to_path_buf(),
        })?;
    Ok(Key(bytes))
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

/// The default cache key file: `$SCAN2X_MAIL_CACHE_KEY_FILE`, else
/// `$XDG_CONFIG_HOME/scan2x-mail/cache.key`, else `~/.config/scan2x-mail/cache.key`.
pub fn default_key_file() -> Option<PathBuf> {
    if let Some(file) = std::env::var_os(KEY_FILE_ENV).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(file));
    }
    let config = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(xdg) => PathBuf::from(xdg),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".config"),
    };
    Some(config.join("scan2x-mail").join("cache.key"))
}

/// A folder only this user can write, and the files in it, always reached relative to the folder
/// as it was opened and checked — so swapping the path for another folder afterwards changes
/// nothing.
#[cfg(unix)]
mod folder {
    use std::fs::File;
    use std::io::Read as _;
    use std::os::unix::fs::MetadataExt as _;
    use std::path::{Path, PathBuf};

    use rustix::fs::{AtFlags, CWD, Mode, OFlags};

    use super::NotUsed;

    #[derive(Debug)]
    pub struct Folder {
        dir: File,
        path: PathBuf,
    }

    impl Folder {
        /// Opens `path` (made 0700 if missing), following a symlink to it, and checks the folder
        /// opened: this user owns it, and neither group nor others may write it.
        ///
        /// A symlinked folder is allowed (a cache moved to another disk is one) because what
        /// matters is the folder actually used, and that is what is checked: through the open
        /// handle, with no window for the path to change between the check and the use.
        pub fn open_private(path: &Path) -> Result<Folder, NotUsed> {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(NotUsed::io(path))?;
            let fd = rustix::fs::openat(
                CWD,
                path,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| NotUsed::io(path)(e.into()))?;
            let dir = File::from(fd);
            let meta = dir.metadata().map_err(NotUsed::io(path))?;
            if !meta.is_dir() {
                return Err(NotUsed::NotAFolder {
                    path: path.to_path_buf(),
                });
            }
            check_owner(path, &meta)?;
            if meta.mode() & 0o022 != 0 {
                return Err(NotUsed::OthersCanWrite {
                    path: path.to_path_buf(),
                    mode: meta.mode() & 0o7777,
                });
            }
            Ok(Folder {
                dir,
                path: path.to_path_buf(),
            })
        }

        pub fn path(&self) -> &Path {
            &self.path
        }

        pub fn same_as(&self, other: &Folder) -> bool {
            match (self.dir.metadata(), other.dir.metadata()) {
                (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
                _ => true,
            }
        }

        /// File `name`, opened for reading (never through a symlink).
        pub fn open(&self, name: &str) -> std::io::Result<File> {
            self.open_file(name)
        }

        fn open_file(&self, name: &str) -> std::io::Result<File> {
            let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            Ok(File::from(rustix::fs::openat(
                &self.dir,
                name,
                flags,
                Mode::empty(),
            )?))
        }

        /// The bytes of file `name` (never through a symlink), at most `limit` of them.
        pub fn read(&self, name: &str, limit: Option<u64>) -> std::io::Result<Vec<u8>> {
            let file = self.open_file(name)?;
            let mut bytes = Vec::new();
            match limit {
                Some(limit) => file.take(limit).read_to_end(&mut bytes)?,
                None => (&file).read_to_end(&mut bytes)?,
            };
            Ok(bytes)
        }

        /// The bytes of file `name`, if it is a regular file this user owns that no one else may
        /// read or write.
        pub fn read_private(&self, name: &str, limit: u64) -> Result<Vec<u8>, NotUsed> {
            let path = self.path.join(name);
            let file = self.open_file(name).map_err(NotUsed::io(&path))?;
            let meta = file.metadata().map_err(NotUsed::io(&path))?;
            if !meta.is_file() {
                return Err(NotUsed::BadKey { path });
            }
            check_owner(&path, &meta)?;
            if meta.mode() & 0o077 != 0 {
                return Err(NotUsed::KeyExposed {
                    path,
                    mode: meta.mode() & 0o7777,
                });
            }
            let mut bytes = Vec::new();
            file.take(limit)
                .read_to_end(&mut bytes)
                .map_err(NotUsed::io(&path))?;
            Ok(bytes)
        }

        /// A new, empty file (0600) for what will become `name`: created exclusively under an
        /// unpredictable name, so it is never an existing file or a symlink someone planted.
        pub fn create_new_temp(&self, name: &str) -> std::io::Result<(String, File)> {
            let mut random = [0u8; 8];
            getrandom::fill(&mut random).map_err(std::io::Error::other)?;
            let temp = format!(".{name}.{}.tmp", hex::encode(random));
            let file = self.create_new(&temp)?;
            Ok((temp, file))
        }

        /// Creates file `name` (0600) that must not exist yet: `O_CREAT|O_EXCL|O_NOFOLLOW`, so
        /// an existing file or symlink at `name` is an error, never opened.
        pub fn create_new(&self, name: &str) -> std::io::Result<File> {
            let flags =
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            Ok(File::from(rustix::fs::openat(
                &self.dir,
                name,
                flags,
                Mode::from_raw_mode(0o600),
            )?))
        }

        /// Renames `from` to `to` in this folder; a symlink at `to` is replaced, not followed.
        pub fn rename(&self, from: &str, to: &str) -> std::io::Result<()> {
            Ok(rustix::fs::renameat(&self.dir, from, &self.dir, to)?)
        }

        /// Links `from` as `to`, failing with `AlreadyExists` if `to` exists.
        pub fn link_new(&self, from: &str, to: &str) -> std::io::Result<()> {
            Ok(rustix::fs::linkat(
                &self.dir,
                from,
                &self.dir,
                to,
                AtFlags::empty(),
            )?)
        }

        /// Removes file `name` from this folder, if it is there.
        pub fn remove(&self, name: &str) {
            let _ = rustix::fs::unlinkat(&self.dir, name, AtFlags::empty());
        }
    }

    /// Whether `file` is a regular file this user owns that neither group nor others may write:
    /// then only this user (or root) can change its bytes.
    pub fn only_this_user_can_write(file: &File) -> bool {
        file.metadata().is_ok_and(|meta| {
            meta.is_file()
                && meta.uid() == rustix::process::geteuid().as_raw()
                && meta.mode() & 0o022 == 0
        })
    }

    /// `file`'s bytes from its start, handed to `each` a piece at a time (a piece small enough to
    /// be in the CPU's cache still when `each` reads it).
    pub fn each_piece(file: &File, mut each: impl FnMut(&[u8])) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt as _;
        let mut piece = vec![0u8; 128 << 10];
        let mut at = 0;
        loop {
            match file.read_at(&mut piece, at) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    each(&piece[..n]);
                    at += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// A path that opens `file` itself again (the open file, not whatever its name now is):
    /// the process's own descriptor for it.
    pub fn reopen_path(file: &File) -> PathBuf {
        use std::os::fd::AsRawFd as _;
        let fd = file.as_raw_fd();
        if cfg!(target_os = "linux") {
            PathBuf::from(format!("/proc/self/fd/{fd}"))
        } else {
            PathBuf::from(format!("/dev/fd/{fd}"))
        }
    }

    fn check_owner(path: &Path, meta: &std::fs::Metadata) -> Result<(), NotUsed> {
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(NotUsed::NotOwned {
                path: path.to_path_buf(),
                owner: meta.uid(),
                me,
            });
        }
        Ok(())
    }
}

/// No folder can be opened here: see [`ArtifactCache::open`] for why there is no cache.
#[cfg(not(unix))]
mod folder {
    use std::path::Path;

    use super::NotUsed;

    #[derive(Debug)]
    pub enum Folder {}

    pub fn only_this_user_can_write(_: &std::fs::File) -> bool {
        false
    }

    pub fn each_piece(_: &std::fs::File, _: impl FnMut(&[u8])) -> std::io::Result<()> {
        Err(std::io::ErrorKind::Unsupported.into())
    }

    pub fn reopen_path(_: &std::fs::File) -> std::path::PathBuf {
        std::path::PathBuf::new()
    }

    impl Folder {
        pub fn open_private(_: &Path) -> Result<Folder, NotUsed> {
            Err(NotUsed::Unsupported)
        }
        pub fn path(&self) -> &Path {
            match *self {}
        }
        pub fn same_as(&self, _: &Folder) -> bool {
            match *self {}
        }
        pub fn read(&self, _: &str, _: Option<u64>) -> std::io::Result<Vec<u8>> {
            match *self {}
        }
        pub fn open(&self, _: &str) -> std::io::Result<std::fs::File> {
            match *self {}
        }
        pub fn read_private(&self, _: &str, _: u64) -> Result<Vec<u8>, NotUsed> {
            match *self {}
        }
        pub fn create_new_temp(&self, _: &str) -> std::io::Result<(String, std::fs::File)> {
            match *self {}
        }
        pub fn rename(&self, _: &str, _: &str) -> std::io::Result<()> {
            match *self {}
        }
        pub fn link_new(&self, _: &str, _: &str) -> std::io::Result<()> {
            match *self {}
        }
        pub fn remove(&self, _: &str) {
            match *self {}
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::fs;
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _, symlink};

    use super::*;

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn private_dir(parent: &Path, name: &str) -> PathBuf {
        let dir = parent.join(name);
        fs::create_dir(&dir).unwrap();
        chmod(&dir, 0o700);
        dir
    }

    #[test]
    fn an_entry_authenticates_only_with_its_own_name_bytes_and_key() {
        let key = Key([7; 32]);
        let tag = key.tag_hex("a.cwasm", b"artifact");
        assert!(key.verifies("a.cwasm", b"artifact", &tag));
        assert!(key.verifies("a.cwasm", b"artifact", &format!("{tag}\n")));
        assert!(
            !key.verifies("b.cwasm", b"artifact", &tag),
            "another entry's name"
        );
        assert!(!key.verifies("a.cwasm", b"artifacT", &tag), "other bytes");
        assert!(
            !Key([8; 32]).verifies("a.cwasm", b"artifact", &tag),
            "another key"
        );
        assert!(
            !key.verifies("a.cwasm", b"artifact", &sha256_hex(b"artifact")),
            "a plain checksum is not a MAC"
        );
        assert!(!key.verifies("a.cwasm", b"artifact", ""), "no MAC");
        assert!(
            !key.verifies("a.cwasm", b"artifact", &tag[..32]),
            "a cut MAC"
        );
    }

    #[test]
    fn a_folder_group_or_others_can_write_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = private_dir(root.path(), "cache");
        for mode in [0o700, 0o750, 0o755, 0o500] {
            chmod(&dir, mode);
            assert!(folder::Folder::open_private(&dir).is_ok(), "{mode:o}");
        }
        for mode in [0o777, 0o1777, 0o720, 0o702, 0o770] {
            chmod(&dir, mode);
            let refused = folder::Folder::open_private(&dir);
            assert!(
                matches!(refused, Err(NotUsed::OthersCanWrite { mode: m, .. }) if m == mode),
                "{mode:o}: {refused:?}"
            );
        }
    }

    #[test]
    fn a_missing_folder_is_made_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a").join("cache");
        folder::Folder::open_private(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn a_symlinked_folder_is_judged_by_the_folder_it_leads_to() {
        let root = tempfile::tempdir().unwrap();
        let shared = private_dir(root.path(), "shared");
        chmod(&shared, 0o777);
        let link = root.path().join("cache");
        symlink(&shared, &link).unwrap();
        assert!(matches!(
            folder::Folder::open_private(&link),
            Err(NotUsed::OthersCanWrite { .. })
        ));
        chmod(&shared, 0o700);
        assert!(folder::Folder::open_private(&link).is_ok());
    }

    #[test]
    fn a_folder_owned_by_another_user_is_refused() {
        if rustix::process::geteuid().as_raw() != 0 {
            assert!(std::env::var_os("CI").is_none(), "needs root under CI");
            eprintln!(
                "\n==========\nSKIPPED: a_folder_owned_by_another_user_is_refused: needs root, \
                 to give a folder to another user\n==========\n"
            );
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let dir = private_dir(root.path(), "cache");
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
        let refused = folder::Folder::open_private(&dir);
        assert!(
            matches!(
                refused,
                Err(NotUsed::NotOwned {
                    owner: 65534,
                    me: 0,
                    ..
                })
            ),
            "{refused:?}"
        );
    }

    #[test]
    fn a_new_file_is_never_created_through_a_symlink_or_over_a_file() {
        let root = tempfile::tempdir().unwrap();
        let dir = private_dir(root.path(), "cache");
        let victim = root.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        symlink(&victim, dir.join("planted")).unwrap();
        symlink(root.path().join("nowhere"), dir.join("dangling")).unwrap();
        fs::write(dir.join("existing"), "old").unwrap();
        let folder = folder::Folder::open_private(&dir).unwrap();

        for name in ["planted", "dangling", "existing"] {
            let refused = folder.create_new(name);
            assert_eq!(
                refused.map(drop).unwrap_err().kind(),
                std::io::ErrorKind::AlreadyExists,
                "{name}"
            );
        }
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert!(!root.path().join("nowhere").exists());
        assert_eq!(fs::read_to_string(dir.join("existing")).unwrap(), "old");
        assert!(
            folder.read("planted", None).is_err(),
            "a read never follows a symlink either"
        );
    }

    #[test]
    fn an_entry_only_this_user_can_write_is_mapped_another_copied_and_a_changed_one_recompiled() {
        let root = tempfile::tempdir().unwrap();
        let dir = private_dir(root.path(), "cache");
        let keys = private_dir(root.path(), "keys");
        let cache = ArtifactCache::open(Some(&dir), Some(&keys.join("cache.key")));
        let engine = Engine::default();
        let (_, wasm) = crate::runtime::builtin::BUILTIN_PLUGINS
            .iter()
            .min_by_key(|(_, bytes)| bytes.len())
            .unwrap();
        let sha = sha256_hex(wasm);
        let entry = dir.join(ArtifactCache::entry_name(&engine, &sha));
        let load = || cache.load_or_compile(&engine, "test", wasm, &sha).unwrap();
        // Whether the component's code is a mapping of the entry's file, while it is alive.
        let mapped = || {
            let maps = fs::read_to_string("/proc/self/maps").unwrap();
            maps.lines().any(|l| l.ends_with(&*entry.to_string_lossy()))
        };

        assert!(matches!(load().1, CacheOutcome::Compiled { .. }));
        let (component, outcome) = load();
        assert_eq!(outcome, CacheOutcome::Loaded);
        if cfg!(target_os = "linux") {
            assert!(mapped(), "an entry only this user can write is mapped");
        }
        drop(component);

        chmod(&entry, 0o620);
        let (component, outcome) = load();
        assert_eq!(
            outcome,
            CacheOutcome::Loaded,
            "a group-writable entry is copied"
        );
        if cfg!(target_os = "linux") {
            assert!(
                !mapped(),
                "… and never mapped: its group could change it after the check"
            );
        }
        drop(component);

        for mode in [0o600, 0o620] {
            let mut bytes = fs::read(&entry).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 1;
            fs::write(&entry, &bytes).unwrap();
            chmod(&entry, mode);
            assert!(
                matches!(load().1, CacheOutcome::Compiled { .. }),
                "a changed entry (mode {mode:o}) is recompiled, mapped or not"
            );
            assert_eq!(load().1, CacheOutcome::Loaded, "and its new entry is used");
        }
    }

    #[test]
    fn temp_files_are_private_and_their_names_unpredictable() {
        let root = tempfile::tempdir().unwrap();
        let dir = private_dir(root.path(), "cache");
        let folder = folder::Folder::open_private(&dir).unwrap();
        let (a, _) = folder.create_new_temp("x.cwasm").unwrap();
        let (b, _) = folder.create_new_temp("x.cwasm").unwrap();
        assert_ne!(a, b);
        assert!(
            a.starts_with(".x.cwasm.") && a.len() >= ".x.cwasm.".len() + 16,
            "{a}"
        );
        assert_eq!(fs::metadata(dir.join(&a)).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn the_key_is_made_once_private_and_kept() {
        let root = tempfile::tempdir().unwrap();
        let cache = folder::Folder::open_private(&root.path().join("cache")).unwrap();
        let key_file = root.path().join("config").join("cache.key");
        let made = load_or_make_key(&key_file, &cache).unwrap();
        assert_eq!(fs::metadata(&key_file).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(key_file.parent().unwrap()).unwrap().mode() & 0o777,
            0o700
        );
        let again = load_or_make_key(&key_file, &cache).unwrap();
        assert_eq!(made.0, again.0);
        let other_root = tempfile::tempdir().unwrap();
        let other = load_or_make_key(&other_root.path().join("cache.key"), &cache).unwrap();
        assert_ne!(made.0, other.0, "each installation makes its own key");
        let names: Vec<_> = fs::read_dir(key_file.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["cache.key"], "no temp file is left");
    }

    #[test]
    fn a_key_others_can_read_or_in_the_cache_folder_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let cache_dir = root.path().join("cache");
        let cache = folder::Folder::open_private(&cache_dir).unwrap();
        let key_file = root.path().join("config").join("cache.key");
        load_or_make_key(&key_file, &cache).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            chmod(&key_file, mode);
            let refused = load_or_make_key(&key_file, &cache);
            assert!(
                matches!(refused, Err(NotUsed::KeyExposed { .. })),
                "{mode:o}: {refused:?}"
            );
        }
        chmod(&key_file, 0o600);
        chmod(key_file.parent().unwrap(), 0o777);
        assert!(matches!(
            load_or_make_key(&key_file, &cache),
            Err(NotUsed::OthersCanWrite { .. })
        ));
        let refused = load_or_make_key(&cache_dir.join("cache.key"), &cache);
        assert!(
            matches!(refused, Err(NotUsed::KeyInCacheFolder { .. })),
            "{refused:?}"
        );
        let link = root.path().join("linked.key");
        chmod(key_file.parent().unwrap(), 0o700);
        symlink(&key_file, &link).unwrap();
        assert!(
            load_or_make_key(&link, &cache).is_err(),
            "a symlinked key file is not followed"
        );
    }

    #[test]
    fn no_safe_place_means_no_cache() {
        let root = tempfile::tempdir().unwrap();
        let shared = root.path().join("shared");
        fs::create_dir(&shared).unwrap();
        chmod(&shared, 0o777);
        let key = root.path().join("key").join("cache.key");
        assert!(
            ArtifactCache::open(Some(&shared), Some(&key))
                .dir()
                .is_none()
        );
        assert!(ArtifactCache::open(None, Some(&key)).dir().is_none());
        let cache = root.path().join("cache");
        assert!(ArtifactCache::open(Some(&cache), None).dir().is_none());
        assert_eq!(
            ArtifactCache::open(Some(&cache), Some(&key)).dir(),
            Some(cache.as_path())
        );
        assert!(
            fs::read_dir(&shared).unwrap().next().is_none(),
            "nothing written"
        );
    }
}
