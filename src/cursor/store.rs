//! Where cursors live. [`StateStore`] is the small seam between the cursor
//! and its storage: the embedded [`FileStore`] keeps one snapshot and one
//! append-only journal per source; a fleet mode can implement the same trait
//! on a compacted Kafka topic.
//!
//! A commit returns only once the checkpoint survives a crash (`fdatasync`),
//! because the poller treats a returned commit as permission to move on.
//!
//! File descriptors: a process with thousands of sources must not hold
//! several files per source for ever. One lock file (`auditfwd.lock`)
//! guards the whole state directory against a second process, shared by
//! every store of this process ([`DirLock`]); a journal is open only while
//! a checkpoint is appended (open, write, `fdatasync`, close: the open and
//! close cost microseconds next to the `fdatasync`).

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use super::legacy;
use super::{Checkpoint, CursorState, STATE_VERSION};

/// Errors of a state store; each says which file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing a state file failed.
    #[error(
        "state file {path}: cannot {action}: {source}; check that the state directory is writable and the disk is not full"
    )]
    Io {
        /// The file.
        path: PathBuf,
        /// What was attempted.
        action: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The snapshot is not a state file auditfwd can read.
    #[error(
        "state file {path} is unreadable ({reason}); restore it from a backup, or run `auditfwd state reset` to start over (events may then be sent again)"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Another process holds the state directory's lock, or this process
    /// already has the source's store open.
    #[error(
        "state for source `{source_name}` is locked by another auditfwd process{holder} ({path}); run one instance per state directory, and stop the daemon before `auditfwd state reset` or `state set-since`"
    )]
    Locked {
        /// The source.
        source_name: String,
        /// The lock file.
        path: PathBuf,
        /// ` (pid N)` when the lock file names its holder.
        holder: String,
    },
    /// The fleet's state topic could not be read or written.
    #[error(
        "state of source `{source_name}` on Kafka topic {topic}: cannot {action}: {reason}; check that the brokers are reachable and that this replica may read and write the topic"
    )]
    Kafka {
        /// The source.
        source_name: String,
        /// The state topic.
        topic: String,
        /// What was attempted.
        action: &'static str,
        /// Why it failed.
        reason: String,
    },
}

/// Name of the lock file of a state directory.
pub const LOCK_FILE: &str = "auditfwd.lock";

/// The lock of one state directory, held by this process: taken at the
/// first [`FileStore::open`] in the directory, shared by every store of
/// the process (one descriptor, not one per source), released when the
/// last store closes. It also records which sources have a store open, so
/// that one source is never opened twice.
#[derive(Debug)]
pub struct DirLock {
    path: PathBuf,
    open_sources: Mutex<HashSet<String>>,
    _file: File,
}

/// The directory locks this process holds, by directory.
static DIR_LOCKS: Mutex<Option<HashMap<PathBuf, Weak<DirLock>>>> = Mutex::new(None);

impl DirLock {
    /// The lock of `dir` (created if needed): this process's, or newly
    /// taken; [`StoreError::Locked`] when another process holds it.
    pub fn acquire(dir: &Path, source: &str) -> Result<Arc<DirLock>, StoreError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir, "create the state directory"))?;
        let key = fs::canonicalize(dir).map_err(io_err(dir, "open the state directory"))?;
        let mut locks = DIR_LOCKS.lock().unwrap_or_else(|p| p.into_inner());
        let locks = locks.get_or_insert_with(HashMap::new);
        if let Some(lock) = locks.get(&key).and_then(Weak::upgrade) {
            return Ok(lock);
        }
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path, "open the lock file"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder
                    .trim()
                    .parse::<u32>()
                    .map(|pid| format!(" (pid {pid})"))
                    .unwrap_or_default();
                return Err(StoreError::Locked {
                    source_name: source.to_string(),
                    path,
                    holder,
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_err(&path, "lock")(e)),
        }
        // Who holds it, for the message another process prints.
        let pid = std::process::id().to_string();
        file.set_len(0)
            .and_then(|()| file.write_all(pid.as_bytes()))
            .map_err(io_err(&path, "write the lock file"))?;
        let lock = Arc::new(DirLock {
            path,
            open_sources: Mutex::new(HashSet::new()),
            _file: file,
        });
        locks.retain(|_, weak| weak.strong_count() > 0);
        locks.insert(key, Arc::downgrade(&lock));
        Ok(lock)
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Marks `source` open; [`StoreError::Locked`] if it already is.
    fn claim(self: &Arc<Self>, source: &str) -> Result<SourceClaim, StoreError> {
        let mut open = self.open_sources.lock().unwrap_or_else(|p| p.into_inner());
        if !open.insert(source.to_string()) {
            return Err(StoreError::Locked {
                source_name: source.to_string(),
                path: self.path.clone(),
                holder: String::new(),
            });
        }
        Ok(SourceClaim {
            lock: Arc::clone(self),
            source: source.to_string(),
        })
    }
}

