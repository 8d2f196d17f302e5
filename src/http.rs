//! HTTP access to one tenant, shared by the poller ([`crate::source`]) and
//! enrichment ([`crate::enrich`]): rate limiting, the Bearer key, TLS trust
//! and client certificates, the proxy, the redirect policy, and the
//! classification of every answer that is not a 2xx into retry-or-stop.
//! It knows neither the configuration nor what it fetches: a source's
//! settings reach it as an [`Endpoint`].
//!
//! Redirects are followed only within the origin (scheme, host and port)
//! of the request, and no `Referer` is sent: a redirect elsewhere would
//! carry the Bearer key's requests (and the URL) to a host nobody
//! configured. Transport errors carry their whole cause chain (DNS,
//! connection refused, the certificate problem), never the API key.
//!
//! Sources share HTTP clients: an [`HttpPool`] builds one `reqwest::Client`
//! (one connection pool) per distinct set of transport settings (timeout,
//! `allow_http`, proxy, TLS files), and caps the requests in flight across
//! every source (`[limits] max_requests_in_flight`), so that thousands of
//! tenants behind one API host reuse a few connections instead of holding
//! one socket each. The key travels per request; rate limits stay per
//! source.
//!
//! # Fair shares of the cap
//!
//! A request holds its permit of the cap until its body is read, so a
//! tenant whose API hangs holds permits until `request_timeout` (30 s by
//! default), and a tenant fetching ahead may have 1 + `prefetch` requests
//! out. Left alone, a few hung tenants would hold every permit and the
//! healthy ones would wait out the hang. So each tenant (one [`ApiClient`],
//! shared with its enrichment) may hold at most its share of the cap,
//! `max(1, max_requests_in_flight / tenants)`, counting the tenants whose
//! clients this pool built and still live; a request beyond the share waits
//! for one of the tenant's own requests to finish, before it queues for
//! the cap.
//!
//! The shares are a reservation, not a guess about who is slow: while
//! there are no more tenants than permits, the shares add up to at most
//! the cap, so a tenant within its share always finds a free permit,
//! whatever the others do; a hang, a 429 storm or a revoked key costs the
//! other tenants nothing. With more tenants than permits each share is one
//! request (no prefetch beyond the cap), and hung tenants hold one permit
//! each: the others wait only while `max_requests_in_flight` or more
//! tenants hang at once (raise the cap above that). Shares follow reloads:
//! a tenant added makes the others' shares smaller for their next
//! requests (the ones out finish), a tenant removed makes them larger.
//! A share is not work-conserving: with many tenants a lone backfill
//! fetches ahead only as far as its share, the price of never letting a
//! hang take what belongs to the others.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::rate_limit::Limiter;
use crate::values::Secret;

/// Longest `Retry-After` honoured; a larger value is capped so that a broken
/// header can not park a source for days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(900);

/// Where a tenant's API is and how to reach it: what a client is built
/// from ([`crate::config::SourceConfig::endpoint`] gives a source's).
pub struct Endpoint<'a> {
    /// `base_url`: request paths are appended to it.
    pub base_url: &'a reqwest::Url,
    /// The key sent as `Authorization: Bearer`.
    pub api_key: &'a Secret,
    /// `request_timeout`: from sending a request to its last byte.
    pub timeout: Duration,
    /// Whether plain `http://` is allowed.
    pub allow_http: bool,
    /// The proxy every request goes through, with its password (masked in
    /// every error message). Without it, the proxy environment applies.
    pub proxy: Option<&'a reqwest::Url>,
    /// Certificates trusted besides the bundled and system roots.
    pub extra_roots: &'a [reqwest::Certificate],
    /// The client certificate and key, for mutual TLS.
    pub identity: Option<&'a reqwest::Identity>,
    /// A digest of the TLS settings: endpoints with equal transport
    /// settings share one `reqwest::Client`.
    pub tls_fingerprint: u64,
    /// The largest response body read; a larger one is
    /// [`HttpError::TooLarge`].
    pub max_body: u64,
}

/// A 2xx response, read whole.
#[derive(Debug)]
pub struct Response {
    /// The body.
    pub body: bytes::Bytes,
    /// The headers.
    pub headers: HeaderMap,
    /// From sending the request to the last byte of the body (the rate
    /// limiter's wait excluded).
    pub latency: Duration,
}

