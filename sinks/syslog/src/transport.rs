//! Connections to the receiver: a connected UDP socket, a TCP stream, or a
//! TLS stream over TCP. Connections are made lazily and dropped on any
//! error, so the next delivery reconnects.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

/// How long a new TLS connection is watched for a refusal after the
/// handshake.
const POST_HANDSHAKE_PROBE: Duration = Duration::from_millis(250);

/// An open connection.
pub(crate) enum Connection {
    /// Connected UDP socket.
    Udp(UdpSocket),
    /// TCP stream.
    Tcp(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

/// How to reach the receiver.
#[derive(Clone)]
pub(crate) enum Target {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS with this client configuration and server name.
    Tls(Arc<ClientConfig>, ServerName<'static>),
}

async fn tcp(address: &str, timeout: Duration) -> io::Result<TcpStream> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no connection within {timeout:?}"),
            )
        })??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

impl Connection {
    /// Connects to `address`.
    pub(crate) async fn open(
        target: &Target,
        address: &str,
        timeout: Duration,
    ) -> io::Result<Self> {
        match target {
            Target::Udp => {
                let remote = tokio::net::lookup_host(address)
                    .await?
                    .next()
                    .ok_or_else(|| {
                        io::Error::new(io::ErrorKind::NotFound, "address resolves to nothing")
                    })?;
                let local = if remote.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                };
                let socket = UdpSocket::bind(local).await?;
                socket.connect(remote).await?;
                Ok(Connection::Udp(socket))
            }
            Target::Tcp => Ok(Connection::Tcp(tcp(address, timeout).await?)),
            Target::Tls(config, name) => {
                let stream = tcp(address, timeout).await?;
                let mut tls = tokio::time::timeout(
                    timeout,
                    TlsConnector::from(config.clone()).connect(name.clone(), stream),
                )
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no TLS handshake within {timeout:?}"),
                    )
                })??;
                // In TLS 1.3 the server judges the client certificate after
                // the client finished its side of the handshake; a refusal
                // arrives as an alert right after. Wait for it briefly so
                // that the first batch is not written into a connection the
                // receiver is already closing.
                let mut buf = [0u8; 256];
                match tokio::time::timeout(POST_HANDSHAKE_PROBE, tls.read(&mut buf)).await {
                    Ok(Ok(0)) => Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the receiver closed the TLS connection right after the handshake; it may require a client certificate (tls.cert_file, tls.key_file)",
                    )),
                    Ok(Err(e)) => Err(io::Error::new(
                        e.kind(),
                        format!(
                            "the receiver refused the TLS session after the handshake: {e}; it may require a client certificate (tls.cert_file, tls.key_file)"
                        ),
                    )),
                    _ => Ok(Connection::Tls(Box::new(tls))),
                }
            }
        }
    }

    /// Whether the receiver closed the stream. Syslog receivers never send
    /// data, so a readable stream means end-of-file or an error; writing to
    /// it would vanish into a dead connection.
    pub(crate) fn peer_closed(&mut self) -> bool {
        let mut buf = [0u8; 256];
        let polled = match self {
            Connection::Udp(_) => return false,
            Connection::Tcp(s) => s.read(&mut buf).now_or_never(),
            Connection::Tls(s) => s.read(&mut buf).now_or_never(),
        };
        matches!(polled, Some(Ok(0)) | Some(Err(_)))
    }

    /// Sends one datagram (UDP only).
    pub(crate) async fn send_datagram(&mut self, datagram: &[u8]) -> io::Result<()> {
        match self {
            Connection::Udp(s) => s.send(datagram).await.map(|_| ()),
            _ => Err(io::Error::other("not a datagram socket")),
        }
    }

    /// Writes all of `bytes` and flushes (TCP/TLS).
    pub(crate) async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Connection::Udp(_) => Err(io::Error::other("not a stream")),
            Connection::Tcp(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Connection::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }

    /// Closes a stream politely (TLS close_notify).
    pub(crate) async fn shutdown(&mut self) {
        let _ = match self {
            Connection::Udp(_) => Ok(()),
            Connection::Tcp(s) => s.shutdown().await,
            Connection::Tls(s) => s.shutdown().await,
        };
    }
}
