//! Real services for the sink tests, each started on its own free loopback
//! port and stopped when dropped: a Kafka-protocol broker (tansu). The
//! binaries are installed by `scripts/services.sh`.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The installed `name` (or the path in `$env`); panics with the fix when
/// it is missing.
pub fn find_binary(name: &str, env: &str) -> PathBuf {
    if let Ok(path) = std::env::var(env) {
        return PathBuf::from(path);
    }
    let cargo_bin = PathBuf::from(std::env::var("HOME").unwrap_or_default())
        .join(".cargo/bin")
        .join(name);
    if cargo_bin.exists() {
        return cargo_bin;
    }
    // sbin is often missing from a user's PATH (logrotate, rsyslogd).
    let path = std::env::var("PATH").unwrap_or_default() + ":/usr/sbin:/sbin";
    for dir in path.split(':') {
        let p = PathBuf::from(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("`{name}` is not installed; run scripts/services.sh (or set {env})");
}

/// A tansu broker with in-memory storage.
pub struct Tansu {
    child: Child,
    port: u16,
    bin: PathBuf,
}

impl Tansu {
    /// Starts a broker and waits until it accepts connections.
    pub fn start() -> Self {
        let bin = find_binary("tansu", "TANSU_BIN");
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/", "--silent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts");
        let broker = Self { child, port, bin };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        broker
    }

    /// `127.0.0.1:PORT`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates a topic with `partitions` partitions.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        let status = Command::new(&self.bin)
            .args([
                "topic",
                "create",
                name,
                "--partitions",
                &partitions.to_string(),
            ])
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .stdout(Stdio::null())
            .status()
            .expect("tansu topic create runs");
        assert!(status.success(), "creating topic {name} failed");
    }

    /// SIGSTOP: the broker stops answering, connections stay open.
    pub fn freeze(&self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGSTOP) };
    }

    /// SIGCONT.
    pub fn thaw(&self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGCONT) };
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.thaw();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One message read back from Kafka.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub topic: String,
    pub partition: i32,
    pub key: Option<String>,
    pub headers: std::collections::BTreeMap<String, String>,
    pub payload: serde_json::Value,
}

/// Reads `topics` from the beginning with a real rdkafka consumer until
/// `count` messages arrived or `timeout` passed.
pub async fn consume(
    brokers: &str,
    topics: &[&str],
    count: usize,
    timeout: Duration,
) -> Vec<Consumed> {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};

    let brokers = brokers.to_string();
    let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", format!("test-{}", free_port()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names).expect("subscribe");
        let mut out = Vec::new();
        let deadline = Instant::now() + timeout;
        while out.len() < count && Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let headers = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|x| {
                                    (
                                        x.key.to_string(),
                                        String::from_utf8_lossy(x.value.unwrap_or_default())
                                            .into_owned(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    out.push(Consumed {
                        topic: m.topic().to_string(),
                        partition: m.partition(),
                        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                        headers,
                        payload: serde_json::from_slice(m.payload().unwrap_or_default())
                            .expect("payload is JSON"),
                    });
                }
                Some(Err(e)) => eprintln!("consumer: {e}"),
                None => {}
            }
        }
        out
    })
    .await
    .unwrap()
}

/// PEM files of a test PKI: a CA, a server certificate for `localhost` and
/// `127.0.0.1`, a client certificate, and an unrelated CA.
pub struct Certs {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub other_ca: PathBuf,
}

/// Writes a fresh test PKI into `dir`.
pub fn make_certs(dir: &std::path::Path) -> Certs {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_params = |cn: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.distinguished_name.push(DnType::CommonName, cn);
        p
    };
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params("auditfwd test CA").self_signed(&ca_key).unwrap();
    let ca_pem = ca_cert.pem();
    let issuer = Issuer::new(ca_params("auditfwd test CA"), ca_key);
    let leaf = |sans: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![usage];
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let cert = p.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_pem, server_key) = leaf(
        vec!["localhost".into(), "127.0.0.1".into()],
        "localhost",
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_pem, client_key) = leaf(
        vec!["auditfwd-client".into()],
        "auditfwd-client",
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let other_key = KeyPair::generate().unwrap();
    let other = ca_params("some other CA").self_signed(&other_key).unwrap();
    Certs {
        ca: write("ca.pem", ca_pem),
        server_cert: write("server.pem", server_pem),
        server_key: write("server.key", server_key),
        client_cert: write("client.pem", client_pem),
        client_key: write("client.key", client_key),
        other_ca: write("other-ca.pem", other.pem()),
    }
}

/// An `rsyslogd` in the foreground with its own configuration: plain UDP
/// and TCP inputs, a TLS input (server authentication) and a mutual-TLS
/// input (client certificate required), all on loopback, writing every
/// message's parsed properties as one JSON object per line.
pub struct Rsyslog {
    child: Child,
    pub dir: tempfile::TempDir,
    pub udp: u16,
    pub tcp: u16,
    pub tls: u16,
    pub mtls: u16,
    pub certs: Certs,
}

impl Rsyslog {
    /// Starts rsyslogd on free ports.
    pub fn start() -> Self {
        Self::start_with_tcp_port(free_port())
    }

    /// Starts rsyslogd with its plain TCP input on `tcp`.
    pub fn start_with_tcp_port(tcp: u16) -> Self {
        let bin = find_binary("rsyslogd", "RSYSLOGD_BIN");
        let dir = tempfile::tempdir().unwrap();
        let certs = make_certs(dir.path());
        let (udp, tls, mtls) = (free_port(), free_port(), free_port());
        let d = dir.path().display();
        let conf = format!(
            r#"
global(workDirectory="{d}" maxMessageSize="256k"
       defaultNetstreamDriverCAFile="{ca}" defaultNetstreamDriverCertFile="{cert}" defaultNetstreamDriverKeyFile="{key}")
module(load="imudp")
module(load="imtcp" maxSessions="200")
template(name="fields" type="list" option.jsonf="on") {{
  property(outname="pri" name="pri" format="jsonf")
  property(outname="version" name="protocol-version" format="jsonf")
  property(outname="timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app_name" name="app-name" format="jsonf")
  property(outname="programname" name="programname" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="structured_data" name="structured-data" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
  property(outname="input" name="inputname" format="jsonf")
}}
input(type="imudp" port="{udp}" address="127.0.0.1")
input(type="imtcp" port="{tcp}" address="127.0.0.1")
input(type="imtcp" port="{tls}" address="127.0.0.1" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imtcp" port="{mtls}" address="127.0.0.1" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="x509/certvalid")
action(type="omfile" file="{d}/received.jsonl" template="fields")
"#,
            ca = certs.ca.display(),
            cert = certs.server_cert.display(),
            key = certs.server_key.display(),
        );
        let conf_path = dir.path().join("rsyslog.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(bin)
            .arg("-n")
            .arg("-f")
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.path().join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("rsyslogd.log")).unwrap())
            .spawn()
            .expect("rsyslogd starts");
        let this = Self {
            child,
            dir,
            udp,
            tcp,
            tls,
            mtls,
            certs,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in [tcp, tls, mtls] {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "rsyslogd did not listen on {port}: {}",
                    this.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // imudp starts with the TCP inputs; give it a moment.
        std::thread::sleep(Duration::from_millis(200));
        this
    }

    /// rsyslogd's own messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rsyslogd.log")).unwrap_or_default()
    }

    /// Every message rsyslogd parsed so far.
    pub fn received(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("received.jsonl"))
            .unwrap_or_default()
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("rsyslog wrote a bad line ({e}): {l}"))
            })
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
