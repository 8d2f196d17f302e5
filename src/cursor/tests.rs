//! The cursor's tests: unit tests of each rule, and a property test that
//! drives it like the poller does (prefetch, crashes, graceful stops)
//! against the hostile listing model the simulator serves.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::model::Fields;
use auditfwd_sim::listing::{Listing, ListingConfig, SortOrder, TieOrder, TotalMode};

// ---------------------------------------------------------------------------
// Helpers

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap()
}

fn ev(id: &str, ms: i64) -> Item {
    ev_content(id, ms, 1)
}

fn ev_content(id: &str, ms: i64, content: u64) -> Item {
    Item::Event(RawEvent {
        id: id.to_string(),
        key: EventKey::string_id(id),
        content,
        created_at: at(ms),
        fields: Fields::default(),
        raw: Arc::from(format!("{{\"id\":\"{id}\"}}")),
        id_reused: false,
    })
}

fn page(offset: u64, limit: u32, items: Vec<Item>, now: i64) -> PageIn {
    PageIn {
        offset,
        limit,
        items,
        total: None,
        sequential: true,
        now: at(now),
        server_date: None,
    }
}

fn batch(a: Admission) -> Batch {
    match a {
        Admission::Batch(b) => b,
        Admission::Rejected => panic!("page rejected"),
    }
}

fn ids(b: &Batch) -> Vec<&str> {
    b.events.iter().map(|e| e.id.as_str()).collect()
}

/// Commits (or skips) a batch, returning the checkpoint if any.
fn settle(c: &mut Cursor, b: Batch) -> Option<Checkpoint> {
    if b.is_empty() {
        c.skip(b)
    } else {
        let ack = Ack::for_test(b.ticket());
        Some(c.commit(b, ack))
    }
}

const LOOKBACK: Duration = Duration::from_secs(10);

fn fresh() -> Cursor {
    Cursor::new(CursorState::new("s", at(0)), LOOKBACK).with_plausible_since(i64::MIN)
}

// ---------------------------------------------------------------------------
// Unit tests

#[test]
fn first_pass_asks_one_ms_before_the_window() {
    let mut c =
        Cursor::new(CursorState::new("s", at(100_000)), LOOKBACK).with_plausible_since(i64::MIN);
    let plan = c.begin_pass(at(200_000), PassKind::Sweep);
    assert_eq!(plan.window_start_ms, 100_000);
    assert_eq!(plan.since, at(99_999));
    assert_eq!(c.next(), Next::Fetch(0));
}

#[test]
fn repeats_are_skipped_reused_ids_delivered_again_and_id_types_kept() {
    let mut c = fresh();
    c.begin_pass(at(10_000), PassKind::Sweep);
    let b = batch(
        c.admit(page(
            0,
            10,
            vec![ev("a", 1000), ev("b", 999), ev("a", 1000), ev("x", 998)],
            10_000,
        ))
        .unwrap(),
    );
    assert_eq!(ids(&b), ["a", "b", "x"]);
    assert_eq!(b.stats.duplicates, 1);
    assert_eq!(
        b.next(),
        Next::Fetch(3),
        "one step back over the last element"
    );
    settle(&mut c, b);
    let numeric = Item::Event(RawEvent {
        key: EventKey::number_id("7"),
        ..match ev("7", 1001) {
            Item::Event(e) => e,
            _ => unreachable!(),
        }
    });
    let b = batch(
        c.admit(page(
            3,
            10,
            vec![
                ev("b", 999),
                ev_content("a", 1000, 2),
                ev("7", 1001),
                numeric,
                ev("y", 500),
            ],
            10_000,
        ))
        .unwrap(),
    );
    assert_eq!(
        ids(&b),
        ["a", "7", "7", "y"],
        "new content, and 7 is not \"7\""
    );
    assert!(b.events[0].id_reused && !b.events[1].id_reused);
    assert_eq!((b.stats.duplicates, b.stats.reused_ids), (1, 1));
    assert_eq!(b.next(), Next::Fetch(7));
    settle(&mut c, b);
    // Both versions of `a` are known now, in either order.
    let b = batch(
        c.admit(page(
            7,
            10,
            vec![ev_content("a", 1000, 2), ev("a", 1000)],
            10_000,
        ))
        .unwrap(),
    );
    assert!(b.is_empty());
}

#[test]
fn the_next_page_steps_back_over_the_boundary_ties() {
    let mut c = fresh();
    c.begin_pass(at(100_000), PassKind::Sweep);
    // Newest first; the last three share 5000 (a tie group that may
    // continue on the next page in another order).
    let items = vec![
        ev("a", 9000),
        ev("b", 8000),
        ev("c", 5000),
        ev("d", 5000),
        ev("e", 5000),
    ];
    let b = batch(c.admit(page(0, 5, items, 100_000)).unwrap());
    assert_eq!(b.next(), Next::Fetch(2));
    settle(&mut c, b);
    // The group comes back whole, in another order, with one more member.
    let items = vec![
        ev("e", 5000),
        ev("f", 5000),
        ev("c", 5000),
        ev("d", 5000),
        ev("g", 4000),
    ];
    let b = batch(c.admit(page(2, 5, items, 100_000)).unwrap());
    assert_eq!(ids(&b), ["f", "g"]);
    assert_eq!(b.next(), Next::Fetch(6));
}

#[test]
fn a_prefetched_page_counts_only_with_a_witness() {
    let mut c = fresh();
    c.begin_pass(at(100_000), PassKind::Sweep);
    let b = batch(
        c.admit(page(
            0,
            4,
            vec![ev("a", 9000), ev("b", 8000), ev("c", 7000), ev("d", 7000)],
            100_000,
        ))
        .unwrap(),
    );
    settle(&mut c, b);
    // Fetched ahead at offset 3, before page 0 arrived: it holds only the
    // boundary group and later events, no element of the front (a, b).
    let mut ahead = page(
        3,
        4,
        vec![ev("d", 7000), ev("e", 6000), ev("f", 5000), ev("g", 4000)],
        100_000,
    );
    ahead.sequential = false;
    assert!(matches!(c.admit(ahead).unwrap(), Admission::Rejected));
    // One holding `b` chains: everything at or after the boundary sorts
    // after `b` in every snapshot.
    let mut ahead = page(
        1,
        4,
        vec![ev("b", 8000), ev("d", 7000), ev("c", 7000), ev("e", 6000)],
        100_000,
    );
    ahead.sequential = false;
    let b = batch(c.admit(ahead).unwrap());
    assert_eq!(ids(&b), ["e"]);
}

