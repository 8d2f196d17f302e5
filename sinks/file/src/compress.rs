//! Rotated files: their names (the rotation stamp is written and
//! recognised here), and their compression off the delivery path by one
//! owned worker thread per sink, joined on shutdown, which also finishes
//! what a crash interrupted (see [`leftovers`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use crate::config::{Compression, FileMode};
use crate::durable::{set_mode, sync_parent};

/// `file` → `file.gz` / `file.zst`.
pub(crate) fn compressed_name(path: &Path, compression: Compression) -> PathBuf {
    let ext = match compression {
        Compression::None => return path.to_path_buf(),
        Compression::Gzip => "gz",
        Compression::Zstd => "zst",
    };
    PathBuf::from(format!("{}.{ext}", path.display()))
}

/// Compresses `path` into its compressed name, with permissions `mode`, and
/// removes the original only once the compressed copy is durable, so a
/// crash never loses the data.
pub(crate) fn compress_file(
    path: &Path,
    compression: Compression,
    mode: FileMode,
) -> io::Result<()> {
    let target = compressed_name(path, compression);
    let tmp = PathBuf::from(format!("{}.tmp", target.display()));
    let result = compress_into(path, &tmp, compression, mode);
    if result.is_err() {
        // A full disk: give the space back; the original is intact.
        let _ = fs::remove_file(&tmp);
    }
    result?;
    fs::rename(&tmp, &target)?;
    sync_parent(&target)?;
    fs::remove_file(path)?;
    Ok(())
}

/// Writes the compressed copy of `path` to `tmp`, durably.
fn compress_into(
    path: &Path,
    tmp: &Path,
    compression: Compression,
    mode: FileMode,
) -> io::Result<()> {
    let mut input = BufReader::new(File::open(path)?);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode.bits())
        .open(tmp)?;
    set_mode(&file, mode)?;
    let output = BufWriter::new(file);
    let output = match compression {
        Compression::None => return Ok(()),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(output, flate2::Compression::default());
            io::copy(&mut input, &mut enc)?;
            enc.finish()?
        }
        Compression::Zstd => {
            let mut enc = zstd::Encoder::new(output, 3)?;
            io::copy(&mut input, &mut enc)?;
            enc.finish()?
        }
    };
    let file = output.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

/// `app.jsonl` → `app.jsonl.20260301T103539.817Z`, with a counter if that
/// name is taken.
pub(crate) fn rotated_name(path: &Path) -> PathBuf {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let base = format!("{}.{stamp}", path.display());
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while candidate.exists()
        || compressed_name(&candidate, Compression::Gzip).exists()
        || compressed_name(&candidate, Compression::Zstd).exists()
    {
        candidate = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    candidate
}

/// Whether `name` ends with a rotation stamp, `.20260301T103539.817Z`
/// with an optional `.N` counter (see [`rotated_name`]).
fn has_rotation_stamp(name: &str) -> bool {
    // Without the counter, if there is one.
    let name = match name.rsplit_once('.') {
        Some((head, n)) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => head,
        _ => name,
    };
    let Some(stamp) = name.len().checked_sub(21).and_then(|i| name.get(i..)) else {
        return false;
    };
    let b = stamp.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b[0] == b'.'
        && digits(1..9)
        && b[9] == b'T'
        && digits(10..16)
        && b[16] == b'.'
        && digits(17..20)
        && b[20] == b'Z'
        && name.len() > 21
}

/// Work a crash left in `dir`: rotated files that were never compressed,
/// and files whose compression was cut short (their `.gz.tmp` / `.zst.tmp`
/// is removed here; the original is still there and is compressed again).
/// Returns the files to compress.
pub(crate) fn leftovers(dir: &Path, compression: Compression) -> io::Result<Vec<PathBuf>> {
    if compression == Compression::None {
        return Ok(Vec::new());
    }
    let tmp_suffix = format!(
        "{}.tmp",
        compressed_name(Path::new(""), compression).display()
    );
    let mut todo = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(todo),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(original) = name.strip_suffix(&tmp_suffix) {
            let original = dir.join(original);
            fs::remove_file(&path)?;
            if original.exists() && !todo.contains(&original) {
                todo.push(original);
            }
        } else if has_rotation_stamp(name) && !todo.contains(&path) {
            todo.push(path);
        }
    }
    todo.sort();
    Ok(todo)
}

/// The sink's compression worker: one thread, started on first use, fed
/// through a channel, joined by [`Worker::join`] (and on drop).
pub(crate) struct Worker {
    compression: Compression,
    mode: FileMode,
    tx: Option<mpsc::Sender<PathBuf>>,
    handle: Option<JoinHandle<()>>,
    /// Files whose compression failed (a full disk): tried again with the
    /// next file submitted, or at the next start.
    failed: Arc<Mutex<Vec<PathBuf>>>,
}

