//! Trust for every TLS connection the capabilities make: the system's roots, read once per
//! process (rustls-native-certs honours `SSL_CERT_FILE`), plus a sender's `ca_file`.
//! Certificates are always verified; nothing here can turn that off.

use std::sync::{Arc, OnceLock};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

/// The system's root certificates, read and parsed once: reading them costs milliseconds, and
/// every connection of every sender needs them.
pub fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::debug!("system root certificates: {e}");
        }
        found.certs
    })
}

/// A rustls client configuration (ring, safe default versions) trusting the system's roots and
/// the certificates of `ca_pem`. Errors name `ca_file`.
pub fn client_config(ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    // A system certificate that doesn't parse is skipped, not a failure of every connection.
    let (_added, _ignored) = roots.add_parsable_certificates(system_roots().iter().cloned());
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
