//! Issue 14, fair under stress: one tenant's hanging API, 429 storm or
//! revoked key never slows the others. Each tenant holds at most its
//! share of `limits.max_requests_in_flight` (`auditfwd::http`), so tenants
//! stuck in a 30 s hang with pages fetched ahead can not take the permits
//! a healthy tenant needs.

use std::time::{Duration, Instant};

use auditfwd::app::App;
use auditfwd::telemetry::RequestLabel;
use auditfwd_sim::{SimConfig, Simulator, Verdict};
use auditfwd_testkit::wait_for;

use crate::support::*;

/// One `[[source]]` table for `sim`, named `name`, with `key` as its key.
fn source(name: &str, sim: &Simulator, key: &str, timeout: &str) -> String {
    format!(
        "\n[[source]]\nname = \"{name}\"\nbase_url = \"{}\"\napi_key = \"{key}\"\nallow_http = true\nstart_at = \"beginning\"\npage_size = 100\npoll_interval = \"200ms\"\nlookback = \"4s\"\nlate_sweep = \"1s\"\nrequest_timeout = \"{timeout}\"\nrate_limit = {{ requests_per_second = 1000, burst = 100 }}\nretry = {{ initial_backoff = \"5ms\", max_backoff = \"200ms\" }}\n",
        sim.base_url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_stuck_in_a_30s_hang_cost_a_healthy_tenant_nothing() {
    // Two tenants in a backfill fetch ahead (slow answers: the prefetch
    // depth grows to 1 + 8), then their APIs hang on every request.
    let backfill = || SimConfig {
        latency: Duration::from_millis(40),
        ..SimConfig::quiet(20_000)
    };
    let hung = [tenant(backfill()).await, tenant(backfill()).await];
    // A 429 storm and a revoked key.
    let storm = tenant(SimConfig {
        throttle_rate: 1.0,
        ..SimConfig::default()
    })
    .await;
    let revoked = tenant(SimConfig::default()).await;
    // The healthy tenant: live inserts, read as they come.
    let healthy = tenant(SimConfig {
        backlog: 0,
        insert_rate: 100.0,
        ..SimConfig::default()
    })
    .await;

    let dir = tempfile::tempdir().unwrap();
    let mut text = format!(
        "[limits]\nmax_requests_in_flight = 4\n\n[state]\ndir = \"{0}/state\"\n\n[[sink]]\nname = \"files\"\ntype = \"file\"\npath = \"{0}/out/{{source}}/events.jsonl\"\n",
        dir.path().display()
    );
    for (i, sim) in hung.iter().enumerate() {
        text.push_str(&source(&format!("hung{i}"), sim, &sim.api_key(), "30s"));
    }
    text.push_str(&source("storm", &storm, &storm.api_key(), "30s"));
    text.push_str(&source("revoked", &revoked, "a-revoked-key", "30s"));
    text.push_str(&source("healthy", &healthy, &healthy.api_key(), "30s"));
    let fwd = Forwarder::start(App::new(parse_config(&text)));

    // The backfills run; then every request to them hangs for 60 s, longer
    // than their request_timeout of 30 s.
    for sim in &hung {
        assert!(wait_for(Duration::from_secs(20), || sim.stats().requests >= 20).await);
        sim.update(|c| c.stall_rate = 1.0);
    }
    let hang_began = Instant::now();
    for sim in &hung {
        assert!(wait_for(Duration::from_secs(10), || sim.stats().stalled >= 1).await);
    }
    // Long enough for the hung tenants to send every prefetch they want.
    tokio::time::sleep(Duration::from_secs(1)).await;
    healthy.freeze();
    let truth = healthy.truth();
    assert!(!truth.is_empty());

    // Far below the hang: the healthy tenant must not wait for it.
    let delivered = all_delivered(
        &truth,
        &dir.path().join("out/healthy"),
        Duration::from_secs(10),
    )
    .await;
    let took = hang_began.elapsed();
    let verdict = Verdict::of(
        &truth,
        &id_counts(&read_lines(&dir.path().join("out/healthy"))),
    );
    assert!(
        delivered,
        "the healthy tenant's events were not delivered {took:?} into the other tenants' hang: {} of {} missing",
        verdict.missing.len(),
        truth.len()
    );
    assert!(
        verdict.missing.is_empty()
            && verdict.duplicates.is_empty()
            && verdict.unexpected.is_empty(),
        "{verdict:?}"
    );
    // …while the hung tenants were still hung: none of their requests
    // timed out yet.
    assert!(took < Duration::from_secs(25), "{took:?}");
    for i in 0..hung.len() {
        let timeouts = fwd
            .metrics
            .api_requests
            .get_or_create(&RequestLabel {
                source: format!("hung{i}"),
                outcome: "timeout".into(),
            })
            .get();
        assert_eq!(
            timeouts, 0,
            "hung{i} timed out already: the test proves nothing"
        );
    }
    assert!(storm.stats().throttled >= 1);
    assert!(revoked.stats().unauthorized >= 1);

    fwd.stop().await.unwrap();
    for sim in hung {
        sim.stop().await;
    }
    storm.stop().await;
    revoked.stop().await;
    healthy.stop().await;
}
