//! Progress of a long pass (a backfill): how much of the window's
//! `pagination.total` has been read, at what rate, and when it will be done.
//!
//! The poller feeds it one page at a time; it answers with a report when
//! one is due (every [`Progress::EVERY`], and only for passes big enough to
//! need one), so the daemon's log shows a backfill moving instead of going
//! quiet for an hour. Time is passed in, so the logic is tested without
//! sleeping.
//!
//! On a terminal ([`crate::logging::shows_bars`]) a [`ProgressView`]
//! draws the same report as a bar per source instead of the periodic line.

use std::time::{Duration, Instant};

use crate::logging::Console;

/// A pass whose listing holds at least this many pages is a backfill.
const MIN_PAGES: u64 = 10;

/// One progress line.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Events read so far in this pass.
    pub read: u64,
    /// Size of the listing as the API reports it now (it grows while live
    /// events arrive).
    pub total: u64,
    /// Events read per second since the pass began.
    pub rate: f64,
    /// Time left at that rate, when the rate is known.
    pub eta: Option<Duration>,
}

impl Report {
    /// Share of the listing read, 0–100.
    pub fn percent(&self) -> f64 {
        if self.total == 0 {
            100.0
        } else {
            (self.read.min(self.total) as f64 * 100.0) / self.total as f64
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "read {} of {} events ({:.1}%), {:.0} events/s",
            self.read,
            self.total,
            self.percent(),
            self.rate
        )?;
        if let Some(eta) = self.eta {
            write!(
                f,
                ", about {} left",
                humantime::format_duration(Duration::from_secs(eta.as_secs()))
            )?;
        }
        Ok(())
    }
}

/// Tracks one pass.
#[derive(Debug)]
pub struct Progress {
    started: Instant,
    last_report: Instant,
    read: u64,
    total: u64,
    backfill: bool,
}

impl Progress {
    /// How often a backfill reports.
    pub const EVERY: Duration = Duration::from_secs(15);

    /// A pass starting at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            started: now,
            last_report: now,
            read: 0,
            total: 0,
            backfill: false,
        }
    }

    /// Whether this pass is big enough to be reported.
    pub fn is_backfill(&self) -> bool {
        self.backfill
    }

    /// Records a page of `returned` events from a listing of `total` (when
    /// the API says) read with page size `limit`; returns a report when one
    /// is due.
    pub fn page(
        &mut self,
        now: Instant,
        returned: u64,
        total: Option<u64>,
        limit: u64,
    ) -> Option<Report> {
        self.read += returned;
        if let Some(total) = total {
            self.total = total;
            if total >= MIN_PAGES.saturating_mul(limit.max(1)) {
                self.backfill = true;
            }
        }
        if !self.backfill || now.duration_since(self.last_report) < Self::EVERY {
            return None;
        }
        self.last_report = now;
        Some(self.report(now))
    }

    /// The state of the pass at `now`.
    pub fn report(&self, now: Instant) -> Report {
        let elapsed = now.duration_since(self.started).as_secs_f64();
        let rate = if elapsed > 0.0 {
            self.read as f64 / elapsed
        } else {
            0.0
        };
        let left = self.total.saturating_sub(self.read);
        let eta = (rate > 0.0).then(|| Duration::from_secs_f64(left as f64 / rate));
        Report {
            read: self.read,
            total: self.total.max(self.read),
            rate,
            eta,
        }
    }

    /// Time since the pass began.
    pub fn elapsed(&self, now: Instant) -> Duration {
        now.duration_since(self.started)
    }
}

/// Where one source's backfill progress goes: a bar on the console when it
/// shows bars, else the periodic log line. The bar appears once a pass is
/// known to be a backfill and goes away when the view is finished or
/// dropped (the pass ended, or stopped on shutdown or an error).
pub struct ProgressView {
    console: Console,
    source: String,
    bar: Option<indicatif::ProgressBar>,
}

impl ProgressView {
    /// How long a pass runs before the bar shows a rate and time left.
    const SETTLE: Duration = Duration::from_secs(3);

    /// A view of `source`'s passes on `console`.
    pub fn new(console: Console, source: &str) -> Self {
        Self {
            console,
            source: source.to_string(),
            bar: None,
        }
    }

