//! 401/403 stop that source with a clear error and a red health,
//! other sources go on; the API key never appears in errors or health;
//! 429 waits for `Retry-After`; metrics and health are served over HTTP.

use std::time::Duration;

use auditfwd::app::App;
use auditfwd::telemetry::Status;
use auditfwd_sim::SimConfig;
use auditfwd_testkit::{free_port, wait_for};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_key_stops_only_its_source() {
    let sim = tenant(SimConfig::quiet(250)).await;
    let dir = tempfile::tempdir().unwrap();
    let bad = format!(
        r#"
[[source]]
name = "wrong-key"
base_url = "{}"
api_key = "not-the-key-s3cr3t"
allow_http = true
start_at = "beginning"
"#,
        sim.base_url()
    );
    let port = free_port();
    let telemetry = format!("[telemetry]\nlisten = \"127.0.0.1:{port}\"\n");
    let setup = Setup {
        extra_source: &bad,
        extra: &telemetry,
        ..Setup::new(dir.path())
    };
    let fwd = Forwarder::with_setup(&sim, dir.path(), &setup);
    let truth = sim.truth();
    let out = dir.path().join("out");
    assert!(all_delivered(&truth, &out, Duration::from_secs(10)).await);
    assert!(
        wait_for(Duration::from_secs(5), || matches!(
            fwd.health.snapshot().get("source:wrong-key"),
            Some(Status::Failed(_))
        ))
        .await,
        "{:?}",
        fwd.health.snapshot()
    );
    let health = fwd.health.snapshot();
    let Some(Status::Failed(message)) = health.get("source:wrong-key") else {
        unreachable!()
    };
    assert!(
        message.contains("refused the API key (401 Unauthorized: Invalid or missing API key"),
        "{message}"
    );
    assert!(message.contains("check api_key"), "{message}");
    assert!(!message.contains("s3cr3t"), "the key leaked: {message}");
    // The tenant echoed the key it refused; it is masked.
    assert!(message.contains("Authorization: Bearer ***"), "{message}");
    assert_eq!(health.get("source:tenant"), Some(&Status::Ok));
    assert!(!fwd.health.is_healthy());
    assert!(!fwd.metrics.encode().contains("s3cr3t"));

    // The same over HTTP, as a monitoring system sees it.
    let health = reqwest::get(format!("http://127.0.0.1:{port}/health"))
        .await
        .unwrap();
    assert_eq!(health.status(), 503);
    let body: serde_json::Value = serde_json::from_str(&health.text().await.unwrap()).unwrap();
    assert_eq!(body["healthy"], false);
    assert_eq!(body["components"]["source:wrong-key"]["status"], "failed");
    assert_eq!(body["components"]["source:tenant"]["status"], "ok");
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let delivered = deliverable(&truth).len();
    assert!(
        metrics.contains(&format!(
            "auditfwd_events_delivered_total{{source=\"tenant\"}} {delivered}"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("auditfwd_source_up{source=\"wrong-key\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "auditfwd_api_requests_total{source=\"wrong-key\",outcome=\"unauthorized\"} 1"
        ),
        "{metrics}"
    );
    assert!(!metrics.contains("s3cr3t"));
    fwd.stop()
        .await
        .expect("the healthy source shut down cleanly");
    assert_exactly_once(&truth, &out);
    assert!(!read_lines(&out).iter().any(|l| l["source"] == "wrong-key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_by_the_api_it_waits_for_retry_after() {
    // The tenant allows 4 requests per second and answers 429 with
    // Retry-After beyond that; the forwarder's own quota is far higher.
    let sim = tenant(SimConfig {
        rate_limit: Some(4),
        ..SimConfig::quiet(1200)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let fwd = Forwarder::for_tenant(&sim, dir.path());
    let truth = sim.truth();
    let out = dir.path().join("out");
    stop_once_delivered(fwd, &truth, &out, Duration::from_secs(30)).await;
    let stats = sim.stats();
    // Honouring it draws about one 429 per second of backfill (5 seen);
    // retrying at the configured 5ms-200ms backoff instead draws 60-80.
    assert!(stats.throttled <= stats.pages_served, "{stats:?}");
    assert!(stats.throttled > 0, "the limit was reached: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_reported_with_its_cause() {
    // Nothing listens on the port: the health message carries the whole
    // cause chain, not just "error sending request".
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let text = format!(
        r#"
[state]
dir = "{dir}/state"

[[source]]
name = "closed"
base_url = "http://127.0.0.1:{port}"
api_key = "k-closed-s3cr3t"
allow_http = true
retry = {{ initial_backoff = "5ms", max_backoff = "50ms" }}

[[sink]]
name = "out"
type = "stdout"
"#,
        dir = dir.path().display()
    );
    let fwd = Forwarder::start(App::new(parse_config(&text)));
    let degraded = || match fwd.health.snapshot().get("source:closed") {
        Some(Status::Degraded(m)) => Some(m.clone()),
        _ => None,
    };
    assert!(
        wait_for(Duration::from_secs(10), || degraded().is_some()).await,
        "{:?}",
        fwd.health.snapshot()
    );
    let message = degraded().unwrap();
    assert!(
        message.contains(&format!(
            "error sending request for url (http://127.0.0.1:{port}/api/v1/audit-logs?"
        )),
        "{message}"
    );
    assert!(message.contains("tcp connect error"), "{message}");
    assert!(message.contains("Connection refused"), "{message}");
    assert!(!message.contains("s3cr3t"), "the key leaked: {message}");
    assert!(fwd.is_running(), "a refused connection is retried");
    fwd.stop().await.unwrap();
}
