//! `[[source]]`: one tenant's audit-log API.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::http::{ProxyUrl, RawTls, TlsConfig};
use super::types::{Secret, StartAt, duration, size};
use super::{Problem, is_valid_name};
use crate::retry::RetryPolicy;

/// The API maximum for `limit`.
pub const MAX_PAGE_SIZE: u32 = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSource {
    name: String,
    base_url: String,
    #[serde(default)]
    api_key: Option<String>,
    #[serde(default)]
    api_key_file: Option<PathBuf>,
    #[serde(default = "default_page_size")]
    page_size: u32,
    #[serde(default = "default_poll_interval", deserialize_with = "duration")]
    poll_interval: Duration,
    #[serde(default = "default_lookback", deserialize_with = "duration")]
    lookback: Duration,
    #[serde(default = "default_late_sweep", deserialize_with = "duration")]
    late_sweep: Duration,
    #[serde(default = "default_start_at")]
    start_at: String,
    #[serde(default)]
    actions: Vec<String>,
    #[serde(default = "default_request_timeout", deserialize_with = "duration")]
    request_timeout: Duration,
    #[serde(default)]
    allow_http: bool,
    #[serde(default = "default_prefetch")]
    prefetch: u32,
    #[serde(default = "default_max_batches_in_flight")]
    max_batches_in_flight: u32,
    #[serde(default = "default_max_body", deserialize_with = "size")]
    max_body: u64,
    #[serde(default)]
    rate_limit: RawRateLimit,
    #[serde(default)]
    retry: RawRetry,
    #[serde(default)]
    proxy: Option<String>,
    #[serde(default)]
    tls: RawTls,
    #[serde(default)]
    enrich: Option<crate::enrich::config::RawEnrich>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    #[serde(default = "default_rps")]
    requests_per_second: u32,
    #[serde(default)]
    burst: Option<u32>,
}

