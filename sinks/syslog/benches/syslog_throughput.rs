//! Syslog sink throughput over TCP to a real rsyslogd, against a plain
//! socket writer sending the same bytes.
//!
//! ```sh
//! cargo bench -p auditfwd-sink-syslog --bench syslog_throughput   # 200 000 records
//! RECORDS=500000 cargo bench -p auditfwd-sink-syslog --bench syslog_throughput
//! ```
//!
//! Modes (each in its own process, so peak RSS is its own):
//! - `plain`: the frames, encoded before the clock starts, written to a
//!   `TcpStream` in batches of 100 with one `write_all` + flush each;
//! - `sink`: `SyslogSink::deliver` on batches of 100 records, as the
//!   pipeline calls it (syslog encoding and framing included; the JSON
//!   payloads, the core's work, are built before the clock starts);
//! - `sink-streaming`: the same, building each batch (JSON included) inside
//!   the loop, so that the process holds one batch: its peak RSS is the
//!   sink's own footprint.
//!
//! rsyslogd parses every message and writes it to /dev/null, so both modes
//! are held to the receiver's pace by TCP flow control.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use auditfwd_sink::testing::sample_events;
use auditfwd_sink::{Record, Sink};
use auditfwd_sink_syslog::encode::{self, Header};
use auditfwd_sink_syslog::{RawSyslogSinkConfig, SyslogSink, SyslogSinkConfig};
use auditfwd_testkit::{find_binary, free_port, json_record, run_mode, timed};

const BATCH: usize = 100;

fn records(start: usize, len: usize) -> Vec<Record> {
    let template = sample_events("bench", 2);
    (start..start + len)
        .map(|i| {
            let e = auditfwd_sink::Event {
                id: format!("evt-{i}"),
                entity_id: Some(format!("ent-{i}")),
                ..template[i % 2].clone()
            };
            json_record(e)
        })
        .collect()
}

fn config(port: u16) -> SyslogSinkConfig {
    let mut c = RawSyslogSinkConfig::new(format!("127.0.0.1:{port}"));
    c.hostname = Some("bench-host".into());
    c.procid = Some("1".into());
    c.validate().expect("a valid bench config")
}

/// The header the sink builds from `config`.
fn header(config: &SyslogSinkConfig) -> Header {
    Header {
        facility: config.facility,
        hostname: "bench-host".into(),
        app_name: config.app_name.clone(),
        procid: "1".into(),
    }
}

fn child(mode: &str, port: u16, n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match mode {
        "plain" => {
            let cfg = config(port);
            let header = header(&cfg);
            let batches: Vec<Vec<u8>> = (0..n)
                .step_by(BATCH)
                .map(|s| {
                    let mut frames = Vec::new();
                    for r in records(s, BATCH.min(n - s)) {
                        let (m, _) = encode::encode(&cfg, &header, &r).unwrap();
                        encode::frame(&m, cfg.framing, &mut frames);
                    }
                    frames
                })
                .collect();
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream.set_nodelay(true).unwrap();
            let started = Instant::now();
            for b in &batches {
                stream.write_all(b).unwrap();
                stream.flush().unwrap();
            }
            timed(started);
        }
        "sink" => rt.block_on(async {
            // The JSON payloads are the core's work; build them before the
            // clock starts, as `plain` does with its frames.
            let batches: Vec<Vec<Record>> = (0..n)
                .step_by(BATCH)
                .map(|s| records(s, BATCH.min(n - s)))
                .collect();
            let mut sink = SyslogSink::new("bench", config(port)).unwrap();
            sink.healthcheck().await.unwrap();
            let started = Instant::now();
            for batch in &batches {
                let d = sink.deliver(batch).await.unwrap();
                assert!(d.rejected.is_empty());
            }
            timed(started);
        }),
        "sink-streaming" => rt.block_on(async {
            let mut sink = SyslogSink::new("bench", config(port)).unwrap();
            sink.healthcheck().await.unwrap();
            let started = Instant::now();
            for s in (0..n).step_by(BATCH) {
                let d = sink.deliver(&records(s, BATCH.min(n - s))).await.unwrap();
                assert!(d.rejected.is_empty());
            }
            timed(started);
        }),
        other => panic!("unknown mode {other}"),
    }
}

fn main() {
    if let (Ok(mode), Ok(port), Ok(n)) = (
        std::env::var("BENCH_MODE"),
        std::env::var("BENCH_PORT"),
        std::env::var("BENCH_N"),
    ) {
        child(&mode, port.parse().unwrap(), n.parse().unwrap());
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: usize = std::env::var("RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            "global(workDirectory=\"{d}\" maxMessageSize=\"64k\")\nmodule(load=\"imtcp\")\ninput(type=\"imtcp\" port=\"{port}\" address=\"127.0.0.1\")\naction(type=\"omfile\" file=\"/dev/null\")\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let mut rsyslog = Command::new(find_binary("rsyslogd", "RSYSLOGD_BIN"))
        .args(["-n", "-f"])
        .arg(&conf)
        .arg("-i")
        .arg(dir.path().join("pid"))
        .spawn()
        .expect("rsyslogd (run scripts/services.sh)");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let bytes: usize = {
        let cfg = config(port);
        let header = header(&cfg);
        records(0, 1000)
            .iter()
            .map(|r| encode::encode(&cfg, &header, r).unwrap().0.bytes.len())
            .sum::<usize>()
            / 1000
    };
    println!(
        "syslog_throughput: {n} records, ~{bytes} bytes per RFC 5424 message, TCP octet-counting, batches of {BATCH}, rsyslogd on loopback"
    );
    let mut rates = Vec::new();
    for mode in ["plain", "sink", "sink-streaming"] {
        let (secs, rss) = run_mode(
            mode,
            &[("BENCH_PORT", port.to_string()), ("BENCH_N", n.to_string())],
        );
        let rate = n as f64 / secs;
        println!(
            "  {mode:<14} {rate:>10.0} messages/s  {:>6.1} MB/s  peak RSS {:>6.1} MiB",
            (n * bytes) as f64 / secs / 1e6,
            rss as f64 / 1024.0
        );
        rates.push(rate);
    }
    println!("  ratio sink / plain = {:.2}", rates[1] / rates[0]);
    let _ = rsyslog.kill();
    let _ = rsyslog.wait();
}
