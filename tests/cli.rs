//! The command line (README, "Two commands", Operations). Config errors name
//! the file, key and fix; `check` reaches the API and the sinks; `state` shows
//! and moves cursors; `demo` runs the product end to end; every example config
//! is valid.

use std::path::Path;
use std::time::Duration;

use auditfwd::app::App;
use auditfwd::config::Config;
use auditfwd_sim::SimConfig;
use auditfwd_testkit::{free_port, wait_for};

use crate::support::binary::{auditfwd, text};
use crate::support::*;

#[tokio::test]
async fn config_errors_exit_2_naming_file_key_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
[[source]]
name = "acme"
base_url = "https://acme.example.com"
api_key = "${AUDITFWD_TEST_UNSET_VAR}"
page_size = 0
lookback = "ten minutes"

[[sink]]
name = "out"
type = "stdout"
colour = "blue"
"#,
    )
    .unwrap();
    let out = auditfwd(&["run", "-c", path.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("bad.toml: "), "{err}");
    // Every problem at once, a wrong type within a table included.
    assert!(
        err.contains(
            "source[0].api_key: environment variable `AUDITFWD_TEST_UNSET_VAR` is not set"
        ),
        "{err}"
    );
    assert!(
        err.contains("source[0].lookback: `ten minutes` is not a duration"),
        "{err}"
    );
    assert!(
        err.contains("source[0] (\"acme\").page_size: 0 is out of range"),
        "{err}"
    );
    assert!(
        err.contains("sink[0] (\"out\").colour: unknown field `colour`"),
        "{err}"
    );
    assert!(err.contains(": 4 configuration problems"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reaches_the_api_and_the_sinks() {
    let sim = tenant(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        config_text(&sim, dir.path(), &Setup::new(dir.path())),
    )
    .unwrap();
    let out = auditfwd(&["check", "-c", good.to_str().unwrap()]).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout
            .contains("source tenant: ok: API reachable, key accepted, 500 events since start_at"),
        "{stdout}"
    );
    assert!(stdout.contains("sink files (file): ok"), "{stdout}");

    let wrong = dir.path().join("wrong.toml");
    let key = sim.api_key();
    std::fs::write(
        &wrong,
        config_text(&sim, dir.path(), &Setup::new(dir.path()))
            .replace(&format!("\"{key}\""), "\"wrong-s3cret\""),
    )
    .unwrap();
    let out = auditfwd(&["check", "-c", wrong.to_str().unwrap()]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("source tenant: FAILED: the API refused the API key (401"),
        "{stdout}"
    );
    assert!(!stdout.contains("wrong-s3cret") && !text(&out.stderr).contains("wrong-s3cret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_show_set_since_and_reset() {
    let sim = tenant(SimConfig {
        malformed_ratio: 0.05,
        ..SimConfig::quiet(120)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auditfwd.toml");
    let config_text = config_text(&sim, dir.path(), &Setup::new(dir.path()));
    std::fs::write(&path, &config_text).unwrap();
    let config = Config::load(&path).unwrap();
    let fwd = Forwarder::start(App::new(config));
    let expected = deliverable(&sim.truth()).len();
    let out_dir = dir.path().join("out");
    assert!(
        wait_for(Duration::from_secs(10), || read_lines(&out_dir).len()
            >= expected)
        .await
    );
    fwd.stop().await.unwrap();
    let c = path.to_str().unwrap();

    // The summary: one line for the source, its delivered count in it.
    let out = auditfwd(&["state", "show", "-c", c]).await;
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line = shown
        .lines()
        .find(|l| l.starts_with("tenant "))
        .unwrap_or_else(|| panic!("{shown}"));
    assert!(
        line.split_whitespace().any(|w| w == expected.to_string()),
        "{shown}"
    );

    let out = auditfwd(&["state", "show", "-c", c, "--source", "tenant"]).await;
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        shown.contains(&format!("delivered      {expected}\n")),
        "{shown}"
    );
    let dead = 120 - expected;
    assert!(
        shown.contains(&format!("dead-lettered  {dead}\n")),
        "{shown}"
    );
    assert!(shown.contains(&format!("({dead} lines)")), "{shown}");

    let out = auditfwd(&[
        "state",
        "set-since",
        "-c",
        c,
        "--source",
        "tenant",
        "2030-01-01T00:00:00Z",
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("reads events created from 2030-01-01T00:00:00.000Z"));
    let shown = text(
        &auditfwd(&["state", "show", "-c", c, "--source", "tenant"])
            .await
            .stdout,
    );
    assert!(
        shown.contains("scope starts   2030-01-01T00:00:00.000Z"),
        "{shown}"
    );

    let out = auditfwd(&["state", "reset", "-c", c, "--source", "tenant"]).await;
    assert!(out.status.success());
    let shown = text(&auditfwd(&["state", "show", "-c", c]).await.stdout);
    assert!(shown.contains("no state yet"), "{shown}");
    let shown = text(
        &auditfwd(&["state", "show", "-c", c, "--source", "tenant"])
            .await
            .stdout,
    );
    assert!(shown.contains("no state yet"), "{shown}");

    let out = auditfwd(&["state", "reset", "-c", c, "--source", "nope"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no source is named `nope`; configured: tenant"));
}

#[tokio::test]
async fn demo_runs_end_to_end_and_verifies_itself() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("demo-out");
    let out = auditfwd(&[
        "demo",
        "--duration",
        "3s",
        "--backlog",
        "800",
        "--out",
        out_dir.to_str().unwrap(),
    ])
    .await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains(" 0 missing, 0 duplicates"), "{stdout}");
    assert!(jsonl_files(&out_dir.join("demo-tenant")).len() == 1);
    // A second run replaces the first demo's output but nothing else.
    std::fs::write(dir.path().join("keep"), b"x").unwrap();
    let foreign = dir.path().join("not-a-demo");
    std::fs::create_dir(&foreign).unwrap();
    let out = auditfwd(&[
        "demo",
        "--duration",
        "1s",
        "--out",
        foreign.to_str().unwrap(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("was not made by `auditfwd demo`"));
}

#[tokio::test]
async fn version_names_the_git_revision() {
    // What build.rs should have embedded: the override, else HEAD now (a
    // commit since the last build must have rebuilt the binary).
    let rev = std::env::var("AUDITFWD_GIT_REV")
        .ok()
        .filter(|rev| !rev.trim().is_empty())
        .or_else(|| {
            let out = std::process::Command::new("git")
                .args(["rev-parse", "--short", "HEAD"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| text(&out.stdout).trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let out = auditfwd(&["--version"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("auditfwd {} ({rev})\n", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn help_shows_examples_for_every_command() {
    // The unit test in main.rs parses every example; this one checks that
    // the real binary prints them, with -h and --help.
    for (args, example) in [
        (
            &["--help"][..],
            "auditfwd run -c /etc/auditfwd/auditfwd.toml",
        ),
        (
            &["run", "--help"],
            "auditfwd run -c /etc/auditfwd/auditfwd.toml",
        ),
        (
            &["run", "-h"],
            "auditfwd run -c /etc/auditfwd/auditfwd.toml",
        ),
        (
            &["check", "--help"],
            "auditfwd check -c /etc/auditfwd/auditfwd.toml",
        ),
        (&["demo", "--help"], "auditfwd demo --duration 30s"),
        (&["simulate", "--help"], "auditfwd simulate --port 8080"),
        (
            &["probe", "--help"],
            "auditfwd probe http://127.0.0.1:9898/livez",
        ),
        (&["state", "--help"], "auditfwd state show -c"),
        (&["state", "show", "--help"], "auditfwd state show -c"),
        (&["state", "reset", "--help"], "auditfwd state reset -c"),
        (
            &["state", "set-since", "-h"],
            "--source acme 2026-11-01T00:00:00Z",
        ),
    ] {
        let out = auditfwd(args).await;
        let help = text(&out.stdout);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert!(
            help.contains("\nExamples:\n") && help.contains(example),
            "auditfwd {}:\n{help}",
            args.join(" ")
        );
    }
    let help = text(&auditfwd(&["run", "--help"]).await.stdout);
    assert!(help.contains("SIGHUP makes file sinks reopen"), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_passes_on_a_live_forwarder_and_explains_failures() {
    let listen = free_port();
    let (_sim, _dir, fwd) = forwarder_with_telemetry(SimConfig::quiet(0), listen).await;
    let live = format!("http://127.0.0.1:{listen}/livez");
    let mut out = auditfwd(&["probe", &live]).await;
    for _ in 0..50 {
        if out.status.success() {
            break;
        }
        // The listener is not up yet.
        tokio::time::sleep(Duration::from_millis(100)).await;
        out = auditfwd(&["probe", &live]).await;
    }
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{live}: 200 OK\n"));

    // An answer other than 2xx fails, with the status and body.
    let missing = format!("http://127.0.0.1:{listen}/nope");
    let out = auditfwd(&["probe", &missing]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with(&format!("error: {missing} answered 404 Not Found")),
        "{err}"
    );
    fwd.stop().await.unwrap();

    // Nothing listening: says so, and what to check.
    let closed = format!("http://127.0.0.1:{}/livez", free_port());
    let out = auditfwd(&["probe", "--timeout", "2s", &closed]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("cannot reach {closed}: ")), "{err}");
    assert!(err.contains("Connection refused"), "{err}");
    assert!(err.contains("[telemetry] listen"), "{err}");
    assert!(out.stdout.is_empty());

    // Not a URL: a usage error.
    let out = auditfwd(&["probe", "127.0.0.1:9898/livez"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("is not an http:// or https:// URL"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    // A refused key stops the only source: the daemon logs the error and
    // exits by itself.
    let sim = tenant(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auditfwd.toml");
    let key = sim.api_key();
    std::fs::write(
        &path,
        config_text(&sim, dir.path(), &Setup::new(dir.path()))
            .replace(&format!("\"{key}\""), "\"wrong-key\""),
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_auditfwd"))
            .args(["run", "-c"])
            .arg(&path)
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .output()
            .expect("auditfwd runs")
    })
    .await
    .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(" ERROR auditfwd::source::poller: "), "{err}");
    assert!(err.contains("the API refused the API key"), "{err}");
    assert!(
        !err.contains("\x1b["),
        "colour codes in piped logs: {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_off_a_terminal_logs_progress_and_draws_no_bar() {
    // 20 pages or more (a backfill) at one request per second: the 15 s
    // progress line comes well before the pass ends (once the reads pass
    // the API's total, the line shows the reads as the total).
    let sim = tenant(SimConfig::quiet(2000)).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auditfwd.toml");
    let setup = Setup {
        rate_limit: "{ requests_per_second = 1, burst = 1 }",
        ..Setup::new(dir.path())
    };
    std::fs::write(&path, config_text(&sim, dir.path(), &setup)).unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_auditfwd"))
        .args(["run", "-c"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("auditfwd starts");
    let done = wait_for(Duration::from_secs(120), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("backfill pass done")
    })
    .await;
    // SIGTERM: drain and exit.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(done, "no end of the backfill in 120 s: {err}");
    assert!(status.success(), "{status}: {err}");
    let progress = err
        .lines()
        .find(|l| l.contains(" backfill: read "))
        .unwrap_or_else(|| panic!("no progress line: {err}"));
    assert!(progress.contains(" of 2000 events ("), "{progress}");
    assert!(progress.contains(" events/s"), "{progress}");
    assert!(progress.contains("total=2000"), "{progress}");
    // Tie groups at page edges are read twice: a few more than 2000.
    assert!(err.contains("backfill pass done: read 20"), "{err}");
    // No bar: it would redraw with a carriage return or cursor movements.
    assert!(!err.contains('\r'), "{err:?}");
    assert!(!err.contains("\x1b["), "{err:?}");
    assert!(!err.contains("[====="), "{err:?}");
}

#[test]
fn every_example_config_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // Examples take secrets from the environment; any value will do.
        Config::parse(&text, &path, &dir, &|name| Some(format!("value-of-{name}")))
            .unwrap_or_else(|e| panic!("{e}"));
        seen += 1;
    }
    assert!(seen >= 2, "examples/ holds {seen} configs");
    // A layout in a directory of its own (examples/mssp/): its main file,
    // with every tenant file of its sources_dir.
    let mut layouts = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let main = entry.unwrap().path().join("auditfwd.toml");
        if !main.is_file() {
            continue;
        }
        let config = Config::load_with_env(&main, &|name| Some(format!("value-of-{name}")))
            .unwrap_or_else(|e| panic!("{e}"));
        if let Some(sources_dir) = &config.sources_dir {
            let tenant_files = std::fs::read_dir(sources_dir)
                .unwrap()
                .filter(|e| {
                    let name = e.as_ref().unwrap().file_name();
                    let name = name.to_string_lossy();
                    name.ends_with(".toml") && !name.starts_with('.')
                })
                .count();
            let from_files = config
                .sources
                .iter()
                .filter(|s| s.defined_in.is_some())
                .count();
            assert_eq!(from_files, tenant_files, "{}", main.display());
        }
        layouts += 1;
    }
    assert!(
        layouts >= 1,
        "examples/ holds {layouts} layouts in directories"
    );
}

/// Runs `auditfwd run -c config` with open-files limits `soft`/`hard`.
fn run_with_nofile(config: &Path, soft: u64, hard: u64) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_auditfwd"));
    command
        .args(["run", "-c", config.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs here.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_files_limit_is_raised_and_a_config_that_can_not_fit_is_refused() {
    let sim = tenant(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    // 60 tenants into one file sink: about 64 + 60 × 6 + 60 descriptors.
    let more: String = (1..60)
        .map(|i| {
            format!(
                "\n[[source]]\nname = \"t{i}\"\nbase_url = \"{}\"\napi_key = \"{}\"\nallow_http = true\n",
                sim.base_url(),
                sim.api_key()
            )
        })
        .collect();
    let setup = Setup {
        extra: &format!("\n{more}"),
        ..Setup::new(dir.path())
    };
    let config = dir.path().join("many.toml");
    std::fs::write(&config, config_text(&sim, dir.path(), &setup)).unwrap();
    let child = run_with_nofile(&config, 256, 256);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("needs about"), "{stderr}");
    assert!(stderr.contains("60 sources"), "{stderr}");
    assert!(stderr.contains("at most 256"), "{stderr}");
    assert!(stderr.contains("LimitNOFILE="), "{stderr}");

    // The same with room under the hard limit: the soft one is raised.
    let mut child = run_with_nofile(&config, 256, 8192);
    let pid = child.id();
    let limits = format!("/proc/{pid}/limits");
    let raised = wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&limits)
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("Max open files") && l.split_whitespace().nth(3) == Some("8192"))
    })
    .await;
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(
        raised,
        "{}",
        std::fs::read_to_string(&limits).unwrap_or_default()
    );
    assert!(status.success(), "{status}");
}