impl Default for RawRateLimit {
    fn default() -> Self {
        Self {
            requests_per_second: default_rps(),
            burst: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    #[serde(default = "default_initial_backoff", deserialize_with = "duration")]
    initial_backoff: Duration,
    #[serde(default = "default_max_backoff", deserialize_with = "duration")]
    max_backoff: Duration,
}

impl Default for RawRetry {
    fn default() -> Self {
        Self {
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

fn default_page_size() -> u32 {
    MAX_PAGE_SIZE
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_lookback() -> Duration {
    Duration::from_secs(600)
}
fn default_late_sweep() -> Duration {
    Duration::from_secs(300)
}
fn default_start_at() -> String {
    "now".into()
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_prefetch() -> u32 {
    8
}
fn default_max_batches_in_flight() -> u32 {
    4
}
fn default_max_body() -> u64 {
    32 << 20
}
fn default_rps() -> u32 {
    10
}
fn default_initial_backoff() -> Duration {
    Duration::from_millis(500)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(60)
}

/// A validated source.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Unique name; used in state file names, output paths and every record.
    pub name: String,
    /// The tenant's base URL, e.g. `https://acme.peoplelensai.com`.
    pub base_url: reqwest::Url,
    /// The Bearer API key.
    pub api_key: Secret,
    /// Events per request (`limit`), at most 100. Default 100.
    pub page_size: u32,
    /// Wait between polls once caught up. Default 30s.
    pub poll_interval: Duration,
    /// How late an event may become visible after its `created_at` (plus
    /// clock skew) and still be caught. Default 10m.
    pub lookback: Duration,
    /// How often the whole lookback window is read again for late events;
    /// polls in between read only what is newer than the newest event
    /// delivered. A late event arrives at most this much (plus one pass)
    /// after it became visible. Default 5m.
    pub late_sweep: Duration,
    /// Where a source without saved state starts. Default `now`.
    pub start_at: StartAt,
    /// Server-side `action` filter; one action is sent as `action=`, several
    /// are filtered after fetching. Default: all actions.
    pub actions: Vec<String>,
    /// Timeout of one HTTP request. Default 30s.
    pub request_timeout: Duration,
    /// Permit `http://` (only for the simulator and tests). Default false.
    pub allow_http: bool,
    /// Most pages fetched ahead while a backfill is delivered; the depth
    /// follows the rate limit × the API's latency (see
    /// [`crate::source::depth`]). Default 8; 0 turns prefetching off.
    pub prefetch: u32,
    /// Most batches (pages) handed to the sinks and not yet acknowledged
    /// by all of them; they are acknowledged and checkpointed in order, and
    /// a crash sends at most these again. Default 4; 1 delivers one page at
    /// a time.
    pub max_batches_in_flight: u32,
    /// Largest response body read (bytes); a larger page is asked again
    /// with a smaller `limit`. Default 32 MiB.
    pub max_body: u64,
    /// Requests per second to this tenant, enrichment included. Default 10.
    pub requests_per_second: NonZeroU32,
    /// Burst allowance of the rate limit. Default: half of
    /// requests_per_second, rounded up.
    pub burst: NonZeroU32,
    /// Backoff for 5xx, timeouts, resets and bad bodies.
    pub retry: RetryPolicy,
    /// HTTP(S) proxy for every request of this source (enrichment
    /// included). Default: none, and then `HTTPS_PROXY`, `HTTP_PROXY`,
    /// `ALL_PROXY` and `NO_PROXY` from the environment apply.
    pub proxy: Option<ProxyUrl>,
    /// `[source.tls]`: extra trusted CAs and a client certificate. The
    /// bundled Mozilla roots and the system trust store are always trusted.
    pub tls: TlsConfig,
    /// User enrichment, when configured.
    pub enrich: Option<crate::enrich::config::EnrichConfig>,
    /// The tenant file (in `sources_dir`) the source is written in;
    /// `None`: a `[[source]]` of the main file.
    pub defined_in: Option<PathBuf>,
    /// Digest of everything above as configured (merged with
    /// `[source_defaults]`, with the files it names): a reload restarts the
    /// source only when this changed.
    pub fingerprint: super::Fingerprint,
}

impl SourceConfig {
    /// Where the tenant's API is and how to reach it: what its HTTP client
    /// ([`crate::http::HttpPool::client`]) is built from.
    pub fn endpoint(&self) -> crate::http::Endpoint<'_> {
        crate::http::Endpoint {
            base_url: &self.base_url,
            api_key: &self.api_key,
            timeout: self.request_timeout,
            allow_http: self.allow_http,
            proxy: self.proxy.as_ref().map(ProxyUrl::expose),
            extra_roots: &self.tls.extra_roots,
            identity: self.tls.identity.as_ref(),
            tls_fingerprint: self.tls.fingerprint,
            max_body: self.max_body,
        }
    }
}

impl RawSource {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Validates; reads `api_key_file` and the `[source.tls]` files
    /// (relative to the config file).
    pub(crate) fn validate(
        self,
        path: &str,
        base_dir: &Path,
        problems: &mut Vec<Problem>,
        warnings: &mut Vec<Problem>,
    ) -> Option<SourceConfig> {
        let before = problems.len();
        let mut problem = |key: &str, message: String| {
            problems.push(Problem::new(format!("{path}.{key}"), message))
        };

        if !is_valid_name(&self.name) {
            problem(
                "name",
                format!(
                    "`{}` is not a valid name; use 1-64 letters, digits, `_`, `-` or `.` (it becomes part of file names)",
                    self.name
                ),
            );
        }

        let base_url = match reqwest::Url::parse(&self.base_url) {
            Ok(url) => {
                match url.scheme() {
                    "https" => {}
                    "http" if self.allow_http => {}
                    "http" => problem(
                        "base_url",
                        "uses plain http, which would send the API key unencrypted; use https, or set allow_http = true for a local simulator".into(),
                    ),
                    other => problem("base_url", format!("scheme `{other}` is not supported; use https")),
                }
                if url.host_str().is_none() {
                    problem(
                        "base_url",
                        "has no host; write it like \"https://acme.peoplelensai.com\"".into(),
                    );
                }
                if url.query().is_some() || url.fragment().is_some() {
                    problem(
                        "base_url",
                        "must not carry a query or fragment; auditfwd adds the query itself".into(),
                    );
                }
                if !url.username().is_empty() || url.password().is_some() {
                    // It would be sent along and printed in every error.
                    problem(
                        "base_url",
                        "must not carry a user or password; the API key authenticates (api_key or api_key_file)".into(),
                    );
                }
                Some(url)
            }
            Err(e) => {
                problem(
                    "base_url",
                    format!("is not a URL ({e}); write it like \"https://acme.peoplelensai.com\""),
                );
                None
            }
        };

        let api_key = match (&self.api_key, &self.api_key_file) {
            (Some(_), Some(_)) => {
                problem(
                    "api_key",
                    "both api_key and api_key_file are set; keep one".into(),
                );
                None
            }
            (None, None) => {
                problem(
                    "api_key",
                    "is missing; set api_key = \"${ENV_VAR}\" or api_key_file = \"/path/to/key\""
                        .into(),
                );
                None
            }
            (Some(key), None) if key.trim().is_empty() => {
                problem(
                    "api_key",
                    "is empty; check the environment variable it comes from".into(),
                );
                None
            }
            (Some(key), None) => match key_problem(key.trim()) {
                None => Some(Secret::new(key.trim())),
                Some(why) => {
                    problem(
                        "api_key",
                        format!("{why}; check the value or the environment variable it comes from"),
                    );
                    None
                }
            },
            (None, Some(file)) => {
                let file = base_dir.join(file);
                match std::fs::read_to_string(&file) {
                    Ok(s) if s.trim().is_empty() => {
                        problem(
                            "api_key_file",
                            format!("{} is empty; put the API key in it", file.display()),
                        );
                        None
                    }
                    Ok(s) => match key_problem(s.trim()) {
                        None => {
                            if let Some(mode) = loose_mode(&file) {
                                warnings.push(Problem::new(
                                    format!("{path}.api_key_file"),
                                    format!(
                                        "{} has mode {mode:04o}: other users may read the API key; run `chmod 600 {}`",
                                        file.display(),
                                        file.display()
                                    ),
                                ));
                            }
                            Some(Secret::new(s.trim()))
                        }
                        Some(why) => {
                            problem(
                                "api_key_file",
                                format!(
                                    "{}: the key {why}; the file must hold the key alone, on one line",
                                    file.display()
                                ),
                            );
                            None
                        }
                    },
                    Err(e) => {
                        problem(
                            "api_key_file",
                            format!(
                                "cannot read {} ({e}); check the path and that auditfwd may read it",
                                file.display()
                            ),
                        );
                        None
                    }
                }
            }
        };

        if self.page_size < 2 || self.page_size > MAX_PAGE_SIZE {
            problem(
                "page_size",
                format!(
                    "{} is out of range; use 2 to {MAX_PAGE_SIZE} (the API accepts up to {MAX_PAGE_SIZE}, and the cursor needs two events per page to step over ties)",
                    self.page_size
                ),
            );
        }
        if self.poll_interval < Duration::from_millis(10) {
            problem(
                "poll_interval",
                "must be at least 10ms; a typical value is \"30s\"".into(),
            );
        }
        if self.request_timeout < Duration::from_millis(10) {
            problem(
                "request_timeout",
                "must be at least 10ms; a typical value is \"30s\"".into(),
            );
        }
        let start_at = match StartAt::parse(&self.start_at) {
            Ok(s) => Some(s),
            Err(e) => {
                problem("start_at", e);
                None
            }
        };
        for (i, action) in self.actions.iter().enumerate() {
            if action.is_empty() || action.chars().any(|c| c.is_whitespace() || c.is_control()) {
                problem(
                    &format!("actions[{i}]"),
                    format!(
                        "`{}` is not an action name such as \"USER_LOGIN\"",
                        action.escape_debug()
                    ),
                );
            }
        }
        if self.prefetch > 16 {
            problem(
                "prefetch",
                format!("{} is too many; use 0 to 16", self.prefetch),
            );
        }
        if !(1..=16).contains(&self.max_batches_in_flight) {
            problem(
                "max_batches_in_flight",
                format!(
                    "{} is out of range; use 1 to 16 (1: one batch at a time)",
                    self.max_batches_in_flight
                ),
            );
        }
        if self.max_body < 4096 {
            problem(
                "max_body",
                format!(
                    "{} bytes is too small for one page; use at least 4096, e.g. \"32MiB\"",
                    self.max_body
                ),
            );
        }
        let rps = NonZeroU32::new(self.rate_limit.requests_per_second);
        if rps.is_none() {
            problem(
                "rate_limit.requests_per_second",
                "must be at least 1".into(),
            );
        }
        // Half the rate by default: an API's own limiter usually allows a
        // burst of about its rate, and the half left keeps requests that
        // arrive a little closer together than they were sent (network and
        // scheduling jitter) from drawing a 429 at full speed.
        let burst = NonZeroU32::new(
            self.rate_limit
                .burst
                .unwrap_or(self.rate_limit.requests_per_second.div_ceil(2)),
        );
        if burst.is_none() {
            problem("rate_limit.burst", "must be at least 1".into());
        }
        if self.retry.initial_backoff.is_zero() {
            problem(
                "retry.initial_backoff",
                "must be greater than 0, e.g. \"500ms\"".into(),
            );
        }
        if self.retry.max_backoff < self.retry.initial_backoff {
            problem(
                "retry.max_backoff",
                "must not be shorter than retry.initial_backoff".into(),
            );
        }

        let proxy = self
            .proxy
            .as_deref()
            .and_then(|p| ProxyUrl::parse(p).map_err(|e| problem("proxy", e)).ok());
        let tls = self.tls.validate(base_dir, &mut problem);

        let enrich = self.enrich.and_then(|e| {
            e.validate(self.allow_http)
                .map_err(|found| {
                    for p in found {
                        problem(&format!("enrich.{}", p.key), p.message);
                    }
                })
                .ok()
        });

        if problems.len() > before {
            return None;
        }
        Some(SourceConfig {
            name: self.name,
            base_url: base_url?,
            api_key: api_key?,
            page_size: self.page_size,
            poll_interval: self.poll_interval,
            lookback: self.lookback,
            late_sweep: self.late_sweep,
            start_at: start_at?,
            actions: self.actions,
            request_timeout: self.request_timeout,
            allow_http: self.allow_http,
            prefetch: self.prefetch,
            max_batches_in_flight: self.max_batches_in_flight,
            max_body: self.max_body,
            requests_per_second: rps?,
            burst: burst?,
            retry: RetryPolicy {
                initial: self.retry.initial_backoff,
                max: self.retry.max_backoff,
            },
            proxy,
            tls: tls?,
            enrich,
            defined_in: None,
            fingerprint: super::Fingerprint::default(),
        })
    }
}

/// Why `key` can not be sent as a Bearer token, if it can not: it must be
/// one line of visible ASCII (an HTTP header value). Never quotes the key.
fn key_problem(key: &str) -> Option<&'static str> {
    if key.contains(['\n', '\r']) {
        Some("holds more than one line")
    } else if !key.bytes().all(|b| b.is_ascii_graphic()) {
        Some("contains spaces, control or non-ASCII characters an HTTP header can not carry")
    } else {
        None
    }
}

/// The file's permission bits when group or others may read it.
fn loose_mode(file: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(file).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}