#[test]
fn a_short_page_ends_the_pass_only_when_it_brings_nothing_new() {
    let mut c = fresh();
    c.begin_pass(at(100_000), PassKind::Sweep);
    // The server caps pages at 3 although limit is 10.
    let b = batch(
        c.admit(page(
            0,
            10,
            vec![ev("a", 9000), ev("b", 8000), ev("c", 7000)],
            100_000,
        ))
        .unwrap(),
    );
    assert_eq!(
        b.next(),
        Next::Fetch(2),
        "3 < limit, but it is the cap (the last element may tie with the next)"
    );
    settle(&mut c, b);
    let b = batch(
        c.admit(page(
            2,
            10,
            vec![ev("c", 7000), ev("d", 6000), ev("e", 5000)],
            100_000,
        ))
        .unwrap(),
    );
    assert_eq!(b.next(), Next::Fetch(4));
    settle(&mut c, b);
    let b = batch(
        c.admit(page(4, 10, vec![ev("e", 5000), ev("f", 4000)], 100_000))
            .unwrap(),
    );
    assert_eq!(
        b.next(),
        Next::Fetch(5),
        "short, but with new events: not trusted to be the end"
    );
    settle(&mut c, b);
    let b = batch(c.admit(page(5, 10, vec![ev("f", 4000)], 100_000)).unwrap());
    assert_eq!(
        b.next(),
        Next::Done(Outcome::Complete),
        "short and nothing unread: the end"
    );
    settle(&mut c, b);
    let cp = c.finish_pass();
    assert_eq!(cp.end.unwrap().watermark_ms, Some(9000));
}

#[test]
fn a_trusted_total_saves_the_confirming_request() {
    let mut c = fresh();
    // A first pass of five events teaches the cursor the page size.
    let five: Vec<Item> = (0..5).map(|i| ev(&format!("first{i}"), 1000 + i)).collect();
    c.begin_pass(at(100_000), PassKind::Sweep);
    let b = batch(c.admit(page(0, 10, five, 100_000)).unwrap());
    settle(&mut c, b);
    let b = batch(
        c.admit(page(4, 10, vec![ev("first0", 1000)], 100_000))
            .unwrap(),
    );
    assert_eq!(b.next(), Next::Done(Outcome::Complete));
    settle(&mut c, b);
    c.finish_pass();
    // Then passes of three new events: a short page with new events is not
    // the end until `total` has proven itself three times.
    let mut requests = Vec::new();
    for pass in 0..5 {
        c.begin_pass(at(200_000 + pass), PassKind::Sweep);
        let three: Vec<(String, i64)> = (0..3)
            .map(|i| (format!("p{pass}-{i}"), 50_000 + pass * 10 + 3 - i))
            .collect();
        let mut n = 0;
        while let Next::Fetch(offset) = c.next() {
            n += 1;
            let items = three
                .iter()
                .skip(offset as usize)
                .map(|(id, ms)| ev(id, *ms))
                .collect();
            let mut p = page(offset, 10, items, 200_000);
            p.total = Some(3);
            let b = batch(c.admit(p).unwrap());
            settle(&mut c, b);
        }
        c.finish_pass();
        requests.push(n);
    }
    assert_eq!(requests, [2, 2, 2, 1, 1]);
}

#[test]
fn events_outside_every_window_are_delivered_once_and_never_move_the_watermark() {
    let mut c =
        Cursor::new(CursorState::new("s", at(500_000)), LOOKBACK).with_plausible_since(i64::MIN);
    let listing = [
        ev("future", 253_402_300_799_999),
        ev("now", 900_000),
        ev("older", 899_000),
        ev("past", -62_135_596_800_000),
    ];
    for round in 0..2 {
        c.begin_pass(at(1_000_000), PassKind::Sweep);
        let mut got = Vec::new();
        let mut strays = 0;
        while let Next::Fetch(offset) = c.next() {
            let items = listing
                .iter()
                .skip(offset as usize)
                .take(3)
                .map(|i| match i {
                    Item::Event(e) => ev(&e.id, e.created_ms()),
                    Item::Malformed(_) => unreachable!(),
                })
                .collect();
            let b = batch(c.admit(page(offset, 3, items, 1_000_000)).unwrap());
            got.extend(b.events.iter().map(|e| e.id.clone()));
            strays += b.stats.strays;
            settle(&mut c, b);
        }
        c.finish_pass();
        if round == 0 {
            assert_eq!(got, ["future", "now", "older", "past"]);
            assert_eq!(strays, 2);
        } else {
            assert!(got.is_empty(), "{got:?}");
        }
        assert_eq!(c.state().watermark_ms, 900_000);
        assert_eq!(c.state().strays.len(), 2);
    }
}

#[test]
fn a_page_of_history_means_the_api_ignores_since() {
    let mut c =
        Cursor::new(CursorState::new("s", at(1_000_000)), LOOKBACK).with_plausible_since(i64::MIN);
    c.begin_pass(at(2_000_000), PassKind::Sweep);
    let items = (0..20)
        .map(|i| ev(&format!("old{i}"), 10_000 + i))
        .collect();
    let err = c.admit(page(0, 20, items, 2_000_000)).unwrap_err();
    assert!(
        err.to_string().contains("ignores the `since` parameter"),
        "{err}"
    );
}

/// One pass over a fixed newest-first list of `(id, ms)` in pages of
/// `limit`, every response carrying `date`; returns the ids delivered and
/// the stats of the first page.
fn drive(
    c: &mut Cursor,
    list: &[(&str, i64)],
    limit: usize,
    now: i64,
    date: Option<i64>,
) -> (Vec<String>, AdmitStats) {
    c.begin_pass(at(now), PassKind::Sweep);
    let mut got = Vec::new();
    let mut first = None;
    while let Next::Fetch(offset) = c.next() {
        let items = list
            .iter()
            .skip(offset as usize)
            .take(limit)
            .map(|(id, ms)| ev(id, *ms))
            .collect();
        let mut p = page(offset, limit as u32, items, now);
        p.server_date = date.map(at);
        let b = batch(c.admit(p).unwrap());
        got.extend(b.events.iter().map(|e| e.id.clone()));
        first.get_or_insert(b.stats.clone());
        settle(c, b);
    }
    c.finish_pass();
    (got, first.unwrap_or_default())
}