    /// Shows `progress` after a page; returns the report to log, which is
    /// `due` unless a bar shows it.
    pub fn page(
        &mut self,
        progress: &Progress,
        now: Instant,
        due: Option<Report>,
    ) -> Option<Report> {
        if !progress.is_backfill() {
            return due;
        }
        if self.bar.is_none() {
            self.bar = self.console.add_bar(0).inspect(|bar| {
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {msg}")
                        .expect("a valid template")
                        .progress_chars("=> "),
                );
                bar.set_prefix(self.source.clone());
            });
        }
        let Some(bar) = &self.bar else {
            return due;
        };
        let report = progress.report(now);
        bar.set_length(report.total);
        bar.set_position(report.read);
        // A rate over the first page or two means nothing yet.
        bar.set_message(if progress.elapsed(now) < Self::SETTLE {
            format!("read {} of {} events", report.read, report.total)
        } else {
            report.to_string()
        });
        None
    }

    /// Whether a bar is on the console.
    pub fn shows_bar(&self) -> bool {
        self.bar.is_some()
    }

    /// Takes the bar off the console.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            self.console.remove_bar(&bar);
        }
    }
}

impl Drop for ProgressView {
    fn drop(&mut self) {
        self.finish();
    }
}

/// One pass's progress and where it goes: fed a page at a time, it logs
/// (or draws) each report as it falls due, and a backfill's summary at the
/// end.
pub struct PassReport {
    source: String,
    progress: Progress,
    view: ProgressView,
}

impl PassReport {
    /// The progress of a pass of `source` starting now, shown on `console`.
    pub fn new(console: Console, source: &str) -> Self {
        Self {
            source: source.to_string(),
            progress: Progress::new(Instant::now()),
            view: ProgressView::new(console, source),
        }
    }

    /// Counts a page of `returned` events (asked with `limit`) and shows
    /// the report if one is due.
    pub fn page(&mut self, returned: u64, total: Option<u64>, limit: u64) {
        let now = Instant::now();
        let due = self.progress.page(now, returned, total, limit);
        if let Some(report) = self.view.page(&self.progress, now, due) {
            tracing::info!(source = %self.source, read = report.read, total = report.total, "backfill: {report}");
        }
    }

