//! Unit tests that drive the sweep core by hand through a tiny in-test
//! network: lost packets, duplicates, late answers, replays, a busy node, a
//! coordinator that hears nothing, members going down, chunked answers.

use core::net::SocketAddr;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use patrol_model::{CheckOutcome, NodeState, Observed, Severity, Status, SweepDocument};

use super::wire::AnswerBody;
use super::*;

const UNIX0: u64 = 1_800_000_000_000;
const HOP: Duration = Duration::from_millis(1);

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
        tags,
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
    tamper: bool,
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
            tamper: false,
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
            .start(now, unix, spec, members, &mut out)
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
                    if self.tamper {
                        if let SweepMessage::Batch(b) = &mut msg {
                            tamper(b);
                        }
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
                Effect::Completed { document, .. } => self.completed.push(*document),
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
                Ev::Req(j, req) => self.cores[j].handle_request(now, unix, req, &mut out),
                Ev::Msg(j, from, msg) => {
                    self.cores[j].handle_message(now, unix, from, msg, &mut out)
                }
                Ev::Timer(j, timer) => self.cores[j].handle_timer(now, unix, timer, &mut out),
                Ev::ChecksDone(j, id) => {
                    let outcomes = (self.outcomes)(j);
                    self.cores[j].checks_done(now, unix, id, outcomes, &mut out)
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
fn tamper(batch: &mut RelayBatch) {
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

#[test]
fn healthy_sweep_completes_early_with_everyone_ok() {
    let mut net = Net::new(5, SweepSettings::default());
    let members = net.members();
    net.start(0, Duration::from_secs(5), members);
    net.run_for(Duration::from_secs(1));
    let doc = net.doc();
    assert_accounted(doc);
    assert_eq!(doc.counts.expected, 5);
    assert_eq!(doc.counts.ok, 5);
    assert!(
        doc.timing.completed_ms < 1000,
        "completed at {} ms",
        doc.timing.completed_ms
    );
    assert_eq!(doc.version, patrol_model::document::DOCUMENT_VERSION);
    assert_eq!(net.run_checks.len(), 5, "each node ran its checks once");
    let reached = doc
        .nodes
        .iter()
        .find(|n| n.name == peer(3).name)
        .unwrap()
        .reached_ms;
    assert_eq!(reached, Some(1), "reached one hop after the start");
}

#[test]
fn a_warning_makes_the_node_failing() {
    let mut net = Net::new(3, SweepSettings::default());
    net.outcomes = Box::new(|i| {
        vec![
            outcome("a", Status::Pass),
            outcome("b", if i == 2 { Status::Warn } else { Status::Pass }),
        ]
    });
    let members = net.members();
    net.start(1, Duration::from_secs(5), members);
    net.run_for(Duration::from_secs(1));
    let doc = net.doc();
    assert_eq!(state_of(doc, 2), NodeState::Failing);
    assert_eq!(state_of(doc, 0), NodeState::Ok);
    assert_eq!(doc.counts.failing, 1);
}

#[test]
fn coordinator_that_hears_nothing_lists_everyone_else_as_no_answer() {
    let mut net = Net::new(4, SweepSettings::default());
    net.drop = Box::new(|_| true);
    let members = net.members();
    net.start(0, Duration::from_secs(2), members);
    net.run_for(Duration::from_secs(1));
    assert!(net.completed.is_empty(), "not complete before the deadline");
    net.run_for(Duration::from_secs(2));
    let doc = net.doc();
    assert_accounted(doc);
    assert_eq!(
        state_of(doc, 0),
        NodeState::Ok,
        "the coordinator answers itself"
    );
    assert_eq!(doc.counts.no_answer, 3);
    assert_eq!(doc.timing.completed_ms, 2000);
    // The backstop tried the silent nodes directly.
    let backstops = net
        .sent
        .iter()
        .filter(|(_, m)| matches!(m, SweepMessage::Request(_)))
        .count();
    assert!(backstops >= 3, "backstop sent {backstops} direct requests");
}

#[test]
fn lost_answer_is_recovered_by_retry() {
    let mut net = Net::new(3, SweepSettings::default());
    let mut dropped = 0;
    net.drop = Box::new(move |ev| {
        if matches!(ev, Ev::Msg(0, _, SweepMessage::Answer(_))) && dropped < 2 {
            dropped += 1;
            return true;
        }
        false
    });
    let members = net.members();
    net.start(0, Duration::from_secs(5), members);
    net.run_for(Duration::from_secs(5));
    let doc = net.doc();
    assert_eq!(doc.counts.ok, 3);
    assert!(doc.timing.completed_ms < 5000);
}

#[test]
fn lost_ack_leads_to_a_duplicate_answer_that_is_deduplicated() {
    let mut net = Net::new(2, SweepSettings::default());
    let mut dropped = false;
    net.drop = Box::new(move |ev| {
        if matches!(ev, Ev::Msg(1, _, SweepMessage::Ack { .. })) && !dropped {
            dropped = true;
            return true;
        }
        false
    });
    let members = net.members();
    net.start(0, Duration::from_secs(5), members);
    net.run_for(Duration::from_secs(3));
    let answers = net
        .sent
        .iter()
        .filter(|(from, m)| *from == 1 && matches!(m, SweepMessage::Answer(_)))
        .count();
    assert_eq!(
        answers, 2,
        "the answer was resent once after its ack was lost"
    );
    let doc = net.doc();
    assert_eq!(doc.nodes.len(), 2);
    assert_eq!(doc.counts.ok, 2);
}

#[test]
fn lost_request_is_recovered_by_the_backstop() {
    let mut net = Net::new(4, SweepSettings::default());
    net.drop = Box::new(|ev| matches!(ev, Ev::Req(3, _)));
    let members = net.members();
    net.start(0, Duration::from_secs(5), members);
    net.run_for(Duration::from_secs(5));
    let doc = net.doc();
    assert_eq!(doc.counts.ok, 4);
    assert!(net
        .sent
        .iter()
        .any(|(from, m)| *from == 0 && matches!(m, SweepMessage::Request(_))));
    assert!(
        doc.timing.completed_ms < 2500,
        "backstop came at {} ms",
        doc.timing.completed_ms
    );
}

#[test]
fn duplicate_requests_run_checks_once() {
    let mut net = Net::new(3, SweepSettings::default());
    let members = net.members();
    net.start(0, Duration::from_secs(5), members);
    let req = match net.queue.values().find_map(|e| {
        if let Ev::Req(_, r) = e {
            Some(r.clone())
        } else {
            None
        }
    }) {
        Some(r) => r,
        None => panic!("no request spread"),
    };
    net.push(HOP, Ev::Req(1, req.clone()));
    net.push(HOP * 2, Ev::Msg(1, addr(0), SweepMessage::Request(req)));
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.run_checks.iter().filter(|(n, _)| *n == 1).count(), 1);
    assert_eq!(net.doc().counts.ok, 3);
}

#[test]
fn replayed_request_after_completion_runs_no_checks() {
    let mut net = Net::new(3, SweepSettings::default());
    let members = net.members();
    net.start(0, Duration::from_secs(5), members);
    let req = net
        .queue
        .values()
        .find_map(|e| {
            if let Ev::Req(_, r) = e {
                Some(r.clone())
            } else {
                None
            }
        })
        .unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.completed.len(), 1);
    let before = net.run_checks.len();
    // Replay while the request is still valid, then after it expired.
    net.push(HOP, Ev::Req(2, req.clone()));
    net.push(HOP, Ev::Msg(2, addr(1), SweepMessage::Request(req.clone())));
    net.run_for(Duration::from_secs(10));
    net.push(HOP, Ev::Req(2, req.clone()));
    net.push(HOP, Ev::Req(1, req));
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.run_checks.len(), before, "a replay ran checks");
    assert_eq!(net.completed.len(), 1, "completed once");
}

