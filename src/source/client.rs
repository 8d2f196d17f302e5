//! HTTP access to one tenant: rate limiting, the Bearer key, and the
//! classification of every failure into retry-or-stop.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::page::{self, Page, PageError};
use crate::config::{Secret, SourceConfig};
use crate::rate_limit::Limiter;

/// Longest `Retry-After` honoured; a larger value is capped so that a broken
/// header can not park a source for days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(900);

/// The query of one page.
#[derive(Debug, Clone)]
pub struct PageQuery {
    /// `since`, sent as RFC 3339 with milliseconds.
    pub since: DateTime<Utc>,
    /// `limit`.
    pub limit: u32,
    /// `offset`.
    pub offset: u64,
    /// `action`, when exactly one action is configured.
    pub action: Option<String>,
}

/// A fetched page with the server's clock reading.
#[derive(Debug)]
pub struct Fetched {
    /// The parsed body.
    pub page: Page,
    /// The response's `Date` header, when present.
    pub server_date: Option<DateTime<Utc>>,
}

/// Why a request failed, and whether to retry.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
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
    /// 404 and other unexpected 4xx: the URL is wrong. The source stops.
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
    /// Connection refused or reset, timeout, body cut off: retry.
    #[error("request failed: {0}")]
    Transport(#[source] reqwest::Error),
    /// The body is not a usable page: retry.
    #[error(transparent)]
    Body(#[from] PageError),
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

impl FetchError {
    /// Whether retrying can help; `false` stops the source.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            FetchError::RateLimited { .. }
                | FetchError::Server { .. }
                | FetchError::Transport(_)
                | FetchError::Body(_)
                | FetchError::TooLarge { .. }
        )
    }

    /// The server's requested wait.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            FetchError::RateLimited { retry_after } | FetchError::Server { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            FetchError::Unauthorized { .. } => "unauthorized",
            FetchError::BadRequest { .. } => "bad_request",
            FetchError::Unexpected { .. } => "unexpected_status",
            FetchError::RateLimited { .. } => "rate_limited",
            FetchError::Server { .. } => "server_error",
            FetchError::Transport(e) if e.is_timeout() => "timeout",
            FetchError::Transport(_) => "transport",
            FetchError::Body(_) => "bad_body",
            FetchError::TooLarge { .. } => "too_large",
        }
    }
}

/// The HTTP client of one source.
pub struct ApiClient {
    http: reqwest::Client,
    base: reqwest::Url,
    key: Secret,
    limiter: Arc<Limiter>,
    max_body: u64,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    /// A client for `config`, throttled by `limiter`.
    pub fn new(config: &SourceConfig, limiter: Arc<Limiter>) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("auditfwd/", env!("CARGO_PKG_VERSION")))
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .https_only(!config.allow_http)
            .build()?;
        Ok(Self {
            http,
            base: config.base_url.clone(),
            key: config.api_key.clone(),
            limiter,
            max_body: config.max_body,
        })
    }

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

    /// One rate-limited GET; returns the body of a 2xx response.
    pub async fn get(&self, url: reqwest::Url) -> Result<(bytes::Bytes, HeaderMap), FetchError> {
        self.limiter.until_ready().await;
        let response = self
            .http
            .get(url.clone())
            .bearer_auth(self.key.expose())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(FetchError::Transport)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = self.read_body(response).await?;
        if status.is_success() {
            return Ok((body, headers));
        }
        let message = error_message(&body);
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                FetchError::Unauthorized { status, message }
            }
            StatusCode::TOO_MANY_REQUESTS => FetchError::RateLimited { retry_after },
            StatusCode::REQUEST_TIMEOUT => FetchError::Server {
                status,
                message,
                retry_after,
            },
            s if s.is_server_error() => FetchError::Server {
                status,
                message,
                retry_after,
            },
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
                FetchError::BadRequest { status, message }
            }
            _ => FetchError::Unexpected {
                status,
                url: url.to_string(),
                message,
            },
        })
    }

    /// Reads a body of at most `max_body` bytes: a larger (or endless) one
    /// is cut off with [`FetchError::TooLarge`] instead of filling memory.
    async fn read_body(&self, mut response: reqwest::Response) -> Result<bytes::Bytes, FetchError> {
        let limit = self.max_body;
        if response.content_length().is_some_and(|len| len > limit) {
            return Err(FetchError::TooLarge { limit });
        }
        let mut body = bytes::BytesMut::with_capacity(
            response.content_length().unwrap_or(64 << 10).min(limit) as usize,
        );
        while let Some(chunk) = response.chunk().await.map_err(FetchError::Transport)? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(FetchError::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    /// Fetches one page of `/api/v1/audit-logs` (one attempt).
    pub async fn audit_page(&self, query: &PageQuery) -> Result<Fetched, FetchError> {
        let mut url = self.url(&["api", "v1", "audit-logs"]);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("since", &auditfwd_sink::format_millis(&query.since));
            q.append_pair("limit", &query.limit.to_string());
            q.append_pair("offset", &query.offset.to_string());
            if let Some(action) = &query.action {
                q.append_pair("action", action);
            }
        }
        let (body, headers) = self.get(url).await?;
        let page = page::parse(&body)?;
        let server_date = headers
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| DateTime::parse_from_rfc2822(v).ok())
            .map(|d| d.with_timezone(&Utc));
        Ok(Fetched { page, server_date })
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