#[test]
fn head_passes_read_only_what_is_new_and_a_sweep_finds_late_events() {
    let mut c = fresh();
    let late_sweep = Duration::from_secs(60);
    // The first pass is a sweep (nothing swept yet).
    assert_eq!(c.due(at(100_000), late_sweep), PassKind::Sweep);
    drive(&mut c, &[("b", 90_000), ("a", 80_000)], 10, 100_000, None);
    assert_eq!(c.state().head_ms, Some(90_000));
    assert_eq!(c.state().watermark_ms, 90_000);
    // Between sweeps: head passes from the newest delivered time.
    assert_eq!(c.due(at(110_000), late_sweep), PassKind::Head);
    let plan = c.begin_pass(at(110_000), PassKind::Head);
    assert_eq!(plan.kind, PassKind::Head);
    assert_eq!(
        plan.window_start_ms, 89_000,
        "newest minus the precision margin"
    );
    c.finish_pass();
    // A new event, and a late one (created before the head, visible now).
    let list = [
        ("c", 105_000),
        ("b", 90_000),
        ("late", 85_000),
        ("a", 80_000),
    ];
    let head = |c: &mut Cursor, list: &[(&str, i64)], now| {
        c.begin_pass(at(now), PassKind::Head);
        let since = c.state().head_ms.unwrap() - PRECISION_MARGIN_MS;
        let visible: Vec<(&str, i64)> = list
            .iter()
            .copied()
            .filter(|(_, ms)| *ms >= since)
            .collect();
        let mut got = Vec::new();
        while let Next::Fetch(offset) = c.next() {
            let items = visible
                .iter()
                .skip(offset as usize)
                .take(10)
                .map(|(id, ms)| ev(id, *ms))
                .collect();
            let b = batch(c.admit(page(offset, 10, items, now)).unwrap());
            got.extend(b.events.iter().map(|e| e.id.clone()));
            settle(c, b);
        }
        c.finish_pass();
        got
    };
    assert_eq!(head(&mut c, &list, 120_000), ["c"]);
    assert_eq!(c.state().head_ms, Some(105_000));
    assert_eq!(
        c.state().watermark_ms,
        90_000,
        "a head pass does not move it"
    );
    // The sweep, once due, reads the whole window and finds the late one.
    assert_eq!(c.due(at(170_000), late_sweep), PassKind::Sweep);
    let (got, _) = drive(&mut c, &list, 10, 170_000, None);
    assert_eq!(got, ["late"]);
    assert_eq!(c.state().watermark_ms, 105_000);
}

#[test]
fn a_server_date_far_behind_is_not_used_but_event_times_bound_the_watermark() {
    // A Date header in 1970: ignored, the newest event bounds the watermark.
    let mut c = fresh();
    let list = [("a", 9_000_000), ("b", 8_000_000)];
    let (got, stats) = drive(&mut c, &list, 10, 10_000_000, Some(0));
    assert_eq!(got, ["a", "b"]);
    assert!(stats.date_skew_ms.is_some());
    assert_eq!(c.state().watermark_ms, 9_000_000);

    // A sane Date lowers the pass start (a fast local clock).
    let mut c = fresh();
    let list = [("a", 99_000), ("b", 98_000)];
    drive(&mut c, &list, 10, 100_500, Some(90_700));
    assert_eq!(c.state().watermark_ms, 90_000);
}

#[test]
fn an_api_ignoring_offset_ends_the_pass_without_moving_the_watermark() {
    let mut c = fresh();
    c.begin_pass(at(100_000), PassKind::Sweep);
    let same = || vec![ev("a", 9000), ev("b", 8000), ev("c", 7000)];
    let mut pages = 0;
    while let Next::Fetch(o) = c.next() {
        let b = batch(c.admit(page(o, 3, same(), 100_000)).unwrap());
        settle(&mut c, b);
        pages += 1;
        assert!(pages < 100, "the pass never ends");
    }
    assert_eq!(c.next(), Next::Done(Outcome::OffsetIgnored));
    let cp = c.finish_pass();
    assert_eq!(cp.end.unwrap().watermark_ms, None);
}

#[test]
fn a_restart_resumes_the_pass_where_its_last_checkpoint_was() {
    let mut c = fresh();
    let mut durable = c.state().clone();
    c.begin_pass(at(100_000), PassKind::Sweep);
    let b = batch(
        c.admit(page(0, 2, vec![ev("a", 9000), ev("b", 8000)], 100_000))
            .unwrap(),
    );
    durable.apply(&settle(&mut c, b).unwrap());
    // The next batch reaches the sinks but the process dies before the
    // checkpoint.
    let b = batch(
        c.admit(page(1, 2, vec![ev("b", 8000), ev("c", 7000)], 100_000))
            .unwrap(),
    );
    assert_eq!(ids(&b), ["c"]);
    let mut c = Cursor::new(durable.clone(), LOOKBACK).with_plausible_since(i64::MIN);
    let plan = c.begin_pass(at(200_000), PassKind::Sweep);
    assert!(plan.resumed);
    assert_eq!(c.next(), Next::Fetch(1), "resumes at the saved offset");
    let b = batch(
        c.admit(page(1, 2, vec![ev("b", 8000), ev("c", 7000)], 200_000))
            .unwrap(),
    );
    assert_eq!(ids(&b), ["c"], "the unacknowledged batch again");
    durable.apply(&settle(&mut c, b).unwrap());
    let b = batch(c.admit(page(2, 2, vec![ev("c", 7000)], 200_000)).unwrap());
    if let Some(cp) = settle(&mut c, b) {
        durable.apply(&cp);
    }
    durable.apply(&c.finish_pass());
    assert_eq!(&durable, c.state());
    assert_eq!(
        c.state().watermark_ms,
        9000,
        "the original pass start bounds it"
    );
    assert_eq!(c.state().delivered_total, 3);
}

#[test]
fn a_graceful_stop_saves_the_position() {
    let mut c = fresh();
    c.begin_pass(at(100_000), PassKind::Sweep);
    let b = batch(
        c.admit(page(0, 2, vec![ev("a", 9000), ev("b", 8000)], 100_000))
            .unwrap(),
    );
    settle(&mut c, b);
    let cp = c.finish_pass();
    assert_eq!(
        cp.pass.unwrap().offset,
        1,
        "after `a`, before the boundary `b`"
    );
    assert!(cp.end.is_none());
    let mut c = Cursor::new(c.state().clone(), LOOKBACK).with_plausible_since(i64::MIN);
    assert!(c.begin_pass(at(300_000), PassKind::Sweep).resumed);
    assert_eq!(c.next(), Next::Fetch(1));
}

