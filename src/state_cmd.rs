//! `auditfwd state show|reset|set-since`: inspect and move cursors.
//!
//! `show` reads without locking (safe while the daemon runs): one line per
//! source, furthest behind first, then the details of any source whose
//! state a start would refuse; `--source` shows one source in detail.
//! `reset` and `set-since` take the state directory's lock, so they refuse
//! to run while a daemon holds it. In fleet mode (`[fleet]`) the same
//! commands work on the state topic ([`crate::fleet::admin`]); `reset` and
//! `set-since` refuse while any replica is in the group.

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
    /// Fleet mode: the group has running replicas, or can not be read.
    #[cfg(feature = "kafka")]
    #[error(transparent)]
    Fleet(#[from] crate::fleet::admin::AdminError),
    /// `show` found state the daemon can not load (the report says which).
    #[error(
        "{report}\n{count} source(s) have state a start would refuse (see above); `auditfwd state reset` or `state set-since` replaces it and keeps the unreadable files as *.corrupt-<time>"
    )]
    Unreadable {
        /// The whole `show` report.
        report: String,
        /// How many sources.
        count: usize,
    },
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

/// Where the cursors are read from: `[state] dir`, or the fleet's state
/// topic.
enum Reader {
    Files,
    #[cfg(feature = "kafka")]
    Topic(std::sync::Arc<crate::fleet::store::StateTopic>),
}

impl Reader {
    fn new(config: &Config) -> Result<Self, StateCmdError> {
        #[cfg(feature = "kafka")]
        if let Some(fleet) = &config.fleet {
            return Ok(Reader::Topic(crate::fleet::admin::connect(fleet)?));
        }
        let _ = config;
        Ok(Reader::Files)
    }
}

fn time(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| auditfwd_sink::format_millis(&t))
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// What `show` prints: without `source`, one summary line per source
/// (furthest behind first) and the details of every source a start would
/// refuse; with it, that source in detail.
pub fn show(config: &Config, source: Option<&str>) -> Result<String, StateCmdError> {
    let reader = Reader::new(config)?;
    let mut out = String::new();
    let mut unreadable = 0;
    match source {
        Some(_) => {
            for s in select(config, source)? {
                let peeked = peek_source(config, &reader, s);
                unreadable += usize::from(detail(config, s, peeked, &mut out));
            }
        }
        None => {
            let peeked: Vec<_> = config
                .sources
                .iter()
                .map(|s| (s, peek_source(config, &reader, s)))
                .collect();
            summary(config, &peeked, &mut out);
            for (s, peeked) in peeked {
                if peeked.is_unreadable() {
                    out.push('\n');
                    unreadable += usize::from(detail(config, s, peeked, &mut out));
                }
            }
        }
    }
    if unreadable > 0 {
        return Err(StateCmdError::Unreadable {
            report: out,
            count: unreadable,
        });
    }
    Ok(out)
}

/// A source's state as read from disk, or why it could not be read.
struct SourcePeek {
    peeked: store::Peeked,
    /// The snapshot could not be read at all.
    error: Option<StoreError>,
    dead_path: std::path::PathBuf,
    dead_lines: usize,
}

impl SourcePeek {
    /// A start would refuse this state.
    fn is_unreadable(&self) -> bool {
        self.error.is_some() || !self.peeked.bad_lines.is_empty()
    }
}

fn peek_source(config: &Config, reader: &Reader, s: &SourceConfig) -> SourcePeek {
    let dead_path = DeadLetterFile::path(&config.state.dead_letter_dir(), &s.name);
    let dead_lines = fs::read_to_string(&dead_path)
        .map(|t| t.lines().count())
        .unwrap_or(0);
    let inspected = match reader {
        Reader::Files => store::inspect(&config.state.dir, &s.name),
        #[cfg(feature = "kafka")]
        Reader::Topic(topic) => {
            crate::fleet::admin::peek(topic, &s.name).map(|state| store::Peeked {
                state,
                bad_lines: Vec::new(),
                torn_tail: false,
            })
        }
    };
    let (peeked, error) = match inspected {
        Ok(peeked) => (peeked, None),
        Err(error) => (
            store::Peeked {
                state: None,
                bad_lines: Vec::new(),
                torn_tail: false,
            },
            Some(error),
        ),
    };
    SourcePeek {
        peeked,
        error,
        dead_path,
        dead_lines,
    }
}

