//! How a source reaches its tenant: `[source.tls]` (a private CA, a client
//! certificate) and `proxy`.
//!
//! The PEM files are read and checked here, at config time, so that a typo
//! in a path, a file that is not PEM or a key that belongs to another
//! certificate is reported with the other configuration problems instead of
//! as a handshake failure at the first poll. The validated types hold what
//! was read; building the client does not read the files again.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

/// `[source.tls]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    cert_file: Option<PathBuf>,
    #[serde(default)]
    key_file: Option<PathBuf>,
}

/// `[source.tls]`, validated: the files are read, parsed and consistent.
///
/// The server's certificate is verified against the bundled Mozilla roots,
/// the system trust store and `ca_file`.
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    /// The certificates of `ca_file`, trusted in addition to the bundled
    /// and system roots. Default: none.
    pub extra_roots: Vec<reqwest::Certificate>,
    /// The client certificate chain and key (`cert_file` + `key_file`),
    /// presented when the server asks for one (mutual TLS). Default: none.
    /// Its `Debug` prints no key material.
    pub identity: Option<reqwest::Identity>,
    /// A hash of the trusted CA certificates and the client certificate and
    /// key: sources with equal TLS settings share one HTTP client (and its
    /// connection pool). 0 without `[source.tls]`.
    pub fingerprint: u64,
}

impl RawTls {
    /// Reads and checks the files (relative to the config file); each
    /// problem is reported under `{path}.tls.*`.
    pub(crate) fn validate(
        self,
        base_dir: &Path,
        problem: &mut dyn FnMut(&str, String),
    ) -> Option<TlsConfig> {
        let mut ok = true;
        let mut extra_roots = Vec::new();
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        if let Some(file) = &self.ca_file {
            let file = base_dir.join(file);
            match read_certs(&file) {
                Ok(certs) => {
                    // A certificate a trust store can not take is rejected
                    // here rather than silently skipped by the client.
                    let mut store = rustls::RootCertStore::empty();
                    for (i, cert) in certs.iter().enumerate() {
                        if let Err(e) = store.add(cert.clone()) {
                            ok = false;
                            problem(
                                "tls.ca_file",
                                format!(
                                    "certificate #{} of {} is not a usable CA certificate ({e}); export the CA that signs the tenant's certificate as PEM",
                                    i + 1,
                                    file.display()
                                ),
                            );
                        }
                    }
                    for cert in &certs {
                        hasher.update(cert);
                    }
                    extra_roots.extend(
                        certs
                            .iter()
                            .filter_map(|c| reqwest::Certificate::from_der(c).ok()),
                    );
                }
                Err(e) => {
                    ok = false;
                    problem("tls.ca_file", e.message(&file, "CERTIFICATE"));
                }
            }
        }

        let identity = match (&self.cert_file, &self.key_file) {
            (None, None) => None,
            (Some(_), None) => {
                problem(
                    "tls.key_file",
                    "is missing; a client certificate (tls.cert_file) needs its private key in tls.key_file".into(),
                );
                return None;
            }
            (None, Some(_)) => {
                problem(
                    "tls.cert_file",
                    "is missing; a client key (tls.key_file) needs its certificate in tls.cert_file"
                        .into(),
                );
                return None;
            }
            (Some(cert_file), Some(key_file)) => {
                let cert_file = base_dir.join(cert_file);
                let key_file = base_dir.join(key_file);
                let cert_pem = read_pem(&cert_file)
                    .and_then(|bytes| parse_certs(&bytes).map(|chain| (bytes, chain)))
                    .map_err(|e| problem("tls.cert_file", e.message(&cert_file, "CERTIFICATE")))
                    .ok();
                let key_pem = read_pem(&key_file)
                    .and_then(|bytes| parse_key(&bytes).map(|key| (bytes, key)))
                    .map_err(|e| problem("tls.key_file", e.message(&key_file, "PRIVATE KEY")))
                    .ok();
                let (Some((cert_pem, chain)), Some((key_pem, key))) = (cert_pem, key_pem) else {
                    return None;
                };
                if !key_matches(chain, key, &cert_file, &key_file, problem) {
                    return None;
                }
                // reqwest takes the chain and the key as one PEM buffer.
                let mut pem = cert_pem;
                pem.push(b'\n');
                pem.extend_from_slice(&key_pem);
                hasher.update(b"identity");
                hasher.update(&pem);
                match reqwest::Identity::from_pem(&pem) {
                    Ok(identity) => Some(identity),
                    Err(_) => {
                        problem(
                            "tls.key_file",
                            format!(
                                "{} and {} can not be used as a client certificate; use PEM files with the certificate chain and a PKCS#8, PKCS#1 or SEC1 key",
                                cert_file.display(),
                                key_file.display()
                            ),
                        );
                        return None;
                    }
                }
            }
        };
        let fingerprint = if extra_roots.is_empty() && identity.is_none() {
            0
        } else {
            hasher.digest()
        };
        ok.then_some(TlsConfig {
            extra_roots,
            identity,
            fingerprint,
        })
    }
}

