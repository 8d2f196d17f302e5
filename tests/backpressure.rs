//! Backpressure (README, "The delivery guarantee"): a slow or dead sink stops
//! the poller for that source (no unbounded buffering), the cursor never passes
//! undelivered events, and nothing is dropped once the sink recovers; a stalled
//! sink holds up only the sources feeding it; shutdown drains the batches in
//! flight.

use std::time::Duration;

use auditfwd::app::App;
use auditfwd::cursor::store;
use auditfwd::filter::Filter;
use auditfwd::format::Format;
use auditfwd::pipeline::Route;
use auditfwd::source::poller::GROUP;
use auditfwd_sim::{SimConfig, Verdict};
use auditfwd_sink::testing::{FlakySink, GateSink, HeldSink, HeldSinkHandles, MemorySink};
use auditfwd_testkit::wait_for;

use crate::support::*;

/// The default `max_batches_in_flight`: batches a source hands its sinks
/// before the oldest is acknowledged.
const IN_FLIGHT: usize = 4;

fn route(name: &str) -> Route {
    Route {
        name: name.into(),
        format: Format::Json,
        filter: Filter::default(),
        sources: Vec::new(),
    }
}

/// The configured file sink takes nothing here (its filter matches no
/// action); the sink under test is added in code.
fn setup(dir: &std::path::Path) -> Setup<'_> {
    Setup {
        extra: "actions = [\"NO_SUCH_ACTION\"]",
        // Pages in order, each after the one before arrived, so that a
        // batch's size is known ([`new_in_pages`]): a page fetched ahead
        // overlaps the one before by two, not one.
        extra_source: "prefetch = 0",
        ..Setup::new(dir)
    }
}

/// A forwarder for `sim` whose sink under test is `memory` behind a closed
/// gate (release batches with `gate.add_permits`).
fn gated_forwarder(
    sim: &auditfwd_sim::Simulator,
    dir: &std::path::Path,
    memory: &MemorySink,
) -> (Forwarder, std::sync::Arc<tokio::sync::Semaphore>) {
    let (gated, gate) = GateSink::new(memory.clone());
    let config = parse_config(&config_text(sim, dir, &setup(dir)));
    let fwd = Forwarder::start(App::new(config).with_sink(route("gated"), Box::new(gated)));
    (fwd, gate)
}

/// New events in the first `pages` full pages of 100 of a quiet tenant:
/// each page after the first starts on the last element of the one before
/// (the cursor steps back over a possible tie at every boundary).
fn new_in_pages(pages: usize) -> usize {
    if pages == 0 {
        0
    } else {
        100 + (pages - 1) * 99
    }
}

/// Waits (10 s at most) until `memory` holds the new events of the first
/// `pages` pages, no more.
async fn holds_pages(memory: &MemorySink, pages: usize) -> bool {
    wait_for(Duration::from_secs(10), || {
        memory.records().len() == new_in_pages(pages)
    })
    .await
}

