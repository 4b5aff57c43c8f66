//! Kafka over TLS: the shared suite on a broker reached only through TLS, and a stream
//! refusing a broker whose certificate its CA does not sign.
//!
//! Each test starts its own broker (tansu, the binary at `PYNOMALY_TEST_TANSU`, which
//! `.ci/run` builds) behind nginx's `stream` module terminating TLS with a self-signed
//! certificate made here (`openssl req`); the broker advertises nginx's port, so every
//! connection a client makes goes through TLS. The clients get `security.protocol=SSL` and
//! `ssl.ca.location` (and the stream processes the same as `--kafka-config`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;
use testkit::wait::wait;
use testkit::{Proc, free_port};

use super::{Connection, Endpoint, KafkaTopics};
use crate::{Env, pynomaly};

suite!(KafkaTopics<Tls>);

/// Where Debian's `libnginx-mod-stream` puts the module.
const STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// A broker of one test's own behind a TLS endpoint.
pub(super) struct Tls;

impl Endpoint for Tls {
    fn open() -> Option<Connection> {
        let broker = TlsBroker::start()?;
        Some(Connection {
            brokers: broker.address.clone(),
            settings: vec![
                ("security.protocol".into(), "SSL".into()),
                ("ssl.ca.location".into(), broker.ca.display().to_string()),
            ],
            _servers: Some(Box::new(broker)),
        })
    }
}

/// tansu on a loopback port, nginx terminating TLS in front of it; both stopped on drop.
struct TlsBroker {
    address: String,
    /// The certificate nginx presents, which is its own CA.
    ca: PathBuf,
    dir: TempDir,
    _nginx: Proc,
    _tansu: Proc,
}

/// A self-signed certificate for 127.0.0.1 at `dir/name.pem`, its key at `dir/name.key`.
fn self_signed(dir: &Path, name: &str) -> PathBuf {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=127.0.0.1", "-addext"])
        .arg("subjectAltName=IP:127.0.0.1,DNS:localhost")
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (the command-line tool) makes the test's certificates");
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    cert
}

impl TlsBroker {
    fn start() -> Option<TlsBroker> {
        let tansu = testkit::env::service(testkit::env::TANSU_VAR)?;
        assert!(
            Path::new(STREAM_MODULE).exists(),
            "{STREAM_MODULE} is missing: install Debian's libnginx-mod-stream (.ci/run does)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = self_signed(dir.path(), "broker");
        let (plain, tls) = (free_port(), free_port());
        let tansu = Proc::spawn(
            "tansu",
            Command::new(tansu)
                .args(["broker", "--storage-engine", "memory://tansu/"])
                .args(["--listener-url", &format!("tcp://127.0.0.1:{plain}")])
                .args([
                    "--advertised-listener-url",
                    &format!("tcp://127.0.0.1:{tls}"),
                ]),
            &dir.path().join("tansu.log"),
        );
        let conf = format!(
            "load_module {STREAM_MODULE};\n\
             pid {dir}/nginx.pid;\n\
             error_log stderr warn;\n\
             events {{ worker_connections 256; }}\n\
             stream {{\n\
                 server {{\n\
                     listen 127.0.0.1:{tls} ssl;\n\
                     ssl_protocols TLSv1.2 TLSv1.3;\n\
                     ssl_certificate {cert};\n\
                     ssl_certificate_key {key};\n\
                     proxy_pass 127.0.0.1:{plain};\n\
                 }}\n\
             }}\n",
            dir = dir.path().display(),
            cert = ca.display(),
            key = dir.path().join("broker.key").display(),
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("nginx.conf");
        let nginx = Proc::spawn(
            "nginx",
            Command::new("nginx")
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(&conf_path)
                .args(["-e", "stderr", "-g", "daemon off;"]),
            &dir.path().join("nginx.log"),
        );
        for (proc, port) in [(&tansu, plain), (&nginx, tls)] {
            wait(
                &format!("{} listens on {port}", proc.name()),
                Duration::from_secs(30),
            )
            .until_blocking(|| {
                proc.assert_running("it to listen");
                std::net::TcpStream::connect(("127.0.0.1", port))
                    .map(drop)
                    .map_err(|e| e.to_string())
            });
        }
        Some(TlsBroker {
            address: format!("127.0.0.1:{tls}"),
            ca,
            dir,
            _nginx: nginx,
            _tansu: tansu,
        })
    }
}

#[test]
fn a_broker_certificate_the_ca_does_not_sign_stops_the_stream_with_the_reason() {
    let Some(broker) = TlsBroker::start() else {
        return;
    };
    let other_ca = self_signed(broker.dir.path(), "other");
    let data = tempfile::tempdir().expect("tempdir");
    let topic = |t: &str| format!("kafka://{}/{t}", broker.address);
    let ca_setting = format!("ssl.ca.location={}", other_ca.display());
    let env = Env::default().set("PYNOMALY_DATA_DIR", data.path());
    let source = topic("events");
    let sink = topic("alerts");
    let args = [
        "stream",
        "--source",
        &source,
        "--sink",
        &sink,
        "--algorithm",
        "isolation_forest",
        "--kafka-config",
        "security.protocol=SSL",
        "--kafka-config",
        &ca_setting,
    ];
    let mut stream = pynomaly("stream-untrusted", &args, &env, data.path());
    wait("the stream to stop", Duration::from_secs(60)).until_blocking(|| {
        if stream.exited() {
            Ok(())
        } else {
            Err(stream.log_tail())
        }
    });
    // The exit status of the process that has already exited.
    let code = stream.stop(Duration::from_secs(1));
    let log = stream.log_text();
    assert!(
        code.is_some_and(|c| !c.success()),
        "the stream should fail: {code:?}\n{log}"
    );
    assert!(
        log.contains("cannot connect to the Kafka brokers at")
            && log.contains("certificate verify failed"),
        "the error should name the failed verification:\n{log}"
    );
}
