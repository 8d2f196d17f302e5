//! The synchronous side of the file sink: open files per source, append
//! lines, rotate by size, flush and fsync. A batch is all or nothing in
//! the files: when any part of it fails (a full disk, a short write, a
//! failed fsync), every file it touched is cut back to the length the last
//! acknowledged batch left before anything else is written, so a retry
//! never glues a record to a fragment or repeats lines. A crash can still
//! leave a torn last line; the next open cuts it.
//!
//! At most `max_open_files` files are open: opening one more first
//! flushes, fsyncs and closes the least recently written. That may be a
//! file the batch under way already wrote to; the batch stays all or
//! nothing, because a failure cuts every touched file back by path and
//! length (whether it is still open or not), and the closed file's lines
//! are on disk before the batch is acknowledged. A file closed this way is
//! not rotated: its source reopens the same path and appends. Its path is
//! remembered (only while compression is on), so that a new day's path
//! still sends the old file to compression.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::num::{NonZeroU64, NonZeroUsize};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::compress;
use crate::config::{Compression, FileMode, FileSinkConfig, FsyncPolicy, PathTemplate};
use crate::durable::{repair_torn_tail, set_mode, sync_parent};

/// An open output file.
struct OpenFile {
    path: PathBuf,
    out: BufWriter<File>,
    /// Bytes written, buffered ones included.
    size: u64,
    /// Written to by the batch under way.
    dirty: bool,
    /// When its source last wrote to it (the writer's tick): the least
    /// recently written file is closed first.
    used: u64,
}

/// All files one file sink writes to, one current file per source.
pub(crate) struct Writer {
    template: PathTemplate,
    max_bytes: Option<NonZeroU64>,
    fsync: FsyncPolicy,
    compression: Compression,
    mode: FileMode,
    open: HashMap<String, OpenFile>,
    /// `max_open_files`.
    max_open: NonZeroUsize,
    /// Counts the writes to a file, for `OpenFile::used`.
    tick: u64,
    /// The path of each source whose file was closed to make room, while
    /// compression is on: a new day's path compresses the old file.
    closed: HashMap<String, PathBuf>,
    /// Files the batch under way touched, with the length they had before
    /// it (what acknowledged batches wrote).
    touched: Vec<(PathBuf, u64)>,
    /// Files rotated away during the batch under way: compressed once it
    /// is settled either way.
    rotated: Vec<PathBuf>,
    /// Files to cut back before anything else is written: a failed batch
    /// whose undo failed too.
    undo: Vec<(PathBuf, u64)>,
    /// Directories already checked for work a crash left.
    scanned: HashSet<PathBuf>,
    compressor: compress::Worker,
    /// Batches appended so far (each [`Writer::append_batch`] gets the
    /// next number) and the last one a sync covered: see
    /// [`Writer::start_sync`].
    appended: u64,
    synced: u64,
    /// The batches each failure cut out (first, last), oldest first: a
    /// later sync's range may span them, but they are not in the files.
    lost: VecDeque<(u64, u64)>,
    /// Failures so far, and what the last one was.
    failures: u64,
    failure: String,
}

/// What one group commit fsyncs outside the writer's lock
/// ([`Writer::start_sync`]): duplicates of the files written since the
/// last one, flushed already.
pub(crate) struct SyncJob {
    files: Vec<File>,
    /// The last batch it makes durable.
    through: u64,
    /// `Writer::failures` when it started: a failure meanwhile cut it.
    failures: u64,
    /// How many of `Writer::touched` belong to it.
    touched: usize,
}

impl SyncJob {
    /// The fsyncs, without the writer's lock: batches appended meanwhile
    /// wait for the next group.
    pub(crate) fn run(&self) -> io::Result<()> {
        for file in &self.files {
            file.sync_data()?;
        }
        Ok(())
    }
}

