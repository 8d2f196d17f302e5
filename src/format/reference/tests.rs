//! Differential tests: every format, old encoder against new, byte for byte.

use std::sync::Arc;

use auditfwd_sink::{Event, UserInfo};
use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::super::Format;
use super::super::mapping::TABLE;
use crate::simulator::NASTY;

/// Every format, LEEF with delimiters that take each of its paths.
pub(crate) fn formats() -> Vec<Format> {
    let mut formats = vec![
        Format::Json,
        Format::Raw,
        Format::Ocsf,
        Format::Ecs,
        Format::Cef,
    ];
    for delimiter in [
        '^', '\t', ' ', '~', '\u{1}', '¦', '✓', '-', ':', '"', ',', '.', '+', '\\',
    ] {
        formats.push(Format::Leef { delimiter });
    }
    formats
}

/// Asserts that the old and the new encoder agree on `event` in every
/// format (the same bytes, or the same error).
pub(crate) fn assert_same(event: &Event) -> Result<(), TestCaseError> {
    for format in formats() {
        let old = super::encode(&format, event);
        let new = format.encode(event);
        match (old, new) {
            (Ok(old), Ok(new)) => prop_assert!(
                old[..] == new[..],
                "{} differs for {:?}\n old: {}\n new: {}",
                format.name(),
                event,
                String::from_utf8_lossy(&old),
                String::from_utf8_lossy(&new)
            ),
            (Err(old), Err(new)) => prop_assert_eq!(old.to_string(), new.to_string()),
            (old, new) => prop_assert!(
                false,
                "{}: old {:?}, new {:?}",
                format.name(),
                old.map(|b| String::from_utf8_lossy(&b).into_owned()),
                new.map(|b| String::from_utf8_lossy(&b).into_owned())
            ),
        }
    }
    Ok(())
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>(),
        4 => "[\\x00-\\x1f\\x7f\"\\\\|=^~ a-zA-Z0-9@.\u{80}-\u{a0}\u{2027}-\u{202a}é✓¦😀-]{0,24}",
        2 => prop::sample::select(NASTY.to_vec()).prop_map(String::from),
        2 => "[a-z0-9.+_-]{1,10}@[a-z0-9-]{1,8}\\.[a-z.-]{1,6}",
        1 => "[a-zA-Z !#$%&'*+,./=?^_`{|}~-]{1,6}@[a-z_-]{0,4}\\.?[a-z.]{0,3}",
        2 => "[A-Za-z ]{1,20}",
        1 => Just(String::new()),
    ]
}

fn ip() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|b| std::net::Ipv4Addr::from(b).to_string()),
        any::<[u16; 8]>().prop_map(|b| std::net::Ipv6Addr::from(b).to_string()),
        Just("::1".to_string()),
        Just("198.51.100.7 ".to_string()),
        Just("1.2.3".to_string()),
        text(),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        prop::sample::select(vec![
            json!(0),
            json!(-0.0),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(1e300),
            json!(-1.5e-300),
            json!(f64::MAX),
            json!(f64::MIN_POSITIVE),
            json!(0.1),
            json!(100.0),
        ]),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// `details` as the API sends it: mostly an object with the fields the
/// encoders read (of any type), sometimes anything at all.
fn details() -> impl Strategy<Value = Value> {
    let field = || {
        proptest::option::of(prop_oneof![
            3 => text().prop_map(Value::String),
            1 => json_value(),
        ])
    };
    prop_oneof![
        1 => Just(Value::Null),
        1 => json_value(),
        4 => (
            proptest::option::of(ip().prop_map(Value::String)),
            field(),
            field(),
            field(),
            prop::collection::btree_map(text(), json_value(), 0..4),
            proptest::option::of(1usize..20_000),
        )
            .prop_map(|(ip, ua, new_role, role, rest, big)| {
                let mut m: serde_json::Map<String, Value> = rest.into_iter().collect();
                for (k, v) in [("ip", ip), ("user_agent", ua), ("new_role", new_role), ("role", role)] {
                    if let Some(v) = v {
                        m.insert(k.to_string(), v);
                    }
                }
                if let Some(n) = big {
                    m.insert("blob".into(), Value::String("x\"é".repeat(n)));
                }
                Value::Object(m)
            }),
    ]
}

