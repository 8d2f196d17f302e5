//! The `[[sink]] type = "syslog"` table: [`RawSyslogSinkConfig`] as
//! written, validated without I/O into [`SyslogSinkConfig`], whose TLS
//! settings ([`TlsSettings`]) exist only with `transport = "tls"` and hold
//! the server name already checked, and a client certificate only as a
//! certificate and key pair.

use std::path::PathBuf;
use std::time::Duration;

use auditfwd_sink::ConfigProblem;
use auditfwd_sink::config::duration;
use serde::{Deserialize, Deserializer};
use tokio_rustls::rustls::pki_types::ServerName;

/// A syslog sink's table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSyslogSinkConfig {
    /// Receiver, `host:port`. Required.
    pub address: String,
    /// `udp`, `tcp` (default) or `tls`.
    #[serde(default)]
    pub transport: Transport,
    /// `rfc5424` (default) or `rfc3164`.
    #[serde(default)]
    pub protocol: Protocol,
    /// TCP/TLS framing: `octet-counting` (RFC 6587 §3.4.1, default) or `lf`.
    #[serde(default)]
    pub framing: Framing,
    /// Facility, by name (`auth`, `authpriv`, `local0`…`local7`, …) or
    /// number 0–23. Default `auth`.
    #[serde(default = "default_facility", deserialize_with = "facility")]
    pub facility: u8,
    /// HOSTNAME field. Default: this machine's host name.
    #[serde(default)]
    pub hostname: Option<String>,
    /// APP-NAME field. Default `auditfwd`.
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// PROCID field. Default: the process id.
    #[serde(default)]
    pub procid: Option<String>,
    /// Largest UDP datagram; longer messages are cut with a marker (and kept
    /// whole in the dead-letter file). Default 2048 (RFC 5426 §3.2).
    #[serde(default = "default_max_datagram")]
    pub max_datagram: usize,
    /// Timeout of a TCP connect and TLS handshake. Default 10s.
    #[serde(default = "default_connect_timeout", deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// Timeout of writing one batch. Default 30s.
    #[serde(default = "default_write_timeout", deserialize_with = "duration")]
    pub write_timeout: Duration,
    /// TLS settings (`transport = "tls"`).
    #[serde(default)]
    pub tls: TlsConfig,
}

/// `[sink.tls]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA(s) that sign the receiver's certificate. Default:
    /// the Mozilla root store.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for receivers that require one.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Name the receiver's certificate must match (SNI and verification).
    /// Default: the host of `address`.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// A validated syslog sink config (see [`RawSyslogSinkConfig`] for each
/// key).
#[derive(Debug, Clone)]
pub struct SyslogSinkConfig {
    /// Receiver, `host:port`.
    pub address: String,
    /// UDP, TCP or TLS.
    pub transport: Transport,
    /// Message format.
    pub protocol: Protocol,
    /// Stream framing (TCP and TLS).
    pub framing: Framing,
    /// Facility 0-23.
    pub facility: u8,
    /// HOSTNAME field; `None`: this machine's host name.
    pub hostname: Option<String>,
    /// APP-NAME field.
    pub app_name: String,
    /// PROCID field; `None`: the process id.
    pub procid: Option<String>,
    /// Largest UDP datagram.
    pub max_datagram: usize,
    /// Timeout of a TCP connect and TLS handshake.
    pub connect_timeout: Duration,
    /// Timeout of writing one batch.
    pub write_timeout: Duration,
    /// TLS settings: `Some` exactly when `transport` is TLS.
    pub tls: Option<TlsSettings>,
}

/// Validated `[sink.tls]` of a TLS transport. The files are read when the
/// sink is built.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// CA(s) that sign the receiver's certificate; `None`: the Mozilla
    /// root store.
    pub ca_file: Option<PathBuf>,
    /// The client certificate, for receivers that require one.
    pub client_cert: Option<ClientCert>,
    /// The name the receiver's certificate must match (SNI and
    /// verification).
    pub server_name: ServerName<'static>,
}

/// A client certificate chain and its private key, PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// The certificate chain.
    pub cert_file: PathBuf,
    /// The private key.
    pub key_file: PathBuf,
}

/// Transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// RFC 5426: one message per datagram; "sent" is all UDP can promise.
    Udp,
    /// RFC 6587.
    #[default]
    Tcp,
    /// RFC 5425.
    Tls,
}

/// Message format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// The syslog protocol, with structured data.
    #[default]
    Rfc5424,
    /// The BSD syslog format.
    Rfc3164,
}

/// Stream framing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Framing {
    /// `LEN SP MSG`.
    #[default]
    OctetCounting,
    /// `MSG LF`.
    Lf,
}

/// Facility names (RFC 5424 §6.2.1, with the usual names).
pub const FACILITIES: &[(&str, u8)] = &[
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("ntp", 12),
    ("audit", 13),
    ("alert", 14),
    ("clock", 15),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

fn facility<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Name(String),
        Number(i64),
    }
    let names = || {
        FACILITIES
            .iter()
            .map(|f| f.0)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match Raw::deserialize(d)? {
        Raw::Number(n) if (0..=23).contains(&n) => Ok(n as u8),
        Raw::Number(n) => Err(serde::de::Error::custom(format!(
            "facility {n} is not 0 to 23"
        ))),
        Raw::Name(name) => FACILITIES
            .iter()
            .find(|f| f.0 == name)
            .map(|f| f.1)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "facility `{name}` is unknown; use one of: {}",
                    names()
                ))
            }),
    }
}

fn default_facility() -> u8 {
    4
}
fn default_app_name() -> String {
    "auditfwd".into()
}
fn default_max_datagram() -> usize {
    2048
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_write_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Whether `s` is 1..=max printable US-ASCII characters (RFC 5424 header
/// fields).
pub(crate) fn is_header_field(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| (33..=126).contains(&b))
}

impl RawSyslogSinkConfig {
    /// A table for `address` with every other setting at its default.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            transport: Transport::Tcp,
            protocol: Protocol::Rfc5424,
            framing: Framing::OctetCounting,
            facility: default_facility(),
            hostname: None,
            app_name: default_app_name(),
            procid: None,
            max_datagram: default_max_datagram(),
            connect_timeout: default_connect_timeout(),
            write_timeout: default_write_timeout(),
            tls: TlsConfig::default(),
        }
    }

    /// The validated config, or every problem in this table, without
    /// touching the network or the TLS files.
    pub fn validate(self) -> Result<SyslogSinkConfig, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let port_ok = self
            .address
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if !port_ok {
            problems.push(ConfigProblem::new(
                "address",
                format!(
                    "`{}` is not \"host:port\" (e.g. \"siem.example.com:6514\")",
                    self.address
                ),
            ));
        }
        if !is_header_field(&self.app_name, 48) {
            problems.push(ConfigProblem::new(
                "app_name",
                "must be 1-48 printable ASCII characters without spaces",
            ));
        }
        if let Some(h) = &self.hostname
            && !is_header_field(h, 255)
        {
            problems.push(ConfigProblem::new(
                "hostname",
                "must be 1-255 printable ASCII characters without spaces",
            ));
        }
        if let Some(p) = &self.procid
            && !is_header_field(p, 128)
        {
            problems.push(ConfigProblem::new(
                "procid",
                "must be 1-128 printable ASCII characters without spaces",
            ));
        }
        if !(480..=65_507).contains(&self.max_datagram) {
            problems.push(ConfigProblem::new(
                "max_datagram",
                format!(
                    "{} is out of range; use 480 to 65507 (RFC 5426 recommends 2048)",
                    self.max_datagram
                ),
            ));
        }
        if self.transport == Transport::Udp && self.framing == Framing::Lf {
            problems.push(ConfigProblem::new(
                "framing",
                "applies to tcp and tls only; remove it for udp",
            ));
        }
        let tls_set = self.tls.ca_file.is_some()
            || self.tls.cert_file.is_some()
            || self.tls.key_file.is_some()
            || self.tls.server_name.is_some();
        if tls_set && self.transport != Transport::Tls {
            problems.push(ConfigProblem::new(
                "tls",
                "is set but transport is not \"tls\"; set transport = \"tls\"",
            ));
        }
        let client_cert = match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(cert_file), Some(key_file)) => Some(ClientCert {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
            }),
            (None, None) => None,
            _ => {
                problems.push(ConfigProblem::new(
                    "tls",
                    "cert_file and key_file go together; set both for a client certificate, or neither",
                ));
                None
            }
        };
        let tls = match self.transport {
            Transport::Tls => match self.server_name() {
                Ok(server_name) => Some(TlsSettings {
                    ca_file: self.tls.ca_file.clone(),
                    client_cert,
                    server_name,
                }),
                Err(problem) => {
                    problems.push(problem);
                    None
                }
            },
            Transport::Udp | Transport::Tcp => None,
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(SyslogSinkConfig {
            address: self.address,
            transport: self.transport,
            protocol: self.protocol,
            framing: self.framing,
            facility: self.facility,
            hostname: self.hostname,
            app_name: self.app_name,
            procid: self.procid,
            max_datagram: self.max_datagram,
            connect_timeout: self.connect_timeout,
            write_timeout: self.write_timeout,
            tls,
        })
    }

    /// The name the receiver's certificate is verified against:
    /// `tls.server_name`, or the host of `address`.
    fn server_name(&self) -> Result<ServerName<'static>, ConfigProblem> {
        let (key, name) = match &self.tls.server_name {
            Some(name) => ("tls.server_name", name.clone()),
            None => ("address", host(&self.address).to_string()),
        };
        ServerName::try_from(name.clone()).map_err(|_| {
            ConfigProblem::new(
                key,
                format!("`{name}` is not a valid TLS server name; set tls.server_name"),
            )
        })
    }
}

