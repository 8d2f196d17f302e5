//! Log lines: the tracing subscriber, and the console it shares with the
//! progress bars of backfills.

use crate::config::{LogFormat, TelemetryConfig};

/// Installs the global tracing subscriber on stderr and returns the
/// console it writes through. `RUST_LOG` overrides the configured level.
/// Colours only when stderr is a terminal (and `NO_COLOR` is unset), so
/// journald, files and pipes get plain text. Later calls install nothing
/// and return the first call's console.
pub fn init_logging(config: &TelemetryConfig) -> Console {
    static INSTALLED: std::sync::OnceLock<Console> = std::sync::OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            use std::io::IsTerminal as _;
            let terminal = std::io::stderr().is_terminal();
            let console = if shows_bars(terminal, config.log_format) {
                Console::with_bars(indicatif::ProgressDrawTarget::stderr())
            } else {
                Console::default()
            };
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log_level));
            let builder = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(uses_colour(terminal, std::env::var_os("NO_COLOR")))
                .with_writer(console.clone());
            let _ = match config.log_format {
                LogFormat::Human => builder.try_init(),
                LogFormat::Json => builder.json().flatten_event(true).try_init(),
            };
            console
        })
        .clone()
}

/// Whether log lines carry ANSI colours: only on a terminal, and not when
/// `NO_COLOR` is set to anything but the empty string (no-color.org).
pub fn uses_colour(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Whether a backfill shows as progress bars rather than periodic log
/// lines: only for someone watching a terminal with human-readable logs.
/// Logs going to journald, a file or a pipe, and JSON logs (read by
/// machines, which want the `read` and `total` fields), get the lines.
pub fn shows_bars(stderr_is_terminal: bool, format: LogFormat) -> bool {
    stderr_is_terminal && format == LogFormat::Human
}

/// Standard error as the daemon shares it: log lines, and the progress bars
/// of backfills when [`shows_bars`] says so. Log lines are written with the
/// bars lifted, so neither garbles the other. Cheap to clone.
#[derive(Clone, Default)]
pub struct Console {
    bars: Option<indicatif::MultiProgress>,
}

impl Console {
    /// A console that draws progress bars to `target`.
    pub fn with_bars(target: indicatif::ProgressDrawTarget) -> Self {
        Self {
            bars: Some(indicatif::MultiProgress::with_draw_target(target)),
        }
    }

    /// A new bar of `length` below the others, or `None` when this console
    /// shows no bars.
    pub fn add_bar(&self, length: u64) -> Option<indicatif::ProgressBar> {
        let bars = self.bars.as_ref()?;
        Some(bars.add(indicatif::ProgressBar::new(length)))
    }

    /// Takes `bar` off the screen for good.
    pub fn remove_bar(&self, bar: &indicatif::ProgressBar) {
        bar.finish_and_clear();
        if let Some(bars) = &self.bars {
            bars.remove(bar);
        }
    }
}

/// What the log subscriber writes one formatted event with.
pub struct ConsoleWriter<'a>(&'a Console);

impl std::io::Write for ConsoleWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let write = || std::io::stderr().lock().write_all(buf);
        match &self.0.bars {
            Some(bars) => bars.suspend(write)?,
            None => write()?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Console {
    type Writer = ConsoleWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        ConsoleWriter(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(uses_colour(true, None));
        assert!(uses_colour(true, Some("".into())));
        assert!(!uses_colour(true, Some("1".into())));
        assert!(!uses_colour(false, None));
    }

    #[test]
    fn bars_only_on_a_terminal_with_human_logs() {
        assert!(shows_bars(true, LogFormat::Human));
        assert!(!shows_bars(false, LogFormat::Human));
        assert!(!shows_bars(true, LogFormat::Json));
        assert!(!shows_bars(false, LogFormat::Json));
        assert!(Console::default().add_bar(10).is_none());
        let console = Console::with_bars(indicatif::ProgressDrawTarget::hidden());
        assert!(console.add_bar(10).is_some());
    }
}
