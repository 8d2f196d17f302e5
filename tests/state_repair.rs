//! The state commands on state a start would refuse: `state show` names
//! the unreadable file or journal lines and exits 1; `state reset` and
//! `state set-since` replace it, keeping the unreadable files aside.

use std::path::Path;

use auditfwd_sim::SimConfig;

use crate::support::binary::{auditfwd_blocking, text};
use crate::support::*;

fn corrupt_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".corrupt-"))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn state_commands_report_and_replace_unreadable_state() {
    let sim = tenant(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let two_sources = format!(
        "\n[[source]]\nname = \"other\"\nbase_url = \"{}\"\napi_key = \"k\"\nallow_http = true\n",
        sim.base_url()
    );
    let setup = Setup {
        extra_source: &two_sources,
        ..Setup::new(dir.path())
    };
    let config = dir.path().join("auditfwd.toml");
    std::fs::write(&config, config_text(&sim, dir.path(), &setup)).unwrap();
    let c = config.to_str().unwrap();
    let set_since =
        |time: &str| auditfwd_blocking(&["state", "set-since", "-c", c, "--source", "other", time]);
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    // `tenant`: a snapshot that is not JSON. `other`: a good cursor whose
    // journal has a glued line in the middle and a torn last line.
    std::fs::write(state.join("tenant.state.json"), b"{not json").unwrap();
    let out = set_since("2026-01-01T00:00:00Z");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let good = r#"{"seq":1,"delivered":3}"#;
    std::fs::write(
        state.join("other.journal"),
        format!("{good}\n{{\"seq\":2,glued{good}\n{good}\n{{\"se"),
    )
    .unwrap();

    let out = auditfwd_blocking(&["state", "show", "-c", c]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("source tenant\n  UNREADABLE     state file"),
        "{stderr}"
    );
    assert!(
        stderr.contains("tenant.state.json is unreadable"),
        "{stderr}"
    );
    assert!(
        stderr.contains("UNREADABLE     journal line(s) 2 are not checkpoints"),
        "{stderr}"
    );
    assert!(stderr.contains("torn journal"), "{stderr}");
    // The readable parts are still shown.
    assert!(
        stderr.contains("scope starts   2026-01-01T00:00:00.000Z"),
        "{stderr}"
    );
    assert!(
        stderr.contains("2 source(s) have state a start would refuse"),
        "{stderr}"
    );

    let out = auditfwd_blocking(&["state", "reset", "-c", c, "--source", "tenant"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("unreadable state moved aside"),
        "{}",
        text(&out.stdout)
    );
    let out = set_since("2026-02-01T00:00:00Z");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("the unreadable state was moved aside"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        corrupt_files(&state).len(),
        3,
        "{:?}",
        corrupt_files(&state)
    );

    let out = auditfwd_blocking(&["state", "show", "-c", c]);
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{shown}{}", text(&out.stderr));
    assert!(!shown.contains("UNREADABLE"), "{shown}");
    let out = auditfwd_blocking(&["state", "show", "-c", c, "--source", "tenant"]);
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{shown}{}", text(&out.stderr));
    assert!(shown.contains("source tenant\n  no state yet"), "{shown}");
    let out = auditfwd_blocking(&["state", "show", "-c", c, "--source", "other"]);
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{shown}{}", text(&out.stderr));
    assert!(
        shown.contains("scope starts   2026-02-01T00:00:00.000Z"),
        "{shown}"
    );
    assert!(!shown.contains("UNREADABLE"), "{shown}");
}
