//! How a sink reports problems in its configuration.

use std::fmt;

/// One problem in a sink's configuration, found without I/O. The core
/// prefixes `key` with the sink's path (`sink[1].`) and the file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The offending key, relative to the sink table (e.g. `path`).
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ConfigProblem {
    /// A problem with `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}
