//! Issue 13, fleet mode: the cursor state on a compacted Kafka topic (a
//! real tansu broker), fenced by epochs. A replica that takes a source over
//! continues the cursor where the last owner made it durable; a replica
//! that lost the source (a zombie) can still write, but no later load sees
//! what it wrote, so it can not move the cursor back or fork it.

use std::collections::HashMap;
use std::time::Duration;

use auditfwd::cursor::state::Acked;
use auditfwd::cursor::store::StateStore;
use auditfwd::cursor::{Checkpoint, CursorState};
use auditfwd::fleet::store::{KafkaStore, KafkaStoreConfig};
use auditfwd::model::EventKey;
use auditfwd_testkit::Tansu;

const TOPIC: &str = "auditfwd.state";

/// The store of `source` as replica `replica` sees it (the store is
/// synchronous: the poller calls it from `spawn_blocking`).
fn store(broker: &Tansu, replica: &str, source: &str) -> KafkaStore {
    let config = KafkaStoreConfig {
        client: HashMap::from([("bootstrap.servers".to_string(), broker.brokers())]),
        topic: TOPIC.into(),
        replica: replica.into(),
        timeout: Duration::from_secs(15),
    };
    KafkaStore::open(source, config).expect("the state topic is reachable")
}

/// A checkpoint that delivered `delivered` events.
fn checkpoint(seq: u64, delivered: u64) -> Checkpoint {
    Checkpoint {
        seq,
        delivered,
        ..Checkpoint::default()
    }
}

/// `(seq, delivered_total)` of a loaded state.
fn summary(state: &Option<CursorState>) -> Option<(u64, u64)> {
    state.as_ref().map(|s| (s.seq, s.delivered_total))
}

#[test]
fn a_takeover_continues_the_cursor_and_a_zombie_can_not_move_it_back() {
    let broker = Tansu::start();
    broker.create_topic(TOPIC, 4);

    let mut a = store(&broker, "replica-a", "acme");
    assert!(a.load().unwrap().is_none(), "a new source has no state");
    assert_eq!(a.owner().unwrap().epoch, 1);
    a.snapshot(&CursorState::new("acme", chrono::Utc::now()))
        .unwrap();
    for seq in 1..=3 {
        a.commit(&checkpoint(seq, 10)).unwrap();
    }

    // Replica b takes over: it continues from a's three checkpoints.
    let mut b = store(&broker, "replica-b", "acme");
    assert_eq!(summary(&b.load().unwrap()), Some((3, 30)));
    assert_eq!(b.owner().unwrap().epoch, 2);

    // a was not told yet and writes on: a zombie, even a whole snapshot of
    // its own. b writes too.
    a.commit(&checkpoint(4, 10)).unwrap();
    a.commit(&checkpoint(5, 10)).unwrap();
    let mut zombie = CursorState::new("acme", chrono::Utc::now());
    for seq in 1..=5 {
        zombie.apply(&checkpoint(seq, 10));
    }
    a.snapshot(&zombie).unwrap();
    b.commit(&checkpoint(4, 10)).unwrap();

    let mut c = store(&broker, "replica-c", "acme");
    assert_eq!(
        summary(&c.load().unwrap()),
        Some((4, 40)),
        "the chain of the last claim (b's), not the zombie's five checkpoints"
    );
    assert_eq!(c.owner().unwrap().epoch, 3);

    // b is a zombie now: its writes do not count either.
    b.commit(&checkpoint(5, 10)).unwrap();
    c.commit(&checkpoint(5, 1)).unwrap();
    let mut d = store(&broker, "replica-d", "acme");
    assert_eq!(summary(&d.load().unwrap()), Some((5, 41)));

    // Another source on the same topic is untouched by all of this.
    let mut other = store(&broker, "replica-c", "globex");
    assert!(other.load().unwrap().is_none());
}