#[test]
fn expired_request_is_refused() {
    let mut core = SweepCore::new(peer(1), "t".into(), SweepSettings::default(), 1);
    let req = SweepRequest {
        id: 9,
        coordinator: peer(0).peer_addr(),
        selector: Default::default(),
        node_filter: BTreeMap::new(),
        issued_at_unix_ms: UNIX0,
        deadline_ms: 1000,
        answer_spread_ms: 0,
        relays: vec![],
        auth: None,
    };
    let mut out = Vec::new();
    core.handle_request(Duration::ZERO, UNIX0 + 1000, req.clone(), &mut out);
    assert!(out.is_empty(), "expired request produced {out:?}");
    core.handle_request(Duration::ZERO, UNIX0 + 999, req, &mut out);
    assert!(out
        .iter()
        .any(|e| matches!(e, Effect::RunChecks { sweep_id: 9, .. })));
}

#[test]
fn node_filter_excludes_nodes_on_both_sides() {
    let mut net = Net::new(5, SweepSettings::default());
    let members = net.members();
    let mut out = Vec::new();
    let spec = StartSweep {
        selector: Default::default(),
        node_filter: BTreeMap::from([("role".to_string(), "odd".to_string())]),
        deadline: Duration::from_secs(5),
        id: None,
        authorization: None,
    };
    let (now, unix) = (net.now, net.unix());
    net.cores[1]
        .start(now, unix, spec, members, &mut out)
        .unwrap();
    net.effects(1, out);
    net.run_for(Duration::from_secs(2));
    let doc = net.doc();
    assert_eq!(doc.counts.expected, 2);
    assert_eq!(doc.counts.ok, 2);
    let ran: BTreeSet<usize> = net.run_checks.iter().map(|(n, _)| *n).collect();
    assert_eq!(ran, BTreeSet::from([1, 3]));
}

#[test]
fn busy_node_answers_with_a_busy_error() {
    let settings = SweepSettings {
        max_concurrent: 1,
        ..SweepSettings::default()
    };
    let mut net = Net::new(3, settings);
    net.hung.insert(2);
    let members = net.members();
    net.start(0, Duration::from_secs(3), members.clone());
    net.run_for(Duration::from_millis(20));
    net.start(1, Duration::from_secs(3), members);
    net.run_for(Duration::from_secs(4));
    assert_eq!(net.completed.len(), 2);
    let second = net
        .completed
        .iter()
        .find(|d| d.coordinator == peer(1).name)
        .unwrap();
    assert_eq!(state_of(second, 2), NodeState::Failing);
    let node = second
        .nodes
        .iter()
        .find(|n| n.name == peer(2).name)
        .unwrap();
    assert_eq!(node.checks.len(), 1);
    assert_eq!(node.checks[0].id, participant::BUSY_CHECK_ID);
    assert_eq!(node.checks[0].status, Status::Error);
    let first = net
        .completed
        .iter()
        .find(|d| d.coordinator == peer(0).name)
        .unwrap();
    assert_eq!(
        state_of(first, 2),
        NodeState::NoAnswer,
        "hung checks: no answer at the deadline"
    );
}

#[test]
fn member_down_mid_sweep_completes_the_sweep_early() {
    let mut net = Net::new(4, SweepSettings::default());
    net.dead.insert(3);
    let members = net.members();
    let id = net.start(0, Duration::from_secs(10), members);
    net.run_for(Duration::from_millis(500));
    assert!(net.completed.is_empty());
    let mut out = Vec::new();
    net.cores[0].member_down(net.now, &peer(3).name, &mut out);
    assert!(out
        .iter()
        .any(|e| matches!(e, Effect::Progress { sweep_id, .. } if *sweep_id == id)));
    net.effects(0, out);
    let doc = net.doc();
    assert_accounted(doc);
    assert_eq!(state_of(doc, 3), NodeState::Down);
    assert_eq!(doc.counts.ok, 3);
    assert!(doc.timing.completed_ms < 1000);
}

#[test]
fn member_down_at_start_is_down_and_not_waited_for() {
    let mut net = Net::new(4, SweepSettings::default());
    net.dead.insert(2);
    let mut members = net.members();
    members[2].alive = false;
    net.start(0, Duration::from_secs(10), members);
    net.run_for(Duration::from_secs(1));
    let doc = net.doc();
    assert_eq!(state_of(doc, 2), NodeState::Down);
    assert_eq!(doc.counts.down, 1);
    assert_eq!(doc.counts.ok, 3);
    let backstops = net
        .sent
        .iter()
        .filter(|(_, m)| matches!(m, SweepMessage::Request(_)))
        .count();
    assert_eq!(backstops, 0, "a down node is not backstopped");
}

