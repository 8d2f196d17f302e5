//! SPEC §2: every event the tenant holds arrives exactly once, whatever the
//! API does: either sort order, inclusive or exclusive `since`, many events
//! on one millisecond, events inserted while paging, late events, hostile
//! fields, and 5xx, 429, dropped connections and truncated bodies all at once.

use std::time::{Duration, Instant};

use auditfwd::app::App;
use auditfwd::simulator::SortOrder;

use crate::support::*;

async fn delivers_everything_exactly_once(
    order: SortOrder,
    since_inclusive: bool,
    page_size: u32,
    seed: u64,
) {
    let sim = tenant(auditfwd::simulator::SimConfig {
        order,
        since_inclusive,
        ..adversarial(seed)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup {
        page_size,
        ..Setup::new(dir.path())
    };
    let fwd = Forwarder::start(App::new(parse_config(&config_text(
        &sim,
        dir.path(),
        &setup,
    ))));

    // Live phase: inserts keep coming; run until every kind of failure has
    // been injected at least once (so the test can not pass vacuously).
    let started = Instant::now();
    let all_faults_seen = wait_for(Duration::from_secs(40), || {
        let s = sim.stats();
        started.elapsed() > Duration::from_secs(5)
            && s.errors > 0
            && s.throttled > 0
            && s.dropped > 0
            && s.truncated > 0
    })
    .await;
    assert!(
        all_faults_seen,
        "the tenant did not inject every fault kind: {:?}",
        sim.stats()
    );

    // Stop inserts and let the forwarder catch up.
    sim.freeze();
    let truth = sim.truth();
    let out = dir.path().join("out");
    let caught_up = wait_for(Duration::from_secs(30), || {
        compare(&truth, &id_counts(&read_lines(&out)))
            .missing
            .is_empty()
    })
    .await;
    // A few more polls: nothing may be delivered twice in steady state.
    tokio::time::sleep(Duration::from_millis(500)).await;
    fwd.stop().await.expect("clean shutdown");

    let lines = read_lines(&out);
    let verdict = compare(&truth, &id_counts(&lines));
    verdict.assert_exact();
    assert!(caught_up);
    assert!(
        verdict.expected > 1200,
        "the live phase added events: {}",
        verdict.expected
    );
    for line in &lines {
        assert_eq!(
            line["source"], "tenant",
            "every record names its source: {line}"
        );
    }
    assert_dead_letters(&truth, &dir.path().join("state/dead-letter/tenant.jsonl"));
    let stats = sim.stats();
    eprintln!(
        "{order:?} inclusive={since_inclusive} page_size={page_size}: {} events exactly once; tenant served {} pages, {} 5xx, {} 429, {} drops, {} truncated",
        verdict.expected,
        stats.pages_served,
        stats.errors,
        stats.throttled,
        stats.dropped,
        stats.truncated
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_first_with_exclusive_since() {
    delivers_everything_exactly_once(SortOrder::NewestFirst, false, 100, 11).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_first_with_inclusive_since() {
    delivers_everything_exactly_once(SortOrder::NewestFirst, true, 37, 12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oldest_first_with_exclusive_since() {
    delivers_everything_exactly_once(SortOrder::OldestFirst, false, 100, 13).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oldest_first_with_inclusive_since() {
    delivers_everything_exactly_once(SortOrder::OldestFirst, true, 37, 14).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_requests_time_out_and_are_retried() {
    let sim = tenant(auditfwd::simulator::SimConfig {
        backlog: 800,
        insert_rate: 10.0,
        stall_rate: 0.15,
        ..auditfwd::simulator::SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(&sim, dir.path(), &Setup::new(dir.path()))
        .replace("request_timeout = \"5s\"", "request_timeout = \"300ms\"");
    let fwd = Forwarder::start(App::new(parse_config(&text)));
    assert!(
        wait_for(Duration::from_secs(20), || sim.stats().stalled >= 3).await,
        "{:?}",
        sim.stats()
    );
    sim.freeze();
    let truth = sim.truth();
    let out = dir.path().join("out");
    wait_for(Duration::from_secs(20), || {
        compare(&truth, &id_counts(&read_lines(&out)))
            .missing
            .is_empty()
    })
    .await;
    let timeouts = fwd
        .metrics
        .api_requests
        .get_or_create(&auditfwd::telemetry::RequestLabel {
            source: "tenant".into(),
            outcome: "timeout".into(),
        })
        .get();
    fwd.stop().await.unwrap();
    compare(&truth, &id_counts(&read_lines(&out))).assert_exact();
    assert!(
        timeouts >= 3,
        "each hang ended in a timeout and a retry: {timeouts}"
    );
}
