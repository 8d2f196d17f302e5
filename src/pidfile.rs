//! The daemon's pid file, `{state.dir}/auditfwd.pid`: how `auditfwd
//! reload` finds the daemon to send SIGHUP to.
//!
//! The daemon writes its pid there and holds a lock on the file while it
//! runs (the lock goes with the process, however it ends), so a pid file
//! left by a daemon that is gone is recognised as stale and never used to
//! signal an unrelated process that got the same pid. The state directory
//! is the natural place: it is per daemon (each source's cursor is locked
//! there already) and both the daemon and an operator can find it from the
//! configuration file.

use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Seek as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// The pid file's name in the state directory.
pub const PID_FILE: &str = "auditfwd.pid";

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
        "another auditfwd (pid {pid}) runs with the state directory {dir}; run one instance per state directory"
    )]
    Taken {
        /// The other daemon.
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

/// The daemon's claim on its pid file; released when dropped or when the
/// process ends.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    _file: File,
}

impl PidFile {
    /// Writes this process's pid to `{state_dir}/auditfwd.pid` and locks it.
    pub fn create(state_dir: &Path) -> Result<Self, PidFileError> {
        let path = state_dir.join(PID_FILE);
        let io = |action| {
            let path = path.clone();
            move |source| PidFileError::Io {
                action,
                path,
                source,
            }
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(io("create the directory of"))?;
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io("open"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                return Err(PidFileError::Taken {
                    pid: pid.trim().to_string(),
                    dir: state_dir.to_path_buf(),
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io("lock")(e)),
        }
        file.set_len(0).map_err(io("write"))?;
        file.rewind().map_err(io("write"))?;
        writeln!(file, "{}", std::process::id()).map_err(io("write"))?;
        file.sync_all().map_err(io("write"))?;
        Ok(Self { path, _file: file })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
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
            return Err(not_running("no auditfwd.pid in it"));
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
                "auditfwd.pid is left from a process that ended",
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
        .map_err(|_| not_running("auditfwd.pid holds no process id"))
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
        assert!(matches!(
            PidFile::create(dir.path()),
            Err(PidFileError::Taken { .. })
        ));
        drop(held);
        assert!(matches!(
            running(dir.path()),
            Err(PidFileError::NotRunning { .. })
        ));
        // A file nobody holds is stale.
        std::fs::write(dir.path().join(PID_FILE), "4242\n").unwrap();
        assert!(matches!(
            running(dir.path()),
            Err(PidFileError::NotRunning { .. })
        ));
    }
}
