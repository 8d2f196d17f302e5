//! The running sources, keyed by name, and reloads that change them one
//! at a time.
//!
//! Each source's poller runs in its own task under its own
//! [`CancellationToken`], a child of shutdown, so one source can be stopped
//! the way shutdown stops all of them: it finishes the batch in flight,
//! saves its cursor and returns (a *drain*).
//!
//! A reload ([`Control::Reload`], sent on SIGHUP) reads the configuration
//! file and its `sources_dir` again. A configuration that does not validate
//! changes nothing: the error is logged, counted
//! (`auditfwd_config_reloads_total{outcome="refused"}`) and shown as the
//! health component `config` until a reload succeeds. Otherwise each source
//! is compared by its effective configuration ([`plan`]):
//!
//! - **added**: started (a new cursor at `start_at`, or the saved one);
//! - **removed**: drained, then taken off the health board;
//! - **changed**: drained, then started again with the new configuration
//!   (its cursor is kept);
//! - **unchanged**: not touched (a source stopped by an error is started
//!   again, since a reload is how an operator says "try now").
//!
//! Sinks, `[state]` and `[telemetry]` are built once at start: a reload that
//! changes them logs a warning naming what needs a restart. New sources go
//! to the running sinks by the running sinks' `sources` lists; a reload
//! that would start a source none of them takes is refused (its events
//! would be acknowledged by no sink).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::Instant;

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, SourceConfig};
use crate::fleet::{Ownership, partition_of};
use crate::pipeline::Control;
use crate::source::start::{self, SourceContext};
use crate::telemetry::{Metrics, OutcomeLabel, Status};

/// Why the forwarder stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// Every source stopped on an error; nothing is left to do.
    #[error("every source stopped on an error: {0}")]
    AllSourcesFailed(String),
}

/// What a reload changes, source by source (names in name order).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadPlan {
    /// In the new configuration only.
    pub added: Vec<String>,
    /// In the old configuration only.
    pub removed: Vec<String>,
    /// In both, with another effective configuration.
    pub changed: Vec<String>,
    /// In both, the same.
    pub unchanged: Vec<String>,
    /// Sections that changed but need a restart (`sink`, `state`,
    /// `telemetry`).
    pub needs_restart: Vec<&'static str>,
}

/// Compares two configurations source by source.
pub fn plan(old: &Config, new: &Config) -> ReloadPlan {
    let old_sources: BTreeMap<&str, &SourceConfig> =
        old.sources.iter().map(|s| (s.name.as_str(), s)).collect();
    let new_sources: BTreeMap<&str, &SourceConfig> =
        new.sources.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut plan = ReloadPlan {
        needs_restart: old.restart_only_changes(new),
        ..ReloadPlan::default()
    };
    for (name, source) in &new_sources {
        match old_sources.get(name) {
            None => plan.added.push(name.to_string()),
            Some(old) if old.fingerprint != source.fingerprint => {
                plan.changed.push(name.to_string())
            }
            Some(_) => plan.unchanged.push(name.to_string()),
        }
    }
    plan.removed = old_sources
        .keys()
        .filter(|name| !new_sources.contains_key(*name))
        .map(|name| name.to_string())
        .collect();
    plan
}

/// A configured source and its poller, if one runs.
struct Slot {
    config: SourceConfig,
    task: Option<Task>,
    /// A poller of this name is draining; this one starts when it is done.
    waiting_for: Option<u64>,
}

struct Task {
    id: u64,
    stop: CancellationToken,
}

/// A poller task ended.
struct Done {
    id: u64,
    name: String,
    result: Result<(), String>,
    /// Fleet mode: it stopped because another replica claimed the source.
    yielded: bool,
}

/// Everything a source needs to start, and the sources running.
pub(crate) struct Supervisor {
    /// The configuration the sources run on (its sinks, state and telemetry
    /// are those of the start).
    config: Config,
    /// What every source shares (its `[state]` is that of the start).
    sources: SourceContext,
    shutdown: CancellationToken,
    reload_from: Option<PathBuf>,
    slots: BTreeMap<String, Slot>,
    /// Pollers stopped by a reload and still finishing, by task id.
    draining: HashMap<u64, String>,
    next_id: u64,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    failures: Vec<String>,
    clean_exits: usize,
    /// Fleet mode: which sources are this replica's.
    fleet: Option<Fleet>,
}

