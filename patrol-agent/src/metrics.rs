//! The agent's OpenMetrics endpoint (`[metrics] listen`, off by default):
//! `GET /metrics` for Prometheus, encoded with the `prometheus-client`
//! crate.
//!
//! Two sources feed it:
//! - a [`Source`]: a closure the daemon hands in that asks the owner task
//!   for a [`Snapshot`] (members by state, and every counter of the one
//!   counter list, [`patrol_core::counter_list`]). The owner task keeps
//!   its counters; this module never reaches into it, so the owner task
//!   can change shape without this file changing;
//! - a [`CheckMeter`] that sees every local check outcome on its way out
//!   of the inspector ([`MeteredInspector`]): check durations by kind (a
//!   histogram), the status of each local check in the last sweep that ran
//!   it, the time of that sweep, and how many sweeps this node joined. So
//!   a node-level alert (`patrol_check_status{status="fail"} == 1`) works
//!   between nightly sweeps.
//!
//! Series (all prefixed `patrol_`). The counters come from the counter
//! list, whose module names each family and reason; [`counters_text`]
//! writes the same families for `patrol members --stats --prometheus`:
//!
//! | series | type | labels |
//! |---|---|---|
//! | `members` | gauge | `state` (alive, suspect, down, left) |
//! | `datagrams_received_total`, `datagrams_sent_total` | counter | |
//! | `datagrams_dropped_total` | counter | `reason` (unsealed, replayed, clock_skew, muted, misdirected, other, malformed, outbound_full) |
//! | `sweeps_coordinated_total`, `check_runs_total`, `sweep_request_copies_total` | counter | |
//! | `sweep_messages_refused_total` | counter | `reason` (clock_skew, over_capacity, over_quota, unauthorized, answer_piece, forged_answer, unverified_answer, expired_answer, ack, batch_ack, forged_time, relay_hold, relay_piece, answered_before) |
//! | `relayed_answers_total`, `relay_batches_sent_total`, `relay_batches_resent_total` | counter | |
//! | `sweeps_joined_total` | counter | |
//! | `check_duration_seconds` | histogram | `kind` |
//! | `last_sweep_age_seconds` | gauge | (absent before the first sweep) |
//! | `check_status` | gauge, 1 for the current status and 0 for the others | `check`, `kind`, `status` |
//! | `roster_nodes` | gauge (with `[trust]`) | `state` (`member`, `gone`) |
//! | `intruder_packets` | gauge (with `[trust]`): packets refused from an agent claiming a name without its proof, seen within the hour (at most 256 series) | `name`, `addr` |
//!
//! Prometheus asks for OpenMetrics and gets it; a client that does not
//! (curl, `promtool check metrics`) gets the same series in the classic
//! text format ([`prometheus_text`]).
//!
//! The HTTP side is the least a scraper needs, bounded by
//! [`MetricsSettings`]: one request per connection, a head of limited
//! size read within a time limit, `GET /metrics` or 404. A new connection
//! is always accepted; when the endpoint holds its most, the oldest one
//! that has not sent its request is closed (per peer first, then
//! overall), so idle clients cannot starve a scrape.

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

use crate::agent::Inspector;
use crate::membership::MemberState;
use patrol_core::constraint::{at_least, at_most, not_zero};
use patrol_core::counter_list::Count;
use patrol_core::SettingsError;

/// The endpoint's limits. `Default` gives the shipped values; the daemon
/// passes them to [`serve`] (the config has no keys for them today).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    /// Bytes of request head read at most before answering 400. Default
    /// 8 KiB: a scraper's head is a few hundred bytes; more is not a
    /// scraper. Must be at least 1 KiB (what one read takes).
    pub max_request_head: usize,
    /// Time a client has to send its request head. Default 5 s: a scraper
    /// sends its head at once; a client that dawdles only holds a slot.
    /// Must not be zero.
    pub request_timeout: Duration,
    /// Connections held at once. A new connection is always accepted: when
    /// this many are open, the oldest one that has not sent its request
    /// yet is closed to make room, so idle clients can never keep a
    /// scrape out. Default 16: one Prometheus scrapes with one
    /// connection, a few are plenty. Must not be zero.
    pub max_connections: usize,
    /// Connections one peer address holds at once; its oldest makes room
    /// for its newest. Default 8, so one host cannot take every slot.
    /// Must not be zero nor above `max_connections`.
    pub max_per_peer: usize,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            max_request_head: 8 * 1024,
            request_timeout: Duration::from_secs(5),
            max_connections: 16,
            max_per_peer: 8,
        }
    }
}

