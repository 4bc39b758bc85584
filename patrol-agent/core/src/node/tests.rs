//! Unit tests of the [`Node`] glue, driven by hand: a few nodes on an
//! in-test network with 1 ms latency, timers in a virtual-time queue,
//! checks answered by the test.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use patrol_model::SwimState;
use patrol_model::{CheckOutcome, NodeState, Observed, Severity, Status};

use super::*;
use crate::membership::MemberState;
use crate::sweep::SweepSettings;

const LATENCY: Duration = Duration::from_millis(1);
const BASE_UNIX_MS: u64 = 1_800_000_000_000;

enum Event {
    Datagram {
        to: usize,
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    Timer(usize, NodeTimer),
    ChecksDone(usize, u64),
}

/// Nodes, a virtual clock and everything in flight.
struct Mesh {
    nodes: Vec<Node>,
    alive: Vec<bool>,
    /// Nodes whose checks never finish.
    hung: Vec<bool>,
    now: Duration,
    seq: u64,
    queue: BinaryHeap<Reverse<(Duration, u64)>>,
    events: std::collections::HashMap<u64, Event>,
    /// Every output seen, by node.
    seen: Vec<Vec<Output>>,
    /// Budgets handed out with `RunChecks`.
    budgets: Vec<Duration>,
    documents: Vec<(u64, patrol_model::SweepDocument)>,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 10_000 + i as u16))
}

fn index(a: SocketAddr) -> usize {
    usize::from(a.port() - 10_000)
}

fn pass(id: &str) -> CheckOutcome {
    CheckOutcome {
        id: id.to_string(),
        kind: "test".to_string(),
        status: Status::Pass,
        severity: Severity::Fail,
        observed: Observed::Number(1.0),
        expected: "1".to_string(),
        message: String::new(),
        duration_us: 1,
        description: String::new(),
        remediation: String::new(),
    }
}

impl Mesh {
    fn new(n: usize, settings: NodeSettings) -> Mesh {
        let now = Now {
            mono: Duration::ZERO,
            unix_ms: BASE_UNIX_MS,
        };
        let nodes = (0..n)
            .map(|i| {
                let id = NodeId::new(format!("n{i}"), addr(i), 1, Tags::new());
                Node::new(id, settings.clone(), 7 + i as u64, now)
            })
            .collect();
        Mesh {
            nodes,
            alive: vec![true; n],
            hung: vec![false; n],
            now: Duration::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            events: Default::default(),
            seen: (0..n).map(|_| Vec::new()).collect(),
            budgets: Vec::new(),
            documents: Vec::new(),
        }
    }

    fn at(&self) -> Now {
        Now {
            mono: self.now,
            unix_ms: BASE_UNIX_MS + self.now.as_millis() as u64,
        }
    }

    fn push(&mut self, after: Duration, e: Event) {
        self.seq += 1;
        self.queue.push(Reverse((self.now + after, self.seq)));
        self.events.insert(self.seq, e);
    }

    /// Carry out node `i`'s outputs.
    fn drain(&mut self, i: usize) {
        while let Some(out) = self.nodes[i].next_output() {
            match &out {
                Output::Datagram { to, bytes, .. } => {
                    let to = index(*to);
                    if to < self.nodes.len() {
                        let e = Event::Datagram {
                            to,
                            from: addr(i),
                            bytes: bytes.clone(),
                        };
                        self.push(LATENCY, e);
                    }
                }
                Output::Timer { after, timer } => self.push(*after, Event::Timer(i, timer.clone())),
                Output::RunChecks {
                    sweep_id, budget, ..
                } => {
                    self.budgets.push(*budget);
                    if !self.hung[i] {
                        self.push(Duration::from_millis(5), Event::ChecksDone(i, *sweep_id));
                    }
                }
                Output::Completed { sweep_id, document } => {
                    self.documents.push((*sweep_id, document.to_document()))
                }
                Output::Progress { .. }
                | Output::Member(_)
                | Output::Audit(_)
                | Output::RosterAudit { .. } => {}
            }
            self.seen[i].push(out);
        }
    }