/// Three pages admitted before any is acknowledged: each checkpoint
/// persists its own batch's keys and position, not the latest page's.
#[test]
fn batches_in_flight_commit_their_own_progress_in_order() {
    let mut c = fresh();
    let mut durable = c.state().clone();
    c.begin_pass(at(100_000), PassKind::Sweep);
    let b1 = batch(
        c.admit(page(0, 2, vec![ev("a", 9000), ev("b", 8000)], 100_000))
            .unwrap(),
    );
    assert_eq!(c.next(), Next::Fetch(1), "admission moved the pass on");
    let b2 = batch(
        c.admit(page(1, 2, vec![ev("b", 8000), ev("c", 7000)], 100_000))
            .unwrap(),
    );
    let b3 = batch(
        c.admit(page(2, 2, vec![ev("c", 7000), ev("d", 6000)], 100_000))
            .unwrap(),
    );
    assert_eq!((ids(&b2), ids(&b3)), (vec!["c"], vec!["d"]));
    assert_eq!(c.uncommitted(), 3);
    let cp = settle(&mut c, b1).unwrap();
    assert_eq!(
        cp.pass.unwrap().offset,
        1,
        "batch 1's position, not batch 3's"
    );
    assert_eq!(cp.pass.unwrap().newest_ms, Some(9000));
    assert_eq!(cp.acked.len(), 2);
    durable.apply(&cp);
    let cp = settle(&mut c, b2).unwrap();
    assert_eq!(cp.pass.unwrap().offset, 2);
    durable.apply(&cp);
    let cp = settle(&mut c, b3).unwrap();
    assert_eq!(cp.pass.unwrap().offset, 3);
    durable.apply(&cp);
    assert_eq!(c.uncommitted(), 0);
    assert_eq!(&durable, c.state());
}

#[test]
#[should_panic(expected = "in the order they were admitted")]
fn a_batch_can_not_be_committed_before_the_one_admitted_before_it() {
    let mut c = fresh();
    c.begin_pass(at(100_000), PassKind::Sweep);
    let _b1 = batch(
        c.admit(page(0, 2, vec![ev("a", 9000), ev("b", 8000)], 100_000))
            .unwrap(),
    );
    let b2 = batch(
        c.admit(page(1, 2, vec![ev("b", 8000), ev("c", 7000)], 100_000))
            .unwrap(),
    );
    settle(&mut c, b2);
}

/// A boundary tie group shown again on the next page while the batch that
/// delivered it is still in flight is not delivered twice.
#[test]
fn keys_in_flight_count_as_delivered_for_the_next_page() {
    let mut c = fresh();
    c.begin_pass(at(100_000), PassKind::Sweep);
    let items = vec![ev("a", 9000), ev("b", 8000), ev("c", 5000), ev("d", 5000)];
    let b1 = batch(c.admit(page(0, 4, items, 100_000)).unwrap());
    assert_eq!(b1.next(), Next::Fetch(2));
    let items = vec![
        ev("d", 5000),
        ev("c", 5000),
        ev_content("b", 8000, 2),
        ev("e", 4000),
    ];
    let b2 = batch(c.admit(page(2, 4, items, 100_000)).unwrap());
    assert_eq!(ids(&b2), ["b", "e"], "c and d are in flight already");
    assert!(
        b2.events[0].id_reused,
        "b with other content is another event"
    );
    let (cp1, cp2) = (settle(&mut c, b1).unwrap(), settle(&mut c, b2).unwrap());
    assert_eq!(cp1.acked.len() + cp2.acked.len(), 6);
}

/// A pass interrupted with batches in flight saves the last committed
/// position: the restart reads the unacknowledged pages again. And a pass
/// whose last page is not committed does not complete.
#[test]
fn an_interrupted_pass_keeps_the_last_committed_position() {
    let mut c = fresh();
    let mut durable = c.state().clone();
    c.begin_pass(at(100_000), PassKind::Sweep);
    let list = |from: usize| {
        [("a", 9000), ("b", 8000), ("c", 7000)][from..]
            .iter()
            .take(2)
            .map(|(id, ms)| ev(id, *ms))
            .collect::<Vec<_>>()
    };
    let b1 = batch(c.admit(page(0, 2, list(0), 100_000)).unwrap());
    let b2 = batch(c.admit(page(1, 2, list(1), 100_000)).unwrap());
    let b3 = batch(c.admit(page(2, 2, list(2), 100_000)).unwrap());
    assert_eq!(b3.next(), Next::Done(Outcome::Complete));
    assert_eq!(ids(&b2), ["c"]);
    durable.apply(&settle(&mut c, b1).unwrap());
    // Batches 2 and 3 never come back from the sinks.
    drop((b2, b3));
    let cp = c.finish_pass();
    assert!(
        cp.end.is_none(),
        "not complete: batch 2 was never committed"
    );
    assert_eq!(cp.pass.unwrap().offset, 1);
    durable.apply(&cp);
    let mut c = Cursor::new(durable.clone(), LOOKBACK).with_plausible_since(i64::MIN);
    assert!(c.begin_pass(at(200_000), PassKind::Sweep).resumed);
    assert_eq!(c.next(), Next::Fetch(1));
    let b = batch(c.admit(page(1, 2, list(1), 200_000)).unwrap());
    assert_eq!(ids(&b), ["c"], "the unacknowledged event again");
}

/// Pages through `listing` (one snapshot) from the cursor's next offset
/// until the pass ends; returns the delivered ids.
fn read_pass(
    c: &mut Cursor,
    listing: &Listing<(String, i64)>,
    config: &ListingConfig,
    since: i64,
    limit: usize,
    now: i64,
    rng: &mut StdRng,
) -> (Vec<String>, usize) {
    let mut delivered = Vec::new();
    let mut groups = 0;
    while let Next::Fetch(offset) = c.next() {
        let (items, total) = listing.page(config, Some(since), None, offset as usize, limit, rng);
        let items = items.into_iter().map(|(id, ms)| ev(&id, ms)).collect();
        let mut p = page(offset, limit as u32, items, now);
        p.total = total;
        let b = batch(c.admit(p).unwrap());
        delivered.extend(b.events.iter().map(|e| e.id.clone()));
        groups += usize::from(b.stats.tie_group.is_some());
        settle(c, b);
    }
    c.finish_pass();
    (delivered, groups)
}

#[test]
fn a_tie_group_larger_than_a_page_in_a_fresh_order_per_request_is_read_whole() {
    for order in [
        SortOrder::NewestFirst,
        SortOrder::OldestFirst,
        SortOrder::InsertedFirst,
    ] {
        let mut listing = Listing::default();
        let mut seq = 0;
        for i in 0..30 {
            listing.insert(1000 + i, seq, (format!("before{i}"), 1000 + i));
            seq += 1;
        }
        for i in 0..250 {
            listing.insert(5000, seq, (format!("bulk{i}"), 5000));
            seq += 1;
        }
        for i in 0..30 {
            listing.insert(9000 + i, seq, (format!("after{i}"), 9000 + i));
            seq += 1;
        }
        let config = ListingConfig {
            order,
            ties: TieOrder::Shuffled,
            ..ListingConfig::default()
        };
        let mut rng = StdRng::seed_from_u64(9);
        let mut c = fresh();
        c.begin_pass(at(1_000_000), PassKind::Sweep);
        let (got, groups) = read_pass(&mut c, &listing, &config, -1, 40, 1_000_000, &mut rng);
        assert_eq!(groups, 1, "{order:?}: one oversized group reported");
        let unique: std::collections::HashSet<&String> = got.iter().collect();
        assert_eq!(unique.len(), got.len(), "{order:?}: duplicates");
        assert_eq!(got.len(), 310, "{order:?}: every member of the group");
    }
}

