//! The stdout sink: one record per line on standard output, for pipes
//! (`auditfwd run | jq`) and the demo. A batch is acknowledged once written
//! and flushed to the pipe.
#![deny(missing_docs, unreachable_pub)]

use async_trait::async_trait;
use auditfwd_sink::{
    ConfigProblem, Delivered, Record, Rejected, Sink, SinkContext, SinkError, SinkFactory,
};
use serde::Deserialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Configuration of the stdout sink: it has no settings of its own.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {}

/// The stdout sink's type, `type = "stdout"`, for the host's registry.
pub struct StdoutSinkFactory;

impl SinkFactory for StdoutSinkFactory {
    const TYPE: &'static str = "stdout";
    type Raw = StdoutSinkConfig;
    type Config = StdoutSinkConfig;

    fn validate(raw: StdoutSinkConfig) -> Result<StdoutSinkConfig, Vec<ConfigProblem>> {
        Ok(raw)
    }

    fn build(_: &StdoutSinkConfig, context: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(StdoutSink::new(context.name())))
    }
}

/// Writes records as lines to a writer (standard output by default).
pub struct StdoutSink<W = tokio::io::Stdout> {
    name: String,
    out: W,
}

impl StdoutSink {
    /// A sink called `name` writing to standard output.
    pub fn new(name: impl Into<String>) -> Self {
        Self::with_writer(name, tokio::io::stdout())
    }
}

impl<W: AsyncWrite + Unpin + Send> StdoutSink<W> {
    /// A sink writing to `out` instead (tests).
    pub fn with_writer(name: impl Into<String>, out: W) -> Self {
        Self {
            name: name.into(),
            out,
        }
    }

    /// The writer, for inspection in tests.
    pub fn writer(&self) -> &W {
        &self.out
    }
}

fn pipe_error(name: &str, error: std::io::Error) -> SinkError {
    let message = format!("stdout sink `{name}`: cannot write to standard output");
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        SinkError::permanent(format!("{message} (the reading process went away)"))
            .with_source(error)
    } else {
        SinkError::transient(message).with_source(error)
    }
}

#[async_trait]
impl<W: AsyncWrite + Unpin + Send> Sink for StdoutSink<W> {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(&mut self, batch: &[Record]) -> Result<Delivered, SinkError> {
        let mut delivered = Delivered::default();
        let mut buf = Vec::with_capacity(batch.iter().map(|r| r.payload.len() + 1).sum());
        for (index, record) in batch.iter().enumerate() {
            if record.has_line_break() {
                delivered.rejected.push(Rejected::line_break(index));
                continue;
            }
            buf.extend_from_slice(&record.payload);
            buf.push(b'\n');
        }
        self.out
            .write_all(&buf)
            .await
            .map_err(|e| pipe_error(&self.name, e))?;
        self.out
            .flush()
            .await
            .map_err(|e| pipe_error(&self.name, e))?;
        Ok(delivered)
    }

    /// Flushes the writer; standard output itself stays open.
    async fn close(&mut self) -> Result<(), SinkError> {
        self.out
            .flush()
            .await
            .map_err(|e| pipe_error(&self.name, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditfwd_sink::testing::{conformance, records, sample_events};
    use std::time::Duration;

    #[tokio::test]
    async fn passes_conformance_and_writes_one_line_per_record() {
        let mut sink = StdoutSink::with_writer("out", Vec::new());
        conformance(&mut sink, Duration::from_secs(5)).await;
        let mut sink = StdoutSink::with_writer("out", Vec::new());
        sink.deliver(&records(sample_events("acme", 4)))
            .await
            .unwrap();
        let text = String::from_utf8(sink.writer().clone()).unwrap();
        assert_eq!(text.lines().count(), 4);
        assert!(text.ends_with('\n'));
    }
}
