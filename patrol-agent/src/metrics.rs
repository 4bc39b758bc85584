//! The agent's OpenMetrics endpoint (`[metrics] listen`, off by default):
//! `GET /metrics` for Prometheus, encoded with the `prometheus-client`
//! crate.
//!
//! Two sources feed it:
//! - a [`Source`]: a closure the daemon hands in that asks the owner task
//!   for a [`Snapshot`] (members by state, datagram and sweep counters).
//!   The owner task keeps its counters; this module never reaches into it,
//!   so the owner task can change shape without this file changing;
//! - a [`CheckMeter`] that sees every local check outcome on its way out
//!   of the inspector ([`MeteredInspector`]): check durations by kind (a
//!   histogram), the status of each local check in the last sweep that ran
//!   it, the time of that sweep, and how many sweeps this node joined. So
//!   a node-level alert (`patrol_check_status{status="fail"} == 1`) works
//!   between nightly sweeps.
//!
//! Series (all prefixed `patrol_`):
//!
//! | series | type | labels |
//! |---|---|---|
//! | `members` | gauge | `state` (alive, suspect, down, left) |
//! | `datagrams_received_total`, `datagrams_sent_total` | counter | |
//! | `datagrams_dropped_total` | counter | `reason` (unsealed, malformed, outbound_full) |
//! | `sweeps_coordinated_total`, `sweeps_joined_total` | counter | |
//! | `sweep_messages_refused_total` | counter | `reason` (what the sweep core refused and counted) |
//! | `check_duration_seconds` | histogram | `kind` |
//! | `last_sweep_age_seconds` | gauge | (absent before the first sweep) |
//! | `check_status` | gauge, 1 for the current status and 0 for the others | `check`, `kind`, `status` |
//!
//! Prometheus asks for OpenMetrics and gets it; a client that does not
//! (curl, `promtool check metrics`) gets the same series in the classic
//! text format ([`prometheus_text`]).
//!
//! The HTTP side is the least a scraper needs: one request per
//! connection, a head of at most [`MAX_REQUEST_HEAD`] bytes read within
//! [`REQUEST_TIMEOUT`], at most [`MAX_CONNECTIONS`] at once, `GET
//! /metrics` or 404.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use patrol_checks::{CheckOutcome, Selector, Status};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::agent::Inspector;
use crate::membership::MemberState;

/// Bytes of request head read at most before answering 400.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Time a client has to send its request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more wait for a slot.
pub const MAX_CONNECTIONS: usize = 16;
/// The OpenMetrics content type Prometheus asks for.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The classic Prometheus text format, for clients that do not ask for
/// OpenMetrics (`curl`, `promtool check metrics`, node_exporter's
/// textfile collector).
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// OpenMetrics text as the classic Prometheus text format (0.0.4): a
/// counter family's `# HELP` and `# TYPE` name carry the `_total` suffix
/// its samples have, and `# EOF` and `# UNIT` lines go. Samples are
/// unchanged. This is what `promtool check metrics` (which reads only the
/// classic format) and the textfile collector expect.
pub fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// What the owner task knows, at the moment of a scrape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Members (this node included) by SWIM state; a state not listed
    /// counts 0.
    pub members: Vec<(MemberState, u64)>,
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    /// Datagrams that did not open (wrong key, corrupted, other cluster).
    pub dropped_unsealed: u64,
    /// Opened datagrams that foca or the sweep decoder rejected.
    pub dropped_malformed: u64,
    /// Sealed datagrams not sent because the outbound queue was full.
    pub dropped_outbound: u64,
    pub sweeps_coordinated: u64,
    /// Sweep messages the node refused, by reason (e.g. `clock_skew`,
    /// `ack`): every refusal is counted, never silently dropped.
    pub refused: Vec<(String, u64)>,
}

/// Asks the owner task for a [`Snapshot`]; `None` when the agent is gone
/// (the scrape then gets 503).
pub type Source =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Option<Snapshot>> + Send>> + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    check: String,
    kind: String,
    status: String,
}

/// Check durations: 100 µs up to ~26 s, ×4 per bucket.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 4.0, 10))
}

type DurationFamily = Family<KindLabel, Histogram, fn() -> Histogram>;

/// What the local checks did, kept across scrapes.
#[derive(Debug, Default)]
struct LocalChecks {
    /// Check id -> (kind, status) in the last sweep that ran it.
    last: BTreeMap<String, (String, Status)>,
    last_sweep: Option<Instant>,
    sweeps_joined: u64,
}