#[test]
fn claims_at_once_agree_on_one_winner_and_snapshots_compact_the_journal() {
    let broker = Tansu::start();
    broker.create_topic(TOPIC, 2);
    let mut first = store(&broker, "r0", "acme");
    assert!(first.load().unwrap().is_none());
    first
        .snapshot(&CursorState::new("acme", chrono::Utc::now()))
        .unwrap();
    first.commit(&checkpoint(1, 1)).unwrap();

    // x and y load at the same time (a coordinator that gave the source to
    // both for a moment): whatever the interleaving, exactly one chain wins
    // for every later load, the higher (epoch, replica).
    let (x, y) = (store(&broker, "x", "acme"), store(&broker, "y", "acme"));
    let claim = |mut s: KafkaStore| {
        std::thread::spawn(move || {
            let loaded = s.load().unwrap();
            (s, loaded)
        })
    };
    let (tx, ty) = (claim(x), claim(y));
    let ((mut x, from_x), (mut y, from_y)) = (tx.join().unwrap(), ty.join().unwrap());
    assert_eq!(summary(&from_x), Some((1, 1)));
    assert_eq!(summary(&from_y), Some((1, 1)));
    x.commit(&checkpoint(2, 100)).unwrap();
    y.commit(&checkpoint(2, 1000)).unwrap();
    let winner_delivered = if y.owner() > x.owner() { 1001 } else { 101 };
    let mut z = store(&broker, "z", "acme");
    assert_eq!(summary(&z.load().unwrap()), Some((2, winner_delivered)));

    // z owns it now; enough checkpoints that its journal is compacted into
    // snapshots, and a later load still rebuilds the same state.
    let mut state = CursorState::new("acme", chrono::Utc::now());
    state.apply(&checkpoint(1, 1));
    state.apply(&checkpoint(2, winner_delivered - 1));
    let mut snapshots = 0;
    let started = std::time::Instant::now();
    for seq in 3..=200 {
        // Checkpoints as large as a page's: 100 acknowledged keys.
        let mut cp = checkpoint(seq, 1);
        cp.acked = (0..100)
            .map(|i| Acked {
                key: EventKey::string_id(&format!("evt-{seq}-{i}")),
                ms: 1_700_000_000_000 + seq as i64,
                content: i,
                stray: false,
            })
            .collect();
        let wants_snapshot = z.commit(&cp).unwrap();
        state.apply(&cp);
        if wants_snapshot {
            z.snapshot(&state).unwrap();
            snapshots += 1;
        }
    }
    eprintln!("198 commits took {:?}", started.elapsed());
    assert!(
        snapshots > 0,
        "200 checkpoints of 100 keys outweigh a snapshot"
    );
    let mut after = store(&broker, "after", "acme");
    assert_eq!(
        summary(&after.load().unwrap()),
        Some((200, winner_delivered + 198))
    );
}

/// A member whose ownership is tracked by a task: what it holds now.
fn tracked(
    broker: &Tansu,
    topic: &str,
) -> (
    auditfwd::fleet::member::Member,
    std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<i32>>>,
) {
    use auditfwd::fleet::member::{Member, MemberConfig, Ownership};
    let config = MemberConfig {
        client: vec![("bootstrap.servers".into(), broker.brokers())],
        group: "fleet-test".into(),
        topic: topic.into(),
        session_timeout: Duration::from_secs(6),
        drain_timeout: Duration::from_secs(5),
    };
    let (member, mut events, _) = Member::join(&config).unwrap();
    let held = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let mine = held.clone();
    std::thread::spawn(move || {
        while let Some(event) = events.blocking_recv() {
            match event {
                Ownership::Assigned(p) => mine.lock().unwrap().extend(p),
                Ownership::Revoked {
                    partitions,
                    drained,
                } => {
                    mine.lock().unwrap().retain(|p| !partitions.contains(p));
                    let _ = drained.send(());
                }
            }
        }
    });
    (member, held)
}

/// Whether `holders` together hold each of `0..n` exactly once.
fn exactly_once(
    holders: &[&std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<i32>>>],
    n: i32,
) -> bool {
    let mut all: Vec<i32> = holders
        .iter()
        .flat_map(|h| h.lock().unwrap().clone())
        .collect();
    all.sort();
    all == (0..n).collect::<Vec<_>>()
}

