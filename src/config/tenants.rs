//! Where sources come from: the `[[source]]` tables of the main file and
//! one file per tenant in `sources_dir`, each merged over
//! `[source_defaults]`.
//!
//! A tenant file holds one `[source]` table, written exactly like a
//! `[[source]]` table of the main file. Only files whose names end in
//! `.toml` and do not start with `.` are read, so editor swap files,
//! backups (`acme.toml~`) and switched-off tenants (`acme.toml.disabled`)
//! are left alone.
//!
//! The merge happens on TOML tables, before the typed validation, so that
//! every check and message of `[[source]]` applies unchanged; a problem is
//! then put back where its value came from: the tenant's own table (its
//! file) or `[source_defaults]` (the main file). A source's own value wins;
//! nested tables (`rate_limit`, `retry`, `tls`, `enrich`) merge key by key,
//! arrays and plain values are replaced whole.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use super::{Problem, env, syntax_error};

/// One source's own table and where it was written.
pub(crate) struct SourceEntry {
    /// The tenant file it is in; `None`: the main file.
    pub file: Option<PathBuf>,
    /// Its key path in that file: `source[3]` or `source`.
    pub path: String,
    /// The keys the source sets itself.
    pub table: toml::Table,
}

/// Every tenant file of `dir`, in name order, parsed and interpolated.
/// Problems name their file.
pub(crate) fn read_dir(
    dir: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) -> Vec<SourceEntry> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            problems.push(Problem::new(
                "sources_dir",
                format!(
                    "cannot read the directory {} ({e}); create it or fix the path (relative paths start at the main config file)",
                    dir.display()
                ),
            ));
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| is_tenant_file(p) && p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|file| read_tenant(&file, lookup, problems))
        .collect()
}

/// `acme.toml` yes; `.acme.toml.swp`, `.#acme.toml`, `acme.toml~`,
/// `acme.toml.disabled` no.
pub(crate) fn is_tenant_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".toml") && !n.starts_with('.'))
}

fn read_tenant(
    file: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) -> Option<SourceEntry> {
    let mut local = Vec::new();
    let entry = parse_tenant(file, lookup, &mut local);
    problems.extend(local.into_iter().map(|p| p.in_file(file)));
    entry
}

fn parse_tenant(
    file: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) -> Option<SourceEntry> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            problems.push(Problem::new(
                "",
                format!("cannot read the file ({e}); let auditfwd read it, or rename it to end in .disabled"),
            ));
            return None;
        }
    };
    let mut doc = match toml::from_str::<toml::Table>(&text) {
        Ok(t) => toml::Value::Table(t),
        Err(e) => {
            problems.push(Problem::new("", syntax_error(&text, &e)));
            return None;
        }
    };
    env::interpolate(&mut doc, "", lookup, problems);
    let toml::Value::Table(mut doc) = doc else {
        unreachable!("parsed as a table")
    };
    for key in doc.keys().filter(|k| k.as_str() != "source") {
        problems.push(Problem::new(
            key.clone(),
            "a tenant file holds one [source] table and nothing else; sinks, state and telemetry belong in the main file",
        ));
    }
    match doc.remove("source") {
        Some(toml::Value::Table(table)) => Some(SourceEntry {
            file: Some(file.to_path_buf()),
            path: "source".into(),
            table,
        }),
        Some(toml::Value::Array(_)) => {
            problems.push(Problem::new(
                "source",
                "write [source], not [[source]]: a tenant file holds one tenant",
            ));
            None
        }
        Some(other) => {
            problems.push(Problem::new(
                "source",
                format!(
                    "must be a table, found {}; write [source]",
                    other.type_str()
                ),
            ));
            None
        }
        None => {
            problems.push(Problem::new(
                "source",
                "is missing; a tenant file holds one [source] table with the tenant's name, base_url and api_key",
            ));
            None
        }
    }
}

/// `own` over `defaults`: own values win, tables merge key by key.
pub(crate) fn merge(defaults: &toml::Table, own: &toml::Table) -> toml::Table {
    let mut merged = defaults.clone();
    for (key, value) in own {
        match (merged.get_mut(key), value) {
            (Some(toml::Value::Table(base)), toml::Value::Table(over)) => {
                *base = merge(base, over);
            }
            _ => {
                merged.insert(key.clone(), value.clone());
            }
        }
    }
    merged
}

