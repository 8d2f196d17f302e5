//! Features the README names, each shown to do what it says: the source
//! `actions` filter (one action asked of the API, several filtered after
//! fetching), per-sink `actions`/`entity_types` filters, prefetch, SIGHUP
//! reopening files, and JSON logs.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use auditfwd_sim::{Expect, SimConfig, TruthEvent, Verdict};
use auditfwd_testkit::wait_for;
use serde_json::Value;

use crate::support::binary::{signal, spawn};
use crate::support::*;

/// Deliverable ids of `truth` whose action `keep` accepts, with counts.
fn expected(truth: &[TruthEvent], keep: impl Fn(&str) -> bool) -> HashMap<String, usize> {
    let mut ids = HashMap::new();
    for e in truth.iter().filter(|e| e.expect == Expect::Deliver) {
        if e.action.as_deref().is_some_and(&keep) {
            *ids.entry(e.id.clone().unwrap()).or_default() += 1;
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_actions_filter_delivers_only_those_actions() {
    let sim = tenant(SimConfig::quiet(600)).await;
    let truth = sim.truth();
    for actions in [&["USER_LOGIN"][..], &["USER_LOGIN", "ROLE_CHANGED"][..]] {
        let dir = tempfile::tempdir().unwrap();
        let list = actions
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let extra_source = format!("actions = [{list}]");
        let setup = Setup {
            extra_source: &extra_source,
            ..Setup::new(dir.path())
        };
        let want = expected(&truth, |a| actions.contains(&a));
        assert!(want.len() > 10, "the tenant holds these actions");
        let fwd = Forwarder::with_setup(&sim, dir.path(), &setup);
        let out = dir.path().join("out");
        let arrived = wait_for(Duration::from_secs(20), || {
            id_counts(&read_lines(&out)) == want
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        fwd.stop().await.unwrap();
        let got = id_counts(&read_lines(&out));
        assert!(
            arrived,
            "{actions:?}: {} of {} wanted",
            got.len(),
            want.len()
        );
        assert_eq!(got, want, "{actions:?}: exactly the filtered events, once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_sink_filters_route_by_action_and_entity_type() {
    let sim = tenant(SimConfig::quiet(500)).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let extra = format!(
        "\n[[sink]]\nname = \"users\"\ntype = \"file\"\npath = \"{d}/users/{{source}}.jsonl\"\nactions = [\"USER_*\"]\n\n[[sink]]\nname = \"candidates\"\ntype = \"file\"\npath = \"{d}/candidates/{{source}}.jsonl\"\nentity_types = [\"candidate\"]\n"
    );
    let fwd = Forwarder::with_extra(&sim, dir.path(), &extra);
    let truth = sim.truth();
    assert!(all_delivered(&truth, &dir.path().join("out"), Duration::from_secs(20)).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    fwd.stop().await.unwrap();
    let all = read_lines(&dir.path().join("out"));
    let ids = |lines: &[Value], keep: &dyn Fn(&Value) -> bool| {
        let mut ids: Vec<String> = lines
            .iter()
            .filter(|l| keep(l))
            .map(|l| l["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    let users = ids(&read_lines(&dir.path().join("users")), &|_| true);
    let want_users = ids(&all, &|l| {
        l["action"].as_str().unwrap().starts_with("USER_")
    });
    assert!(!want_users.is_empty() && want_users.len() < all.len());
    assert_eq!(users, want_users);
    let candidates = ids(&read_lines(&dir.path().join("candidates")), &|_| true);
    let want_candidates = ids(&all, &|l| l["entity_type"] == "candidate");
    assert!(!want_candidates.is_empty() && want_candidates.len() < all.len());
    assert_eq!(candidates, want_candidates);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_keeps_several_pages_in_flight_and_zero_turns_it_off() {
    // The tenant counts a request it is still answering after the client
    // dropped it (a prefetch the cursor no longer needed), so only the
    // lower bound is exact with prefetch on.
    for (prefetch, in_flight) in [(2, 2..=u64::MAX), (0, 1..=1)] {
        let sim = tenant(SimConfig {
            latency: Duration::from_millis(60),
            // Ties at page boundaries: a page fetched ahead must still
            // start where the cursor will ask next, or it is wasted.
            tie_ratio: 0.3,
            ..SimConfig::quiet(2500)
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let extra_source = format!("prefetch = {prefetch}");
        let setup = Setup {
            extra_source: &extra_source,
            ..Setup::new(dir.path())
        };
        let fwd = Forwarder::with_setup(&sim, dir.path(), &setup);
        let truth = sim.truth();
        assert!(all_delivered(&truth, &dir.path().join("out"), Duration::from_secs(60)).await);
        let requests = sim.stats().requests;
        fwd.stop().await.unwrap();
        assert_exactly_once(&truth, &dir.path().join("out"));
        // Pages fetched ahead are used, not read again: 25 pages of 100,
        // plus the page that ends the pass, the few fetched ahead past the
        // end, and the polls while the test looked.
        assert!(
            requests <= 26 + 8 + 6,
            "prefetch = {prefetch}: {requests} requests for 25 pages"
        );
        let seen = sim.stats().max_in_flight;
        assert!(
            in_flight.contains(&seen),
            "prefetch = {prefetch}: at most {seen} requests at once, expected {in_flight:?}"
        );
    }
}

fn lines_of(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reopens_files_and_logs_are_json_lines() {
    let sim = tenant(SimConfig {
        backlog: 300,
        insert_rate: 25.0,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let setup = Setup {
        out_path: format!("{}/events.jsonl", out.display()),
        extra: "\n[telemetry]\nlog_format = \"json\"\n",
        ..Setup::new(dir.path())
    };
    let config = dir.path().join("auditfwd.toml");
    std::fs::write(&config, config_text(&sim, dir.path(), &setup)).unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = spawn(&config, &log);
    let current = out.join("events.jsonl");
    assert!(wait_for(Duration::from_secs(20), || lines_of(&current).len() >= 300).await);

    // logrotate's move, then SIGHUP: new records go to a new file.
    let rotated = out.join("events.jsonl.1");
    std::fs::rename(&current, &rotated).unwrap();
    signal(&child, libc::SIGHUP);
    assert!(
        wait_for(Duration::from_secs(20), || lines_of(&current).len() >= 10).await,
        "no new file after SIGHUP"
    );
    let before = lines_of(&rotated).len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        lines_of(&rotated).len(),
        before,
        "the moved file is no longer written"
    );

    sim.freeze();
    let truth = sim.truth();
    let both = || {
        let mut lines = lines_of(&rotated);
        lines.extend(lines_of(&current));
        lines
    };
    assert!(
        wait_for(Duration::from_secs(20), || Verdict::of(
            &truth,
            &id_counts(&both())
        )
        .missing
        .is_empty())
        .await
    );
    signal(&child, libc::SIGTERM);
    assert!(child.wait().unwrap().success());
    Verdict::of(&truth, &id_counts(&both())).assert_exact();

    // Every log line is one JSON object with a level and a message; the
    // reopen is among them; the API key is not.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains(&sim.api_key()),
        "the API key reached the log"
    );
    let logs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(logs.len() >= 2, "{text}");
    for l in &logs {
        assert!(l["level"].is_string() && l["message"].is_string(), "{l}");
    }
    assert!(
        logs.iter()
            .any(|l| l["message"] == "reopening output files"),
        "{text}"
    );
}
