//! Trust for every TLS connection the capabilities make: the system's roots, read once per
//! process (rustls-native-certs honours `SSL_CERT_FILE`), plus a sender's `ca_file`.
//! Certificates are always verified; nothing here can turn that off.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

/// The system's root certificates as trust anchors, read and parsed once per process: reading
/// them costs milliseconds (several on a machine whose `SSL_CERT_DIR` holds a file per root),
/// and every connection of every sender needs them. Each [`client_config`] starts from a copy.
fn system_store() -> &'static rustls::RootCertStore {
    if let Some(store) = SYSTEM_STORE.get() {
        return store;
    }
    if PREFETCH.started.load(Ordering::Acquire) {
        // Most of the reading is done by now, unless the machine is busy: then the prefetch,
        // at the lowest priority, may hardly be running, and this connection reads the roots
        // itself rather than wait on it any longer.
        let done = PREFETCH.done.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = PREFETCH
            .ready
            .wait_timeout_while(done, PREFETCH_PATIENCE, |done| !*done);
    }
    SYSTEM_STORE.get_or_init(read_system_store)
}

static SYSTEM_STORE: OnceLock<rustls::RootCertStore> = OnceLock::new();

/// The system's roots (rustls-native-certs: `SSL_CERT_FILE`, `SSL_CERT_DIR`, else the
/// platform's store). A system certificate that doesn't parse is skipped, not a failure of every
/// connection.
fn read_system_store() -> rustls::RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!("system root certificates: {e}");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (_added, _ignored) = roots.add_parsable_certificates(found.certs);
    roots
}

/// The roots being read ahead of the first connection ([`prefetch_system_roots`]).
struct Prefetch {
    started: AtomicBool,
    done: Mutex<bool>,
    ready: Condvar,
}

static PREFETCH: Prefetch = Prefetch {
    started: AtomicBool::new(false),
    done: Mutex::new(false),
    ready: Condvar::new(),
};

/// How long a connection waits for the prefetch to finish before it reads the roots itself.
/// Reading them takes ≈4 ms on an idle machine and the prefetch starts about that much before
/// a send's first connection, so on an idle machine the wait is short or none.
const PREFETCH_PATIENCE: Duration = Duration::from_millis(3);

/// Starts reading the system's roots on a thread of its own, once per process, so that a
/// sender's first TLS connection finds them ready or nearly: a command that sends calls this
/// before it loads its plugins, which takes about as long (`cargo xtask bench`, part 5).
/// Speculative, since a plaintext relay never needs them, so it yields to everything else: on
/// Linux the thread runs at the lowest priority, and a connection waits for it at most
/// [`PREFETCH_PATIENCE`]. What is trusted and verified is the same either way.
pub fn prefetch_system_roots() {
    if PREFETCH.started.swap(true, Ordering::AcqRel) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("scan2x-mail-roots".into())
        .spawn(|| {
            // On Linux the nice value is the calling thread's alone.
            #[cfg(target_os = "linux")]
            let _ = rustix::process::setpriority_process(None, 19);
            if SYSTEM_STORE.get().is_none() {
                // Taken by a connection that stopped waiting, if it got there first.
                let _ = SYSTEM_STORE.set(read_system_store());
            }
            *PREFETCH.done.lock().unwrap_or_else(PoisonError::into_inner) = true;
            PREFETCH.ready.notify_all();
        });
    if let Err(e) = spawned {
        tracing::debug!("system root certificates are read when first needed: {e}");
        *PREFETCH.done.lock().unwrap_or_else(PoisonError::into_inner) = true;
    }
}

/// A rustls client configuration (ring, safe default versions) trusting the system's roots and
/// the certificates of `ca_pem`. Errors name `ca_file`.
pub fn client_config(ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, String> {
    let mut roots = system_store().clone();
    if let Some(pem) = ca_pem {
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("ca_file is not a PEM certificate: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("ca_file holds an unusable certificate: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The name a server's certificate must match: the host as the gate read it (`[::1]` → `::1`,
/// `2130706433` → `127.0.0.1`), so a numeric spelling is verified as the address connected to.
pub fn server_name(host: &str) -> String {
    crate::gate::Host::parse(host).map_or_else(|_| host.to_string(), |h| h.server_name())
}