/// Puts a problem found in a merged source back where its value came from:
/// `[source_defaults]` of the main file, or the source's own table.
pub(crate) fn attribute(
    problem: Problem,
    entry: &SourceEntry,
    name: Option<&str>,
    defaults: &toml::Table,
) -> Problem {
    let own_problem = |p: Problem| match &entry.file {
        Some(file) => p.in_file(file),
        None => p,
    };
    let labeled = name.map(|n| format!("{} (\"{n}\").", entry.path));
    let plain = format!("{}.", entry.path);
    let suffix = labeled
        .as_deref()
        .and_then(|l| problem.key.strip_prefix(l))
        .or_else(|| problem.key.strip_prefix(&plain));
    match suffix {
        Some(suffix) if from_defaults(suffix, &entry.table, defaults) => Problem {
            key: format!("source_defaults.{suffix}"),
            ..problem
        },
        _ => own_problem(problem),
    }
}

/// Whether the value at `suffix` (`rate_limit.burst`, `actions[2]`) of a
/// merged source is inherited from `defaults`.
fn from_defaults(suffix: &str, own: &toml::Table, defaults: &toml::Table) -> bool {
    let mut own = Some(own);
    let mut defaults = Some(defaults);
    for segment in suffix.split('.') {
        let key = segment.split('[').next().unwrap_or(segment);
        let mine = own.and_then(|t| t.get(key));
        let inherited = defaults.and_then(|t| t.get(key));
        match (mine, inherited) {
            (Some(toml::Value::Table(m)), Some(toml::Value::Table(d))) => {
                own = Some(m);
                defaults = Some(d);
            }
            (Some(_), _) => return false,
            (None, Some(toml::Value::Table(d))) => {
                own = None;
                defaults = Some(d);
            }
            (None, Some(_)) => return true,
            // Missing from both: the source is incomplete, unless the
            // whole table around it came from the defaults.
            (None, None) => return own.is_none(),
        }
    }
    own.is_none()
}

/// A digest of a source's effective configuration: the merged table and
/// the files it names (API key, TLS), so that a reload sees a changed key
/// file too. Its `Debug` shows nothing (the input holds the API key).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Fingerprint(u64);

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fingerprint(…)")
    }
}

impl Fingerprint {
    /// The digest of a merged source table and the files it names.
    pub(crate) fn of_source(table: &toml::Table, base_dir: &Path) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        toml::to_string(table).unwrap_or_default().hash(&mut hasher);
        let files = [
            table.get("api_key_file"),
            tls_key(table, "ca_file"),
            tls_key(table, "cert_file"),
            tls_key(table, "key_file"),
        ];
        for file in files.into_iter().flatten().filter_map(|v| v.as_str()) {
            std::fs::read(base_dir.join(file))
                .unwrap_or_default()
                .hash(&mut hasher);
        }
        Self(hasher.finish())
    }

    /// The digest of any value (a section of the main file).
    pub(crate) fn of_value(value: Option<&toml::Value>) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        if let Some(value) = value {
            toml::to_string(value)
                .unwrap_or_else(|_| value.to_string())
                .hash(&mut hasher);
        }
        Self(hasher.finish())
    }
}

fn tls_key<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    table.get("tls")?.as_table()?.get(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn own_values_win_and_tables_merge_key_by_key() {
        let defaults = table(
            "page_size = 50\nactions = [\"A\", \"B\"]\nrate_limit = { requests_per_second = 5, burst = 7 }",
        );
        let own = table("actions = [\"C\"]\nrate_limit = { burst = 9 }");
        let merged = merge(&defaults, &own);
        assert_eq!(
            merged,
            table(
                "page_size = 50\nactions = [\"C\"]\nrate_limit = { requests_per_second = 5, burst = 9 }"
            )
        );
    }

    #[test]
    fn a_value_is_traced_to_where_it_was_written() {
        let defaults =
            table("page_size = 500\nrate_limit = { burst = 0 }\ntls = { ca_file = \"x\" }");
        let own = table("rate_limit = { requests_per_second = 0 }\nactions = [\"\"]");
        assert!(from_defaults("page_size", &own, &defaults));
        assert!(from_defaults("rate_limit.burst", &own, &defaults));
        assert!(!from_defaults(
            "rate_limit.requests_per_second",
            &own,
            &defaults
        ));
        assert!(!from_defaults("actions[0]", &own, &defaults));
        assert!(from_defaults("tls.ca_file", &own, &defaults));
        assert!(from_defaults("tls.cert_file", &own, &defaults));
        assert!(!from_defaults("api_key", &own, &defaults));
    }

    #[test]
    fn only_toml_files_that_are_not_hidden_are_tenants() {
        for (name, tenant) in [
            ("acme.toml", true),
            ("acme.toml.disabled", false),
            ("acme.toml~", false),
            (".acme.toml.swp", false),
            (".#acme.toml", false),
            ("#acme.toml#", false),
            ("README", false),
        ] {
            assert_eq!(is_tenant_file(Path::new(name)), tenant, "{name}");
        }
    }
}