/// A group larger than a page that the API returns in one fixed order is
/// read once forward and once to confirm the order, not re-sampled until
/// every member was seen [`GROUP_SIGHTINGS`] times (issue: cheap on the
/// API); in a fresh order per request it still is.
#[test]
fn a_tie_group_in_a_fixed_order_is_confirmed_by_one_round() {
    let requests = |ties: TieOrder| {
        let mut listing = Listing::default();
        let mut seq = 0;
        for i in 0..30 {
            listing.insert(1000 + i, seq, (format!("before{i}"), 1000 + i));
            seq += 1;
        }
        for i in 0..250 {
            listing.insert(5000, seq, (format!("bulk{i}"), 5000));
            seq += 1;
        }
        let config = ListingConfig {
            order: SortOrder::NewestFirst,
            ties,
            ..ListingConfig::default()
        };
        let mut rng = StdRng::seed_from_u64(3);
        let mut c = fresh();
        c.begin_pass(at(1_000_000), PassKind::Sweep);
        let (mut n, mut got, mut report) = (0, std::collections::HashSet::new(), None);
        while let Next::Fetch(offset) = c.next() {
            n += 1;
            let (items, total) =
                listing.page(&config, Some(-1), None, offset as usize, 40, &mut rng);
            let items = items.into_iter().map(|(id, ms)| ev(&id, ms)).collect();
            let mut p = page(offset, 40, items, 1_000_000);
            p.total = total;
            let b = batch(c.admit(p).unwrap());
            got.extend(b.events.iter().map(|e| e.id.clone()));
            report = report.or(b.stats.tie_group);
            settle(&mut c, b);
        }
        assert_eq!(got.len(), 280, "{ties:?}: every event");
        let report = report.expect("an oversized group was reported");
        assert!(report.confirmed && report.size == 250, "{report:?}");
        n
    };
    let fixed = requests(TieOrder::Stable);
    let shuffled = requests(TieOrder::Shuffled);
    // 280 events at 40 a page: 8 pages forward, 7 to confirm, a boundary.
    assert!(fixed <= 20, "a fixed order took {fixed} requests");
    eprintln!("fixed order: {fixed} requests, fresh order: {shuffled}");
    assert!(
        shuffled as u64 >= GROUP_SIGHTINGS * 250 / 40,
        "a fresh order per request ended after {shuffled} requests"
    );
}

/// A listing of `n` events, one every 50 ms, pairs of them on one
/// millisecond.
fn backfill_listing(n: usize) -> Listing<(String, i64)> {
    let mut listing = Listing::default();
    for i in 0..n {
        let ms = 1_000_000 + (i as i64 / 2) * 50;
        listing.insert(ms, i as u64, (format!("e{i:06}"), ms));
    }
    listing
}

#[test]
fn a_backfill_keeps_a_bounded_state_in_every_order() {
    for order in [
        SortOrder::NewestFirst,
        SortOrder::OldestFirst,
        SortOrder::InsertedFirst,
        SortOrder::InsertedLast,
    ] {
        let listing = backfill_listing(20_000);
        let config = ListingConfig {
            order,
            ties: TieOrder::Shuffled,
            ..ListingConfig::default()
        };
        let mut rng = StdRng::seed_from_u64(3);
        let now = 10_000_000;
        let mut c = fresh();
        c.begin_pass(at(now), PassKind::Sweep);
        let mut durable = c.state().clone();
        let (mut max_seen, mut delivered) = (0, 0usize);
        while let Next::Fetch(offset) = c.next() {
            let (items, _) = listing.page(&config, Some(-1), None, offset as usize, 100, &mut rng);
            let items = items.into_iter().map(|(id, ms)| ev(&id, ms)).collect();
            let b = batch(c.admit(page(offset, 100, items, now)).unwrap());
            delivered += b.events.len();
            if let Some(cp) = settle(&mut c, b) {
                durable.apply(&cp);
            }
            max_seen = max_seen.max(c.state().seen.len());
        }
        durable.apply(&c.finish_pass());
        assert_eq!(delivered, 20_000, "{order:?}");
        // The next pass's window (the newest events) plus the last pages.
        let newest = listing.iter().map(|(_, ms)| *ms).max().unwrap();
        let keep_from = newest - LOOKBACK.as_millis() as i64 - PRECISION_MARGIN_MS;
        let window = listing.iter().filter(|(_, ms)| *ms >= keep_from).count();
        let bound = window + RECENT_IDS as usize + 100;
        assert!(
            max_seen <= bound,
            "{order:?}: seen grew to {max_seen} ids during a 20,000-event backfill (bound {bound})"
        );
        assert_eq!(&durable, c.state(), "{order:?}: replay equals live");
    }
}

// ---------------------------------------------------------------------------
// Property test: the cursor driven like the poller drives it, against the
// hostile listing model.

#[derive(Debug, Clone)]
struct Scenario {
    seed: u64,
    order: SortOrder,
    inclusive: bool,
    shuffled: bool,
    page_size: usize,
    page_cap: Option<usize>,
    total: TotalMode,
    coarse: bool,
    tie_ratio: f64,
    burst_ratio: f64,
    late_ratio: f64,
    odd_ratio: f64,
    crash_ratio: f64,
    prefetch: usize,
    /// Batches admitted before the oldest must be acknowledged.
    ahead: usize,
    backlog: usize,
    late_sweep_ms: u64,
}

/// One event of the model tenant.
#[derive(Debug, Clone)]
struct ModelEvent {
    key: EventKey,
    id: String,
    content: u64,
    /// Shown `created_at`; `None` for an element without one.
    shown: Option<i64>,
}

impl ModelEvent {
    fn item(&self) -> Item {
        match self.shown {
            Some(ms) => Item::Event(RawEvent {
                id: self.id.clone(),
                key: self.key,
                content: self.content,
                created_at: at(ms),
                fields: Fields::default(),
                raw: Arc::from(""),
                id_reused: false,
            }),
            None => Item::Malformed(Malformed {
                id: None,
                key: self.key,
                content: self.content,
                created_at: None,
                reason: "`created_at` is missing".into(),
                raw: Arc::from(""),
            }),
        }
    }
}

