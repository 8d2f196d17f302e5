//! Enrichment (README, "`[source.enrich]`: resolving the acting user")
//! resolves `user_id` through the tenant's users API in every preset's
//! shape, caches, shares the source's rate limit, and never blocks or drops
//! an event when the users API fails.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use auditfwd::app::App;
use auditfwd::telemetry::{Metrics, RequestLabel, Status};
use auditfwd_sim::{SimConfig, SimUser, Simulator, Verdict};
use serde_json::Value;

use crate::support::*;

fn enrich_count(metrics: &Metrics, outcome: &str) -> u64 {
    metrics
        .enrich_lookups
        .get_or_create(&RequestLabel {
            source: "tenant".into(),
            outcome: outcome.into(),
        })
        .get()
}

/// Forwards the tenant's backlog with `[source.enrich]` set to `enrich`;
/// returns the JSON records, the metrics and the elapsed time, and the
/// enrichment's health at the end.
async fn forward(
    sim: &Simulator,
    enrich: &str,
    rate_limit: Option<&str>,
) -> (Vec<Value>, Metrics, Duration, Option<Status>) {
    let dir = tempfile::tempdir().unwrap();
    let extra_source = format!("\n[source.enrich]\n{enrich}\n");
    let mut setup = Setup {
        extra_source: &extra_source,
        ..Setup::new(dir.path())
    };
    if let Some(limit) = rate_limit {
        setup.rate_limit = limit;
    }
    let text = config_text(sim, dir.path(), &setup);
    let started = Instant::now();
    let fwd = Forwarder::start(App::new(parse_config(&text)));
    let truth = sim.truth();
    let out = dir.path().join("out");
    let done = all_delivered(&truth, &out, Duration::from_secs(40)).await;
    let elapsed = started.elapsed();
    let metrics = fwd.metrics.clone();
    let health = fwd.health.get("enrich:tenant");
    fwd.stop().await.unwrap();
    assert!(done, "not every event was delivered");
    let lines = read_lines(&out);
    Verdict::of(&truth, &id_counts(&lines)).assert_exact();
    (lines, metrics, elapsed, health)
}

fn backlog(users: usize) -> SimConfig {
    SimConfig {
        users,
        ..SimConfig::quiet(400)
    }
}

/// Checks every record against the simulator's users: known users are
/// enriched as the preset reads them, unknown ones are not.
fn check_enriched(lines: &[Value], users: &[SimUser], role: bool, enabled: bool) -> usize {
    let by_id: HashMap<&str, &SimUser> = users.iter().map(|u| (u.id.as_str(), u)).collect();
    let mut enriched = 0;
    for line in lines {
        let uid = line["user_id"].as_str().unwrap();
        match by_id.get(uid) {
            Some(u) => {
                let got = &line["user"];
                assert_eq!(got["email"], u.email.as_str(), "{line}");
                assert_eq!(
                    got["name"],
                    format!("{} {}", u.first_name, u.last_name),
                    "{line}"
                );
                if role {
                    assert_eq!(got["role"], u.role.as_str(), "{line}");
                }
                if enabled {
                    assert_eq!(got["enabled"], u.enabled, "{line}");
                }
                enriched += 1;
            }
            None => assert!(
                line.get("user").is_none(),
                "an unknown user was enriched: {line}"
            ),
        }
    }
    enriched
}

