//! Building the configured sinks: each validated [`SinkConfig`] carries
//! its type's factory (registered in [`crate::config::SINK_TYPES`]), which
//! builds the sink from it and the [`SinkContext`].

use auditfwd_sink::{Sink, SinkContext};

use crate::config::SinkConfig;
use crate::pipeline::Route;

/// Why a sink could not be built.
#[derive(Debug, thiserror::Error)]
#[error("sink `{name}`: {message}")]
pub struct BuildError {
    /// Sink name.
    pub name: String,
    /// What went wrong and what to do.
    pub message: String,
}

/// Builds the sink described by `config` (opens no connection yet).
/// `sources` are the sources that feed it.
pub fn build(config: &SinkConfig, sources: Vec<String>) -> Result<Box<dyn Sink>, BuildError> {
    let context = SinkContext::new(&config.name, sources);
    config.kind.build(&context).map_err(|e| BuildError {
        name: config.name.clone(),
        message: e.to_string(),
    })
}

/// The route (format, filters, sources) of a configured sink.
pub fn route(config: &SinkConfig) -> Route {
    Route {
        name: config.name.clone(),
        format: config.format.clone(),
        filter: config.filter.clone(),
        sources: config.sources.clone(),
    }
}