#[test]
fn members_share_the_partitions_and_take_over_those_of_one_that_leaves() {
    let broker = Tansu::start();
    broker.create_topic("auditfwd.fleet", 12);
    let (a, held_a) = tracked(&broker, "auditfwd.fleet");
    let (b, held_b) = tracked(&broker, "auditfwd.fleet");
    let (c, held_c) = tracked(&broker, "auditfwd.fleet");
    let settled = |holders: &[&std::sync::Arc<
        std::sync::Mutex<std::collections::BTreeSet<i32>>,
    >],
                   timeout: Duration| {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if exactly_once(holders, 12) && holders.iter().all(|h| !h.lock().unwrap().is_empty()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    };
    assert!(
        settled(&[&held_a, &held_b, &held_c], Duration::from_secs(60)),
        "three members hold the 12 partitions once each: {:?} {:?} {:?}",
        held_a.lock().unwrap(),
        held_b.lock().unwrap(),
        held_c.lock().unwrap()
    );
    let started = std::time::Instant::now();
    drop(c);
    assert!(
        settled(&[&held_a, &held_b], Duration::from_secs(30)),
        "the two left hold all 12 within 30 s: {:?} {:?}",
        held_a.lock().unwrap(),
        held_b.lock().unwrap()
    );
    eprintln!("handover after a member left: {:?}", started.elapsed());
    drop((a, b));
}

/// `auditfwd state show|set-since|reset` in fleet mode: they read and move
/// the cursor on the state topic, not in `[state] dir`, and a replica that
/// starts after `set-since` delivers again from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_commands_read_and_move_the_cursor_on_the_state_topic() {
    use crate::support::binary::{auditfwd, signal, spawn, text};
    use crate::support::*;
    use auditfwd_sim::SimConfig;
    use auditfwd_testkit::wait_for;

    let broker = Tansu::start();
    let sim = tenant(SimConfig {
        backlog: 300,
        insert_rate: 0.0,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let fleet = format!(
        "\n[fleet]\nbrokers = \"{}\"\ngroup = \"state-cmd\"\npartitions = 2\nreplica = \"r1\"\nsession_timeout = \"6s\"\n",
        broker.brokers()
    );
    let written = config_text(&sim, dir.path(), &Setup::new(dir.path())) + &fleet;
    let config = dir.path().join("config.toml");
    std::fs::write(&config, &written).unwrap();
    let c = config.to_str().unwrap();
    let out = dir.path().join("out");

    let mut replica = spawn(&config, &dir.path().join("r1.log"));
    let truth = sim.truth();
    assert!(
        all_delivered(&truth, &out, Duration::from_secs(60)).await,
        "the replica delivered the backlog: {}",
        std::fs::read_to_string(dir.path().join("r1.log")).unwrap()
    );
    signal(&replica, libc::SIGTERM);
    assert!(replica.wait().unwrap().success());
    assert!(
        !dir.path().join("state/tenant.state.json").exists(),
        "fleet mode keeps no cursor in [state] dir"
    );

    let shown = auditfwd(&["state", "show", "-c", c]).await;
    let shown_text = text(&shown.stdout);
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    assert!(
        shown_text.contains("fleet state topic auditfwd.state"),
        "{shown_text}"
    );
    let row = shown_text
        .lines()
        .find(|l| l.starts_with("tenant"))
        .unwrap_or_else(|| panic!("{shown_text}"));
    assert!(
        row.split_whitespace().any(|cell| cell == "300"),
        "300 delivered: {row}"
    );

    // Back to the start of the backlog: a new replica delivers it again.
    let first = truth.iter().map(|e| e.created_ms).min().unwrap();
    let since =
        auditfwd_sink::format_millis(&chrono::DateTime::from_timestamp_millis(first).unwrap());
    let moved = auditfwd(&["state", "set-since", "-c", c, "--source", "tenant", &since]).await;
    assert!(moved.status.success(), "{}", text(&moved.stderr));
    assert!(text(&moved.stdout).contains("delivered again"));
    let shown = text(&auditfwd(&["state", "show", "-c", c]).await.stdout);
    assert!(shown.contains(&since), "{shown}");

    let mut replica = spawn(&config, &dir.path().join("r1b.log"));
    let ids = deliverable(&truth);
    let redelivered = wait_for(Duration::from_secs(60), || {
        let counts = id_counts(&read_lines(&out));
        ids.iter().all(|id| counts.get(*id) == Some(&2))
    })
    .await;
    signal(&replica, libc::SIGTERM);
    assert!(replica.wait().unwrap().success());
    assert!(
        redelivered,
        "every event delivered a second time after set-since"
    );

    let reset = auditfwd(&["state", "reset", "-c", c, "--source", "tenant"]).await;
    assert!(reset.status.success(), "{}", text(&reset.stderr));
    assert!(text(&reset.stdout).contains("cursor reset on topic auditfwd.state"));
}

/// A child process killed when dropped (a failing test leaves no replica
/// running).
struct Replica(std::process::Child);

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Issue 13, safety: a replica frozen past the session timeout (SIGSTOP: a
/// long GC pause, a VM migration) and thawed loses nothing, and moves no
/// cursor back: a replica started afterwards on the same state topic finds
/// every cursor where the last owner left it and delivers nothing again.
///
/// (With a Kafka broker the group would give the frozen replica's sources
/// to the other after `session_timeout`. tansu 0.6 does not expire a member
/// whose connection stays open: while the frozen one is the group's leader
/// the rebalance stalls until it thaws, and the other replica, its
/// partitions revoked, polls nothing meanwhile; an outage, never a loss.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_frozen_past_its_session_loses_nothing_and_moves_no_cursor_back() {
    use crate::support::binary::{signal, spawn};
    use crate::support::*;
    use auditfwd_sim::{SimConfig, Simulator, Verdict};
    use auditfwd_testkit::wait_for;

    const TENANTS: usize = 4;
    let broker = Tansu::start();
    let mut sims: Vec<Simulator> = Vec::new();
    for _ in 0..TENANTS {
        sims.push(
            tenant(SimConfig {
                backlog: 200,
                insert_rate: 20.0,
                ..SimConfig::default()
            })
            .await,
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let config = |replica: &str, group: &str| {
        let mut text = format!(
            "[state]\ndir = \"{d}/{replica}/state\"\n\n[fleet]\nbrokers = \"{b}\"\ngroup = \"{group}\"\npartitions = {TENANTS}\nreplica = \"{replica}\"\nsession_timeout = \"6s\"\ndrain_timeout = \"10s\"\n\n[[sink]]\nname = \"files\"\ntype = \"file\"\npath = \"{d}/{replica}/out/{{source}}.jsonl\"\n",
            d = dir.path().display(),
            b = broker.brokers()
        );
        for (i, sim) in sims.iter().enumerate() {
            text.push_str(&format!(
                "\n[[source]]\nname = \"t{i}\"\nbase_url = \"{}\"\napi_key = \"{}\"\nallow_http = true\nstart_at = \"beginning\"\npage_size = 50\npoll_interval = \"200ms\"\nlookback = \"3s\"\nlate_sweep = \"1s\"\nrequest_timeout = \"5s\"\nrate_limit = {{ requests_per_second = 1000, burst = 100 }}\n",
                sim.base_url(),
                sim.api_key()
            ));
        }
        let path = dir.path().join(format!("{replica}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    };
    let log = |name: &str| dir.path().join(format!("{name}.log"));
    let read = |name: &str| std::fs::read_to_string(log(name)).unwrap_or_default();
    let out_of = |replica: &str, i: usize| dir.path().join(format!("{replica}/out/t{i}.jsonl"));
    let lines_of = |replicas: &[&str], i: usize| -> Vec<serde_json::Value> {
        replicas
            .iter()
            .flat_map(|r| {
                std::fs::read_to_string(out_of(r, i))
                    .unwrap_or_default()
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let assigned = |name: &str| read(name).matches("partitions assigned; starting").count();

    let started_ms = chrono::Utc::now().timestamp_millis();
    let mut a = Replica(spawn(&config("a", "frozen"), &log("a")));
    assert!(
        wait_for(Duration::from_secs(60), || (0..TENANTS).all(|i| !lines_of(
            &["a"],
            i
        )
        .is_empty()))
        .await,
        "replica a polls every tenant alone: {}",
        read("a")
    );
    let mut b = Replica(spawn(&config("b", "frozen"), &log("b")));
    assert!(
        wait_for(Duration::from_secs(60), || assigned("b") >= 1).await,
        "b was given partitions: {}",
        read("b")
    );

    // Freeze a past its session, thaw it, let the group settle.
    signal(&a.0, libc::SIGSTOP);
    tokio::time::sleep(Duration::from_secs(10)).await;
    signal(&a.0, libc::SIGCONT);
    tokio::time::sleep(Duration::from_secs(10)).await;

    for sim in &sims {
        sim.freeze();
    }
    eprintln!(
        "inserts stopped at +{} ms",
        chrono::Utc::now().timestamp_millis() - started_ms
    );
    for (i, sim) in sims.iter().enumerate() {
        let truth = sim.truth();
        assert!(
            wait_for(Duration::from_secs(90), || Verdict::of(
                &truth,
                &id_counts(&lines_of(&["a", "b"], i))
            )
            .missing
            .is_empty())
            .await,
            "t{i}: every event delivered by a or b\n--- a\n{}\n--- b\n{}",
            read("a"),
            read("b")
        );
    }
    // Let the last checkpoints land, then stop both.
    tokio::time::sleep(Duration::from_secs(2)).await;
    eprintln!(
        "stopping at +{} ms",
        chrono::Utc::now().timestamp_millis() - started_ms
    );
    for child in [&a, &b] {
        signal(&child.0, libc::SIGTERM);
    }
    assert!(a.0.wait().unwrap().success(), "{}", read("a"));
    assert!(b.0.wait().unwrap().success(), "{}", read("b"));
    let mut duplicates = 0;
    for (i, sim) in sims.iter().enumerate() {
        let truth = sim.truth();
        let verdict = Verdict::of(&truth, &id_counts(&lines_of(&["a", "b"], i)));
        if !verdict.missing.is_empty() {
            explain_missing(&truth, &verdict.missing, started_ms);
        }
        assert!(verdict.missing.is_empty(), "t{i}: {:?}", verdict.missing);
        duplicates += verdict.duplicates.len();
    }
    eprintln!(
        "duplicates across the freeze: {duplicates}; sources yielded: a {}, b {}",
        read("a")
            .matches("another replica claimed this source")
            .count(),
        read("b")
            .matches("another replica claimed this source")
            .count()
    );

    // A newcomer alone on the state topic (in a group of its own: tansu
    // may keep the old members a while): every cursor is where its last
    // owner left it, so with no new events it delivers nothing.
    let listen = auditfwd_testkit::free_port();
    let c_config = config("c", "newcomer");
    let with_telemetry = std::fs::read_to_string(&c_config).unwrap().replacen(
        "[fleet]",
        &format!("[telemetry]\nlisten = \"127.0.0.1:{listen}\"\n\n[fleet]"),
        1,
    );
    std::fs::write(&c_config, with_telemetry).unwrap();
    let mut c = Replica(spawn(&c_config, &log("c")));
    assert!(
        wait_for(Duration::from_secs(60), || read("c")
            .matches("polling source=")
            .count()
            >= TENANTS)
        .await,
        "c polls every tenant: {}",
        read("c")
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Its metrics say what it owns and how it came to.
    let metrics = reqwest::get(format!("http://127.0.0.1:{listen}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        format!("auditfwd_fleet_partitions {TENANTS}"),
        format!("auditfwd_fleet_sources {TENANTS}"),
        "auditfwd_fleet_rebalances_total{outcome=\"assigned\"} 1".to_string(),
        format!("auditfwd_fleet_claim_seconds_count {TENANTS}"),
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    signal(&c.0, libc::SIGTERM);
    assert!(c.0.wait().unwrap().success(), "{}", read("c"));
    let again: usize = (0..TENANTS).map(|i| lines_of(&["c"], i).len()).sum();
    assert_eq!(
        again, 0,
        "a cursor moved back: the newcomer delivered {again} events again"
    );
}
