//! The audit-log endpoint: the query of one page, its fetch through the
//! tenant's [`ApiClient`] (rate limit, key, status classification, see
//! [`crate::http`]) and its parsing, and why a fetch failed.

use chrono::{DateTime, Utc};

use super::page::{self, Page, PageError};
use crate::http::{ApiClient, HttpError};

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
    /// From sending the request to the last byte of the body (the rate
    /// limiter's wait excluded): what sizes the prefetch depth.
    pub latency: std::time::Duration,
}

/// Why fetching a page failed, and whether to retry.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The request failed, or the API answered with an error.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The body is not a usable page: retry.
    #[error(transparent)]
    Body(#[from] PageError),
}

impl FetchError {
    /// Whether retrying can help; `false` stops the source.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Http(e) => e.is_transient(),
            FetchError::Body(_) => true,
        }
    }

    /// The server's requested wait.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            FetchError::Http(e) => e.retry_after(),
            FetchError::Body(_) => None,
        }
    }

    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            FetchError::Http(e) => e.label(),
            FetchError::Body(_) => "bad_body",
        }
    }
}

/// Fetches one page of `/api/v1/audit-logs` (one attempt).
pub async fn audit_page(client: &ApiClient, query: &PageQuery) -> Result<Fetched, FetchError> {
    let mut url = client.url(&["api", "v1", "audit-logs"]);
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("since", &auditfwd_sink::format_millis(&query.since));
        q.append_pair("limit", &query.limit.to_string());
        q.append_pair("offset", &query.offset.to_string());
        if let Some(action) = &query.action {
            q.append_pair("action", action);
        }
    }
    let response = client.get(url).await?;
    let page = page::parse(&response.body)?;
    let server_date = response
        .headers
        .get(reqwest::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| DateTime::parse_from_rfc2822(v).ok())
        .map(|d| d.with_timezone(&Utc));
    Ok(Fetched {
        page,
        server_date,
        latency: response.latency,
    })
}
