//! The HTTP client of a source: a private CA and client certificates
//! (`[source.tls]`), a proxy, redirects that stay within the origin and
//! never carry a `Referer`, and errors that name their cause.

use std::time::Duration;

use auditfwd::app::App;
use auditfwd::telemetry::{Health, Status};
use auditfwd_sim::{SimConfig, Simulator};
use auditfwd_testkit::{Certs, make_certs, wait_for};

use crate::support::http::{Relay, Reply, TlsFront};
use crate::support::*;

/// The default test config for `sim`, pointed at `base_url` instead, with
/// `extra_source` added to the `[[source]]` table.
fn config_via(
    sim: &Simulator,
    dir: &std::path::Path,
    base_url: &str,
    extra_source: &str,
) -> String {
    let setup = Setup {
        extra_source,
        ..Setup::new(dir)
    };
    let text = config_text(sim, dir, &setup);
    assert!(text.contains(&sim.base_url()));
    text.replace(&sim.base_url(), base_url)
}

fn tls_table(certs: &Certs, ca: bool, client_cert: bool) -> String {
    let mut keys = Vec::new();
    if ca {
        keys.push(format!("ca_file = \"{}\"", certs.ca.display()));
    }
    if client_cert {
        keys.push(format!("cert_file = \"{}\"", certs.client_cert.display()));
        keys.push(format!("key_file = \"{}\"", certs.client_key.display()));
    }
    format!("tls = {{ {} }}", keys.join(", "))
}

