//! The `[[sink]] type = "file"` table: [`RawFileSinkConfig`] as written,
//! validated without I/O into [`FileSinkConfig`], whose path template and
//! file mode are parsed once ([`PathTemplate`], [`FileMode`]).

use std::fmt;
use std::io;
use std::num::{NonZeroU64, NonZeroUsize};
use std::path::PathBuf;

use auditfwd_sink::ConfigProblem;
use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Utc};
use serde::Deserialize;

/// A file sink's table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFileSinkConfig {
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

/// A validated file sink config (see [`RawFileSinkConfig`] for each key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSinkConfig {
    /// Where each record goes.
    pub path: PathTemplate,
    /// Size rotation; `None`: by date only.
    pub max_bytes: Option<NonZeroU64>,
    /// Compression of rotated files.
    pub compression: Compression,
    /// When to fsync.
    pub fsync: FsyncPolicy,
    /// Permissions of every file the sink creates.
    pub mode: FileMode,
    /// Most output files open at once.
    pub max_open_files: NonZeroUsize,
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

/// Permission bits of the files a sink creates (at most `0o777`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode(u32);

impl FileMode {
    /// `0o640`, the default.
    pub const DEFAULT: Self = Self(0o640);

    /// Parses an octal mode, `"0640"` or `"0o640"`.
    pub fn parse(mode: &str) -> Result<Self, String> {
        u32::from_str_radix(mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .map(Self)
            .ok_or_else(|| format!("`{mode}` is not an octal file mode such as \"0640\""))
    }

    /// The permission bits.
    pub fn bits(self) -> u32 {
        self.0
    }
}

impl Default for FileMode {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A validated path template: `{source}` and strftime specifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate(String);

impl PathTemplate {
    /// Parses a template; the errors say what is wrong, all of them.
    pub fn parse(template: &str) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        if template.trim().is_empty() {
            problems.push(
                "is empty; set a path template such as \"/var/log/auditfwd/{source}/%Y-%m-%d.jsonl\"".to_string(),
            );
        }
        if template.ends_with('/') {
            problems.push(
                "names a directory; end the template with a file name such as \"%Y-%m-%d.jsonl\""
                    .to_string(),
            );
        }
        let without_source = template.replace("{source}", "");
        if let Some(start) = without_source.find('{') {
            let rest = &without_source[start..];
            let end = rest.find('}').map(|e| e + 1).unwrap_or(rest.len());
            problems.push(format!(
                "unknown placeholder `{}`; the only placeholder is {{source}} (dates use strftime, e.g. %Y-%m-%d)",
                &rest[..end]
            ));
        }
        if StrftimeItems::new(&without_source).any(|item| matches!(item, Item::Error)) {
            problems.push(
                "has an invalid strftime specifier; use e.g. %Y, %m, %d, %H, and write a literal % as %%".to_string(),
            );
        }
        if problems.is_empty() {
            Ok(Self(template.to_string()))
        } else {
            Err(problems)
        }
    }

    /// Whether each source gets its own file (`{source}` in the path).
    pub fn per_source(&self) -> bool {
        self.0.contains("{source}")
    }

    /// The path a record of `source` written at `now` goes to.
    pub fn render(&self, source: &str, now: DateTime<Utc>) -> io::Result<PathBuf> {
        use std::fmt::Write as _;
        let mut dated = String::new();
        write!(dated, "{}", now.format(&self.0))
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "invalid strftime in path"))?;
        Ok(PathBuf::from(dated.replace("{source}", source)))
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl RawFileSinkConfig {
    /// A table writing to `path` with every other setting at its default.
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

    /// The validated config, or every problem in this table, without
    /// touching the filesystem.
    pub fn validate(self) -> Result<FileSinkConfig, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let path = PathTemplate::parse(&self.path).map_err(|found| {
            problems.extend(found.into_iter().map(|m| ConfigProblem::new("path", m)));
        });
        let max_bytes = match self.max_bytes {
            None => Ok(None),
            Some(n) => NonZeroU64::new(n).map(Some).ok_or_else(|| {
                problems.push(ConfigProblem::new(
                    "max_bytes",
                    "must be greater than 0; remove it to rotate by date only",
                ))
            }),
        };
        let max_open_files = NonZeroUsize::new(self.max_open_files)
            .filter(|n| n.get() <= MAX_OPEN_FILES)
            .ok_or_else(|| {
                problems.push(ConfigProblem::new(
                    "max_open_files",
                    format!(
                        "is {}; set 1 to {MAX_OPEN_FILES} (files kept open at once; more sources than that reopen their file when they write)",
                        self.max_open_files
                    ),
                ))
            });
        let mode = FileMode::parse(&self.mode)
            .map_err(|message| problems.push(ConfigProblem::new("mode", message)));
        match (path, max_bytes, max_open_files, mode) {
            (Ok(path), Ok(max_bytes), Ok(max_open_files), Ok(mode)) => Ok(FileSinkConfig {
                path,
                max_bytes,
                compression: self.compression,
                fsync: self.fsync,
                mode,
                max_open_files,
            }),
            _ => Err(problems),
        }
    }
}

#[cfg(test)]
mod tests {
    use auditfwd_sink::testing::problem_keys;

    use super::*;

    #[test]
    fn default_template_is_valid() {
        let c = RawFileSinkConfig::new("/var/log/auditfwd/{source}/%Y-%m-%d.jsonl")
            .validate()
            .unwrap();
        assert_eq!(c.mode.bits(), 0o640);
        assert!(c.path.per_source());
        assert_eq!(c.max_open_files.get(), DEFAULT_MAX_OPEN_FILES);
        let day = DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            c.path.render("acme", day).unwrap(),
            PathBuf::from("/var/log/auditfwd/acme/2026-03-01.jsonl")
        );
    }

    #[test]
    fn reports_every_problem() {
        let mut c = RawFileSinkConfig::new("/x/{tenant}/%Q/");
        c.mode = "rw-r".into();
        c.max_bytes = Some(0);
        c.max_open_files = 0;
        assert_eq!(
            problem_keys(&c.validate().unwrap_err()),
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

    #[test]
    fn modes() {
        assert_eq!(FileMode::parse("0o600").unwrap().bits(), 0o600);
        assert_eq!(FileMode::parse("755").unwrap().bits(), 0o755);
        for bad in ["rw-r", "0999", "01777", ""] {
            assert!(FileMode::parse(bad).unwrap_err().contains("octal"), "{bad}");
        }
    }
}
