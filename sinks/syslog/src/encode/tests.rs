//! RFC conformance of the encoder, checked with an independent, strict
//! parser of the RFC 5424 ABNF (rsyslog is lenient: it accepts an over-long
//! MSGID and unescaped `]`, so it can not be the judge of conformance).

use std::sync::Arc;

use auditfwd_sink::testing::{hostile_events, records, sample_events};
use auditfwd_sink::{Event, Record, Severity};
use chrono::{TimeZone, Utc};
use proptest::prelude::*;

use super::*;
use crate::testing::visible;

fn header() -> Header {
    Header {
        facility: 4,
        hostname: "host.example".into(),
        app_name: "auditfwd".into(),
        procid: "4242".into(),
    }
}

/// A parsed RFC 5424 message.
#[derive(Debug, PartialEq)]
struct Parsed {
    pri: u16,
    timestamp: String,
    hostname: String,
    app_name: String,
    procid: String,
    msgid: String,
    sd: Vec<(String, Vec<(String, String)>)>,
    msg: Vec<u8>,
}

fn printus(s: &[u8], max: usize, what: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > max || !s.iter().all(|b| (33..=126).contains(b)) {
        return Err(format!(
            "{what} is not 1*{max}PRINTUSASCII: {:?}",
            String::from_utf8_lossy(s)
        ));
    }
    Ok(String::from_utf8(s.to_vec()).unwrap())
}

fn sd_name(s: &[u8]) -> Result<String, String> {
    if s.is_empty()
        || s.len() > 32
        || !s
            .iter()
            .all(|b| (33..=126).contains(b) && !matches!(b, b'=' | b' ' | b']' | b'"'))
    {
        return Err(format!("bad SD-NAME {:?}", String::from_utf8_lossy(s)));
    }
    Ok(String::from_utf8(s.to_vec()).unwrap())
}

/// Strict RFC 5424 §6 parser.
fn parse(m: &[u8]) -> Result<Parsed, String> {
    let mut i;
    let field = |i: &mut usize| -> &[u8] {
        let start = *i;
        while *i < m.len() && m[*i] != b' ' {
            *i += 1;
        }
        let f = &m[start..*i];
        *i += 1; // SP
        f
    };
    if m.first() != Some(&b'<') {
        return Err("no PRI".into());
    }
    let close = m.iter().position(|b| *b == b'>').ok_or("PRI not closed")?;
    let pri_text = std::str::from_utf8(&m[1..close]).map_err(|e| e.to_string())?;
    if pri_text.is_empty()
        || pri_text.len() > 3
        || (pri_text.len() > 1 && pri_text.starts_with('0'))
    {
        return Err(format!("bad PRIVAL {pri_text}"));
    }
    let pri: u16 = pri_text.parse().map_err(|_| "PRIVAL not a number")?;
    if pri > 191 {
        return Err("PRIVAL > 191".into());
    }
    i = close + 1;
    if field(&mut i) != b"1" {
        return Err("VERSION is not 1".into());
    }
    let timestamp = String::from_utf8(field(&mut i).to_vec()).map_err(|e| e.to_string())?;
    if timestamp != "-" {
        chrono::DateTime::parse_from_rfc3339(&timestamp)
            .map_err(|e| format!("TIMESTAMP {timestamp}: {e}"))?;
    }
    let hostname = printus(field(&mut i), 255, "HOSTNAME")?;
    let app_name = printus(field(&mut i), 48, "APP-NAME")?;
    let procid = printus(field(&mut i), 128, "PROCID")?;
    let msgid = printus(field(&mut i), 32, "MSGID")?;
    // STRUCTURED-DATA = NILVALUE / 1*SD-ELEMENT
    let mut sd = Vec::new();
    if m.get(i) == Some(&b'-') {
        i += 1;
    } else {
        while m.get(i) == Some(&b'[') {
            i += 1;
            let start = i;
            while i < m.len() && m[i] != b' ' && m[i] != b']' {
                i += 1;
            }
            let id = sd_name(&m[start..i])?;
            let mut params = Vec::new();
            while m.get(i) == Some(&b' ') {
                i += 1;
                let start = i;
                while i < m.len() && m[i] != b'=' {
                    i += 1;
                }
                let name = sd_name(&m[start..i])?;
                if m.get(i + 1) != Some(&b'"') {
                    return Err("PARAM-VALUE not quoted".into());
                }
                i += 2;
                let mut value = Vec::new();
                loop {
                    match m.get(i) {
                        None => return Err("PARAM-VALUE not closed".into()),
                        Some(b'\\') if matches!(m.get(i + 1), Some(b'"' | b'\\' | b']')) => {
                            value.push(m[i + 1]);
                            i += 2;
                        }
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b']') => return Err("unescaped ] in PARAM-VALUE".into()),
                        Some(b) => {
                            value.push(*b);
                            i += 1;
                        }
                    }
                }
                let value = String::from_utf8(value).map_err(|_| "PARAM-VALUE is not UTF-8")?;
                params.push((name, value));
            }
            if m.get(i) != Some(&b']') {
                return Err("SD-ELEMENT not closed".into());
            }
            i += 1;
            sd.push((id, params));
        }
        if sd.is_empty() {
            return Err("no STRUCTURED-DATA".into());
        }
    }
    let msg = match m.get(i) {
        None => Vec::new(),
        Some(b' ') => m[i + 1..].to_vec(),
        Some(_) => return Err("no SP before MSG".into()),
    };
    Ok(Parsed {
        pri,
        timestamp,
        hostname,
        app_name,
        procid,
        msgid,
        sd,
        msg,
    })
}

