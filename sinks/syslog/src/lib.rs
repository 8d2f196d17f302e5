//! The syslog sink: RFC 5424 (default) or RFC 3164 messages over UDP
//! (RFC 5426), TCP with octet-counting or LF framing (RFC 6587) or TLS
//! (RFC 5425, rustls).
//!
//! A batch is acknowledged once every frame is written to the socket and
//! flushed (TCP/TLS) or sent (UDP). Before writing, a stream is checked for
//! a receiver that hung up, so a batch is not written into a dead
//! connection. Any error drops the connection and fails the batch; the
//! pipeline retries it (reconnecting) with backoff, and the source waits.
//!
//! Each record is exactly one syslog message whatever the event holds; see
//! [`encode`] for how.
#![deny(missing_docs, unreachable_pub)]

mod config;
pub mod encode;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod tls;
mod transport;

use async_trait::async_trait;
use auditfwd_sink::{
    ConfigProblem, Delivered, Record, Rejected, Sink, SinkContext, SinkError, SinkFactory,
};

pub use config::{
    ClientCert, FACILITIES, Framing, Protocol, RawSyslogSinkConfig, SyslogSinkConfig, TlsConfig,
    TlsSettings, Transport,
};
use encode::Header;
use transport::{Connection, Target};

/// The syslog sink's type, `type = "syslog"`, for the host's registry.
pub struct SyslogSinkFactory;

impl SinkFactory for SyslogSinkFactory {
    const TYPE: &'static str = "syslog";
    type Raw = RawSyslogSinkConfig;
    type Config = SyslogSinkConfig;

    fn validate(raw: RawSyslogSinkConfig) -> Result<SyslogSinkConfig, Vec<ConfigProblem>> {
        raw.validate()
    }

    fn build(config: &SyslogSinkConfig, context: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(SyslogSink::new(context.name(), config.clone())?))
    }
}

/// Sends records to a syslog receiver.
pub struct SyslogSink {
    name: String,
    config: SyslogSinkConfig,
    header: Header,
    target: Target,
    connection: Option<Connection>,
}

impl std::fmt::Debug for SyslogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyslogSink")
            .field("name", &self.name)
            .field("address", &self.config.address)
            .field("transport", &self.config.transport)
            .finish()
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it or truncates.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = if ok {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    encode::header_field(&name, 255)
}

impl SyslogSink {
    /// Builds the sink (reads TLS files; connects lazily).
    pub fn new(name: impl Into<String>, config: SyslogSinkConfig) -> Result<Self, SinkError> {
        let name = name.into();
        let target = match (config.transport, &config.tls) {
            (Transport::Udp, _) => Target::Udp,
            (Transport::Tcp, _) => Target::Tcp,
            (Transport::Tls, Some(tls)) => Target::Tls(
                tls::client_config(tls)
                    .map_err(|e| SinkError::permanent(format!("syslog sink `{name}`: {e}")))?,
                tls.server_name.clone(),
            ),
            (Transport::Tls, None) => {
                return Err(SinkError::permanent(format!(
                    "syslog sink `{name}`: transport is tls but the config has no TLS settings (build the config with RawSyslogSinkConfig::validate)"
                )));
            }
        };
        let header = Header {
            facility: config.facility,
            hostname: config.hostname.clone().unwrap_or_else(hostname),
            app_name: config.app_name.clone(),
            procid: config
                .procid
                .clone()
                .unwrap_or_else(|| std::process::id().to_string()),
        };
        Ok(Self {
            name,
            config,
            header,
            target,
            connection: None,
        })
    }

    fn io_error(&self, action: &str, error: std::io::Error) -> SinkError {
        let hint = match self.config.transport {
            Transport::Tls if error.to_string().contains("certificate") => {
                "; check tls.ca_file and tls.server_name against the receiver's certificate"
            }
            _ => "; check `address` and that the receiver is up",
        };
        SinkError::transient(format!(
            "syslog sink `{}`: cannot {action} {} over {:?}: {error}{hint}",
            self.name, self.config.address, self.config.transport
        ))
    }

    async fn connection(&mut self) -> Result<&mut Connection, SinkError> {
        if let Some(c) = &mut self.connection
            && c.peer_closed()
        {
            tracing::info!(sink = %self.name, "receiver closed the connection; reconnecting");
            self.connection = None;
        }
        if self.connection.is_none() {
            let c = Connection::open(
                &self.target,
                &self.config.address,
                self.config.connect_timeout,
            )
            .await
            .map_err(|e| self.io_error("connect to", e))?;
            tracing::debug!(sink = %self.name, address = %self.config.address, "connected");
            self.connection = Some(c);
        }
        Ok(self.connection.as_mut().expect("connected above"))
    }
}

#[async_trait]
impl Sink for SyslogSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn healthcheck(&mut self) -> Result<(), SinkError> {
        // UDP has no handshake to check; TCP/TLS connect (and handshake).
        self.connection().await.map(|_| ())
    }

    async fn deliver(&mut self, batch: &[Record]) -> Result<Delivered, SinkError> {
        let mut delivered = Delivered::default();
        let mut messages = Vec::with_capacity(batch.len());
        for (index, record) in batch.iter().enumerate() {
            match encode::encode(&self.config, &self.header, record) {
                Ok((message, cut)) => {
                    if cut {
                        delivered.truncated.push(Rejected {
                            index,
                            reason: format!(
                                "cut to max_datagram = {} bytes for UDP",
                                self.config.max_datagram
                            ),
                        });
                    }
                    messages.push(message);
                }
                Err(encode::Unsendable(reason)) => {
                    delivered.rejected.push(Rejected { index, reason })
                }
            }
        }
        if messages.is_empty() {
            return Ok(delivered);
        }
        let write_timeout = self.config.write_timeout;
        let framing = self.config.framing;
        let udp = self.config.transport == Transport::Udp;
        let connection = self.connection().await?;
        let sent = tokio::time::timeout(write_timeout, async {
            if udp {
                for m in &messages {
                    connection.send_datagram(&m.bytes).await?;
                }
                Ok(())
            } else {
                let mut frames =
                    Vec::with_capacity(messages.iter().map(|m| m.bytes.len() + 8).sum());
                for m in &messages {
                    encode::frame(m, framing, &mut frames);
                }
                connection.write_all(&frames).await
            }
        })
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("write not finished within {write_timeout:?}"),
            ))
        });
        if let Err(e) = sent {
            self.connection = None;
            return Err(self.io_error("send to", e));
        }
        Ok(delivered)
    }

    /// Closes the connection (TLS close_notify).
    async fn close(&mut self) -> Result<(), SinkError> {
        if let Some(c) = &mut self.connection {
            c.shutdown().await;
        }
        self.connection = None;
        Ok(())
    }

    /// Closes the connection; the next delivery connects again.
    async fn reopen(&mut self) -> Result<(), SinkError> {
        self.close().await
    }
}
