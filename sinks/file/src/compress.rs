//! Compression of rotated files, done off the delivery path.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter};
use std::path::{Path, PathBuf};

use crate::config::Compression;
use crate::writer::sync_parent;

/// `file` → `file.gz` / `file.zst`.
pub(crate) fn compressed_name(path: &Path, compression: Compression) -> PathBuf {
    let ext = match compression {
        Compression::None => return path.to_path_buf(),
        Compression::Gzip => "gz",
        Compression::Zstd => "zst",
    };
    PathBuf::from(format!("{}.{ext}", path.display()))
}

/// Compresses `path` into its compressed name and removes the original only
/// once the compressed copy is durable, so a crash never loses the data.
pub(crate) fn compress_file(path: &Path, compression: Compression) -> io::Result<()> {
    let target = compressed_name(path, compression);
    let tmp = PathBuf::from(format!("{}.tmp", target.display()));
    let mut input = BufReader::new(File::open(path)?);
    let output = BufWriter::new(File::create(&tmp)?);
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
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, &target)?;
    sync_parent(&target)?;
    fs::remove_file(path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn gzip_and_zstd_round_trip() {
        for c in [Compression::Gzip, Compression::Zstd] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("a.jsonl");
            fs::write(&path, b"{\"id\":1}\n{\"id\":2}\n").unwrap();
            compress_file(&path, c).unwrap();
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
}