/// A source's store is open; dropping it releases the source (and, with
/// the last one, the directory's lock).
#[derive(Debug)]
struct SourceClaim {
    lock: Arc<DirLock>,
    source: String,
}

impl Drop for SourceClaim {
    fn drop(&mut self) {
        self.lock
            .open_sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.source);
    }
}

/// Durable storage of one source's cursor.
pub trait StateStore: Send {
    /// The last committed state, or `None` for a new source.
    fn load(&mut self) -> Result<Option<CursorState>, StoreError>;

    /// Makes `checkpoint` durable. Returns `true` when the store would like
    /// a full snapshot (see [`StateStore::snapshot`]) to bound its size.
    fn commit(&mut self, checkpoint: &Checkpoint) -> Result<bool, StoreError>;

    /// Makes several checkpoints durable, in order: the same as committing
    /// each in turn, but a store may write them with one sync (group
    /// commit). On an error, any prefix of them may be durable; committing
    /// them all again is harmless, since replay skips checkpoints by
    /// sequence number.
    fn commit_all(&mut self, checkpoints: &[Checkpoint]) -> Result<bool, StoreError> {
        let mut wants_snapshot = false;
        for checkpoint in checkpoints {
            wants_snapshot |= self.commit(checkpoint)?;
        }
        Ok(wants_snapshot)
    }

    /// Replaces everything stored with `state`.
    fn snapshot(&mut self, state: &CursorState) -> Result<(), StoreError>;

    /// Whether another writer claimed this source since this store loaded
    /// it (fleet mode: another replica took it over), and who: the source
    /// should then stop and leave it to them. Never, for a store only one
    /// process can open.
    fn outclaimed(&self) -> Option<String> {
        None
    }
}

/// A snapshot (`{source}.state.json`, written atomically: temp file, fsync,
/// rename, fsync of the directory) plus a journal (`{source}.journal`, one
/// JSON checkpoint per line, fdatasync per commit). Compaction rewrites the
/// snapshot once the journal outgrows it. Files are created `0600` in a
/// `0700` directory; the directory's lock ([`DirLock`]) keeps a second
/// process away. The journal is open only during a commit or a snapshot.
#[derive(Debug)]
pub struct FileStore {
    source: String,
    snapshot_path: PathBuf,
    journal_path: PathBuf,
    /// Open only within a commit or snapshot (and after a test put it
    /// there); `None` between them.
    journal: Option<File>,
    /// An append failed: part of a line may follow the last complete
    /// checkpoint (`journal_bytes`) until the journal is reopened.
    torn: bool,
    journal_bytes: u64,
    snapshot_bytes: u64,
    _claim: SourceClaim,
}

/// Smallest journal size that triggers compaction.
const MIN_COMPACT_BYTES: u64 = 1 << 20;

fn io_err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// `result`, with a file that does not exist as `None` and any other error
/// as [`StoreError::Io`] on `path`.
fn unless_missing<T>(
    result: io::Result<T>,
    path: &Path,
    action: &'static str,
) -> Result<Option<T>, StoreError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, action)(e)),
    }
}