#[test]
fn member_down_after_answering_stays_answered() {
    let mut net = Net::new(3, SweepSettings::default());
    net.hung.insert(2);
    let members = net.members();
    net.start(0, Duration::from_secs(5), members);
    net.run_for(Duration::from_millis(500));
    let mut out = Vec::new();
    net.cores[0].member_down(net.now, &peer(1).name, &mut out);
    net.cores[0].member_down(net.now, &peer(2).name, &mut out);
    net.effects(0, out);
    let doc = net.doc();
    assert_eq!(state_of(doc, 1), NodeState::Ok);
    assert_eq!(state_of(doc, 2), NodeState::Down);
}

#[test]
fn late_joiner_is_listed_as_such() {
    let mut net = Net::new(4, SweepSettings::default());
    let members: Vec<MemberView> = net.members().into_iter().take(3).collect();
    net.hung.insert(1);
    net.start(0, Duration::from_secs(2), members);
    net.run_for(Duration::from_secs(3));
    let doc = net.doc();
    assert_accounted(doc);
    assert_eq!(doc.counts.expected, 3);
    assert_eq!(doc.counts.late_joiners, 1);
    let late = doc.nodes.iter().find(|n| n.name == peer(3).name).unwrap();
    assert!(late.late_joiner);
    assert_eq!(late.state, NodeState::Ok);
    assert_eq!(state_of(doc, 1), NodeState::NoAnswer);
}

#[test]
fn late_answer_after_the_deadline_is_acked_but_changes_nothing() {
    let mut net = Net::new(2, SweepSettings::default());
    net.check_time = Duration::from_secs(3);
    let members = net.members();
    net.start(0, Duration::from_secs(2), members);
    net.run_for(Duration::from_millis(2500));
    assert_eq!(state_of(net.doc(), 1), NodeState::NoAnswer);
    // Node 1's checks finish after the deadline: it no longer answers.
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.completed.len(), 1);
    // A piece arriving after completion is still acked (stops retries).
    let id = u64::from_str_radix(&net.doc().sweep_id, 16).unwrap();
    let chunk = AnswerChunk {
        sweep_id: id,
        node: peer(1).name,
        nonce: 1,
        index: 0,
        count: 1,
        sent_unix_ms: net.unix(),
        payload: vec![],
    };
    let mut out = Vec::new();
    let (now, unix) = (net.now, net.unix());
    net.cores[0].handle_message(now, unix, addr(1), SweepMessage::Answer(chunk), &mut out);
    assert!(
        matches!(
            &out[..],
            [Effect::Send {
                msg: SweepMessage::Ack { .. },
                ..
            }]
        ),
        "{out:?}"
    );
}

#[test]
fn big_answers_are_chunked_and_reassembled_out_of_order() {
    let mut net = Net::new(2, SweepSettings::default());
    net.outcomes = Box::new(|_| {
        (0..60)
            .map(|k| outcome(&format!("check-{k:03}-with-a-long-name"), Status::Pass))
            .collect()
    });
    let members = net.members();
    net.start(0, Duration::from_secs(5), members);
    // Deliver node 1's answer pieces in reverse order: hold them back.
    net.drop =
        Box::new(|ev| matches!(ev, Ev::Msg(0, _, SweepMessage::Answer(c)) if c.node == "node-01"));
    net.run_for(Duration::from_millis(100));
    let pieces: Vec<AnswerChunk> = net
        .sent
        .iter()
        .filter_map(|(from, m)| match m {
            SweepMessage::Answer(c) if *from == 1 => Some(c.clone()),
            _ => None,
        })
        .collect();
    assert!(pieces.len() >= 3, "answer in {} pieces", pieces.len());
    net.drop = Box::new(|_| false);
    for (k, c) in pieces.into_iter().rev().enumerate() {
        net.push(
            HOP * (k as u32 + 1),
            Ev::Msg(0, addr(1), SweepMessage::Answer(c)),
        );
    }
    net.run_for(Duration::from_millis(50));
    let doc = net.doc();
    let node = doc.nodes.iter().find(|n| n.name == "node-01").unwrap();
    assert_eq!(node.checks.len(), 60);
    assert_eq!(node.checks[59].id, "check-059-with-a-long-name");
}

#[test]
fn malformed_piece_is_ignored_and_an_undecodable_answer_is_listed_failing() {
    let mut net = Net::new(2, SweepSettings::default());
    net.hung.insert(1);
    let members = net.members();
    let id = net.start(0, Duration::from_secs(2), members);
    let (now, unix) = (net.now, net.unix());
    // A piece that cannot be one (index past count): not even acked.
    let mut out = Vec::new();
    let bad = AnswerChunk {
        sweep_id: id,
        node: peer(1).name,
        nonce: 1,
        index: 5,
        count: 2,
        sent_unix_ms: unix,
        payload: vec![],
    };
    net.cores[0].handle_message(now, unix, addr(1), SweepMessage::Answer(bad), &mut out);
    assert!(out.is_empty(), "{out:?}");
    // A whole answer that does not decode: acked, and the node is listed
    // as failing with the reason, not as silent.
    let garbage = AnswerChunk {
        sweep_id: id,
        node: peer(1).name,
        nonce: 1,
        index: 0,
        count: 1,
        sent_unix_ms: unix,
        payload: vec![0xff; 40],
    };
    net.cores[0].handle_message(now, unix, addr(1), SweepMessage::Answer(garbage), &mut out);
    net.effects(0, out);
    net.run_for(Duration::from_secs(3));
    let doc = net.doc();
    assert_accounted(doc);
    assert_eq!(state_of(doc, 1), NodeState::Failing);
    let node = doc.nodes.iter().find(|n| n.name == peer(1).name).unwrap();
    assert_eq!(node.checks.len(), 1);
    assert_eq!(node.checks[0].id, super::coordinator::UNREADABLE_ANSWER_ID);
    assert_eq!(node.checks[0].status, Status::Error);
    assert!(
        node.checks[0].message.contains("did not decode"),
        "{}",
        node.checks[0].message
    );
}