impl MetricsSettings {
    /// Every documented constraint, checked once.
    pub fn validate(&self) -> Result<(), SettingsError> {
        at_least("metrics.max_request_head", self.max_request_head, 1024)?;
        not_zero("metrics.request_timeout", self.request_timeout)?;
        not_zero("metrics.max_connections", self.max_connections)?;
        not_zero("metrics.max_per_peer", self.max_per_peer)?;
        at_most(
            "metrics.max_per_peer",
            self.max_per_peer,
            self.max_connections,
        )
    }
}

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
    /// Every counter of the agent ([`crate::agent::AgentStats::counts`]).
    pub counts: Vec<Count>,
    /// With `[trust]`: the roster, its gone nodes and the intruders seen.
    pub roster: Option<patrol_core::membership::roster::RosterView>,
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

/// Register the counter list's rows: one family per name, in the list's
/// order; a family's rows with a reason become its `reason` label.
fn register_counts(registry: &mut Registry, counts: &[Count]) {
    let mut seen: Vec<&str> = Vec::new();
    for c in counts {
        if seen.contains(&c.name) {
            continue;
        }
        seen.push(c.name);
        let rows = counts.iter().filter(|o| o.name == c.name);
        if c.reason.is_none() {
            registry.register(c.name, c.help, counter(c.value));
            continue;
        }
        let family = Family::<ReasonLabel, Counter>::default();
        for row in rows {
            family
                .get_or_create(&ReasonLabel {
                    reason: row.reason.unwrap_or_default().to_string(),
                })
                .inc_by(row.value);
        }
        registry.register(c.name, c.help, family);
    }
}

/// The counter list's families alone, in the classic text format: the
/// node_exporter textfile of `patrol members --stats --prometheus`, with
/// the same series `/metrics` serves.
pub fn counters_text(counts: &[Count]) -> String {
    let mut registry = Registry::with_prefix("patrol");
    register_counts(&mut registry, counts);
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    prometheus_text(&text)
}

/// Labels of an intruder series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
struct IntruderLabels {
    name: String,
    addr: String,
}

/// The roster's gauges: members and gone nodes, and one series per
/// intruder seen within the hour (bounded by the gate: 256).
fn register_roster(registry: &mut Registry, roster: &patrol_core::membership::roster::RosterView) {
    let nodes = Family::<StateLabel, Gauge>::default();
    for (state, n) in [
        ("member", roster.members.len()),
        ("gone", roster.gone.len()),
    ] {
        nodes
            .get_or_create(&StateLabel {
                state: state.to_string(),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    registry.register(
        "roster_nodes",
        "Certified nodes on this agent's roster (the nodes its sweeps expect), and those gone from it",
        nodes,
    );
    let intruders = Family::<IntruderLabels, Gauge>::default();
    for i in &roster.intruders {
        intruders
            .get_or_create(&IntruderLabels {
                name: i.name.clone(),
                addr: i.addr.to_string(),
            })
            .set(i64::try_from(i.packets).unwrap_or(i64::MAX));
    }
    registry.register(
        "intruder_packets",
        "Packets refused from an agent that claimed a name without that name's certificate, by name claimed and address, seen within the last hour",
        intruders,
    );
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
        register_counts(&mut registry, &snapshot.counts);
        if let Some(roster) = &snapshot.roster {
            register_roster(&mut registry, roster);
        }
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
pub async fn serve(listener: TcpListener, exporter: Exporter, settings: MetricsSettings) {
    let settings = Arc::new(settings);
    let mut connections = tokio::task::JoinSet::new();
    let mut open = OpenConnections::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let Some(asked) = open.make_room(peer.ip(), &settings) else {
                    // Every slot is answering a request: this one waits
                    // for the next scrape interval.
                    drop(stream);
                    continue;
                };
                let exporter = exporter.clone();
                let settings = Arc::clone(&settings);
                let marker = Arc::clone(&asked);
                let handle = connections.spawn(async move {
                    let _ = serve_one(stream, &exporter, &settings, &marker).await;
                });
                open.push(handle, peer.ip(), asked);
            }
            Some(done) = connections.join_next_with_id(), if !connections.is_empty() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => e.id(),
                };
                open.remove(id);
            }
        }
    }
}

/// The connections the endpoint holds, oldest first: who they are from
/// and whether they have sent their request (then they are answered, not
/// evicted).
#[derive(Default)]
struct OpenConnections {
    list: std::collections::VecDeque<OpenConnection>,
}

