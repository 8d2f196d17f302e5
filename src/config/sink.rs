//! `[[sink]]`: where events go. The common keys (`name`, `type`, `format`,
//! filters) are read here; the rest of the table belongs to the sink type,
//! whose factory (registered once, in [`SINK_TYPES`]) validates it into its
//! typed config.

use auditfwd_sink::{RawConfig, Registry, SinkType};
use auditfwd_sink_file::FileSinkFactory;
#[cfg(feature = "kafka")]
use auditfwd_sink_kafka::KafkaSinkFactory;
use auditfwd_sink_stdout::StdoutSinkFactory;
use auditfwd_sink_syslog::SyslogSinkFactory;
use serde::de::DeserializeOwned;

use super::{Problem, is_valid_name};
use crate::filter::Filter;
use crate::format::Format;

pub use auditfwd_sink::SinkKind;

/// Every sink type this build knows, in the order messages list them: the
/// one place a sink crate is registered (see `sinks/README.md`).
pub static SINK_TYPES: Registry<SinkTable> = Registry::new(&[
    SinkType::of::<FileSinkFactory>(),
    SinkType::of::<StdoutSinkFactory>(),
    SinkType::of::<SyslogSinkFactory>(),
    #[cfg(feature = "kafka")]
    SinkType::of::<KafkaSinkFactory>(),
]);

/// A validated sink.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Unique name, used in logs and metrics.
    pub name: String,
    /// Encoding of each record. Default `json`.
    pub format: Format,
    /// Which events this sink receives (`actions`, `entity_types` globs).
    pub filter: Filter,
    /// Sources feeding this sink; empty means all.
    pub sources: Vec<String>,
    /// The type-specific settings, validated by the sink type's factory.
    pub kind: SinkKind,
}

impl SinkConfig {
    /// Whether this sink takes events from `source`.
    pub fn accepts_source(&self, source: &str) -> bool {
        self.sources.is_empty() || self.sources.iter().any(|s| s == source)
    }
}

fn take_string(
    table: &mut toml::Table,
    key: &str,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Option<String> {
    match table.remove(key)? {
        toml::Value::String(s) => Some(s),
        other => {
            problems.push(Problem::new(
                format!("{path}.{key}"),
                format!("must be a string, found {}", other.type_str()),
            ));
            None
        }
    }
}

fn take_strings(
    table: &mut toml::Table,
    key: &str,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Vec<String> {
    match table.remove(key) {
        None => Vec::new(),
        Some(toml::Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| match v {
                toml::Value::String(s) => Some(s),
                other => {
                    problems.push(Problem::new(
                        format!("{path}.{key}[{i}]"),
                        format!("must be a string, found {}", other.type_str()),
                    ));
                    None
                }
            })
            .collect(),
        Some(other) => {
            problems.push(Problem::new(
                format!("{path}.{key}"),
                format!(
                    "must be a list of strings such as [\"USER_*\"], found {}",
                    other.type_str()
                ),
            ));
            Vec::new()
        }
    }
}

/// The type-specific rest of a `[[sink]]` table, once the common keys are
/// taken out, for the sink type's factory.
pub struct SinkTable {
    table: toml::Table,
    path: String,
}

impl RawConfig for SinkTable {
    fn path(&self) -> &str {
        &self.path
    }

    fn deserialize<T: DeserializeOwned>(self, problems: &mut Vec<Problem>) -> Option<(T, bool)> {
        super::deserialize_all::<T>(self.table, &self.path, problems)
    }
}

/// Validates one `[[sink]]` table.
pub(crate) fn parse(
    mut table: toml::Table,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Option<SinkConfig> {
    let before = problems.len();
    let name = take_string(&mut table, "name", path, problems);
    match &name {
        None if problems.len() == before => problems.push(Problem::new(
            format!("{path}.name"),
            "is missing; give every sink a unique name such as \"files\"",
        )),
        Some(n) if !is_valid_name(n) => problems.push(Problem::new(
            format!("{path}.name"),
            format!("`{n}` is not a valid name; use 1-64 letters, digits, `_`, `-` or `.`"),
        )),
        _ => {}
    }
    let format = match take_string(&mut table, "format", path, problems) {
        None => Some(Format::Json),
        Some(f) => match Format::parse(&f) {
            Ok(format) => Some(format),
            Err(e) => {
                problems.push(Problem::new(format!("{path}.format"), e));
                None
            }
        },
    };
    let format = match (
        format,
        take_string(&mut table, "leef_delimiter", path, problems),
    ) {
        (Some(Format::Leef { .. }), Some(d)) => match crate::format::leef::parse_delimiter(&d) {
            Ok(delimiter) => Some(Format::Leef { delimiter }),
            Err(e) => {
                problems.push(Problem::new(format!("{path}.leef_delimiter"), e));
                None
            }
        },
        (Some(_), Some(_)) => {
            problems.push(Problem::new(
                format!("{path}.leef_delimiter"),
                "applies to format = \"leef\" only; remove it or set the format",
            ));
            None
        }
        (format, None) | (format @ None, Some(_)) => format,
    };
    let actions = take_strings(&mut table, "actions", path, problems);
    let entity_types = take_strings(&mut table, "entity_types", path, problems);
    let filter = match Filter::new(&actions, &entity_types) {
        Ok(f) => Some(f),
        Err((key, message)) => {
            problems.push(Problem::new(format!("{path}.{key}"), message));
            None
        }
    };
    let sources = take_strings(&mut table, "sources", path, problems);
    let kind = match take_string(&mut table, "type", path, problems) {
        Some(type_name) => {
            let rest = SinkTable {
                table,
                path: path.to_string(),
            };
            SINK_TYPES.parse(&type_name, rest, problems)
        }
        None => {
            problems.push(Problem::new(
                format!("{path}.type"),
                format!("is missing; set type to one of: {}", SINK_TYPES.available()),
            ));
            None
        }
    };
    if problems.len() > before {
        return None;
    }
    Some(SinkConfig {
        name: name?,
        format: format?,
        filter: filter?,
        sources,
        kind: kind?,
    })
}