/// The JSON records a memory sink received.
fn received(memory: &MemorySink) -> Vec<serde_json::Value> {
    memory
        .records()
        .iter()
        .map(|r| serde_json::from_slice(&r.payload).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_sink_stops_the_poller_and_the_cursor() {
    let sim = tenant(SimConfig::quiet(1000)).await;
    let dir = tempfile::tempdir().unwrap();
    let memory = MemorySink::new("gated");
    let (fwd, gate) = gated_forwarder(&sim, dir.path(), &memory);

    gate.add_permits(2);
    assert!(holds_pages(&memory, 2).await);
    // The sink is stalled now: the poller must wait, not fetch ahead.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let requests = sim.stats().requests;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        sim.stats().requests,
        requests,
        "the poller kept fetching while the sink was stalled"
    );
    assert_eq!(memory.records().len(), new_in_pages(2));
    let state = store::peek(&dir.path().join("state"), "tenant")
        .unwrap()
        .unwrap();
    assert_eq!(
        state.delivered_total,
        new_in_pages(2) as u64,
        "the cursor covers exactly the acknowledged batches"
    );
    let lag = |fwd: &Forwarder| {
        fwd.metrics
            .cursor_lag_seconds
            .get(&auditfwd::telemetry::Metrics::source("tenant"))
            .map(|g| g.get())
    };
    assert_eq!(
        lag(&fwd),
        None,
        "a cursor starting at the beginning has no lag to tell before its first pass"
    );

    gate.add_permits(1000);
    let truth = sim.truth();
    assert!(
        wait_for(Duration::from_secs(10), || {
            let ids: Vec<_> = memory
                .records()
                .iter()
                .map(|r| r.event.id.clone())
                .collect();
            ids.len() >= 1000
        })
        .await
    );
    assert!(
        wait_for(Duration::from_secs(10), || lag(&fwd)
            .is_some_and(|s| s < 60.0))
        .await,
        "caught up, the lag is published and small: {:?}",
        lag(&fwd)
    );
    fwd.stop().await.unwrap();
    let lines = received(&memory);
    Verdict::of(&truth, &id_counts(&lines)).assert_exact();
    let state = store::peek(&dir.path().join("state"), "tenant")
        .unwrap()
        .unwrap();
    assert_eq!(state.delivered_total, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sink_is_retried_until_it_accepts() {
    let sim = tenant(SimConfig::quiet(300)).await;
    let dir = tempfile::tempdir().unwrap();
    let memory = MemorySink::new("flaky");
    let config = parse_config(&config_text(&sim, dir.path(), &setup(dir.path())));
    let fwd = Forwarder::start(
        App::new(config).with_sink(route("flaky"), Box::new(FlakySink::new(memory.clone(), 5))),
    );
    assert!(wait_for(Duration::from_secs(10), || memory.records().len() >= 300).await);
    let errors = fwd
        .metrics
        .sink_errors
        .get_or_create(&auditfwd::telemetry::Metrics::sink("flaky"))
        .get();
    fwd.stop().await.unwrap();
    assert_eq!(errors, 5, "each failure counted");
    let lines = received(&memory);
    Verdict::of(&sim.truth(), &id_counts(&lines)).assert_exact();
}

/// SIGTERM (README, Operations, "Signals"; here: the same shutdown token
/// the signal handler cancels) finishes the batches in flight (at most
/// `max_batches_in_flight`) and checkpoints them, so a restart neither
/// loses nor repeats them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_batches_in_flight_and_checkpoints_them() {
    let sim = tenant(SimConfig::quiet(1000)).await;
    let dir = tempfile::tempdir().unwrap();
    let memory = MemorySink::new("gated");
    let (fwd, gate) = gated_forwarder(&sim, dir.path(), &memory);

    gate.add_permits(2);
    assert!(holds_pages(&memory, 2).await);
    // The third batch is now held in the sink, the next ones wait behind
    // it. Shut down while they do.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = tokio::spawn(fwd.stop());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !stopping.is_finished(),
        "shutdown must wait for the batches in flight, not abandon them"
    );
    // Let them through one by one until the shutdown is done.
    let mut released = 0;
    while !stopping.is_finished() {
        assert!(
            released < IN_FLIGHT,
            "shutdown waited for more than max_batches_in_flight batches"
        );
        gate.add_permits(1);
        released += 1;
        assert!(
            holds_pages(&memory, 2 + released).await,
            "batch {} in flight was delivered",
            2 + released
        );
        wait_for(Duration::from_secs(2), || stopping.is_finished()).await;
    }
    stopping.await.unwrap().unwrap();
    assert_eq!(
        memory.records().len(),
        new_in_pages(2 + released),
        "the batches in flight were delivered"
    );
    assert_eq!(gate.available_permits(), 0, "no batch after shutdown");
    let state = store::peek(&dir.path().join("state"), "tenant")
        .unwrap()
        .unwrap();
    assert_eq!(
        state.delivered_total,
        new_in_pages(2 + released) as u64,
        "the delivered batches in flight are checkpointed"
    );

    // A restart continues after them: every event exactly once overall.
    let (fwd, gate) = gated_forwarder(&sim, dir.path(), &memory);
    gate.add_permits(1000);
    assert!(wait_for(Duration::from_secs(10), || memory.records().len() >= 1000).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    fwd.stop().await.unwrap();
    let lines = received(&memory);
    Verdict::of(&sim.truth(), &id_counts(&lines)).assert_exact();
}

/// A forwarder whose sink under test takes batches ahead and holds them
/// ([`HeldSink`]), with `max_batches_in_flight = in_flight` (the default
/// when `None`); submissions listed in `fail_once` fail once.
fn held_forwarder(
    sim: &auditfwd_sim::Simulator,
    dir: &std::path::Path,
    memory: &MemorySink,
    in_flight: Option<usize>,
    fail_once: Vec<usize>,
) -> (Forwarder, HeldSinkHandles) {
    let (held, handles) = HeldSink::new(memory.clone(), fail_once);
    let extra_source = match in_flight {
        Some(n) => format!("prefetch = 0\nmax_batches_in_flight = {n}"),
        None => "prefetch = 0".to_string(),
    };
    let setup = Setup {
        extra_source: &extra_source,
        ..setup(dir)
    };
    let config = parse_config(&config_text(sim, dir, &setup));
    let fwd = Forwarder::start(App::new(config).with_sink(route("held"), Box::new(held)));
    (fwd, handles)
}

fn delivered_total(dir: &std::path::Path) -> u64 {
    store::peek(&dir.join("state"), "tenant")
        .unwrap()
        .map_or(0, |s| s.delivered_total)
}

/// Issue 11: a source hands its sinks the next batches while the first is
/// not acknowledged yet, up to `max_batches_in_flight` (default 4; 1 is
/// one batch at a time), and commits none before its acknowledgement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_keeps_batches_in_flight_up_to_its_bound() {
    let sim = tenant(SimConfig::quiet(1000)).await;
    for (in_flight, expected) in [(None, IN_FLIGHT), (Some(1), 1), (Some(2), 2)] {
        let dir = tempfile::tempdir().unwrap();
        let memory = MemorySink::new("held");
        let (fwd, handles) = held_forwarder(&sim, dir.path(), &memory, in_flight, vec![]);
        assert!(
            wait_for(Duration::from_secs(10), || handles.submitted().len()
                >= expected)
            .await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            handles.submitted(),
            [100, 99, 99, 99][..expected],
            "{in_flight:?}: batches in flight before the first is acknowledged"
        );
        assert!(memory.records().is_empty());
        assert_eq!(
            delivered_total(dir.path()),
            0,
            "nothing acknowledged, nothing committed"
        );

        handles.gate.add_permits(1000);
        assert!(wait_for(Duration::from_secs(20), || memory.records().len() >= 1000).await);
        assert!(
            wait_for(Duration::from_secs(10), || delivered_total(dir.path())
                == 1000)
            .await,
            "{in_flight:?}: every batch committed"
        );
        fwd.stop().await.unwrap();
        Verdict::of(&sim.truth(), &id_counts(&received(&memory))).assert_exact();
    }
}

/// Issue 11, group commit: pages fetched ahead that have all arrived when
/// the first of them is handed to the sinks go with it as one batch (one
/// write and one fsync per sink, one checkpoint write), within
/// `max_batches_in_flight` pages in flight; each page is still committed on
/// its own and in order, and nothing is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_that_arrived_together_reach_the_sinks_as_one_batch() {
    let sim = tenant(SimConfig::quiet(3000)).await;
    let dir = tempfile::tempdir().unwrap();
    let memory = MemorySink::new("held");
    let (held, handles) = HeldSink::new(memory.clone(), vec![]);
    let setup = Setup {
        // Fetch ahead as a fast backfill does (the depth follows the rate
        // times the latency, so the rate is high).
        extra_source: "prefetch = 8",
        rate_limit: "{ requests_per_second = 5000, burst = 100 }",
        ..setup(dir.path())
    };
    let config = parse_config(&config_text(&sim, dir.path(), &setup));
    let fwd = Forwarder::start(App::new(config).with_sink(route("held"), Box::new(held)));
    // The sink holds the first pages; the pages fetched ahead arrive
    // meanwhile.
    let held = || handles.submitted().iter().sum::<usize>();
    // (Pages fetched ahead overlap the one before by two: 98 new each.)
    assert!(wait_for(Duration::from_secs(10), || held() > (IN_FLIGHT - 1) * 100).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        held() <= IN_FLIGHT * 100,
        "at most {IN_FLIGHT} pages in flight: {:?}",
        handles.submitted()
    );
    handles.gate.add_permits(100_000);
    assert!(
        wait_for(Duration::from_secs(20), || delivered_total(dir.path())
            == 3000)
        .await,
        "every page committed"
    );
    fwd.stop().await.unwrap();
    let sizes = handles.submitted();
    assert!(
        sizes.iter().any(|&n| n > 100),
        "pages that had arrived together went as one batch: {sizes:?}"
    );
    assert!(
        sizes.iter().all(|&n| n <= IN_FLIGHT.min(GROUP) * 100),
        "at most {IN_FLIGHT} pages in one batch: {sizes:?}"
    );
    Verdict::of(&sim.truth(), &id_counts(&received(&memory))).assert_exact();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_batch_holds_back_the_commits_of_the_batches_after_it() {
    let sim = tenant(SimConfig::quiet(1000)).await;
    let dir = tempfile::tempdir().unwrap();
    let memory = MemorySink::new("held");
    let (fwd, handles) = held_forwarder(&sim, dir.path(), &memory, None, vec![0]);
    assert!(
        wait_for(Duration::from_secs(10), || handles.submitted().len()
            == IN_FLIGHT)
        .await
    );
    handles.gate.add_permits(2);
    // The second batch arrives; the first failed and waits for its retry.
    assert!(wait_for(Duration::from_secs(10), || memory.records().len() == 99).await);
    let metrics = fwd.metrics.clone();
    let errors = || {
        metrics
            .sink_errors
            .get_or_create(&auditfwd::telemetry::Metrics::sink("held"))
            .get()
    };
    assert!(wait_for(Duration::from_secs(10), || errors() == 1).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        delivered_total(dir.path()),
        0,
        "a batch after a failed one is not committed before it"
    );
    handles.retry_gate.add_permits(1);
    assert!(
        wait_for(Duration::from_secs(10), || delivered_total(dir.path())
            == new_in_pages(2) as u64)
        .await,
        "both committed once the first is delivered"
    );
    handles.gate.add_permits(1000);
    handles.retry_gate.add_permits(1000);
    assert!(wait_for(Duration::from_secs(20), || memory.records().len() >= 1000).await);
    fwd.stop().await.unwrap();
    assert_eq!(errors(), 1);
    Verdict::of(&sim.truth(), &id_counts(&received(&memory))).assert_exact();
}

/// README, "Memory is bounded in every order": halfway through a backfill, in
/// any listing order, the cursor holds the ids of the lookback window and the
/// last few thousand delivered, not of everything delivered so far; the pass's
/// position is saved; and the rest of the backfill still arrives exactly once.
async fn a_backfill_keeps_a_bounded_dedup_state(order: auditfwd_sim::SortOrder) {
    let sim = tenant(SimConfig {
        backlog: 12_000,
        backlog_span: Duration::from_secs(6 * 3600),
        insert_rate: 5.0,
        tie_ratio: 0.3,
        order,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let memory = MemorySink::new("gated");
    let (fwd, gate) = gated_forwarder(&sim, dir.path(), &memory);

    // 80 pages of 100 (a little less new per page: each steps back over
    // its last element, and live inserts shift the listing).
    gate.add_permits(80);
    assert!(
        wait_for(Duration::from_secs(60), || gate.available_permits() == 0
            && memory.records().len() >= 7000)
        .await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let state = store::peek(&dir.path().join("state"), "tenant")
        .unwrap()
        .unwrap();
    assert!(state.delivered_total >= 7000);
    assert!(
        state.pass.is_some_and(|p| p.offset >= 7000),
        "the pass's position is saved: {:?}",
        state.pass
    );
    let bound = auditfwd::cursor::RECENT_IDS as usize + 500;
    assert!(
        state.seen.len() <= bound,
        "{order:?}: {} ids kept after {} events delivered (bound {bound})",
        state.seen.len(),
        state.delivered_total
    );

    gate.add_permits(100_000);
    sim.freeze();
    let truth = sim.truth();
    let expected = deliverable(&truth).len();
    assert!(
        wait_for(Duration::from_secs(60), || memory.records().len()
            >= expected)
        .await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    fwd.stop().await.unwrap();
    let lines = received(&memory);
    Verdict::of(&truth, &id_counts(&lines)).assert_exact();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newest_first_backfill_keeps_a_bounded_dedup_state() {
    a_backfill_keeps_a_bounded_dedup_state(auditfwd_sim::SortOrder::NewestFirst).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oldest_first_backfill_keeps_a_bounded_dedup_state() {
    a_backfill_keeps_a_bounded_dedup_state(auditfwd_sim::SortOrder::OldestFirst).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_sorted_by_a_hidden_sequence_keeps_a_bounded_dedup_state() {
    a_backfill_keeps_a_bounded_dedup_state(auditfwd_sim::SortOrder::InsertedFirst).await;
}

/// Backpressure: a slow or dead sink stops the poller *for that source*: a
/// second source whose events do not go to the stalled sink carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_sink_stops_only_the_sources_feeding_it() {
    let sim = tenant(SimConfig::quiet(600)).await;
    let dir = tempfile::tempdir().unwrap();
    let other = format!(
        "\n[[source]]\nname = \"other\"\nbase_url = \"{}\"\napi_key = \"{}\"\nallow_http = true\nstart_at = \"beginning\"\n",
        sim.base_url(),
        sim.api_key()
    );
    // Every source goes to the file sink; only `tenant` also to the gated one.
    let setup = Setup {
        extra_source: &other,
        ..Setup::new(dir.path())
    };
    let memory = MemorySink::new("gated");
    let (gated, gate) = GateSink::new(memory.clone());
    let only_tenant = auditfwd::pipeline::Route {
        sources: vec!["tenant".into()],
        ..route("gated")
    };
    let config = parse_config(&config_text(&sim, dir.path(), &setup));
    let fwd = Forwarder::start(App::new(config).with_sink(only_tenant, Box::new(gated)));

    let truth = sim.truth();
    let other_out = dir.path().join("out/other");
    assert!(
        all_delivered(&truth, &other_out, Duration::from_secs(20)).await,
        "the source that does not feed the stalled sink was held up"
    );
    assert_exactly_once(&truth, &other_out);
    // `tenant` got no further than the batches in flight: the one the
    // gated sink holds and those waiting behind it.
    assert!(memory.records().is_empty());
    assert!(read_lines(&dir.path().join("out/tenant")).len() <= IN_FLIGHT * 100);

    gate.add_permits(1000);
    let tenant_out = dir.path().join("out/tenant");
    stop_once_delivered(fwd, &truth, &tenant_out, Duration::from_secs(20)).await;
    Verdict::of(&truth, &id_counts(&received(&memory))).assert_exact();
}

/// What a `kill -9` sends again is what a sink wrote and the cursor has not
/// checkpointed: at most `max_batches_in_flight` pages, one with `1`, even
/// while pages fetched ahead wait to go out together (group commit). Here
/// a source with `max_batches_in_flight = 1` feeds the file sink and a
/// gated sink; while the gated sink holds a batch, the file sink holds at
/// most one page beyond the checkpoint. (Found by a review of the first
/// group commit, which sent up to 8 arrived pages as one batch whatever the
/// bound.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_one_leaves_at_most_one_page_written_but_unchecked() {
    let sim = tenant(SimConfig {
        // Enough latency that the prefetch depth (rate × latency) is full.
        latency: Duration::from_millis(20),
        ..SimConfig::quiet(3000)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup {
        extra_source: "prefetch = 8\nmax_batches_in_flight = 1",
        rate_limit: "{ requests_per_second = 5000, burst = 100 }",
        ..Setup::new(dir.path())
    };
    let memory = MemorySink::new("gated");
    let (gated, gate) = GateSink::new(memory.clone());
    let config = parse_config(&config_text(&sim, dir.path(), &setup));
    let fwd = Forwarder::start(App::new(config).with_sink(route("gated"), Box::new(gated)));
    let out = dir.path().join("out/tenant");
    // Written by the file sink, not checkpointed: what a kill -9 resends.
    // (Read in this order, a commit between the two reads can only make
    // it smaller, never fail the bound falsely.)
    let unchecked = || (read_lines(&out).len() as u64).saturating_sub(delivered_total(dir.path()));
    let mut worst = 0;
    for _ in 0..4 {
        // The gated sink holds the batch in flight; pages fetched ahead
        // arrive meanwhile.
        tokio::time::sleep(Duration::from_millis(500)).await;
        worst = worst.max(unchecked());
        gate.add_permits(1);
    }
    gate.add_permits(100_000);
    let truth = sim.truth();
    stop_once_delivered(fwd, &truth, &out, Duration::from_secs(20)).await;
    Verdict::of(&truth, &id_counts(&received(&memory))).assert_exact();
    assert!(
        worst <= 100,
        "max_batches_in_flight = 1, page_size = 100: {worst} events were written by a sink \
         and not checkpointed (a kill -9 then sends them again)"
    );
}