#[test]
fn answers_are_spread_over_the_window() {
    let settings = SweepSettings {
        answer_spread_per_node: Duration::from_millis(10),
        ..SweepSettings::default()
    };
    let mut net = Net::new(20, settings);
    let members = net.members();
    net.start(0, Duration::from_secs(5), members);
    net.run_for(Duration::from_secs(2));
    let doc = net.doc();
    let answered: BTreeSet<u64> = doc.nodes.iter().filter_map(|n| n.answered_ms).collect();
    assert!(answered.len() > 5, "answers bunched at {answered:?}");
    assert!(doc.timing.last_answer_ms.unwrap() <= 250);
}

/// Regression (issue 12): `Ack { sweep_id, index }` named no node and its
/// source was never checked, so acks captured from other nodes, replayed to
/// a node still waiting out its answer delay, silenced it (`no_answer`).
#[test]
fn acks_captured_from_other_nodes_do_not_silence_a_waiting_node() {
    let settings = SweepSettings {
        answer_spread_per_node: Duration::from_millis(100),
        ..SweepSettings::default()
    };
    let mut net = Net::new(4, settings);
    let members = net.members();
    let id = net.start(0, Duration::from_secs(3), members);
    net.run_for(Duration::from_millis(30));
    // Every ack the coordinator would send for node 1's answer, as an
    // eavesdropper could capture it, replayed to nodes 2 and 3 from the
    // coordinator's own address and from elsewhere, before they answer.
    let captured: Vec<SweepMessage> = (0..4)
        .map(|index| SweepMessage::Ack {
            sweep_id: id,
            node: peer(1).name,
            nonce: 42,
            index,
        })
        .collect();
    for victim in [2, 3] {
        for ack in &captured {
            for from in [addr(0), addr(9)] {
                let (now, unix) = (net.now, net.unix());
                let mut out = Vec::new();
                net.cores[victim].handle_message(now, unix, from, ack.clone(), &mut out);
                net.effects(victim, out);
            }
        }
        assert_eq!(net.cores[victim].counters().acks_refused, 8);
    }
    net.run_for(Duration::from_secs(4));
    let doc = net.doc();
    assert_accounted(doc);
    assert_eq!(doc.counts.ok, 4, "{:?}", doc.counts);
}

/// An ack that names the right node but not this answer's nonce, or comes
/// from another address than the coordinator's, is refused.
#[test]
fn an_ack_must_echo_the_nonce_and_come_from_the_coordinator() {
    let mut net = Net::new(2, SweepSettings::default());
    let members = net.members();
    let id = net.start(0, Duration::from_secs(2), members);
    // Hold back node 1's answer so it stays unacked.
    net.drop = Box::new(|ev| matches!(ev, Ev::Msg(0, _, SweepMessage::Answer(_))));
    net.run_for(Duration::from_millis(20));
    let nonce = net
        .sent
        .iter()
        .find_map(|(from, m)| match m {
            SweepMessage::Answer(c) if *from == 1 => Some(c.nonce),
            _ => None,
        })
        .expect("node 1 answered");
    let ack = |nonce| SweepMessage::Ack {
        sweep_id: id,
        node: peer(1).name,
        nonce,
        index: 0,
    };
    let (now, unix) = (net.now, net.unix());
    let mut out = Vec::new();
    net.cores[1].handle_message(now, unix, addr(0), ack(nonce ^ 1), &mut out);
    net.cores[1].handle_message(now, unix, addr(7), ack(nonce), &mut out);
    assert_eq!(net.cores[1].counters().acks_refused, 2);
    net.cores[1].handle_message(now, unix, addr(0), ack(nonce), &mut out);
    assert_eq!(
        net.cores[1].counters().acks_refused,
        2,
        "the real ack is taken"
    );
}

/// Regression (issue 12): `issued_at` was never checked, so a forged
/// future-dated request lived for its whole deadline window. Now it is
/// refused and nothing is remembered. The coordinator hears why when it
/// asked directly from its own address; a copy that came by gossip, or
/// from anyone else, is answered nowhere (an answer to the address a
/// forged request names would make every node a reflector).
#[test]
fn a_future_dated_request_is_refused_and_reported_once() {
    let mut net = Net::new(2, SweepSettings::default());
    let members = net.members();
    let id = net.start(0, Duration::from_secs(2), members);
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.doc().counts.ok, 2);
    // The same request, issued an hour from now.
    let req = SweepRequest {
        id: id ^ 0xdead,
        coordinator: peer(0).peer_addr(),
        selector: Default::default(),
        node_filter: BTreeMap::new(),
        issued_at_unix_ms: net.unix() + 3_600_000,
        deadline_ms: 5000,
        answer_spread_ms: 0,
        relays: vec![],
        auth: None,
    };
    let (now, unix) = (net.now, net.unix());
    let answers = |out: &[Effect]| -> Vec<AnswerChunk> {
        out.iter()
            .filter_map(|e| match e {
                Effect::Send {
                    msg: SweepMessage::Answer(c),
                    to,
                } if *to == addr(0) => Some(c.clone()),
                _ => None,
            })
            .collect()
    };
    let mut out = Vec::new();
    net.cores[1].handle_request(now, unix, req.clone(), &mut out);
    let stranger = addr(9);
    net.cores[1].handle_message(
        now,
        unix,
        stranger,
        SweepMessage::Request(req.clone()),
        &mut out,
    );
    assert_eq!(net.cores[1].counters().requests_clock_skew, 2);
    assert!(answers(&out).is_empty(), "answered a copy: {out:?}");
    net.cores[1].handle_message(now, unix, addr(0), SweepMessage::Request(req), &mut out);
    assert_eq!(net.cores[1].counters().requests_clock_skew, 3);
    assert!(
        !out.iter().any(|e| matches!(e, Effect::RunChecks { .. })),
        "{out:?}"
    );
    assert!(
        !out.iter().any(|e| matches!(e, Effect::Schedule { .. })),
        "nothing remembered: {out:?}"
    );
    let answers = answers(&out);
    assert_eq!(answers.len(), 1, "one unretried report: {out:?}");
    let payload = AnswerPayload::decode(&answers[0].payload).unwrap();
    let body = AnswerBody::decode(&payload.body).unwrap();
    assert_eq!(
        body.outcomes().unwrap()[0].id,
        participant::CLOCK_SKEW_CHECK_ID
    );
    assert!(
        body.outcomes().unwrap()[0]
            .message
            .contains("in the future"),
        "{}",
        body.outcomes().unwrap()[0].message
    );
}

