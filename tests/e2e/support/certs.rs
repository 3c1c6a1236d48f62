//! Throw-away TLS certificates for loopback servers: a test CA and a leaf for `localhost` and
//! 127.0.0.1 signed by it, written as PEM files into their own temporary directory.
//!
//! Why two certificates and not one self-signed: rustls refuses a CA certificate presented as
//! the server's own (`CaUsedAsEndEntity`), and trusting only a leaf fails with `UnknownIssuer`.
//! Clients trust `ca.pem`; the server presents `cert.pem` + `key.pem`.
//!
//! [`Certs::generate_with`] makes the leaves a client must refuse although the CA is trusted
//! ([`Leaf::WrongName`], [`Leaf::Expired`]). Every `Certs` has its own CA with its own key, and
//! every CA has the same name ("scan2x-mail test CA"): one `Certs`' `ca.pem` is a CA that did not
//! sign another's leaf, though its subject is the leaf's issuer, so trusting it proves nothing.
//!
//! These certificates must never be trusted outside a test: the keys live in a temp directory.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;

/// The only name a [`Leaf::WrongName`] certificate is valid for.
pub const WRONG_NAME: &str = "wrong.example";

/// The server certificate a [`Certs`] holds, always signed by its CA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leaf {
    /// For `localhost` and 127.0.0.1, valid now: what [`Certs::generate`] makes.
    Good,
    /// Valid now, but only for [`WRONG_NAME`] (subjectAltName and CN): not for `localhost`,
    /// not for 127.0.0.1.
    WrongName,
    /// For `localhost` and 127.0.0.1, but valid only from 2020-01-01 to 2021-01-01.
    Expired,
}

pub struct Certs {
    dir: TempDir,
}

impl Certs {
    /// Generate a CA and a server leaf; the files live until this value is dropped.
    pub fn generate() -> Certs {
        Self::generate_with(Leaf::Good)
    }

    /// Generate a CA of its own and a server leaf of the kind `leaf` signed by it; the files
    /// live until this value is dropped.
    pub fn generate_with(leaf: Leaf) -> Certs {
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

        let names = match leaf {
            Leaf::Good | Leaf::Expired => vec!["localhost".to_string(), "127.0.0.1".to_string()],
            Leaf::WrongName => vec![WRONG_NAME.to_string()],
        };
        let common_name = match leaf {
            Leaf::Good | Leaf::Expired => "localhost",
            Leaf::WrongName => WRONG_NAME,
        };
        let mut leaf_params = CertificateParams::new(names).unwrap();
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        leaf_params.is_ca = IsCa::ExplicitNoCa;
        leaf_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf_params.use_authority_key_identifier_extension = true;
        if leaf == Leaf::Expired {
            leaf_params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            leaf_params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
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

    /// The server's leaf certificate (CA:FALSE, serverAuth; for localhost + 127.0.0.1 unless
    /// made with [`Leaf::WrongName`]).
    pub fn cert(&self) -> PathBuf {
        self.dir().join("cert.pem")
    }

    /// The server's private key.
    pub fn key(&self) -> PathBuf {
        self.dir().join("key.pem")
    }
}
