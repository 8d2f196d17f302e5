//! The dead-letter file: events that can not be forwarded (unparseable,
//! unencodable, refused by a sink for their content), each with the reason,
//! so that nothing disappears. One JSON object per line in
//! `{dead_letter_dir}/{source}.jsonl`, created `0600`, fsynced before the
//! cursor moves past the events it holds.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;

/// One dead letter.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The event id, when readable.
    pub id: Option<String>,
    /// The sink that refused it, if a sink did.
    pub sink: Option<String>,
    /// Why it could not be forwarded.
    pub reason: String,
    /// The event as received from the API.
    pub raw: Arc<str>,
}

#[derive(Serialize)]
struct Line<'a> {
    at: String,
    source: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sink: Option<&'a str>,
    reason: &'a str,
    /// The received JSON, embedded as JSON when it parses, else as a string.
    event: EventText<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum EventText<'a> {
    Json(&'a RawValue),
    Text(&'a str),
}

/// Errors writing dead letters.
#[derive(Debug, thiserror::Error)]
#[error(
    "dead-letter file {path}: cannot {action}: {source}; check that the directory is writable and the disk is not full"
)]
pub struct DeadLetterError {
    path: PathBuf,
    action: &'static str,
    #[source]
    source: std::io::Error,
}

/// The dead-letter file of one source.
#[derive(Debug, Clone)]
pub struct DeadLetterFile {
    source: String,
    path: PathBuf,
    writing: Arc<Mutex<()>>,
}

impl DeadLetterFile {
    /// The dead-letter file of `source` in `dir` (opened for each write).
    pub fn new(dir: &Path, source: &str) -> Self {
        Self {
            source: source.to_string(),
            path: Self::path(dir, source),
            writing: Arc::default(),
        }
    }

    /// Where the dead letters of `source` go.
    pub fn path(dir: &Path, source: &str) -> PathBuf {
        dir.join(format!("{source}.jsonl"))
    }

    /// Appends `letters` and fsyncs; returns once they are durable.
    pub async fn write(&self, letters: Vec<DeadLetter>) -> Result<(), DeadLetterError> {
        if letters.is_empty() {
            return Ok(());
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.write_blocking(&letters, Utc::now()))
            .await
            .expect("dead-letter writer does not panic")
    }

    fn write_blocking(
        &self,
        letters: &[DeadLetter],
        now: DateTime<Utc>,
    ) -> Result<(), DeadLetterError> {
        let err = |action| {
            let path = self.path.clone();
            move |source| DeadLetterError {
                path,
                action,
                source,
            }
        };
        let mut buf = Vec::new();
        let at = auditfwd_sink::format_millis(&now);
        for letter in letters {
            let parsed: Option<&RawValue> = serde_json::from_str(&letter.raw).ok();
            let line = Line {
                at: at.clone(),
                source: &self.source,
                id: letter.id.as_deref(),
                sink: letter.sink.as_deref(),
                reason: &letter.reason,
                event: match parsed {
                    Some(json) if !letter.raw.contains(['\n', '\r']) => EventText::Json(json),
                    _ => EventText::Text(&letter.raw),
                },
            };
            serde_json::to_writer(&mut buf, &line).expect("dead letter serializes");
            buf.push(b'\n');
        }
        // One writer at a time; the file is open only while written, so
        // thousands of sources hold no dead-letter descriptors at rest.
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(dir) = self.path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(err("create the directory"))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(err("open"))?;
        file.write_all(&buf).map_err(err("write"))?;
        file.sync_data().map_err(err("fsync"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn writes_reason_and_event_0600() {
        let dir = tempfile::tempdir().unwrap();
        let dl = DeadLetterFile::new(dir.path(), "acme");
        dl.write(vec![
            DeadLetter {
                id: None,
                sink: None,
                reason: "`id` is missing".into(),
                raw: Arc::from(r#"{"action":"X"}"#),
            },
            DeadLetter {
                id: Some("a".into()),
                sink: Some("kafka".into()),
                reason: "too large".into(),
                raw: Arc::from("not json\n<13>forged"),
            },
        ])
        .await
        .unwrap();
        let path = DeadLetterFile::path(dir.path(), "acme");
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"]["action"], "X");
        assert_eq!(lines[0]["reason"], "`id` is missing");
        assert_eq!(lines[1]["event"], "not json\n<13>forged");
        assert_eq!(lines[1]["sink"], "kafka");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
