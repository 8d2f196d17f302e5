//! The request log: every request to the audit-log endpoint as it arrived
//! (when, from which client, asking for what), and what it tells about the
//! clients polling the tenant: who polled in a time window, when two polled
//! it at about the same time, and the stints of one poller after another.
//!
//! Fleet tests run several forwarder replicas against the same tenants; each
//! replica sends its own `User-Agent`, so the log shows which one polled a
//! tenant when, and whether two did at once.

use std::collections::{BTreeSet, VecDeque};

/// How many records the log keeps (the oldest go first): enough for
/// minutes of a fleet test, bounded for a simulator that runs for days.
pub const LOG_CAPACITY: usize = 200_000;

/// One request to `GET /api/v1/audit-logs`, as it arrived (before auth,
/// rate limit or fault injection decided its answer).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RequestRecord {
    /// Arrival, epoch ms (wall clock, so records of several simulators in
    /// one process compare).
    pub at_ms: i64,
    /// The `User-Agent` header, if any (lossy UTF-8).
    pub user_agent: Option<String>,
    /// The `since` parameter as sent.
    pub since: Option<String>,
    /// The `offset` parameter as sent.
    pub offset: Option<String>,
    /// The `limit` parameter as sent.
    pub limit: Option<String>,
}

impl RequestRecord {
    /// The user agent, `"-"` when the request had none.
    pub fn agent(&self) -> &str {
        self.user_agent.as_deref().unwrap_or("-")
    }
}

/// The bounded log a simulator keeps.
#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    records: VecDeque<RequestRecord>,
}

impl RequestLog {
    pub(crate) fn push(&mut self, record: RequestRecord) {
        if self.records.len() == LOG_CAPACITY {
            self.records.pop_front();
        }
        self.records.push_back(record);
    }

    pub(crate) fn snapshot(&self) -> Vec<RequestRecord> {
        self.records.iter().cloned().collect()
    }
}

/// The replica id in a fleet replica's user agent,
/// `auditfwd/<version> (replica <id>)`.
pub fn replica_of(user_agent: &str) -> Option<&str> {
    let rest = user_agent.split("(replica ").nth(1)?;
    rest.split(')').next().filter(|id| !id.is_empty())
}

/// A time span, epoch ms, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// First ms.
    pub from_ms: i64,
    /// Last ms.
    pub to_ms: i64,
}

/// A span during which two or more clients polled the tenant: each of
/// `agents` sent a request in it, and every request in it has one of
/// another agent within the gap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    /// When.
    pub span: Span,
    /// Who.
    pub agents: BTreeSet<String>,
}

/// Who polled a tenant in a window.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Polling {
    /// Requests in the window.
    pub requests: usize,
    /// The distinct user agents that sent them.
    pub agents: BTreeSet<String>,
    /// When two agents polled within `gap` of each other.
    pub overlaps: Vec<Overlap>,
}

impl Polling {
    /// The requests of `records` that arrived in `window` (both ends
    /// included, epoch ms): their agents, and the spans in which requests of
    /// two different agents arrived at most `gap_ms` apart (take twice the
    /// poll interval: one poller alone never leaves such a pair, a clean
    /// handover leaves one only when it is that quick). `records` need not
    /// be sorted.
    pub fn of(records: &[RequestRecord], window: Span, gap_ms: i64) -> Self {
        let mut inside: Vec<&RequestRecord> = records
            .iter()
            .filter(|r| window.from_ms <= r.at_ms && r.at_ms <= window.to_ms)
            .collect();
        inside.sort_by_key(|r| r.at_ms);
        let agents = inside.iter().map(|r| r.agent().to_string()).collect();
        // Every pair of requests of different agents at most `gap` apart
        // spans an overlap; spans that touch are merged.
        let mut pairs: Vec<Overlap> = Vec::new();
        for (i, a) in inside.iter().enumerate() {
            for b in inside[i + 1..]
                .iter()
                .take_while(|b| b.at_ms - a.at_ms <= gap_ms)
            {
                if a.agent() != b.agent() {
                    pairs.push(Overlap {
                        span: Span {
                            from_ms: a.at_ms,
                            to_ms: b.at_ms,
                        },
                        agents: [a.agent().to_string(), b.agent().to_string()].into(),
                    });
                }
            }
        }
        pairs.sort_by_key(|o| (o.span.from_ms, o.span.to_ms));
        let mut overlaps: Vec<Overlap> = Vec::new();
        for pair in pairs {
            match overlaps.last_mut() {
                Some(last) if pair.span.from_ms <= last.span.to_ms => {
                    last.span.to_ms = last.span.to_ms.max(pair.span.to_ms);
                    last.agents.extend(pair.agents);
                }
                _ => overlaps.push(pair),
            }
        }
        Self {
            requests: inside.len(),
            agents,
            overlaps,
        }
    }