/// Why a request failed, and whether to retry.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// 401/403: the key is wrong or lacks permission. The source stops.
    #[error("the API refused the API key ({status}{}); check api_key / api_key_file and the key's permissions", detail(.message))]
    Unauthorized {
        /// 401 or 403.
        status: StatusCode,
        /// The API's `message`, if any.
        message: Option<String>,
    },
    /// 400: the API considers a parameter invalid. The source stops.
    #[error("the API rejected the request as invalid ({status}{}); check page_size, actions and start_at", detail(.message))]
    BadRequest {
        /// The status.
        status: StatusCode,
        /// The API's `message`, if any.
        message: Option<String>,
    },
    /// 404: nothing at this URL. To a lookup (of a user) that is an
    /// answer; to the poller, a wrong `base_url`: the source stops.
    #[error("unexpected response {} from {url}{}; check base_url", StatusCode::NOT_FOUND, detail(.message))]
    NotFound {
        /// The request URL (no secrets: the key travels in a header).
        url: String,
        /// The API's `message`, if any.
        message: Option<String>,
    },
    /// Other unexpected 4xx: the URL is wrong. The source stops.
    #[error("unexpected response {status} from {url}{}; check base_url", detail(.message))]
    Unexpected {
        /// The status.
        status: StatusCode,
        /// The request URL (no secrets: the key travels in a header).
        url: String,
        /// The API's `message`, if any.
        message: Option<String>,
    },
    /// 429: retry after the server's `Retry-After`.
    #[error("rate limited by the API (429), retry after {}", retry_after.map(|d| format!("{d:?}")).unwrap_or_else(|| "a backoff".into()))]
    RateLimited {
        /// The parsed `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// 5xx: retry with backoff.
    #[error("server error {status}{}", detail(.message))]
    Server {
        /// The status.
        status: StatusCode,
        /// The API's `message`, if any.
        message: Option<String>,
        /// The parsed `Retry-After`, if the server sent one (503).
        retry_after: Option<Duration>,
    },
    /// A redirect to another origin (scheme, host or port). The source
    /// stops: following it would send the API key elsewhere.
    #[error(
        "the API at {from} redirected to {to}, another origin; auditfwd follows redirects only within the same scheme, host and port, so that the API key stays with the configured host; set base_url (or enrich.base_url) to the address the API answers at"
    )]
    Redirect {
        /// The origin of the request.
        from: String,
        /// Where the redirect pointed (without any password).
        to: String,
    },
    /// DNS, connection refused or reset, TLS, timeout, body cut off: retry.
    #[error("request failed: {message}")]
    Transport {
        /// The error and its whole cause chain, with any secret masked.
        message: String,
        /// Whether the request timed out.
        timeout: bool,
    },
    /// The body is larger than `max_body`: retry with a smaller page.
    #[error(
        "the response body is larger than max_body ({limit} bytes); auditfwd asks again with a smaller limit (raise max_body for events this large)"
    )]
    TooLarge {
        /// The configured limit.
        limit: u64,
    },
}

fn detail(message: &Option<String>) -> String {
    message
        .as_ref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default()
}

impl HttpError {
    /// Whether retrying can help; `false` stops the source.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            HttpError::RateLimited { .. }
                | HttpError::Server { .. }
                | HttpError::Transport { .. }
                | HttpError::TooLarge { .. }
        )
    }

    /// The server's requested wait.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            HttpError::RateLimited { retry_after } | HttpError::Server { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            HttpError::Unauthorized { .. } => "unauthorized",
            HttpError::BadRequest { .. } => "bad_request",
            HttpError::NotFound { .. } | HttpError::Unexpected { .. } => "unexpected_status",
            HttpError::RateLimited { .. } => "rate_limited",
            HttpError::Server { .. } => "server_error",
            HttpError::Redirect { .. } => "redirect",
            HttpError::Transport { timeout: true, .. } => "timeout",
            HttpError::Transport { .. } => "transport",
            HttpError::TooLarge { .. } => "too_large",
        }
    }
}

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 10;

/// The redirect policy's refusal, found again in the error's cause chain.
#[derive(Debug, thiserror::Error)]
#[error("redirect to another origin: {to}")]
struct CrossOriginRedirect {
    to: String,
}

/// Follows a redirect only within the origin of the first request.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let Some(first) = attempt.previous().first() else {
            return attempt.stop();
        };
        if attempt.url().origin() != first.origin() {
            let to = without_password(attempt.url());
            return attempt.error(CrossOriginRedirect { to });
        }
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        attempt.follow()
    })
}

fn without_password(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    url.to_string()
}

