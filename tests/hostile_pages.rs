//! What a page can hold that must cost at most a dead letter or a clear
//! error, never a silent loss or a stalled tenant: bytes that are not
//! UTF-8, events larger than the body limit, bodies that never end or never
//! parse, and an API that ignores `since` (README, "What the API may do,
//! and what it costs").

use std::time::Duration;

use auditfwd::app::App;
use auditfwd::telemetry::Status;
use auditfwd_sim::{SimConfig, Verdict};
use auditfwd_testkit::wait_for;

use crate::support::*;

async fn run_until_delivered(
    sim: &auditfwd_sim::Simulator,
    extra_source: &str,
) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup {
        extra_source,
        ..Setup::new(dir.path())
    };
    let fwd = Forwarder::with_setup(sim, dir.path(), &setup);
    sim.freeze();
    let truth = sim.truth();
    let out = dir.path().join("out");
    let done = all_delivered(&truth, &out, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    fwd.stop().await.unwrap();
    let lines = read_lines(&out);
    Verdict::of(&truth, &id_counts(&lines)).assert_exact();
    assert!(done);
    assert_dead_letters(&truth, &dir.path().join("state/dead-letter/tenant.jsonl"));
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_that_is_not_utf8_dead_letters_its_event_and_the_page_goes_through() {
    let sim = tenant(SimConfig {
        invalid_utf8_ratio: 0.05,
        ..SimConfig::quiet(600)
    })
    .await;
    let broken = sim
        .truth()
        .iter()
        .filter(|e| e.expect == auditfwd_sim::Expect::DeadLetter)
        .count();
    assert!(broken >= 10, "the tenant serves bad bytes: {broken}");
    // Every page with a bad byte still delivers its other events; the bad
    // ones are in the dead-letter file (checked by run_until_delivered).
    run_until_delivered(&sim, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_larger_than_the_body_limit_are_read_with_smaller_pages() {
    let sim = tenant(SimConfig {
        huge_ratio: 0.05,
        ..SimConfig::quiet(300)
    })
    .await;
    // A page of 100 holds several 1 MiB events; 2.5 MiB fits two.
    let lines = run_until_delivered(&sim, "max_body = \"2500KiB\"").await;
    let huge = lines
        .iter()
        .filter(|l| {
            l["details"]["blob"]
                .as_str()
                .is_some_and(|b| b.len() >= 1 << 20)
        })
        .count();
    assert!(huge >= 5, "huge events delivered whole: {huge}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_never_end_are_cut_off_and_retried() {
    let sim = tenant(SimConfig {
        endless_rate: 0.3,
        ..SimConfig::quiet(800)
    })
    .await;
    run_until_delivered(&sim, "max_body = \"1MiB\"").await;
    assert!(sim.stats().endless >= 3, "{:?}", sim.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_stays_unreadable_turns_the_source_red_until_it_reads() {
    let sim = tenant(SimConfig {
        truncate_rate: 1.0,
        ..SimConfig::quiet(300)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let fwd = Forwarder::for_tenant(&sim, dir.path());
    let red = wait_for(Duration::from_secs(20), || {
        matches!(
            fwd.health.snapshot().get("source:tenant"),
            Some(Status::Failed(reason)) if reason.contains("can not be read") && reason.contains("not valid JSON")
        )
    })
    .await;
    assert!(red, "{:?}", fwd.health.snapshot());
    assert!(!fwd.health.is_healthy());
    // The API heals: the source reads on and turns green.
    sim.update(|c| c.truncate_rate = 0.0);
    sim.freeze();
    let truth = sim.truth();
    let out = dir.path().join("out");
    assert!(all_delivered(&truth, &out, Duration::from_secs(20)).await);
    assert_eq!(
        fwd.health.snapshot().get("source:tenant"),
        Some(&Status::Ok)
    );
    fwd.stop().await.unwrap();
    assert_exactly_once(&truth, &out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_that_ignores_since_stops_the_source_instead_of_replaying_history() {
    let sim = tenant(SimConfig {
        ignore_since: true,
        order: auditfwd_sim::SortOrder::OldestFirst,
        ..SimConfig::quiet(500)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    // Starting now: the tenant's hour of history is out of scope.
    let text = config_text(&sim, dir.path(), &Setup::new(dir.path()))
        .replace("start_at = \"beginning\"", "start_at = \"now\"");
    let fwd = Forwarder::start(App::new(parse_config(&text)));
    let stopped = wait_for(Duration::from_secs(10), || {
        matches!(
            fwd.health.snapshot().get("source:tenant"),
            Some(Status::Failed(reason)) if reason.contains("ignores the `since` parameter")
        )
    })
    .await;
    assert!(stopped, "{:?}", fwd.health.snapshot());
    let _ = fwd.stop().await;
    assert!(
        read_lines(&dir.path().join("out")).is_empty(),
        "no history was replayed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_date_header_from_1970_does_not_freeze_the_cursor() {
    let sim = tenant(SimConfig {
        backlog: 300,
        insert_rate: 20.0,
        bogus_date: true,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let fwd = Forwarder::for_tenant(&sim, dir.path());
    tokio::time::sleep(Duration::from_secs(3)).await;
    sim.freeze();
    let truth = sim.truth();
    let out = dir.path().join("out");
    stop_once_delivered(fwd, &truth, &out, Duration::from_secs(20)).await;
    // The watermark followed the events' own clock, not the 1970 header.
    let state = auditfwd::cursor::store::peek(&dir.path().join("state"), "tenant")
        .unwrap()
        .unwrap();
    let newest = truth.iter().map(|e| e.created_ms).max().unwrap();
    assert!(
        newest - state.watermark_ms < 10_000,
        "watermark {} lags the newest event {newest}",
        state.watermark_ms
    );
}
