//! Packaging: the systemd unit and the logrotate snippet in `deploy/` are
//! checked by the tools that will read them (`systemd-analyze`,
//! `logrotate`), installed by `scripts/services.sh`; the Dockerfile's
//! health check is run against a forwarder (no container engine here).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use auditfwd_sim::SimConfig;
use auditfwd_testkit::{find_binary, free_port, wait_for_async};

use crate::support::*;

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn run(command: &mut Command) -> (Output, String) {
    let out = command.output().expect("the tool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

/// A file with `text` and mode 0644 (logrotate refuses writable configs).
fn write_0644(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// Every `Key=value` line of a unit file, in order (keys may repeat).
fn directives(unit: &str) -> Vec<(&str, &str)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .map(|l| l.split_once('=').unwrap_or((l, "")))
        .collect()
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit = repo_file("deploy/auditfwd.service");
    let exec_start = "ExecStart=/usr/bin/auditfwd run -c /etc/auditfwd/auditfwd.toml\n";
    assert!(unit.contains(exec_start), "{unit}");
    // `verify` checks that every Exec binary exists: use the one just built.
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("auditfwd.service");
    let built = exec_start.replace("/usr/bin/auditfwd", env!("CARGO_BIN_EXE_auditfwd"));
    write_0644(&path, &unit.replace(exec_start, &built));

    let analyze = find_binary("systemd-analyze", "SYSTEMD_ANALYZE_BIN");
    let (out, text) = run(Command::new(&analyze)
        .args(["verify", "--man=no"])
        .arg(&path));
    // Unknown keys and bad values are only warnings: any output is a finding.
    assert!(
        out.status.success() && text.trim().is_empty(),
        "systemd-analyze verify: {text}"
    );
    // The exposure score systemd computes from the sandboxing options:
    // 0 (locked down) to 10 (none); 2.0 or less is rated OK.
    let (out, text) = run(Command::new(&analyze)
        .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
        .arg(&path));
    assert!(
        out.status.success(),
        "exposure above 2.0 (systemd-analyze security):\n{text}"
    );

    let found = directives(&unit);
    for expected in [
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("LimitNOFILE", "65536"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("Restart", "on-failure"),
        // Configuration errors (exit 2) are not cured by restarting.
        ("RestartPreventExitStatus", "2"),
        // /var/lib/auditfwd: the default [state] dir, kept 0700.
        ("StateDirectory", "auditfwd"),
        ("StateDirectoryMode", "0700"),
        // /var/log/auditfwd: where file sinks may write.
        ("LogsDirectory", "auditfwd"),
        ("ConfigurationDirectory", "auditfwd"),
    ] {
        assert!(
            found.contains(&expected),
            "{}={} missing from deploy/auditfwd.service",
            expected.0,
            expected.1
        );
    }
}

#[test]
fn the_logrotate_snippet_parses_and_signals_the_daemon() {
    let snippet = repo_file("deploy/logrotate");
    assert!(snippet.contains("/var/log/auditfwd/*.jsonl {"), "{snippet}");
    // Debug mode parses and says what it would do, changing nothing. Point
    // the pattern at a directory with a log in it, and force a rotation,
    // so that the whole rotation including postrotate is planned.
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let log = logs.join("acme.jsonl");
    std::fs::write(&log, "{}\n").unwrap();
    let config = dir.path().join("auditfwd");
    write_0644(
        &config,
        &snippet.replace("/var/log/auditfwd", logs.to_str().unwrap()),
    );

    let logrotate = find_binary("logrotate", "LOGROTATE_BIN");
    let (out, text) = run(Command::new(&logrotate)
        .args(["--debug", "--force", "--state"])
        .arg(dir.path().join("state"))
        .arg(&config));
    // An unknown directive is only reported (`error: ... ignoring line`).
    assert!(
        out.status.success() && !text.contains("error:"),
        "logrotate --debug: {text}"
    );
    assert!(
        text.contains(&format!("rotating pattern: {}/*.jsonl", logs.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("renaming {} to ", log.display())),
        "{text}"
    );
    assert!(text.contains("running postrotate script"), "{text}");
    let postrotate = text
        .split("running script with args")
        .nth(1)
        .unwrap_or_else(|| panic!("no postrotate script in: {text}"));
    assert!(
        postrotate.contains("--signal=HUP auditfwd.service"),
        "postrotate does not send SIGHUP to auditfwd: {postrotate}"
    );
    assert!(log.exists(), "debug mode renamed the log");
}

/// The Dockerfile's `HEALTHCHECK ... CMD [...]` (exec form) and its options.
fn healthcheck(dockerfile: &str) -> (String, Vec<String>) {
    let joined = dockerfile.replace("\\\n", " ");
    let line = joined
        .lines()
        .find(|l| l.starts_with("HEALTHCHECK "))
        .expect("the Dockerfile has a HEALTHCHECK");
    let (options, command) = line.split_once(" CMD ").expect("HEALTHCHECK ... CMD [...]");
    let command: Vec<String> = serde_json::from_str(command.trim())
        .unwrap_or_else(|e| panic!("CMD is not in exec form (JSON array): {e}: {command}"));
    (options.to_string(), command)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docker_healthcheck_probes_livez_with_the_binary() {
    let dockerfile = repo_file("Dockerfile");
    let (options, command) = healthcheck(&dockerfile);
    assert!(options.contains("--timeout="), "{options}");
    // The image has no curl: the probe is the binary the image runs.
    let binary = "/usr/local/bin/auditfwd";
    assert!(
        dockerfile.contains(&format!("ENTRYPOINT [\"{binary}\"]")),
        "{dockerfile}"
    );
    assert_eq!(command[0], binary, "{command:?}");
    assert_eq!(command[1], "probe", "{command:?}");
    let url = command.last().unwrap();
    assert_eq!(url, "http://127.0.0.1:9898/livez");
    assert!(dockerfile.contains("\nEXPOSE 9898\n"), "{dockerfile}");

    // The same command, on a forwarder's port: healthy while it runs.
    let listen = free_port();
    let (_sim, _dir, fwd) = forwarder_with_telemetry(SimConfig::quiet(0), listen).await;
    let args: Vec<String> = command[1..]
        .iter()
        .map(|a| a.replace(":9898/", &format!(":{listen}/")))
        .collect();
    let probe = || {
        let args = args.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_auditfwd"))
                .args(&args)
                .output()
                .expect("auditfwd runs")
        })
    };
    let healthy = wait_for_async(Duration::from_secs(10), || async {
        probe().await.unwrap().status.success()
    })
    .await;
    assert!(healthy, "{:?}", probe().await.unwrap());
    // Stopped: unhealthy.
    fwd.stop().await.unwrap();
    let out = probe().await.unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}
