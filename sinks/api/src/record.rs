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
        // 32 bytes at a time without an early exit, which the compiler
        // turns into vector compares (every line-oriented sink scans every
        // payload: 2% of a backfill's CPU byte by byte).
        let mut chunks = self.payload.chunks_exact(32);
        let tail = chunks.remainder();
        chunks.any(|c| {
            c.iter()
                .fold(false, |seen, b| seen | (*b == b'\n') | (*b == b'\r'))
        }) || tail.iter().any(|b| *b == b'\n' || *b == b'\r')
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(payload: Vec<u8>) -> Record {
        let now = chrono::Utc::now();
        Record {
            event: Arc::new(Event {
                source: "acme".into(),
                id: "a".into(),
                action: "USER_LOGIN".into(),
                entity_type: None,
                entity_id: None,
                user_id: None,
                details: serde_json::Value::Null,
                created_at: now,
                received_at: now,
                id_reused: false,
                user: None,
                raw: Arc::from("{}"),
            }),
            payload: Bytes::from(payload),
            severity: Severity::Informational,
            format: "json",
        }
    }

    /// A CR or LF anywhere, in the vectorised part or the tail, is seen.
    #[test]
    fn a_line_break_is_found_wherever_it_is() {
        for len in 0..100 {
            assert!(!record(vec![b'x'; len]).has_line_break(), "len {len}");
            for at in 0..len {
                for byte in [b'\n', b'\r'] {
                    let mut payload = vec![b'x'; len];
                    payload[at] = byte;
                    assert!(record(payload).has_line_break(), "len {len} at {at}");
                }
            }
        }
    }
}
