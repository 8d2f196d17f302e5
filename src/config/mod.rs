//! Configuration: TOML → raw serde structs → validated config.
//!
//! Loading reads the file and the tenant files of its `sources_dir` (one
//! `[source]` each, see `tenants.rs`), interpolates `${ENV}` in string
//! values, merges `[source_defaults]` under every source, and validates
//! every source, `[[sink]]`, `[state]`, `[telemetry]` and `[limits]` table.
//! Validation does no network or output I/O (only `sources_dir`,
//! `api_key_file` and the PEM files of `[source.tls]` are read) and reports
//! **every** problem at once, each naming the file, the key path
//! (`sink[1].path`) and the fix.
//! Opening clients, files and sockets is the next step, done by
//! [`crate::app`].

mod env;
mod fleet;
mod http;
mod sink;
mod source;
mod tenants;
mod types;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One configuration problem: the file, the key path and what to do. The
/// sinks report theirs with the same type.
pub use auditfwd_sink::ConfigProblem as Problem;
pub use fleet::FleetConfig;
pub use http::{ProxyUrl, TlsConfig};
pub use sink::{SINK_TYPES, SinkConfig, SinkKind};
pub use source::{MAX_PAGE_SIZE, SourceConfig};
pub use tenants::Fingerprint;
pub use types::{Secret, StartAt};

/// A complete, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The tenants to poll.
    pub sources: Vec<SourceConfig>,
    /// Where events go.
    pub sinks: Vec<SinkConfig>,
    /// Cursor and dead-letter storage.
    pub state: StateConfig,
    /// Logs, metrics and health.
    pub telemetry: TelemetryConfig,
    /// Process-wide caps.
    pub limits: LimitsConfig,
    /// `[fleet]`: share the sources with other replicas through Kafka.
    /// Default: none (this process polls every source, cursors in
    /// `[state] dir`).
    pub fleet: Option<FleetConfig>,
    /// What is allowed but unwise (e.g. an API key file other users may
    /// read); printed at start and by `check`.
    pub warnings: Vec<Problem>,
    /// `sources_dir`, resolved: one file per tenant. Default: none.
    pub sources_dir: Option<PathBuf>,
    /// Digests of the sections a reload does not apply (`sink`, `state`,
    /// `telemetry`), to tell when one changed.
    pub restart_only: Vec<(&'static str, Fingerprint)>,
}

impl Config {
    /// The sections a reload to `new` would change but can not apply
    /// (they need a restart).
    pub fn restart_only_changes(&self, new: &Config) -> Vec<&'static str> {
        self.restart_only
            .iter()
            .filter(|(section, digest)| {
                !new.restart_only
                    .iter()
                    .any(|(s, d)| s == section && d == digest)
            })
            .map(|(section, _)| *section)
            .collect()
    }
}

/// `[state]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Directory of cursor files (`{source}.state.json` and its journal).
    /// Default `/var/lib/auditfwd`.
    #[serde(default = "default_state_dir")]
    pub dir: PathBuf,
    /// Directory of dead-letter files (`{source}.jsonl`). Default
    /// `{dir}/dead-letter`.
    #[serde(default)]
    pub dead_letter_dir: Option<PathBuf>,
}

impl StateConfig {
    /// Where dead letters go.
    pub fn dead_letter_dir(&self) -> PathBuf {
        self.dead_letter_dir
            .clone()
            .unwrap_or_else(|| self.dir.join("dead-letter"))
    }
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            dir: default_state_dir(),
            dead_letter_dir: None,
        }
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/auditfwd")
}

/// `[limits]`: caps over every source together (per-source limits such as
/// `rate_limit` stay in `[[source]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most API requests (pages and enrichment lookups of every source
    /// together) in flight at once; each holds an outbound connection, so
    /// this bounds the sockets thousands of tenants open. Requests beyond
    /// it wait their turn. Default 256, from 1 to 65,536.
    #[serde(default = "default_max_requests_in_flight")]
    pub max_requests_in_flight: usize,
}

/// The default of `limits.max_requests_in_flight`.
pub const DEFAULT_MAX_REQUESTS_IN_FLIGHT: usize = 256;