/// `error` and its cause chain, joined by `": "`: the reqwest error alone
/// says only "error sending request"; the causes say whether it was DNS, a
/// refused connection or which certificate problem. A cause whose text is
/// already in the message (some layers repeat their source) is skipped.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let text = e.to_string();
        if !text.is_empty() && !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = e.source();
    }
    message
}

/// A hint for the TLS failures a setting fixes.
fn tls_hint(message: &str) -> &'static str {
    if message.contains("invalid peer certificate") {
        "; the server's certificate is not trusted: if a private CA signs it, set tls.ca_file to that CA (PEM)"
    } else if message.contains("CertificateRequired")
        || message.contains("BadCertificate")
        || message.contains("UnknownCA")
        || message.contains("AccessDenied")
    {
        "; the server did not accept the client certificate: set tls.cert_file and tls.key_file to a certificate its CA issued"
    } else {
        ""
    }
}

/// What two sources must agree on to share a `reqwest::Client`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    timeout: Duration,
    allow_http: bool,
    /// The proxy URL, password included (two proxy accounts are two
    /// clients); only ever compared, never printed.
    proxy: Option<String>,
    tls: u64,
}

/// HTTP clients shared among sources, and the cap on requests in flight
/// across all of them. Cheap to clone.
///
/// # Idle connections
///
/// A connection pool keeps a connection once it was needed, so left alone
/// it holds as many per API host as that host ever had requests in flight
/// at once: 5,000 tenants behind 5 hosts and a cap of 256 held 1,177
/// sockets. The pool keeps at most `max(1, cap / hosts)` idle connections
/// per host, so idle ones add at most about the cap (or one per host); and
/// with more hosts than the cap, an idle connection is closed after
/// [`CROWDED_IDLE_TIMEOUT`]: a tenant polled every 30 s then reconnects on
/// each poll (one TCP, and TLS, handshake) instead of holding a socket
/// between polls, and the sockets open are the requests of the last few
/// seconds, not one per tenant.
#[derive(Clone)]
pub struct HttpPool {
    clients: Arc<Mutex<HashMap<ClientKey, reqwest::Client>>>,
    /// Idle connections kept per API host, and for how long.
    idle: IdlePolicy,
    in_flight: Arc<tokio::sync::Semaphore>,
    /// `max_requests_in_flight`.
    cap: usize,
    /// The [`ApiClient`]s built and not yet dropped: what divides the cap
    /// into shares.
    tenants: Arc<AtomicUsize>,
    /// `User-Agent` of every request.
    user_agent: Arc<str>,
}

impl std::fmt::Debug for HttpPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpPool")
            .field("clients", &self.clients_built())
            .finish_non_exhaustive()
    }
}

/// How long an idle connection is kept when there are more API hosts
/// than `max_requests_in_flight` (see [`HttpPool`]).
pub const CROWDED_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long idle connections live otherwise (reqwest's default).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Idle connections kept per API host, and how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdlePolicy {
    /// Idle connections kept per host.
    pub per_host: usize,
    /// How long one stays idle before it is closed.
    pub timeout: Duration,
}

impl IdlePolicy {
    /// The policy for `hosts` API hosts under a cap of `max_in_flight`
    /// requests (see [`HttpPool`]).
    pub fn new(max_in_flight: usize, hosts: usize) -> Self {
        let (cap, hosts) = (max_in_flight.max(1), hosts.max(1));
        Self {
            per_host: (cap / hosts).max(1),
            timeout: if hosts > cap {
                CROWDED_IDLE_TIMEOUT
            } else {
                IDLE_TIMEOUT
            },
        }
    }
}

impl HttpPool {
    /// A pool letting at most `max_in_flight` requests (of every source and
    /// enrichment together) run at once, to `hosts` distinct API hosts
    /// (origins; it sizes the idle connections kept, see above).
    pub fn new(max_in_flight: usize, hosts: usize) -> Self {
        Self {
            clients: Arc::default(),
            idle: IdlePolicy::new(max_in_flight, hosts),
            in_flight: Arc::new(tokio::sync::Semaphore::new(max_in_flight.max(1))),
            cap: max_in_flight.max(1),
            tenants: Arc::default(),
            user_agent: Arc::from(USER_AGENT),
        }
    }

    /// Names `replica` in the `User-Agent` of every request
    /// (`auditfwd/0.1.0 (replica r1)`), so the tenant's own logs tell a
    /// fleet's replicas apart.
    pub fn for_replica(mut self, replica: &str) -> Self {
        self.user_agent = Arc::from(format!("{USER_AGENT} (replica {replica})"));
        self
    }