/// Records local check outcomes for the endpoint. Cheap to clone.
#[derive(Clone)]
pub struct CheckMeter {
    durations: DurationFamily,
    local: Arc<Mutex<LocalChecks>>,
}

impl std::fmt::Debug for CheckMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckMeter").finish_non_exhaustive()
    }
}

impl Default for CheckMeter {
    fn default() -> Self {
        CheckMeter {
            durations: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            local: Arc::default(),
        }
    }
}

impl CheckMeter {
    /// One sweep's local outcomes, at `now`.
    pub fn record(&self, outcomes: &[CheckOutcome], now: Instant) {
        for o in outcomes {
            self.durations
                .get_or_create(&KindLabel {
                    kind: o.kind.clone(),
                })
                .observe(o.duration_us as f64 / 1e6);
        }
        let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        for o in outcomes {
            local.last.insert(o.id.clone(), (o.kind.clone(), o.status));
        }
        local.last_sweep = Some(now);
        local.sweeps_joined += 1;
    }
}

/// An [`Inspector`] that shows every outcome to a [`CheckMeter`] on its
/// way to the sweep.
pub struct MeteredInspector {
    inner: Arc<dyn Inspector>,
    meter: CheckMeter,
}

impl MeteredInspector {
    pub fn new(inner: Arc<dyn Inspector>, meter: CheckMeter) -> Self {
        MeteredInspector { inner, meter }
    }
}

impl Inspector for MeteredInspector {
    fn inspect(
        &self,
        selector: &Selector,
        budget: Duration,
    ) -> Pin<Box<dyn Future<Output = Vec<CheckOutcome>> + Send>> {
        let run = self.inner.inspect(selector, budget);
        let meter = self.meter.clone();
        Box::pin(async move {
            let outcomes = run.await;
            meter.record(&outcomes, Instant::now());
            outcomes
        })
    }
}

/// Builds the page: a fresh registry per scrape over the snapshot, plus
/// the long-lived check metrics.
#[derive(Clone)]
pub struct Exporter {
    source: Source,
    meter: CheckMeter,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").finish_non_exhaustive()
    }
}

const ALL_STATES: [MemberState; 4] = [
    MemberState::Alive,
    MemberState::Suspect,
    MemberState::Down,
    MemberState::Left,
];

const ALL_STATUSES: [Status; 4] = [Status::Pass, Status::Warn, Status::Fail, Status::Error];

fn counter(value: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(value);
    c
}

impl Exporter {
    pub fn new(source: Source, meter: CheckMeter) -> Self {
        Exporter { source, meter }
    }

