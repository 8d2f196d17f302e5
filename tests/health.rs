//! Health as a monitoring system and an orchestrator see it: `/livez`
//! answers while the process runs, `/readyz` (and its alias `/health`) is
//! 503 with the reason while a sink's receiver is down, and turns 200 by
//! itself when the receiver comes back, with no event needed to notice.

use std::time::Duration;

use auditfwd_sim::SimConfig;
use auditfwd_testkit::free_port;
use serde_json::Value;

use crate::support::*;

async fn get(port: u16, path: &str) -> (u16, Value) {
    match reqwest::get(format!("http://127.0.0.1:{port}{path}")).await {
        Ok(response) => {
            let status = response.status().as_u16();
            (
                status,
                serde_json::from_str(&response.text().await.unwrap()).unwrap(),
            )
        }
        // The listener is not up yet.
        Err(_) => (0, Value::Null),
    }
}

/// Asks `path` every 100ms until `done` holds or `timeout` passes; returns
/// the last answer.
async fn until(
    port: u16,
    path: &str,
    timeout: Duration,
    done: impl Fn(&(u16, Value)) -> bool,
) -> (u16, Value) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let answer = get(port, path).await;
        if done(&answer) || std::time::Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_a_sinks_receiver_down_and_back() {
    // A quiet tenant: nothing to deliver, so only health checks can tell.
    let sim = tenant(SimConfig::quiet(0)).await;
    let dir = tempfile::tempdir().unwrap();
    let (receiver, listen) = (free_port(), free_port());
    let extra = format!(
        "\n[[sink]]\nname = \"logs\"\ntype = \"syslog\"\naddress = \"127.0.0.1:{receiver}\"\nconnect_timeout = \"1s\"\n\n[telemetry]\nlisten = \"127.0.0.1:{listen}\"\n"
    );
    let fwd = Forwarder::with_extra(&sim, dir.path(), &extra);

    let down = until(listen, "/readyz", Duration::from_secs(10), |(_, body)| {
        body["components"]["sink:logs"]["status"] == "degraded"
    })
    .await;
    assert_eq!(
        down.1["components"]["sink:logs"]["status"], "degraded",
        "a dead receiver is not reported: {down:?}"
    );
    // And it stays so while the receiver is down (nothing overwrites it).
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let again = get(listen, "/readyz").await;
        assert_eq!(
            again.1["components"]["sink:logs"]["status"], "degraded",
            "{again:?}"
        );
    }
    assert_eq!(down.0, 503, "{down:?}");
    assert_eq!(down.1["ready"], false);
    let reason = down.1["components"]["sink:logs"]["detail"]
        .as_str()
        .unwrap();
    assert!(
        reason.contains(&receiver.to_string()),
        "the reason names the receiver: {reason}"
    );
    assert_eq!(down.1["components"]["sink:files"]["status"], "ok");
    assert_eq!(get(listen, "/health").await.0, 503);
    let (live, body) = get(listen, "/livez").await;
    assert_eq!((live, &body["alive"]), (200, &Value::Bool(true)));

    // The receiver comes up: readiness follows without any event.
    let server = tokio::net::TcpListener::bind(("127.0.0.1", receiver))
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = server.accept().await {
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut conn, &mut tokio::io::sink()).await;
            });
        }
    });
    let up = until(listen, "/readyz", Duration::from_secs(20), |(status, _)| {
        *status == 200
    })
    .await;
    assert_eq!(up.0, 200, "readiness did not recover: {up:?}");
    assert_eq!(up.1["ready"], true);
    assert_eq!(up.1["components"]["sink:logs"]["status"], "ok");
    fwd.stop().await.unwrap();
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_can_not_exhaust_file_descriptors() {
    use tokio::io::AsyncReadExt;

    let listen = free_port();
    let (_sim, _dir, fwd) = forwarder_with_telemetry(SimConfig::quiet(0), listen).await;
    assert_eq!(
        until(listen, "/livez", Duration::from_secs(10), |(s, _)| *s
            == 200)
        .await
        .0,
        200
    );
    let before = open_fds();
    // 200 half-open clients that never send a request.
    let flood = 200;
    let mut idle = Vec::new();
    for _ in 0..flood {
        idle.push(
            tokio::net::TcpStream::connect(("127.0.0.1", listen))
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown = open_fds() - before;
    // Our 200 client ends, plus at most the listener's cap on its side.
    assert!(
        grown <= flood + auditfwd::telemetry::MAX_CONNECTIONS + 8,
        "{grown} descriptors for {flood} idle connections"
    );
    // The server closes the idle ones it accepted once the header timeout
    // passes, and answers again.
    let mut closed = 0;
    let deadline = auditfwd::telemetry::HEADER_TIMEOUT + Duration::from_secs(3);
    for conn in &mut idle {
        let mut buf = [0u8; 1];
        match tokio::time::timeout(deadline, conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
            Ok(Ok(_)) => {}
            Err(_) => break,
        }
    }
    assert_eq!(closed, flood, "idle connections the server kept open");
    drop(idle);
    let (status, _) = until(listen, "/livez", Duration::from_secs(5), |(s, _)| *s == 200).await;
    assert_eq!(status, 200);
    fwd.stop().await.unwrap();
}

/// `/metrics` as a real OpenMetrics parser (Python's `prometheus_client`,
/// installed by `scripts/services.sh`) reads it: every family parses and
/// the counters a dashboard needs are there with their labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_with_a_real_openmetrics_parser() {
    let listen = free_port();
    let (sim, dir, fwd) = forwarder_with_telemetry(SimConfig::quiet(300), listen).await;
    let truth = sim.truth();
    assert!(all_delivered(&truth, &dir.path().join("out"), Duration::from_secs(20)).await);
    // The lines are in the files before the batch's checkpoint is durable,
    // and the delivered counter moves with the checkpoint: scrape once it
    // counted every event (the parser's check below stays exact).
    let delivered = deliverable(&truth).len();
    let counted = format!("auditfwd_events_delivered_total{{source=\"tenant\"}} {delivered}\n");
    let mut body = String::new();
    for _ in 0..100 {
        body = reqwest::get(format!("http://127.0.0.1:{listen}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if body.contains(&counted) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fwd.stop().await.unwrap();
    let parser = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print(f"{family.type} {s.name}{{{labels}}} {s.value}")
"#;
    let mut child = std::process::Command::new("/usr/bin/python3")
        .args(["-c", parser])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with prometheus_client (scripts/services.sh installs it)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let parsed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the exposition does not parse: {}\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        parsed.contains(&format!(
            "counter auditfwd_events_delivered_total{{source=tenant}} {delivered}\n"
        )),
        "{parsed}"
    );
    assert!(
        parsed.contains(&format!(
            "counter auditfwd_sink_records_total{{sink=files}} {delivered}\n"
        )),
        "{parsed}"
    );
}