    /// The most requests one tenant may have in flight now: its share of
    /// the cap (see the module doc).
    pub fn share(&self) -> usize {
        share(self.cap, self.tenants.load(Ordering::Relaxed))
    }

    /// The client of `endpoint`, throttled by `limiter`, sharing its
    /// connections with every source of the same transport settings.
    ///
    /// The server's certificate is checked against the bundled Mozilla
    /// roots, the system trust store and `tls.ca_file`. Without `proxy`,
    /// `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` apply.
    pub fn client(
        &self,
        endpoint: &Endpoint<'_>,
        limiter: Arc<Limiter>,
    ) -> Result<ApiClient, reqwest::Error> {
        let key = ClientKey {
            timeout: endpoint.timeout,
            allow_http: endpoint.allow_http,
            proxy: endpoint.proxy.map(|p| p.to_string()),
            tls: endpoint.tls_fingerprint,
        };
        let http = {
            let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
            match clients.get(&key) {
                Some(http) => http.clone(),
                None => {
                    let http = build_http(endpoint, self.idle, &self.user_agent)?;
                    clients.insert(key, http.clone());
                    http
                }
            }
        };
        self.tenants.fetch_add(1, Ordering::Relaxed);
        Ok(ApiClient {
            http,
            base: endpoint.base_url.clone(),
            key: endpoint.api_key.clone(),
            proxy_password: endpoint
                .proxy
                .and_then(|p| p.password())
                .map(str::to_string),
            limiter,
            in_flight: Arc::clone(&self.in_flight),
            cap: self.cap,
            tenants: Arc::clone(&self.tenants),
            own: Own::default(),
            max_body: endpoint.max_body,
        })
    }

    /// How many distinct HTTP clients (connection pools) were built.
    pub fn clients_built(&self) -> usize {
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// A tenant's share of `cap` permits among `tenants`.
fn share(cap: usize, tenants: usize) -> usize {
    (cap / tenants.max(1)).max(1)
}

/// The requests one tenant has in flight, against its share.
#[derive(Debug, Default)]
struct Own {
    held: Mutex<usize>,
    /// Woken when one of the tenant's requests finishes.
    freed: tokio::sync::Notify,
}

/// One request within its tenant's share; gives the place back on drop.
struct OwnSlot<'a>(&'a Own);

impl Drop for OwnSlot<'_> {
    fn drop(&mut self) {
        *self.0.held.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        // Stores a wake-up when nobody waits yet: none is lost.
        self.0.freed.notify_one();
    }
}

/// The `User-Agent` of a forwarder that runs alone.
const USER_AGENT: &str = concat!("auditfwd/", env!("CARGO_PKG_VERSION"));

fn build_http(
    endpoint: &Endpoint<'_>,
    idle: IdlePolicy,
    user_agent: &str,
) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        .user_agent(user_agent)
        .pool_max_idle_per_host(idle.per_host)
        .pool_idle_timeout(idle.timeout)
        .timeout(endpoint.timeout)
        .connect_timeout(endpoint.timeout.min(Duration::from_secs(10)))
        .https_only(!endpoint.allow_http)
        .redirect(same_origin_redirects())
        .referer(false);
    for root in endpoint.extra_roots {
        builder = builder.add_root_certificate(root.clone());
    }
    if let Some(identity) = endpoint.identity {
        builder = builder.identity(identity.clone());
    }
    if let Some(proxy) = endpoint.proxy {
        builder = builder.proxy(reqwest::Proxy::all(proxy.as_str())?);
    }
    builder.build()
}

/// The HTTP client of one source.
pub struct ApiClient {
    http: reqwest::Client,
    base: reqwest::Url,
    key: Secret,
    /// Masked in every error message, with the key.
    proxy_password: Option<String>,
    limiter: Arc<Limiter>,
    /// The pool's cap on requests in flight across every source.
    in_flight: Arc<tokio::sync::Semaphore>,
    /// The pool's `max_requests_in_flight` and live tenants: the share.
    cap: usize,
    tenants: Arc<AtomicUsize>,
    /// This tenant's requests in flight.
    own: Own,
    max_body: u64,
}

impl Drop for ApiClient {
    fn drop(&mut self) {
        self.tenants.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    /// The source's limiter (shared with enrichment).
    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.limiter
    }