/// The largest `limits.max_requests_in_flight`.
const MAX_REQUESTS_IN_FLIGHT: usize = 65_536;

fn default_max_requests_in_flight() -> usize {
    DEFAULT_MAX_REQUESTS_IN_FLIGHT
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_requests_in_flight: DEFAULT_MAX_REQUESTS_IN_FLIGHT,
        }
    }
}

/// `[telemetry]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Address of the metrics (`/metrics`) and health (`/health`) listener.
    /// Default: no listener.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// `human` (default) or `json` log lines on stderr.
    #[serde(default)]
    pub log_format: LogFormat,
    /// Log filter in `RUST_LOG` syntax. Default `info`; `RUST_LOG` wins.
    #[serde(default = "default_log_level")]
    pub log_level: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            listen: None,
            log_format: LogFormat::Human,
            log_level: default_log_level(),
        }
    }
}

fn default_log_level() -> String {
    "info".into()
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Why a configuration could not be loaded: every problem found, with the
/// file they are in.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The main configuration file.
    pub file: PathBuf,
    /// Every problem found, in the main file and in every tenant file.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    /// One block per file, the main file first: `file: N configuration
    /// problems` and a line per problem.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut files: Vec<Option<&Path>> = Vec::new();
        for p in &self.problems {
            if !files.contains(&p.file.as_deref()) {
                files.push(p.file.as_deref());
            }
        }
        // The main file first, then tenant files by name.
        files.sort();
        if files.is_empty() {
            files.push(None);
        }
        for (i, file) in files.into_iter().enumerate() {
            let problems: Vec<&Problem> = self
                .problems
                .iter()
                .filter(|p| p.file.as_deref() == file)
                .collect();
            let n = problems.len();
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}: {n} configuration problem{}",
                file.unwrap_or(&self.file).display(),
                if n == 1 { "" } else { "s" }
            )?;
            for p in problems {
                if p.key.is_empty() {
                    write!(f, "\n  - {}", p.message)?;
                } else {
                    write!(f, "\n  - {}: {}", p.key, p.message)?;
                }
            }
        }
        Ok(())
    }
}

/// Source and sink names end up in file names and metric labels.
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// A serde message from `try_into`, on one line, with every string value
/// it quotes replaced by `"…"`: a type error quotes the value it got, which
/// may be an API key or an interpolated `${VAR}` (secrets never reach an
/// error).
pub(crate) fn clean_de_error(message: &str) -> String {
    redact_quoted(&message.trim().replace('\n', " "))
}

/// `invalid type: string "sk_live_…", expected u32` →
/// `invalid type: string "…", expected u32` (serde quotes a value it got as
/// `string "…"`; our own messages quote examples, which stay).
fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    const VALUE: &str = "string \"";
    while let Some(at) = rest.find(VALUE) {
        let start = at + VALUE.len() - 1;
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        // The closing quote, skipping escaped ones.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        match end {
            Some(end) => {
                out.push_str("\"…\"");
                rest = &after[end + 1..];
            }
            None => {
                out.push_str("\"…");
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// A TOML syntax error as line, column and what is wrong, without the
/// source line toml quotes (it may hold an API key).
fn syntax_error(text: &str, e: &toml::de::Error) -> String {
    let position = e.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        format!(" at line {line}, column {column}")
    });
    format!(
        "invalid TOML{}: {}",
        position.unwrap_or_default(),
        redact_quoted(e.message().trim())
    )
}

const TOP_LEVEL: &[&str] = &[
    "source",
    "sources_dir",
    "source_defaults",
    "sink",
    "state",
    "telemetry",
    "limits",
    "fleet",
];

