//! Sink registration: one explicit `match` from a validated [`SinkConfig`]
//! to the sink crate that implements it.

use auditfwd_sink::Sink;
use auditfwd_sink_file::FileSink;
use auditfwd_sink_stdout::StdoutSink;
use auditfwd_sink_syslog::SyslogSink;

use crate::config::{SinkConfig, SinkKind};
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
#[cfg_attr(not(feature = "kafka"), allow(unused_variables))]
pub fn build(config: &SinkConfig, sources: Vec<String>) -> Result<Box<dyn Sink>, BuildError> {
    Ok(match &config.kind {
        SinkKind::File(c) => Box::new(FileSink::new(&config.name, c.clone())),
        SinkKind::Stdout(_) => Box::new(StdoutSink::new(&config.name)),
        SinkKind::Syslog(c) => {
            Box::new(
                SyslogSink::new(&config.name, c.clone()).map_err(|e| BuildError {
                    name: config.name.clone(),
                    message: e.to_string(),
                })?,
            )
        }
        #[cfg(feature = "kafka")]
        SinkKind::Kafka(c) => Box::new(
            auditfwd_sink_kafka::KafkaSink::new(&config.name, c.clone(), sources).map_err(|e| {
                BuildError {
                    name: config.name.clone(),
                    message: e.to_string(),
                }
            })?,
        ),
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