/// A node whose clock is behind the coordinator's by more than the
/// tolerance is listed failing with the reason, not silent.
#[test]
fn a_node_whose_clock_is_far_behind_is_listed_with_the_skew() {
    let mut net = Net::new(3, SweepSettings::default());
    let members = net.members();
    // The coordinator's clock is 60 s ahead of everyone's.
    let mut out = Vec::new();
    let spec = StartSweep {
        selector: Default::default(),
        node_filter: BTreeMap::new(),
        deadline: Duration::from_secs(2),
        id: None,
        authorization: None,
    };
    let (now, unix) = (net.now, net.unix() + 60_000);
    net.cores[0]
        .start(now, unix, spec, members, &mut out)
        .unwrap();
    net.effects(0, out);
    net.run_for(Duration::from_secs(3));
    let doc = net.doc();
    assert_accounted(doc);
    for i in [1, 2] {
        assert_eq!(state_of(doc, i), NodeState::Failing);
        let node = doc.nodes.iter().find(|n| n.name == peer(i).name).unwrap();
        assert_eq!(node.checks[0].id, participant::CLOCK_SKEW_CHECK_ID);
        // The refusal is the one clock finding: the measured skew adds none.
        assert_eq!(node.checks.len(), 1, "{:?}", node.checks);
        let clock = node.clock.expect("the refusal is measured too");
        assert!(
            (clock.offset_ms + 60_000).unsigned_abs() <= clock.bound_ms,
            "{clock:?}"
        );
    }
}

fn entry(doc: &SweepDocument, i: usize) -> &patrol_model::NodeEntry {
    doc.nodes
        .iter()
        .find(|n| n.name == peer(i).name)
        .expect("node in document")
}

/// Issue 14: the sweep measures every node's clock against the
/// coordinator's, NTP-style, and reports the one that is off.
#[test]
fn a_node_three_seconds_ahead_is_the_only_one_reported_skewed() {
    let mut net = Net::new(4, SweepSettings::default());
    net.clock_offsets.insert(2, 3000);
    let members = net.members();
    net.start(0, Duration::from_secs(5), members);
    net.run_for(Duration::from_secs(1));
    let doc = net.doc();
    assert_accounted(doc);
    for i in 0..4 {
        let node = entry(doc, i);
        let clock = node.clock.expect("every answering node is measured");
        let truth = if i == 2 { 3000 } else { 0 };
        assert!(
            (clock.offset_ms - truth).unsigned_abs() <= clock.bound_ms,
            "node {i}: {clock:?}"
        );
        // One 1 ms hop each way.
        assert!(clock.bound_ms <= 1, "node {i}: {clock:?}");
        let skewed: Vec<_> = node
            .checks
            .iter()
            .filter(|c| c.id == participant::CLOCK_SKEW_CHECK_ID)
            .collect();
        if i == 2 {
            assert_eq!(node.state, NodeState::Failing);
            assert_eq!(skewed.len(), 1, "{:?}", node.checks);
            assert_eq!(skewed[0].status, Status::Fail);
            assert_eq!(skewed[0].observed, Observed::Text("ahead".into()));
            assert!(
                skewed[0].message.contains("3000 ms ahead"),
                "{}",
                skewed[0].message
            );
        } else {
            assert_eq!(node.state, NodeState::Ok, "node {i}: {:?}", node.checks);
            assert!(skewed.is_empty());
        }
    }
}

/// A resent piece carries its own send time: the measurement pairs it
/// with its own arrival, so a lost first copy widens nothing.
#[test]
fn an_answer_that_arrives_only_as_a_resend_still_measures_the_clock_tightly() {
    let mut net = Net::new(2, SweepSettings::default());
    net.clock_offsets.insert(1, -2000);
    let mut lost = 0;
    net.drop = Box::new(move |ev| {
        if matches!(ev, Ev::Msg(0, _, SweepMessage::Answer(_))) && lost == 0 {
            lost += 1;
            return true;
        }
        false
    });
    let members = net.members();
    net.start(0, Duration::from_secs(5), members);
    net.run_for(Duration::from_secs(2));
    let doc = net.doc();
    let node = entry(doc, 1);
    let clock = node.clock.unwrap();
    assert!(
        (clock.offset_ms + 2000).unsigned_abs() <= clock.bound_ms,
        "{clock:?}"
    );
    // Paired with the first send instead, the ~150 ms wait before the
    // resend would count as time on the way.
    assert!(clock.bound_ms <= 1, "{clock:?}");
    let resent = net
        .sent
        .iter()
        .filter(|(from, m)| *from == 1 && matches!(m, SweepMessage::Answer(_)))
        .count();
    assert_eq!(resent, 2, "the first copy was lost, the resend arrived");
    // 2 s behind is over the 1 s limit: reported, as behind.
    let skew = node
        .checks
        .iter()
        .find(|c| c.id == participant::CLOCK_SKEW_CHECK_ID)
        .expect("reported");
    assert_eq!(skew.observed, Observed::Text("behind".into()));
}

#[test]
fn a_skew_within_the_configured_limit_is_measured_but_not_reported() {
    let run = |limit: Duration| {
        let settings = SweepSettings {
            clock_skew_limit: limit,
            ..SweepSettings::default()
        };
        let mut net = Net::new(2, settings);
        net.clock_offsets.insert(1, 1500);
        let members = net.members();
        net.start(0, Duration::from_secs(5), members);
        net.run_for(Duration::from_secs(1));
        entry(net.doc(), 1).clone()
    };
    let loose = run(Duration::from_secs(2));
    assert_eq!(loose.state, NodeState::Ok, "{:?}", loose.checks);
    assert!((loose.clock.unwrap().offset_ms - 1500).abs() <= 1);
    let strict = run(Duration::from_secs(1));
    assert_eq!(strict.state, NodeState::Failing);
}

