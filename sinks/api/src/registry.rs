//! The sink registry: how a sink type turns its keys of a `[[sink]]` table
//! into a validated config and a validated config into a running [`Sink`],
//! and the table of types the host looks a `type` up in.
//!
//! Configuration goes in three steps, each owned by the sink crate:
//!
//! 1. **raw**: [`SinkFactory::Raw`], plain serde (`deny_unknown_fields`),
//!    what the operator wrote;
//! 2. **validated**: [`SinkFactory::validate`] checks it without I/O,
//!    reports *every* problem with its key and the fix, and returns the
//!    typed [`SinkFactory::Config`] (templates parsed, enums instead of
//!    strings), so nothing is parsed again later;
//! 3. **built**: [`SinkFactory::build`] makes the sink from the validated
//!    config and the [`SinkContext`] (its name, the sources feeding it).
//!
//! The host registers each factory once, as one line of a [`Registry`]
//! (`SinkType::of::<FileSinkFactory>()`); the `type` names in error
//! messages, the dispatch on `type` and the type-erased validated config
//! ([`SinkKind`]) follow from it. The raw format is the host's (TOML for
//! auditfwd), handed over through [`RawConfig`], so this crate stays free
//! of it.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::{ConfigProblem, Sink, SinkError};

/// What a sink is built with besides its config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkContext {
    name: String,
    sources: Vec<String>,
}

impl SinkContext {
    /// The context of the sink called `name`, fed by `sources`.
    pub fn new(name: impl Into<String>, sources: Vec<String>) -> Self {
        Self {
            name: name.into(),
            sources,
        }
    }

    /// The sink's configured name, for logs, metrics and errors.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sources that feed the sink (every configured source when the
    /// sink names none), e.g. to check per-source destinations at start.
    pub fn sources(&self) -> &[String] {
        &self.sources
    }
}

/// What a sink keeps open at most, for the process's estimate of the file
/// descriptors it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptors {
    /// Output files held open.
    pub files: usize,
    /// Sockets, pipes and other descriptors.
    pub connections: usize,
}

impl Descriptors {
    /// A few connections: what a network sink holds (the default).
    pub const CONNECTIONS: Self = Self {
        files: 0,
        connections: 8,
    };
}

/// One sink type: its `type` name, how its config is validated and how the
/// sink is built. Implemented by a unit struct in each sink crate and
/// registered once with [`SinkType::of`].
pub trait SinkFactory: 'static {
    /// The `type` value of its `[[sink]]` tables, e.g. `"file"`.
    const TYPE: &'static str;

    /// The sink's own keys as written (`name`, `type`, `format` and the
    /// filters are the host's): plain serde with `deny_unknown_fields`.
    type Raw: DeserializeOwned;

    /// The validated, typed config that [`SinkFactory::build`] consumes.
    type Config: fmt::Debug + Send + Sync + 'static;

    /// Checks `raw` without I/O. On error, returns **every** problem, each
    /// with its key relative to the sink table and what to do (at least
    /// one).
    fn validate(raw: Self::Raw) -> Result<Self::Config, Vec<ConfigProblem>>;

    /// Builds the sink (reading files such as TLS keys is fine; connect
    /// lazily, in [`Sink::healthcheck`] or the first delivery).
    fn build(config: &Self::Config, context: &SinkContext) -> Result<Box<dyn Sink>, SinkError>;

    /// What the sink keeps open, fed by `sources` sources. Default: a few
    /// connections.
    fn descriptors(config: &Self::Config, sources: usize) -> Descriptors {
        let _ = (config, sources);
        Descriptors::CONNECTIONS
    }
}

/// The validated config of a sink of any registered type: what the host
/// keeps between validation and building.
#[derive(Clone)]
pub struct SinkKind(Arc<dyn Validated>);

trait Validated: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn build(&self, context: &SinkContext) -> Result<Box<dyn Sink>, SinkError>;
    fn descriptors(&self, sources: usize) -> Descriptors;
    fn as_any(&self) -> &dyn Any;
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

struct Typed<F: SinkFactory>(F::Config);

