//! The synchronous side of the file sink: open files per source, append
//! lines, rotate by size, repair a torn last line, flush and fsync.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::compress;
use crate::config::{Compression, FileSinkConfig, FsyncPolicy};

/// An open output file.
struct OpenFile {
    path: PathBuf,
    out: BufWriter<File>,
    size: u64,
    dirty: bool,
}

/// All files one file sink writes to, one current file per source.
pub(crate) struct Writer {
    template: String,
    max_bytes: Option<u64>,
    compression: Compression,
    fsync: FsyncPolicy,
    mode: u32,
    open: HashMap<String, OpenFile>,
}

impl Writer {
    pub(crate) fn new(config: &FileSinkConfig) -> Self {
        Self {
            template: config.path.clone(),
            max_bytes: config.max_bytes,
            compression: config.compression,
            fsync: config.fsync,
            mode: config.mode_bits().unwrap_or(0o640),
            open: HashMap::new(),
        }
    }

    /// The path a record of `source` written at `now` goes to.
    pub(crate) fn render(&self, source: &str, now: DateTime<Utc>) -> io::Result<PathBuf> {
        let mut dated = String::new();
        write!(dated, "{}", now.format(&self.template))
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "invalid strftime in path"))?;
        Ok(PathBuf::from(dated.replace("{source}", source)))
    }

    /// Appends one line per payload, then flushes (and fsyncs per policy)
    /// every file touched. Returns only when the batch is durable.
    pub(crate) fn write_batch<'a>(
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
                if current.size > 0 && current.size + line_len > max {
                    self.rotate(source)?;
                }
            }
            let file = self.open.get_mut(source).expect("switch_to opened it");
            file.out.write_all(payload)?;
            file.out.write_all(b"\n")?;
            file.size += line_len;
            file.dirty = true;
        }
        self.sync_dirty()
    }

    /// Flushes and fsyncs (per policy) every file with unsynced writes.
    fn sync_dirty(&mut self) -> io::Result<()> {
        for file in self.open.values_mut().filter(|f| f.dirty) {
            file.out.flush()?;
            if self.fsync == FsyncPolicy::Batch {
                file.out.get_ref().sync_data()?;
            }
            file.dirty = false;
        }
        Ok(())
    }

    /// Makes `path` the current file of `source`, closing the previous one
    /// when the path changed (a new day).
    fn switch_to(&mut self, source: &str, path: &Path) -> io::Result<()> {
        if let Some(current) = self.open.get(source) {
            if current.path == path {
                return Ok(());
            }
            let old = self.open.remove(source).expect("present");
            self.close(old)?;
        }
        let file = self.open_file(path)?;
        self.open.insert(source.to_string(), file);
        Ok(())
    }

    fn open_file(&self, path: &Path) -> io::Result<OpenFile> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .mode(self.mode)
            .open(path)?;
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
        })
    }

    fn close(&self, mut file: OpenFile) -> io::Result<()> {
        file.out.flush()?;
        if self.fsync == FsyncPolicy::Batch {
            file.out.get_ref().sync_all()?;
        }
        Ok(())
    }

    /// Renames the current file of `source` aside, compresses it in the
    /// background, and opens a fresh file at the same path.
    fn rotate(&mut self, source: &str) -> io::Result<()> {
        let file = self.open.remove(source).expect("rotate an open file");
        let path = file.path.clone();
        self.close(file)?;
        let rotated = rotated_name(&path);
        fs::rename(&path, &rotated)?;
        sync_parent(&path)?;
        tracing::info!(from = %path.display(), to = %rotated.display(), "rotated output file");
        if self.compression != Compression::None {
            let compression = self.compression;
            std::thread::spawn(move || {
                if let Err(error) = compress::compress_file(&rotated, compression) {
                    tracing::error!(
                        path = %rotated.display(),
                        error = %error,
                        "cannot compress rotated file; it is kept uncompressed"
                    );
                }
            });
        }
        let fresh = self.open_file(&path)?;
        self.open.insert(source.to_string(), fresh);
        Ok(())
    }

    /// Closes every file so the next write reopens it (SIGHUP, logrotate).
    pub(crate) fn reopen(&mut self) -> io::Result<()> {
        self.flush()?;
        self.open.clear();
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
}

/// `app.jsonl` → `app.jsonl.20260301T103539.817Z`, with a counter if that
/// name is taken.
fn rotated_name(path: &Path) -> PathBuf {
    let stamp = Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let base = format!("{}.{stamp}", path.display());
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while candidate.exists()
        || compress::compressed_name(&candidate, Compression::Gzip).exists()
        || compress::compressed_name(&candidate, Compression::Zstd).exists()
    {
        candidate = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    candidate
}

/// fsyncs the directory holding `path`, so a rename survives power loss.
pub(crate) fn sync_parent(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// If the file does not end with a newline, a crash cut the last line
/// short. That line's batch was never acknowledged (acknowledgement follows
/// the flush), so it will be written again: truncate the fragment so no
/// reader ever sees half a record. Returns the number of bytes removed.
fn repair_torn_tail(file: &mut File) -> io::Result<Option<u64>> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(None);
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(None);
    }
    // Scan backwards for the last newline.
    let mut end = len;
    let mut keep = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(pos) = chunk.iter().rposition(|b| *b == b'\n') {
            keep = start + pos as u64 + 1;
            break;
        }
        end = start;
    }
    file.set_len(keep)?;
    file.sync_all()?;
    Ok(Some(len - keep))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_tail_is_cut_back_to_the_last_full_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        fs::write(&path, b"{\"id\":1}\n{\"id\":2}\n{\"id\":").unwrap();
        let mut f = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .unwrap();
        assert_eq!(
            repair_torn_tail(&mut f).unwrap(),
            Some(b"{\"id\":".len() as u64)
        );
        assert_eq!(fs::read(&path).unwrap(), b"{\"id\":1}\n{\"id\":2}\n");
        assert_eq!(repair_torn_tail(&mut f).unwrap(), None);
    }

    #[test]
    fn torn_single_line_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        fs::write(&path, b"{\"id\":").unwrap();
        let mut f = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .unwrap();
        assert_eq!(repair_torn_tail(&mut f).unwrap(), Some(6));
        assert_eq!(fs::read(&path).unwrap(), b"");
    }
}