async fn preset_works(preset: &str, extra: &str, role: bool, enabled: bool) {
    let sim = tenant(backlog(25)).await;
    let users = sim.users();
    let enrich = format!("preset = \"{preset}\"\nttl = \"10m\"\n{extra}");
    let (lines, metrics, _, health) =
        forward(&sim, &enrich.replace("{base}", &sim.base_url()), None).await;
    assert_eq!(health, Some(Status::Ok), "working lookups show in /readyz");
    let enriched = check_enriched(&lines, &users, role, enabled);
    assert!(
        enriched > 300,
        "{preset}: only {enriched} of {} events enriched",
        lines.len()
    );
    // Each user looked up once: the cache answers the rest.
    let distinct: HashSet<&str> = lines
        .iter()
        .map(|l| l["user_id"].as_str().unwrap())
        .collect();
    assert!(
        sim.stats().user_lookups as usize <= distinct.len(),
        "{preset}: {} lookups for {} users",
        sim.stats().user_lookups,
        distinct.len()
    );
    assert!(enrich_count(&metrics, "cache_hit") > 0);
    assert!(
        enrich_count(&metrics, "not_found") > 0,
        "{preset}: the tenant's deleted users give 404"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preset_peoplelens_v1() {
    preset_works("peoplelens-v1", "", true, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preset_peoplelens_legacy() {
    preset_works("peoplelens-legacy", "", true, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preset_demo_docs() {
    preset_works("demo-docs", "base_url = \"{base}/demo-docs\"", true, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preset_customer_scoped() {
    preset_works(
        "customer-scoped",
        "customer_id = \"5f1e0c0a0b0c0d0e0f101112\"",
        true,
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preset_jsonapi() {
    preset_works("jsonapi", "", false, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_shape_is_configuration_only() {
    // The jsonapi shape again, described by hand.
    let sim = tenant(backlog(25)).await;
    let users = sim.users();
    let custom = r#"
url = "/users/{id}"
[source.enrich.fields]
email = "/data/attributes/email"
name = ["/data/attributes/firstName", "/data/attributes/lastName"]
enabled = { pointer = "/data/attributes/suspended", negate = true }
"#;
    let (lines, _, _, _) = forward(&sim, custom, None).await;
    assert!(check_enriched(&lines, &users, false, true) > 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_users_api_neither_blocks_nor_drops_events() {
    let sim = tenant(SimConfig {
        users_error_rate: 1.0,
        ..backlog(25)
    })
    .await;
    let (lines, metrics, _, health) = forward(&sim, "preset = \"peoplelens-v1\"", None).await;
    assert!(lines.iter().all(|l| l.get("user").is_none()));
    assert!(enrich_count(&metrics, "error") > 0);
    let Some(Status::Degraded(reason)) = health else {
        panic!("failing lookups do not show in /readyz: {health:?}")
    };
    assert!(reason.contains("user lookups fail"), "{reason}");
    // A failed user is not asked again within error_ttl.
    let distinct: HashSet<&str> = lines
        .iter()
        .map(|l| l["user_id"].as_str().unwrap())
        .collect();
    assert!(
        sim.stats().errors as usize <= distinct.len(),
        "{:?}",
        sim.stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_url_that_only_answers_404_shows_in_readiness() {
    let sim = tenant(backlog(25)).await;
    let wrong = format!(
        "preset = \"peoplelens-v1\"\nbase_url = \"{}/no-such-prefix\"",
        sim.base_url()
    );
    let (lines, metrics, _, health) = forward(&sim, &wrong, None).await;
    assert!(lines.iter().all(|l| l.get("user").is_none()));
    assert!(enrich_count(&metrics, "not_found") >= 5);
    let Some(Status::Degraded(reason)) = health else {
        panic!("404 for every user does not show in /readyz: {health:?}")
    };
    assert!(
        reason.contains("answered 404; check `url` and `base_url`"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_users_api_delays_a_batch_by_at_most_the_timeout() {
    let sim = tenant(SimConfig {
        users_stall_rate: 1.0,
        ..backlog(25)
    })
    .await;
    let (lines, metrics, elapsed, _) = forward(
        &sim,
        "preset = \"peoplelens-v1\"\ntimeout = \"300ms\"",
        None,
    )
    .await;
    assert!(lines.iter().all(|l| l.get("user").is_none()));
    assert!(enrich_count(&metrics, "timeout") > 0);
    // 4 pages; without a budget each would wait for 25 hanging lookups.
    assert!(elapsed < Duration::from_secs(15), "took {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_share_the_sources_rate_limit() {
    // The tenant refuses more than 5 requests per second. The source's own
    // quota is 4/s: pages and lookups together must stay under it.
    let sim = tenant(SimConfig {
        rate_limit: Some(5),
        ..backlog(30)
    })
    .await;
    forward(
        &sim,
        "preset = \"peoplelens-v1\"\ntimeout = \"10s\"",
        Some("{ requests_per_second = 4, burst = 1 }"),
    )
    .await;
    let stats = sim.stats();
    assert!(stats.user_lookups >= 20, "{stats:?}");
    assert_eq!(
        stats.throttled, 0,
        "lookups bypassed the source's rate limit: {stats:?}"
    );
}