impl Config {
    /// Loads and validates a configuration file and the tenant files of
    /// its `sources_dir`, reading `${ENV}` from the process environment.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(file, &|name| std::env::var(name).ok())
    }

    /// [`Config::load`] with `env` looking up `${VAR}`.
    pub fn load_with_env(
        file: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
            file: file.to_path_buf(),
            problems: vec![Problem::new(
                "",
                format!("cannot read the file ({e}); check the path given to -c"),
            )],
        })?;
        let base_dir = file.parent().unwrap_or(Path::new("."));
        Self::parse(&text, file, base_dir, env)
    }

    /// Parses configuration text. `file` is used in messages, `base_dir`
    /// resolves relative paths (`sources_dir`, `api_key_file`, TLS files,
    /// in tenant files too), `env` looks up `${VAR}`.
    pub fn parse(
        text: &str,
        file: &Path,
        base_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let fail = |problems| ConfigError {
            file: file.to_path_buf(),
            problems,
        };
        let mut doc: toml::Value = match toml::from_str::<toml::Table>(text) {
            Ok(t) => toml::Value::Table(t),
            Err(e) => {
                return Err(fail(vec![Problem::new("", syntax_error(text, &e))]));
            }
        };
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        env::interpolate(&mut doc, "", env, &mut problems);
        let toml::Value::Table(mut doc) = doc else {
            unreachable!("parsed as a table")
        };

        for key in doc.keys() {
            if !TOP_LEVEL.contains(&key.as_str()) {
                let hint = match key.as_str() {
                    "sources" => " (write [[source]])".to_string(),
                    "sinks" => " (write [[sink]])".to_string(),
                    _ => String::new(),
                };
                problems.push(Problem::new(
                    key.clone(),
                    format!("unknown section{hint}; known: {}", TOP_LEVEL.join(", ")),
                ));
            }
        }
        let restart_only = ["sink", "state", "telemetry", "fleet"]
            .into_iter()
            .map(|section| (section, Fingerprint::of_value(doc.get(section))))
            .collect();

        let sources_dir = match doc.remove("sources_dir") {
            None => None,
            Some(toml::Value::String(dir)) => Some(base_dir.join(dir)),
            Some(other) => {
                problems.push(Problem::new(
                    "sources_dir",
                    format!(
                        "must be a string, found {}; write sources_dir = \"/etc/auditfwd/sources.d\"",
                        other.type_str()
                    ),
                ));
                None
            }
        };
        let defaults = match doc.remove("source_defaults") {
            None => toml::Table::new(),
            Some(toml::Value::Table(defaults)) => defaults,
            Some(other) => {
                problems.push(Problem::new(
                    "source_defaults",
                    format!(
                        "must be a table, found {}; write [source_defaults]",
                        other.type_str()
                    ),
                ));
                toml::Table::new()
            }
        };
        if defaults.contains_key("name") {
            problems.push(Problem::new(
                "source_defaults.name",
                "every source would have the same name; name each source in its own table",
            ));
        }

        let mut entries: Vec<tenants::SourceEntry> =
            array_of_tables(doc.remove("source"), "source", &mut problems)
                .into_iter()
                .map(|(i, table)| tenants::SourceEntry {
                    file: None,
                    path: format!("source[{i}]"),
                    table,
                })
                .collect();
        if let Some(dir) = &sources_dir {
            entries.extend(tenants::read_dir(dir, env, &mut problems));
        }

        let mut sources = Vec::new();
        let mut named: Vec<(String, &tenants::SourceEntry)> = Vec::new();
        for entry in &entries {
            let merged = tenants::merge(&defaults, &entry.table);
            let name = merged.get("name").and_then(|n| n.as_str());
            if let Some(name) = name {
                if let Some((_, first)) = named.iter().find(|(n, _)| n == name) {
                    problems.push(duplicate(name, first, entry, file));
                }
                named.push((name.to_string(), entry));
            }
            let mut found = Vec::new();
            let mut warned = Vec::new();
            if let Some((raw, complete)) =
                deserialize_all::<source::RawSource>(merged.clone(), &entry.path, &mut found)
            {
                let path = format!("{} (\"{}\")", entry.path, raw.name());
                if let Some(mut s) = raw.validate(&path, base_dir, &mut found, &mut warned)
                    && complete
                {
                    s.fingerprint = Fingerprint::of_source(&merged, base_dir);
                    s.defined_in = entry.file.clone();
                    sources.push(s);
                }
            }
            for (list, out) in [(found, &mut problems), (warned, &mut warnings)] {
                for p in list {
                    let p = tenants::attribute(p, entry, name, &defaults);
                    // An inherited mistake is reported once, not per source.
                    if !out.contains(&p) {
                        out.push(p);
                    }
                }
            }
        }

        let mut sinks = Vec::new();
        for (i, table) in array_of_tables(doc.remove("sink"), "sink", &mut problems) {
            let label = table
                .get("name")
                .and_then(|n| n.as_str())
                .map(|n| format!(" (\"{n}\")"))
                .unwrap_or_default();
            if let Some(s) = sink::parse(table, &format!("sink[{i}]{label}"), &mut problems) {
                sinks.push(s);
            }
        }

        let state =
            section::<StateConfig>(doc.remove("state"), "state", &mut problems).unwrap_or_default();
        let telemetry =
            section::<TelemetryConfig>(doc.remove("telemetry"), "telemetry", &mut problems)
                .unwrap_or_default();
        if tracing_subscriber::EnvFilter::try_new(&telemetry.log_level).is_err() {
            problems.push(Problem::new(
                "telemetry.log_level",
                format!(
                    "`{}` is not a log filter; use e.g. \"info\" or \"auditfwd=debug\"",
                    telemetry.log_level
                ),
            ));
        }

        let limits = section::<LimitsConfig>(doc.remove("limits"), "limits", &mut problems)
            .unwrap_or_default();
        if !(1..=MAX_REQUESTS_IN_FLIGHT).contains(&limits.max_requests_in_flight) {
            problems.push(Problem::new(
                "limits.max_requests_in_flight",
                format!(
                    "is {}; use a number from 1 to {MAX_REQUESTS_IN_FLIGHT} (default {DEFAULT_MAX_REQUESTS_IN_FLIGHT})",
                    limits.max_requests_in_flight
                ),
            ));
        }

        let fleet = section::<fleet::RawFleet>(doc.remove("fleet"), "fleet", &mut problems)
            .and_then(|raw| raw.validate(&mut problems));
        if fleet.is_some() && !cfg!(feature = "kafka") {
            problems.push(Problem::new(
                "fleet",
                "this build of auditfwd has no Kafka support (feature `kafka`); use a build with it or remove [fleet]",
            ));
        }

        cross_check(&sources, &sinks, sources_dir.as_deref(), &mut problems);
        if !problems.is_empty() {
            return Err(fail(problems));
        }
        Ok(Config {
            sources,
            sinks,
            state,
            telemetry,
            limits,
            fleet,
            warnings,
            sources_dir,
            restart_only,
        })
    }
}

