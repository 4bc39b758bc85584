//! Prometheus against the real thing: an agent process with `[metrics]
//! listen` on loopback, Debian's `prometheus` server started on loopback
//! scraping it, and the series read back through the PromQL HTTP API.
//! `promtool check metrics` (which comes with the package) passes on the
//! endpoint's page, on the `patrol sweep --prometheus` textfile and on the
//! `patrol members --stats --prometheus` one.
//!
//! Needs Debian's `prometheus` package (`apt-get install prometheus`;
//! `bash .ci/run` installs it). Without it the test fails and says so.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use patrol_tests::process::{cluster_key, patrol, start_with_metrics, write_config, AgentProcess};
use serde_json::Value;

const INSTALL: &str =
    "needs Debian's prometheus package (server and promtool): apt-get install prometheus (bash .ci/run installs it)";

fn tool(name: &str) -> String {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p.display().to_string();
        }
    }
    panic!("{name} not found: {INSTALL}");
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over a fresh connection; (status line, body).
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(String, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default().to_string();
    // Prometheus answers small bodies whole, large ones chunked.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn url_encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `promtool check metrics` on `text`; panics with its complaints.
fn promtool_check(text: &str, what: &str) {
    let mut child = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics complains about {what}:\n{}{}\n--- the input:\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One instant-vector query; the values of the result, as (labels, value).
fn query(prom: SocketAddr, q: &str) -> Vec<(Value, f64)> {
    let Ok((status, body)) = http_get(prom, &format!("/api/v1/query?query={}", url_encode(q)))
    else {
        return Vec::new();
    };
    if !status.contains(" 200 ") {
        return Vec::new();
    }
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    v["data"]["result"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|s| {
                    let value = s["value"][1]
                        .as_str()
                        .unwrap_or("NaN")
                        .parse()
                        .unwrap_or(f64::NAN);
                    (s["metric"].clone(), value)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> Option<String>) -> String {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
#[ignore = "full tier: needs prometheus and promtool"]
fn a_real_prometheus_scrapes_the_agent_and_promtool_accepts_both_outputs() {
    let prometheus = tool("prometheus");
    let dir = tempfile::tempdir().unwrap();
    let key = cluster_key(dir.path(), "cluster.key");
    let checks = "[[check]]\nid = \"pid-max\"\ntype = \"sysctl\"\nkey = \"kernel.pid_max\"\nexpect = { min = 1 }\n";
    let (a, metrics_addr) = start_with_metrics(dir.path(), "m0", &key, checks);
    let b = AgentProcess::start(&write_config(
        dir.path(),
        "m1",
        &key,
        &[a.gossip],
        0,
        checks,
    ));

    // A sweep through the first agent, until both nodes answer; it also
    // writes the textfile.
    let prom_file = dir.path().join("patrol.prom");
    let seed = a.control.to_string();
    let cfg = a.config.to_str().unwrap().to_string();
    wait_for(
        Duration::from_secs(30),
        "a sweep that both agents answer",
        || {
            let out = patrol(&[
                "sweep",
                "--seed",
                &seed,
                "--config",
                &cfg,
                "--format",
                "json",
                "--prometheus",
                prom_file.to_str().unwrap(),
                "--deadline",
                "2s",
            ]);
            let doc: Value = serde_json::from_slice(&out.stdout).ok()?;
            (doc["counts"]["ok"] == 2).then(|| "ok".to_string())
        },
    );
    let textfile = std::fs::read_to_string(&prom_file).unwrap();
    assert!(
        textfile.contains("patrol_sweep_nodes{cluster=\"proc-test\",state=\"ok\"} 2"),
        "{textfile}"
    );
    promtool_check(&textfile, "the textfile");

    // The agent's counters as a textfile (`members --stats --prometheus`).
    let counters_file = dir.path().join("agent.prom");
    let out = patrol(&[
        "members",
        "--seed",
        &seed,
        "--config",
        &cfg,
        "--stats",
        "--prometheus",
        counters_file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counters = std::fs::read_to_string(&counters_file).unwrap();
    assert!(
        counters.contains("\npatrol_datagrams_dropped_total{reason=\"replayed\"} "),
        "{counters}"
    );
    promtool_check(&counters, "the agent's counters textfile");

    // The endpoint, as curl and promtool read it (classic text format).
    let (status, page) = http_get(metrics_addr, "/metrics").unwrap();
    assert!(status.contains(" 200 "), "{status}");
    assert!(
        page.contains("patrol_check_status{check=\"pid-max\",kind=\"sysctl\",status=\"pass\"} 1"),
        "{page}"
    );
    promtool_check(&page, "the agent's /metrics page");

    // The real server, scraping every second (OpenMetrics: it asks for it).
    let (_server, prom_addr, log_text) = start_prometheus(&prometheus, dir.path(), metrics_addr);
    wait_up(prom_addr, &log_text);
    let one = |q: &str| -> f64 {
        let r = query(prom_addr, q);
        assert_eq!(r.len(), 1, "{q}: {r:?}\n{}", log_text());
        r[0].1
    };
    assert_eq!(one("patrol_members{state=\"alive\"}"), 2.0);
    assert_eq!(
        one("patrol_check_status{check=\"pid-max\",status=\"pass\"}"),
        1.0
    );
    assert_eq!(
        one("patrol_check_status{check=\"pid-max\",status=\"fail\"}"),
        0.0
    );
    assert!(one("patrol_datagrams_received_total") > 0.0);
    assert!(one("patrol_sweeps_coordinated_total") >= 1.0);
    assert!(one("patrol_sweeps_joined_total") >= 1.0);
    assert!(one("patrol_check_duration_seconds_count{kind=\"sysctl\"}") >= 1.0);
    assert!(one("patrol_last_sweep_age_seconds") < 120.0);
    assert_eq!(one("sum(patrol_datagrams_dropped_total)"), 0.0);
    assert_eq!(one("sum(patrol_sweep_messages_refused_total)"), 0.0);
    drop(b);
}

/// A real prometheus scraping `metrics_addr` every second; its address
/// and a reader of its log.
fn start_prometheus(
    prometheus: &str,
    dir: &std::path::Path,
    metrics_addr: SocketAddr,
) -> (Server, SocketAddr, impl Fn() -> String) {
    let prom_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let conf = dir.join("prometheus.yml");
    std::fs::write(
        &conf,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: patrol\n    static_configs:\n      - targets: ['{metrics_addr}']\n"
        ),
    )
    .unwrap();
    let log_path = dir.join("prometheus.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let server = Server(
        Command::new(prometheus)
            .arg(format!("--config.file={}", conf.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {prometheus}: {e}; {INSTALL}")),
    );
    let log_text = move || std::fs::read_to_string(&log_path).unwrap_or_default();
    (server, prom_addr, log_text)
}

/// Wait (up to 60 s) until prometheus has scraped the target.
fn wait_up(prom_addr: SocketAddr, log_text: &dyn Fn() -> String) {
    let up = || {
        let r = query(prom_addr, "up{job=\"patrol\"}");
        r.first().map(|(_, v)| *v)
    };
    let start = Instant::now();
    while up() != Some(1.0) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "prometheus never scraped the agent (up = {:?}); its log:\n{}",
            up(),
            log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Regression (issue 22): 400 idle connections to the metrics port made
/// every scrape time out (the server waited for one of 16 slots before it
/// accepted, and idle clients were never evicted). A real prometheus
/// scrapes while a local client keeps 400 idle connections open,
/// reopening every one the agent closes.
#[test]
#[ignore = "full tier: needs prometheus and promtool"]
fn a_real_prometheus_scrapes_while_four_hundred_idle_connections_are_held() {
    let prometheus = tool("prometheus");
    let dir = tempfile::tempdir().unwrap();
    let key = cluster_key(dir.path(), "cluster.key");
    let (_agent, metrics_addr) = start_with_metrics(dir.path(), "idle0", &key, "");
    wait_for(Duration::from_secs(30), "the metrics port", || {
        std::net::TcpStream::connect(metrics_addr)
            .ok()
            .map(|_| "up".to_string())
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let holder = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut idle: Vec<std::net::TcpStream> = Vec::new();
            let mut reopened = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Drop the ones the agent closed, reopen up to 400.
                idle.retain(|s| {
                    let mut buf = [0u8; 1];
                    s.set_nonblocking(true).unwrap();
                    !matches!(std::io::Read::read(&mut &*s, &mut buf), Ok(0))
                });
                while idle.len() < 400 {
                    match std::net::TcpStream::connect(metrics_addr) {
                        Ok(s) => idle.push(s),
                        Err(_) => break,
                    }
                    reopened += 1;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            reopened
        })
    };
    let (_server, prom_addr, log_text) = start_prometheus(&prometheus, dir.path(), metrics_addr);
    wait_up(prom_addr, &log_text);
    // Scrapes keep succeeding, not just one.
    std::thread::sleep(Duration::from_secs(3));
    let r = query(prom_addr, "min_over_time(up{job=\"patrol\"}[3s])");
    assert_eq!(
        r.first().map(|(_, v)| *v),
        Some(1.0),
        "{r:?}\n{}",
        log_text()
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reopened = holder.join().unwrap();
    assert!(
        reopened >= 400,
        "the idle connections were held: {reopened}"
    );
}
