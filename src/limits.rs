//! Process limits the daemon needs: open file descriptors. At start the
//! soft `RLIMIT_NOFILE` is raised to the hard limit, and a configuration
//! that would still not fit is refused with the numbers and the fix,
//! instead of meeting "Too many open files" hours later.

use crate::config::Config;

/// Why the daemon can not run this configuration here.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// The configuration needs more descriptors than the hard limit allows.
    #[error(
        "this configuration needs about {needed} open files ({sources} sources, {outputs} output files) but this process may open at most {limit}; raise the limit: LimitNOFILE={suggest} in the systemd unit (deploy/auditfwd.service sets 65536), `ulimit -n {suggest}` in a shell, or --ulimit nofile={suggest} for docker run"
    )]
    TooFewFiles {
        /// The estimate.
        needed: u64,
        /// The limit in force (the hard limit, once raised).
        limit: u64,
        /// A limit with headroom.
        suggest: u64,
        /// Configured sources.
        sources: usize,
        /// Output files the file sinks keep open.
        outputs: usize,
    },
}

/// Descriptors the process uses whatever the configuration: stdio, the
/// runtime, the telemetry listener and its connections, the compression
/// worker, librdkafka's pipes, the state directory's lock.
const BASE: u64 = 64;

/// Files the blocking pool may hold open at once: a journal during a
/// commit, a snapshot being written, a dead-letter file during a write.
/// Each is open only for the write and its fsync, so at most one per
/// blocking thread (tokio's default pool has 512).
const TRANSIENT_FILES: u64 = 512;

/// The distinct API hosts (origins) of the sources: what sizes the idle
/// connections the shared HTTP pool keeps (`source::client::HttpPool`).
pub fn api_hosts(config: &Config) -> usize {
    config
        .sources
        .iter()
        .map(|s| s.base_url.origin())
        .collect::<std::collections::HashSet<_>>()
        .len()
}

/// An estimate of the descriptors `config` keeps open at once.
///
/// Per source nothing is held for ever: its journal and dead-letter file
/// are open only while written (one per source at most, and no more than
/// the blocking threads), the state directory has one lock for all. API
/// connections: one per request in flight (a page and its prefetches, an
/// enrichment lookup), no more than `limits.max_requests_in_flight`, plus
/// the idle ones: `max(1, cap / hosts)` per API host, so at most the cap or
/// one per host. Per file sink, one file per
/// source it writes, no more than its `max_open_files` (the least recently
/// written is closed beyond that); per other sink a few connections.
pub fn files_needed(config: &Config) -> (u64, usize) {
    let sources = config.sources.len() as u64;
    let requests: u64 = config
        .sources
        .iter()
        .map(|s| 1 + u64::from(s.prefetch) + u64::from(s.enrich.is_some()))
        .sum();
    let hosts = api_hosts(config) as u64;
    let cap = config.limits.max_requests_in_flight as u64;
    let connections = requests.min(cap + cap.max(hosts));
    let transient = sources.min(TRANSIENT_FILES);
    let mut outputs = 0;
    let mut sinks = 0u64;
    for sink in &config.sinks {
        let feeding = config
            .sources
            .iter()
            .filter(|s| sink.accepts_source(&s.name))
            .count();
        let held = sink.kind.descriptors(feeding);
        outputs += held.files;
        sinks += held.connections as u64;
    }
    let listener = if config.telemetry.listen.is_some() {
        crate::telemetry::MAX_CONNECTIONS as u64 + 1
    } else {
        0
    };
    (
        BASE + transient + connections + outputs as u64 + sinks + listener,
        outputs,
    )
}

/// Raises the soft open-files limit to the hard one; returns the limit now
/// in force (soft, hard).
pub fn raise_open_files() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write and read only the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    Ok((limit.rlim_cur, limit.rlim_max))
}

/// Raises the limit and checks that `config` fits under it.
pub fn prepare(config: &Config) -> Result<(), LimitError> {
    let (needed, outputs) = files_needed(config);
    let (soft, _hard) = match raise_open_files() {
        Ok(limits) => limits,
        Err(error) => {
            tracing::warn!(error = %error, "cannot read the open-files limit");
            return Ok(());
        }
    };
    if needed > soft {
        return Err(LimitError::TooFewFiles {
            needed,
            limit: soft,
            suggest: (needed * 2).next_power_of_two().max(4096),
            sources: config.sources.len(),
            outputs,
        });
    }
    tracing::debug!(needed, limit = soft, "open files");
    Ok(())
}