    /// The pass is over: takes the bar away, and sums a backfill up.
    pub fn finish(mut self) {
        self.view.finish();
        if self.progress.is_backfill() {
            let report = self.progress.report(Instant::now());
            tracing::info!(
                source = %self.source,
                "backfill pass done: read {} events in {} ({:.0} events/s)",
                report.read,
                humantime::format_duration(Duration::from_secs(self.progress.elapsed(Instant::now()).as_secs())),
                report.rate
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_passes_stay_quiet() {
        let t0 = Instant::now();
        let mut p = Progress::new(t0);
        // 9 pages of 100: a normal poll, not a backfill.
        for i in 1..=9u64 {
            let at = t0 + Duration::from_secs(20 * i);
            assert_eq!(p.page(at, 100, Some(900), 100), None);
        }
        assert!(!p.is_backfill());
    }

    #[test]
    fn a_backfill_reports_every_interval_with_rate_and_eta() {
        let t0 = Instant::now();
        let mut p = Progress::new(t0);
        assert_eq!(
            p.page(t0 + Duration::from_secs(1), 100, Some(10_000), 100),
            None
        );
        assert!(p.is_backfill());
        // Not yet due.
        assert_eq!(
            p.page(t0 + Duration::from_secs(14), 100, Some(10_000), 100),
            None
        );
        let report = p
            .page(t0 + Duration::from_secs(20), 100, Some(10_000), 100)
            .expect("due after 15 s");
        assert_eq!(report.read, 300);
        assert_eq!(report.total, 10_000);
        assert!((report.rate - 15.0).abs() < 1e-9);
        // 9,700 left at 15/s.
        assert_eq!(report.eta.map(|d| d.as_secs()), Some(646));
        assert!((report.percent() - 3.0).abs() < 1e-9);
        let line = report.to_string();
        assert!(line.contains("read 300 of 10000 events (3.0%)"), "{line}");
        assert!(line.contains("15 events/s"), "{line}");
        assert!(line.contains("10m 46s left"), "{line}");
        // The next one waits another interval from the last report.
        assert_eq!(
            p.page(t0 + Duration::from_secs(30), 100, Some(10_000), 100),
            None
        );
        assert!(
            p.page(t0 + Duration::from_secs(35), 100, Some(10_000), 100)
                .is_some()
        );
    }

    #[test]
    fn a_growing_listing_and_an_overrun_never_exceed_100_percent() {
        let t0 = Instant::now();
        let mut p = Progress::new(t0);
        p.page(t0, 1000, Some(1000), 100);
        // Live inserts shifted pages: more read than the first total said.
        let r = p
            .page(t0 + Duration::from_secs(16), 100, Some(1050), 100)
            .expect("due");
        assert_eq!(r.read, 1100);
        assert_eq!(r.total, 1100);
        assert_eq!(r.percent(), 100.0);
        assert_eq!(r.eta, Some(Duration::ZERO));
    }

    #[test]
    fn without_a_total_there_is_no_backfill_to_report() {
        let t0 = Instant::now();
        let mut p = Progress::new(t0);
        for i in 1..=50u64 {
            assert_eq!(
                p.page(t0 + Duration::from_secs(20 * i), 100, None, 100),
                None
            );
        }
    }

    /// A backfill on `console`: 20 pages of 100 from a listing of 2000, the
    /// last one 30 s in (a log line is due).
    fn backfill(view: &mut ProgressView) -> Vec<Option<Report>> {
        let t0 = Instant::now();
        let mut p = Progress::new(t0);
        (1..=20u64)
            .map(|i| {
                let now = t0 + Duration::from_millis(1500 * i);
                let due = p.page(now, 100, Some(2000), 100);
                view.page(&p, now, due)
            })
            .collect()
    }

    #[test]
    fn without_bars_the_log_lines_stay() {
        let mut view = ProgressView::new(Console::default(), "acme");
        let logged: Vec<Report> = backfill(&mut view).into_iter().flatten().collect();
        assert!(!view.shows_bar());
        assert_eq!(logged.len(), 2, "{logged:?}");
        assert_eq!(logged[0].read, 1000);
    }

    #[test]
    fn a_bar_replaces_the_log_lines_and_goes_away() {
        let console = Console::with_bars(indicatif::ProgressDrawTarget::hidden());
        let mut view = ProgressView::new(console, "acme");
        let logged = backfill(&mut view);
        assert!(logged.iter().all(Option::is_none), "{logged:?}");
        assert!(view.shows_bar());
        let bar = view.bar.clone().unwrap();
        assert_eq!((bar.position(), bar.length()), (2000, Some(2000)));
        assert_eq!(bar.prefix(), "acme");
        assert!(
            bar.message()
                .starts_with("read 2000 of 2000 events (100.0%)")
        );
        view.finish();
        assert!(!view.shows_bar());
        assert!(bar.is_finished());
    }

    #[test]
    fn a_bar_shows_a_rate_only_once_it_means_something() {
        let console = Console::with_bars(indicatif::ProgressDrawTarget::hidden());
        let mut view = ProgressView::new(console, "acme");
        let t0 = Instant::now();
        let mut p = Progress::new(t0);
        let now = t0 + Duration::from_millis(10);
        let due = p.page(now, 100, Some(2000), 100);
        view.page(&p, now, due);
        let bar = view.bar.clone().unwrap();
        assert_eq!(bar.message(), "read 100 of 2000 events");
        let now = t0 + Duration::from_secs(4);
        let due = p.page(now, 100, Some(2000), 100);
        view.page(&p, now, due);
        assert_eq!(
            bar.message(),
            "read 200 of 2000 events (10.0%), 50 events/s, about 36s left"
        );
    }

    #[test]
    fn a_small_pass_gets_no_bar() {
        let console = Console::with_bars(indicatif::ProgressDrawTarget::hidden());
        let mut view = ProgressView::new(console, "acme");
        let t0 = Instant::now();
        let mut p = Progress::new(t0);
        let due = p.page(t0 + Duration::from_secs(20), 100, Some(500), 100);
        assert_eq!(view.page(&p, t0, due), None);
        assert!(!view.shows_bar());
    }
}