/// Why a PEM file could not be used. Never holds file contents: a key
/// file's bytes must not reach an error message.
enum PemFileError {
    Read(std::io::Error),
    NotPem,
    Empty,
}

impl PemFileError {
    fn message(&self, file: &Path, label: &str) -> String {
        match self {
            PemFileError::Read(e) => format!(
                "cannot read {} ({e}); check the path (relative paths start at the config file) and that auditfwd may read it",
                file.display()
            ),
            PemFileError::NotPem => format!(
                "{} is not a valid PEM file; it must hold `-----BEGIN {label}-----` blocks (convert DER with `openssl x509 -inform der` or `openssl pkey -inform der`)",
                file.display()
            ),
            PemFileError::Empty => format!(
                "{} holds no `-----BEGIN {label}-----` block; check that it is the right file",
                file.display()
            ),
        }
    }
}

fn read_pem(file: &Path) -> Result<Vec<u8>, PemFileError> {
    std::fs::read(file).map_err(PemFileError::Read)
}

fn read_certs(file: &Path) -> Result<Vec<CertificateDer<'static>>, PemFileError> {
    parse_certs(&read_pem(file)?)
}

fn parse_certs(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemFileError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| PemFileError::NotPem)?;
    if certs.is_empty() {
        return Err(PemFileError::Empty);
    }
    Ok(certs)
}

fn parse_key(bytes: &[u8]) -> Result<PrivateKeyDer<'static>, PemFileError> {
    PrivateKeyDer::from_pem_slice(bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => PemFileError::Empty,
        _ => PemFileError::NotPem,
    })
}

/// Whether `key` is usable and belongs to the first certificate of `chain`;
/// reports why not.
fn key_matches(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_file: &Path,
    key_file: &Path,
    problem: &mut dyn FnMut(&str, String),
) -> bool {
    let provider = rustls::crypto::ring::default_provider();
    let signing_key = match provider.key_provider.load_private_key(key) {
        Ok(k) => k,
        Err(e) => {
            problem(
                "tls.key_file",
                format!(
                    "the key in {} can not be used ({e}); use an RSA, ECDSA (P-256, P-384) or Ed25519 key",
                    key_file.display()
                ),
            );
            return false;
        }
    };
    match rustls::sign::CertifiedKey::new(chain, Arc::clone(&signing_key)).keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => true,
        Err(rustls::Error::InconsistentKeys(_)) => {
            problem(
                "tls.key_file",
                format!(
                    "the key in {} does not belong to the certificate in {}; use the key the certificate was issued for",
                    key_file.display(),
                    cert_file.display()
                ),
            );
            false
        }
        Err(e) => {
            problem(
                "tls.cert_file",
                format!(
                    "the first certificate in {} can not be parsed ({e}); it must be the client certificate, followed by any intermediates",
                    cert_file.display()
                ),
            );
            false
        }
    }
}

/// `proxy`: the HTTP(S) proxy a source's requests go through. Its `Debug`
/// and [`ProxyUrl::redacted`] hide a password in the URL.
#[derive(Clone)]
pub struct ProxyUrl(reqwest::Url);

impl ProxyUrl {
    /// Parses and checks `text`; the message of an error never repeats
    /// `text`, which may hold a password.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let url = reqwest::Url::parse(text.trim()).map_err(|e| {
            format!("is not a URL ({e}); write it like \"http://proxy.example.com:3128\"")
        })?;
        match url.scheme() {
            "http" | "https" => {}
            other => {
                return Err(format!(
                    "scheme `{other}` is not supported; use an http:// or https:// proxy URL such as \"http://proxy.example.com:3128\""
                ));
            }
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("has no host; write it like \"http://proxy.example.com:3128\"".into());
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(
                "must be just scheme, host and port, like \"http://proxy.example.com:3128\"".into(),
            );
        }
        Ok(Self(url))
    }

    /// The URL, password included, for the one place that connects.
    pub fn expose(&self) -> &reqwest::Url {
        &self.0
    }

    /// The URL with its password (if any) replaced by `***`.
    pub fn redacted(&self) -> String {
        let mut url = self.0.clone();
        if url.password().is_some() {
            let _ = url.set_password(Some("***"));
        }
        url.to_string()
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ProxyUrl").field(&self.redacted()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls() {
        let p = ProxyUrl::parse("http://user:hunter2@proxy.example:3128").unwrap();
        assert_eq!(p.redacted(), "http://user:***@proxy.example:3128/");
        assert!(!format!("{p:?}").contains("hunter2"));
        assert_eq!(p.expose().password(), Some("hunter2"));
        assert!(ProxyUrl::parse("https://proxy.example").is_ok());

        let e = ProxyUrl::parse("socks5://proxy:1080").unwrap_err();
        assert!(e.contains("`socks5` is not supported"), "{e}");
        let e = ProxyUrl::parse("http://proxy:3128/path").unwrap_err();
        assert!(e.contains("just scheme, host and port"), "{e}");
        let e = ProxyUrl::parse("proxy:hunter2@:3128").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
