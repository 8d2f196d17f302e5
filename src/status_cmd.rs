//! `auditfwd status`: asks the running daemon, over its telemetry listener,
//! how every tenant is doing, and prints the few an operator should look
//! at among thousands: the N furthest behind and every one not ok.
//!
//! It reads `/readyz` (each component's status and reason) and `/metrics`
//! (`auditfwd_cursor_lag_seconds` and `auditfwd_events_delivered_total`
//! per source); the state files are not touched, so it is safe at any time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use crate::config::Config;

/// Why the daemon could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The configuration has no telemetry listener to ask.
    #[error(
        "telemetry.listen is not set in this configuration, so the daemon serves no status; add [telemetry] listen = \"127.0.0.1:9898\" and restart it (or use `auditfwd state show`, which reads the state files)"
    )]
    NoListener,
    /// The listener's port is chosen at start and not known here.
    #[error(
        "telemetry.listen is {addr}: port 0 is picked at start and unknown to this command; set a fixed port"
    )]
    EphemeralPort {
        /// The configured address.
        addr: SocketAddr,
    },
    /// Nothing answered.
    #[error(
        "no auditfwd daemon answers at {url} ({message}); is it running with this configuration?"
    )]
    Unreachable {
        /// What was asked.
        url: String,
        /// The cause.
        message: String,
    },
    /// Something answered, but not like auditfwd's listener.
    #[error("{url} answered {what}; is it auditfwd's telemetry listener?")]
    Unexpected {
        /// What was asked.
        url: String,
        /// What came back.
        what: String,
    },
}

/// One source as the daemon reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceStatus {
    /// `ok`, `degraded` or `failed` (`-` when not reported yet).
    pub status: String,
    /// Why, when not ok.
    pub detail: Option<String>,
    /// `auditfwd_cursor_lag_seconds`.
    pub lag_seconds: Option<f64>,
    /// `auditfwd_events_delivered_total` since the daemon started.
    pub delivered: Option<f64>,
}

/// The address to ask for `listen` (a wildcard listener is asked on
/// loopback).
fn target(config: &Config) -> Result<SocketAddr, StatusError> {
    let mut addr = config.telemetry.listen.ok_or(StatusError::NoListener)?;
    if addr.port() == 0 {
        return Err(StatusError::EphemeralPort { addr });
    }
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    Ok(addr)
}

async fn fetch(http: &reqwest::Client, url: &str) -> Result<(u16, String), StatusError> {
    let unreachable = |e: reqwest::Error| StatusError::Unreachable {
        url: url.to_string(),
        message: crate::http::error_chain(&e),
    };
    let response = http.get(url).send().await.map_err(unreachable)?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(unreachable)?;
    Ok((status, body))
}

/// Every source's status, by name, from the daemon of `config`.
pub async fn query(config: &Config) -> Result<BTreeMap<String, SourceStatus>, StatusError> {
    let addr = target(config)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()
        .map_err(|e| StatusError::Unreachable {
            url: format!("http://{addr}"),
            message: e.to_string(),
        })?;
    let mut sources: BTreeMap<String, SourceStatus> = config
        .sources
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                SourceStatus {
                    status: "-".into(),
                    ..SourceStatus::default()
                },
            )
        })
        .collect();

    let url = format!("http://{addr}/readyz");
    let (code, body) = fetch(&http, &url).await?;
    let ready: serde_json::Value =
        serde_json::from_str(&body).map_err(|_| StatusError::Unexpected {
            url: url.clone(),
            what: format!("{code} with a body that is not JSON"),
        })?;
    let components = ready["components"]
        .as_object()
        .ok_or(StatusError::Unexpected {
            url,
            what: format!("{code} without `components`"),
        })?;
    for (component, value) in components {
        let Some(name) = component.strip_prefix("source:") else {
            continue;
        };
        let entry = sources.entry(name.to_string()).or_default();
        entry.status = value["status"].as_str().unwrap_or("-").to_string();
        entry.detail = value["detail"].as_str().map(str::to_string);
    }

    let url = format!("http://{addr}/metrics");
    let (code, body) = fetch(&http, &url).await?;
    if code != 200 {
        return Err(StatusError::Unexpected {
            url,
            what: code.to_string(),
        });
    }
    for (name, value) in samples(&body, "auditfwd_cursor_lag_seconds") {
        sources.entry(name).or_default().lag_seconds = Some(value);
    }
    for (name, value) in samples(&body, "auditfwd_events_delivered_total") {
        sources.entry(name).or_default().delivered = Some(value);
    }
    Ok(sources)
}

