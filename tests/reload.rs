//! Tenants as files, reloaded without a restart: one file per tenant in
//! `sources_dir`, and a reload (SIGHUP, `auditfwd reload`) that starts an
//! added tenant, drains a removed one, restarts a changed one alone, leaves
//! the others running, and refuses an invalid configuration while the old
//! one keeps running. Real simulated tenants, a real file sink.

use std::path::{Path, PathBuf};
use std::time::Duration;

use auditfwd::app::App;
use auditfwd::config::Config;
use auditfwd::pipeline::Control;
use auditfwd::telemetry::{Metrics, OutcomeLabel, Status};
use auditfwd_sim::{SimConfig, Simulator, Verdict};
use auditfwd_testkit::wait_for;

use crate::support::binary::{auditfwd, signal, spawn};
use crate::support::*;

/// A main config with `[source_defaults]` and `sources_dir`, tenant files
/// next to it, output under `out/{source}/`.
struct Mssp {
    dir: tempfile::TempDir,
}

impl Mssp {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        std::fs::write(
            dir.path().join("auditfwd.toml"),
            format!(
                r#"sources_dir = "sources.d"

[state]
dir = "{d}/state"

[source_defaults]
allow_http = true
start_at = "beginning"
poll_interval = "100ms"
lookback = "4s"
late_sweep = "1s"
request_timeout = "5s"
rate_limit = {{ requests_per_second = 1000, burst = 100 }}
retry = {{ initial_backoff = "5ms", max_backoff = "200ms" }}

[[sink]]
name = "files"
type = "file"
path = "{d}/out/{{source}}/events.jsonl"
"#
            ),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("sources.d")).unwrap();
        Self { dir }
    }

    fn main(&self) -> PathBuf {
        self.dir.path().join("auditfwd.toml")
    }

    fn tenant_file(&self, name: &str) -> PathBuf {
        self.dir
            .path()
            .join("sources.d")
            .join(format!("{name}.toml"))
    }

    /// Writes `sources.d/{name}.toml` for `sim`.
    fn add(&self, name: &str, sim: &Simulator, extra: &str) {
        std::fs::write(
            self.tenant_file(name),
            format!(
                "[source]\nname = \"{name}\"\nbase_url = \"{}\"\napi_key = \"{}\"\n{extra}\n",
                sim.base_url(),
                sim.api_key()
            ),
        )
        .unwrap();
    }

    fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join("out").join(name)
    }

    /// The forwarder in this process, reloading from the main file.
    fn start(&self) -> Forwarder {
        let config = Config::load(&self.main()).unwrap_or_else(|e| panic!("{e}"));
        Forwarder::start(App::new(config).reload_from(self.main()))
    }
}

fn quiet(backlog: usize, seed: u64) -> SimConfig {
    SimConfig {
        seed,
        ..SimConfig::quiet(backlog)
    }
}

fn live(backlog: usize, seed: u64) -> SimConfig {
    SimConfig {
        insert_rate: 20.0,
        ..quiet(backlog, seed)
    }
}

fn starts(metrics: &Metrics, source: &str) -> u64 {
    metrics
        .source_starts
        .get_or_create(&Metrics::source(source))
        .get()
}

fn reloads(metrics: &Metrics, outcome: &str) -> u64 {
    metrics
        .config_reloads
        .get_or_create(&OutcomeLabel {
            outcome: outcome.into(),
        })
        .get()
}

/// Sends what SIGHUP sends and waits until the reload was applied or
/// refused (`outcome`), `count` times in all.
async fn reload(fwd: &Forwarder, outcome: &str, count: u64) {
    fwd.control.send(Control::Reopen).unwrap();
    fwd.control.send(Control::Reload).unwrap();
    assert!(
        wait_for(Duration::from_secs(20), || reloads(&fwd.metrics, outcome)
            >= count)
        .await,
        "no {outcome} reload (applied {}, refused {})",
        reloads(&fwd.metrics, "applied"),
        reloads(&fwd.metrics, "refused")
    );
}

