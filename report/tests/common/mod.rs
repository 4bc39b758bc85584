//! Hand-made sweep documents shared by the tests: a small fleet on two
//! consecutive days.
#![allow(dead_code)]

use patrol_checks::{NodeEntry, NodeState, Observed, Status};
use patrol_report::sample::{document, node, outcome};

pub const DAY: u64 = 86_400_000;
pub const T0: u64 = 1_795_316_400_000; // 2026-11-22 03:00 UTC

pub fn file_max(v: f64) -> patrol_checks::CheckOutcome {
    let status = if v >= 1_048_576.0 {
        Status::Pass
    } else {
        Status::Fail
    };
    let mut o = outcome("fs.file-max", status, Observed::Number(v), ">= 1048576");
    if status != Status::Pass {
        o.remediation = "sysctl -w fs.file-max=2097152; persist in /etc/sysctl.d".into();
    }
    o
}

pub fn somaxconn(v: f64) -> patrol_checks::CheckOutcome {
    let status = if v >= 4096.0 {
        Status::Pass
    } else {
        Status::Warn
    };
    outcome("net.core.somaxconn", status, Observed::Number(v), ">= 4096")
}

pub fn swappiness(v: f64) -> patrol_checks::CheckOutcome {
    outcome("vm.swappiness", Status::Pass, Observed::Number(v), "any")
}

/// A worker that answered, with its file-max, somaxconn and swappiness.
pub fn worker(name: &str, fs_file_max: f64, net_somaxconn: f64, vm_swappiness: f64) -> NodeEntry {
    node(
        name,
        &[("role", "worker")],
        NodeState::Ok,
        vec![
            file_max(fs_file_max),
            somaxconn(net_somaxconn),
            swappiness(vm_swappiness),
        ],
    )
}

/// Five workers: two with a low fs.file-max, one with low somaxconn, one
/// with swappiness 60; plus one node with no answer and one down.
pub fn day_one() -> patrol_checks::SweepDocument {
    let w = [("role", "worker")];
    document(
        "prod",
        "00000000000000a1",
        T0,
        vec![
            worker("node-a", 65536.0, 4096.0, 0.0),
            worker("node-b", 65536.0, 128.0, 0.0),
            worker("node-c", 2_097_152.0, 4096.0, 60.0),
            worker("node-d", 2_097_152.0, 4096.0, 0.0),
            worker("node-e", 2_097_152.0, 4096.0, 0.0),
            node("node-f", &w, NodeState::NoAnswer, vec![]),
            node("node-g", &w, NodeState::Down, vec![]),
        ],
    )
}

/// Day two: node-b fixed somaxconn (resolved), node-a and node-b still
/// have the low file-max (persisting), node-d now has a new value.
pub fn day_two() -> patrol_checks::SweepDocument {
    document(
        "prod",
        "00000000000000a2",
        T0 + DAY,
        vec![
            worker("node-a", 65536.0, 4096.0, 0.0),
            worker("node-b", 65536.0, 4096.0, 0.0),
            worker("node-c", 2_097_152.0, 4096.0, 60.0),
            worker("node-d", 8192.0, 4096.0, 0.0),
            worker("node-e", 2_097_152.0, 4096.0, 0.0),
        ],
    )
}
