//! An rsyslogd receiver that writes what it parsed as JSON lines.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Certs, find_binary, free_port, make_certs};

/// An `rsyslogd` in the foreground with its own configuration: plain UDP
/// and TCP inputs, a TLS input (server authentication) and a mutual-TLS
/// input (client certificate required), all on loopback, writing every
/// message's parsed properties as one JSON object per line.
pub struct Rsyslog {
    child: Child,
    /// Its configuration, certificates, log and received messages.
    pub dir: tempfile::TempDir,
    /// The plain UDP input's port.
    pub udp: u16,
    /// The plain TCP input's port.
    pub tcp: u16,
    /// The TLS input's port (server authentication).
    pub tls: u16,
    /// The mutual-TLS input's port (client certificate required).
    pub mtls: u16,
    /// The PKI of the TLS inputs.
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
# A UDP receiver sized for bursts, as one taking a forwarder's should be:
# the kernel's default buffer (208 KiB) overflows when a source's batches
# in flight arrive at once on a loaded machine, and UDP has no backpressure.
input(type="imudp" port="{udp}" address="127.0.0.1" rcvbufSize="4m")
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