    /// `base_url` with `segments` appended (each percent-encoded).
    pub fn url(&self, segments: &[&str]) -> reqwest::Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("validated base_url has a path")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// One rate-limited GET; returns a 2xx response, read whole.
    pub async fn get(&self, url: reqwest::Url) -> Result<Response, HttpError> {
        self.limiter.until_ready().await;
        let sent = std::time::Instant::now();
        let (body, headers) = self.get_now(url).await?;
        Ok(Response {
            body,
            headers,
            latency: sent.elapsed(),
        })
    }

    /// One GET the limiter already admitted.
    async fn get_now(&self, url: reqwest::Url) -> Result<(bytes::Bytes, HeaderMap), HttpError> {
        // Both held until the body is read: the connection is busy until
        // then. The tenant's share first, so that a hung tenant's requests
        // wait here, not in the cap's queue ahead of the other tenants.
        let _own = self.own_slot().await;
        let _in_flight = self
            .in_flight
            .acquire()
            .await
            .expect("the in-flight semaphore is never closed");
        let response = self
            .http
            .get(url.clone())
            .bearer_auth(self.key.expose())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| self.request_error(&e, &url))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = self.read_body(response).await?;
        if status.is_success() {
            return Ok((body, headers));
        }
        // An error body may echo the request (a proxy or gateway quoting
        // the Authorization header): never let the key reach a log.
        let message = error_message(&body).map(|m| self.mask(redact_tokens(&m)));
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                HttpError::Unauthorized { status, message }
            }
            StatusCode::TOO_MANY_REQUESTS => HttpError::RateLimited { retry_after },
            StatusCode::REQUEST_TIMEOUT => HttpError::Server {
                status,
                message,
                retry_after,
            },
            s if s.is_server_error() => HttpError::Server {
                status,
                message,
                retry_after,
            },
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
                HttpError::BadRequest { status, message }
            }
            StatusCode::NOT_FOUND => HttpError::NotFound {
                url: url.to_string(),
                message,
            },
            _ => HttpError::Unexpected {
                status,
                url: url.to_string(),
                message,
            },
        })
    }

    /// Waits until this tenant has fewer requests in flight than its share.
    async fn own_slot(&self) -> OwnSlot<'_> {
        loop {
            {
                let mut held = self.own.held.lock().unwrap_or_else(|p| p.into_inner());
                if *held < share(self.cap, self.tenants.load(Ordering::Relaxed)) {
                    *held += 1;
                    return OwnSlot(&self.own);
                }
            }
            self.own.freed.notified().await;
        }
    }

    /// Classifies a failed request: a refused redirect, or a transport
    /// error with its cause chain and a hint, secrets masked.
    fn request_error(&self, error: &reqwest::Error, url: &reqwest::Url) -> HttpError {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(e) = cause {
            if let Some(redirect) = e.downcast_ref::<CrossOriginRedirect>() {
                return HttpError::Redirect {
                    from: url.origin().ascii_serialization(),
                    to: redirect.to.clone(),
                };
            }
            cause = e.source();
        }
        let mut message = error_chain(error);
        message.push_str(tls_hint(&message));
        HttpError::Transport {
            message: self.mask(message),
            timeout: error.is_timeout(),
        }
    }

    /// `text` with the API key and the proxy password replaced by `***`.
    fn mask(&self, mut text: String) -> String {
        let secrets = [Some(self.key.expose()), self.proxy_password.as_deref()];
        for secret in secrets.into_iter().flatten() {
            if !secret.is_empty() && text.contains(secret) {
                text = text.replace(secret, "***");
            }
        }
        text
    }

    /// Reads a body of at most `max_body` bytes: a larger (or endless) one
    /// is cut off with [`HttpError::TooLarge`] instead of filling memory.
    async fn read_body(&self, mut response: reqwest::Response) -> Result<bytes::Bytes, HttpError> {
        let limit = self.max_body;
        if response.content_length().is_some_and(|len| len > limit) {
            return Err(HttpError::TooLarge { limit });
        }
        let mut body = bytes::BytesMut::with_capacity(
            response.content_length().unwrap_or(64 << 10).min(limit) as usize,
        );
        let url = response.url().clone();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.request_error(&e, &url))?
        {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(HttpError::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }
}

/// The `message` of an error body (`{"error":"…","message":"…"}`), made safe
/// for a log line: control characters dropped, at most 200 characters.
fn error_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let text = v
        .get("message")
        .and_then(|m| m.as_str())
        .or_else(|| v.get("error").and_then(|m| m.as_str()))?;
    Some(text.chars().filter(|c| !c.is_control()).take(200).collect())
}