    fn run_for(&mut self, span: Duration) {
        let end = self.now + span;
        while let Some(&Reverse((at, seq))) = self.queue.peek() {
            if at > end {
                break;
            }
            self.queue.pop();
            self.now = at;
            let now = self.at();
            let Some(event) = self.events.remove(&seq) else {
                continue;
            };
            let i = match &event {
                Event::Datagram { to, .. } => *to,
                Event::Timer(i, _) | Event::ChecksDone(i, _) => *i,
            };
            if !self.alive[i] {
                continue;
            }
            match event {
                Event::Datagram { from, bytes, .. } => self.nodes[i].datagram(now, from, &bytes),
                Event::Timer(_, t) => self.nodes[i].timer(now, t),
                Event::ChecksDone(_, id) => self.nodes[i].checks_done(now, id, vec![pass("c")]),
            }
            self.drain(i);
        }
        self.now = end;
    }

    /// Every node joins through node 0, 37 ms apart so that their foca
    /// timers are out of phase (as in a real mesh).
    fn join_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.run_for(Duration::from_millis(37));
            let now = self.at();
            self.nodes[i].set_seeds(now, vec![addr(0)]);
            self.drain(i);
        }
        self.run_for(Duration::from_secs(3));
    }

    fn sweep(&mut self, i: usize, deadline: Duration) -> u64 {
        let now = self.at();
        let spec = StartSweep {
            selector: Selector::default(),
            node_filter: Tags::new(),
            deadline,
            id: None,
            authorization: None,
        };
        let id = self.nodes[i].start_sweep(now, spec).unwrap();
        self.drain(i);
        id
    }

    fn sent(&self, i: usize, kind: DatagramKind) -> usize {
        self.seen[i]
            .iter()
            .filter(|o| matches!(o, Output::Datagram { kind: k, .. } if *k == kind))
            .count()
    }
}

#[test]
fn nodes_join_through_a_seed_and_a_sweep_accounts_for_everyone() {
    let mut mesh = Mesh::new(5, NodeSettings::default());
    mesh.join_all();
    for node in &mesh.nodes {
        assert_eq!(node.num_members(), 4, "{node:?} has not converged");
    }
    let id = mesh.sweep(2, Duration::from_secs(2));
    mesh.run_for(Duration::from_secs(3));
    let (done_id, doc) = mesh.documents.last().expect("a completed sweep");
    assert_eq!(*done_id, id, "Completed carries the sweep id");
    doc.check_accounting().unwrap();
    assert_eq!(doc.counts.ok, 5);
    assert_eq!(doc.coordinator, "n2");
}

#[test]
fn checks_get_the_time_left_less_the_spread_and_the_margin() {
    let settings = NodeSettings::default();
    let margin = settings.sweep.budget_margin;
    let mut mesh = Mesh::new(3, settings);
    mesh.join_all();
    mesh.sweep(0, Duration::from_secs(4));
    mesh.run_for(Duration::from_secs(5));
    assert_eq!(mesh.budgets.len(), 3);
    for b in &mesh.budgets {
        // 4 s deadline, a few ms of trip, a spread of 3 x 30 µs.
        assert!(*b <= Duration::from_secs(4) - margin, "{b:?}");
        assert!(
            *b >= Duration::from_secs(4) - margin - Duration::from_millis(20),
            "{b:?}"
        );
    }
}

#[test]
fn a_late_request_still_gets_the_budget_floor() {
    let settings = SweepSettings::default();
    let floor = settings.budget_floor;
    assert_eq!(
        settings.check_budget(Duration::from_millis(50), Duration::ZERO),
        floor
    );
}