fn one(e: Event) -> Record {
    records(vec![e]).remove(0)
}

#[test]
fn a_typical_event() {
    let mut r = one(sample_events("acme", 1).remove(0));
    r.severity = Severity::Medium;
    let m = rfc5424(&header(), &r).unwrap();
    let p = parse(&m.bytes).unwrap();
    assert_eq!(p.pri, 4 * 8 + 4);
    assert_eq!(p.timestamp, "2026-02-02T02:40:00.000Z");
    assert_eq!(
        (p.hostname.as_str(), p.app_name.as_str(), p.procid.as_str()),
        ("host.example", "auditfwd", "4242")
    );
    assert_eq!(p.msgid, "USER_LOGIN");
    assert_eq!(
        p.sd,
        [(
            SD_ID.to_string(),
            vec![
                ("id".into(), "evt-0".into()),
                ("source".into(), "acme".into()),
                ("entity_type".into(), "user".into())
            ]
        )]
    );
    assert_eq!(p.msg, r.payload.to_vec());
    assert_eq!(&m.bytes[m.body_start..], &r.payload[..]);
}

#[test]
fn a_bogus_created_at_leaves_the_header_timestamp_nil() {
    use chrono::TimeZone;
    for (ms, shown) in [
        (253_402_300_799_999, "-"),
        (-62_135_596_800_000, "-"),
        (4_102_444_799_999, "2099-12-31T23:59:59.999Z"),
    ] {
        let mut e = sample_events("acme", 1).remove(0);
        e.created_at = chrono::Utc.timestamp_millis_opt(ms).unwrap();
        let r = one(e);
        let p = parse(&rfc5424(&header(), &r).unwrap().bytes).unwrap();
        assert_eq!(p.timestamp, shown);
        assert_eq!(p.msg, r.payload.to_vec(), "the payload keeps the time");
    }
}

#[test]
fn hostile_events_stay_one_conformant_record() {
    for e in hostile_events("acme") {
        let r = one(e.clone());
        let m = rfc5424(&header(), &r).unwrap();
        assert!(!m.bytes.contains(&b'\n') && !m.bytes.contains(&b'\r') && !m.bytes.contains(&0));
        let p = parse(&m.bytes)
            .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&m.bytes)));
        assert_eq!(p.sd[0].1[0].1, visible(&e.id));
        assert_eq!(p.msgid, header_field(&e.action, 32));
        assert!(p.msgid.len() <= 32);
    }
}

#[test]
fn msgid_is_cut_to_32_printable_characters() {
    let mut e = sample_events("acme", 1).remove(0);
    e.action = "CANDIDATE_PROFILE_ATTACHMENT_DOWNLOADED_BY_ADMIN".into();
    assert_eq!(
        parse(&rfc5424(&header(), &one(e.clone())).unwrap().bytes)
            .unwrap()
            .msgid,
        "CANDIDATE_PROFILE_ATTACHMENT_DOW"
    );
    e.action = String::new();
    assert_eq!(
        parse(&rfc5424(&header(), &one(e.clone())).unwrap().bytes)
            .unwrap()
            .msgid,
        "-"
    );
    e.action = "ünï code\tx".into();
    assert_eq!(
        parse(&rfc5424(&header(), &one(e)).unwrap().bytes)
            .unwrap()
            .msgid,
        "_n__code_x"
    );
}

#[test]
fn payload_line_breaks_are_refused() {
    let mut r = one(sample_events("acme", 1).remove(0));
    r.payload = bytes::Bytes::from_static(b"{}\n<13>1 forged");
    assert!(rfc5424(&header(), &r).is_err());
    assert!(rfc3164(&header(), &r).is_err());
}