/// The problem of `later` reusing the name of `first`.
fn duplicate(
    name: &str,
    first: &tenants::SourceEntry,
    later: &tenants::SourceEntry,
    main: &Path,
) -> Problem {
    let key = format!("{}.name", later.path);
    let problem = match (&first.file, &later.file) {
        (None, None) => Problem::new(
            key,
            format!(
                "`{name}` is used by another source; names must be unique (they key the cursor)"
            ),
        ),
        (first_file, _) => Problem::new(
            key,
            format!(
                "`{name}` is also the name of {} in {}; names must be unique (they key the cursor): rename or remove one of the two",
                first.path,
                first_file.as_deref().unwrap_or(main).display()
            ),
        ),
    };
    match &later.file {
        Some(file) => problem.in_file(file),
        None => problem,
    }
}

/// Deserializes `table`, reporting every key serde refuses, not only the
/// first: a refused key is reported, taken out, and the rest tried again
/// (so 5 wrong types in one table take one run to find, not 5). Returns
/// the value and whether nothing was refused: a value built without the
/// refused keys (their defaults in their place) is still worth validating,
/// to report the remaining problems, but not worth using.
pub(crate) fn deserialize_all<T: serde::de::DeserializeOwned>(
    mut table: toml::Table,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Option<(T, bool)> {
    let mut refused: Vec<String> = Vec::new();
    for _ in 0..64 {
        let error = match toml::Value::Table(table.clone()).try_into::<T>() {
            Ok(value) => return Some((value, refused.is_empty())),
            Err(e) => clean_de_error(&e.to_string()),
        };
        let key = refused_key(&error);
        // A missing field we took out ourselves is not news.
        if !key.as_ref().is_some_and(|k| refused.contains(k)) {
            problems.push(match &key {
                Some(k) => {
                    let message = error.strip_suffix(&format!(" in `{k}`")).unwrap_or(&error);
                    Problem::new(format!("{path}.{k}"), message)
                }
                None => Problem::new(path, error),
            });
        }
        match key {
            Some(k) if remove_dotted(&mut table, &k) => refused.push(k),
            _ => return None,
        }
    }
    None
}

/// The key a serde/toml message is about: "… in `a.b`", "unknown field
/// `a`", "missing field `a`".
fn refused_key(message: &str) -> Option<String> {
    let quoted = |after: &str| {
        let start = message.rfind(after)? + after.len();
        let end = message[start..].find('`')? + start;
        Some(message[start..end].to_string())
    };
    quoted(" in `")
        .or_else(|| quoted("unknown field `"))
        .or_else(|| quoted("missing field `"))
}

/// Removes `a.b.c` from `table`; whether it was there.
fn remove_dotted(table: &mut toml::Table, key: &str) -> bool {
    match key.split_once('.') {
        None => table.remove(key).is_some(),
        Some((head, rest)) => match table.get_mut(head) {
            Some(toml::Value::Table(inner)) => remove_dotted(inner, rest),
            _ => false,
        },
    }
}

fn array_of_tables(
    value: Option<toml::Value>,
    key: &str,
    problems: &mut Vec<Problem>,
) -> Vec<(usize, toml::Table)> {
    match value {
        None => Vec::new(),
        Some(toml::Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| match v {
                toml::Value::Table(t) => Some((i, t)),
                other => {
                    problems.push(Problem::new(
                        format!("{key}[{i}]"),
                        format!(
                            "must be a table, found {}; write [[{key}]]",
                            other.type_str()
                        ),
                    ));
                    None
                }
            })
            .collect(),
        Some(_) => {
            problems.push(Problem::new(
                key,
                format!("must be written as [[{key}]] (an array of tables)"),
            ));
            Vec::new()
        }
    }
}

fn section<T: serde::de::DeserializeOwned>(
    value: Option<toml::Value>,
    key: &str,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    match value? {
        toml::Value::Table(table) => match deserialize_all(table, key, problems) {
            Some((value, true)) => Some(value),
            _ => None,
        },
        other => {
            problems.push(Problem::new(
                key,
                format!("must be a table, found {}; write [{key}]", other.type_str()),
            ));
            None
        }
    }
}

fn cross_check(
    sources: &[SourceConfig],
    sinks: &[SinkConfig],
    sources_dir: Option<&Path>,
    problems: &mut Vec<Problem>,
) {
    if sources.is_empty() && !problems.iter().any(|p| p.key.starts_with("source")) {
        problems.push(match sources_dir {
            None => Problem::new(
                "source",
                "no [[source]] is configured; add at least one tenant",
            ),
            Some(dir) => Problem::new(
                "source",
                format!(
                    "no source is configured; add a [[source]] or a tenant file to {}",
                    dir.display()
                ),
            ),
        });
    }
    if sinks.is_empty() && !problems.iter().any(|p| p.key.starts_with("sink")) {
        problems.push(Problem::new(
            "sink",
            "no [[sink]] is configured; add at least one output",
        ));
    }
    for (i, s) in sinks.iter().enumerate() {
        if sinks[..i].iter().any(|o| o.name == s.name) {
            problems.push(Problem::new(
                format!("sink[{i}].name"),
                format!("`{}` is used by another sink; names must be unique", s.name),
            ));
        }
        for (j, wanted) in s.sources.iter().enumerate() {
            if !sources.iter().any(|src| &src.name == wanted) {
                problems.push(Problem::new(
                    format!("sink[{i}].sources[{j}]"),
                    format!(
                        "no source is named `{wanted}`; known: {}",
                        sources
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
    }
    for s in sources {
        if !sinks.is_empty() && !sinks.iter().any(|k| k.accepts_source(&s.name)) {
            problems.push(Problem::new(
                "sink",
                format!(
                    "no sink takes events from source `{}`; its events would go nowhere",
                    s.name
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests;
