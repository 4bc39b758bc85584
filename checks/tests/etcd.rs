//! `etcd_health` against a real etcd (Debian `etcd-server`, `/usr/bin/etcd`)
//! started by the test on loopback with free ports and a temporary data
//! directory, and killed on drop: healthy, stopped, and with mutual TLS.
//!
//! A missing etcd (or openssl, for the certificates) fails the test with
//! the command that installs it; it never skips.

mod support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use patrol_checks::host::HttpRequest;
use patrol_checks::{Host, Observed, RealHost, Status};
use support::one;

fn etcd_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("etcd is not installed (no etcd in PATH or /usr/bin): install with: apt-get install etcd-server")
        })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Certificates for mutual TLS, made with openssl.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let sh = |script: &str| {
            let out = Command::new("/bin/sh")
                .arg("-c")
                .arg(script)
                .current_dir(dir.path())
                .output()
                .unwrap_or_else(|e| panic!("cannot run /bin/sh: {e}"));
            assert!(
                out.status.success(),
                "{script}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        sh("command -v openssl >/dev/null || { echo 'openssl is not installed: install with: apt-get install openssl' >&2; exit 1; }");
        let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        sh(&format!(
            "openssl req -x509 {ec} -keyout ca.key -out ca.pem -days 1 -subj /CN=patrol-test-ca 2>/dev/null"
        ));
        for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
            sh(&format!(
                "openssl req {ec} -keyout {name}.key -out {name}.csr -subj /CN=patrol-{name} 2>/dev/null && \
                 printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage={usage}\\n' > {name}.ext && \
                 openssl x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
                   -extfile {name}.ext -out {name}.pem 2>/dev/null"
            ));
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A running etcd; killed (and reaped) on drop.
struct Etcd {
    child: Option<Child>,
    endpoint: String,
    log: PathBuf,
    _data: tempfile::TempDir,
}

impl Etcd {
    fn start(pki: Option<&Pki>) -> Etcd {
        let binary = etcd_binary();
        let data = tempfile::tempdir().unwrap();
        let (client, peer) = (free_port(), free_port());
        let scheme = if pki.is_some() { "https" } else { "http" };
        let endpoint = format!("{scheme}://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = data.path().join("etcd.log");
        let mut cmd = Command::new(&binary);
        cmd.arg("--name=patrol-test")
            .arg(format!("--data-dir={}", data.path().join("data").display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=patrol-test={peer_url}"))
            .arg("--initial-cluster-state=new")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(data.path().join("etcd.err")).unwrap());
        if let Some(pki) = pki {
            cmd.arg(format!("--cert-file={}", pki.path("server.pem").display()))
                .arg(format!("--key-file={}", pki.path("server.key").display()))
                .arg(format!(
                    "--trusted-ca-file={}",
                    pki.path("ca.pem").display()
                ))
                .arg("--client-cert-auth");
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let etcd = Etcd {
            child: Some(child),
            endpoint,
            log,
            _data: data,
        };
        etcd.wait_healthy(pki);
        etcd
    }

    /// Poll `/health` until etcd says true (30 s at most).
    fn wait_healthy(&self, pki: Option<&Pki>) {
        let req = HttpRequest {
            url: format!("{}/health", self.endpoint),
            timeout: Duration::from_secs(2),
            ca_file: pki.map(|p| p.path("ca.pem")),
            cert_file: pki.map(|p| p.path("client.pem")),
            key_file: pki.map(|p| p.path("client.key")),
            max_body: 4096,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = String::new();
        while Instant::now() < deadline {
            match RealHost.http_get(&req) {
                Ok(r) if r.status == 200 && r.body.contains("true") => return,
                Ok(r) => last = format!("HTTP {}: {}", r.status, r.body),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "etcd at {} not healthy within 30 s (last: {last}); its log:\n{}{}",
            self.endpoint,
            std::fs::read_to_string(&self.log).unwrap_or_default(),
            std::fs::read_to_string(self.log.with_file_name("etcd.err")).unwrap_or_default()
        );
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The version `etcd --version` prints (`etcd Version: 3.4.23`).
fn installed_version() -> String {
    let out = Command::new(etcd_binary())
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("etcd Version:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("unexpected `etcd --version` output: {text}"))
}

fn check(endpoint: &str, extra: &str) -> String {
    format!(
        "[[check]]\nid = \"etcd\"\ntype = \"etcd_health\"\nendpoint = \"{endpoint}\"\ntimeout = \"5s\"\n{extra}\n"
    )
}

fn tls_keys(pki: &Pki) -> String {
    format!(
        "ca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"",
        pki.path("ca.pem").display(),
        pki.path("client.pem").display(),
        pki.path("client.key").display()
    )
}

fn named(o: &Observed, key: &str) -> Option<Observed> {
    match o {
        Observed::Named(items) => items.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()),
        _ => None,
    }
}

#[tokio::test]
#[ignore = "full tier: needs etcd"]
async fn a_healthy_etcd_passes_with_its_version_and_latency() {
    let etcd = Etcd::start(None);
    let version = installed_version();
    let o = one(
        RealHost,
        &check(
            &etcd.endpoint,
            "expect = { version = \">= 3.3\" }\nmax_latency = \"2s\"",
        ),
    )
    .await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    assert_eq!(
        named(&o.observed, "health"),
        Some(Observed::Text("true".into()))
    );
    assert_eq!(
        named(&o.observed, "version"),
        Some(Observed::Version(version.clone()))
    );
    assert!(
        matches!(named(&o.observed, "latency_ms"), Some(Observed::Number(ms)) if ms >= 0.0),
        "{o:?}"
    );
    assert!(
        o.message
            .starts_with(&format!("healthy, version {version}, ")),
        "{}",
        o.message
    );
    assert_eq!(o.expected, "health true, version >= 3.3, latency <= 2s");

    let o = one(
        RealHost,
        &check(&etcd.endpoint, "expect = { version = \"< 3.0\" }"),
    )
    .await;
    assert_eq!(o.status, Status::Fail, "{o:?}");
    assert_eq!(
        o.message,
        format!("observed {version}, expected version < 3.0")
    );
}

#[tokio::test]
#[ignore = "full tier: needs etcd"]
async fn a_stopped_etcd_fails_with_a_clear_message_not_a_hang() {
    let mut etcd = Etcd::start(None);
    let text = check(&etcd.endpoint, "");
    let o = one(RealHost, &text).await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    etcd.stop();
    let o = one(RealHost, &text).await;
    // A hang would end as `error` at the 5 s timeout; a refused connection
    // is an observed failure.
    assert_eq!(o.status, Status::Fail, "{o:?}");
    assert!(
        o.message
            .starts_with(&format!("etcd at {} is unreachable: ", etcd.endpoint)),
        "{}",
        o.message
    );
    assert!(o.message.contains("connection refused"), "{}", o.message);
    assert_eq!(
        named(&o.observed, "health"),
        Some(Observed::Text("unreachable".into()))
    );
}

#[tokio::test]
#[ignore = "full tier: needs etcd and openssl"]
async fn mutual_tls_with_ca_and_client_certificate() {
    let pki = Pki::new();
    let etcd = Etcd::start(Some(&pki));
    let o = one(RealHost, &check(&etcd.endpoint, &tls_keys(&pki))).await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    assert_eq!(
        named(&o.observed, "version"),
        Some(Observed::Version(installed_version()))
    );

    // Without the CA the server certificate is not trusted.
    let o = one(RealHost, &check(&etcd.endpoint, "")).await;
    assert_eq!(o.status, Status::Fail, "{o:?}");
    assert!(o.message.contains("UnknownIssuer"), "{}", o.message);

    // With the CA but no client certificate, etcd refuses the handshake.
    let ca_only = format!("ca_file = \"{}\"", pki.path("ca.pem").display());
    let o = one(RealHost, &check(&etcd.endpoint, &ca_only)).await;
    assert_eq!(o.status, Status::Fail, "{o:?}");
    assert!(o.message.contains("is unreachable"), "{}", o.message);

    // A CA file that does not exist is named.
    let missing = "ca_file = \"/nonexistent/ca.pem\"";
    let o = one(RealHost, &check(&etcd.endpoint, missing)).await;
    assert_eq!(o.status, Status::Error, "{o:?}");
    assert!(
        o.message
            .contains("cannot read CA file /nonexistent/ca.pem"),
        "{}",
        o.message
    );
}