fn action() -> impl Strategy<Value = String> {
    let mut known: Vec<String> = TABLE.iter().map(|m| m.action.to_string()).collect();
    known.extend(
        [
            "JOB_POSTING_CREATED",
            "NOTE_UPDATED",
            "REPORT_VIEWED",
            "OFFER_DELETED",
            "DATA_EXPORTED",
            "FILE_DOWNLOADED",
            "SSO_FAILED",
            "_CREATED",
            "_FAILED",
            "SOMETHING_NEW",
            "UNKNOWN",
            "USER_LOGIN ",
            "user_login",
        ]
        .map(String::from),
    );
    prop_oneof![
        4 => prop::sample::select(known),
        1 => text(),
        1 => (text(), prop::sample::select(vec!["_CREATED", "_DELETED", "_FAILED", "_EXPORTED"]))
            .prop_map(|(a, b)| a + b),
    ]
}

fn time() -> impl Strategy<Value = DateTime<Utc>> {
    let (min, max) = (
        DateTime::<Utc>::MIN_UTC.timestamp_millis(),
        DateTime::<Utc>::MAX_UTC.timestamp_millis(),
    );
    prop_oneof![
        6 => 1_500_000_000_000i64..2_100_000_000_000,
        2 => -62_167_219_200_000i64..253_402_300_800_000,
        1 => min..=max,
        1 => prop::sample::select(vec![
            0,
            -1,
            1,
            999,
            -62_167_219_200_000,
            -62_167_219_200_001,
            253_402_300_799_999,
            253_402_300_800_000,
            951_782_400_000,
            4_107_542_399_999,
            min,
            max,
        ]),
    ]
    .prop_map(|ms| Utc.timestamp_millis_opt(ms).unwrap())
}

fn user() -> impl Strategy<Value = Option<UserInfo>> {
    let field = || proptest::option::of(text());
    proptest::option::of(
        (
            field(),
            field(),
            field(),
            field(),
            proptest::option::of(any::<bool>()),
        )
            .prop_map(|(id, email, name, role, enabled)| UserInfo {
                id,
                email,
                name,
                role,
                enabled,
            }),
    )
}

/// The API's text of the event, for `raw`: compact, pretty, with line
/// splitters inside strings, or not JSON at all.
fn raw() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => json_value().prop_map(|v| v.to_string()),
        2 => json_value().prop_map(|v| serde_json::to_string_pretty(&v).unwrap()),
        1 => json_value().prop_map(|v| serde_json::to_string_pretty(&v).unwrap().replace('\n', "\r\n")),
        1 => text().prop_map(|t| format!("{{\"note\":\"{t}\"}}")),
        1 => text(),
    ]
}

prop_compose! {
    pub(crate) fn event()(
        source in prop_oneof!["[a-z0-9_.-]{1,20}", text()],
        id in text(),
        action in action(),
        entity_type in proptest::option::of(text()),
        entity_id in proptest::option::of(text()),
        user_id in proptest::option::of(text()),
        details in details(),
        created_at in time(),
        received_at in time(),
        id_reused in any::<bool>(),
        user in user(),
        raw in raw(),
    ) -> Event {
        Event {
            source,
            id,
            action,
            entity_type,
            entity_id,
            user_id,
            details,
            created_at,
            received_at,
            id_reused,
            user,
            raw: Arc::from(raw),
        }
    }
}

/// Cases: `AUDITFWD_ENCODE_CASES`, default 1,000.
fn cases() -> u32 {
    std::env::var("AUDITFWD_ENCODE_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn every_format_writes_the_bytes_of_the_old_encoder(event in event()) {
        assert_same(&event)?;
    }
}

/// The fixed events of the golden file, through both encoders.
#[test]
fn the_golden_events_encode_as_before() {
    for event in super::super::golden::events() {
        assert_same(&event).unwrap();
    }
}
