//! Encode throughput per format (events per second on one core).
//!
//! ```sh
//! cargo bench --bench encode
//! ```
//!
//! `encode/<format>` encodes one event at a time (what `scripts/bench.sh`
//! reports); `encode_batch/<format>` encodes as the pipeline does, a batch
//! into one buffer.
//!
//! The events are realistic: enriched, with `details`, and every 20th one
//! with hostile strings (escaping paths).

use std::hint::black_box;

use auditfwd::format::Format;
use auditfwd_sink::testing::{hostile_events, sample_events};
use auditfwd_sink::{Event, UserInfo};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;

fn events() -> Vec<Event> {
    let actions = [
        "USER_LOGIN",
        "CANDIDATE_VIEWED",
        "ROLE_CHANGED",
        "API_KEY_CREATED",
        "JOB_CREATED",
        "USER_LOGIN_FAILED",
    ];
    let hostile = hostile_events("acme");
    sample_events("acme", 1000)
        .into_iter()
        .enumerate()
        .map(|(i, mut e)| {
            e.action = actions[i % actions.len()].to_string();
            e.details = json!({ "ip": "198.51.100.7", "user_agent": "Mozilla/5.0 (X11; Linux x86_64)", "new_role": "Recruiter", "changes": { "stage": ["screen", "interview"] } });
            e.user = Some(UserInfo {
                id: e.user_id.clone(),
                email: Some(format!("user{}@example.com", i % 40)),
                name: Some("Ada Lovelace".into()),
                role: Some("Recruiter".into()),
                enabled: Some(true),
            });
            e.raw = std::sync::Arc::from(serde_json::to_string(&e).unwrap());
            if i % 20 == 0 {
                let h = &hostile[i / 20 % hostile.len()];
                e.action = h.action.clone();
                e.entity_type = h.entity_type.clone();
                e.details = h.details.clone();
            }
            e
        })
        .collect()
}

const FORMATS: [Format; 6] = [
    Format::Json,
    Format::Raw,
    Format::Ocsf,
    Format::Ecs,
    Format::Cef,
    Format::Leef { delimiter: '^' },
];

/// One event at a time, each line in its own buffer (`Format::encode`).
fn encode(c: &mut Criterion) {
    let events = events();
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(events.len() as u64));
    for format in FORMATS {
        group.bench_function(format.name(), |b| {
            b.iter(|| {
                for e in &events {
                    black_box(format.encode(black_box(e)).unwrap());
                }
            })
        });
    }
    group.finish();
}

/// As the pipeline encodes: a batch of 100 events into one shared buffer
/// (`Format::encode_batch`).
fn encode_batch(c: &mut Criterion) {
    let events = events();
    let mut group = c.benchmark_group("encode_batch");
    group.throughput(Throughput::Elements(events.len() as u64));
    for format in FORMATS {
        group.bench_function(format.name(), |b| {
            b.iter(|| {
                for batch in events.chunks(100) {
                    for line in format.encode_batch(black_box(batch)) {
                        black_box(line.unwrap());
                    }
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, encode, encode_batch);
criterion_main!(benches);
