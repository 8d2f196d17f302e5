//! A full disk under the file sink (a real tmpfs that fills up mid-batch,
//! then is remounted larger): the forwarder keeps running, nothing is lost,
//! and no batch is ever half in the file — no line glued to a fragment, no
//! line twice. Every file the sink made, rotated and compressed ones
//! included, has the configured mode.
//!
//! Needs root (it mounts a tmpfs), as CI runs; elsewhere set
//! `AUDITFWD_SKIP_ROOT_TESTS=1` to skip it.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use auditfwd::app::App;
use auditfwd::telemetry::{Metrics, Status};
use auditfwd_sim::{SimConfig, Verdict};
use auditfwd_testkit::{wait_for, wait_for_async};

use crate::support::*;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
                dir.to_str().unwrap(),
            ],
        );
        Tmpfs(dir.to_path_buf())
    }

    fn resize(&self, size: &str) {
        run(
            "mount",
            &[
                "-o",
                &format!("remount,size={size}"),
                self.0.to_str().unwrap(),
            ],
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn run(cmd: &str, args: &[&str]) {
    let status = Command::new(cmd).args(args).status().unwrap();
    assert!(status.success(), "{cmd} {args:?} failed: {status}");
}

/// Whether to skip a test that mounts a tmpfs: only when not root and
/// `AUDITFWD_SKIP_ROOT_TESTS` says so; otherwise not being root fails it.
fn skip_without_root() -> bool {
    if is_root() {
        return false;
    }
    assert!(
        std::env::var_os("AUDITFWD_SKIP_ROOT_TESTS").is_some(),
        "this test mounts a tmpfs and needs root; set AUDITFWD_SKIP_ROOT_TESTS=1 to skip it"
    );
    true
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Every line of every file the sink wrote (compressed ones unpacked).
/// Strictly, a line that is not one whole JSON record fails the test;
/// otherwise (while the sink is still writing) it is skipped, as are
/// files that vanish while read and compressions under way.
fn id_counts_in(dir: &Path, strict: bool) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for path in files(dir) {
        if !strict && path.extension().is_some_and(|e| e == "tmp") {
            continue;
        }
        let mut text = String::new();
        let read = std::fs::File::open(&path).and_then(|file| {
            if path.extension().is_some_and(|e| e == "gz") {
                flate2::read::GzDecoder::new(file).read_to_string(&mut text)
            } else {
                std::io::BufReader::new(file).read_to_string(&mut text)
            }
        });
        match read {
            Ok(_) => {}
            Err(_) if !strict => continue,
            Err(e) => panic!("{}: {e}", path.display()),
        }
        assert!(
            !strict || text.is_empty() || text.ends_with('\n'),
            "{} ends in a fragment",
            path.display()
        );
        for line in text.lines() {
            let record: serde_json::Value = match serde_json::from_str(line) {
                Ok(record) => record,
                Err(_) if !strict => continue,
                Err(e) => panic!("{}: not one record ({e}): {line:.200}", path.display()),
            };
            *counts
                .entry(record["id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_delays_events_but_never_tears_or_repeats_a_batch() {
    if skip_without_root() {
        return;
    }
    let sim = tenant(SimConfig {
        backlog: 3000,
        insert_rate: 20.0,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let disk = Tmpfs::mount(&out, "96k");
    let setup = Setup {
        out_path: format!("{}/{{source}}/events.jsonl", out.display()),
        extra: "max_bytes = 20000\ncompression = \"gzip\"\nmode = \"0604\"",
        ..Setup::new(dir.path())
    };
    let fwd = Forwarder::with_setup(&sim, dir.path(), &setup);
    let label = Metrics::sink("files");
    let errors = || fwd.metrics.sink_errors.get_or_create(&label).get();
    let written = || fwd.metrics.sink_records.get_or_create(&label).get();
    // Wait until the disk is full for good: nothing more is written while
    // the sink keeps failing.
    let stuck = wait_for_async(Duration::from_secs(90), || async {
        let (e, w) = (errors(), written());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        e > 0 && errors() > e && written() == w
    })
    .await;
    assert!(stuck, "the disk never filled up for good");
    assert!(fwd.is_running(), "the forwarder stopped on a full disk");
    assert!(
        !Verdict::of(&sim.truth(), &id_counts_in(&out, false))
            .missing
            .is_empty(),
        "everything arrived although the disk is full"
    );
    disk.resize("64m");
    let truth_now = sim.truth();
    assert!(
        wait_for(Duration::from_secs(120), || {
            Verdict::of(&truth_now, &id_counts_in(&out, false))
                .missing
                .is_empty()
        })
        .await,
        "not everything arrived after the disk was enlarged"
    );
    fwd.stop().await.unwrap();
    let truth = sim.truth();
    let counts = id_counts_in(&out, true);
    let verdict = Verdict::of(&truth, &counts);
    assert!(
        verdict.unexpected.is_empty(),
        "forged: {:?}",
        verdict.unexpected
    );
    assert!(
        verdict.duplicates.is_empty(),
        "a failed batch left lines behind: {:?}",
        &verdict.duplicates[..verdict.duplicates.len().min(10)]
    );
    // Events created after the last poll may be missing; those before the
    // disk came back may not.
    let late: Vec<_> = verdict
        .missing
        .iter()
        .filter(|id| {
            truth_now
                .iter()
                .any(|e| e.id.as_deref() == Some(id.as_str()))
        })
        .collect();
    assert!(late.is_empty(), "lost: {late:?}");
    let all = files(&out);
    assert!(
        all.iter().any(|p| p.extension().is_some_and(|e| e == "gz")),
        "nothing was rotated and compressed: {all:?}"
    );
    for path in &all {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o604, "{} has mode {mode:o}", path.display());
    }
}

/// Fills the file system holding `dir` with a filler file; returns it.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_state_disk_holds_the_source_and_loses_nothing() {
    if skip_without_root() {
        return;
    }
    let sim = tenant(SimConfig {
        backlog: 500,
        insert_rate: 20.0,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let disk = Tmpfs::mount(&state, "1m");
    let config = config_text(&sim, dir.path(), &Setup::new(dir.path()));
    let out = dir.path().join("out");
    let fwd = Forwarder::start(App::new(parse_config(&config)));
    assert!(all_delivered(&sim.truth(), &out, Duration::from_secs(30)).await);

    // The state disk fills up: the source holds, says why, and the process
    // keeps running.
    let filler = fill(&state);
    let degraded = wait_for(Duration::from_secs(30), || {
        matches!(
            fwd.health.get("source:tenant"),
            Some(Status::Degraded(reason)) if reason.contains("cannot save the cursor")
        )
    })
    .await;
    assert!(degraded, "{:?}", fwd.health.snapshot());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        fwd.is_running(),
        "the forwarder stopped on a full state disk"
    );
    let held = id_counts(&read_lines(&out)).len();

    // Room again: it catches up, and the state it saved loads.
    std::fs::remove_file(filler).unwrap();
    let truth = sim.truth();
    assert!(
        all_delivered(&truth, &out, Duration::from_secs(30)).await,
        "not everything arrived after the state disk had room again"
    );
    assert!(id_counts(&read_lines(&out)).len() > held);
    assert!(
        wait_for(Duration::from_secs(10), || fwd.health.get("source:tenant")
            == Some(Status::Ok))
        .await
    );
    fwd.stop().await.unwrap();
    sim.freeze();
    let fwd = Forwarder::start(App::new(parse_config(&config)));
    let truth = sim.truth();
    assert!(all_delivered(&truth, &out, Duration::from_secs(30)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(fwd.is_running(), "{:?}", fwd.health.snapshot());
    fwd.stop().await.unwrap();
    let verdict = Verdict::of(&truth, &id_counts(&read_lines(&out)));
    verdict.assert_exact();
    drop(disk);
}