    /// The one agent that polled in the window, if exactly one did.
    pub fn sole_agent(&self) -> Option<&str> {
        match self.agents.len() {
            1 => self.agents.first().map(String::as_str),
            _ => None,
        }
    }
}

/// A run of consecutive requests (in arrival order) from one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stint {
    /// Who.
    pub agent: String,
    /// Its first and last request of the run.
    pub span: Span,
    /// Requests in the run.
    pub requests: usize,
}

/// The runs of one agent after another in `records` (sorted by arrival
/// first): a clean handover is two stints, two pollers at once show as
/// many short ones that alternate.
pub fn stints(records: &[RequestRecord]) -> Vec<Stint> {
    let mut sorted: Vec<&RequestRecord> = records.iter().collect();
    sorted.sort_by_key(|r| r.at_ms);
    let mut out: Vec<Stint> = Vec::new();
    for r in sorted {
        match out.last_mut() {
            Some(last) if last.agent == r.agent() => {
                last.span.to_ms = r.at_ms;
                last.requests += 1;
            }
            _ => out.push(Stint {
                agent: r.agent().to_string(),
                span: Span {
                    from_ms: r.at_ms,
                    to_ms: r.at_ms,
                },
                requests: 1,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64, agent: &str) -> RequestRecord {
        RequestRecord {
            at_ms: ms,
            user_agent: Some(agent.into()),
            since: None,
            offset: None,
            limit: None,
        }
    }

    fn span(from_ms: i64, to_ms: i64) -> Span {
        Span { from_ms, to_ms }
    }

    #[test]
    fn the_replica_id_is_read_from_the_user_agent() {
        assert_eq!(replica_of("auditfwd/0.9.0 (replica r1)"), Some("r1"));
        assert_eq!(
            replica_of("auditfwd/0.9.0 (replica host-a.b_c-42)"),
            Some("host-a.b_c-42")
        );
        assert_eq!(replica_of("auditfwd/0.9.0"), None);
        assert_eq!(replica_of("auditfwd/0.9.0 (replica )"), None);
    }

    #[test]
    fn one_poller_alone_has_no_overlap() {
        let log: Vec<_> = (0..10).map(|i| at(1000 + i * 200, "a")).collect();
        let p = Polling::of(&log, span(0, 10_000), 400);
        assert_eq!(p.requests, 10);
        assert_eq!(p.sole_agent(), Some("a"));
        assert!(p.overlaps.is_empty());
    }

    #[test]
    fn only_requests_inside_the_window_count() {
        let log = [at(100, "a"), at(200, "b"), at(300, "b"), at(400, "c")];
        let p = Polling::of(&log, span(200, 300), 1000);
        assert_eq!(p.requests, 2);
        assert_eq!(p.sole_agent(), Some("b"));
        assert!(p.overlaps.is_empty());
        let p = Polling::of(&log, span(150, 400), 1000);
        assert_eq!(p.agents, ["b".to_string(), "c".to_string()].into());
        assert_eq!(p.sole_agent(), None);
        assert_eq!(Polling::of(&log, span(500, 600), 1000), Polling::default());
    }

    #[test]
    fn two_pollers_at_once_overlap_where_their_requests_interleave() {
        // a polls every 200 ms throughout; b joins at 1100 and stops at
        // 1900; a clean, slow handover to c follows at 5000.
        let mut log: Vec<_> = (0..=15).map(|i| at(i * 200, "a")).collect();
        log.extend((0..5).map(|i| at(1100 + i * 200, "b")));
        log.extend([at(5000, "c"), at(5200, "c")]);
        let p = Polling::of(&log, span(0, 6000), 400);
        assert_eq!(p.agents.len(), 3);
        assert_eq!(
            p.overlaps,
            [Overlap {
                // From a's request at 800 (300 ms before b's first) to a's
                // at 2200 (300 ms after b's last).
                span: span(800, 2200),
                agents: ["a".to_string(), "b".to_string()].into(),
            }]
        );
    }

    #[test]
    fn a_quick_handover_is_a_short_overlap_and_a_slow_one_none() {
        let quick = [at(0, "a"), at(200, "a"), at(350, "b"), at(550, "b")];
        let p = Polling::of(&quick, span(0, 1000), 400);
        assert_eq!(p.overlaps.len(), 1);
        // a's last two requests are within 400 ms of b's first, b's second
        // of a's last.
        assert_eq!(p.overlaps[0].span, span(0, 550));
        let slow = [at(0, "a"), at(200, "a"), at(900, "b"), at(1100, "b")];
        assert!(Polling::of(&slow, span(0, 2000), 400).overlaps.is_empty());
    }

    #[test]
    fn overlaps_apart_stay_apart_and_three_agents_merge_into_one() {
        let log = [
            at(0, "a"),
            at(100, "b"),
            at(2000, "a"),
            at(2050, "c"),
            at(2100, "b"),
        ];
        let p = Polling::of(&log, span(0, 3000), 300);
        assert_eq!(p.overlaps.len(), 2);
        assert_eq!(p.overlaps[0].span, span(0, 100));
        assert_eq!(p.overlaps[1].span, span(2000, 2100));
        assert_eq!(p.overlaps[1].agents.len(), 3);
    }

    #[test]
    fn stints_follow_the_pollers_in_arrival_order() {
        // Unsorted on purpose; a request without agent counts as "-".
        let mut none = at(700, "x");
        none.user_agent = None;
        let log = [
            at(300, "b"),
            at(0, "a"),
            at(100, "a"),
            at(400, "b"),
            at(500, "a"),
            none,
        ];
        let got: Vec<_> = stints(&log)
            .into_iter()
            .map(|s| (s.agent, s.span.from_ms, s.span.to_ms, s.requests))
            .collect();
        assert_eq!(
            got,
            [
                ("a".to_string(), 0, 100, 2),
                ("b".to_string(), 300, 400, 2),
                ("a".to_string(), 500, 500, 1),
                ("-".to_string(), 700, 700, 1),
            ]
        );
        assert!(stints(&[]).is_empty());
    }

    /// A raw HTTP/1.1 GET to the simulator; returns the status line.
    async fn get(addr: std::net::SocketAddr, target: &str, agent: Option<&str>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let agent = agent
            .map(|a| format!("User-Agent: {a}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: sim\r\nAuthorization: Bearer sim-key\r\n{agent}Connection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response.lines().next().unwrap_or_default().to_string()
    }

    #[tokio::test]
    async fn the_simulator_logs_each_audit_log_request_as_it_arrives() {
        let sim = crate::Simulator::start(
            crate::SimConfig {
                backlog: 3,
                insert_rate: 0.0,
                ..crate::SimConfig::default()
            },
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        let before = crate::now_ms();
        let target = "/api/v1/audit-logs?since=2024-01-01T00:00:00Z&offset=20&limit=10";
        let status = get(sim.addr(), target, Some("auditfwd/1.2.3 (replica r7)")).await;
        assert!(status.contains(" 200 "), "{status}");
        get(sim.addr(), "/api/v1/audit-logs", None).await;
        // Other routes are not audit-log polls.
        get(sim.addr(), "/api/v1/users/u1", Some("x")).await;
        let log = sim.requests();
        assert_eq!(log.len(), 2, "{log:?}");
        assert!(before <= log[0].at_ms && log[0].at_ms <= log[1].at_ms);
        assert_eq!(
            log[0].user_agent.as_deref().and_then(replica_of),
            Some("r7")
        );
        assert_eq!(log[0].since.as_deref(), Some("2024-01-01T00:00:00Z"));
        assert_eq!(log[0].offset.as_deref(), Some("20"));
        assert_eq!(log[0].limit.as_deref(), Some("10"));
        assert_eq!(
            (log[1].agent(), &log[1].since, &log[1].limit),
            ("-", &None, &None)
        );
        sim.stop().await;
    }

    #[test]
    fn the_log_keeps_the_newest_records() {
        let mut log = RequestLog::default();
        for i in 0..(LOG_CAPACITY as i64 + 5) {
            log.push(at(i, "a"));
        }
        let kept = log.snapshot();
        assert_eq!(kept.len(), LOG_CAPACITY);
        assert_eq!(kept[0].at_ms, 5);
    }
}
