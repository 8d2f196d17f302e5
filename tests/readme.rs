//! The README shows what the binary does: its sample configuration errors
//! are the real output of `auditfwd check` on its sample configuration.

/// The first fenced block after `marker` in the README.
fn block_after(readme: &str, marker: &str) -> String {
    let at = readme
        .find(marker)
        .unwrap_or_else(|| panic!("README lacks {marker}"));
    let rest = &readme[at..];
    let open = rest.find("```").expect("a fenced block follows");
    let body = &rest[open..];
    let start = body.find('\n').expect("fence line") + 1;
    let end = body[start..].find("```").expect("closing fence") + start;
    body[start..end].to_string()
}

#[test]
fn the_readme_sample_errors_are_what_the_binary_prints() {
    let readme = include_str!("../README.md");
    let config = block_after(readme, "<!-- readme-sample-config");
    let expected = block_after(readme, "<!-- readme-sample-errors");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("auditfwd.toml"), config).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_auditfwd"))
        .args(["check", "-c", "auditfwd.toml"])
        .current_dir(dir.path())
        .env("ACME_API_KEY", "sk_live_readme")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        expected.trim_end(),
        "the README's sample errors are stale"
    );
    assert!(!stderr.contains("sk_live_readme"));
}