impl FileStore {
    /// Opens (creating if needed) the state of `source` in `dir`, taking
    /// the directory's lock unless this process holds it already.
    pub fn open(dir: &Path, source: &str) -> Result<Self, StoreError> {
        let claim = DirLock::acquire(dir, source)?.claim(source)?;
        Ok(Self {
            source: source.to_string(),
            snapshot_path: Self::snapshot_path(dir, source),
            journal_path: dir.join(format!("{source}.journal")),
            journal: None,
            torn: false,
            journal_bytes: 0,
            snapshot_bytes: 0,
            _claim: claim,
        })
    }

    /// Path of a source's snapshot file.
    pub fn snapshot_path(dir: &Path, source: &str) -> PathBuf {
        dir.join(format!("{source}.state.json"))
    }

    /// The journal, opened for appending. After a failed append it is
    /// first cut back to the last complete checkpoint, so the next one
    /// never lands behind a fragment (which would make the journal
    /// unreadable at the next start).
    fn open_journal(&mut self) -> Result<&mut File, StoreError> {
        if self.journal.is_none() {
            let path = &self.journal_path;
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(io_err(path, "open the journal"))?;
            let len = file
                .metadata()
                .map_err(io_err(path, "read the journal"))?
                .len();
            if self.torn && len > self.journal_bytes {
                file.set_len(self.journal_bytes)
                    .map_err(io_err(path, "repair the journal"))?;
                file.sync_all()
                    .map_err(io_err(path, "repair the journal"))?;
                tracing::warn!(path = %path.display(), bytes = len - self.journal_bytes, "removed the part of a failed commit from the journal");
            }
            if self.torn {
                self.journal_bytes = self.journal_bytes.min(len);
                self.torn = false;
            }
            self.journal = Some(file);
        }
        Ok(self.journal.as_mut().expect("just opened"))
    }

    /// Replays the journal onto `state`; cuts off a torn last line (a crash
    /// during a commit that therefore never returned).
    fn replay(&mut self, state: &mut Option<CursorState>) -> Result<(), StoreError> {
        let path = self.journal_path.clone();
        let Some(file) = unless_missing(File::open(&path), &path, "read the journal")? else {
            return Ok(());
        };
        let mut reader = BufReader::new(file);
        let mut good_len: u64 = 0;
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader
                .read_line(&mut line)
                .map_err(io_err(&path, "read the journal"))?;
            if n == 0 {
                break;
            }
            if !line.ends_with('\n') {
                break; // torn write
            }
            match serde_json::from_str::<Checkpoint>(&line) {
                Ok(cp) => {
                    let st = state.get_or_insert_with(|| {
                        CursorState::new(&self.source, chrono::DateTime::UNIX_EPOCH)
                    });
                    st.apply(&cp);
                    good_len += n as u64;
                }
                Err(e) => {
                    return Err(StoreError::Corrupt {
                        path,
                        reason: format!("journal line after byte {good_len}: {e}"),
                    });
                }
            }
        }
        let total = fs::metadata(&path)
            .map_err(io_err(&path, "read the journal"))?
            .len();
        if total > good_len {
            tracing::warn!(path = %path.display(), bytes = total - good_len, "dropping a torn journal entry from an interrupted commit");
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_err(&path, "repair the journal"))?;
            f.set_len(good_len)
                .map_err(io_err(&path, "repair the journal"))?;
            f.sync_all().map_err(io_err(&path, "repair the journal"))?;
        }
        self.journal_bytes = good_len;
        Ok(())
    }
}

impl FileStore {
    /// Converts a layout-1 snapshot and its journal to the current layout
    /// and saves it (see [`legacy`]).
    fn upgrade(&mut self, bytes: &[u8]) -> Result<CursorState, StoreError> {
        let journal = unless_missing(
            fs::read_to_string(&self.journal_path),
            &self.journal_path,
            "read the journal",
        )?
        .unwrap_or_default();
        let state = legacy::upgrade(bytes, &journal, &self.source).map_err(|reason| {
            StoreError::Corrupt {
                path: self.snapshot_path.clone(),
                reason,
            }
        })?;
        tracing::info!(source = %self.source, "state upgraded from layout 1 to layout {STATE_VERSION}");
        self.snapshot(&state)?;
        Ok(state)
    }
}

