//! The real `auditfwd` binary, run as an operator runs it: one-shot
//! commands, and the daemon as a child process that signals reach.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// `auditfwd args` to completion (`RUST_LOG` unset).
pub fn auditfwd_blocking(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_auditfwd"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("auditfwd runs")
}

/// [`auditfwd_blocking`] off the async runtime's threads.
pub async fn auditfwd(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        auditfwd_blocking(&args)
    })
    .await
    .unwrap()
}

/// Output bytes as text.
pub fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// The daemon, `auditfwd run -c config` (`RUST_LOG` unset, stdout
/// discarded), its stderr going to `stderr`.
pub fn spawn_daemon(config: &Path, stderr: impl Into<Stdio>) -> Child {
    Command::new(env!("CARGO_BIN_EXE_auditfwd"))
        .args(["run", "-c", config.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// [`spawn_daemon`] with its stderr in the file `log`.
pub fn spawn(config: &Path, log: &Path) -> Child {
    spawn_daemon(config, std::fs::File::create(log).unwrap())
}

/// Sends `sig` (`libc::SIGHUP`, `SIGTERM`, ...) to `child`.
pub fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on a child we own; no memory is involved.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}