/// Fleet mode: the ownership changes from the group, the partitions owned
/// and the revocations waiting for their sources to drain.
pub(crate) struct Fleet {
    /// Changes from [`crate::fleet::member::Member`].
    pub events: mpsc::UnboundedReceiver<Ownership>,
    /// The coordination topic's partition count.
    pub partitions: i32,
    owned: BTreeSet<i32>,
    revocations: Vec<Revocation>,
    /// How long a source handed to another replica waits before this one,
    /// if the group still says it owns it, claims it again.
    retry_after: std::time::Duration,
    retry_tx: mpsc::UnboundedSender<String>,
    retry_rx: mpsc::UnboundedReceiver<String>,
}

impl Fleet {
    /// Ownership from `events`, of a topic of `partitions`; nothing owned
    /// until the group assigns.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) fn new(
        events: mpsc::UnboundedReceiver<Ownership>,
        partitions: i32,
        retry_after: std::time::Duration,
    ) -> Self {
        let (retry_tx, retry_rx) = mpsc::unbounded_channel();
        Self {
            events,
            partitions,
            owned: BTreeSet::new(),
            revocations: Vec::new(),
            retry_after,
            retry_tx,
            retry_rx,
        }
    }
}

/// A revocation: the group waits until these pollers ended.
struct Revocation {
    tasks: HashSet<u64>,
    drained: std_mpsc::SyncSender<()>,
    since: Instant,
}

/// What [`Supervisor::new`] takes.
pub(crate) struct SupervisorParts {
    pub config: Config,
    /// What every source shares: the HTTP pool, the sinks, telemetry.
    pub sources: SourceContext,
    pub shutdown: CancellationToken,
    pub reload_from: Option<PathBuf>,
    /// Fleet mode: run only the sources of the partitions the group gives
    /// this replica.
    pub fleet: Option<Fleet>,
}

