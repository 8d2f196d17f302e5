//! The smallest complete sink, `type = "null"`: it acknowledges every
//! batch after `delay` and keeps nothing (to measure the pipeline without
//! a destination). `sinks/README.md` shows this file: copy it to start a
//! sink.
#![deny(missing_docs, unreachable_pub)]

use std::time::Duration;

use async_trait::async_trait;
use auditfwd_sink::config::duration;
use auditfwd_sink::{ConfigProblem, Delivered, Record, Sink, SinkContext, SinkError, SinkFactory};
use serde::Deserialize;

/// 1. Raw: the sink's own keys of its `[[sink]]` table, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNullSinkConfig {
    /// How long each delivery takes. Default `"0s"`, at most `"10s"`.
    #[serde(default, deserialize_with = "duration")]
    pub delay: Duration,
}

/// 2. Validated: checked and typed, what `build` gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NullSinkConfig {
    /// How long each delivery takes.
    pub delay: Duration,
}

/// The sink type. The host registers it with one line,
/// `SinkType::of::<NullSinkFactory>()`.
pub struct NullSinkFactory;

impl SinkFactory for NullSinkFactory {
    const TYPE: &'static str = "null";
    type Raw = RawNullSinkConfig;
    type Config = NullSinkConfig;

    /// Pure: every problem at once, each with its key and the fix.
    fn validate(raw: RawNullSinkConfig) -> Result<NullSinkConfig, Vec<ConfigProblem>> {
        if raw.delay > Duration::from_secs(10) {
            return Err(vec![ConfigProblem::new(
                "delay",
                "is longer than 10s; a slower sink only holds the sources up",
            )]);
        }
        Ok(NullSinkConfig { delay: raw.delay })
    }

    /// 3. Built: the sink, from the validated config and its context.
    fn build(config: &NullSinkConfig, context: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(NullSink {
            name: context.name().to_string(),
            delay: config.delay,
        }))
    }
}

/// Acknowledges every batch, keeps nothing.
pub struct NullSink {
    name: String,
    delay: Duration,
}

#[async_trait]
impl Sink for NullSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(&mut self, _batch: &[Record]) -> Result<Delivered, SinkError> {
        tokio::time::sleep(self.delay).await;
        Ok(Delivered::default())
    }
}