/// Regression (issue 12): pieces larger than the chunk size were accepted
/// and late joiners were unbounded, so a key holder could exhaust a
/// coordinator's memory.
#[test]
fn oversized_pieces_and_late_joiners_past_the_cap_are_refused() {
    let settings = SweepSettings {
        max_late_joiners: 3,
        ..SweepSettings::default()
    };
    let chunk_limit = settings.chunk_payload(7);
    let mut net = Net::new(2, settings);
    net.hung.insert(1);
    let members = net.members();
    let id = net.start(0, Duration::from_secs(2), members);
    let (now, unix) = (net.now, net.unix());
    let piece = |node: String, payload: Vec<u8>, count| {
        SweepMessage::Answer(AnswerChunk {
            sweep_id: id,
            node,
            nonce: 1,
            index: 0,
            count,
            sent_unix_ms: unix,
            payload,
        })
    };
    let mut out = Vec::new();
    net.cores[0].handle_message(
        now,
        unix,
        addr(1),
        piece(peer(1).name, vec![0; chunk_limit + 1], 2),
        &mut out,
    );
    assert!(out.is_empty(), "an oversized piece is not acked: {out:?}");
    assert_eq!(net.cores[0].counters().pieces_refused, 1);
    for k in 0..10 {
        net.cores[0].handle_message(
            now,
            unix,
            addr(5),
            piece(format!("ghost{k}"), vec![1; 10], 2),
            &mut out,
        );
    }
    assert_eq!(
        net.cores[0].counters().pieces_refused,
        8,
        "3 late joiners kept, 7 refused"
    );
    net.run_for(Duration::from_secs(3));
    assert_accounted(net.doc());
}

/// The bytes a coordinator buffers for incomplete answers are bounded,
/// a slot for every piece announced included.
#[test]
fn buffered_answer_bytes_are_bounded_per_sweep() {
    // 100 slots of 24 bytes, and five pieces of 1,000 bytes.
    let settings = SweepSettings {
        max_partial_bytes: 100 * 24 + 5_000,
        ..SweepSettings::default()
    };
    let mut net = Net::new(2, settings);
    net.hung.insert(1);
    let members = net.members();
    let id = net.start(0, Duration::from_secs(2), members);
    let (now, unix) = (net.now, net.unix());
    let mut out = Vec::new();
    for index in 0..20u16 {
        let m = SweepMessage::Answer(AnswerChunk {
            sweep_id: id,
            node: peer(1).name,
            nonce: 1,
            index,
            count: 100,
            sent_unix_ms: unix,
            payload: vec![7; 1000],
        });
        net.cores[0].handle_message(now, unix, addr(1), m, &mut out);
    }
    assert_eq!(
        net.cores[0].counters().pieces_refused,
        15,
        "5 pieces of 1,000 bytes fit"
    );
}

/// Incomplete answers under names nobody expected are held to their own,
/// smaller budget: the expected nodes' pieces still fit.
#[test]
fn late_partial_answers_cannot_take_the_expected_nodes_room() {
    let settings = SweepSettings {
        max_partial_bytes: 20_000,
        max_late_partial_bytes: 5_000,
        ..SweepSettings::default()
    };
    let mut net = Net::new(2, settings);
    net.hung.insert(1);
    let members = net.members();
    let id = net.start(0, Duration::from_secs(2), members);
    let (now, unix) = (net.now, net.unix());
    let mut out = Vec::new();
    let piece = |node: String, index| {
        SweepMessage::Answer(AnswerChunk {
            sweep_id: id,
            node,
            nonce: 1,
            index,
            count: 10,
            sent_unix_ms: unix,
            payload: vec![7; 1000],
        })
    };
    for k in 0..10u16 {
        net.cores[0].handle_message(now, unix, addr(5), piece(format!("ghost{k}"), 0), &mut out);
    }
    // Ten slots (240 bytes) and 1,000 bytes each: four ghosts fit in 5,000.
    assert_eq!(net.cores[0].counters().pieces_refused, 6);
    assert!(net.cores[0].held().late_partial_bytes <= 5_000);
    for index in 0..9u16 {
        net.cores[0].handle_message(now, unix, addr(1), piece(peer(1).name, index), &mut out);
    }
    assert_eq!(
        net.cores[0].counters().pieces_refused,
        6,
        "the expected node's pieces all fit"
    );
    assert!(net.cores[0].held().partial_bytes <= 20_000);
}

/// A participant remembers at most `max_participations` sweeps.
#[test]
fn participations_are_capped() {
    let settings = SweepSettings {
        max_participations: 3,
        ..SweepSettings::default()
    };
    let mut net = Net::new(2, settings);
    net.hung.insert(1);
    let (now, unix) = (net.now, net.unix());
    let mut out = Vec::new();
    for k in 0..5u64 {
        let req = SweepRequest {
            id: 1000 + k,
            coordinator: peer(0).peer_addr(),
            selector: Default::default(),
            node_filter: BTreeMap::new(),
            issued_at_unix_ms: unix,
            deadline_ms: 5000,
            answer_spread_ms: 0,
            relays: vec![],
            auth: None,
        };
        net.cores[1].handle_request(now, unix, req, &mut out);
    }
    assert_eq!(net.cores[1].counters().requests_over_capacity, 2);
    assert_eq!(net.cores[1].held().participations, 3);
    // A full node tells a coordinator that asks it directly, once; the
    // coordinator lists it failing with the reason instead of silent.
    let req = SweepRequest {
        id: 2000,
        coordinator: peer(0).peer_addr(),
        selector: Default::default(),
        node_filter: BTreeMap::new(),
        issued_at_unix_ms: unix,
        deadline_ms: 5000,
        answer_spread_ms: 0,
        relays: vec![],
        auth: None,
    };
    let mut out = Vec::new();
    net.cores[1].handle_message(
        now,
        unix,
        addr(9),
        SweepMessage::Request(req.clone()),
        &mut out,
    );
    out.retain(|e| !matches!(e, Effect::Audit(_)));
    assert!(out.is_empty(), "answered a stranger: {out:?}");
    net.cores[1].handle_message(now, unix, addr(0), SweepMessage::Request(req), &mut out);
    out.retain(|e| !matches!(e, Effect::Audit(_)));
    assert_eq!(net.cores[1].counters().requests_over_capacity, 4);
    let [Effect::Send {
        to,
        msg: SweepMessage::Answer(chunk),
    }] = out.as_slice()
    else {
        panic!("one report: {out:?}");
    };
    assert_eq!(*to, addr(0));
    let payload = AnswerPayload::decode(&chunk.payload).unwrap();
    let body = AnswerBody::decode(&payload.body).unwrap();
    assert_eq!(
        body.outcomes().unwrap()[0].id,
        participant::OVER_CAPACITY_CHECK_ID
    );
}