    /// The OpenMetrics text for `snapshot` at `now`.
    pub fn encode(&self, snapshot: &Snapshot, now: Instant) -> String {
        let mut registry = Registry::with_prefix("patrol");
        let members = Family::<StateLabel, Gauge>::default();
        for state in ALL_STATES {
            let n: u64 = snapshot
                .members
                .iter()
                .filter(|(s, _)| *s == state)
                .map(|(_, n)| n)
                .sum();
            members
                .get_or_create(&StateLabel {
                    state: state.as_str().to_string(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        registry.register(
            "members",
            "Members of the mesh by SWIM state, as this agent sees them",
            members,
        );
        registry.register(
            "datagrams_received",
            "Datagrams received on the gossip socket",
            counter(snapshot.datagrams_in),
        );
        registry.register(
            "datagrams_sent",
            "Datagrams sent on the gossip socket",
            counter(snapshot.datagrams_out),
        );
        let dropped = Family::<ReasonLabel, Counter>::default();
        for (reason, n) in [
            ("unsealed", snapshot.dropped_unsealed),
            ("malformed", snapshot.dropped_malformed),
            ("outbound_full", snapshot.dropped_outbound),
        ] {
            dropped
                .get_or_create(&ReasonLabel {
                    reason: reason.to_string(),
                })
                .inc_by(n);
        }
        registry.register(
            "datagrams_dropped",
            "Datagrams dropped: unsealed (did not open: wrong key, corrupted, other cluster), malformed (opened but did not decode) or outbound_full (not sent: the send queue was full)",
            dropped,
        );
        registry.register(
            "sweeps_coordinated",
            "Sweeps this agent coordinated",
            counter(snapshot.sweeps_coordinated),
        );
        let refused = Family::<ReasonLabel, Counter>::default();
        for (reason, n) in &snapshot.refused {
            refused
                .get_or_create(&ReasonLabel {
                    reason: reason.clone(),
                })
                .inc_by(*n);
        }
        registry.register(
            "sweep_messages_refused",
            "Sweep requests, answer pieces and acks this node refused, by reason",
            refused,
        );
        let local = self.meter.local.lock().unwrap_or_else(|e| e.into_inner());
        registry.register(
            "sweeps_joined",
            "Sweeps this node ran its checks for",
            counter(local.sweeps_joined),
        );
        registry.register(
            "check_duration_seconds",
            "How long local checks took, by kind",
            self.meter.durations.clone(),
        );
        if let Some(at) = local.last_sweep {
            let age = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
            age.set(now.saturating_duration_since(at).as_secs_f64());
            registry.register(
                "last_sweep_age_seconds",
                "Seconds since this node last ran its checks for a sweep",
                age,
            );
        }
        let status = Family::<StatusLabels, Gauge>::default();
        for (check, (kind, current)) in &local.last {
            for s in ALL_STATUSES {
                status
                    .get_or_create(&StatusLabels {
                        check: check.clone(),
                        kind: kind.clone(),
                        status: s.as_str().to_string(),
                    })
                    .set(i64::from(s == *current));
            }
        }
        drop(local);
        registry.register(
            "check_status",
            "Status of each local check in the last sweep that ran it: 1 for its status, 0 for the others",
            status,
        );
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }

    /// The page for one scrape, or `None` when the agent is gone.
    pub async fn scrape(&self) -> Option<String> {
        let snapshot = (self.source)().await?;
        Some(self.encode(&snapshot, Instant::now()))
    }
}

/// Serve `GET /metrics` on `listener`, until the future is dropped (the
/// agent's task set cancels it on shutdown; the connections in flight go
/// with it).
pub async fn serve(listener: TcpListener, exporter: Exporter) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let Ok(slot) = slots.clone().acquire_owned().await else { break };
                let exporter = exporter.clone();
                connections.spawn(async move {
                    let _ = serve_one(stream, &exporter).await;
                    drop(slot);
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Read one request head and answer it; the connection closes after.
async fn serve_one(mut stream: TcpStream, exporter: &Exporter) -> std::io::Result<()> {
    let head = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await;
    let (status, content_type, body) = match head {
        Ok(Ok(Some(head))) => match parse_request_line(head.lines().next().unwrap_or_default()) {
            Some(("GET", "/metrics")) => match exporter.scrape().await {
                Some(page) if wants_openmetrics(&head) => ("200 OK", CONTENT_TYPE, page),
                Some(page) => ("200 OK", TEXT_CONTENT_TYPE, prometheus_text(&page)),
                None => (
                    "503 Service Unavailable",
                    "text/plain",
                    "the agent is stopping\n".to_string(),
                ),
            },
            Some(("GET", _)) => ("404 Not Found", "text/plain", "try /metrics\n".into()),
            Some(_) => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
            None => ("400 Bad Request", "text/plain", "bad request\n".into()),
        },
        Ok(Ok(None)) => ("400 Bad Request", "text/plain", "bad request\n".into()),
        Ok(Err(e)) => return Err(e),
        Err(_) => return Ok(()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Whether the request's `Accept` header names OpenMetrics (Prometheus
/// does; curl does not).
fn wants_openmetrics(head: &str) -> bool {
    head.lines().skip(1).any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("accept") && v.contains("application/openmetrics-text")
        })
    })
}

/// The request head, once the whole of it (up to the blank line) is in;
/// `None` when it is too long or the peer closed early.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(String::from_utf8_lossy(&buf[..end]).into_owned()));
        }
        if buf.len() > MAX_REQUEST_HEAD {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `GET /metrics?x HTTP/1.1` -> (`GET`, `/metrics`).
fn parse_request_line(line: &str) -> Option<(&str, &str)> {
    let mut parts = line.split_whitespace();
    let method = parts.next()?;
    let target = parts.next()?;
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    let path = target.split('?').next().unwrap_or(target);
    Some((method, path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use patrol_checks::{Observed, Severity};

    fn outcome(id: &str, kind: &str, status: Status, us: u64) -> CheckOutcome {
        CheckOutcome {
            id: id.into(),
            kind: kind.into(),
            status,
            severity: Severity::Fail,
            observed: Observed::Number(1.0),
            expected: String::new(),
            message: String::new(),
            duration_us: us,
            description: String::new(),
            remediation: String::new(),
        }
    }

    fn exporter(meter: CheckMeter) -> Exporter {
        Exporter::new(
            Arc::new(|| Box::pin(async { Some(Snapshot::default()) })),
            meter,
        )
    }

    #[test]
    fn the_page_carries_counters_members_and_the_last_status_of_each_check() {
        let meter = CheckMeter::default();
        let t0 = Instant::now();
        meter.record(
            &[
                outcome("pid-max", "sysctl", Status::Pass, 200),
                outcome("disk-root", "disk", Status::Fail, 3_000),
            ],
            t0,
        );
        // A later sweep that ran only one of them changes only that one.
        meter.record(&[outcome("pid-max", "sysctl", Status::Warn, 300)], t0);
        let snapshot = Snapshot {
            members: vec![(MemberState::Alive, 3), (MemberState::Down, 1)],
            datagrams_in: 10,
            datagrams_out: 12,
            dropped_unsealed: 2,
            dropped_malformed: 1,
            dropped_outbound: 5,
            sweeps_coordinated: 4,
            refused: vec![("clock_skew".into(), 2)],
        };
        let page = exporter(meter).encode(&snapshot, t0 + Duration::from_secs(30));
        for line in [
            "patrol_members{state=\"alive\"} 3",
            "patrol_members{state=\"suspect\"} 0",
            "patrol_members{state=\"down\"} 1",
            "patrol_datagrams_received_total 10",
            "patrol_datagrams_sent_total 12",
            "patrol_datagrams_dropped_total{reason=\"unsealed\"} 2",
            "patrol_datagrams_dropped_total{reason=\"malformed\"} 1",
            "patrol_datagrams_dropped_total{reason=\"outbound_full\"} 5",
            "patrol_sweeps_coordinated_total 4",
            "patrol_sweep_messages_refused_total{reason=\"clock_skew\"} 2",
            "patrol_sweeps_joined_total 2",
            "patrol_last_sweep_age_seconds 30.0",
            "patrol_check_status{check=\"pid-max\",kind=\"sysctl\",status=\"warn\"} 1",
            "patrol_check_status{check=\"pid-max\",kind=\"sysctl\",status=\"pass\"} 0",
            "patrol_check_status{check=\"disk-root\",kind=\"disk\",status=\"fail\"} 1",
            "patrol_check_duration_seconds_count{kind=\"sysctl\"} 2",
            "patrol_check_duration_seconds_count{kind=\"disk\"} 1",
            "# EOF",
        ] {
            assert!(page.lines().any(|l| l == line), "no `{line}` in:\n{page}");
        }
    }

    #[test]
    fn before_any_sweep_there_is_no_age_and_no_check_status() {
        let page = exporter(CheckMeter::default()).encode(&Snapshot::default(), Instant::now());
        assert!(!page.contains("patrol_last_sweep_age_seconds "), "{page}");
        assert!(!page.contains("patrol_check_status{"), "{page}");
        assert!(page.contains("patrol_sweeps_joined_total 0"), "{page}");
    }

    #[test]
    fn request_lines_are_parsed_strictly() {
        assert_eq!(
            parse_request_line("GET /metrics HTTP/1.1"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(
            parse_request_line("GET /metrics?x=1 HTTP/1.0"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(parse_request_line("GET /metrics"), None);
        assert_eq!(parse_request_line(""), None);
    }

    #[tokio::test]
    async fn the_endpoint_answers_get_metrics_and_404_elsewhere() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(serve(listener, exporter(CheckMeter::default())));
        let get = |path: &'static str, accept: &'static str| async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n{accept}\r\n").as_bytes())
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let open = "Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n";
        let page = get("/metrics", open).await;
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
        assert!(page.contains(CONTENT_TYPE), "{page}");
        assert!(page.ends_with("# EOF\n"), "{page}");
        assert!(
            page.contains("# TYPE patrol_sweeps_joined counter\n"),
            "{page}"
        );
        let page = get("/metrics", "").await;
        assert!(page.contains(TEXT_CONTENT_TYPE), "{page}");
        assert!(!page.contains("# EOF"), "{page}");
        assert!(
            page.contains("# TYPE patrol_sweeps_joined_total counter\n"),
            "{page}"
        );
        assert!(page.contains("\npatrol_sweeps_joined_total 0\n"), "{page}");
        assert!(get("/", "").await.starts_with("HTTP/1.1 404"));
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
    }
}