/// `(source, value)` of every sample of `metric` labelled only by source.
fn samples<'a>(text: &'a str, metric: &'a str) -> impl Iterator<Item = (String, f64)> + 'a {
    text.lines().filter_map(move |line| {
        let rest = line.strip_prefix(metric)?.strip_prefix("{source=\"")?;
        let (labels, value) = rest.rsplit_once(' ')?;
        let name = labels.strip_suffix("\"}")?;
        // Label values escape `\`, `"` and newlines.
        let name = name
            .replace("\\\"", "\"")
            .replace("\\n", "\n")
            .replace("\\\\", "\\");
        Some((name, value.parse().ok()?))
    })
}

/// `12.3s`, `4m05s`, `3h20m`, `2d07h`.
fn lag_text(lag: Option<f64>) -> String {
    match lag {
        None => "-".into(),
        Some(secs) if secs < 60.0 => format!("{:.1}s", secs.max(0.0)),
        Some(secs) => {
            let secs = secs as u64;
            match secs {
                _ if secs < 3600 => format!("{}m{:02}s", secs / 60, secs % 60),
                _ if secs < 86_400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
                _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3600),
            }
        }
    }
}

/// The report: counts, the `top` sources furthest behind, every source
/// not ok (furthest behind first).
pub fn report(sources: &BTreeMap<String, SourceStatus>, top: usize) -> String {
    let mut by_lag: Vec<(&String, &SourceStatus)> = sources.iter().collect();
    by_lag.sort_by(|a, b| {
        let lag = |s: &SourceStatus| s.lag_seconds.unwrap_or(f64::INFINITY);
        lag(b.1).total_cmp(&lag(a.1)).then_with(|| a.0.cmp(b.0))
    });
    let count = |status: &str| sources.values().filter(|s| s.status == status).count();
    let mut out = String::new();
    writeln!(
        out,
        "{} sources: {} ok, {} degraded, {} failed, {} not reported yet",
        sources.len(),
        count("ok"),
        count("degraded"),
        count("failed"),
        sources
            .values()
            .filter(|s| !matches!(s.status.as_str(), "ok" | "degraded" | "failed"))
            .count()
    )
    .ok();
    let width = sources.keys().map(|k| k.len()).max().unwrap_or(6).max(6);
    let table = |out: &mut String, rows: &[(&String, &SourceStatus)]| {
        writeln!(
            out,
            "{:<width$}  {:>9}  {:>10}  {:<8}  DETAIL",
            "SOURCE", "LAG", "DELIVERED", "STATUS"
        )
        .ok();
        for (name, s) in rows {
            writeln!(
                out,
                "{:<width$}  {:>9}  {:>10}  {:<8}  {}",
                name,
                lag_text(s.lag_seconds),
                s.delivered.map_or("-".into(), |d| format!("{d:.0}")),
                s.status,
                s.detail.as_deref().unwrap_or("")
            )
            .ok();
        }
    };
    let shown = top.min(by_lag.len());
    writeln!(out, "\nfurthest behind ({shown} of {}):", by_lag.len()).ok();
    table(&mut out, &by_lag[..shown]);
    let not_ok: Vec<_> = by_lag
        .iter()
        .filter(|(_, s)| s.status != "ok")
        .copied()
        .collect();
    if not_ok.is_empty() {
        writeln!(out, "\nevery source is ok").ok();
    } else {
        writeln!(out, "\nnot ok ({}):", not_ok.len()).ok();
        table(&mut out, &not_ok);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_read_by_source() {
        let text = "# HELP x\nauditfwd_cursor_lag_seconds{source=\"a\"} 1.5\nauditfwd_cursor_lag_seconds{source=\"b\\\"c\"} 30\nauditfwd_cursor_lag_seconds_other{source=\"z\"} 1\n";
        let got: Vec<_> = samples(text, "auditfwd_cursor_lag_seconds").collect();
        assert_eq!(got, [("a".to_string(), 1.5), ("b\"c".to_string(), 30.0)]);
    }

    #[test]
    fn the_report_lists_the_furthest_behind_and_every_one_not_ok() {
        let mut sources = BTreeMap::new();
        for (name, lag, status) in [
            ("a", 5.0, "ok"),
            ("b", 500.0, "ok"),
            ("c", 1.0, "failed"),
            ("d", 90.0, "ok"),
        ] {
            sources.insert(
                name.to_string(),
                SourceStatus {
                    status: status.into(),
                    detail: (status != "ok").then(|| "the API refused the API key".into()),
                    lag_seconds: Some(lag),
                    delivered: Some(3.0),
                },
            );
        }
        let text = report(&sources, 2);
        let behind = text.split("not ok").next().unwrap();
        assert!(
            behind.contains("\nb  ") && behind.contains("\nd  "),
            "{text}"
        );
        assert!(!behind.contains("\na  "), "{text}");
        assert!(text.contains("not ok (1):"), "{text}");
        assert!(text.contains("refused the API key"), "{text}");
        assert!(
            text.contains("4 sources: 3 ok, 0 degraded, 1 failed"),
            "{text}"
        );
    }
}