#[test]
fn the_request_goes_out_before_the_expected_set_and_no_answer_is_taken_before_it() {
    let mut mesh = Mesh::new(5, NodeSettings::default());
    mesh.join_all();
    let id = mesh.sweep(2, Duration::from_secs(2));
    // start_sweep's own outputs carry the request to the other four, and
    // the progress counts the five members it will expect...
    assert_eq!(mesh.sent(2, DatagramKind::Request), 4);
    assert!(mesh.seen[2].iter().any(|o| matches!(
        o,
        Output::Progress { sweep_id, answered: 0, expected: 5 } if *sweep_id == id
    )));
    // ...while the expected set is not built yet.
    assert_eq!(mesh.nodes[2].core.awaiting_snapshot(), vec![id]);
    // The first input (here the first answer or foca packet) builds it
    // before it is taken in: every answer counts as expected, none as a
    // late joiner.
    mesh.run_for(Duration::from_secs(3));
    assert!(mesh.nodes[2].core.awaiting_snapshot().is_empty());
    let (done_id, doc) = mesh.documents.last().expect("a completed sweep");
    assert_eq!(*done_id, id);
    doc.check_accounting().unwrap();
    assert_eq!((doc.counts.expected, doc.counts.ok), (5, 5));
    assert_eq!(doc.counts.late_joiners, 0);

    // The shell may build it itself once the start's outputs are out.
    let id = mesh.sweep(2, Duration::from_secs(2));
    let now = mesh.at();
    mesh.nodes[2].snapshot_sweeps(now);
    assert!(mesh.nodes[2].core.awaiting_snapshot().is_empty());
    mesh.drain(2);
    mesh.run_for(Duration::from_secs(3));
    let (done_id, doc) = mesh.documents.last().expect("a completed sweep");
    assert_eq!(*done_id, id);
    assert_eq!((doc.counts.expected, doc.counts.ok), (5, 5));
}

#[test]
fn small_meshes_get_the_request_directly_and_large_ones_do_not() {
    let mut mesh = Mesh::new(4, NodeSettings::default());
    mesh.join_all();
    mesh.sweep(0, Duration::from_secs(1));
    assert_eq!(mesh.sent(0, DatagramKind::Request), 3);

    let settings = NodeSettings {
        direct_spread_limit: 2,
        ..NodeSettings::default()
    };
    let mut mesh = Mesh::new(4, settings);
    mesh.join_all();
    mesh.sweep(0, Duration::from_secs(1));
    assert_eq!(mesh.sent(0, DatagramKind::Request), 0);
}

#[test]
fn a_fresh_request_from_gossip_is_pushed_on_at_once() {
    // No direct spread: the request can only travel by gossip.
    let quiet = |rounds| NodeSettings {
        direct_spread_limit: 0,
        eager_push_rounds: rounds,
        ..NodeSettings::default()
    };
    let reached = |rounds| {
        let mut mesh = Mesh::new(8, quiet(rounds));
        mesh.join_all();
        mesh.sweep(0, Duration::from_secs(2));
        // Well before foca's 200 ms gossip tick.
        mesh.run_for(Duration::from_millis(20));
        mesh.nodes
            .iter()
            .filter(|n| n.stats().request_copies > 0)
            .count()
    };
    assert_eq!(reached(2), 8, "eager push reaches everyone within 20 ms");
    assert!(
        reached(0) < 8,
        "without eager push the gossip tick is needed"
    );
}

#[test]
fn joining_retries_with_backoff_while_nobody_answers() {
    let mut mesh = Mesh::new(2, NodeSettings::default());
    mesh.alive[0] = false;
    let now = mesh.at();
    mesh.nodes[1].set_seeds(now, vec![addr(0)]);
    mesh.drain(1);
    mesh.run_for(Duration::from_secs(20));
    let waits: Vec<Duration> = mesh.seen[1]
        .iter()
        .filter_map(|o| match o {
            Output::Timer {
                after,
                timer: NodeTimer::Rejoin,
            } => Some(*after),
            _ => None,
        })
        .collect();
    let ms: Vec<u128> = waits.iter().take(7).map(Duration::as_millis).collect();
    assert_eq!(ms, [200, 400, 800, 1600, 3200, 5000, 5000]);
    assert!(
        mesh.sent(1, DatagramKind::Foca) >= 7,
        "an announce per attempt"
    );
}

