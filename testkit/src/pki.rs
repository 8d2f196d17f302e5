//! A throwaway PKI for the TLS tests (syslog over TLS, the tenant HTTP
//! client's private CA and client certificates).

use std::path::PathBuf;

/// PEM files of a test PKI: a CA, a server certificate for `localhost` and
/// `127.0.0.1`, a client certificate, and an unrelated CA.
pub struct Certs {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The server certificate, signed by the CA.
    pub server_cert: PathBuf,
    /// The server's private key.
    pub server_key: PathBuf,
    /// The client certificate, signed by the CA.
    pub client_cert: PathBuf,
    /// The client's private key.
    pub client_key: PathBuf,
    /// A CA that signed none of these.
    pub other_ca: PathBuf,
}

/// Writes a fresh test PKI into `dir`.
pub fn make_certs(dir: &std::path::Path) -> Certs {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_params = |cn: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.distinguished_name.push(DnType::CommonName, cn);
        p
    };
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params("auditfwd test CA").self_signed(&ca_key).unwrap();
    let ca_pem = ca_cert.pem();
    let issuer = Issuer::new(ca_params("auditfwd test CA"), ca_key);
    let leaf = |sans: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![usage];
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let cert = p.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_pem, server_key) = leaf(
        vec!["localhost".into(), "127.0.0.1".into()],
        "localhost",
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_pem, client_key) = leaf(
        vec!["auditfwd-client".into()],
        "auditfwd-client",
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let other_key = KeyPair::generate().unwrap();
    let other = ca_params("some other CA").self_signed(&other_key).unwrap();
    Certs {
        ca: write("ca.pem", ca_pem),
        server_cert: write("server.pem", server_pem),
        server_key: write("server.key", server_key),
        client_cert: write("client.pem", client_pem),
        client_key: write("client.key", client_key),
        other_ca: write("other-ca.pem", other.pem()),
    }
}