/// The model tenant: a listing plus the generator of its events.
struct Tenant {
    listing: Listing<Arc<ModelEvent>>,
    config: ListingConfig,
    all: Vec<(i64, Arc<ModelEvent>)>,
    seq: u64,
    last_ms: i64,
    coarse: bool,
}

const FAR_FUTURE: i64 = 253_402_300_799_999;
/// The model's times are near 1970: bogus ones lie below this.
const PLAUSIBLE: i64 = 100_000;
const BOGUS: [i64; 3] = [FAR_FUTURE, 0, -62_135_596_800_000];

impl Tenant {
    fn insert(&mut self, mut stored: i64, rng: &mut StdRng, odd_ratio: f64) {
        let seq = self.seq;
        self.seq += 1;
        let mut shown = Some(if self.coarse {
            stored.div_euclid(1000) * 1000
        } else {
            stored
        });
        let mut key = EventKey::string_id(&format!("e{seq}"));
        let mut id = format!("e{seq}");
        let content = rng.random::<u64>() >> 1;
        if rng.random_bool(odd_ratio) {
            match rng.random_range(0..6) {
                // A bogus shown time for a correctly stored event.
                0 => shown = Some(BOGUS[rng.random_range(0..3)]),
                // An element without created_at (dead letter).
                1 => shown = None,
                // A reused id, other content.
                2 if !self.all.is_empty() => {
                    let old = &self.all[rng.random_range(0..self.all.len())].1;
                    key = old.key;
                    id = old.id.clone();
                }
                // A numeric id, and the same digits as a string id.
                3 => {
                    key = EventKey::number_id(&seq.to_string());
                    id = seq.to_string();
                }
                // Stored (and shown) in the year 9999: in every window.
                4 => {
                    stored = FAR_FUTURE;
                    shown = Some(FAR_FUTURE);
                }
                _ => key = EventKey::string_id(&seq.to_string()),
            }
        }
        let event = Arc::new(ModelEvent {
            key,
            id,
            content,
            shown,
        });
        self.listing.insert(stored, seq, event.clone());
        self.all.push((stored, event));
    }

    fn page(
        &self,
        since: i64,
        offset: u64,
        limit: usize,
        rng: &mut StdRng,
    ) -> (Vec<Item>, Option<u64>) {
        let (events, total) =
            self.listing
                .page(&self.config, Some(since), None, offset as usize, limit, rng);
        (events.iter().map(|e| e.item()).collect(), total)
    }
}

/// A request in flight: either served when issued, or when its answer is
/// awaited (so prefetched pages see a listing older or newer than the page
/// before them).
struct Request {
    offset: u64,
    after: u64,
    served: Option<(Vec<Item>, Option<u64>)>,
}

