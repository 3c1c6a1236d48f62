//! Throw-away TLS certificates for loopback servers: a test CA and a leaf for `localhost` and
//! 127.0.0.1 signed by it, written as PEM files into their own temporary directory.
//!
//! Why two certificates and not one self-signed: rustls refuses a CA certificate presented as
//! the server's own (`CaUsedAsEndEntity`), and trusting only a leaf fails with `UnknownIssuer`.
//! Clients trust `ca.pem`; the server presents `cert.pem` + `key.pem`.
//!
//! These certificates must never be trusted outside a test: the keys live in a temp directory.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;

pub struct Certs {
    dir: TempDir,
}

impl Certs {
    /// Generate a CA and a server leaf; the files live until this value is dropped.
    pub fn generate() -> Certs {
        let dir = tempfile::Builder::new()
            .prefix("scan2x-certs-")
            .tempdir()
            .expect("create a temp dir for certificates");

        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "scan2x-mail test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().expect("generate the CA key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign the CA");
        let issuer = Issuer::new(ca_params, ca_key);

        let mut leaf_params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf_params.is_ca = IsCa::ExplicitNoCa;
        leaf_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf_params.use_authority_key_identifier_extension = true;
        let leaf_key = KeyPair::generate().expect("generate the server key");
        let leaf_cert = leaf_params
            .signed_by(&leaf_key, &issuer)
            .expect("sign the server certificate");

        let certs = Certs { dir };
        fs::write(certs.ca(), ca_cert.pem()).unwrap();
        fs::write(certs.cert(), leaf_cert.pem()).unwrap();
        fs::write(certs.key(), leaf_key.serialize_pem()).unwrap();
        certs
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA clients should trust.
    pub fn ca(&self) -> PathBuf {
        self.dir().join("ca.pem")
    }

    /// The server's leaf certificate (CA:FALSE, serverAuth, localhost + 127.0.0.1).
    pub fn cert(&self) -> PathBuf {
        self.dir().join("cert.pem")
    }

    /// The server's private key.
    pub fn key(&self) -> PathBuf {
        self.dir().join("key.pem")
    }
}