/// `1.5s`, `4m05s`, `3h20m`, `2d07h`.
fn short_duration(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    match secs {
        _ if ms < 60_000 => format!("{:.1}s", ms.max(0) as f64 / 1000.0),
        _ if secs < 3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ if secs < 86_400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// One line per source, furthest behind first (unreadable and new sources
/// on top), with a count of each kind above.
fn summary(config: &Config, sources: &[(&SourceConfig, SourcePeek)], out: &mut String) {
    struct Row {
        /// Sort key: unreadable, then new, then by lag.
        rank: (u8, i64),
        cells: [String; 7],
    }
    let now = Utc::now().timestamp_millis();
    let mut rows = Vec::with_capacity(sources.len());
    let (mut bad, mut new, mut passes) = (0, 0, 0);
    for (s, p) in sources {
        let mut notes = Vec::new();
        if p.is_unreadable() {
            bad += 1;
            notes.push("UNREADABLE: a start refuses it (details below)".to_string());
        }
        if p.peeked.torn_tail {
            notes.push("torn journal tail (dropped at the next start)".to_string());
        }
        let dead = if p.dead_lines > 0 {
            p.dead_lines.to_string()
        } else {
            "0".to_string()
        };
        let row = match (&p.peeked.state, p.is_unreadable()) {
            (Some(state), _) => {
                let state = crate::cursor::Cursor::new(state.clone(), s.lookback)
                    .state()
                    .clone();
                let lag = now - state.watermark_ms;
                let pass = match state.pass {
                    Some(pass) => {
                        passes += 1;
                        format!(
                            "{} from {} +{}",
                            match pass.kind {
                                crate::cursor::PassKind::Sweep => "sweep",
                                crate::cursor::PassKind::Head => "head",
                            },
                            time(pass.since_ms),
                            pass.offset
                        )
                    }
                    None => "-".to_string(),
                };
                Row {
                    rank: (u8::from(!p.is_unreadable()), -lag),
                    cells: [
                        s.name.clone(),
                        short_duration(lag),
                        time(state.watermark_ms),
                        state.delivered_total.to_string(),
                        dead,
                        pass,
                        notes.join("; "),
                    ],
                }
            }
            (None, unreadable) => {
                if !unreadable {
                    new += 1;
                    notes.push(format!(
                        "no state yet: starts at start_at = {:?}",
                        s.start_at
                    ));
                }
                Row {
                    rank: (u8::from(!unreadable), i64::MIN),
                    cells: [
                        s.name.clone(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        dead,
                        "-".into(),
                        notes.join("; "),
                    ],
                }
            }
        };
        rows.push(row);
    }
    rows.sort_by(|a, b| {
        a.rank
            .cmp(&b.rank)
            .then_with(|| a.cells[0].cmp(&b.cells[0]))
    });
    writeln!(
        out,
        "{} sources in {}: {} unreadable, {} without state, {} with a pass underway",
        sources.len(),
        match &config.fleet {
            Some(fleet) => format!("fleet state topic {}", fleet.state_topic),
            None => config.state.dir.display().to_string(),
        },
        bad,
        new,
        passes
    )
    .ok();
    let header = [
        "SOURCE",
        "LAG",
        "WATERMARK",
        "DELIVERED",
        "DEAD",
        "PASS",
        "NOTE",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(&row.cells) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: [&str; 7]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i == 6 {
                text.push_str(cell);
            } else if matches!(i, 1 | 3 | 4) {
                write!(text, "{cell:>w$}  ").ok();
            } else {
                write!(text, "{cell:<w$}  ").ok();
            }
        }
        writeln!(out, "{}", text.trim_end()).ok();
    };
    line(header);
    for row in &rows {
        line(row.cells.each_ref().map(String::as_str));
    }
}

/// The detailed view of one source; returns whether a start would refuse
/// its state.
fn detail(config: &Config, s: &SourceConfig, p: SourcePeek, out: &mut String) -> bool {
    let unreadable = p.is_unreadable();
    let SourcePeek {
        peeked,
        error,
        dead_path,
        dead_lines,
    } = p;
    writeln!(out, "source {}", s.name).ok();
    let snapshot_unreadable = error.is_some();
    if let Some(error) = error {
        writeln!(out, "  UNREADABLE     {error}").ok();
    }
    if !peeked.bad_lines.is_empty() {
        let shown: Vec<String> = peeked
            .bad_lines
            .iter()
            .take(10)
            .map(usize::to_string)
            .collect();
        writeln!(
                out,
                "  UNREADABLE     journal line(s) {}{} are not checkpoints; a start refuses this journal",
                shown.join(", "),
                if peeked.bad_lines.len() > 10 { ", …" } else { "" }
            )
            .ok();
    }
    if peeked.torn_tail {
        writeln!(
                out,
                "  torn journal   the last line is incomplete (an interrupted commit); the next start drops it"
            )
            .ok();
    }
    match peeked.state {
        None if snapshot_unreadable => {}
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
    unreadable
}

/// Deletes a source's cursor; the next run starts at `start_at`.
pub fn reset(config: &Config, source: &str) -> Result<String, StateCmdError> {
    let s = select(config, Some(source))?[0];
    #[cfg(feature = "kafka")]
    if let Some(fleet) = &config.fleet {
        // A new epoch's claim, not tombstones: a replica that still runs
        // the source can not write over it.
        crate::fleet::admin::ensure_stopped(fleet)?;
        let topic = crate::fleet::admin::connect(fleet)?;
        let start = s.start_at.resolve(chrono::Utc::now());
        let previous =
            crate::fleet::admin::replace(&topic, &s.name, &CursorState::new(&s.name, start))?;
        return Ok(format!(
            "source {}: cursor {} on topic {}; its next owner starts at start_at = {:?} ({})",
            s.name,
            if previous.is_some() {
                "reset"
            } else {
                "created"
            },
            fleet.state_topic,
            s.start_at,
            auditfwd_sink::format_millis(&start)
        ));
    }
    let mut store = FileStore::open(&config.state.dir, &s.name)?;
    let had = match store.load() {
        Ok(state) => state.is_some(),
        // Unreadable state is what a reset is for: keep a copy, go on.
        Err(StoreError::Corrupt { .. }) => {
            let kept = store::set_aside(&config.state.dir, &s.name)?;
            return Ok(format!(
                "source {}: unreadable state moved aside ({}); the next run starts at start_at = {:?}",
                s.name,
                paths(&kept),
                s.start_at
            ));
        }
        Err(error) => return Err(error.into()),
    };
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
    #[cfg(feature = "kafka")]
    if let Some(fleet) = &config.fleet {
        crate::fleet::admin::ensure_stopped(fleet)?;
        let topic = crate::fleet::admin::connect(fleet)?;
        let previous =
            crate::fleet::admin::replace(&topic, &s.name, &CursorState::new(&s.name, since))?;
        return Ok(since_message(s, since, previous));
    }
    let mut store = FileStore::open(&config.state.dir, &s.name)?;
    let (previous, kept) = match store.load() {
        Ok(previous) => (previous, Vec::new()),
        Err(StoreError::Corrupt { .. }) => (None, store::set_aside(&config.state.dir, &s.name)?),
        Err(error) => return Err(error.into()),
    };
    store.snapshot(&CursorState::new(&s.name, since))?;
    let mut msg = since_message(s, since, previous);
    if !kept.is_empty() {
        write!(
            msg,
            "; the unreadable state was moved aside ({})",
            paths(&kept)
        )
        .ok();
    }
    Ok(msg)
}

/// What `set-since` says it did.
fn since_message(s: &SourceConfig, since: DateTime<Utc>, previous: Option<CursorState>) -> String {
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
    msg
}

fn paths(paths: &[std::path::PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