fn run_scenario(s: &Scenario) -> Result<(), TestCaseError> {
    let mut rng = StdRng::seed_from_u64(s.seed);
    let lookback_ms = 2000i64;
    let lookback = Duration::from_millis(lookback_ms as u64);
    let mut now = 1_000_000i64;
    let mut tenant = Tenant {
        listing: Listing::default(),
        config: ListingConfig {
            order: s.order,
            since_inclusive: s.inclusive,
            ties: if s.shuffled {
                TieOrder::Shuffled
            } else {
                TieOrder::Stable
            },
            page_cap: s.page_cap,
            total: s.total,
        },
        all: Vec::new(),
        seq: 0,
        last_ms: now - 50_000,
        coarse: s.coarse,
    };
    let limit = s.page_size;
    let arrive = |tenant: &mut Tenant, rng: &mut StdRng, now: i64, backlog: bool| {
        if rng.random_bool(s.burst_ratio) {
            // A bulk operation: up to three pages on one millisecond.
            let at = if backlog { tenant.last_ms + 1 } else { now };
            for _ in 0..rng.random_range(2..=3 * limit + 2) {
                tenant.insert(at, rng, s.odd_ratio);
            }
            tenant.last_ms = at;
            return;
        }
        let c = if rng.random_bool(s.tie_ratio) {
            // Same millisecond as the previous event, unless that would make
            // this one later than `lookback` (outside the API's contract).
            if backlog {
                tenant.last_ms
            } else {
                tenant.last_ms.max(now - lookback_ms)
            }
        } else if !backlog && rng.random_bool(s.late_ratio) {
            now - rng.random_range(0..=lookback_ms)
        } else if backlog {
            tenant.last_ms + rng.random_range(0..40)
        } else {
            now
        };
        tenant.last_ms = c;
        tenant.insert(c, rng, s.odd_ratio);
    };
    for _ in 0..s.backlog {
        arrive(&mut tenant, &mut rng, now, true);
    }

    let floor = now - 60_000;
    let mut durable = CursorState::new("s", at(floor));
    let mut cursor = Cursor::new(durable.clone(), lookback).with_plausible_since(PLAUSIBLE);
    // Sent to the sinks (duplicates are judged on these) and acknowledged
    // by them, i.e. committed (loss is judged on these: a batch handed to
    // the sinks but never acknowledged may not have arrived).
    let mut delivered: HashMap<(EventKey, u64), u32> = HashMap::new();
    let mut acknowledged: std::collections::HashSet<(EventKey, u64)> = Default::default();
    let mut first_seen: HashMap<(EventKey, u64), String> = HashMap::new();
    let mut allowance: HashMap<(EventKey, u64), u32> = HashMap::new();
    let mut frozen = false;
    let mut quiet_passes = 0;

    let live_until = now + 20_000;
    for round in 0..1000 {
        if !frozen && (round == 200 || now > live_until) {
            frozen = true;
            now += lookback_ms + 10;
        }
        let kind = cursor.due(at(now), Duration::from_millis(s.late_sweep_ms));
        let plan = cursor.begin_pass(at(now), kind);
        let since = plan.since.timestamp_millis();
        let mut inflight: VecDeque<Request> = VecDeque::new();
        // Batches admitted and handed to the sinks, not yet acknowledged
        // (at most `s.ahead`), oldest first, with what each carries.
        let mut window: VecDeque<(Batch, Vec<(EventKey, u64)>)> = VecDeque::new();
        let mut arrived = 0u64;
        let mut new_in_pass = 0;
        let mut pass_pages = 0u64;
        let mut interrupted = false;
        // Acknowledges and commits the oldest batch in flight.
        let commit_oldest = |cursor: &mut Cursor,
                             window: &mut VecDeque<(Batch, Vec<(EventKey, u64)>)>,
                             durable: &mut CursorState,
                             acknowledged: &mut std::collections::HashSet<(EventKey, u64)>|
         -> Result<(), TestCaseError> {
            let (b, got) = window.pop_front().expect("a batch in flight");
            if let Some(cp) = settle(cursor, b) {
                prop_assert!(durable.apply(&cp));
            }
            acknowledged.extend(got);
            Ok(())
        };
        // Batches never acknowledged (a crash, or a stop while a sink
        // fails) may have reached the sinks: they may come again.
        let drop_window =
            |window: &mut VecDeque<(Batch, Vec<(EventKey, u64)>)>,
             allowance: &mut HashMap<(EventKey, u64), u32>| {
                for (_, got) in window.drain(..) {
                    for k in got {
                        *allowance.entry(k).or_default() += 1;
                    }
                }
            };
        loop {
            // Time passes and events arrive while we page.
            now += rng.random_range(0..30);
            if !frozen && now <= live_until && rng.random_bool(0.25) {
                for _ in 0..rng.random_range(1..=limit.min(3)) {
                    arrive(&mut tenant, &mut rng, now, false);
                }
            }
            let offset = match cursor.next() {
                Next::Fetch(offset) if window.len() < s.ahead => offset,
                Next::Done(outcome) if window.is_empty() => {
                    prop_assert_eq!(outcome, Outcome::Complete);
                    break;
                }
                // The window is full, or the pass is read: wait for the
                // oldest acknowledgement.
                _ => {
                    commit_oldest(&mut cursor, &mut window, &mut durable, &mut acknowledged)?;
                    continue;
                }
            };
            pass_pages += 1;
            prop_assert!(
                pass_pages < 100 * (tenant.listing.len() as u64 + 10),
                "a pass never ends: {pass_pages} pages over {} events, at offset {offset}, mode {:?}",
                tenant.listing.len(),
                cursor.run.as_ref().map(|r| format!("{:?}", r.mode))
            );
            let (items, total, asked, sequential) = match inflight.pop_front() {
                Some(r) => {
                    let sequential = r.offset == offset && r.after >= arrived;
                    let (items, total) = match r.served {
                        Some(served) => served,
                        None => tenant.page(since, r.offset, limit, &mut rng),
                    };
                    (items, total, r.offset, sequential)
                }
                None => {
                    let (items, total) = tenant.page(since, offset, limit, &mut rng);
                    (items, total, offset, true)
                }
            };
            arrived += 1;
            let seen_items: String = if std::env::var_os("AUDITFWD_CURSOR_PAGES").is_some() {
                items
                    .iter()
                    .map(|i| format!("{}:{:?}", &format!("{:?}", i.key())[..6], i.created_ms()))
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                String::new()
            };
            let admission = cursor
                .admit(PageIn {
                    offset: asked,
                    limit: limit as u32,
                    items,
                    total,
                    sequential,
                    now: at(now),
                    server_date: None,
                })
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let b = match admission {
                Admission::Batch(b) => b,
                Admission::Rejected => {
                    inflight.clear();
                    continue;
                }
            };
            let mode = cursor
                .run
                .as_ref()
                .map(|r| {
                    format!("{:?}", r.mode)
                        .chars()
                        .take(160)
                        .collect::<String>()
                })
                .unwrap_or_default();
            if std::env::var_os("AUDITFWD_CURSOR_PAGES").is_some() {
                eprintln!(
                    "r{round} p{pass_pages} @{asked} seq={sequential} [{seen_items}] new={:?} next={:?} in flight={} mode={}",
                    b.events
                        .iter()
                        .map(|e| (format!("{:?}", e.key)[..6].to_string(), e.created_ms()))
                        .collect::<Vec<_>>(),
                    b.next(),
                    window.len(),
                    &mode[..mode.len().min(120)]
                );
            }
            new_in_pass += b.events.len() + b.dead.len();
            let got: Vec<(EventKey, u64)> = b
                .events
                .iter()
                .map(|e| (e.key, e.content))
                .chain(b.dead.iter().map(|m| (m.key, m.content)))
                .collect();
            for k in &got {
                let n = delivered.entry(*k).or_default();
                *n += 1;
                let here = format!(
                    "round {round} page {pass_pages} offset {asked} seq {sequential} in flight {} W {} mode {mode}",
                    window.len(),
                    cursor.state().watermark_ms
                );
                if *n > 1 + allowance.get(k).copied().unwrap_or(0) {
                    let shown = tenant
                        .all
                        .iter()
                        .find(|(_, e)| (e.key, e.content) == *k)
                        .map(|(st, e)| (*st, e.shown));
                    prop_assert!(
                        false,
                        "{k:?} (stored, shown) {shown:?} delivered again at {here}; first at {}",
                        first_seen.get(k).cloned().unwrap_or_default()
                    );
                }
                first_seen.entry(*k).or_insert(here);
            }
            // Ask for what comes next while this batch is "delivered".
            if let Next::Fetch(next) = b.next() {
                if inflight.front().is_none_or(|r| r.offset != next) {
                    inflight.clear();
                    inflight.push_back(Request {
                        offset: next,
                        after: arrived,
                        served: None,
                    });
                }
                let have = inflight.len() - 1;
                if s.prefetch > have {
                    let last = inflight.back().map_or(next, |r| r.offset);
                    for ahead in cursor.lookahead(&b, last, s.prefetch - have) {
                        let served = rng
                            .random_bool(0.5)
                            .then(|| tenant.page(since, ahead, limit, &mut rng));
                        inflight.push_back(Request {
                            offset: ahead,
                            after: arrived,
                            served,
                        });
                    }
                }
            } else {
                inflight.clear();
            }
            window.push_back((b, got));
            prop_assert_eq!(cursor.uncommitted(), window.len() as u64);
            if !frozen && rng.random_bool(s.crash_ratio) {
                // A crash after the sinks got the batches in flight, before
                // their checkpoints (some may have been acknowledged
                // first: commit a random number of the oldest).
                for _ in 0..rng.random_range(0..window.len()) {
                    commit_oldest(&mut cursor, &mut window, &mut durable, &mut acknowledged)?;
                }
                drop_window(&mut window, &mut allowance);
                cursor = Cursor::new(durable.clone(), lookback).with_plausible_since(PLAUSIBLE);
                interrupted = true;
                break;
            }
            // Acknowledgements arrive at any time, in order.
            while !window.is_empty() && rng.random_bool(0.5) {
                commit_oldest(&mut cursor, &mut window, &mut durable, &mut acknowledged)?;
            }
            if !frozen && rng.random_bool(s.crash_ratio / 2.0) {
                // A stop in the middle of a pass: the batches still in
                // flight are abandoned (a sink failing at shutdown), the
                // position of the last one acknowledged is saved.
                drop_window(&mut window, &mut allowance);
                prop_assert!(durable.apply(&cursor.finish_pass()));
                cursor = Cursor::new(durable.clone(), lookback).with_plausible_since(PLAUSIBLE);
                interrupted = true;
                break;
            }
        }
        if !interrupted {
            prop_assert!(durable.apply(&cursor.finish_pass()));
            prop_assert_eq!(
                &durable,
                cursor.state(),
                "replayed checkpoints equal the live state"
            );
        }
        now += rng.random_range(1..200);
        // Caught up: sweeps (which find late events) bring nothing new.
        if frozen && !interrupted && plan.kind == PassKind::Sweep {
            quiet_passes = if new_in_pass == 0 {
                quiet_passes + 1
            } else {
                0
            };
            if quiet_passes >= 3 {
                break;
            }
        }
    }
    prop_assert!(quiet_passes >= 3, "the forwarder never caught up");

    let expected: Vec<(EventKey, u64)> = tenant
        .all
        .iter()
        .filter(|(stored, _)| *stored >= floor)
        .map(|(_, e)| (e.key, e.content))
        .collect();
    let missing: Vec<_> = expected
        .iter()
        .filter(|k| !acknowledged.contains(*k))
        .map(|k| {
            let (stored, e) = tenant
                .all
                .iter()
                .find(|(_, e)| (e.key, e.content) == *k)
                .unwrap();
            let versions = tenant.all.iter().filter(|(_, o)| o.key == e.key).count();
            format!(
                "{k:?} stored {stored} shown {:?} versions {versions}",
                e.shown
            )
        })
        .collect();
    prop_assert!(
        missing.is_empty(),
        "missing {} of {} (W {}): {:?}",
        missing.len(),
        expected.len(),
        cursor.state().watermark_ms,
        &missing[..missing.len().min(5)]
    );
    for (k, n) in &delivered {
        let allowed = 1 + allowance.get(k).copied().unwrap_or(0);
        prop_assert!(
            *n <= allowed,
            "{k:?} delivered {n} times, only {allowed} allowed (unacknowledged resends)"
        );
    }
    // Dedup state is bounded by the lookback window, not the history.
    let keep_from = cursor.state().window_start(lookback_ms) - PRECISION_MARGIN_MS;
    let in_window = tenant
        .all
        .iter()
        .filter(|(stored, e)| e.shown.is_none_or(|ms| ms >= keep_from) && *stored >= floor)
        .count();
    prop_assert!(
        cursor.state().seen.len() <= in_window,
        "seen {} > {in_window} events in window",
        cursor.state().seen.len()
    );
    Ok(())
}