#[test]
fn a_leaving_node_is_shown_left_not_down() {
    let mut mesh = Mesh::new(3, NodeSettings::default());
    mesh.join_all();
    let now = mesh.at();
    mesh.nodes[2].leave(now);
    mesh.drain(2);
    assert_eq!(mesh.sent(2, DatagramKind::Leave), 2);
    mesh.alive[2] = false;
    mesh.run_for(Duration::from_secs(10));
    let view = mesh.nodes[0].members();
    let n2 = view.iter().find(|m| m.name == "n2").unwrap();
    assert_eq!(n2.state, MemberState::Left);
}

#[test]
fn a_member_that_dies_mid_sweep_is_listed_down() {
    let mut mesh = Mesh::new(4, NodeSettings::default());
    mesh.join_all();
    mesh.alive[3] = false;
    mesh.sweep(0, Duration::from_secs(30));
    mesh.run_for(Duration::from_secs(31));
    let (_, doc) = mesh.documents.last().expect("a completed sweep");
    doc.check_accounting().unwrap();
    let n3 = doc.nodes.iter().find(|n| n.name == "n3").unwrap();
    assert_eq!(n3.state, NodeState::Down);
}

/// Issue 14: a silent node's entry says what the mesh knew of it, so a
/// node whose agent runs but whose checks hang reads differently from one
/// the mesh cannot reach.
#[test]
fn a_node_with_hung_checks_and_a_dead_node_are_silent_for_different_reasons() {
    let mut mesh = Mesh::new(4, NodeSettings::default());
    mesh.join_all();
    mesh.hung[2] = true;
    mesh.alive[3] = false;
    mesh.run_for(Duration::from_millis(1500));
    mesh.sweep(0, Duration::from_secs(2));
    mesh.run_for(Duration::from_secs(3));
    let (_, doc) = mesh.documents.last().expect("a completed sweep");
    doc.check_accounting().unwrap();
    let entry = |name: &str| doc.nodes.iter().find(|n| n.name == name).unwrap();
    assert_eq!(entry("n1").state, NodeState::Ok);
    assert_eq!(entry("n1").silence, None);

    let hung = entry("n2");
    assert_eq!(hung.state, NodeState::NoAnswer);
    let hung = hung.silence.clone().expect("a silent node says why");
    assert_eq!(hung.swim, SwimState::Alive, "{hung:?}");
    let ago = hung.last_heard_ago_ms.expect("heard");
    assert!(ago < 1000, "its agent keeps talking: {hung:?}");
    assert!(hung.backstop_requests >= 1, "{hung:?}");

    let dead = entry("n3");
    assert_eq!(dead.state, NodeState::NoAnswer);
    let dead = dead.silence.clone().expect("a silent node says why");
    assert_eq!(dead.swim, SwimState::Suspect, "{dead:?}");
    let ago = dead.last_heard_ago_ms.expect("heard before it died");
    // Dead 1.5 s before the sweep, which lasted 2 s.
    assert!(ago >= 3500, "{dead:?}");
    assert!(dead.backstop_requests >= 1, "{dead:?}");
}

#[test]
fn last_heard_follows_every_datagram_from_a_member() {
    let mut mesh = Mesh::new(3, NodeSettings::default());
    mesh.join_all();
    let t = mesh.now;
    let heard = mesh.nodes[0].last_heard(&addr(1)).expect("heard n1");
    assert!(
        t - heard < Duration::from_millis(1100),
        "{heard:?} at {t:?}"
    );
    mesh.alive[1] = false;
    mesh.run_for(Duration::from_secs(3));
    assert_eq!(mesh.nodes[0].last_heard(&addr(1)), Some(heard));
    assert!(mesh.nodes[0].last_heard(&addr(2)).unwrap() > t);
}

