//! `[source.enrich]`, parsed and validated here, by the component that
//! uses it: the configuration ([`crate::config`]) hands the table to
//! [`RawEnrich::validate`] and prefixes the problems it reports with the
//! source's path.

use std::time::Duration;

use auditfwd_sink::ConfigProblem;
use serde::Deserialize;

use super::preset::{self, Fields, PRESETS, Preset};
use crate::values::duration;

/// `[source.enrich]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnrich {
    #[serde(default)]
    preset: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    fields: Option<Fields>,
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    customer_id: Option<String>,
    #[serde(default = "default_ttl", deserialize_with = "duration")]
    ttl: Duration,
    #[serde(default = "default_negative_ttl", deserialize_with = "duration")]
    negative_ttl: Duration,
    #[serde(default = "default_error_ttl", deserialize_with = "duration")]
    error_ttl: Duration,
    #[serde(default = "default_max_entries")]
    max_entries: usize,
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    timeout: Duration,
}

fn default_ttl() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_negative_ttl() -> Duration {
    Duration::from_secs(5 * 60)
}
fn default_error_ttl() -> Duration {
    Duration::from_secs(30)
}
fn default_max_entries() -> usize {
    10_000
}
fn default_timeout() -> Duration {
    Duration::from_secs(3)
}

/// Validated enrichment settings.
#[derive(Debug, Clone)]
pub struct EnrichConfig {
    /// The shape (a preset, possibly with `url`/`fields` overridden).
    pub preset: Preset,
    /// Base URL of the users API. Default: the source's `base_url`.
    pub base_url: Option<reqwest::Url>,
    /// `{customer_id}` in the URL template (preset `customer-scoped`).
    pub customer_id: Option<String>,
    /// How long a resolved user is reused. Default 15m.
    pub ttl: Duration,
    /// How long a 404 is remembered. Default 5m.
    pub negative_ttl: Duration,
    /// How long a user whose lookup failed is not retried. Default 30s.
    pub error_ttl: Duration,
    /// Most users kept in the cache (least recently used go first).
    /// Default 10 000.
    pub max_entries: usize,
    /// The most one batch waits for lookups (rate limiter included); what
    /// is not resolved by then is forwarded without enrichment. Default 3s.
    pub timeout: Duration,
}

impl RawEnrich {
    /// The validated settings, or every problem found (keys relative to
    /// the `[source.enrich]` table). `allow_http` is the source's: it
    /// admits an `http://` `base_url`.
    pub fn validate(self, allow_http: bool) -> Result<EnrichConfig, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let mut problem =
            |key: &str, message: String| problems.push(ConfigProblem::new(key, message));
        let base = match self.preset.as_deref() {
            Some(name) => match preset::builtin(name) {
                Some(p) => Some(p),
                None => {
                    problem(
                        "preset",
                        format!(
                            "unknown preset `{name}`; available: {} (or leave it out and set url and fields)",
                            PRESETS.join(", ")
                        ),
                    );
                    None
                }
            },
            None => {
                if self.url.is_none() || self.fields.is_none() {
                    problem(
                        "preset",
                        format!(
                            "is missing; set preset to one of {}, or describe the API with url and fields",
                            PRESETS.join(", ")
                        ),
                    );
                }
                None
            }
        };
        let preset = Preset {
            url: self
                .url
                .clone()
                .or_else(|| base.as_ref().map(|b| b.url.clone()))
                .unwrap_or_default(),
            fields: self
                .fields
                .clone()
                .or_else(|| base.as_ref().map(|b| b.fields.clone()))
                .unwrap_or_default(),
        };
        if !preset.url.is_empty() {
            if !preset.url.starts_with('/') || !preset.url.contains("{id}") {
                problem(
                    "url",
                    format!(
                        "`{}` must be a path starting with / and containing {{id}}",
                        preset.url
                    ),
                );
            }
            let stripped = preset.url.replace("{id}", "").replace("{customer_id}", "");
            if stripped.contains(['{', '}', '?', '#']) {
                problem(
                    "url",
                    "may only use the placeholders {id} and {customer_id}, and no query".into(),
                );
            }
            if preset.url.contains("{customer_id}")
                && self.customer_id.as_deref().is_none_or(str::is_empty)
            {
                problem(
                    "customer_id",
                    "is required by this URL template ({customer_id})".into(),
                );
            }
        }
        for (name, spec) in preset.fields.specs() {
            for pointer in spec.pointers() {
                if !(pointer.is_empty() || pointer.starts_with('/')) {
                    problem(
                        &format!("fields.{name}"),
                        format!("`{pointer}` is not a JSON pointer; write it like \"/user/email\""),
                    );
                }
            }
        }
        if preset.fields.specs().is_empty() && base.is_some() {
            problem("fields", "selects no field".into());
        }
        let base_url = match &self.base_url {
            None => None,
            Some(u) => match reqwest::Url::parse(u) {
                Ok(url) if url.scheme() == "https" || (url.scheme() == "http" && allow_http) => {
                    Some(url)
                }
                Ok(_) => {
                    problem(
                        "base_url",
                        "must be https (or http with allow_http = true on the source)".into(),
                    );
                    None
                }
                Err(e) => {
                    problem("base_url", format!("`{u}` is not a URL ({e})"));
                    None
                }
            },
        };
        if self.max_entries == 0 {
            problem("max_entries", "must be at least 1".into());
        }
        if self.timeout < Duration::from_millis(10) {
            problem("timeout", "must be at least 10ms".into());
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(EnrichConfig {
            preset,
            base_url,
            customer_id: self.customer_id,
            ttl: self.ttl,
            negative_ttl: self.negative_ttl,
            error_ttl: self.error_ttl,
            max_entries: self.max_entries,
            timeout: self.timeout,
        })
    }
}