/// The host part of `host:port` (without the brackets of an IPv6 address).
pub(crate) fn host(address: &str) -> &str {
    let host = address.rsplit_once(':').map(|(h, _)| h).unwrap_or(address);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use auditfwd_sink::testing::problem_keys;

    use super::*;

    fn parse(text: &str) -> Result<RawSyslogSinkConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let c = parse("address = \"siem:514\"").unwrap().validate().unwrap();
        assert_eq!(
            (c.transport, c.protocol, c.framing, c.facility),
            (Transport::Tcp, Protocol::Rfc5424, Framing::OctetCounting, 4)
        );
        assert!(c.tls.is_none());
        assert_eq!(host("siem:514"), "siem");
        assert_eq!(host("[::1]:514"), "::1");
    }

    #[test]
    fn facility_by_name_or_number() {
        assert_eq!(
            parse("address = \"a:1\"\nfacility = \"local3\"")
                .unwrap()
                .facility,
            19
        );
        assert_eq!(
            parse("address = \"a:1\"\nfacility = 13").unwrap().facility,
            13
        );
        assert!(
            parse("address = \"a:1\"\nfacility = \"local9\"")
                .unwrap_err()
                .contains("unknown")
        );
        assert!(
            parse("address = \"a:1\"\nfacility = 24")
                .unwrap_err()
                .contains("0 to 23")
        );
    }

    #[test]
    fn problems_are_named() {
        let c = parse(
            "address = \"siem\"\napp_name = \"audit fwd\"\ntransport = \"udp\"\nframing = \"lf\"\nmax_datagram = 100\n[tls]\ncert_file = \"c.pem\"",
        )
        .unwrap();
        assert_eq!(
            problem_keys(&c.validate().unwrap_err()),
            [
                "address",
                "app_name",
                "max_datagram",
                "framing",
                "tls",
                "tls"
            ]
        );
    }

    #[test]
    fn tls_settings_exist_with_the_tls_transport_and_a_valid_server_name() {
        let c = parse(
            "address = \"siem.example.com:6514\"\ntransport = \"tls\"\n[tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"",
        )
        .unwrap()
        .validate()
        .unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(
            tls.server_name,
            ServerName::try_from("siem.example.com").unwrap()
        );
        assert_eq!(
            tls.client_cert,
            Some(ClientCert {
                cert_file: "c.pem".into(),
                key_file: "k.pem".into()
            })
        );
        let bad = parse(
            "address = \"siem:6514\"\ntransport = \"tls\"\n[tls]\nserver_name = \"not a name\"",
        )
        .unwrap()
        .validate()
        .unwrap_err();
        assert_eq!(bad[0].key, "tls.server_name");
        assert_eq!(
            bad[0].message,
            "`not a name` is not a valid TLS server name; set tls.server_name"
        );
    }
}