impl Supervisor {
    pub(crate) fn new(parts: SupervisorParts) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Self {
            config: parts.config,
            sources: parts.sources,
            shutdown: parts.shutdown,
            reload_from: parts.reload_from,
            slots: BTreeMap::new(),
            draining: HashMap::new(),
            next_id: 0,
            done_tx,
            done_rx,
            failures: Vec::new(),
            clean_exits: 0,
            fleet: parts.fleet,
        }
    }

    /// Starts every source, then follows reloads until every poller ended
    /// (shutdown, or each stopped on an error).
    pub(crate) async fn run(
        mut self,
        mut control: broadcast::Receiver<Control>,
    ) -> Result<(), SupervisorError> {
        for source in self.config.sources.clone() {
            let name = source.name.clone();
            self.slots.insert(
                name.clone(),
                Slot {
                    config: source,
                    task: None,
                    waiting_for: None,
                },
            );
            self.launch(&name);
        }
        let mut listening = true;
        let shutdown = self.shutdown.clone();
        while self.live() > 0 || (self.fleet.is_some() && !shutdown.is_cancelled()) {
            tokio::select! {
                done = self.done_rx.recv() => {
                    if let Some(done) = done {
                        self.finished(done);
                    }
                }
                signal = control.recv(), if listening => match signal {
                    Ok(Control::Reload) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        if !self.shutdown.is_cancelled() {
                            self.reload().await;
                        }
                    }
                    Ok(Control::Reopen) => {}
                    Err(broadcast::error::RecvError::Closed) => listening = false,
                },
                event = next_fleet_event(&mut self.fleet) => match event {
                    FleetEvent::Changed(change) => self.ownership(change),
                    FleetEvent::Retry(name) => {
                        let idle = self.slots.get(&name).is_some_and(|s| s.task.is_none() && s.waiting_for.is_none());
                        if idle && self.owns(&name) {
                            tracing::info!(source = %name, "fleet: the group still gives this replica a source it handed over; claiming it again");
                            self.launch(&name);
                        }
                    }
                    FleetEvent::Ended => {
                        tracing::error!("fleet: the group membership ended; draining every source");
                        for name in self.slots.keys().cloned().collect::<Vec<_>>() {
                            self.drain(&name);
                        }
                        self.fleet = None;
                    }
                },
                _ = shutdown.cancelled(), if self.fleet.is_some() && self.live() == 0 => {}
            }
        }
        if self.clean_exits == 0 && !self.failures.is_empty() {
            return Err(SupervisorError::AllSourcesFailed(self.failures.join("; ")));
        }
        Ok(())
    }

    /// Pollers running or draining.
    fn live(&self) -> usize {
        self.slots.values().filter(|s| s.task.is_some()).count() + self.draining.len()
    }

    /// Starts the poller of `name` (its slot's configuration), or waits for
    /// a draining poller of that name to finish first: they share the
    /// cursor and its lock.
    fn launch(&mut self, name: &str) {
        if self.shutdown.is_cancelled() {
            return;
        }
        let draining = self
            .draining
            .iter()
            .find(|(_, n)| n.as_str() == name)
            .map(|(id, _)| *id);
        if !self.owns(name) {
            return;
        }
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        if let Some(id) = draining {
            slot.waiting_for = Some(id);
            return;
        }
        let stop = self.shutdown.child_token();
        let source = slot.config.clone();
        self.sources
            .metrics
            .source_starts
            .get_or_create(&Metrics::source(name))
            .inc();
        if self.sources.stores.blocks() {
            // The cursor comes from the network (fleet mode): load it off
            // the runtime's threads, then run the poller in the same task.
            let id = self.next_id;
            self.next_id += 1;
            let context = self.sources.clone();
            let done = self.done_tx.clone();
            let name = name.to_string();
            let task_stop = stop.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let opened = {
                    let (source, context) = (source.clone(), context.clone());
                    tokio::task::spawn_blocking(move || start::open_cursor(&source, &context)).await
                };
                let mut yielded = false;
                let result = match opened {
                    Err(join) => Err(format!(
                        "source `{name}`: loading its cursor panicked: {join}"
                    )),
                    Ok(Err(error)) => Err(error.to_string()),
                    // Revoked while it loaded: the claim is made, the
                    // poller not started; the next owner claims after it.
                    Ok(Ok(_)) if task_stop.is_cancelled() => Ok(()),
                    Ok(Ok((store, state))) => {
                        context
                            .metrics
                            .fleet_claim_seconds
                            .observe(started.elapsed().as_secs_f64());
                        match start::poller_with(&source, &context, &task_stop, store, state) {
                            Err(error) => Err(error.to_string()),
                            Ok(poller) => match tokio::spawn(poller.run(task_stop)).await {
                                Ok(Ok(())) => Ok(()),
                                Ok(Err(crate::source::poller::SourceError::Yielded { .. })) => {
                                    yielded = true;
                                    Ok(())
                                }
                                Ok(Err(error)) => Err(error.to_string()),
                                Err(join) => {
                                    Err(format!("source `{name}`: its task panicked: {join}"))
                                }
                            },
                        }
                    }
                };
                if let Err(error) = &result {
                    tracing::error!(source = %name, error = %error, "source stopped on an error; other sources continue");
                    context
                        .health
                        .set(&format!("source:{name}"), Status::Failed(error.clone()));
                }
                let _ = done.send(Done {
                    id,
                    name,
                    result,
                    yielded,
                });
            });
            slot.task = Some(Task { id, stop });
            return;
        }
        match start::poller(&source, &self.sources, &stop) {
            Ok(poller) => {
                let id = self.next_id;
                self.next_id += 1;
                let poll = tokio::spawn(poller.run(stop.clone()));
                let done = self.done_tx.clone();
                let name = name.to_string();
                tokio::spawn(async move {
                    let result = match poll.await {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(error)) => Err(error.to_string()),
                        Err(join) => Err(format!("source `{name}`: its task panicked: {join}")),
                    };
                    let _ = done.send(Done {
                        id,
                        name,
                        result,
                        yielded: false,
                    });
                });
                slot.task = Some(Task { id, stop });
            }
            Err(error) => {
                tracing::error!(error = %error, "source can not start; other sources continue");
                self.sources
                    .health
                    .set(&format!("source:{name}"), Status::Failed(error.to_string()));
                self.failures.push(error.to_string());
            }
        }
    }

    fn finished(&mut self, done: Done) {
        if let Some(fleet) = &mut self.fleet {
            fleet.revocations.retain_mut(|r| {
                r.tasks.remove(&done.id);
                if r.tasks.is_empty() {
                    let seconds = r.since.elapsed().as_secs_f64();
                    self.sources.metrics.fleet_drain_seconds.observe(seconds);
                    tracing::info!(
                        seconds,
                        "fleet: revoked sources drained and checkpointed; handing them over"
                    );
                    let _ = r.drained.send(());
                }
                !r.tasks.is_empty()
            });
        }
        if done.yielded {
            // Another replica runs it now: off this one's health board.
            self.forget(&done.name);
        }
        if done.yielded
            && let Some(fleet) = &self.fleet
        {
            let (retry, name, after) =
                (fleet.retry_tx.clone(), done.name.clone(), fleet.retry_after);
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let _ = retry.send(name);
            });
        }
        match &done.result {
            Ok(()) => self.clean_exits += 1,
            Err(error) => self.failures.push(error.clone()),
        }
        let name = done.name;
        if self.draining.remove(&done.id).is_some() {
            let owned = self.owns(&name);
            match self.slots.get_mut(&name) {
                Some(slot) if slot.waiting_for == Some(done.id) => {
                    slot.waiting_for = None;
                    tracing::info!(source = %name, "source drained; starting it with its new configuration");
                    self.launch(&name);
                }
                // Handed to another replica: off this one's health board.
                Some(_) if !owned => self.forget(&name),
                Some(_) => {}
                None => {
                    tracing::info!(source = %name, "source removed: batch in flight delivered, cursor saved, stopped");
                    self.forget(&name);
                }
            }
        } else if let Some(slot) = self.slots.get_mut(&name)
            && slot.task.as_ref().is_some_and(|t| t.id == done.id)
        {
            slot.task = None;
        }
    }

    /// Whether this replica runs `name`: always, unless in fleet mode,
    /// where only the sources of the partitions it owns.
    fn owns(&self, name: &str) -> bool {
        self.fleet
            .as_ref()
            .is_none_or(|f| f.owned.contains(&partition_of(name, f.partitions)))
    }

    /// Applies a change of this replica's partitions: starts the sources
    /// assigned, drains those revoked and answers the revocation once they
    /// have checkpointed.
    fn ownership(&mut self, change: Ownership) {
        let Some(fleet) = &mut self.fleet else {
            return;
        };
        let partitions = fleet.partitions;
        let in_set =
            |set: &BTreeSet<i32>, name: &str| set.contains(&partition_of(name, partitions));
        let outcome = match change {
            Ownership::Assigned(assigned) => {
                fleet.owned.extend(&assigned);
                let names: Vec<String> = self
                    .slots
                    .iter()
                    .filter(|(name, slot)| {
                        in_set(&assigned, name) && slot.task.is_none() && slot.waiting_for.is_none()
                    })
                    .map(|(name, _)| name.clone())
                    .collect();
                tracing::info!(partitions = ?assigned, sources = names.len(), "fleet: partitions assigned; starting their sources");
                for name in names {
                    self.launch(&name);
                }
                "assigned"
            }
            Ownership::Revoked {
                partitions: revoked,
                drained,
            } => {
                fleet.owned.retain(|p| !revoked.contains(p));
                let names: Vec<String> = self
                    .slots
                    .keys()
                    .filter(|name| in_set(&revoked, name))
                    .cloned()
                    .collect();
                let mut tasks: HashSet<u64> = HashSet::new();
                for name in &names {
                    if let Some(id) = self.drain(name) {
                        tasks.insert(id);
                    }
                    // One already draining (a reload) is waited for too,
                    // and not started again after it.
                    if let Some(slot) = self.slots.get_mut(name) {
                        slot.waiting_for = None;
                    }
                    tasks.extend(
                        self.draining
                            .iter()
                            .filter(|(_, n)| *n == name)
                            .map(|(id, _)| *id),
                    );
                }
                tracing::info!(partitions = ?revoked, sources = tasks.len(), "fleet: partitions revoked; draining their sources");
                if tasks.is_empty() {
                    let _ = drained.send(());
                } else if let Some(fleet) = &mut self.fleet {
                    fleet.revocations.push(Revocation {
                        tasks,
                        drained,
                        since: Instant::now(),
                    });
                }
                "revoked"
            }
        };
        self.count_fleet(outcome);
    }

    /// Counts a rebalance and updates the ownership gauges.
    fn count_fleet(&self, outcome: &str) {
        let Some(fleet) = &self.fleet else {
            return;
        };
        let metrics = &self.sources.metrics;
        metrics
            .fleet_rebalances
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
        metrics.fleet_partitions.set(fleet.owned.len() as i64);
        let owned = self.slots.keys().filter(|name| self.owns(name)).count();
        metrics.fleet_sources.set(owned as i64);
        self.sources.health.set("fleet", Status::Ok);
    }

    /// Takes a removed source off the health board and its `up` gauge.
    fn forget(&self, name: &str) {
        self.sources.health.remove(&format!("source:{name}"));
        self.sources.health.remove(&format!("enrich:{name}"));
        self.sources
            .metrics
            .source_up
            .remove(&Metrics::source(name));
    }

    /// Stops the poller of `name` (a drain); returns its task id.
    fn drain(&mut self, name: &str) -> Option<u64> {
        let task = self.slots.get_mut(name)?.task.take()?;
        task.stop.cancel();
        self.draining.insert(task.id, name.to_string());
        Some(task.id)
    }

    async fn reload(&mut self) {
        let Some(file) = self.reload_from.clone() else {
            tracing::warn!(
                "reload asked, but this forwarder was not started from a configuration file; nothing to read"
            );
            return;
        };
        tracing::info!(file = %file.display(), "reloading the configuration");
        let new = match load(file).await {
            Ok(new) => new,
            Err(error) => return self.refuse(&error),
        };
        for w in &new.warnings {
            tracing::warn!(file = %w.file_or(&self.reload_path()).display(), key = %w.key, "{}", w.message);
        }
        let plan = plan(&self.config, &new);
        if !plan.needs_restart.is_empty() {
            tracing::warn!(
                sections = %plan.needs_restart.join(", "),
                "configuration changes to these sections need a restart; this reload applies only the sources"
            );
        }
        // The running sinks route by their own `sources` lists: a source
        // none of them takes would have its events acknowledged by nobody.
        let orphans: Vec<&str> = plan
            .added
            .iter()
            .chain(&plan.changed)
            .map(String::as_str)
            .filter(|name| {
                !self.sources.sinks.iter().any(|sink| {
                    let sources = &sink.route().sources;
                    sources.is_empty() || sources.iter().any(|s| s == name)
                })
            })
            .collect();
        if !orphans.is_empty() {
            return self.refuse(&format!(
                "no running sink takes events from source {}: a sink's `sources` list changes only at a restart; restart auditfwd to apply it",
                orphans.join(", ")
            ));
        }
        let by_name: HashMap<String, SourceConfig> = new
            .sources
            .iter()
            .map(|s| (s.name.clone(), s.clone()))
            .collect();
        for name in &plan.removed {
            tracing::info!(source = %name, "source removed from the configuration; draining it");
            let running = self.drain(name).is_some();
            let waiting = self.slots.remove(name).and_then(|s| s.waiting_for);
            if !running && waiting.is_none() {
                self.forget(name);
            }
        }
        for name in &plan.changed {
            tracing::info!(source = %name, "source configuration changed; draining it to restart it alone");
            self.drain(name);
            if let Some(slot) = self.slots.get_mut(name) {
                slot.config = by_name[name].clone();
            }
            self.launch(name);
        }
        for name in &plan.added {
            let source = &by_name[name];
            tracing::info!(source = %name, file = %source.defined_in.as_deref().unwrap_or(&self.reload_path()).display(), "source added; starting it");
            self.slots.insert(
                name.clone(),
                Slot {
                    config: source.clone(),
                    task: None,
                    waiting_for: None,
                },
            );
            self.launch(name);
        }
        for name in &plan.unchanged {
            if let Some(slot) = self.slots.get(name)
                && self.owns(name)
                && slot.task.is_none()
                && slot.waiting_for.is_none()
            {
                tracing::info!(source = %name, "source had stopped on an error; starting it again");
                self.launch(name);
            }
        }
        tracing::info!(
            added = plan.added.len(),
            removed = plan.removed.len(),
            changed = plan.changed.len(),
            unchanged = plan.unchanged.len(),
            "configuration reloaded"
        );
        self.config = new;
        self.count("applied");
        self.sources.health.remove("config");
    }

    /// Keeps the running configuration and says why.
    fn refuse(&self, error: &str) {
        tracing::error!(error = %error, "configuration reload refused; still running on the previous configuration");
        self.count("refused");
        self.sources.health.set(
            "config",
            Status::Degraded(format!(
                "reload refused, running on the previous configuration: {error}"
            )),
        );
    }

    fn reload_path(&self) -> PathBuf {
        self.reload_from.clone().unwrap_or_default()
    }

    fn count(&self, outcome: &str) {
        self.sources
            .metrics
            .config_reloads
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
    }
}

