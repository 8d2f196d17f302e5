//! What a sink receives: an encoded event with the metadata sinks route on.

use std::sync::Arc;

use bytes::Bytes;

use crate::Event;

/// One event, encoded by the core in the sink's format.
#[derive(Debug, Clone)]
pub struct Record {
    /// The canonical event, for keys, headers, routing and syslog headers.
    pub event: Arc<Event>,
    /// The encoded event (one line, no trailing newline).
    pub payload: Bytes,
    /// Severity from the action mapping table.
    pub severity: Severity,
    /// The format name the payload is in (`json`, `ocsf`, `cef`, ...).
    pub format: &'static str,
}

impl Record {
    /// Whether the payload contains CR or LF. Line-oriented sinks refuse such
    /// records: one event must never read as two.
    pub fn has_line_break(&self) -> bool {
        self.payload.iter().any(|b| *b == b'\n' || *b == b'\r')
    }
}

/// Event severity, on the OCSF `severity_id` scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Routine activity (logins, reads).
    Informational,
    /// Noteworthy change (creations, updates).
    Low,
    /// Security-relevant change (deletions, failed logins, exports).
    Medium,
    /// Privilege or credential change (roles, API keys).
    High,
    /// Reserved for events that demand immediate attention.
    Critical,
}

impl Severity {
    /// OCSF `severity_id` (1 Informational .. 5 Critical).
    pub fn ocsf_id(self) -> u8 {
        match self {
            Severity::Informational => 1,
            Severity::Low => 2,
            Severity::Medium => 3,
            Severity::High => 4,
            Severity::Critical => 5,
        }
    }

    /// OCSF `severity` label.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Informational => "Informational",
            Severity::Low => "Low",
            Severity::Medium => "Medium",
            Severity::High => "High",
            Severity::Critical => "Critical",
        }
    }

    /// Syslog severity (RFC 5424 §6.2.1): 6 info, 5 notice, 4 warning,
    /// 3 error, 2 critical.
    pub fn syslog(self) -> u8 {
        match self {
            Severity::Informational => 6,
            Severity::Low => 5,
            Severity::Medium => 4,
            Severity::High => 3,
            Severity::Critical => 2,
        }
    }

    /// CEF severity (0-10).
    pub fn cef(self) -> u8 {
        match self {
            Severity::Informational => 1,
            Severity::Low => 3,
            Severity::Medium => 5,
            Severity::High => 8,
            Severity::Critical => 10,
        }
    }
}

/// What a sink reports for a batch it acknowledged.
#[derive(Debug, Default)]
pub struct Delivered {
    /// Records the destination refused for their content; they go to the
    /// dead-letter file with the reason. Everything else was delivered.
    pub rejected: Vec<Rejected>,
    /// Records delivered only in part (cut to a transport's size limit,
    /// e.g. a UDP datagram). They count as delivered, and the whole record
    /// also goes to the dead-letter file so that nothing is lost.
    pub truncated: Vec<Rejected>,
}

/// A record refused for its content.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// Position in the batch.
    pub index: usize,
    /// Why, as the destination said it.
    pub reason: String,
}

impl Rejected {
    /// A line-oriented sink's refusal of the record at `index`, whose
    /// payload holds a line break ([`Record::has_line_break`]): written, it
    /// would read as two records.
    pub fn line_break(index: usize) -> Self {
        Self {
            index,
            reason: "payload contains a line break; it would forge a second record".into(),
        }
    }
}
