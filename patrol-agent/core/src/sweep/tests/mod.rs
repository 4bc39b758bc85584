//! Unit tests that drive the sweep core by hand through a tiny in-test
//! network: lost packets, duplicates, late answers, replays, a busy node, a
//! coordinator that hears nothing, members going down, chunked answers,
//! clocks, bounds, relays and expired certificates: one file a topic, one
//! harness ([`Net`]) here.

mod answers;
mod bounds;
mod clock;
mod expiry;
mod lifecycle;
mod participation;
mod relay;

use core::net::SocketAddr;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use patrol_model::{CheckOutcome, NodeState, Observed, Severity, Status, SweepDocument};

use super::wire::AnswerBody;
use super::*;

const UNIX0: u64 = 1_800_000_000_000;
const HOP: Duration = Duration::from_millis(1);

/// The time `mono` on the monotonic clock and `unix_ms` on the wall clock.
fn at(mono: Duration, unix_ms: u64) -> Now {
    Now { mono, unix_ms }
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 10_000 + i as u16))
}

fn peer(i: usize) -> Peer {
    let mut tags = BTreeMap::new();
    tags.insert(
        "role".to_string(),
        if i.is_multiple_of(2) { "even" } else { "odd" }.to_string(),
    );
    Peer {
        name: format!("node-{i:02}"),
        addr: addr(i),
        tags: tags.into(),
    }
}

fn outcome(id: &str, status: Status) -> CheckOutcome {
    CheckOutcome {
        id: id.to_string(),
        kind: "sysctl".into(),
        status,
        severity: Severity::Fail,
        observed: Observed::Number(1.0),
        expected: ">= 1".into(),
        message: format!("{id} is {status}"),
        duration_us: 10,
        description: String::new(),
        remediation: String::new(),
    }
}

#[derive(Debug, Clone)]
enum Ev {
    Req(usize, SweepRequest),
    Msg(usize, SocketAddr, SweepMessage),
    Timer(usize, SweepTimer),
    ChecksDone(usize, u64),
}

/// A hand-driven network of sweep cores in virtual time.
struct Net {
    cores: Vec<SweepCore>,
    now: Duration,
    seq: u64,
    queue: BTreeMap<(Duration, u64), Ev>,
    /// Return true to drop the event (only network events are offered).
    drop: Box<dyn FnMut(&Ev) -> bool>,
    outcomes: Box<dyn Fn(usize) -> Vec<CheckOutcome>>,
    check_time: Duration,
    /// Nodes whose checks never finish.
    hung: BTreeSet<usize>,
    /// Nodes that receive nothing and send nothing.
    dead: BTreeSet<usize>,
    completed: Vec<SweepDocument>,
    audits: Vec<(usize, AuditEntry)>,
    run_checks: Vec<(usize, u64)>,
    sent: Vec<(usize, SweepMessage)>,
    spreads: usize,
    /// Milliseconds each node's wall clock is ahead of the true time.
    clock_offsets: BTreeMap<usize, i64>,
    /// Relays add 1,000 to every number they forward.
    /// What a dishonest relay does to each batch it sends.
    tamper: Option<fn(&mut RelayBatch)>,
}

impl Net {
    fn new(n: usize, settings: SweepSettings) -> Net {
        Net {
            cores: (0..n)
                .map(|i| SweepCore::new(peer(i), "test".into(), settings.clone(), 7))
                .collect(),
            now: Duration::from_secs(100),
            seq: 0,
            queue: BTreeMap::new(),
            drop: Box::new(|_| false),
            outcomes: Box::new(|_| vec![outcome("a", Status::Pass)]),
            check_time: Duration::from_millis(5),
            hung: BTreeSet::new(),
            dead: BTreeSet::new(),
            completed: Vec::new(),
            audits: Vec::new(),
            run_checks: Vec::new(),
            sent: Vec::new(),
            spreads: 0,
            clock_offsets: BTreeMap::new(),
            tamper: None,
        }
    }

    fn unix(&self) -> u64 {
        UNIX0 + self.now.as_millis() as u64
    }

    /// Node `i`'s wall clock.
    fn unix_of(&self, i: usize) -> u64 {
        let offset = self.clock_offsets.get(&i).copied().unwrap_or(0);
        self.unix().saturating_add_signed(offset)
    }

    fn members(&self) -> Vec<MemberView> {
        (0..self.cores.len())
            .map(|i| MemberView {
                rostered: false,
                peer: peer(i),
                alive: true,
            })
            .collect()
    }

    fn push(&mut self, after: Duration, ev: Ev) {
        self.seq += 1;
        self.queue.insert((self.now + after, self.seq), ev);
    }

