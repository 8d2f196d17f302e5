//! Durability primitives of the file sink, used by the writer and the
//! compression worker alike: making a rename survive power loss, cutting a
//! line a crash left half-written, and giving every created file the
//! configured mode whatever the umask.

use std::fs::{File, Permissions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::config::FileMode;

/// fsyncs the directory holding `path`, so a rename survives power loss.
pub(crate) fn sync_parent(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Gives a file the sink just created exactly `mode`: the umask may have
/// taken bits away, and the configured mode is the rule for every file the
/// sink creates (rotated and compressed ones included).
pub(crate) fn set_mode(file: &File, mode: FileMode) -> io::Result<()> {
    file.set_permissions(Permissions::from_mode(mode.bits()))
}

/// If the file does not end with a newline, a crash cut the last line
/// short. That line's batch was never acknowledged (acknowledgement follows
/// the flush), so it will be written again: truncate the fragment so no
/// reader ever sees half a record. Returns the number of bytes removed.
pub(crate) fn repair_torn_tail(file: &mut File) -> io::Result<Option<u64>> {
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
    use std::fs::{self, OpenOptions};

    use super::*;

    /// `x.jsonl` in `dir` holding `content`, open to read and append.
    fn holding(dir: &Path, content: &[u8]) -> (std::path::PathBuf, File) {
        let path = dir.join("x.jsonl");
        fs::write(&path, content).unwrap();
        let f = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .unwrap();
        (path, f)
    }

    #[test]
    fn torn_tail_is_cut_back_to_the_last_full_line() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut f) = holding(dir.path(), b"{\"id\":1}\n{\"id\":2}\n{\"id\":");
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
        let (path, mut f) = holding(dir.path(), b"{\"id\":");
        assert_eq!(repair_torn_tail(&mut f).unwrap(), Some(6));
        assert_eq!(fs::read(&path).unwrap(), b"");
    }
}