/// The `version` field of a snapshot.
fn layout_version(bytes: &[u8]) -> Result<u32, String> {
    #[derive(serde::Deserialize)]
    struct Version {
        version: u32,
    }
    serde_json::from_slice::<Version>(bytes)
        .map(|v| v.version)
        .map_err(|e| e.to_string())
}

impl StateStore for FileStore {
    fn load(&mut self) -> Result<Option<CursorState>, StoreError> {
        let snapshot = unless_missing(fs::read(&self.snapshot_path), &self.snapshot_path, "read")?;
        let mut state = match snapshot {
            Some(bytes) => {
                self.snapshot_bytes = bytes.len() as u64;
                let version = layout_version(&bytes).map_err(|reason| StoreError::Corrupt {
                    path: self.snapshot_path.clone(),
                    reason,
                })?;
                if version == legacy::VERSION {
                    return self.upgrade(&bytes).map(Some);
                }
                if version != STATE_VERSION {
                    return Err(StoreError::Corrupt {
                        path: self.snapshot_path.clone(),
                        reason: format!(
                            "layout version {version} is not {STATE_VERSION}; it was written by another auditfwd version"
                        ),
                    });
                }
                let state: CursorState =
                    serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                        path: self.snapshot_path.clone(),
                        reason: e.to_string(),
                    })?;
                if state.source != self.source {
                    return Err(StoreError::Corrupt {
                        path: self.snapshot_path.clone(),
                        reason: format!(
                            "it belongs to source `{}`, not `{}`",
                            state.source, self.source
                        ),
                    });
                }
                Some(state)
            }
            None => None,
        };
        self.replay(&mut state)?;
        Ok(state)
    }

    fn commit(&mut self, checkpoint: &Checkpoint) -> Result<bool, StoreError> {
        self.commit_all(std::slice::from_ref(checkpoint))
    }

    /// One append of every checkpoint's line, one `fdatasync`.
    fn commit_all(&mut self, checkpoints: &[Checkpoint]) -> Result<bool, StoreError> {
        let mut lines = Vec::new();
        for checkpoint in checkpoints {
            serde_json::to_writer(&mut lines, checkpoint).expect("checkpoint serializes");
            lines.push(b'\n');
        }
        let path = self.journal_path.clone();
        let journal = self.open_journal()?;
        let written = journal
            .write_all(&lines)
            .map_err(io_err(&path, "append to the journal"))
            .and_then(|()| {
                journal
                    .sync_data()
                    .map_err(io_err(&path, "fsync the journal"))
            });
        // Closed after every append: an idle source holds no descriptor.
        self.journal = None;
        if let Err(error) = written {
            // Part of the lines may be in the file: reopening cuts it off.
            self.torn = true;
            return Err(error);
        }
        self.journal_bytes += lines.len() as u64;
        Ok(self.journal_bytes > MIN_COMPACT_BYTES.max(self.snapshot_bytes))
    }

    fn snapshot(&mut self, state: &CursorState) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec_pretty(state).expect("state serializes");
        let tmp = self.snapshot_path.with_extension("json.tmp");
        {
            let mut f = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io_err(&tmp, "write"))?;
            f.write_all(&bytes).map_err(io_err(&tmp, "write"))?;
            f.sync_all().map_err(io_err(&tmp, "fsync"))?;
        }
        fs::rename(&tmp, &self.snapshot_path).map_err(io_err(&self.snapshot_path, "replace"))?;
        let dir = self.snapshot_path.parent().unwrap_or(Path::new("."));
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir, "fsync the state directory"))?;
        self.snapshot_bytes = bytes.len() as u64;
        // The snapshot now holds everything: empty the journal. A crash
        // before this point replays old checkpoints onto the new snapshot;
        // their sequence numbers are not above the snapshot's, so they are
        // skipped (nothing is counted twice, nothing older wins).
        let path = self.journal_path.clone();
        let journal = self.open_journal()?;
        let emptied = journal
            .set_len(0)
            .map_err(io_err(&path, "truncate the journal"))
            .and_then(|()| {
                journal
                    .seek(SeekFrom::Start(0))
                    .map(drop)
                    .map_err(io_err(&path, "truncate the journal"))
            })
            .and_then(|()| {
                journal
                    .sync_all()
                    .map_err(io_err(&path, "fsync the journal"))
            });
        self.journal = None;
        emptied?;
        self.journal_bytes = 0;
        Ok(())
    }
}

