//! Issue 14, thousands of tenants in one process: descriptors do not grow
//! with the sources (one lock for the state directory, journals open only
//! while written, one shared HTTP client), the cap on requests in flight
//! holds across sources, a second daemon on the same state directory is
//! refused, `state show` summarises every tenant on one line and `status`
//! asks the running daemon which tenants are behind or not ok.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use auditfwd::app::App;
use auditfwd::cursor::CursorState;
use auditfwd::cursor::store::{FileStore, StateStore};
use auditfwd_sim::{SimConfig, Simulator};
use auditfwd_testkit::{free_port, wait_for, wait_for_async};

use crate::support::binary::{auditfwd, signal, spawn_daemon, text};
use crate::support::*;

/// A config of `n` sources `t1`..`tn` on `sim` into one output file.
fn many_sources(sim: &Simulator, dir: &Path, n: usize, head: &str, source_extra: &str) -> String {
    let mut text = format!(
        "{head}\n[state]\ndir = \"{}/state\"\n\n[[sink]]\nname = \"files\"\ntype = \"file\"\npath = \"{}/out/all.jsonl\"\n",
        dir.display(),
        dir.display()
    );
    for i in 1..=n {
        text.push_str(&format!(
            "\n[[source]]\nname = \"t{i}\"\nbase_url = \"{}\"\napi_key = \"{}\"\nallow_http = true\npoll_interval = \"200ms\"\nlookback = \"2s\"\nrequest_timeout = \"5s\"\nrate_limit = {{ requests_per_second = 1000, burst = 100 }}\n{source_extra}\n",
            sim.base_url(),
            sim.api_key()
        ));
    }
    text
}

fn spawn(config: &Path) -> Child {
    spawn_daemon(config, Stdio::piped())
}

fn stop(child: &mut Child) {
    signal(child, libc::SIGTERM);
    let _ = child.wait();
}

