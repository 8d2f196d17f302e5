//! The example sink registers, validates, builds and keeps the sink
//! contract like any sink, and it is what `sinks/README.md` shows.

use std::time::Duration;

use auditfwd_sink::testing::{JsonTable, conformance};
use auditfwd_sink::{ConfigProblem, Descriptors, Registry, SinkContext, SinkKind, SinkType};
use auditfwd_sink_example::{NullSinkConfig, NullSinkFactory};
use serde_json::json;

/// A host's registry, with the example as its one sink type.
static SINK_TYPES: Registry<JsonTable> = Registry::new(&[SinkType::of::<NullSinkFactory>()]);

fn parse(type_name: &str, table: serde_json::Value) -> Result<SinkKind, Vec<ConfigProblem>> {
    let mut problems = Vec::new();
    let raw = JsonTable::new("sink[0] (\"nothing\")", table);
    match SINK_TYPES.parse(type_name, raw, &mut problems) {
        Some(kind) if problems.is_empty() => Ok(kind),
        _ => Err(problems),
    }
}

#[test]
fn the_readme_shows_this_sink() {
    let readme = include_str!("../../README.md");
    let marker = "<!-- example-sink: sinks/example/src/lib.rs -->";
    let at = readme.find(marker).expect("the README marks the example");
    let rest = &readme[at + marker.len()..];
    let start = rest.find("```rust\n").expect("a rust block follows") + "```rust\n".len();
    let end = rest[start..].find("```").expect("closing fence") + start;
    assert_eq!(
        &rest[start..end],
        include_str!("../src/lib.rs"),
        "sinks/README.md's example sink is stale: copy sinks/example/src/lib.rs into it"
    );
}

#[test]
fn a_table_becomes_a_typed_config() {
    let kind = parse("null", json!({ "delay": "250ms" })).unwrap();
    assert_eq!(kind.type_name(), "null");
    assert_eq!(
        kind.config::<NullSinkFactory>(),
        Some(&NullSinkConfig {
            delay: Duration::from_millis(250)
        })
    );
    assert_eq!(kind.descriptors(3), Descriptors::CONNECTIONS);
    assert_eq!(format!("{kind:?}"), "null: NullSinkConfig { delay: 250ms }");
}

#[test]
fn problems_name_the_key_under_the_sink() {
    let problems = parse("null", json!({ "delay": "1m" })).unwrap_err();
    assert_eq!(
        problems,
        [ConfigProblem::new(
            "sink[0] (\"nothing\").delay",
            "is longer than 10s; a slower sink only holds the sources up"
        )]
    );
    let problems = parse("null", json!({ "delay": "soon" })).unwrap_err();
    assert!(
        problems[0].message.contains("`soon` is not a duration"),
        "{problems:?}"
    );
    let problems = parse("nul", json!({})).unwrap_err();
    assert_eq!(
        problems,
        [ConfigProblem::new(
            "sink[0] (\"nothing\").type",
            "unknown sink type `nul`; available: null"
        )]
    );
}

#[tokio::test]
async fn built_it_keeps_the_sink_contract() {
    let kind = parse("null", json!({})).unwrap();
    let mut sink = kind
        .build(&SinkContext::new("nothing", vec!["acme".into()]))
        .unwrap();
    assert_eq!(sink.name(), "nothing");
    conformance(sink.as_mut(), Duration::from_secs(5)).await;
}