/// Waits until `sim` (frozen) is delivered exactly into `out`.
async fn exact(sim: &Simulator, out: &Path) {
    sim.freeze();
    let truth = sim.truth();
    assert!(all_delivered(&truth, out, Duration::from_secs(30)).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_exactly_once(&truth, out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_tenant_file_starts_on_reload_and_the_others_keep_running() {
    let acme = tenant(live(300, 1)).await;
    let globex = tenant(quiet(200, 2)).await;
    let setup = Mssp::new();
    setup.add("acme", &acme, "");
    let fwd = setup.start();
    assert!(all_delivered(&acme.truth(), &setup.out("acme"), Duration::from_secs(20)).await);
    assert_eq!(globex.stats().requests, 0);

    setup.add("globex", &globex, "");
    reload(&fwd, "applied", 1).await;
    let globex_truth = globex.truth();
    assert!(
        all_delivered(&globex_truth, &setup.out("globex"), Duration::from_secs(20)).await,
        "the added tenant's events arrive"
    );
    assert_eq!(starts(&fwd.metrics, "globex"), 1);
    assert_eq!(
        starts(&fwd.metrics, "acme"),
        1,
        "the running tenant's poller was not restarted"
    );
    assert_eq!(fwd.health.get("source:acme"), Some(Status::Ok));

    exact(&acme, &setup.out("acme")).await;
    fwd.stop().await.unwrap();
    assert_exactly_once(&globex_truth, &setup.out("globex"));
    assert_exactly_once(&acme.truth(), &setup.out("acme"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_tenant_drains_saves_its_cursor_and_is_asked_nothing_more() {
    let acme = tenant(live(200, 3)).await;
    let globex = tenant(SimConfig {
        latency: Duration::from_millis(20),
        page_cap: Some(20),
        ..live(600, 4)
    })
    .await;
    let setup = Mssp::new();
    setup.add("acme", &acme, "");
    setup.add("globex", &globex, "");
    let fwd = setup.start();
    // Remove it mid-backfill, with pages in flight.
    assert!(
        wait_for(Duration::from_secs(20), || read_lines(&setup.out("globex"))
            .len()
            >= 100)
        .await
    );
    // Switched off: a file not ending in .toml is not a tenant.
    std::fs::rename(
        setup.tenant_file("globex"),
        setup.tenant_file("globex").with_extension("toml.disabled"),
    )
    .unwrap();
    reload(&fwd, "applied", 1).await;
    assert!(
        wait_for(Duration::from_secs(20), || fwd
            .health
            .get("source:globex")
            .is_none())
        .await,
        "the removed source drained and left the health board"
    );
    let asked = globex.stats().requests;
    let delivered = id_counts(&read_lines(&setup.out("globex")));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(globex.stats().requests, asked, "no request after the drain");
    assert_eq!(
        id_counts(&read_lines(&setup.out("globex"))),
        delivered,
        "nothing written after the drain"
    );
    assert!(
        delivered.values().all(|&n| n == 1),
        "no event delivered twice"
    );
    assert_eq!(starts(&fwd.metrics, "acme"), 1, "acme was not restarted");

    // Back again: it resumes from the cursor the drain saved, so every
    // event arrives exactly once over both runs.
    std::fs::rename(
        setup.tenant_file("globex").with_extension("toml.disabled"),
        setup.tenant_file("globex"),
    )
    .unwrap();
    reload(&fwd, "applied", 2).await;
    exact(&globex, &setup.out("globex")).await;
    exact(&acme, &setup.out("acme")).await;
    assert_eq!(starts(&fwd.metrics, "acme"), 1);
    fwd.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_tenant_restarts_alone_with_its_new_configuration() {
    let acme = tenant(live(200, 5)).await;
    let globex = tenant(quiet(150, 6)).await;
    // The same tenant moved to a new address (and key).
    let moved = tenant(SimConfig {
        api_key: "moved-key".into(),
        ..quiet(0, 7)
    })
    .await;
    let setup = Mssp::new();
    setup.add("acme", &acme, "");
    setup.add("globex", &globex, "");
    let fwd = setup.start();
    let globex_truth = globex.truth();
    assert!(all_delivered(&globex_truth, &setup.out("globex"), Duration::from_secs(20)).await);

    // Touching a file without changing it changes nothing.
    setup.add("acme", &acme, "");
    reload(&fwd, "applied", 1).await;
    assert_eq!(starts(&fwd.metrics, "globex"), 1);

    setup.add("globex", &moved, "");
    reload(&fwd, "applied", 2).await;
    assert!(
        wait_for(Duration::from_secs(20), || starts(&fwd.metrics, "globex")
            == 2)
        .await,
        "the changed tenant restarted"
    );
    assert!(
        wait_for(Duration::from_secs(20), || moved.stats().requests > 0).await,
        "it polls the new address"
    );
    let asked = globex.stats().requests;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        globex.stats().requests,
        asked,
        "the old address is no longer asked"
    );
    assert_eq!(starts(&fwd.metrics, "acme"), 1, "acme was not restarted");
    exact(&acme, &setup.out("acme")).await;
    fwd.stop().await.unwrap();
    assert_exactly_once(&globex_truth, &setup.out("globex"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_reload_changes_nothing_and_a_later_valid_one_applies() {
    let acme = tenant(live(200, 8)).await;
    let globex = tenant(quiet(150, 9)).await;
    let setup = Mssp::new();
    setup.add("acme", &acme, "");
    let fwd = setup.start();
    assert!(all_delivered(&acme.truth(), &setup.out("acme"), Duration::from_secs(20)).await);

    // One good new tenant and one broken one: the reload is refused whole.
    setup.add("globex", &globex, "");
    setup.add("broken", &globex, "page_size = 500");
    reload(&fwd, "refused", 1).await;
    let Some(Status::Degraded(reason)) = fwd.health.get("config") else {
        panic!("no config health: {:?}", fwd.health.snapshot());
    };
    assert!(
        reason.contains("broken.toml") && reason.contains("page_size"),
        "{reason}"
    );
    assert!(!reason.contains(&globex.api_key()), "{reason}");
    let asked = acme.stats().requests;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(fwd.is_running());
    assert!(acme.stats().requests > asked, "acme keeps polling");
    assert_eq!(
        globex.stats().requests,
        0,
        "nothing of the refused config ran"
    );
    assert_eq!(starts(&fwd.metrics, "acme"), 1);

    std::fs::remove_file(setup.tenant_file("broken")).unwrap();
    reload(&fwd, "applied", 1).await;
    assert_eq!(fwd.health.get("config"), None, "the reason is cleared");
    exact(&globex, &setup.out("globex")).await;
    exact(&acme, &setup.out("acme")).await;
    assert_eq!(starts(&fwd.metrics, "acme"), 1);
    fwd.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_every_problem_of_every_tenant_file() {
    let setup = Mssp::new();
    std::fs::write(
        setup.tenant_file("acme"),
        "[source]\nname = \"acme\"\nbase_url = \"https://acme.example.com\"\napi_key = \"sk_live_acme\"\npage_size = 500\nlookback = 600\n",
    )
    .unwrap();
    std::fs::write(
        setup.tenant_file("globex"),
        "[source]\nname = \"globex\"\nbase_url = \"ftp://globex.example.com\"\napi_key = \"sk_live_globex\"\nbogus = true\n",
    )
    .unwrap();
    let out = auditfwd(&["check", "-c", setup.main().to_str().unwrap()]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let acme = setup.tenant_file("acme");
    let globex = setup.tenant_file("globex");
    for expected in [
        format!("{}: 2 configuration problems", acme.display()),
        "source.lookback: invalid type: integer `600`, expected a string".to_string(),
        "source (\"acme\").page_size: 500 is out of range".to_string(),
        format!("{}: 2 configuration problems", globex.display()),
        "source.bogus: unknown field `bogus`".to_string(),
        "source (\"globex\").base_url: scheme `ftp` is not supported".to_string(),
    ] {
        assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    }
    assert!(!err.contains("sk_live"), "{err}");
}

async fn reload_command(config: &Path) -> std::process::Output {
    auditfwd(&["reload", "-c", config.to_str().unwrap()]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditfwd_reload_signals_the_daemon_found_by_its_pid_file() {
    let acme = tenant(live(100, 10)).await;
    let globex = tenant(quiet(120, 11)).await;
    let setup = Mssp::new();
    setup.add("acme", &acme, "");

    // No daemon yet: nothing to signal.
    let out = reload_command(&setup.main()).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no running auditfwd uses the state directory"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let log = setup.dir.path().join("stderr.log");
    let mut child = spawn(&setup.main(), &log);
    let pid_file = setup.dir.path().join("state/auditfwd.lock");
    assert!(
        wait_for(Duration::from_secs(20), || std::fs::read_to_string(
            &pid_file
        )
        .is_ok_and(|p| p.trim() == child.id().to_string()))
        .await
    );
    assert!(all_delivered(&acme.truth(), &setup.out("acme"), Duration::from_secs(20)).await);

    // An invalid configuration is reported and not sent.
    setup.add("globex", &globex, "poll_interval = \"1ms\"");
    let out = reload_command(&setup.main()).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("globex.toml") && err.contains("poll_interval"),
        "{err}"
    );

    setup.add("globex", &globex, "");
    let out = reload_command(&setup.main()).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all_delivered(
            &globex.truth(),
            &setup.out("globex"),
            Duration::from_secs(20)
        )
        .await,
        "the added tenant's events arrive"
    );

    acme.freeze();
    assert!(all_delivered(&acme.truth(), &setup.out("acme"), Duration::from_secs(20)).await);
    signal(&child, libc::SIGTERM);
    assert!(child.wait().unwrap().success());
    assert_exactly_once(&acme.truth(), &setup.out("acme"));
    Verdict::of(
        &globex.truth(),
        &id_counts(&read_lines(&setup.out("globex"))),
    )
    .assert_exact();
    // The lock went with the daemon: the pid left in the file is not used.
    let out = reload_command(&setup.main()).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is left from a process that ended"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("source added; starting it"), "{text}");
    assert!(!text.contains(&globex.api_key()), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_whose_new_tenant_no_running_sink_takes_is_refused() {
    let acme = tenant(live(100, 12)).await;
    let globex = tenant(quiet(50, 13)).await;
    let setup = Mssp::new();
    let main = std::fs::read_to_string(setup.main()).unwrap();
    std::fs::write(
        setup.main(),
        main.replace(
            "type = \"file\"\n",
            "type = \"file\"\nsources = [\"acme\"]\n",
        ),
    )
    .unwrap();
    setup.add("acme", &acme, "");
    let fwd = setup.start();
    assert!(all_delivered(&acme.truth(), &setup.out("acme"), Duration::from_secs(20)).await);

    // The sink's list names the new tenant, but sinks change only at a
    // restart: its events would reach no sink, so nothing starts.
    std::fs::write(
        setup.main(),
        main.replace(
            "type = \"file\"\n",
            "type = \"file\"\nsources = [\"acme\", \"globex\"]\n",
        ),
    )
    .unwrap();
    setup.add("globex", &globex, "");
    reload(&fwd, "refused", 1).await;
    let Some(Status::Degraded(reason)) = fwd.health.get("config") else {
        panic!("no config health: {:?}", fwd.health.snapshot());
    };
    assert!(
        reason.contains("no running sink takes events from source globex"),
        "{reason}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(globex.stats().requests, 0);
    assert_eq!(starts(&fwd.metrics, "acme"), 1);
    exact(&acme, &setup.out("acme")).await;
    fwd.stop().await.unwrap();
}