#[test]
fn rfc3164_shape() {
    let e = Event {
        created_at: Utc.with_ymd_and_hms(2026, 3, 1, 10, 35, 39).unwrap(),
        ..sample_events("acme", 1).remove(0)
    };
    let r = one(e);
    let m = rfc3164(&header(), &r).unwrap();
    let text = String::from_utf8(m.bytes.clone()).unwrap();
    assert!(
        text.starts_with("<38>Mar  1 10:35:39 host.example auditfwd[4242]: {"),
        "{text}"
    );
}

#[test]
fn octet_counting_and_lf_framing() {
    let m = Message {
        bytes: "<13>1 - - - - - - ünï".as_bytes().to_vec(),
        body_start: 0,
    };
    let mut out = Vec::new();
    frame(&m, Framing::OctetCounting, &mut out);
    assert_eq!(
        out,
        [format!("{} ", m.bytes.len()).as_bytes(), &m.bytes].concat()
    );
    out.clear();
    frame(&m, Framing::Lf, &mut out);
    assert_eq!(out.last(), Some(&b'\n'));
}

#[test]
fn datagrams_are_cut_at_a_character_boundary_with_a_marker() {
    let mut e = sample_events("acme", 1).remove(0);
    e.details = serde_json::json!({ "note": "日本語".repeat(400) });
    let r = one(e);
    let mut m = rfc5424(&header(), &r).unwrap();
    assert!(fit_datagram(&mut m, 600).unwrap());
    assert!(m.bytes.len() <= 600, "{}", m.bytes.len());
    let text = String::from_utf8(m.bytes.clone()).expect("still valid UTF-8");
    assert!(text.ends_with(TRUNCATION_MARKER));
    parse(&m.bytes).unwrap();
    let mut small = rfc5424(&header(), &r).unwrap();
    assert!(
        fit_datagram(&mut small, 100).is_err(),
        "the header alone does not fit"
    );
}

fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\x00-\\x1f\\]\\[\"\\\\=| <>a-z]{0,40}",
        Just("\r\n<13>1 2026-01-01T00:00:00Z h a - - - forged".to_string()),
    ]
}

proptest! {
    #[test]
    fn any_event_is_one_conformant_record(
        id in arb_text().prop_filter("ids are non-empty", |s| !s.is_empty()),
        source in arb_text(),
        action in arb_text(),
        entity_type in proptest::option::of(arb_text()),
        payload in "[^\\r\\n\\x00]{0,300}",
        facility in 0u8..24,
        octets in any::<bool>(),
    ) {
        let mut e = sample_events("acme", 1).remove(0);
        e.id = id.clone();
        e.source = source.clone();
        e.action = action.clone();
        e.entity_type = entity_type.clone();
        let mut r = one(e);
        r.payload = bytes::Bytes::from(payload.clone());
        r.event = Arc::new((*r.event).clone());
        let h = Header { facility, ..header() };
        let m = rfc5424(&h, &r).unwrap();
        prop_assert!(!m.bytes.iter().any(|b| matches!(b, b'\n' | b'\r' | 0)));
        let p = parse(&m.bytes).map_err(|e| TestCaseError::fail(format!("{e}: {:?}", String::from_utf8_lossy(&m.bytes))))?;
        prop_assert_eq!(p.pri / 8, u16::from(facility));
        prop_assert_eq!(&p.sd[0].1[0], &("id".to_string(), visible(&id)));
        prop_assert_eq!(&p.sd[0].1[1], &("source".to_string(), visible(&source)));
        if let Some(t) = &entity_type {
            prop_assert_eq!(&p.sd[0].1[2], &("entity_type".to_string(), visible(t)));
        }
        prop_assert_eq!(p.msg, payload.as_bytes().to_vec());
        let mut framed = Vec::new();
        frame(&m, if octets { Framing::OctetCounting } else { Framing::Lf }, &mut framed);
        if octets {
            let space = framed.iter().position(|b| *b == b' ').unwrap();
            let len: usize = std::str::from_utf8(&framed[..space]).unwrap().parse().unwrap();
            prop_assert_eq!(len, framed.len() - space - 1);
        } else {
            prop_assert_eq!(framed.iter().filter(|b| **b == b'\n').count(), 1);
        }
        let mut cut = m.clone();
        if fit_datagram(&mut cut, 480).is_ok() {
            prop_assert!(cut.bytes.len() <= 480);
            prop_assert!(std::str::from_utf8(&cut.bytes[cut.body_start..]).is_ok());
        }
    }
}
