//! `SinkError`: what went wrong in a sink and whether retrying can help.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

/// Whether an error can go away by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The destination is down, slow or overloaded: retry with backoff.
    Transient,
    /// Configuration or permission problem: retrying at full speed will not
    /// help. The pipeline still never drops the batch; it retries at the
    /// slowest backoff and reports the sink unhealthy until an operator acts.
    Permanent,
}

/// An error from a sink, with its retry classification.
#[derive(Debug)]
pub struct SinkError {
    kind: ErrorKind,
    message: String,
    retry_after: Option<Duration>,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl SinkError {
    /// A transient error: the batch is retried with backoff.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Transient, message)
    }

    /// A permanent error: the operator must act (the message says how).
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Permanent, message)
    }

    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after: None,
            source: None,
        }
    }

    /// Attaches the underlying cause (shown after the message).
    pub fn with_source(mut self, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Asks the pipeline to wait at least this long before retrying.
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// The retry classification.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether a retry can succeed without operator action.
    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Transient
    }

    /// The minimum wait the sink asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl StdError for SinkError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_includes_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = SinkError::transient("cannot connect to 127.0.0.1:514").with_source(io);
        assert_eq!(err.to_string(), "cannot connect to 127.0.0.1:514: refused");
        assert!(err.is_transient());
        assert!(err.source().is_some());
    }
}