#[test]
fn malformed_datagrams_are_counted_and_change_nothing() {
    let mut mesh = Mesh::new(2, NodeSettings::default());
    mesh.join_all();
    let before = mesh.nodes[0].stats().dropped_malformed;
    let now = mesh.at();
    for bytes in [
        &[][..],
        &[9, 1, 2][..],
        &[0, 255, 255][..],
        &[1, 7][..],
        &[2, 0xff][..],
    ] {
        mesh.nodes[0].datagram(now, addr(1), bytes);
    }
    assert_eq!(mesh.nodes[0].stats().dropped_malformed - before, 5);
    assert_eq!(mesh.nodes[0].num_members(), 1);
}

/// The largest identity the config lets through (192 bytes of name and
/// tags) fits the core's limit, and nodes carrying it still join and sweep
/// (foca's header carries it in every packet).
#[test]
fn nodes_with_the_largest_allowed_identity_join_and_sweep() {
    let tags: Tags = (0..16)
        .map(|k| (format!("k{k:02}"), "v".repeat(6)))
        .collect();
    let text = 12
        + tags
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2)
            .sum::<usize>();
    assert!(text <= 192, "{text}");
    let big = NodeId::new("n".repeat(12), addr(0), u64::MAX, tags.clone());
    assert!(
        big.encoded_len() <= crate::identity::MAX_IDENTITY_BYTES,
        "{}",
        big.encoded_len()
    );
    let mut mesh = Mesh::new(5, NodeSettings::default());
    let now = mesh.at();
    for (i, node) in mesh.nodes.iter_mut().enumerate() {
        let id = NodeId::new(format!("{:x<12}", i), addr(i), u64::MAX - 1, tags.clone());
        *node = Node::new(id, NodeSettings::default(), 3 + i as u64, now);
    }
    mesh.join_all();
    for node in &mesh.nodes {
        assert_eq!(node.num_members(), 4, "{node:?} has not converged");
    }
    mesh.sweep(1, Duration::from_secs(2));
    mesh.run_for(Duration::from_secs(3));
    let (_, doc) = mesh.documents.last().expect("a completed sweep");
    assert_eq!(doc.counts.ok, 5);
}

/// With certificates, a node derives the pair key of each member when it
/// learns the member's certificate: a coordinator's first sweep then
/// checks every answer with a key it has, and derives none. (With the
/// derivation on learning removed, the coordinator derives one per
/// member during the sweep and this fails.)
#[test]
fn pair_keys_are_derived_when_a_certificate_is_learned_not_during_the_first_sweep() {
    let (ca, _, mut mesh) = certified_mesh();
    for node in &mesh.nodes {
        assert_eq!(node.num_members(), 4, "{node:?} has not converged");
    }
    let learned = mesh.nodes[2].pair_keys_derived();
    assert_eq!(
        learned, 5,
        "n2 derived a key per member as it learned their certificates, and its own"
    );
    signed_sweep(&mut mesh, &ca, 2);
    mesh.run_for(Duration::from_secs(3));
    let (_, doc) = mesh.documents.last().expect("a completed sweep");
    doc.check_accounting().unwrap();
    assert_eq!(doc.counts.ok, 5, "every node's proven answer was taken");
    assert_eq!(
        mesh.nodes[2].pair_keys_derived(),
        learned,
        "the coordinator derived no key during its first sweep"
    );
}