impl Writer {
    pub(crate) fn new(config: &FileSinkConfig) -> Self {
        Self {
            template: config.path.clone(),
            max_bytes: config.max_bytes,
            fsync: config.fsync,
            compression: config.compression,
            mode: config.mode,
            open: HashMap::new(),
            max_open: config.max_open_files,
            tick: 0,
            closed: HashMap::new(),
            touched: Vec::new(),
            rotated: Vec::new(),
            undo: Vec::new(),
            scanned: HashSet::new(),
            compressor: compress::Worker::new(config.compression, config.mode),
            appended: 0,
            synced: 0,
            lost: VecDeque::new(),
            failures: 0,
            failure: String::new(),
        }
    }

    /// The path a record of `source` written at `now` goes to.
    pub(crate) fn render(&self, source: &str, now: DateTime<Utc>) -> io::Result<PathBuf> {
        self.template.render(source, now)
    }

    /// Appends one line per payload, then flushes (and fsyncs per policy)
    /// every file touched. Returns only when the batch is durable; on an
    /// error nothing of the batch remains in any file.
    #[cfg(test)]
    pub(crate) fn write_batch<'a>(
        &mut self,
        lines: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        now: DateTime<Utc>,
    ) -> io::Result<()> {
        let seq = self.append_batch(lines, now)?;
        match self.start_sync(seq)? {
            None => Ok(()),
            Some(job) => {
                let result = job.run();
                self.finish_sync(job, result)
            }
        }
    }

    /// Appends one line per payload, not yet durable: the batch's number
    /// goes to [`Writer::start_sync`]. Several batches appended before one
    /// sync are made durable by one fsync per file (group commit). On an
    /// error nothing of this batch, nor of any appended since the last
    /// sync, remains in any file (their syncs fail too).
    pub(crate) fn append_batch<'a>(
        &mut self,
        lines: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        now: DateTime<Utc>,
    ) -> io::Result<u64> {
        self.undo_failed()?;
        self.appended += 1;
        let seq = self.appended;
        match self.append(lines, now) {
            Ok(()) => Ok(seq),
            Err(error) => {
                self.fail(&error);
                Err(error)
            }
        }
    }

    /// Starts making batch `seq` durable: `None` when it is already (a
    /// later group's sync covered it), an error when it was lost to a
    /// failure, else the fsyncs to run without the lock, covering every
    /// batch appended so far; hand the job and its result to
    /// [`Writer::finish_sync`]. Run one sync at a time.
    pub(crate) fn start_sync(&mut self, seq: u64) -> io::Result<Option<SyncJob>> {
        if self
            .lost
            .iter()
            .any(|(first, last)| (*first..=*last).contains(&seq))
        {
            return Err(self.lost());
        }
        if seq <= self.synced {
            return Ok(None);
        }
        let mut files = Vec::new();
        let flushed = self
            .open
            .values_mut()
            .filter(|f| f.dirty)
            .try_for_each(|file| {
                file.out.flush()?;
                if self.fsync == FsyncPolicy::Batch {
                    files.push(file.out.get_ref().try_clone()?);
                }
                file.dirty = false;
                Ok(())
            });
        if let Err(error) = flushed {
            self.fail(&error);
            return Err(error);
        }
        Ok(Some(SyncJob {
            files,
            through: self.appended,
            failures: self.failures,
            touched: self.touched.len(),
        }))
    }

    /// Settles a group commit with the result of its fsyncs.
    pub(crate) fn finish_sync(&mut self, job: SyncJob, result: io::Result<()>) -> io::Result<()> {
        if let Err(error) = result {
            self.fail(&error);
            return Err(error);
        }
        if job.failures != self.failures {
            // A batch appended during the fsyncs failed, and its undo cut
            // this group's lines too.
            return Err(self.lost());
        }
        self.synced = self.synced.max(job.through);
        self.touched.drain(..job.touched.min(self.touched.len()));
        self.settle_rotated();
        Ok(())
    }

    /// After a failure: drops what is buffered, schedules every file
    /// written since the last sync to be cut back (tried at once), and
    /// fails every batch appended since.
    fn fail(&mut self, error: &io::Error) {
        self.abandon();
        // Everything since the last sync was cut (a sync under way too).
        // Failures in a row, with no sync between, extend one range, so
        // ranges are as many as recoveries. The pipeline awaits its
        // batches in order and retries the oldest until it lands (one
        // recovery), so a batch still awaited was appended at most
        // `max_batches_in_flight` (16) recoveries ago; 64 ranges are kept.
        let (first, last) = (self.synced + 1, self.appended);
        match self.lost.back_mut() {
            Some(range) if first <= range.1 + 1 => range.1 = last,
            _ => self.lost.push_back((first, last)),
        }
        if self.lost.len() > 64 {
            self.lost.pop_front();
        }
        self.failures += 1;
        self.failure = error.to_string();
        // On failure the undo is retried before the next batch.
        if let Err(error) = self.undo_failed() {
            tracing::warn!(error = %error, "cannot yet remove the failed batch from the output files; retrying before the next write");
        }
        self.settle_rotated();
    }

    /// The error of a batch lost to a later batch's failure.
    fn lost(&self) -> io::Error {
        io::Error::other(format!(
            "a batch written in the same group failed, and this one was removed with it: {}",
            self.failure
        ))
    }

    /// Compresses the files rotated away once nothing remains to cut from
    /// them: no failed batch to undo, no batch waiting for its sync.
    fn settle_rotated(&mut self) {
        if !self.touched.is_empty() {
            return;
        }
        for path in std::mem::take(&mut self.rotated) {
            if self.undo.iter().any(|(p, _)| *p == path) {
                self.rotated.push(path);
            } else {
                self.compressor.submit(path);
            }
        }
    }

    fn append<'a>(
        &mut self,
        lines: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        now: DateTime<Utc>,
    ) -> io::Result<()> {
        let mut paths: HashMap<&'a str, PathBuf> = HashMap::new();
        for (source, payload) in lines {
            let path = match paths.get(source) {
                Some(p) => p.clone(),
                None => {
                    let p = self.render(source, now)?;
                    paths.insert(source, p.clone());
                    p
                }
            };
            self.switch_to(source, &path)?;
            let line_len = payload.len() as u64 + 1;
            if let Some(max) = self.max_bytes {
                let current = &self.open[source];
                if current.size > 0 && current.size + line_len > max.get() {
                    self.rotate(source)?;
                }
            }
            let file = self.open.get_mut(source).expect("switch_to opened it");
            if !file.dirty {
                self.touched.push((file.path.clone(), file.size));
                file.dirty = true;
            }
            file.out.write_all(payload)?;
            file.out.write_all(b"\n")?;
            file.size += line_len;
        }
        Ok(())
    }

    /// After a failure: closes every open file without writing what is
    /// still buffered, and schedules the files the batch touched to be cut
    /// back.
    fn abandon(&mut self) {
        for (_, file) in self.open.drain() {
            // `into_parts` hands back the buffer instead of flushing it.
            let (_file, _unwritten) = file.out.into_parts();
        }
        self.undo.append(&mut self.touched);
    }

    /// Cuts every file of a failed batch back to its acknowledged length.
    fn undo_failed(&mut self) -> io::Result<()> {
        while let Some((path, len)) = self.undo.last().cloned() {
            match OpenOptions::new().write(true).open(&path) {
                Ok(file) => {
                    let found = file.metadata()?.len();
                    if found > len {
                        file.set_len(len)?;
                        file.sync_all()?;
                        tracing::warn!(
                            path = %path.display(),
                            bytes = found - len,
                            "removed the part of a failed batch that reached the file; the batch is written again whole"
                        );
                    }
                }
                // Rotated away and compressed, or removed by an operator:
                // nothing of ours to cut.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            self.undo.pop();
        }
        Ok(())
    }

    /// Makes `path` the current file of `source`, closing the previous one
    /// when the path changed (a new day; it is then compressed).
    fn switch_to(&mut self, source: &str, path: &Path) -> io::Result<()> {
        self.tick += 1;
        if let Some(current) = self.open.get_mut(source) {
            if current.path == path {
                current.used = self.tick;
                return Ok(());
            }
            let old = self.open.remove(source).expect("present");
            let old_path = old.path.clone();
            self.close_file(old)?;
            self.rotated.push(old_path);
        } else if let Some(old_path) = self.closed.remove(source)
            && old_path != path
        {
            self.rotated.push(old_path);
        }
        while self.open.len() >= self.max_open.get() {
            self.close_least_recent()?;
        }
        let mut file = self.open_file(path)?;
        file.used = self.tick;
        self.open.insert(source.to_string(), file);
        Ok(())
    }

    /// Makes room for one more open file: flushes, fsyncs and closes the
    /// least recently written one (see the module doc for why a file of
    /// the batch under way may go too).
    fn close_least_recent(&mut self) -> io::Result<()> {
        let Some(source) = self
            .open
            .iter()
            .min_by_key(|(_, f)| f.used)
            .map(|(s, _)| s.clone())
        else {
            return Ok(());
        };
        let mut file = self.open.remove(&source).expect("present");
        let path = file.path.clone();
        // Whatever the fsync policy: closed, the file is out of reach of
        // `flush`, so it goes to disk now.
        let synced = file
            .out
            .flush()
            .and_then(|()| file.out.get_ref().sync_all());
        if let Err(error) = synced {
            // Back in place, so that a failed batch drops what is still
            // buffered instead of writing it.
            self.open.insert(source, file);
            return Err(error);
        }
        if self.compression != Compression::None {
            self.closed.insert(source, path);
        }
        Ok(())
    }

    fn open_file(&mut self, path: &Path) -> io::Result<OpenFile> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        fs::create_dir_all(dir)?;
        if self.scanned.insert(dir.to_path_buf()) {
            match compress::leftovers(dir, self.compression) {
                Ok(todo) => {
                    for file in todo {
                        tracing::info!(path = %file.display(), "compressing a file an earlier run left uncompressed");
                        self.compressor.submit(file);
                    }
                }
                Err(error) => {
                    tracing::warn!(dir = %dir.display(), error = %error, "cannot look for files left to compress")
                }
            }
        }
        let mut options = OpenOptions::new();
        options.read(true).append(true).mode(self.mode.bits());
        let mut file = match options.clone().create_new(true).open(path) {
            Ok(file) => {
                set_mode(&file, self.mode)?;
                file
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => options.open(path)?,
            Err(e) => return Err(e),
        };
        if let Some(cut) = repair_torn_tail(&mut file)? {
            tracing::warn!(
                path = %path.display(),
                bytes = cut,
                "removed an incomplete last line left by a crash; its batch was not acknowledged and is sent again"
            );
        }
        let size = file.metadata()?.len();
        Ok(OpenFile {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(64 * 1024, file),
            size,
            dirty: false,
            used: 0,
        })
    }

    /// Flushes (and fsyncs, per policy) a file taken out of `open`;
    /// dropping it closes it.
    fn close_file(&self, mut file: OpenFile) -> io::Result<()> {
        file.out.flush()?;
        if self.fsync == FsyncPolicy::Batch {
            file.out.get_ref().sync_all()?;
        }
        Ok(())
    }

    /// Renames the current file of `source` aside and opens a fresh file at
    /// the same path. The rotated file is compressed once the batch under
    /// way is settled (until then a failure may still cut it back).
    fn rotate(&mut self, source: &str) -> io::Result<()> {
        let file = self.open.remove(source).expect("rotate an open file");
        let path = file.path.clone();
        self.close_file(file)?;
        let rotated = compress::rotated_name(&path);
        fs::rename(&path, &rotated)?;
        sync_parent(&path)?;
        tracing::info!(from = %path.display(), to = %rotated.display(), "rotated output file");
        for (touched, _) in &mut self.touched {
            if *touched == path {
                *touched = rotated.clone();
            }
        }
        self.rotated.push(rotated);
        let fresh = self.open_file(&path)?;
        self.open.insert(source.to_string(), fresh);
        Ok(())
    }

    /// Closes every file so the next write reopens it (SIGHUP, logrotate).
    pub(crate) fn reopen(&mut self) -> io::Result<()> {
        self.flush()?;
        self.open.clear();
        // The files may have been moved away: no longer ours to compress.
        self.closed.clear();
        Ok(())
    }

    /// Flushes and fsyncs every open file.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        for file in self.open.values_mut() {
            file.out.flush()?;
            file.out.get_ref().sync_all()?;
        }
        Ok(())
    }

    /// Flushes, fsyncs and closes every file, then waits for the
    /// compression worker to finish its queue (shutdown). A later write
    /// opens its file again.
    pub(crate) fn close(&mut self) -> io::Result<()> {
        let flushed = self.flush();
        if flushed.is_ok() {
            for (source, file) in self.open.drain() {
                // Like a file closed to make room: a new day's path still
                // sends it to compression.
                if self.compression != Compression::None {
                    self.closed.insert(source, file.path);
                }
            }
        }
        self.compressor.join();
        flushed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawFileSinkConfig;

    /// The config of `template`, with `edit` applied to its raw table.
    fn config(template: String, edit: impl FnOnce(&mut RawFileSinkConfig)) -> FileSinkConfig {
        let mut raw = RawFileSinkConfig::new(template);
        edit(&mut raw);
        raw.validate().unwrap()
    }

    fn gzip_config(template: String) -> FileSinkConfig {
        config(template, |c| c.compression = Compression::Gzip)
    }

    /// One second before midnight UTC on 2026-03-0`d`.
    fn day(d: u32) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("2026-03-0{d}T23:59:59Z"))
            .unwrap()
            .to_utc()
    }

    #[test]
    fn a_file_closed_at_a_day_boundary_is_compressed() {
        let dir = tempfile::tempdir().unwrap();
        let template = format!("{}/%Y-%m-%d.jsonl", dir.path().display());
        let mut w = Writer::new(&gzip_config(template));
        w.write_batch([("acme", &b"{\"id\":1}"[..])], day(1))
            .unwrap();
        w.write_batch([("acme", &b"{\"id\":2}"[..])], day(2))
            .unwrap();
        w.close().unwrap();
        assert!(dir.path().join("2026-03-01.jsonl.gz").exists());
        assert!(!dir.path().join("2026-03-01.jsonl").exists());
        assert!(dir.path().join("2026-03-02.jsonl").exists());
    }

    /// Descriptors of this process open on files under `dir`.
    fn open_under(dir: &Path) -> usize {
        fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter_map(|e| fs::read_link(e.path()).ok())
            .filter(|target| target.starts_with(dir))
            .count()
    }

    #[test]
    fn at_most_max_open_files_are_open_and_every_line_reaches_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().canonicalize().unwrap();
        let config = config(format!("{}/{{source}}.jsonl", out.display()), |c| {
            c.max_open_files = 4
        });
        let mut w = Writer::new(&config);
        let sources: Vec<String> = (0..12).map(|i| format!("t{i}")).collect();
        let now = Utc::now();
        let mut expected: HashMap<String, Vec<String>> = HashMap::new();
        for round in 0..5 {
            // One batch over every source (files closed mid-batch), then
            // one batch per source.
            let lines: Vec<(String, String)> = sources
                .iter()
                .flat_map(|s| {
                    (0..3).map(move |i| (s.clone(), format!("{{\"id\":\"{s}-{round}-{i}\"}}")))
                })
                .collect();
            w.write_batch(lines.iter().map(|(s, l)| (s.as_str(), l.as_bytes())), now)
                .unwrap();
            for (s, l) in &lines {
                expected.entry(s.clone()).or_default().push(l.clone());
            }
            assert!(open_under(&out) <= 4, "{} files open", open_under(&out));
            for s in &sources {
                let line = format!("{{\"id\":\"{s}-{round}-single\"}}");
                w.write_batch([(s.as_str(), line.as_bytes())], now).unwrap();
                expected.entry(s.clone()).or_default().push(line);
                assert!(open_under(&out) <= 4, "{} files open", open_under(&out));
            }
        }
        assert_eq!(w.open.len(), 4);
        w.close().unwrap();
        for s in &sources {
            let text = fs::read_to_string(out.join(format!("{s}.jsonl"))).unwrap();
            let got: Vec<&str> = text.lines().collect();
            assert_eq!(got, expected[s], "{s}");
        }
    }

    #[test]
    fn a_failed_batch_leaves_nothing_in_files_closed_to_make_room() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(format!("{}/{{source}}.jsonl", dir.path().display()), |c| {
            c.max_open_files = 2
        });
        let mut w = Writer::new(&config);
        let now = Utc::now();
        w.write_batch([("a", &b"{\"id\":1}"[..]), ("b", b"{\"id\":2}")], now)
            .unwrap();
        // `a` and `b` are written, then closed to make room for `c` and
        // `d`; `e` can not be opened (its path is a directory).
        fs::create_dir_all(dir.path().join("e.jsonl")).unwrap();
        let failed = w.write_batch(
            [
                ("a", &b"{\"id\":3}"[..]),
                ("b", b"{\"id\":4}"),
                ("c", b"{\"id\":5}"),
                ("d", b"{\"id\":6}"),
                ("e", b"{\"id\":7}"),
            ],
            now,
        );
        assert!(failed.is_err());
        let read =
            |s: &str| fs::read_to_string(dir.path().join(format!("{s}.jsonl"))).unwrap_or_default();
        assert_eq!(read("a"), "{\"id\":1}\n");
        assert_eq!(read("b"), "{\"id\":2}\n");
        assert_eq!(read("c"), "");
        assert_eq!(read("d"), "");
        // The retry writes the batch whole, once.
        fs::remove_dir(dir.path().join("e.jsonl")).unwrap();
        w.write_batch([("a", &b"{\"id\":3}"[..]), ("e", b"{\"id\":7}")], now)
            .unwrap();
        w.close().unwrap();
        assert_eq!(read("a"), "{\"id\":1}\n{\"id\":3}\n");
        assert_eq!(read("e"), "{\"id\":7}\n");
    }

    /// Group commit: one sync makes every batch appended before it
    /// durable; a batch appended while its fsyncs run waits for the next.
    #[test]
    fn one_sync_covers_every_batch_appended_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::new(&config(
            format!("{}/out.jsonl", dir.path().display()),
            |_| {},
        ));
        let now = Utc::now();
        let one = w.append_batch([("a", &b"1"[..])], now).unwrap();
        let two = w.append_batch([("a", &b"2"[..])], now).unwrap();
        let job = w.start_sync(one).unwrap().expect("nothing synced yet");
        assert_eq!(job.files.len(), 1, "one fsync for the file both wrote");
        let three = w.append_batch([("a", &b"3"[..])], now).unwrap();
        let result = job.run();
        w.finish_sync(job, result).unwrap();
        assert!(w.start_sync(two).unwrap().is_none(), "covered by the group");
        let job = w
            .start_sync(three)
            .unwrap()
            .expect("appended during the fsync");
        let result = job.run();
        w.finish_sync(job, result).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("out.jsonl")).unwrap(),
            "1\n2\n3\n"
        );
    }

    /// A batch that fails takes every batch appended since the last sync
    /// with it (its undo cuts them too), and each of them says so, so the
    /// pipeline sends them again; nothing is acknowledged that is not in
    /// the file, and nothing is in the file twice after the retries.
    #[test]
    fn a_failure_fails_every_batch_of_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let template = format!("{}/{{source}}.jsonl", dir.path().display());
        let mut w = Writer::new(&config(template, |_| {}));
        let now = Utc::now();
        let read =
            |s: &str| fs::read_to_string(dir.path().join(format!("{s}.jsonl"))).unwrap_or_default();
        w.write_batch([("a", &b"0"[..])], now).unwrap();
        // Appended, not yet synced, when a later batch fails.
        let one = w.append_batch([("a", &b"1"[..])], now).unwrap();
        fs::create_dir_all(dir.path().join("e.jsonl")).unwrap();
        assert!(
            w.append_batch([("a", &b"2"[..]), ("e", b"x")], now)
                .is_err()
        );
        let lost = w.start_sync(one).err().expect("lost with its group");
        assert!(lost.to_string().contains("same group"), "{lost}");
        assert_eq!(read("a"), "0\n", "cut back to the last sync");
        // Failed during a group's fsyncs: the group fails too.
        fs::remove_dir(dir.path().join("e.jsonl")).unwrap();
        let one = w.append_batch([("a", &b"1"[..])], now).unwrap();
        let job = w.start_sync(one).unwrap().unwrap();
        fs::create_dir_all(dir.path().join("f.jsonl")).unwrap();
        assert!(w.append_batch([("f", &b"y"[..])], now).is_err());
        let result = job.run();
        assert!(w.finish_sync(job, result).is_err());
        assert_eq!(read("a"), "0\n");
        // A later sync's range spans the lost batches: they stay lost.
        let retry = w.append_batch([("a", &b"r"[..])], now).unwrap();
        let job = w.start_sync(retry).unwrap().unwrap();
        let result = job.run();
        w.finish_sync(job, result).unwrap();
        assert!(
            w.start_sync(one).is_err(),
            "a lost batch is never reported durable"
        );
        // The retries land whole, once.
        fs::remove_dir(dir.path().join("f.jsonl")).unwrap();
        w.write_batch([("a", &b"1"[..])], now).unwrap();
        w.write_batch([("a", &b"2"[..]), ("f", b"y")], now).unwrap();
        assert_eq!(read("a"), "0\nr\n1\n2\n");
        assert_eq!(read("f"), "y\n");
    }

    #[test]
    fn a_file_closed_to_make_room_is_still_compressed_at_a_day_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let template = format!("{}/{{source}}-%Y-%m-%d.jsonl", dir.path().display());
        let config = config(template, |c| {
            c.compression = Compression::Gzip;
            c.max_open_files = 1;
        });
        let mut w = Writer::new(&config);
        w.write_batch([("acme", &b"{\"id\":1}"[..])], day(1))
            .unwrap();
        // `globex` takes the only place: acme's file is closed, not rotated.
        w.write_batch([("globex", &b"{\"id\":2}"[..])], day(1))
            .unwrap();
        w.write_batch([("acme", &b"{\"id\":3}"[..])], day(2))
            .unwrap();
        w.close().unwrap();
        assert!(dir.path().join("acme-2026-03-01.jsonl.gz").exists());
        assert!(!dir.path().join("acme-2026-03-01.jsonl").exists());
        assert!(dir.path().join("acme-2026-03-02.jsonl").exists());
        assert!(dir.path().join("globex-2026-03-01.jsonl").exists());
    }

    #[test]
    fn work_a_crash_left_is_finished_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("out.jsonl.20260301T103539.817Z"), b"{\"id\":1}\n").unwrap();
        fs::write(d.join("out.jsonl.20260301T110000.000Z"), b"{\"id\":2}\n").unwrap();
        fs::write(d.join("out.jsonl.20260301T110000.000Z.gz.tmp"), b"\x1f\x8b").unwrap();
        let mut w = Writer::new(&gzip_config(format!("{}/out.jsonl", d.display())));
        w.write_batch([("acme", &b"{\"id\":3}"[..])], Utc::now())
            .unwrap();
        w.close().unwrap();
        let mut names: Vec<_> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "out.jsonl",
                "out.jsonl.20260301T103539.817Z.gz",
                "out.jsonl.20260301T110000.000Z.gz"
            ]
        );
    }
}
