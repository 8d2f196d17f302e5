//! `FileSinkConfig`: the `[[sink]] type = "file"` table, validated without I/O.

use auditfwd_sink::ConfigProblem;
use chrono::format::{Item, StrftimeItems};
use serde::Deserialize;

/// Configuration of a file sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// Path template. `{source}` is replaced by the source name and strftime
    /// specifiers (`%Y-%m-%d`) by the UTC date of the write, e.g.
    /// `/var/log/auditfwd/{source}/%Y-%m-%d.jsonl`. Required.
    pub path: String,
    /// Rotate a file when the next record would grow it beyond this many
    /// bytes. Default: no size rotation (the date in the path still splits
    /// files).
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// Compression of rotated files: `none` (default), `gzip` or `zstd`.
    #[serde(default)]
    pub compression: Compression,
    /// When written data is forced to disk before the batch is acknowledged:
    /// `batch` (default: fsync every batch, survives power loss) or `never`
    /// (flushed to the OS only: survives a crash of auditfwd, not of the
    /// machine).
    #[serde(default)]
    pub fsync: FsyncPolicy,
    /// Permissions of new files, octal. Default `"0640"`.
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Most output files kept open at once (with `{source}` in the path,
    /// one per source): beyond it the least recently written is fsynced
    /// and closed, and opened again when its source writes next. Default
    /// 64, 1 to 65,536.
    #[serde(default = "default_max_open_files")]
    pub max_open_files: usize,
}

/// The default of `max_open_files`.
pub const DEFAULT_MAX_OPEN_FILES: usize = 64;

/// The largest `max_open_files`.
pub const MAX_OPEN_FILES: usize = 65_536;

fn default_max_open_files() -> usize {
    DEFAULT_MAX_OPEN_FILES
}

/// Compression applied to a file once it is rotated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Keep rotated files as they are.
    #[default]
    None,
    /// `.gz` (flate2).
    Gzip,
    /// `.zst` (zstd level 3).
    Zstd,
}

/// When to fsync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// fsync before acknowledging each batch.
    #[default]
    Batch,
    /// Never fsync; rely on the OS to write back.
    Never,
}

fn default_mode() -> String {
    "0640".into()
}

impl FileSinkConfig {
    /// A config writing to `path` with every other setting at its default.
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            max_bytes: None,
            compression: Compression::None,
            fsync: FsyncPolicy::Batch,
            mode: default_mode(),
            max_open_files: DEFAULT_MAX_OPEN_FILES,
        }
    }

    /// Every problem in this config, without touching the filesystem.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if self.path.trim().is_empty() {
            problems.push(ConfigProblem::new(
                "path",
                "is empty; set a path template such as \"/var/log/auditfwd/{source}/%Y-%m-%d.jsonl\"",
            ));
        }
        if self.path.ends_with('/') {
            problems.push(ConfigProblem::new(
                "path",
                "names a directory; end the template with a file name such as \"%Y-%m-%d.jsonl\"",
            ));
        }
        let without_source = self.path.replace("{source}", "");
        if let Some(start) = without_source.find('{') {
            let rest = &without_source[start..];
            let end = rest.find('}').map(|e| e + 1).unwrap_or(rest.len());
            problems.push(ConfigProblem::new(
                "path",
                format!(
                    "unknown placeholder `{}`; the only placeholder is {{source}} (dates use strftime, e.g. %Y-%m-%d)",
                    &rest[..end]
                ),
            ));
        }
        if StrftimeItems::new(&without_source).any(|item| matches!(item, Item::Error)) {
            problems.push(ConfigProblem::new(
                "path",
                "has an invalid strftime specifier; use e.g. %Y, %m, %d, %H, and write a literal % as %%",
            ));
        }
        if self.max_bytes == Some(0) {
            problems.push(ConfigProblem::new(
                "max_bytes",
                "must be greater than 0; remove it to rotate by date only",
            ));
        }
        if !(1..=MAX_OPEN_FILES).contains(&self.max_open_files) {
            problems.push(ConfigProblem::new(
                "max_open_files",
                format!(
                    "is {}; set 1 to {MAX_OPEN_FILES} (files kept open at once; more sources than that reopen their file when they write)",
                    self.max_open_files
                ),
            ));
        }
        if self.mode_bits().is_none() {
            problems.push(ConfigProblem::new(
                "mode",
                format!("`{}` is not an octal file mode such as \"0640\"", self.mode),
            ));
        }
        problems
    }

    /// The file mode as permission bits, if valid.
    pub fn mode_bits(&self) -> Option<u32> {
        u32::from_str_radix(self.mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_template_is_valid() {
        let c = FileSinkConfig::new("/var/log/auditfwd/{source}/%Y-%m-%d.jsonl");
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        assert_eq!(c.mode_bits(), Some(0o640));
    }

    #[test]
    fn reports_every_problem() {
        let mut c = FileSinkConfig::new("/x/{tenant}/%Q/");
        c.mode = "rw-r".into();
        c.max_bytes = Some(0);
        c.max_open_files = 0;
        let keys: Vec<_> = c.validate().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "path",
                "path",
                "path",
                "max_bytes",
                "max_open_files",
                "mode"
            ]
        );
    }
}