/// Regression (issue 12): two nodes with the same name hid each other; the
/// failing twin's answer was dropped as a duplicate and the report said ok.
#[test]
fn two_alive_members_with_one_name_are_both_listed_as_a_conflict() {
    let mut net = Net::new(4, SweepSettings::default());
    net.outcomes = Box::new(|i| {
        if i == 3 {
            vec![outcome("a", Status::Fail)]
        } else {
            vec![outcome("a", Status::Pass)]
        }
    });
    // Node 3 claims node 2's name.
    let mut members = net.members();
    members[3].peer.name = peer(2).name;
    let mut twin = net.cores.pop().unwrap();
    twin = SweepCore::new(
        Peer {
            name: peer(2).name,
            ..twin.me().clone()
        },
        "test".into(),
        SweepSettings::default(),
        9,
    );
    net.cores.push(twin);
    net.start(0, Duration::from_secs(2), members);
    net.run_for(Duration::from_secs(3));
    let doc = net.doc();
    assert_accounted(doc);
    assert_eq!(doc.counts.expected, 4);
    let twins: Vec<_> = doc
        .nodes
        .iter()
        .filter(|n| n.name.starts_with(&peer(2).name))
        .collect();
    assert_eq!(twins.len(), 2, "{:?}", doc.nodes);
    for t in twins {
        assert_eq!(t.state, NodeState::Failing);
        assert_eq!(t.checks[0].id, super::coordinator::NAME_CONFLICT_ID);
        assert!(
            t.checks[0]
                .message
                .contains("2 nodes claim the name node-02"),
            "{}",
            t.checks[0].message
        );
    }
    assert_eq!(doc.counts.ok, 2);
}

/// A name held by a down identity and an alive one (a node that came back
/// at another address) is no conflict: the alive one is expected.
#[test]
fn a_down_identity_and_an_alive_one_with_one_name_are_no_conflict() {
    let mut net = Net::new(3, SweepSettings::default());
    let mut members = net.members();
    members.push(MemberView {
        peer: Peer {
            addr: addr(7),
            ..peer(2)
        },
        alive: false,
    });
    members.swap(2, 3);
    net.start(0, Duration::from_secs(2), members);
    net.run_for(Duration::from_secs(3));
    let doc = net.doc();
    assert_accounted(doc);
    assert_eq!(doc.counts.ok, 3, "{:?}", doc.nodes);
}

/// Relays from two nodes on, two relays at most.
fn relayed_settings() -> SweepSettings {
    SweepSettings {
        relay_min_nodes: 2,
        nodes_per_relay: 4,
        max_relays: 2,
        ..SweepSettings::default()
    }
}

/// Node `i` passes check `a` and observes `i` on check `b`: one group,
/// a difference per node.
fn per_node_values(i: usize) -> Vec<CheckOutcome> {
    vec![
        outcome("a", Status::Pass),
        CheckOutcome {
            observed: Observed::Number(i as f64),
            ..outcome("b", Status::Pass)
        },
    ]
}

fn relays_of(net: &Net, id: u64) -> Vec<usize> {
    net.cores[0]
        .relays(id)
        .iter()
        .map(|a| usize::from(a.port() - 10_000))
        .collect()
}

fn observed_b(doc: &SweepDocument, i: usize) -> Observed {
    entry(doc, i)
        .checks
        .iter()
        .find(|c| c.id == "b")
        .map(|c| c.observed.clone())
        .unwrap_or_default()
}

#[test]
fn relays_take_the_answers_and_the_coordinator_rebuilds_each_one() {
    let mut net = Net::new(9, relayed_settings());
    net.outcomes = Box::new(per_node_values);
    let members = net.members();
    let id = net.start(0, Duration::from_secs(5), members);
    let relays = relays_of(&net, id);
    assert_eq!(relays.len(), 2, "9 nodes, 4 per relay, at most 2");
    assert!(!relays.contains(&0), "the coordinator is no relay");
    net.run_for(Duration::from_secs(2));
    let doc = net.doc();
    assert_accounted(doc);
    assert_eq!(doc.counts.ok, 9);
    for i in 0..9 {
        assert_eq!(observed_b(doc, i), Observed::Number(i as f64), "node {i}");
    }
    // Every other node's answer went to its relay, and only relays'
    // batches (no answer piece) reached the coordinator.
    let batches: Vec<&RelayBatch> = net
        .sent
        .iter()
        .filter_map(|(_, m)| match m {
            SweepMessage::Batch(b) => Some(b),
            _ => None,
        })
        .collect();
    let relayed: usize = batches
        .iter()
        .flat_map(|b| &b.groups)
        .map(|g| g.nodes.len())
        .sum();
    assert_eq!(relayed, 8, "{batches:?}");
    let with_header = batches
        .iter()
        .flat_map(|b| &b.groups)
        .filter(|g| g.header.is_some())
        .count();
    assert!(with_header <= 2 * batches.len());
    let direct = net
        .sent
        .iter()
        .filter(|(from, m)| *from != 0 && matches!(m, SweepMessage::Answer(_)))
        .count();
    assert_eq!(direct, 8, "one piece per node, each to its relay");
    assert_eq!(net.cores[0].counters().pieces_refused, 0);
}

#[test]
fn a_relay_that_acks_but_never_forwards_costs_no_node_its_answer() {
    let mut net = Net::new(9, relayed_settings());
    net.outcomes = Box::new(per_node_values);
    net.drop = Box::new(|ev| matches!(ev, Ev::Msg(_, _, SweepMessage::Batch(_))));
    let members = net.members();
    net.start(0, Duration::from_secs(5), members);
    net.run_for(Duration::from_secs(5));
    let doc = net.doc();
    assert_accounted(doc);
    // The backstop asked each node directly; each sent the answer it kept.
    assert_eq!(doc.counts.ok, 9);
    for i in 0..9 {
        assert_eq!(observed_b(doc, i), Observed::Number(i as f64), "node {i}");
    }
    assert!(doc.timing.completed_ms < 5000, "{:?}", doc.timing);
}