struct OpenConnection {
    handle: tokio::task::AbortHandle,
    peer: std::net::IpAddr,
    asked: Arc<std::sync::atomic::AtomicBool>,
}

impl OpenConnections {
    /// Room for one more connection from `peer`: the peer's oldest idle
    /// connection goes when it holds `max_per_peer`, then the oldest idle
    /// one overall when `max_connections` are open. None when every open
    /// connection is answering a request. Returns the new connection's
    /// "has asked" flag.
    fn make_room(
        &mut self,
        peer: std::net::IpAddr,
        settings: &MetricsSettings,
    ) -> Option<Arc<std::sync::atomic::AtomicBool>> {
        if self.list.iter().filter(|c| c.peer == peer).count() >= settings.max_per_peer {
            self.evict(|c| c.peer == peer);
        }
        if self.list.len() >= settings.max_connections && !self.evict(|_| true) {
            return None;
        }
        Some(Arc::default())
    }

    /// Close the oldest connection matching `which` that has not sent its
    /// request; false when there is none.
    fn evict(&mut self, which: impl Fn(&OpenConnection) -> bool) -> bool {
        let idle = self
            .list
            .iter()
            .position(|c| which(c) && !c.asked.load(std::sync::atomic::Ordering::Relaxed));
        match idle.and_then(|at| self.list.remove(at)) {
            Some(c) => {
                c.handle.abort();
                true
            }
            None => false,
        }
    }

    fn push(
        &mut self,
        handle: tokio::task::AbortHandle,
        peer: std::net::IpAddr,
        asked: Arc<std::sync::atomic::AtomicBool>,
    ) {
        self.list.push_back(OpenConnection {
            handle,
            peer,
            asked,
        });
    }

    fn remove(&mut self, id: tokio::task::Id) {
        self.list.retain(|c| c.handle.id() != id);
    }
}

