//! How `auditfwd reload` finds the daemon to send SIGHUP to: the state
//! directory's lock file, `{state.dir}/auditfwd.lock` (see
//! [`crate::cursor::store::DirLock`]), which holds the pid of the process
//! that locked it.
//!
//! The daemon takes that lock at start, before any source, and holds it
//! while it runs (the lock goes with the process, however it ends), so a
//! second daemon on the same directory is refused at once, and a file left
//! by a daemon that is gone is recognised as stale and never used to signal
//! an unrelated process that got the same pid. One lock serves both: the
//! cursors' protection and the daemon's address.

use std::fs::{self, File};
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// The file that holds the daemon's pid: the state directory's lock.
pub const PID_FILE: &str = crate::cursor::store::LOCK_FILE;

/// Why the pid file could not be written or used.
#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    /// Reading or writing it failed.
    #[error(
        "cannot {action} {path} ({source}); check that the state directory exists and auditfwd may write it"
    )]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Another daemon holds it.
    #[error(
        "the state directory {dir} is locked by another auditfwd process{pid}; run one instance per state directory"
    )]
    Taken {
        /// ` (pid N)` of the other daemon, when its lock file names it.
        pid: String,
        /// The state directory.
        dir: PathBuf,
    },
    /// No daemon holds it.
    #[error(
        "no running auditfwd uses the state directory {dir} ({why}); start it with `auditfwd run`, or give the configuration it runs with (a changed [state] dir takes effect only at a restart)"
    )]
    NotRunning {
        /// The state directory.
        dir: PathBuf,
        /// What was found.
        why: &'static str,
    },
}

/// The daemon's hold on the state directory's lock; released when
/// dropped or when the process ends.
#[derive(Debug)]
pub struct PidFile {
    lock: std::sync::Arc<crate::cursor::store::DirLock>,
}

impl PidFile {
    /// Locks `{state_dir}/auditfwd.lock` for this process (shared with its
    /// cursor stores), with this process's pid in it.
    pub fn create(state_dir: &Path) -> Result<Self, PidFileError> {
        use crate::cursor::store::{DirLock, StoreError};
        match DirLock::acquire(state_dir, "the daemon") {
            Ok(lock) => Ok(Self { lock }),
            Err(StoreError::Locked { holder, .. }) => Err(PidFileError::Taken {
                pid: holder,
                dir: state_dir.to_path_buf(),
            }),
            Err(error) => Err(PidFileError::Io {
                action: "lock",
                path: state_dir.join(PID_FILE),
                source: std::io::Error::other(error.to_string()),
            }),
        }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        self.lock.path()
    }
}

/// The pid of the daemon running with `state_dir`: its pid file exists
/// and is locked.
pub fn running(state_dir: &Path) -> Result<u32, PidFileError> {
    let path = state_dir.join(PID_FILE);
    let not_running = |why| PidFileError::NotRunning {
        dir: state_dir.to_path_buf(),
        why,
    };
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(not_running("no auditfwd.lock in it"));
        }
        Err(source) => {
            return Err(PidFileError::Io {
                action: "open",
                path,
                source,
            });
        }
    };
    match file.try_lock_shared() {
        Ok(()) => {
            return Err(not_running(
                "auditfwd.lock is left from a process that ended",
            ));
        }
        Err(fs::TryLockError::WouldBlock) => {}
        Err(fs::TryLockError::Error(source)) => {
            return Err(PidFileError::Io {
                action: "lock",
                path,
                source,
            });
        }
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|source| PidFileError::Io {
            action: "read",
            path: path.clone(),
            source,
        })?;
    text.trim()
        .parse()
        .map_err(|_| not_running("auditfwd.lock holds no process id"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pid_is_found_while_the_file_is_held_and_not_after() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            running(dir.path()),
            Err(PidFileError::NotRunning { .. })
        ));
        let held = PidFile::create(dir.path()).unwrap();
        assert_eq!(running(dir.path()).unwrap(), std::process::id());
        // Another process is refused (tests/tenants.rs starts two daemons);
        // within one process the lock is shared with the cursor stores.
        drop(held);
        assert!(matches!(
            running(dir.path()),
            Err(PidFileError::NotRunning { .. })
        ));
        // A file nobody holds is stale.
        std::fs::write(dir.path().join(PID_FILE), "4242").unwrap();
        assert!(matches!(
            running(dir.path()),
            Err(PidFileError::NotRunning { .. })
        ));
    }
}