/// What [`peek`] found.
#[derive(Debug)]
pub struct Peeked {
    /// The state as the next start would load it, bad lines skipped.
    pub state: Option<CursorState>,
    /// Journal lines (1-based) that are not checkpoints: the next start
    /// refuses the journal until the state is repaired or reset.
    pub bad_lines: Vec<usize>,
    /// The journal ends in an incomplete line: a commit interrupted before
    /// it returned, so the cursor never moved past its batch and its counts
    /// never reached `delivered_total`. The next start drops it; that batch
    /// is fetched and delivered again (at least once, never lost).
    pub torn_tail: bool,
}

/// Reads a source's state without taking the lock (safe while the daemon
/// runs), skipping journal lines it can not read (see [`inspect`]).
pub fn peek(dir: &Path, source: &str) -> Result<Option<CursorState>, StoreError> {
    inspect(dir, source).map(|peeked| peeked.state)
}

/// Like [`peek`], reporting the journal lines it can not read instead of
/// hiding them (for `state show`).
pub fn inspect(dir: &Path, source: &str) -> Result<Peeked, StoreError> {
    let snapshot_path = FileStore::snapshot_path(dir, source);
    let journal_path = dir.join(format!("{source}.journal"));
    let journal = unless_missing(fs::read(&journal_path), &journal_path, "read the journal")?
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    let corrupt = |reason: String| StoreError::Corrupt {
        path: snapshot_path.clone(),
        reason,
    };
    let mut state = match unless_missing(fs::read(&snapshot_path), &snapshot_path, "read")? {
        Some(bytes) => {
            if layout_version(&bytes).map_err(corrupt)? == legacy::VERSION {
                return legacy::upgrade(&bytes, &journal, source)
                    .map(|state| Peeked {
                        state: Some(state),
                        bad_lines: Vec::new(),
                        torn_tail: false,
                    })
                    .map_err(corrupt);
            }
            Some(
                serde_json::from_slice::<CursorState>(&bytes)
                    .map_err(|e| corrupt(e.to_string()))?,
            )
        }
        None => None,
    };
    let mut bad_lines = Vec::new();
    let mut torn_tail = false;
    for (n, line) in journal.split_inclusive('\n').enumerate() {
        if !line.ends_with('\n') {
            torn_tail = true;
            break;
        }
        match serde_json::from_str::<Checkpoint>(line) {
            Ok(cp) => {
                state
                    .get_or_insert_with(|| CursorState::new(source, chrono::DateTime::UNIX_EPOCH))
                    .apply(&cp);
            }
            Err(_) => bad_lines.push(n + 1),
        }
    }
    Ok(Peeked {
        state,
        bad_lines,
        torn_tail,
    })
}

