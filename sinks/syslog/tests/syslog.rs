//! The syslog sink on its own against a real rsyslogd (installed by
//! scripts/services.sh): over TLS it verifies the receiver's certificate
//! (name and chain) and presents a client certificate when the receiver
//! requires one, and after the receiver restarts the next batch goes out
//! on a new connection instead of into the dead one. The forwarder with a
//! syslog sink end to end is tested in auditfwd's tests/syslog.rs.

use std::time::Duration;

use auditfwd_sink::Sink;
use auditfwd_sink_syslog::{RawSyslogSinkConfig, SyslogSink, TlsConfig, Transport};
use auditfwd_testkit::{Rsyslog, wait_for};

fn tls_sink(rsyslog: &Rsyslog, port: u16, tls: TlsConfig) -> SyslogSink {
    let mut config = RawSyslogSinkConfig::new(format!("127.0.0.1:{port}"));
    config.transport = Transport::Tls;
    config.connect_timeout = Duration::from_secs(3);
    config.tls = tls;
    let _ = rsyslog;
    SyslogSink::new("siem", config.validate().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_verifies_the_receiver_and_presents_a_client_certificate() {
    let rsyslog = Rsyslog::start();
    let certs = &rsyslog.certs;
    let trusted = |server_name: &str| TlsConfig {
        ca_file: Some(certs.ca.clone()),
        server_name: Some(server_name.into()),
        ..TlsConfig::default()
    };

    // Mutual TLS: the receiver requires a client certificate.
    let mut with_cert = tls_sink(
        &rsyslog,
        rsyslog.mtls,
        TlsConfig {
            cert_file: Some(certs.client_cert.clone()),
            key_file: Some(certs.client_key.clone()),
            ..trusted("localhost")
        },
    );
    with_cert.healthcheck().await.expect("mutual TLS handshake");
    auditfwd_sink::testing::conformance(&mut with_cert, Duration::from_secs(10)).await;

    let error = tls_sink(&rsyslog, rsyslog.mtls, trusted("localhost"))
        .healthcheck()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("client certificate"),
        "without a client certificate: {error}"
    );

    // The receiver's certificate must match the name and chain to the CA.
    let error = tls_sink(&rsyslog, rsyslog.tls, trusted("siem.example.com"))
        .healthcheck()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("certificate not valid for name \"siem.example.com\""),
        "wrong server name: {error}"
    );
    assert!(
        error.contains("tls.server_name"),
        "says what to check: {error}"
    );
    let other = TlsConfig {
        ca_file: Some(certs.other_ca.clone()),
        server_name: Some("localhost".into()),
        ..TlsConfig::default()
    };
    let error = tls_sink(&rsyslog, rsyslog.tls, other)
        .healthcheck()
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("UnknownIssuer"), "untrusted CA: {error}");

    // The conformance batches arrived through mutual TLS.
    assert!(
        wait_for(Duration::from_secs(5), || rsyslog
            .received()
            .iter()
            .any(|r| r["input"] == "imtcp"))
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_receiver_gets_the_next_batch_on_a_new_connection() {
    let first = Rsyslog::start();
    let port = first.tcp;
    let mut config = RawSyslogSinkConfig::new(format!("127.0.0.1:{port}"));
    config.connect_timeout = Duration::from_secs(2);
    let mut sink = SyslogSink::new("siem", config.validate().unwrap()).unwrap();
    let batch = |from: usize| {
        auditfwd_sink::testing::records(
            auditfwd_sink::testing::sample_events("acme", from + 5).split_off(from),
        )
    };
    sink.deliver(&batch(0)).await.unwrap();
    assert!(wait_for(Duration::from_secs(5), || first.received().len() == 5).await);
    drop(first); // the receiver goes away, closing our connection
    let second = Rsyslog::start_with_tcp_port(port);
    // The old connection is dead; writing into it would lose the batch.
    sink.deliver(&batch(5)).await.unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || second.received().len() == 5).await,
        "the batch after the restart was lost: {:?}",
        second.received()
    );
}
