//! The simulation report for people: one screen of figures, problems
//! listed when the accounting check failed.

use std::fmt::Write as _;

use super::report::SimReport;

fn opt_ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1} ms"))
        .unwrap_or_else(|| "never".to_string())
}

fn size(bytes: f64) -> String {
    if bytes >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", bytes / 1024.0 / 1024.0)
    } else if bytes >= 1024.0 {
        format!("{:.1} KiB", bytes / 1024.0)
    } else {
        format!("{bytes:.0} B")
    }
}

impl SimReport {
    /// The report for people.
    pub fn render(&self) -> String {
        let s = &self.settings;
        let p = &self.population;
        let r = &self.reach;
        let c = &self.completion;
        let a = &self.answers;
        let t = &self.traffic;
        let st = &self.states;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "patrol-sim: {} nodes (view {}), latency {:.2}-{:.2} ms, loss {:.1}%, seed {}",
            s.nodes,
            s.view,
            s.latency_min_ms,
            s.latency_max_ms,
            s.loss * 100.0,
            s.seed
        );
        let _ = writeln!(
            o,
            "  foca: max_transmissions {}, fan-out {}, gossip every {} ms; deadline {} ms",
            s.max_transmissions, s.fanout, s.gossip_every_ms, s.deadline_ms
        );
        let _ = writeln!(
            o,
            "  nodes: {} live, {} down before, {} crashed before, {} died during; {} slow, {} failing",
            p.live, p.down_before, p.crashed_before, p.died_during, p.slow, p.failing
        );
        let _ = writeln!(
            o,
            "  request reached live nodes: 50% {}, 99% {}, 100% {} ({}/{} reached, {} first by backstop)",
            opt_ms(r.p50_ms),
            opt_ms(r.p99_ms),
            opt_ms(r.p100_ms),
            r.live_reached,
            p.live,
            r.by_backstop
        );
        let _ = writeln!(
            o,
            "  request copies received per live node: mean {:.1}, max {}",
            r.receptions_mean, r.receptions_max
        );
        let how = if c.before_deadline {
            "every node answered or known down"
        } else {
            "at the deadline"
        };
        let _ = writeln!(
            o,
            "  accounted for: {} ({how}); last answer {}; document built {}",
            opt_ms(c.completed_ms),
            opt_ms(c.last_answer_ms),
            opt_ms(c.document_ms)
        );
        let _ = writeln!(
            o,
            "  states: ok {}, failing {}, no_answer {}, down {}, late joiners {}",
            st.ok, st.failing, st.no_answer, st.down, st.late_joiners
        );
        let _ = writeln!(
            o,
            "  answers: {} answered; first send {}, recovered by retry {}, by backstop {}",
            a.answered, a.first_send, a.recovered_by_retry, a.recovered_by_backstop
        );
        let _ = writeln!(
            o,
            "    answer packets {} sent, {} lost; acks {} sent, {} lost; backstop requests {}",
            a.answer_packets_sent,
            a.answer_packets_lost,
            a.acks_sent,
            a.acks_lost,
            a.backstop_requests_sent
        );
        let _ = writeln!(
            o,
            "  sent per node: packets mean {:.1}, max {}; bytes mean {}, max {}",
            t.packets_sent_mean,
            t.packets_sent_max,
            size(t.bytes_sent_mean),
            size(t.bytes_sent_max as f64)
        );
        let _ = writeln!(
            o,
            "  coordinator: received {} packets ({}), sent {} packets ({}); {} dropped by its full receive queue",
            t.coordinator_received_packets,
            size(t.coordinator_received_bytes as f64),
            t.coordinator_sent_packets,
            size(t.coordinator_sent_bytes as f64),
            t.coordinator_queue_overflow
        );
        let _ = writeln!(
            o,
            "  network: {} packets ({}); {} lost, {} dropped by full receive queues, {} sent to dead nodes",
            t.total_packets,
            size(t.total_bytes as f64),
            t.lost,
            t.queue_overflow,
            t.to_dead_nodes
        );
        let z = &self.sizes;
        let _ = writeln!(
            o,
            "  answer body: median {} before compact answers, {} now; {:.1}% of first sends in one datagram",
            size(z.before_median as f64),
            size(z.after_median as f64),
            z.one_datagram * 100.0
        );
        let rl = &self.relays;
        if rl.relays == 0 {
            let _ = writeln!(o, "  relays: none (every node answered the coordinator)");
        } else {
            let _ = writeln!(
                o,
                "  relays: {} ({} died); {} answers came in relay batches; batches sent {}, resent {}",
                rl.relays, rl.died, rl.answers_relayed, rl.batches_sent, rl.batches_resent
            );
            let _ = writeln!(
                o,
                "    per relay: received packets median {} max {} ({} / {}), sent packets median {} max {} ({} / {}); {} dropped by full receive queues",
                rl.received_packets_median,
                rl.received_packets_max,
                size(rl.received_bytes_median as f64),
                size(rl.received_bytes_max as f64),
                rl.sent_packets_median,
                rl.sent_packets_max,
                size(rl.sent_bytes_median as f64),
                size(rl.sent_bytes_max as f64),
                rl.queue_overflow
            );
        }
        if self.accounting.ok {
            let _ = writeln!(
                o,
                "  accounting: OK (every node listed once, in the state it should be; every live node answered)"
            );
        } else {
            let _ = writeln!(
                o,
                "  accounting: {} PROBLEM(S)",
                self.accounting.problem_count
            );
            for problem in &self.accounting.problems {
                let _ = writeln!(o, "    - {problem}");
            }
        }
        let cpu = &self.cpu;
        let _ = writeln!(
            o,
            "  cpu --cpu {} (identities {}): coordinator busy {:.1} ms, {:.1}% of the sweep, largest queue {}, {} dropped by its full queue; its calls {:.1} ms{}, other nodes {:.0} µs each on average",
            cpu.mode,
            if cpu.identities { "on" } else { "off" },
            cpu.coordinator_busy_ms,
            cpu.coordinator_busy_share * 100.0,
            cpu.coordinator_queue_max,
            t.coordinator_queue_overflow,
            cpu.coordinator_ms,
            if cpu.mode == "off" { " (measured, not charged)" } else { "" },
            cpu.node_mean_us,
        );
        let kinds: Vec<String> = cpu
            .coordinator_by_kind
            .iter()
            .map(|(kind, calls, ms)| format!("{kind} {calls} × {ms:.1} ms"))
            .collect();
        let _ = writeln!(o, "    coordinator's calls by kind: {}", kinds.join(", "));
        let others = self.settings.nodes.saturating_sub(1).max(1) as f64;
        let kinds: Vec<String> = cpu
            .others_by_kind
            .iter()
            .take(6)
            .map(|(kind, calls, ms)| format!("{kind} {calls} × {:.1} µs a node", ms * 1e3 / others))
            .collect();
        let _ = writeln!(o, "    other nodes' calls by kind: {}", kinds.join(", "));
        let _ = writeln!(
            o,
            "    busiest relay {:.1}% busy, largest relay queue {}; {} dropped by full queues in all; coordinator derived {} pair keys during the sweep, the other nodes {}",
            cpu.relay_busy_share_max * 100.0,
            cpu.relay_queue_max,
            t.queue_overflow,
            cpu.pair_keys_derived,
            cpu.others_keys_derived
        );
        let _ = writeln!(o, "  simulated {} events", self.events);
        o
    }
}
