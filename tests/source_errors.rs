//! SPEC §6: 401/403 stop that source with a clear error and a red health,
//! other sources go on; the API key never appears in errors or health.

use std::time::Duration;

use auditfwd::app::App;
use auditfwd::simulator::SimConfig;
use auditfwd::telemetry::Status;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_key_stops_only_its_source() {
    let sim = tenant(SimConfig {
        backlog: 250,
        insert_rate: 0.0,
        ..SimConfig::default()
    })
    .await;
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
    let setup = Setup {
        extra_source: &bad,
        ..Setup::new(dir.path())
    };
    let fwd = Forwarder::start(App::new(parse_config(&config_text(
        &sim,
        dir.path(),
        &setup,
    ))));
    let truth = sim.truth();
    let out = dir.path().join("out");
    assert!(
        wait_for(Duration::from_secs(10), || compare(
            &truth,
            &id_counts(&read_lines(&out))
        )
        .missing
        .is_empty())
        .await
    );
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
        message.contains("refused the API key (401 Unauthorized: Invalid or missing API key)"),
        "{message}"
    );
    assert!(message.contains("check api_key"), "{message}");
    assert!(!message.contains("s3cr3t"), "the key leaked: {message}");
    assert_eq!(health.get("source:tenant"), Some(&Status::Ok));
    assert!(!fwd.health.is_healthy());
    assert!(!fwd.metrics.encode().contains("s3cr3t"));
    fwd.stop()
        .await
        .expect("the healthy source shut down cleanly");
    compare(&truth, &id_counts(&read_lines(&out))).assert_exact();
    assert!(!read_lines(&out).iter().any(|l| l["source"] == "wrong-key"));
}
