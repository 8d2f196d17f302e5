//! What the sink throughput benches share: JSON records as the pipeline
//! hands them to a sink, and the peak resident memory of the process.

use auditfwd::format::Format;
use auditfwd_sink::{Event, Record};

/// `event` encoded as the `json` format, as the pipeline hands it to a sink.
pub fn json_record(event: Event) -> Record {
    auditfwd::pipeline::record(&Format::Json, &std::sync::Arc::new(event))
        .expect("events encode as json")
}

/// Peak resident set size of this process in KiB (`VmHWM`).
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