/// Waits until the source's health is degraded or failed, and returns its
/// message.
async fn source_problem(health: &Health) -> String {
    let problem = || match health.snapshot().get("source:tenant") {
        Some(Status::Degraded(m) | Status::Failed(m)) => Some(m.clone()),
        _ => None,
    };
    assert!(
        wait_for(Duration::from_secs(15), || problem().is_some()).await,
        "the source stayed healthy: {:?}",
        health.snapshot()
    );
    problem().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_and_a_client_certificate_reach_a_mutual_tls_tenant() {
    let sim = tenant(SimConfig::quiet(120)).await;
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let front = TlsFront::start(sim.addr(), &certs, true).await;

    // Without ca_file the tenant's certificate is not trusted, and the
    // message says so and what to set.
    let text = config_via(
        &sim,
        dir.path(),
        &front.base_url(),
        &tls_table(&certs, false, true),
    );
    let fwd = Forwarder::start(App::new(parse_config(&text)));
    let message = source_problem(&fwd.health).await;
    assert!(
        message.contains("invalid peer certificate: UnknownIssuer"),
        "{message}"
    );
    assert!(message.contains("tls.ca_file"), "{message}");
    assert!(
        !message.contains(&sim.api_key()),
        "the key leaked: {message}"
    );
    fwd.stop().await.unwrap();
    assert!(read_lines(&dir.path().join("out")).is_empty());

    // With the CA but without a client certificate, the server refuses.
    let text = config_via(
        &sim,
        dir.path(),
        &front.base_url(),
        &tls_table(&certs, true, false),
    );
    let fwd = Forwarder::start(App::new(parse_config(&text)));
    let message = source_problem(&fwd.health).await;
    assert!(message.contains("tls.cert_file"), "{message}");
    fwd.stop().await.unwrap();
    assert!(read_lines(&dir.path().join("out")).is_empty());
    assert!(
        front
            .handshake_errors
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.contains("peer sent no certificates")),
        "{:?}",
        front.handshake_errors
    );

    // Both: every event arrives.
    let text = config_via(
        &sim,
        dir.path(),
        &front.base_url(),
        &tls_table(&certs, true, true),
    );
    let fwd = Forwarder::start(App::new(parse_config(&text)));
    let truth = sim.truth();
    let out = dir.path().join("out");
    stop_once_delivered(fwd, &truth, &out, Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_trust_store_is_trusted() {
    // rustls-native-certs reads SSL_CERT_FILE as the system store; the
    // real binary runs with it, so the test process's environment is left
    // alone.
    let sim = tenant(SimConfig::quiet(120)).await;
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let front = TlsFront::start(sim.addr(), &certs, false).await;
    let path = dir.path().join("auditfwd.toml");
    std::fs::write(&path, config_via(&sim, dir.path(), &front.base_url(), "")).unwrap();
    let check = |ssl_cert_file: std::path::PathBuf| {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_auditfwd"))
                .args(["check", "-c", path.to_str().unwrap()])
                .env("SSL_CERT_FILE", ssl_cert_file)
                .env_remove("SSL_CERT_DIR")
                .env_remove("RUST_LOG")
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    };
    let trusted = check(certs.ca.clone()).await.unwrap();
    assert!(
        trusted.contains("source tenant: ok: API reachable, key accepted"),
        "{trusted}"
    );
    let untrusted = check(certs.other_ca.clone()).await.unwrap();
    assert!(
        untrusted.contains("source tenant: FAILED")
            && untrusted.contains("invalid peer certificate: UnknownIssuer"),
        "{untrusted}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_go_through_the_configured_proxy() {
    let sim = tenant(SimConfig::quiet(120)).await;
    let dir = tempfile::tempdir().unwrap();
    // A forward proxy: the request names the absolute URL, the proxy
    // fetches it.
    let proxy = Relay::start(|uri| Reply::Forward(uri.to_string())).await;
    let extra = format!(
        "proxy = \"http://fwd:pr0xy-pass@127.0.0.1:{}\"",
        proxy.addr.port()
    );
    let text = config_via(&sim, dir.path(), &sim.base_url(), &extra);
    let config = parse_config(&text);
    assert!(!format!("{config:?}").contains("pr0xy-pass"));
    let fwd = Forwarder::start(App::new(config));
    let truth = sim.truth();
    let out = dir.path().join("out");
    stop_once_delivered(fwd, &truth, &out, Duration::from_secs(20)).await;

    let seen = proxy.recorded();
    let stats = sim.stats();
    assert!(!seen.is_empty());
    // The proxy's client sends no User-Agent: a request that reached the
    // tenant with auditfwd's went around the proxy. (Counts alone can not
    // tell: a request under way at the stop reaches the proxy, which drops
    // it before the tenant sees it.)
    let direct: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.agent().starts_with("auditfwd"))
        .collect();
    assert!(
        direct.is_empty(),
        "requests that bypassed the proxy: {direct:?}"
    );
    assert!(
        seen.len() as u64 >= stats.requests,
        "every request the tenant served went through the proxy ({} seen, {} served)",
        seen.len(),
        stats.requests
    );
    for r in &seen {
        assert!(
            r.uri
                .starts_with(&format!("{}/api/v1/audit-logs?", sim.base_url())),
            "{r:?}"
        );
        // Basic auth from the proxy URL: fwd:pr0xy-pass.
        assert_eq!(
            r.headers.get("proxy-authorization").unwrap(),
            "Basic ZndkOnByMHh5LXBhc3M="
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_another_origin_stops_the_source_naming_the_target() {
    let sim = tenant(SimConfig::quiet(120)).await;
    let dir = tempfile::tempdir().unwrap();
    // The API "moved" to the simulator's port: another origin.
    let target = sim.base_url();
    let moved = Relay::start(move |uri| {
        Reply::Redirect(format!("{target}{}", uri.path_and_query().unwrap()))
    })
    .await;
    let text = config_via(&sim, dir.path(), &moved.url(), "");
    let fwd = Forwarder::start(App::new(parse_config(&text)));
    let message = source_problem(&fwd.health).await;
    assert!(matches!(
        fwd.health.snapshot().get("source:tenant"),
        Some(Status::Failed(_))
    ));
    assert!(
        message.contains(&format!(
            "redirected to {}/api/v1/audit-logs?",
            sim.base_url()
        )),
        "{message}"
    );
    assert!(message.contains("set base_url"), "{message}");
    assert!(
        !message.contains(&sim.api_key()),
        "the key leaked: {message}"
    );
    assert_eq!(sim.stats().requests, 0, "the redirect was not followed");
    assert!(
        fwd.metrics
            .encode()
            .contains("auditfwd_api_requests_total{source=\"tenant\",outcome=\"redirect\"} 1")
    );
    let _ = fwd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_within_the_origin_is_followed_without_a_referer() {
    let sim = tenant(SimConfig::quiet(120)).await;
    let dir = tempfile::tempdir().unwrap();
    let target = sim.base_url();
    let relay = Relay::start(move |uri| {
        let pq = uri.path_and_query().unwrap().as_str();
        match pq.strip_prefix("/old") {
            Some(rest) => Reply::Redirect(format!("/new{rest}")),
            None => Reply::Forward(format!("{target}{}", pq.strip_prefix("/new").unwrap())),
        }
    })
    .await;
    let text = config_via(&sim, dir.path(), &format!("{}/old", relay.url()), "");
    let fwd = Forwarder::start(App::new(parse_config(&text)));
    let truth = sim.truth();
    let out = dir.path().join("out");
    assert!(all_delivered(&truth, &out, Duration::from_secs(20)).await);
    fwd.stop().await.unwrap();
    let seen = relay.recorded();
    let followed: Vec<_> = seen.iter().filter(|r| r.uri.starts_with("/new/")).collect();
    assert!(!followed.is_empty(), "{seen:?}");
    for r in &seen {
        assert!(
            r.headers.get("referer").is_none(),
            "a Referer was sent: {r:?}"
        );
    }
    // The key still travels within the origin.
    assert!(
        followed
            .iter()
            .all(|r| r.headers.contains_key("authorization"))
    );
}