impl<F: SinkFactory> Validated for Typed<F> {
    fn type_name(&self) -> &'static str {
        F::TYPE
    }

    fn build(&self, context: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        F::build(&self.0, context)
    }

    fn descriptors(&self, sources: usize) -> Descriptors {
        F::descriptors(&self.0, sources)
    }

    fn as_any(&self) -> &dyn Any {
        &self.0
    }

    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl SinkKind {
    /// Wraps a config validated by `F`.
    pub fn new<F: SinkFactory>(config: F::Config) -> Self {
        Self(Arc::new(Typed::<F>(config)))
    }

    /// The `type` name.
    pub fn type_name(&self) -> &'static str {
        self.0.type_name()
    }

    /// Builds the sink.
    pub fn build(&self, context: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        self.0.build(context)
    }

    /// What the sink keeps open, fed by `sources` sources.
    pub fn descriptors(&self, sources: usize) -> Descriptors {
        self.0.descriptors(sources)
    }

    /// The typed config, if this is a sink of type `F` (tests, tools).
    pub fn config<F: SinkFactory>(&self) -> Option<&F::Config> {
        self.0.as_any().downcast_ref()
    }
}

impl fmt::Debug for SinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.type_name())?;
        self.0.debug(f)
    }
}

/// The sink-specific keys of one `[[sink]]` table in the host's format,
/// with the place of the table for problems.
pub trait RawConfig {
    /// Where the table is, e.g. `sink[1] ("siem")`; the registry puts the
    /// keys of [`SinkFactory::validate`]'s problems under it.
    fn path(&self) -> &str;

    /// Deserializes the keys into `T`, reporting every key refused in
    /// `problems` (keys placed under [`RawConfig::path`]). Returns the
    /// value and whether nothing was refused (a value built without the
    /// refused keys is still validated, to report its other problems, but
    /// not used), or `None` when no value could be built.
    fn deserialize<T: DeserializeOwned>(
        self,
        problems: &mut Vec<ConfigProblem>,
    ) -> Option<(T, bool)>;
}

/// One registered sink type, for a host whose raw tables are `R`.
pub struct SinkType<R> {
    name: &'static str,
    parse: fn(R, &mut Vec<ConfigProblem>) -> Option<SinkKind>,
}

impl<R: RawConfig> SinkType<R> {
    /// The registration of `F`: the one line that adds a sink type.
    pub const fn of<F: SinkFactory>() -> Self {
        Self {
            name: F::TYPE,
            parse: parse::<R, F>,
        }
    }

    /// The `type` name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// Raw → validated for one type: serde, then the factory's validation.
fn parse<R: RawConfig, F: SinkFactory>(
    raw: R,
    problems: &mut Vec<ConfigProblem>,
) -> Option<SinkKind> {
    let path = raw.path().to_string();
    let (value, complete) = raw.deserialize::<F::Raw>(problems)?;
    match F::validate(value) {
        Ok(config) => complete.then(|| SinkKind::new::<F>(config)),
        Err(found) if found.is_empty() => {
            problems.push(ConfigProblem::new(
                path,
                format!(
                    "the {} sink refused its settings without saying why (a bug: please report it)",
                    F::TYPE
                ),
            ));
            None
        }
        Err(found) => {
            problems.extend(found.into_iter().map(|p| p.under(&path)));
            None
        }
    }
}

/// The sink types a host knows.
pub struct Registry<R: 'static> {
    types: &'static [SinkType<R>],
}

impl<R: RawConfig> Registry<R> {
    /// A registry of `types`, listed in messages in this order.
    pub const fn new(types: &'static [SinkType<R>]) -> Self {
        Self { types }
    }

    /// The `type` names, in registration order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.types.iter().map(|t| t.name)
    }

    /// The `type` names for a message: `file, stdout, syslog`.
    pub fn available(&self) -> String {
        self.names().collect::<Vec<_>>().join(", ")
    }

    /// Validates `raw` as a sink of type `type_name`. Every problem found
    /// goes to `problems` (an unknown type as `<path>.type`, listing the
    /// known ones); `None` when there was any.
    pub fn parse(
        &self,
        type_name: &str,
        raw: R,
        problems: &mut Vec<ConfigProblem>,
    ) -> Option<SinkKind> {
        match self.types.iter().find(|t| t.name == type_name) {
            Some(t) => (t.parse)(raw, problems),
            None => {
                problems.push(ConfigProblem::new(
                    format!("{}.type", raw.path()),
                    format!(
                        "unknown sink type `{type_name}`; available: {}",
                        self.available()
                    ),
                ));
                None
            }
        }
    }
}
