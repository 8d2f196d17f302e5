//! The source side's CPU per event: parsing the API's pages and building
//! canonical events, the part of the backfill row (`scripts/bench.sh`)
//! that is neither I/O nor the sinks.
//!
//! ```sh
//! cargo bench --bench ingest
//! ```
//!
//! The pages are the simulated tenant's own (100 events each, as
//! `auditfwd simulate` serves them), fetched once before measuring.

use std::hint::black_box;

use auditfwd::format::Format;
use auditfwd::model::Item;
use auditfwd::normalize::normalize;
use auditfwd::source::page::parse;
use auditfwd_sim::{SimConfig, Simulator};
use chrono::Utc;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Ten pages of 100 events from a quiet simulated tenant.
fn pages() -> Vec<Vec<u8>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let sim = Simulator::start(SimConfig::quiet(1000), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        auditfwd_testkit::sim_pages(&sim, 1000).await
    })
}

fn ingest(c: &mut Criterion) {
    let pages = pages();
    let events: usize = pages.iter().map(|p| parse(p).unwrap().items.len()).sum();
    assert_eq!(events, 1000, "the simulator served full pages");
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(events as u64));
    group.bench_function("parse", |b| {
        b.iter(|| {
            for page in &pages {
                black_box(parse(black_box(page)).unwrap());
            }
        })
    });
    group.bench_function("parse_normalize", |b| {
        b.iter(|| {
            let now = Utc::now();
            for page in &pages {
                for item in parse(black_box(page)).unwrap().items {
                    if let Item::Event(raw) = item {
                        black_box(normalize("bench", raw, now));
                    }
                }
            }
        })
    });
    group.bench_function("parse_normalize_json", |b| {
        b.iter(|| {
            let now = Utc::now();
            for page in &pages {
                let batch: Vec<_> = parse(black_box(page))
                    .unwrap()
                    .items
                    .into_iter()
                    .filter_map(|item| match item {
                        Item::Event(raw) => Some(normalize("bench", raw, now)),
                        Item::Malformed(_) => None,
                    })
                    .collect();
                for line in Format::Json.encode_batch(&batch) {
                    black_box(line.unwrap());
                }
            }
        })
    });
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