    fn start(&mut self, coord: usize, deadline: Duration, members: Vec<MemberView>) -> u64 {
        let mut out = Vec::new();
        let spec = StartSweep {
            selector: Default::default(),
            node_filter: BTreeMap::new(),
            deadline,
            id: None,
            authorization: None,
        };
        let (now, unix) = (self.now, self.unix_of(coord));
        let id = self.cores[coord]
            .start(at(now, unix), spec, members, &mut out)
            .unwrap();
        self.effects(coord, out);
        id
    }

    fn effects(&mut self, i: usize, out: Vec<Effect>) {
        for e in out {
            match e {
                Effect::Spread(req) => {
                    self.spreads += 1;
                    for j in 0..self.cores.len() {
                        if j != i {
                            self.offer(HOP, Ev::Req(j, req.clone()));
                        }
                    }
                }
                Effect::Send { to, mut msg } => {
                    if let (Some(tamper), SweepMessage::Batch(b)) = (self.tamper, &mut msg) {
                        tamper(b);
                    }
                    assert!(
                        msg.encode().len() <= self.cores[i].settings().max_datagram,
                        "oversize {msg:?}"
                    );
                    self.sent.push((i, msg.clone()));
                    let j = usize::from(to.port() - 10_000);
                    self.offer(HOP, Ev::Msg(j, addr(i), msg));
                }
                Effect::Schedule { after, timer } => self.push(after, Ev::Timer(i, timer)),
                Effect::RunChecks { sweep_id, .. } => {
                    self.run_checks.push((i, sweep_id));
                    if !self.hung.contains(&i) {
                        self.push(self.check_time, Ev::ChecksDone(i, sweep_id));
                    }
                }
                Effect::Progress {
                    answered, expected, ..
                } => assert!(answered <= expected),
                Effect::Completed { document, .. } => self.completed.push(document.to_document()),
                Effect::Audit(entry) => self.audits.push((i, entry)),
            }
        }
    }

    fn offer(&mut self, after: Duration, ev: Ev) {
        if !(self.drop)(&ev) {
            self.push(after, ev);
        }
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some((&(t, seq), _)) = self.queue.iter().next() {
            if t > end {
                break;
            }
            let ev = self.queue.remove(&(t, seq)).unwrap();
            self.now = t;
            let node = match &ev {
                Ev::Req(j, _) | Ev::Msg(j, _, _) | Ev::Timer(j, _) | Ev::ChecksDone(j, _) => *j,
            };
            let (now, unix) = (self.now, self.unix_of(node));
            if self.dead.contains(&node) {
                continue;
            }
            let mut out = Vec::new();
            match ev {
                Ev::Req(j, req) => self.cores[j].handle_request(at(now, unix), req, &mut out),
                Ev::Msg(j, from, msg) => {
                    self.cores[j].handle_message(at(now, unix), from, msg, &mut out)
                }
                Ev::Timer(j, timer) => self.cores[j].handle_timer(at(now, unix), timer, &mut out),
                Ev::ChecksDone(j, id) => {
                    let outcomes = (self.outcomes)(j);
                    self.cores[j].checks_done(at(now, unix), id, outcomes, &mut out)
                }
            }
            self.effects(node, out);
        }
        self.now = end;
    }

    fn doc(&self) -> &SweepDocument {
        assert_eq!(
            self.completed.len(),
            1,
            "expected exactly one completed sweep"
        );
        &self.completed[0]
    }
}

/// What a dishonest relay does: every number it forwards, plus 1,000.
fn tamper_values(batch: &mut RelayBatch) {
    let bump = |r: &mut CheckResult| {
        if let Observed::Number(n) = r.observed {
            r.observed = Observed::Number(n + 1000.0);
        }
    };
    for g in &mut batch.groups {
        if let Some(h) = g.header.as_mut() {
            h.base.iter_mut().for_each(bump);
        }
        for n in &mut g.nodes {
            n.diff.iter_mut().for_each(|(_, r)| bump(r));
        }
    }
}

/// A dishonest relay moves every node's send time an hour later.
fn tamper_send_times(batch: &mut RelayBatch) {
    for n in batch.groups.iter_mut().flat_map(|g| g.nodes.iter_mut()) {
        n.sent_after_ms = n.sent_after_ms.saturating_add(3_600_000);
    }
}

/// A dishonest relay says it held every answer for 900 ms.
fn tamper_hold_times(batch: &mut RelayBatch) {
    for n in batch.groups.iter_mut().flat_map(|g| g.nodes.iter_mut()) {
        n.held_ms = 900;
    }
}

fn state_of(doc: &SweepDocument, i: usize) -> NodeState {
    doc.nodes
        .iter()
        .find(|n| n.name == peer(i).name)
        .map(|n| n.state)
        .expect("node in document")
}

fn assert_accounted(doc: &SweepDocument) {
    if let Err(e) = doc.check_accounting() {
        panic!("{e}");
    }
}

fn entry(doc: &SweepDocument, i: usize) -> &patrol_model::NodeEntry {
    doc.nodes
        .iter()
        .find(|n| n.name == peer(i).name)
        .expect("node in document")
}