/// Sources that fetched a page, from the daemon's /metrics (every source
/// has the series from its start, at 0).
async fn sources_polled(port: u16) -> usize {
    let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await else {
        return 0;
    };
    let body = response.text().await.unwrap_or_default();
    body.lines()
        .filter(|l| l.starts_with("auditfwd_pages_fetched_total{") && !l.ends_with(" 0"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_files_do_not_grow_with_the_sources() {
    let sim = tenant(SimConfig::quiet(0)).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let head = format!(
        "[telemetry]\nlisten = \"127.0.0.1:{port}\"\n\n[limits]\nmax_requests_in_flight = 4\n"
    );
    let config = dir.path().join("auditfwd.toml");
    std::fs::write(&config, many_sources(&sim, dir.path(), 50, &head, "")).unwrap();
    let mut child = spawn(&config);
    let polled = wait_for_async(Duration::from_secs(30), || async {
        sources_polled(port).await >= 50
    })
    .await;
    // Several samples while the 50 sources poll every 200 ms: journals,
    // locks and sockets per source would show up in some of them.
    let mut most = 0;
    for _ in 0..10 {
        let fds = std::fs::read_dir(format!("/proc/{}/fd", child.id()))
            .map(|d| d.count())
            .unwrap_or(0);
        most = most.max(fds);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop(&mut child);
    assert!(polled, "not every source polled");
    // Before: a lock and a journal per source (100) and a connection each.
    assert!(
        most <= 40,
        "50 sources hold {most} descriptors; expected a small constant"
    );
    let locks = std::fs::read_dir(dir.path().join("state"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("lock".as_ref()))
        .count();
    assert_eq!(locks, 1, "one lock file for the state directory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_on_requests_in_flight_holds_across_sources() {
    let sim = tenant(SimConfig {
        latency: Duration::from_millis(80),
        ..SimConfig::quiet(0)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    // prefetch = 0: a dropped prefetch would still count at the tenant.
    let text = many_sources(
        &sim,
        dir.path(),
        20,
        "[limits]\nmax_requests_in_flight = 3\n",
        "prefetch = 0",
    );
    let fwd = Forwarder::start(App::new(parse_config(&text)));
    assert!(wait_for(Duration::from_secs(20), || sim.stats().requests >= 100).await);
    fwd.stop().await.unwrap();
    let stats = sim.stats();
    assert!(
        (2..=3).contains(&stats.max_in_flight),
        "20 sources, cap 3: {} requests at once",
        stats.max_in_flight
    );
}

/// The TCP sockets `pid` holds (not its Unix ones, such as the signal
/// pipe): descriptors whose inode is in /proc/PID/net/tcp.
fn tcp_sockets(pid: u32) -> usize {
    let mut inodes = std::collections::HashSet::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        inodes.extend(
            text.lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().nth(9).map(|i| format!("socket:[{i}]"))),
        );
    }
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|l| inodes.contains(&*l.to_string_lossy()))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_stay_within_the_cap_across_api_hosts() {
    // 5 API hosts with 10 tenants each, a cap of 4 requests in flight: each
    // host in turn gets up to 4 requests at once, and a pool that kept
    // every connection it once needed would hold 4 per host (20). The pool
    // keeps max(1, 4 / 5) = 1 idle per host: at most 4 in use + 5 idle.
    let mut sims = Vec::new();
    for _ in 0..5 {
        sims.push(
            tenant(SimConfig {
                latency: Duration::from_millis(40),
                ..SimConfig::quiet(0)
            })
            .await,
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let mut text = many_sources(
        &sims[0],
        dir.path(),
        0,
        "[limits]\nmax_requests_in_flight = 4\n",
        "",
    );
    for (h, sim) in sims.iter().enumerate() {
        for i in 0..10 {
            text.push_str(&format!(
                "\n[[source]]\nname = \"h{h}t{i}\"\nbase_url = \"{}\"\napi_key = \"{}\"\nallow_http = true\npoll_interval = \"100ms\"\nlookback = \"2s\"\nprefetch = 0\nrate_limit = {{ requests_per_second = 1000, burst = 100 }}\n",
                sim.base_url(),
                sim.api_key()
            ));
        }
    }
    let config = dir.path().join("auditfwd.toml");
    std::fs::write(&config, text).unwrap();
    let mut child = spawn(&config);
    let mut most = 0;
    let pid = child.id();
    let served = wait_for(Duration::from_secs(30), || {
        most = most.max(tcp_sockets(pid));
        sims.iter().all(|s| s.stats().requests >= 60)
    })
    .await;
    for _ in 0..20 {
        most = most.max(tcp_sockets(pid));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let hosts_at_once: Vec<u64> = sims.iter().map(|s| s.stats().max_in_flight).collect();
    stop(&mut child);
    assert!(served, "every host served 60 requests");
    assert!(
        most <= 4 + 5,
        "5 hosts, cap 4: the daemon held {most} TCP connections (requests at once per host: {hosts_at_once:?})"
    );
}

#[test]
fn max_requests_in_flight_is_validated() {
    let sim_less = "[[source]]\nname = \"a\"\nbase_url = \"https://api.example.com\"\napi_key = \"k\"\n\n[[sink]]\nname = \"s\"\ntype = \"stdout\"\n";
    for (value, ok) in [("0", false), ("-1", false), ("1", true), ("256", true)] {
        let text = format!("[limits]\nmax_requests_in_flight = {value}\n\n{sim_less}");
        let parsed =
            auditfwd::config::Config::parse(&text, Path::new("t.toml"), Path::new("."), &|_| None);
        match (parsed, ok) {
            (Ok(c), true) => assert_eq!(c.limits.max_requests_in_flight.to_string(), value),
            (Err(e), false) => assert!(
                e.to_string().contains("limits.max_requests_in_flight"),
                "{e}"
            ),
            (r, _) => panic!("{value}: {:?}", r.map(|_| ())),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_state_directory_is_refused() {
    let sim = tenant(SimConfig::quiet(0)).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let head = format!("[telemetry]\nlisten = \"127.0.0.1:{port}\"\n");
    let first_config = dir.path().join("first.toml");
    std::fs::write(&first_config, many_sources(&sim, dir.path(), 3, &head, "")).unwrap();
    let second_config = dir.path().join("second.toml");
    std::fs::write(&second_config, many_sources(&sim, dir.path(), 3, "", "")).unwrap();

    let mut first = spawn(&first_config);
    assert!(
        wait_for_async(Duration::from_secs(20), || async {
            sources_polled(port).await >= 3
        })
        .await
    );
    let second = spawn(&second_config);
    let out = tokio::task::spawn_blocking(move || second.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let holder = format!("locked by another auditfwd process (pid {})", first.id());
    assert!(stderr.contains(&holder), "{stderr}");

    // Moving a cursor while the daemon runs is refused, saying why.
    let c = first_config.to_str().unwrap();
    let out = auditfwd(&["state", "reset", "-c", c, "--source", "t2"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(&holder), "{}", text(&out.stderr));
    // Reading is fine.
    let out = auditfwd(&["state", "show", "-c", c]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    stop(&mut first);
    let out = auditfwd(&["state", "reset", "-c", c, "--source", "t2"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[tokio::test]
async fn state_show_summarises_every_tenant_on_one_line_furthest_behind_first() {
    let sim = tenant(SimConfig::quiet(0)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("auditfwd.toml");
    let n = 40;
    std::fs::write(&config, many_sources(&sim, dir.path(), n, "", "")).unwrap();
    let state_dir = dir.path().join("state");
    // t1 is 1 minute behind, t2 2 minutes, ...; t40 has no state.
    let now = chrono::Utc::now();
    for i in 1..n {
        let mut store = FileStore::open(&state_dir, &format!("t{i}")).unwrap();
        let mut state =
            CursorState::new(&format!("t{i}"), now - chrono::Duration::minutes(i as i64));
        state.delivered_total = 1000 + i as u64;
        store.snapshot(&state).unwrap();
    }
    let out = auditfwd(&["state", "show", "-c", config.to_str().unwrap()]).await;
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<&str> = shown.lines().filter(|l| l.starts_with('t')).collect();
    assert_eq!(rows.len(), n, "one line per tenant:\n{shown}");
    assert!(
        rows[0].starts_with("t40 ") && rows[0].contains("no state yet"),
        "{shown}"
    );
    let order: Vec<&str> = rows[1..]
        .iter()
        .map(|r| r.split_whitespace().next().unwrap())
        .collect();
    let expected: Vec<String> = (1..n).rev().map(|i| format!("t{i}")).collect();
    assert_eq!(order, expected, "furthest behind first:\n{shown}");
    assert!(rows[1].contains("1039"), "delivered shown: {}", rows[1]);
    assert!(shown.starts_with("40 sources in "), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_the_tenants_furthest_behind_and_every_one_not_ok() {
    let sim = tenant(SimConfig::quiet(0)).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let head = format!("[telemetry]\nlisten = \"127.0.0.1:{port}\"\n");
    let mut text_config = many_sources(&sim, dir.path(), 6, &head, "");
    // t3 starts an hour behind, on an API that does not answer (degraded,
    // retrying); another tenant's key is refused (it stops, failed).
    let dead = format!("http://127.0.0.1:{}", free_port());
    text_config = text_config.replacen(
        &format!("name = \"t3\"\nbase_url = \"{}\"", sim.base_url()),
        &format!("name = \"t3\"\nbase_url = \"{dead}\"\nstart_at = \"1h ago\""),
        1,
    );
    assert!(text_config.contains(&dead));
    text_config.push_str(&format!(
        "\n[[source]]\nname = \"revoked\"\nbase_url = \"{}\"\napi_key = \"wrong\"\nallow_http = true\n",
        sim.base_url()
    ));
    let config = dir.path().join("auditfwd.toml");
    std::fs::write(&config, &text_config).unwrap();
    let c = config.to_str().unwrap();

    // Not running: a clear error.
    let out = auditfwd(&["status", "-c", c]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no auditfwd daemon answers at http://127.0.0.1:"),
        "{}",
        text(&out.stderr)
    );

    let mut child = spawn(&config);
    assert!(
        wait_for_async(Duration::from_secs(20), || async {
            sources_polled(port).await >= 5
        })
        .await
    );
    // t3 turns degraded once its retries have failed for a while.
    let mut out = auditfwd(&["status", "-c", c, "--top", "2"]).await;
    for _ in 0..100 {
        if text(&out.stdout).contains(" 1 degraded") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        out = auditfwd(&["status", "-c", c, "--top", "2"]).await;
    }
    stop(&mut child);
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        shown.contains("7 sources: 5 ok, 1 degraded, 1 failed"),
        "{shown}"
    );
    let behind = shown.split("not ok").next().unwrap();
    let rows: Vec<&str> = behind
        .lines()
        .skip_while(|l| !l.starts_with("SOURCE"))
        .skip(1)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(rows.len(), 2, "{shown}");
    assert!(
        rows[0].starts_with("t3 ") && rows[0].contains("1h00m"),
        "{shown}"
    );
    assert!(shown.contains("not ok (2):"), "{shown}");
    let not_ok = shown.split("not ok (2):").nth(1).unwrap();
    assert!(not_ok.contains("degraded"), "{shown}");
    assert!(
        not_ok
            .lines()
            .any(|l| l.starts_with("revoked ") && l.contains("failed")),
        "{shown}"
    );

    // Without a listener there is nothing to ask.
    let bare = dir.path().join("bare.toml");
    std::fs::write(&bare, many_sources(&sim, dir.path(), 1, "", "")).unwrap();
    let out = auditfwd(&["status", "-c", bare.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("telemetry.listen is not set"),
        "{}",
        text(&out.stderr)
    );
}