/// Read one request head and answer it; the connection closes after.
async fn serve_one(
    mut stream: TcpStream,
    exporter: &Exporter,
    settings: &MetricsSettings,
    asked: &std::sync::atomic::AtomicBool,
) -> std::io::Result<()> {
    let head = tokio::time::timeout(
        settings.request_timeout,
        read_head(&mut stream, settings.max_request_head),
    )
    .await;
    // From here on the connection is answered, never evicted.
    asked.store(true, std::sync::atomic::Ordering::Relaxed);
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
async fn read_head(stream: &mut TcpStream, max: usize) -> std::io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(String::from_utf8_lossy(&buf[..end]).into_owned()));
        }
        if buf.len() > max {
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
    use crate::agent::AgentStats;
    use patrol_checks::{Observed, Severity};
    use patrol_core::node::NodeStats;
    use patrol_core::sweep::SweepCounters;

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
        let stats = AgentStats {
            dropped_unsealed: 2,
            dropped_outbound: 5,
            node: NodeStats {
                datagrams_in: 10,
                datagrams_out: 12,
                dropped_malformed: 1,
                sweeps_coordinated: 4,
                sweep: SweepCounters {
                    requests_clock_skew: 2,
                    ..SweepCounters::default()
                },
                ..NodeStats::default()
            },
            ..AgentStats::default()
        };
        let intruder = patrol_core::membership::gate::Intruder {
            name: "node-b".into(),
            addr: "127.0.0.1:9".parse().unwrap(),
            reason: "no proof".into(),
            packets: 5,
            first_seen_unix_ms: 1,
            last_seen_unix_ms: 2,
        };
        let roster = patrol_core::membership::roster::RosterView {
            node: "node-a".into(),
            members: Vec::new(),
            gone: Vec::new(),
            intruders: vec![intruder],
            expiry_ms: 1,
            capacity: 1,
            refused_full: 0,
        };
        let snapshot = Snapshot {
            members: vec![(MemberState::Alive, 3), (MemberState::Down, 1)],
            counts: stats.counts(),
            roster: Some(roster),
        };
        let page = exporter(meter).encode(&snapshot, t0 + Duration::from_secs(30));
        for line in [
            "patrol_roster_nodes{state=\"member\"} 0",
            "patrol_intruder_packets{name=\"node-b\",addr=\"127.0.0.1:9\"} 5",
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
        let task = tokio::spawn(serve(
            listener,
            exporter(CheckMeter::default()),
            MetricsSettings::default(),
        ));
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
    #[test]
    fn every_counter_of_the_list_is_on_the_page_and_in_the_textfile() {
        let stats = AgentStats {
            dropped_replayed: 3,
            node: NodeStats {
                checks_runs: 7,
                sweep: SweepCounters {
                    answers_forged: 9,
                    relay: patrol_core::sweep::RelayCounters {
                        batches_resent: 4,
                        ..Default::default()
                    },
                    ..SweepCounters::default()
                },
                ..NodeStats::default()
            },
            ..AgentStats::default()
        };
        let counts = stats.counts();
        patrol_core::counter_list::check(&counts).unwrap();
        let snapshot = Snapshot {
            members: vec![],
            counts: counts.clone(),
            roster: None,
        };
        let page =
            prometheus_text(&exporter(CheckMeter::default()).encode(&snapshot, Instant::now()));
        let file = counters_text(&counts);
        for c in &counts {
            let line = match c.reason {
                Some(r) => format!("patrol_{}_total{{reason=\"{r}\"}} {}", c.name, c.value),
                None => format!("patrol_{}_total {}", c.name, c.value),
            };
            assert!(page.lines().any(|l| l == line), "no `{line}` in:\n{page}");
            assert!(file.lines().any(|l| l == line), "no `{line}` in:\n{file}");
            // The encoder ends the help text with a period.
            let help = format!("# HELP patrol_{}_total {}.", c.name, c.help);
            assert!(file.lines().any(|l| l == help), "no `{help}` in:\n{file}");
        }
        for line in [
            "patrol_datagrams_dropped_total{reason=\"replayed\"} 3",
            "patrol_check_runs_total 7",
            "patrol_sweep_messages_refused_total{reason=\"forged_answer\"} 9",
            "patrol_relay_batches_resent_total 4",
        ] {
            assert!(file.lines().any(|l| l == line), "no `{line}` in:\n{file}");
        }
        // The textfile has the counters and nothing else.
        let samples = file.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(samples, counts.len(), "{file}");
    }

    #[test]
    fn settings_outside_their_constraints_are_refused() {
        assert_eq!(MetricsSettings::default().validate(), Ok(()));
        let bad = |f: fn(&mut MetricsSettings)| {
            let mut s = MetricsSettings::default();
            f(&mut s);
            s.validate().unwrap_err().to_string()
        };
        assert!(bad(|s| s.max_request_head = 100).contains("max_request_head"));
        assert!(bad(|s| s.request_timeout = Duration::ZERO).contains("request_timeout"));
        assert!(bad(|s| s.max_connections = 0).contains("max_connections"));
        assert!(bad(|s| s.max_per_peer = 0).contains("max_per_peer"));
        assert!(bad(|s| s.max_per_peer = 17).contains("max_per_peer"));
    }

    /// Regression (issue 22): 400 idle connections made every scrape time
    /// out; the server waited for one of 16 slots before it accepted, and
    /// idle clients were never evicted. Now the oldest idle one makes room.
    #[tokio::test]
    async fn four_hundred_idle_connections_do_not_keep_a_scrape_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let settings = MetricsSettings {
            // Idle clients are not timed out during the test: only
            // eviction can make room.
            request_timeout: Duration::from_secs(120),
            ..MetricsSettings::default()
        };
        let task = tokio::spawn(serve(listener, exporter(CheckMeter::default()), settings));
        let mut idle = Vec::new();
        for _ in 0..400 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        for _ in 0..3 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await.unwrap();
            let mut out = String::new();
            tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
                .await
                .expect("the scrape is answered, not starved")
                .unwrap();
            assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        }
        // The idle ones were closed to make room, all but the newest few.
        let mut closed = 0;
        for s in &mut idle {
            let mut buf = [0u8; 1];
            if let Ok(Ok(0)) =
                tokio::time::timeout(Duration::from_millis(20), s.read(&mut buf)).await
            {
                closed += 1;
            }
        }
        assert!(closed >= 400 - 16, "only {closed} idle connections closed");
        task.abort();
    }

    #[tokio::test]
    async fn a_request_head_over_the_configured_limit_gets_400() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let settings = MetricsSettings {
            max_request_head: 1024,
            ..MetricsSettings::default()
        };
        let task = tokio::spawn(serve(listener, exporter(CheckMeter::default()), settings));
        let head = |pad: usize| async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let req = format!(
                "GET /metrics HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
                "a".repeat(pad)
            );
            s.write_all(req.as_bytes()).await.unwrap();
            let mut out = String::new();
            let _ = s.read_to_string(&mut out).await;
            out
        };
        assert!(head(500).await.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(head(4000).await.starts_with("HTTP/1.1 400 "));
        task.abort();
    }
}