/// A certificate renewed for the same key keeps the pair keys: the
/// membership learns every member's certificate again after a renewal,
/// and finds its key ready. (Without keeping them, the renewing node
/// derives one per member again and this fails.)
#[test]
fn a_renewal_for_the_same_key_keeps_the_pair_keys() {
    use crate::trust::testing::issued;
    use crate::trust::{Role, SigningKey};
    let (ca, bundle, mut mesh) = certified_mesh();
    let before = mesh.nodes[2].pair_keys_derived();
    assert_eq!(before, 5, "a key per member and its own");
    // The same key (seed 12, as `creds` made it), a new certificate.
    let key = SigningKey::from_bytes(&[12; 32]);
    let renewed = issued(&ca, key, Role::Node, "n2", 77, 0..u64::MAX);
    let now = mesh.at();
    mesh.nodes[2].renew_credentials(now, renewed, bundle.clone());
    mesh.drain(2);
    mesh.run_for(Duration::from_secs(5));
    let learned = mesh.nodes[2]
        .gate
        .as_ref()
        .map_or(0, |g| g.counters.certs_learned);
    assert!(
        learned >= 4 + 4,
        "n2 learned its members' certificates again after the renewal ({learned})"
    );
    assert_eq!(
        mesh.nodes[2].pair_keys_derived(),
        before,
        "no key derived again for the members learned again"
    );
    signed_sweep(&mut mesh, &ca, 2);
    mesh.run_for(Duration::from_secs(3));
    let (_, doc) = mesh.documents.last().expect("a completed sweep");
    assert_eq!(doc.counts.ok, 5, "{:?}", doc.counts);
}

/// Five nodes with certificates of one CA (node `ni`'s key from seed
/// 10 + i), joined: the CA, its bundle and the mesh.
fn certified_mesh() -> (crate::trust::Credentials, crate::trust::TrustBundle, Mesh) {
    use crate::trust::testing::{bundle, ca, creds};
    use crate::trust::Role;
    let ca = ca(1);
    let bundle = bundle(&[&ca]);
    let mut mesh = Mesh::new(5, NodeSettings::default());
    let now = mesh.at();
    for (i, node) in mesh.nodes.iter_mut().enumerate() {
        let c = creds(&ca, Role::Node, &format!("n{i}"), 10 + i as u8);
        node.set_trust(c, bundle.clone(), now);
    }
    mesh.join_all();
    (ca, bundle, mesh)
}

/// Node `i` starts a sweep signed by an operator of `ca`.
fn signed_sweep(mesh: &mut Mesh, ca: &crate::trust::Credentials, i: usize) {
    use crate::trust::authorization::SweepAsk;
    use crate::trust::testing::creds;
    use crate::trust::{Authorization, Role, Scope};
    let operator = creds(ca, Role::Operator(Scope::full(600_000)), "op", 40);
    let (selector, filter) = (Selector::default(), Tags::new());
    let coordinator = format!("n{i}");
    let ask = SweepAsk {
        sweep_id: 0xbeef,
        selector: &selector,
        node_filter: &filter,
        deadline_ms: 2000,
        coordinator: &coordinator,
    };
    let spec = StartSweep {
        selector: selector.clone(),
        node_filter: filter.clone(),
        deadline: Duration::from_secs(2),
        id: Some(0xbeef),
        authorization: Some(Authorization::sign(&operator, &ask, mesh.at().unix_ms)),
    };
    let now = mesh.at();
    mesh.nodes[i].start_sweep(now, spec).unwrap();
    mesh.drain(i);
}

#[test]
fn a_burst_of_members_is_not_kept_as_queue_capacity() {
    let now = Now {
        mono: Duration::ZERO,
        unix_ms: 1_800_000_000_000,
    };
    let me = NodeId::new("me", addr(0), 1, BTreeMap::new());
    let mut node = Node::new(me, NodeSettings::default(), 5, now);
    let members = (1..5_000)
        .map(|i| Member::alive(NodeId::new(format!("n{i}"), addr(i), 1, BTreeMap::new())));
    node.learn_members(now, members);
    let mut outputs = 0;
    while node.next_output().is_some() {
        outputs += 1;
    }
    assert!(outputs > 0, "learning members schedules foca's timers");
    assert_eq!(node.num_members(), 4_999);
    assert!(
        node.out.capacity() <= 2 * super::QUEUE_KEEP,
        "the drained output queue kept room for {}",
        node.out.capacity()
    );
}