impl Worker {
    pub(crate) fn new(compression: Compression, mode: FileMode) -> Self {
        Self {
            compression,
            mode,
            tx: None,
            handle: None,
            failed: Arc::default(),
        }
    }

    /// Queues `path` for compression (nothing when compression is off).
    pub(crate) fn submit(&mut self, path: PathBuf) {
        if self.compression == Compression::None {
            return;
        }
        let retry = std::mem::take(&mut *self.failed.lock().unwrap_or_else(|p| p.into_inner()));
        let tx = self.tx.get_or_insert_with(|| {
            let (tx, rx) = mpsc::channel::<PathBuf>();
            let (compression, mode) = (self.compression, self.mode);
            let failed = self.failed.clone();
            self.handle = Some(
                std::thread::Builder::new()
                    .name("auditfwd-compress".into())
                    .spawn(move || {
                        for path in rx {
                            match compress_file(&path, compression, mode) {
                                Ok(()) => tracing::info!(path = %path.display(), "compressed rotated file"),
                                Err(error) => {
                                    tracing::error!(
                                        path = %path.display(),
                                        error = %error,
                                        "cannot compress rotated file; it is kept uncompressed and tried again at the next rotation"
                                    );
                                    failed.lock().unwrap_or_else(|p| p.into_inner()).push(path);
                                }
                            }
                        }
                    })
                    .expect("spawn the compression thread"),
            );
            tx
        });
        // The thread only ends when the sender is dropped.
        for path in retry.into_iter().chain([path]) {
            let _ = tx.send(path);
        }
    }

    /// Finishes every queued file and stops the thread.
    pub(crate) fn join(&mut self) {
        self.tx = None;
        if let Some(handle) = self.handle.take()
            && handle.join().is_err()
        {
            tracing::error!(
                "the compression thread panicked; uncompressed files are compressed at the next start"
            );
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn gzip_and_zstd_round_trip() {
        for c in [Compression::Gzip, Compression::Zstd] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("a.jsonl");
            fs::write(&path, b"{\"id\":1}\n{\"id\":2}\n").unwrap();
            compress_file(&path, c, FileMode::DEFAULT).unwrap();
            assert!(!path.exists());
            let packed = File::open(compressed_name(&path, c)).unwrap();
            let mut out = Vec::new();
            match c {
                Compression::Gzip => {
                    flate2::read::GzDecoder::new(packed)
                        .read_to_end(&mut out)
                        .unwrap();
                }
                _ => {
                    zstd::Decoder::new(packed)
                        .unwrap()
                        .read_to_end(&mut out)
                        .unwrap();
                }
            }
            assert_eq!(out, b"{\"id\":1}\n{\"id\":2}\n");
        }
    }

    #[test]
    fn compressed_files_have_the_configured_mode_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        fs::write(&path, b"x\n").unwrap();
        compress_file(&path, Compression::Gzip, FileMode::parse("0660").unwrap()).unwrap();
        let mode = fs::metadata(compressed_name(&path, Compression::Gzip))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o660);
    }

    #[test]
    fn rotation_stamps() {
        assert!(has_rotation_stamp("a.jsonl.20260301T103539.817Z"));
        assert!(has_rotation_stamp("a.jsonl.20260301T103539.817Z.12"));
        for no in [
            "",
            "a.gz",
            ".20260301T103539.817Z",
            "a.20260301T103539.817Z.gz",
            "a.20260301T103539.817",
            "a.2026030xT103539.817Z",
            "a.20260301T103539.817Z.",
        ] {
            assert!(!has_rotation_stamp(no), "{no}");
        }
    }

    #[test]
    fn leftovers_are_interrupted_and_uncompressed_rotations_only() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in [
            "out.jsonl",
            "out.jsonl.20260301T103539.817Z", // rotated, never compressed
            "out.jsonl.20260301T110000.000Z", // compression cut short:
            "out.jsonl.20260301T110000.000Z.gz.tmp",
            "2026-02-28.jsonl", // a day file cut short:
            "2026-02-28.jsonl.gz.tmp",
            "gone.jsonl.gz.tmp",                 // original already removed
            "out.jsonl.20260301T090000.000Z.gz", // done
            "other.txt",
            "out.jsonl.bak",
        ] {
            fs::write(d.join(name), b"x\n").unwrap();
        }
        let todo = leftovers(d, Compression::Gzip).unwrap();
        let names: Vec<_> = todo
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "2026-02-28.jsonl",
                "out.jsonl.20260301T103539.817Z",
                "out.jsonl.20260301T110000.000Z"
            ]
        );
        for tmp in [
            "out.jsonl.20260301T110000.000Z.gz.tmp",
            "2026-02-28.jsonl.gz.tmp",
            "gone.jsonl.gz.tmp",
        ] {
            assert!(!d.join(tmp).exists(), "{tmp} was left");
        }
        assert!(leftovers(d, Compression::None).unwrap().is_empty());
    }
}
