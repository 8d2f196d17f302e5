//! HTTP plumbing between the forwarder and the simulated tenant, for the
//! client tests: a TLS front (private CA, optional client certificates), and
//! a small HTTP server that records each request and either redirects it or
//! forwards it (which makes it a forward proxy when the request names an
//! absolute URL). Each listens on its own free loopback port and stops when
//! dropped.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use auditfwd_testkit::Certs;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};

/// TLS in front of a plain TCP service: terminates TLS with the test CA's
/// server certificate (for `127.0.0.1` and `localhost`) and pipes the bytes
/// to `backend`.
pub struct TlsFront {
    pub addr: SocketAddr,
    /// Why handshakes failed, as the server saw it.
    pub handshake_errors: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl TlsFront {
    /// Starts the front; with `client_auth`, a client certificate signed by
    /// the test CA is required.
    pub async fn start(backend: SocketAddr, certs: &Certs, client_auth: bool) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&certs.server_cert)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(&certs.server_key).unwrap();
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if client_auth {
            let mut roots = RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_file(&certs.ca).unwrap())
                .unwrap();
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder.with_single_cert(chain, key).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handshake_errors = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::clone(&handshake_errors);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let errors = Arc::clone(&errors);
                tokio::spawn(async move {
                    match acceptor.accept(tcp).await {
                        Ok(mut tls) => {
                            if let Ok(mut upstream) = TcpStream::connect(backend).await {
                                let _ =
                                    tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                            }
                        }
                        Err(e) => errors.lock().unwrap().push(e.to_string()),
                    }
                });
            }
        });
        Self {
            addr,
            handshake_errors,
            task,
        }
    }

    /// `https://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One request as the [`Relay`] received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The request target as sent: absolute (`http://host/path`) through a
    /// proxy, a path otherwise.
    pub uri: String,
    pub headers: HeaderMap,
}

/// What the relay does with a request.
pub enum Reply {
    /// 302 with this `Location`.
    Redirect(String),
    /// GET this URL (with the request's `Authorization` and `Accept`) and
    /// answer what it answered.
    Forward(String),
}

/// A recording HTTP/1.1 server that redirects or forwards each request as
/// `route` decides.
pub struct Relay {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    task: JoinHandle<()>,
}

impl Relay {
    pub async fn start(route: impl Fn(&Uri) -> Reply + Send + Sync + 'static) -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&requests);
        let route = Arc::new(route);
        // Straight to the target: no proxy from the environment, no redirects.
        let upstream = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let recorded = Arc::clone(&recorded);
            let route = Arc::clone(&route);
            let upstream = upstream.clone();
            async move {
                recorded.lock().unwrap().push(Recorded {
                    uri: req.uri().to_string(),
                    headers: req.headers().clone(),
                });
                match route(req.uri()) {
                    Reply::Redirect(location) => Response::builder()
                        .status(StatusCode::FOUND)
                        .header(header::LOCATION, location)
                        .body(Body::empty())
                        .unwrap(),
                    Reply::Forward(url) => {
                        let mut out = upstream.get(url);
                        for name in [header::AUTHORIZATION, header::ACCEPT] {
                            if let Some(v) = req.headers().get(&name) {
                                out = out.header(name.as_str(), v.as_bytes());
                            }
                        }
                        match out.send().await {
                            Ok(resp) => {
                                let mut reply = Response::builder().status(resp.status().as_u16());
                                for name in ["date", "content-type", "retry-after"] {
                                    if let Some(v) = resp.headers().get(name) {
                                        reply = reply.header(name, v.as_bytes());
                                    }
                                }
                                let body = resp.bytes().await.unwrap_or_default();
                                reply.body(Body::from(body)).unwrap()
                            }
                            Err(_) => Response::builder()
                                .status(StatusCode::BAD_GATEWAY)
                                .body(Body::empty())
                                .unwrap(),
                        }
                    }
                }
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            requests,
            task,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    /// Every request so far.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