/// What the group, or a source handed over, asks of the supervisor.
enum FleetEvent {
    Changed(Ownership),
    /// Claim this source again if the group still says it is ours.
    Retry(String),
    /// The membership stopped.
    Ended,
}

/// The next fleet event, or never when not in fleet mode.
async fn next_fleet_event(fleet: &mut Option<Fleet>) -> FleetEvent {
    let Some(fleet) = fleet else {
        return std::future::pending().await;
    };
    tokio::select! {
        change = fleet.events.recv() => change.map_or(FleetEvent::Ended, FleetEvent::Changed),
        Some(name) = fleet.retry_rx.recv() => FleetEvent::Retry(name),
    }
}

/// Reads and validates `file` off the runtime's threads, and checks that
/// the open-files limit fits it.
async fn load(file: PathBuf) -> Result<Config, String> {
    let loaded = tokio::task::spawn_blocking(move || Config::load(Path::new(&file)))
        .await
        .map_err(|e| format!("reading the configuration failed: {e}"))?;
    let config = loaded.map_err(|e| e.to_string())?;
    crate::limits::prepare(&config).map_err(|e| e.to_string())?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(sources: &[(&str, &str)], sink_extra: &str) -> Config {
        let mut text = format!("[[sink]]\nname = \"out\"\ntype = \"stdout\"\n{sink_extra}\n");
        for (name, extra) in sources {
            text.push_str(&format!(
                "[[source]]\nname = \"{name}\"\nbase_url = \"https://{name}.example.com\"\napi_key = \"k\"\n{extra}\n"
            ));
        }
        Config::parse(&text, Path::new("t.toml"), Path::new("."), &|_| None)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_reload_is_planned_source_by_source() {
        let old = config(
            &[
                ("kept", ""),
                ("gone", ""),
                ("tuned", "poll_interval = \"1m\""),
            ],
            "",
        );
        let new = config(
            &[
                ("tuned", "poll_interval = \"2m\""),
                ("kept", ""),
                ("new", ""),
            ],
            "format = \"ecs\"",
        );
        assert_eq!(
            plan(&old, &new),
            ReloadPlan {
                added: vec!["new".into()],
                removed: vec!["gone".into()],
                changed: vec!["tuned".into()],
                unchanged: vec!["kept".into()],
                needs_restart: vec!["sink"],
            }
        );
        let same = plan(&old, &old.clone());
        assert_eq!(same.unchanged.len(), 3);
        assert!(same.added.is_empty() && same.changed.is_empty() && same.needs_restart.is_empty());
    }
}