/// Scenarios the property test once failed on, kept as regressions (set
/// AUDITFWD_CURSOR_PAGES=1 to print every page when one fails):
/// an element shown out of every window trailing a page and tied with the
/// next one; a tie group larger than a page capped below `limit`, crossed
/// by late inserts in an oldest-first listing; a prefetched page whose
/// only "witness" was another version of a reused id.
#[test]
fn scenarios_that_once_lost_events() {
    let base = Scenario {
        seed: 12428452341054736294,
        order: SortOrder::NewestFirst,
        inclusive: true,
        shuffled: true,
        page_size: 2,
        page_cap: None,
        total: TotalMode::Absent,
        coarse: false,
        tie_ratio: 0.278795873114656,
        burst_ratio: 0.04522875594471785,
        late_ratio: 0.09273934963717846,
        odd_ratio: 0.04053259866300825,
        crash_ratio: 0.0,
        prefetch: 1,
        ahead: 1,
        backlog: 101,
        late_sweep_ms: 0,
    };
    run_scenario(&base).unwrap();
    run_scenario(&Scenario {
        seed: 12373140883906990466,
        order: SortOrder::OldestFirst,
        inclusive: false,
        page_size: 5,
        page_cap: Some(2),
        total: TotalMode::Capped(5),
        tie_ratio: 0.2536961345817936,
        burst_ratio: 0.03120431573150412,
        late_ratio: 0.23337388333611578,
        odd_ratio: 0.09420269060992184,
        crash_ratio: 0.08136600377999711,
        prefetch: 3,
        backlog: 114,
        ..base.clone()
    })
    .unwrap();
    run_scenario(&Scenario {
        seed: 4452532619593476268,
        inclusive: false,
        page_size: 6,
        total: TotalMode::Exact,
        tie_ratio: 0.2514253525646768,
        burst_ratio: 0.0,
        late_ratio: 0.057654195012404125,
        odd_ratio: 0.08863068406190425,
        prefetch: 3,
        backlog: 111,
        ..base
    })
    .unwrap();
}

fn total_mode() -> impl Strategy<Value = TotalMode> {
    prop_oneof![
        Just(TotalMode::Exact),
        Just(TotalMode::Absent),
        Just(TotalMode::TooLow),
        (0u64..50).prop_map(TotalMode::Constant),
        (1u64..50).prop_map(TotalMode::Capped),
    ]
}

fn order() -> impl Strategy<Value = SortOrder> {
    prop_oneof![
        Just(SortOrder::NewestFirst),
        Just(SortOrder::OldestFirst),
        Just(SortOrder::InsertedFirst),
        Just(SortOrder::InsertedLast),
    ]
}

/// Property cases to run: 256 by default; `AUDITFWD_CURSOR_CASES=20000` for
/// a long run.
fn cases() -> u32 {
    std::env::var("AUDITFWD_CURSOR_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn no_loss_no_duplicates_whatever_the_api_does(
        seed in any::<u64>(),
        order in order(),
        inclusive in any::<bool>(),
        shuffled in prop::bool::weighted(0.8),
        page_size in 2usize..12,
        cap_frac in prop::option::weighted(0.3, 0.2f64..1.0),
        total in total_mode(),
        coarse in prop::bool::weighted(0.2),
        tie_ratio in 0.0f64..0.6,
        burst_ratio in prop_oneof![Just(0.0f64), 0.0f64..0.05],
        late_ratio in 0.0f64..0.4,
        odd_ratio in prop_oneof![Just(0.0f64), 0.0f64..0.1],
        crash_ratio in prop_oneof![Just(0.0f64), 0.0f64..0.2],
        prefetch in 0usize..4,
        ahead in prop_oneof![Just(1usize), 1usize..=5],
        backlog in 0usize..150,
        late_sweep_ms in prop_oneof![Just(0u64), 0u64..3000],
    ) {
        let page_cap = cap_frac.map(|f| ((page_size as f64 * f) as usize).max(2));
        run_scenario(&Scenario {
            seed, order, inclusive, shuffled, page_size, page_cap, total, coarse, tie_ratio,
            burst_ratio, late_ratio, odd_ratio, crash_ratio, prefetch, ahead, backlog,
            late_sweep_ms,
        })?;
    }
}