/// Moves a source's unreadable state files aside (`*.corrupt-<time>`), so
/// that a reset or a new cursor can replace them and the evidence is kept.
/// Returns the copies made.
pub fn set_aside(dir: &Path, source: &str) -> Result<Vec<PathBuf>, StoreError> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let mut kept = Vec::new();
    for path in [
        FileStore::snapshot_path(dir, source),
        dir.join(format!("{source}.journal")),
    ] {
        let aside = PathBuf::from(format!("{}.corrupt-{stamp}", path.display()));
        if unless_missing(fs::rename(&path, &aside), &path, "move aside")?.is_some() {
            kept.push(aside);
        }
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    use crate::cursor::Acked;
    use crate::model::EventKey;

    fn cp(seq: u64, ids: &[(&str, i64)]) -> Checkpoint {
        Checkpoint {
            seq,
            acked: ids
                .iter()
                .map(|(i, m)| Acked {
                    key: EventKey::string_id(i),
                    ms: *m,
                    content: 1,
                    stray: false,
                })
                .collect(),
            delivered: ids.len() as u64,
            ..Checkpoint::default()
        }
    }

    /// A new store of `acme` in `dir`, with the first snapshot of a cursor
    /// starting at 1000 ms.
    fn new_store(dir: &Path) -> (FileStore, CursorState) {
        let mut store = FileStore::open(dir, "acme").unwrap();
        assert_eq!(store.load().unwrap(), None);
        let state = CursorState::new(
            "acme",
            chrono::DateTime::from_timestamp_millis(1000).unwrap(),
        );
        store.snapshot(&state).unwrap();
        (store, state)
    }

    #[test]
    fn commits_survive_reopen_and_snapshots_compact() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, mut state) = new_store(dir.path());
        for (i, c) in [cp(1, &[("a", 1000), ("b", 1001)]), cp(2, &[("c", 1005)])]
            .iter()
            .enumerate()
        {
            store.commit(c).unwrap();
            state.apply(c);
            assert_eq!(state.seen.len(), 2 + i);
        }
        drop(store);
        let mut store = FileStore::open(dir.path(), "acme").unwrap();
        assert_eq!(store.load().unwrap().as_ref(), Some(&state));
        store.snapshot(&state).unwrap();
        assert_eq!(
            fs::metadata(dir.path().join("acme.journal")).unwrap().len(),
            0
        );
        drop(store);
        let mut store = FileStore::open(dir.path(), "acme").unwrap();
        assert_eq!(store.load().unwrap().as_ref(), Some(&state));
        for name in ["acme.state.json", "acme.journal"] {
            let mode = fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
    }

    /// Group commit: several checkpoints in one append and one sync,
    /// replayed as if committed one by one; committing them again (a
    /// retry after an error) counts nothing twice.
    #[test]
    fn checkpoints_committed_together_replay_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, mut state) = new_store(dir.path());
        let group = [
            cp(1, &[("a", 1000)]),
            cp(2, &[("b", 1001), ("c", 1002)]),
            cp(3, &[("d", 1003)]),
        ];
        store.commit_all(&group).unwrap();
        store.commit_all(&group[1..]).unwrap();
        for c in &group {
            state.apply(c);
        }
        let journal = fs::read_to_string(dir.path().join("acme.journal")).unwrap();
        assert_eq!(journal.lines().count(), 5);
        drop(store);
        let mut store = FileStore::open(dir.path(), "acme").unwrap();
        let loaded = store.load().unwrap().unwrap();
        assert_eq!(loaded, state);
        assert_eq!((loaded.seq, loaded.delivered_total), (3, 4));
    }

    #[test]
    fn a_failed_append_is_cut_off_before_the_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, mut state) = new_store(dir.path());
        let first = cp(1, &[("a", 1000)]);
        store.commit(&first).unwrap();
        state.apply(&first);
        // What an append cut short by a full disk leaves, and how commit
        // reacts to its error.
        let mut journal = OpenOptions::new()
            .append(true)
            .open(dir.path().join("acme.journal"))
            .unwrap();
        journal.write_all(b"{\"seq\":2,\"acked\":[[\"b").unwrap();
        store.journal = None;
        store.torn = true;
        let second = cp(2, &[("c", 1005)]);
        store.commit(&second).unwrap();
        state.apply(&second);
        drop(store);
        let mut store = FileStore::open(dir.path(), "acme").unwrap();
        assert_eq!(store.load().unwrap().as_ref(), Some(&state));
        let peeked = inspect(dir.path(), "acme").unwrap();
        assert!(peeked.bad_lines.is_empty() && !peeked.torn_tail);
    }

    #[test]
    fn peek_reports_unreadable_journal_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStore::open(dir.path(), "acme").unwrap();
        store.load().unwrap();
        store.commit(&cp(1, &[("a", 1000)])).unwrap();
        drop(store);
        let path = dir.path().join("acme.journal");
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str("{\"seq\":2,glued{\"seq\":3}\n");
        text.push_str(&fs::read_to_string(&path).unwrap());
        text.push_str("{\"se");
        fs::write(&path, text).unwrap();
        let peeked = inspect(dir.path(), "acme").unwrap();
        assert_eq!(peeked.bad_lines, [2]);
        assert!(peeked.torn_tail);
        assert!(peeked.state.is_some());
        let err = FileStore::open(dir.path(), "acme")
            .unwrap()
            .load()
            .unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn torn_journal_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStore::open(dir.path(), "acme").unwrap();
        store.commit(&cp(1, &[("a", 5)])).unwrap();
        drop(store);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("acme.journal"))
            .unwrap();
        f.write_all(b"{\"acked\":[[\"b\",6]],\"water").unwrap();
        let mut store = FileStore::open(dir.path(), "acme").unwrap();
        let state = store.load().unwrap().unwrap();
        assert_eq!(
            state.seen.keys().collect::<Vec<_>>(),
            [&EventKey::string_id("a")]
        );
        store.commit(&cp(2, &[("c", 7)])).unwrap();
        drop(store);
        let state = FileStore::open(dir.path(), "acme")
            .unwrap()
            .load()
            .unwrap()
            .unwrap();
        assert_eq!(state.seen.len(), 2);
        assert_eq!(state.seq, 2);
    }

    #[test]
    fn a_journal_replayed_onto_a_newer_snapshot_counts_nothing_twice() {
        // A crash after the snapshot was renamed into place but before the
        // journal was emptied leaves checkpoints the snapshot already holds.
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStore::open(dir.path(), "acme").unwrap();
        let mut state = CursorState::new("acme", chrono::DateTime::UNIX_EPOCH);
        let (one, two, three) = (
            cp(1, &[("a", 5), ("b", 6)]),
            cp(2, &[("c", 7)]),
            cp(3, &[("d", 8)]),
        );
        for c in [&one, &two] {
            store.commit(c).unwrap();
            state.apply(c);
        }
        store.snapshot(&state).unwrap();
        for c in [&one, &two, &three] {
            store.commit(c).unwrap();
        }
        state.apply(&three);
        drop(store);
        let loaded = FileStore::open(dir.path(), "acme")
            .unwrap()
            .load()
            .unwrap()
            .unwrap();
        assert_eq!(loaded.delivered_total, 4, "each checkpoint counted once");
        assert_eq!(loaded, state);
        assert_eq!(peek(dir.path(), "acme").unwrap().unwrap(), state);
    }

    #[test]
    fn second_process_is_locked_out() {
        let dir = tempfile::tempdir().unwrap();
        let _first = FileStore::open(dir.path(), "acme").unwrap();
        let err = FileStore::open(dir.path(), "acme").unwrap_err();
        assert!(
            err.to_string()
                .contains("locked by another auditfwd process"),
            "{err}"
        );
        assert!(FileStore::open(dir.path(), "other").is_ok());
    }

    #[test]
    fn one_lock_guards_the_directory_against_other_processes() {
        let dir = tempfile::tempdir().unwrap();
        let lock_path = dir.path().join(LOCK_FILE);
        let stores: Vec<FileStore> = (0..20)
            .map(|i| FileStore::open(dir.path(), &format!("t{i}")).unwrap())
            .collect();
        // Another open file description of the lock file is what another
        // process would have: the lock is taken.
        let foreign = File::options().write(true).open(&lock_path).unwrap();
        assert!(matches!(
            foreign.try_lock(),
            Err(fs::TryLockError::WouldBlock)
        ));
        let lock_files = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".lock")
            })
            .count();
        assert_eq!(lock_files, 1, "one lock file for every source");
        drop(stores);
        // The last store closed: the directory is free again, and a holder
        // elsewhere is named.
        foreign.try_lock().unwrap();
        fs::write(&lock_path, b"4242").unwrap();
        let err = FileStore::open(dir.path(), "t1").unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("(pid 4242)"), "{err}");
    }

    #[test]
    fn journals_are_closed_between_commits() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStore::open(dir.path(), "acme").unwrap();
        store.load().unwrap();
        store.commit(&cp(1, &[("a", 1000)])).unwrap();
        assert!(store.journal.is_none());
        store
            .snapshot(&CursorState::new("acme", chrono::DateTime::UNIX_EPOCH))
            .unwrap();
        assert!(store.journal.is_none());
    }

    #[test]
    fn corrupt_snapshot_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("acme.state.json"), b"{not json").unwrap();
        let err = FileStore::open(dir.path(), "acme")
            .unwrap()
            .load()
            .unwrap_err();
        assert!(err.to_string().contains("auditfwd state reset"), "{err}");
    }
}
