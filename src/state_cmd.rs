//! `auditfwd state show|reset|set-since`: inspect and move cursors.
//!
//! `show` reads without locking (safe while the daemon runs); `reset` and
//! `set-since` take the source's lock, so they refuse to run while a daemon
//! holds it.

use std::fmt::Write as _;
use std::fs;

use chrono::{DateTime, Utc};

use crate::config::{Config, SourceConfig};
use crate::cursor::CursorState;
use crate::cursor::store::{self, FileStore, StateStore, StoreError};
use crate::deadletter::DeadLetterFile;

/// Errors of the state commands.
#[derive(Debug, thiserror::Error)]
pub enum StateCmdError {
    /// No source of that name.
    #[error("no source is named `{name}`; configured: {known}")]
    UnknownSource {
        /// The name given.
        name: String,
        /// Configured names.
        known: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn select<'a>(
    config: &'a Config,
    source: Option<&str>,
) -> Result<Vec<&'a SourceConfig>, StateCmdError> {
    match source {
        None => Ok(config.sources.iter().collect()),
        Some(name) => config
            .sources
            .iter()
            .find(|s| s.name == name)
            .map(|s| vec![s])
            .ok_or_else(|| StateCmdError::UnknownSource {
                name: name.to_string(),
                known: config
                    .sources
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
    }
}

fn time(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| auditfwd_sink::format_millis(&t))
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// A human summary of every selected source's cursor.
pub fn show(config: &Config, source: Option<&str>) -> Result<String, StateCmdError> {
    let mut out = String::new();
    for s in select(config, source)? {
        let dead_path = DeadLetterFile::path(&config.state.dead_letter_dir(), &s.name);
        let dead_lines = fs::read_to_string(&dead_path)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        writeln!(out, "source {}", s.name).ok();
        match store::peek(&config.state.dir, &s.name)? {
            None => {
                writeln!(
                    out,
                    "  no state yet: the first run starts at start_at = {:?}",
                    s.start_at
                )
                .ok();
            }
            Some(state) => {
                // As the next run loads it: ids outside the window forgotten.
                let lookback_ms = s.lookback.as_millis() as i64;
                let state = crate::cursor::Cursor::new(state, s.lookback)
                    .state()
                    .clone();
                let lag = Utc::now().timestamp_millis() - state.watermark_ms;
                writeln!(out, "  scope starts   {}", time(state.floor_ms)).ok();
                writeln!(
                    out,
                    "  watermark      {} ({:.1}s ago)",
                    time(state.watermark_ms),
                    lag as f64 / 1000.0
                )
                .ok();
                if let Some(head) = state.head_ms {
                    writeln!(out, "  newest event   {}", time(head)).ok();
                }
                if let Some(swept) = state.swept_ms {
                    writeln!(out, "  last sweep     started {}", time(swept)).ok();
                }
                match state.pass {
                    Some(pass) => writeln!(
                        out,
                        "  pass underway  {} of events created from {}, read up to offset {}; a restart resumes it",
                        match pass.kind {
                            crate::cursor::PassKind::Sweep => "sweep",
                            crate::cursor::PassKind::Head => "head pass",
                        },
                        time(pass.since_ms),
                        pass.offset
                    )
                    .ok(),
                    None => writeln!(
                        out,
                        "  next window    events created from {}",
                        time(state.window_start(lookback_ms))
                    )
                    .ok(),
                };
                writeln!(out, "  dedup ids      {}", state.seen.len()).ok();
                if !state.strays.is_empty() {
                    writeln!(
                        out,
                        "  out of window  {} ids of events dated far outside every window",
                        state.strays.len()
                    )
                    .ok();
                }
                writeln!(out, "  delivered      {}", state.delivered_total).ok();
                writeln!(out, "  dead-lettered  {}", state.dead_lettered_total).ok();
            }
        }
        writeln!(
            out,
            "  state file     {}",
            FileStore::snapshot_path(&config.state.dir, &s.name).display()
        )
        .ok();
        writeln!(
            out,
            "  dead letters   {} ({} lines)",
            dead_path.display(),
            dead_lines
        )
        .ok();
    }
    Ok(out)
}

/// Deletes a source's cursor; the next run starts at `start_at`.
pub fn reset(config: &Config, source: &str) -> Result<String, StateCmdError> {
    let s = select(config, Some(source))?[0];
    let mut store = FileStore::open(&config.state.dir, &s.name)?;
    let had = store.load()?.is_some();
    // An empty snapshot would start at the epoch; remove the files instead
    // so the next start resolves start_at afresh.
    for path in [
        FileStore::snapshot_path(&config.state.dir, &s.name),
        config.state.dir.join(format!("{}.journal", s.name)),
    ] {
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(StoreError::Io {
                    path,
                    action: "remove",
                    source: e,
                }
                .into());
            }
        }
    }
    Ok(if had {
        format!(
            "source {}: cursor removed; the next run starts at start_at = {:?}",
            s.name, s.start_at
        )
    } else {
        format!("source {}: had no cursor", s.name)
    })
}

/// Moves a source's cursor to `since`: the next run delivers every event
/// created at or after it (again, if it was delivered before).
pub fn set_since(
    config: &Config,
    source: &str,
    since: DateTime<Utc>,
) -> Result<String, StateCmdError> {
    let s = select(config, Some(source))?[0];
    let mut store = FileStore::open(&config.state.dir, &s.name)?;
    let previous = store.load()?;
    store.snapshot(&CursorState::new(&s.name, since))?;
    let mut msg = format!(
        "source {}: the next run reads events created from {}",
        s.name,
        auditfwd_sink::format_millis(&since)
    );
    if let Some(p) = previous
        && p.watermark_ms > since.timestamp_millis()
    {
        msg.push_str("; events after that which were already delivered will be delivered again (downstream can dedupe on id)");
    }
    Ok(msg)
}
