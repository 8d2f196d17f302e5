//! Health as a monitoring system and an orchestrator see it: `/livez`
//! answers while the process runs, `/readyz` (and its alias `/health`) is
//! 503 with the reason while a sink's receiver is down, and turns 200 by
//! itself when the receiver comes back, with no event needed to notice.

use std::time::Duration;

use auditfwd::app::App;
use auditfwd::simulator::SimConfig;
use serde_json::Value;

use crate::support::services::free_port;
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
    let sim = tenant(SimConfig {
        backlog: 0,
        insert_rate: 0.0,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (receiver, listen) = (free_port(), free_port());
    let extra = format!(
        "\n[[sink]]\nname = \"logs\"\ntype = \"syslog\"\naddress = \"127.0.0.1:{receiver}\"\nconnect_timeout = \"1s\"\n\n[telemetry]\nlisten = \"127.0.0.1:{listen}\"\n"
    );
    let setup = Setup {
        extra: &extra,
        ..Setup::new(dir.path())
    };
    let fwd = Forwarder::start(App::new(parse_config(&config_text(
        &sim,
        dir.path(),
        &setup,
    ))));

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