#[test]
fn a_dead_relay_is_passed_over_at_the_first_resend() {
    let mut net = Net::new(9, relayed_settings());
    let members = net.members();
    let id = net.start(0, Duration::from_secs(3), members);
    let dead = relays_of(&net, id)[0];
    net.dead.insert(dead);
    net.run_for(Duration::from_secs(4));
    let doc = net.doc();
    assert_accounted(doc);
    assert_eq!(doc.counts.ok, 8, "every live node answered");
    assert_eq!(state_of(doc, dead), NodeState::NoAnswer);
    // The dead relay's nodes went straight to the coordinator on their
    // first resend, long before the backstop.
    for i in (1..9).filter(|i| *i != dead) {
        let answered = entry(doc, i).answered_ms.unwrap();
        assert!(answered < 400, "node {i} answered at {answered} ms");
    }
}

#[test]
fn a_batch_from_a_node_that_is_no_relay_is_refused() {
    let mut net = Net::new(9, relayed_settings());
    let members = net.members();
    let id = net.start(0, Duration::from_secs(3), members);
    let relays = relays_of(&net, id);
    let intruder = (1..9).find(|i| !relays.contains(i)).unwrap();
    let forged = RelayBatch {
        sweep_id: id,
        batch: 0,
        groups: vec![RelayGroup {
            key: 0,
            header: Some(GroupHeader {
                tags: BTreeMap::new(),
                catalog: vec![CheckName {
                    id: "b".into(),
                    kind: "sysctl".into(),
                }],
                base: vec![CheckResult {
                    status: Status::Pass,
                    observed: Observed::Number(666.0),
                    detail: None,
                }],
            }),
            nodes: vec![RelayedAnswer {
                node: peer(3).name,
                nonce: 1,
                received_unix_ms: UNIX0,
                checks_ms: 1,
                sent_after_ms: 1,
                held_ms: 0,
                diff: Vec::new(),
                proof: None,
            }],
        }],
    };
    let mut out = Vec::new();
    let (now, unix) = (net.now, net.unix());
    net.cores[0].handle_message(
        now,
        unix,
        addr(intruder),
        SweepMessage::Batch(forged),
        &mut out,
    );
    assert!(
        !out.iter().any(|e| matches!(e, Effect::Send { .. })),
        "no ack for a refused batch: {out:?}"
    );
    assert_eq!(net.cores[0].counters().pieces_refused, 1);
    net.effects(0, out);
    net.run_for(Duration::from_secs(3));
    let doc = net.doc();
    assert_eq!(doc.counts.ok, 9);
    assert_ne!(observed_b(doc, 3), Observed::Number(666.0));
}

/// Nine certified nodes with relays; with `told`, every node believes the
/// coordinator has its certificate (as after an earlier sweep) though it
/// does not. Starts a signed sweep.
fn certified_relayed_sweep(told: bool, tamper: bool) -> Net {
    use crate::trust::authorization::SweepAsk;
    use crate::trust::testing::{bundle, ca, creds};
    use crate::trust::{Authorization, Role, Scope};

    let ca = ca(1);
    let trust_bundle = bundle(&[&ca]);
    let mut net = Net::new(9, relayed_settings());
    net.outcomes = Box::new(per_node_values);
    net.tamper = tamper;
    for (i, core) in net.cores.iter_mut().enumerate() {
        core.set_trust(
            creds(&ca, Role::Node, &peer(i).name, 10 + i as u8),
            trust_bundle.clone(),
        );
    }
    if told {
        let epoch = net.cores[0].peer_epoch().unwrap();
        for core in net.cores.iter_mut() {
            core.mark_told(&peer(0).name, epoch);
        }
    }
    let operator = creds(&ca, Role::Operator(Scope::full(600_000)), "alice", 99);
    let selector = patrol_model::Selector::default();
    let filter = BTreeMap::new();
    let id = 0xfeed;
    let ask = SweepAsk {
        sweep_id: id,
        selector: &selector,
        node_filter: &filter,
        deadline_ms: 5000,
    };
    let spec = StartSweep {
        selector: selector.clone(),
        node_filter: filter.clone(),
        deadline: Duration::from_secs(5),
        id: Some(id),
        authorization: Some(Authorization::sign(&operator, &ask, net.unix())),
    };
    let mut out = Vec::new();
    let members = net.members();
    let (now, unix) = (net.now, net.unix());
    net.cores[0]
        .start(now, unix, spec, members, &mut out)
        .unwrap();
    net.effects(0, out);
    net
}

#[test]
fn with_certificates_answers_a_relay_changed_are_forged_and_the_nodes_asked_again() {
    let mut net = certified_relayed_sweep(false, true);
    net.run_for(Duration::from_secs(5));
    let doc = net.doc();
    assert_accounted(doc);
    let counters = net.cores[0].counters().clone();
    // Nothing the relays changed was recorded; every node then answered
    // the coordinator directly, after its backstop asked.
    assert_eq!(counters.answers_forged, 8, "{counters:?}");
    assert_eq!(doc.counts.ok, 9, "{counters:?}");
    for i in 0..9 {
        assert_eq!(observed_b(doc, i), Observed::Number(i as f64), "node {i}");
    }
}

#[test]
fn with_certificates_relayed_answers_carry_each_nodes_proof() {
    let mut net = certified_relayed_sweep(false, false);
    net.run_for(Duration::from_secs(2));
    let doc = net.doc();
    assert_accounted(doc);
    let counters = net.cores[0].counters().clone();
    assert_eq!(doc.counts.ok, 9, "{counters:?}");
    assert_eq!(counters.answers_forged + counters.answers_unverified, 0);
    // The first answers carried whole certificates: the nodes now know the
    // coordinator has them, and name them by digest next time.
    let epoch = net.cores[0].peer_epoch().unwrap();
    let trust = net.cores[3].trust.as_ref().unwrap();
    assert!(trust.knows_us(&peer(0).name, epoch));
}

#[test]
fn with_certificates_a_digest_the_coordinator_lacks_is_asked_again_whole() {
    let mut net = certified_relayed_sweep(true, false);
    net.run_for(Duration::from_secs(5));
    let doc = net.doc();
    assert_accounted(doc);
    let counters = net.cores[0].counters().clone();
    assert_eq!(counters.answers_unverified, 8, "{counters:?}");
    assert_eq!(counters.answers_forged, 0, "{counters:?}");
    assert_eq!(doc.counts.ok, 9, "{counters:?}");
    for i in 0..9 {
        assert_eq!(observed_b(doc, i), Observed::Number(i as f64), "node {i}");
    }
}
