//! Embeds the git revision that `auditfwd --version` shows, as the
//! compile-time variable `AUDITFWD_GIT_REV`: `$AUDITFWD_GIT_REV` when set
//! (a Docker build has no `.git`), else `git rev-parse --short HEAD`, else
//! `unknown` (a source tarball, no git installed).

use std::path::Path;
use std::process::Command;

/// The trimmed output of a successful `git` command.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_string())
}

/// Rebuilds when `path` changes. Only existing files: cargo reruns a build
/// script on every build while one it watches is missing.
fn watch(path: &str) {
    if Path::new(path).exists() {
        println!("cargo:rerun-if-changed={path}");
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=AUDITFWD_GIT_REV");
    let rev = std::env::var("AUDITFWD_GIT_REV")
        .ok()
        .filter(|rev| !rev.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    // HEAD moves on a checkout (HEAD changes) and on a commit (the branch
    // it points to changes, or packed-refs after a gc). `--git-path` finds
    // each file also in a worktree, where HEAD and refs live apart.
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        watch(&head);
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(file) = git(&["rev-parse", "--git-path", &branch])
    {
        watch(&file);
    }
    if let Some(packed) = git(&["rev-parse", "--git-path", "packed-refs"]) {
        watch(&packed);
    }
    println!("cargo:rustc-env=AUDITFWD_GIT_REV={rev}");
}