/// `text` with credentials a server may echo replaced by `***`: the value
/// after `Bearer `/`Basic ` and after an `Authorization:`/`api_key=`-style
/// label, whatever key it was.
fn redact_tokens(text: &str) -> String {
    const LABELS: &[&str] = &[
        "bearer ",
        "basic ",
        "authorization:",
        "authorization=",
        "api_key=",
        "api_key:",
        "apikey=",
        "token=",
        "x-api-key:",
    ];
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let label = LABELS.iter().find(|l| lower[i..].starts_with(**l));
        match label {
            Some(label) => {
                let mut j = i + label.len();
                out.push_str(&text[i..j]);
                // Keep a scheme word after `Authorization:`, mask the rest.
                while text[j..].starts_with(' ') {
                    out.push(' ');
                    j += 1;
                }
                let end = text[j..]
                    .find(|c: char| {
                        c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ';' | '&' | '}')
                    })
                    .map_or(text.len(), |e| j + e);
                let word = &text[j..end];
                if matches!(word.to_ascii_lowercase().as_str(), "bearer" | "basic") {
                    // `Authorization: Bearer …`: the scheme's label masks it.
                    i = j;
                    continue;
                }
                if end > j {
                    out.push_str("***");
                }
                i = end;
            }
            None => {
                let c = text[i..].chars().next().expect("in bounds");
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    out
}

/// `Retry-After`: delay-seconds or an HTTP date (RFC 9110 §10.2.3), capped
/// at [`MAX_RETRY_AFTER`].
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = DateTime::parse_from_rfc2822(value)
            .ok()?
            .with_timezone(&Utc);
        (at - Utc::now()).to_std().unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_connections_add_at_most_the_cap_or_one_per_host() {
        let one_host = IdlePolicy::new(256, 1);
        assert_eq!((one_host.per_host, one_host.timeout), (256, IDLE_TIMEOUT));
        assert_eq!(IdlePolicy::new(256, 5).per_host, 51);
        let crowded = IdlePolicy::new(256, 5_000);
        assert_eq!(
            (crowded.per_host, crowded.timeout),
            (1, CROWDED_IDLE_TIMEOUT)
        );
        for cap in 1..64 {
            for hosts in 1..128 {
                let idle = IdlePolicy::new(cap, hosts);
                assert!(idle.per_host * hosts <= cap.max(hosts));
            }
        }
    }

    #[test]
    fn the_cap_is_shared_out_and_every_tenant_keeps_one_request() {
        assert_eq!(share(256, 1), 256);
        assert_eq!(share(256, 0), 256);
        assert_eq!(share(256, 100), 2);
        assert_eq!(share(4, 5), 1);
        assert_eq!(share(256, 5_000), 1);
        // While tenants ≤ cap, the shares never add up to more than the cap.
        for cap in 1..64 {
            for tenants in 1..=cap {
                assert!(share(cap, tenants) * tenants <= cap);
            }
        }
    }

    #[test]
    fn echoed_credentials_are_masked() {
        for (echo, secret) in [
            ("invalid token: Bearer sk_live_abc123", "sk_live_abc123"),
            (
                "Authorization: Bearer eyJhbGciOi.x.y rejected",
                "eyJhbGciOi",
            ),
            ("header authorization=Basic dXNlcjpwYXNz;", "dXNlcjpwYXNz"),
            ("bad api_key=k-999&x=1", "k-999"),
            ("{\"auth\":\"BEARER tok\"}", "tok\""),
        ] {
            let masked = redact_tokens(echo);
            assert!(!masked.contains(secret), "{echo} → {masked}");
            assert!(masked.contains("***"), "{masked}");
        }
        assert_eq!(
            redact_tokens("plain message, nothing to hide"),
            "plain message, nothing to hide"
        );
    }

    #[test]
    fn retry_after_in_both_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("999999"), Some(MAX_RETRY_AFTER));
        let soon = (Utc::now() + chrono::Duration::seconds(5)).to_rfc2822();
        let d = parse_retry_after(&soon).unwrap();
        assert!(
            d <= Duration::from_secs(5) && d >= Duration::from_secs(3),
            "{d:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn error_bodies_are_sanitized() {
        assert_eq!(
            error_message(
                br#"{"error":"validation_error","message":"limit must be <= 100\n<13>forged"}"#
            )
            .as_deref(),
            Some("limit must be <= 100<13>forged")
        );
        assert_eq!(
            error_message(br#"{"error":"not_found"}"#).as_deref(),
            Some("not_found")
        );
        assert_eq!(error_message(b"<html>"), None);
    }
}
