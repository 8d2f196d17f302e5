//! The golden file `tests/golden/encode.txt` pins the bytes of every format:
//! whole lines for a few telling events, and a digest per format of the
//! lines of many more (every action × full, minimal, odd and hostile
//! variants, edge dates). Output that changes on purpose is re-pinned with
//! `AUDITFWD_BLESS=1 cargo test -p auditfwd --lib format::golden`, and the
//! diff of the file shows what changed.
//!
//! When the encoders were rewritten for speed (issue 11), a differential
//! property test held them to the bytes of the encoders before them (30,000
//! varied events × 18 format variants); it went with the old code, and this
//! file keeps what it proved. Its history: `git log -- src/format/reference`.

use std::fmt::Write as _;
use std::sync::Arc;

use auditfwd_sink::testing::{hostile_events, sample_events};
use auditfwd_sink::{Event, UserInfo};
use chrono::{TimeZone, Utc};
use serde_json::{Value, json};

use super::Format;
use super::mapping;
use auditfwd_sim::NASTY;

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/encode.txt");

fn at(ms: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).unwrap()
}

fn base(action: &str) -> Event {
    Event {
        action: action.to_string(),
        created_at: at(1_772_361_339_817),
        ..sample_events("acme", 1).remove(0)
    }
}

/// For one action: a full event (enriched), a minimal one, one whose values
/// do not fit their typed fields, and one per hostile string.
fn variants(action: &str, hostile: bool) -> Vec<Event> {
    let mut out = Vec::new();
    let mut full = base(action);
    full.entity_type = Some("user".into());
    full.details = json!({ "ip": "198.51.100.7", "user_agent": "Mozilla/5.0", "new_role": "Administrator", "n": [1.5, -7, 18446744073709551615u64] });
    full.user = Some(UserInfo {
        id: full.user_id.clone(),
        email: Some("ada.lovelace@example.com".into()),
        name: Some("Ada Lovelace".into()),
        role: Some("Recruiter".into()),
        enabled: Some(true),
    });
    full.raw = Arc::from(serde_json::to_string_pretty(&full).unwrap());
    out.push(full.clone());
    out.push(Event {
        entity_type: None,
        entity_id: None,
        user_id: None,
        details: Value::Null,
        id_reused: true,
        user: None,
        ..base(action)
    });
    let mut odd = full.clone();
    odd.details =
        json!({ "ip": "not-an-ip\n", "user_agent": 42, "new_role": null, "role": "Owner" });
    odd.user = Some(UserInfo {
        email: Some("not an email".into()),
        enabled: Some(false),
        ..UserInfo::default()
    });
    odd.raw = Arc::from("{\"id\":\"a\u{2028}b\u{85}\"}");
    out.push(odd);
    if hostile {
        for (i, nasty) in NASTY.iter().enumerate() {
            let mut e = full.clone();
            e.id = format!("{nasty}-{i}");
            e.entity_type = Some(nasty.to_string());
            e.entity_id = Some(nasty.to_string());
            e.user_id = Some(nasty.to_string());
            e.details =
                json!({ "note": nasty, (*nasty): [nasty], "ip": nasty, "user_agent": nasty });
            e.user = Some(UserInfo {
                email: Some(nasty.to_string()),
                name: Some(nasty.to_string()),
                role: Some(nasty.to_string()),
                ..UserInfo::default()
            });
            e.raw = Arc::from(json!({ "id": e.id, "note": nasty }).to_string());
            out.push(e);
        }
    }
    out
}

/// Every action of the table, suffix fallbacks, unknown and hostile ones.
fn actions() -> Vec<String> {
    let mut actions = mapping::sample_actions();
    actions.extend(NASTY.iter().map(|s| s.to_string()));
    actions
}

/// The events whose lines are pinned whole.
fn pinned() -> Vec<Event> {
    let mut out = Vec::new();
    for action in [
        "USER_LOGIN",
        "USER_LOGIN_FAILED",
        "USER_CREATED",
        "ROLE_CHANGED",
        "API_KEY_CREATED",
        "CANDIDATE_VIEWED",
        "SSO_FAILED",
        "SOMETHING_NEW",
    ] {
        out.extend(variants(action, false));
    }
    let mut hostile = variants("PASSWORD_RESET", true).split_off(3);
    hostile.retain(|e| {
        !e.id.starts_with("cr\r") && !e.id.starts_with("CEF") && !e.id.starts_with("LEEF")
    });
    out.extend(hostile);
    out.extend(hostile_events("acme"));
    for ms in [
        0,
        -1,
        -62_167_219_200_001,
        253_402_300_800_000,
        951_782_400_000,
    ] {
        let mut e = base("USER_LOGOUT");
        e.created_at = at(ms);
        e.received_at = at(ms);
        out.push(e);
    }
    let mut not_json = base("USER_LOGIN");
    not_json.raw = Arc::from("{\"id\": evt-0}");
    out.push(not_json);
    out
}

/// Every event of the golden file: the pinned ones, then the digested ones.
pub(crate) fn events() -> Vec<Event> {
    let mut out = pinned();
    for action in actions() {
        out.extend(variants(&action, true));
    }
    out
}

/// Every format, LEEF with several delimiters.
fn formats() -> Vec<Format> {
    let mut formats = vec![
        Format::Json,
        Format::Raw,
        Format::Ocsf,
        Format::Ecs,
        Format::Cef,
    ];
    for delimiter in ['^', '\t', ' ', '¦', '-', ','] {
        formats.push(Format::Leef { delimiter });
    }
    formats
}

fn label(format: &Format) -> String {
    match format {
        Format::Leef { delimiter } => format!("leef(U+{:04X})", *delimiter as u32),
        f => f.name().to_string(),
    }
}

/// The line of `event`, or its error.
fn line(format: &Format, event: &Event) -> Vec<u8> {
    match format.encode(event) {
        Ok(bytes) => bytes.to_vec(),
        Err(e) => format!("ERROR {e}").into_bytes(),
    }
}

/// The golden file's text for the current encoders.
fn render() -> String {
    let pinned = pinned();
    let all = events();
    let mut out = String::from(
        "# Encoder output, pinned by src/format/golden.rs (AUDITFWD_BLESS=1 re-pins).\n",
    );
    for format in formats() {
        let mut digest = xxhash_rust::xxh3::Xxh3::new();
        for event in &all {
            let line = line(&format, event);
            digest.update(&(line.len() as u64).to_le_bytes());
            digest.update(&line);
        }
        let _ = writeln!(
            out,
            "digest {} {} events xxh3-128 {:032x}",
            label(&format),
            all.len(),
            digest.digest128()
        );
    }
    for format in formats().into_iter().take(6) {
        for event in &pinned {
            let line = String::from_utf8(line(&format, event)).expect("UTF-8 output");
            let _ = writeln!(out, "{} {}", label(&format), line);
        }
    }
    out
}

#[test]
fn every_format_writes_the_pinned_bytes() {
    let now = render();
    if std::env::var_os("AUDITFWD_BLESS").is_some() {
        std::fs::create_dir_all(std::path::Path::new(PATH).parent().unwrap()).unwrap();
        std::fs::write(PATH, &now).unwrap();
        return;
    }
    let pinned = std::fs::read_to_string(PATH).expect("tests/golden/encode.txt");
    for (i, (want, got)) in pinned.lines().zip(now.lines()).enumerate() {
        assert_eq!(want, got, "line {} of tests/golden/encode.txt", i + 1);
    }
    assert_eq!(pinned.lines().count(), now.lines().count());
}
