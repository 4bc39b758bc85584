//! What a node's own code costs in virtual time: every call the shell
//! makes into [`Node`](patrol_core::Node) (a datagram, a timer, finished
//! checks, starting a sweep) keeps the node busy for a charge, and what
//! arrives meanwhile waits in its receive queue (`network::Server`).
//!
//! Three modes ([`CpuMode`]):
//! - `model` (the default): the charge comes from a [`CostModel`], per call
//!   kind a fixed part plus a part per unit of work the shell can see from
//!   outside (bytes in, datagrams and bytes out, answers carried, members
//!   held). Deterministic: same seed, same report.
//! - `measured`: the charge is the call's live thread CPU
//!   (`CLOCK_THREAD_CPUTIME_ID`), less the clock's own cost; for checking
//!   the model, and what `patrol-sim calibrate` fits the model from.
//! - `off`: nothing is charged (the simulator before issue 25: only the
//!   flat per-datagram `rx_service`); thread CPU is still measured for the
//!   report.
//!
//! Set-up work (joins, `view::know_mentioned`, filling the relays'
//! membership) is never charged nor measured.
//!
//! The model the simulator uses by default is `tests/sim-cost-model.toml`,
//! compiled in; `patrol-sim calibrate` rewrites it (see `calibrate.rs`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

/// The cost model committed in the repository, compiled in.
const BUILTIN_MODEL: &str = include_str!("../../sim-cost-model.toml");

/// How node calls are charged.
#[derive(Debug, Clone, PartialEq)]
pub enum CpuMode {
    Model(Arc<CostModel>),
    Measured,
    Off,
}

impl CpuMode {
    /// `model` with the committed model (panics if it does not parse).
    pub fn model() -> CpuMode {
        let model = CostModel::builtin()
            .expect("tests/sim-cost-model.toml is valid (rewrite it with `patrol-sim calibrate`)");
        CpuMode::Model(Arc::new(model))
    }

    pub fn name(&self) -> &'static str {
        match self {
            CpuMode::Model(_) => "model",
            CpuMode::Measured => "measured",
            CpuMode::Off => "off",
        }
    }

    /// Whether timers, finished checks and the sweep start wait for the
    /// node's CPU (off: only datagrams queue, as before).
    pub fn queues_every_call(&self) -> bool {
        !matches!(self, CpuMode::Off)
    }
}

/// The kinds of node call the model tells apart: by what the call
/// handles and, where the code path differs, by the node's role in the
/// sweep (coordinator, relay, participant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CallKind {
    /// A foca packet (probe, ack, gossip, announce, the request's gossip).
    FocaDatagram,
    /// A sweep request sent directly (spread, relay, backstop).
    RequestDatagram,
    /// An answer piece at the coordinator: verify, take into the document,
    /// ack.
    CoordinatorAnswer,
    /// An answer piece at a relay (or anyone else): hold it, ack.
    RelayAnswer,
    /// A relay's batch of answers at the coordinator.
    BatchDatagram,
    /// A participant's answer piece acked.
    AnswerAck,
    /// A relay's batch acked.
    BatchAck,
    /// Anything else (leave, certificates, undecodable).
    OtherDatagram,
    /// foca's probe timers (`ProbeRandomMember`, `SendIndirectProbe`).
    ProbeTimer,
    /// foca's periodic gossip.
    GossipTimer,
    /// Every other foca timer, and the rejoin timer.
    OtherTimer,
    /// A sweep timer at the coordinator (its tick: progress, backstop).
    CoordinatorTimer,
    /// A sweep timer at a relay (flush, batch resend).
    RelayTimer,
    /// A sweep timer at a participant (answer resend).
    SweepTimer,
    /// Finished checks: build, encode and send the answer.
    ChecksDone,
    /// The coordinator starts the sweep: builds and sends the request.
    StartSweep,
    /// The coordinator snapshots the expected set, right after the start.
    SweepSnapshot,
    /// The coordinator's call that completes the sweep (the last answer
    /// or the deadline) and builds its document; `answers` counts the
    /// document's nodes. A kind of its own so that the build is charged
    /// where it happens, not spread over every answer.
    SweepDocument,
}

pub const CALL_KINDS: usize = 18;

impl CallKind {
    pub const ALL: [CallKind; CALL_KINDS] = [
        CallKind::FocaDatagram,
        CallKind::RequestDatagram,
        CallKind::CoordinatorAnswer,
        CallKind::RelayAnswer,
        CallKind::BatchDatagram,
        CallKind::AnswerAck,
        CallKind::BatchAck,
        CallKind::OtherDatagram,
        CallKind::ProbeTimer,
        CallKind::GossipTimer,
        CallKind::OtherTimer,
        CallKind::CoordinatorTimer,
        CallKind::RelayTimer,
        CallKind::SweepTimer,
        CallKind::ChecksDone,
        CallKind::StartSweep,
        CallKind::SweepSnapshot,
        CallKind::SweepDocument,
    ];

    /// The kind's name in the model file.
    pub fn name(self) -> &'static str {
        match self {
            CallKind::FocaDatagram => "foca_datagram",
            CallKind::RequestDatagram => "request_datagram",
            CallKind::CoordinatorAnswer => "coordinator_answer",
            CallKind::RelayAnswer => "relay_answer",
            CallKind::BatchDatagram => "batch_datagram",
            CallKind::AnswerAck => "answer_ack",
            CallKind::BatchAck => "batch_ack",
            CallKind::OtherDatagram => "other_datagram",
            CallKind::ProbeTimer => "probe_timer",
            CallKind::GossipTimer => "gossip_timer",
            CallKind::OtherTimer => "other_timer",
            CallKind::CoordinatorTimer => "coordinator_timer",
            CallKind::RelayTimer => "relay_timer",
            CallKind::SweepTimer => "sweep_timer",
            CallKind::ChecksDone => "checks_done",
            CallKind::StartSweep => "start_sweep",
            CallKind::SweepSnapshot => "sweep_snapshot",
            CallKind::SweepDocument => "sweep_document",
        }
    }
}

impl fmt::Display for CallKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a call did, as the shell sees it from outside the node.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Units {
    /// Bytes of the datagram handed in (channel byte included).
    pub in_bytes: u32,
    /// Datagrams the call asked to send.
    pub out_datagrams: u32,
    /// Their bytes.
    pub out_bytes: u32,
    /// Answers the datagram carried (1 per answer piece, the batch's
    /// answers for a batch) or, for finished checks, outcomes.
    pub answers: u32,
    /// Members the node holds (foca's member count).
    pub members: u32,
}

/// The units' names in the model file, in [`Units::values`] order.
pub const UNIT_NAMES: [&str; UNITS] = [
    "per_in_byte_ns",
    "per_out_datagram_ns",
    "per_out_byte_ns",
    "per_answer_ns",
    "per_member_ns",
];
pub const UNITS: usize = 5;

impl Units {
    pub fn values(&self) -> [f64; UNITS] {
        [
            f64::from(self.in_bytes),
            f64::from(self.out_datagrams),
            f64::from(self.out_bytes),
            f64::from(self.answers),
            f64::from(self.members),
        ]
    }
}

/// One kind's cost: `fixed_ns + Σ coefficient × unit`, in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindCost {
    pub fixed_ns: f64,
    #[serde(default)]
    pub per_in_byte_ns: f64,
    #[serde(default)]
    pub per_out_datagram_ns: f64,
    #[serde(default)]
    pub per_out_byte_ns: f64,
    #[serde(default)]
    pub per_answer_ns: f64,
    #[serde(default)]
    pub per_member_ns: f64,
    /// Calls the fit saw (information only).
    #[serde(default)]
    pub samples: u64,
    /// Their median measured cost (information only).
    #[serde(default)]
    pub median_ns: f64,
}

impl KindCost {
    pub fn coefficients(&self) -> [f64; UNITS] {
        [
            self.per_in_byte_ns,
            self.per_out_datagram_ns,
            self.per_out_byte_ns,
            self.per_answer_ns,
            self.per_member_ns,
        ]
    }

    pub fn from_fit(fixed_ns: f64, c: [f64; UNITS], samples: u64, median_ns: f64) -> KindCost {
        KindCost {
            fixed_ns,
            per_in_byte_ns: c[0],
            per_out_datagram_ns: c[1],
            per_out_byte_ns: c[2],
            per_answer_ns: c[3],
            per_member_ns: c[4],
            samples,
            median_ns,
        }
    }

    /// The modelled cost of a call with `units`, in nanoseconds.
    pub fn nanos(&self, units: &Units) -> f64 {
        let v = units.values();
        let c = self.coefficients();
        self.fixed_ns + (0..UNITS).map(|k| v[k] * c[k]).sum::<f64>()
    }
}

/// Per call kind, what a call costs on the machine it was calibrated on.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostModel {
    /// Where and how it was calibrated (information only).
    #[serde(default)]
    pub about: std::collections::BTreeMap<String, String>,
    /// Every kind of [`CallKind`], by name.
    pub kinds: std::collections::BTreeMap<String, KindCost>,
    /// Scales every charge (default 1.0): a faster or slower machine, or
    /// "what if the coordinator cost half as much".
    #[serde(default = "one")]
    pub scale: f64,
    #[serde(skip)]
    table: [KindCost; CALL_KINDS],
}

fn one() -> f64 {
    1.0
}

/// A model file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("the cost model does not parse: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("the cost model has no entry [kinds.{0}]")]
    MissingKind(&'static str),
    #[error("the cost model has an unknown kind [kinds.{0}]")]
    UnknownKind(String),
    #[error("the cost model's [kinds.{kind}] {field} is {value} (must be a finite number >= 0)")]
    BadValue {
        kind: String,
        field: &'static str,
        value: f64,
    },
}

impl CostModel {
    /// The model committed in the repository (`tests/sim-cost-model.toml`).
    pub fn builtin() -> Result<CostModel, ModelError> {
        CostModel::parse(BUILTIN_MODEL)
    }

    /// A model from its file's text.
    pub fn parse(text: &str) -> Result<CostModel, ModelError> {
        let mut model: CostModel = toml::from_str(text)?;
        for name in model.kinds.keys() {
            if !CallKind::ALL.iter().any(|k| k.name() == name) {
                return Err(ModelError::UnknownKind(name.clone()));
            }
        }
        for kind in CallKind::ALL {
            let cost = *model
                .kinds
                .get(kind.name())
                .ok_or(ModelError::MissingKind(kind.name()))?;
            let fields = std::iter::once(("fixed_ns", cost.fixed_ns))
                .chain(UNIT_NAMES.iter().copied().zip(cost.coefficients()));
            for (field, value) in fields {
                if !value.is_finite() || value < 0.0 {
                    return Err(ModelError::BadValue {
                        kind: kind.name().to_string(),
                        field,
                        value,
                    });
                }
            }
            model.table[kind as usize] = cost;
        }
        if !model.scale.is_finite() || model.scale < 0.0 {
            return Err(ModelError::BadValue {
                kind: "(top level)".to_string(),
                field: "scale",
                value: model.scale,
            });
        }
        Ok(model)
    }

    /// The charge of one call.
    pub fn cost(&self, kind: CallKind, units: &Units) -> Duration {
        let ns = self.table[kind as usize].nanos(units) * self.scale;
        Duration::from_nanos(ns.round().max(0.0) as u64)
    }

    pub fn kind(&self, kind: CallKind) -> &KindCost {
        &self.table[kind as usize]
    }
}

/// This thread's CPU time so far.
pub fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// What reading the thread CPU clock twice costs on its own (the lower
/// quartile of many empty intervals): taken off every measured call.
pub fn clock_overhead() -> Duration {
    let mut v: Vec<Duration> = (0..2001)
        .map(|_| {
            let a = thread_cpu();
            thread_cpu().saturating_sub(a)
        })
        .collect();
    v.sort_unstable();
    v[v.len() / 4]
}

/// One measured call, for calibration.
#[derive(Debug, Clone, Copy)]
pub struct CallSample {
    pub kind: CallKind,
    pub units: Units,
    pub nanos: u64,
    /// A call into the coordinator.
    pub coordinator: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_model_parses_and_charges_every_kind() {
        let model = CostModel::builtin().expect("the committed model parses");
        for kind in CallKind::ALL {
            let units = Units {
                in_bytes: 1000,
                out_datagrams: 1,
                out_bytes: 100,
                answers: 1,
                members: 1000,
            };
            assert!(model.cost(kind, &units) > Duration::ZERO, "{kind}");
        }
    }

    #[test]
    fn a_model_missing_a_kind_or_with_a_negative_cost_is_refused() {
        let err = CostModel::parse("[kinds.foca_datagram]\nfixed_ns = 1.0\n").unwrap_err();
        assert!(matches!(err, ModelError::MissingKind(_)), "{err}");
        let mut text = String::new();
        for kind in CallKind::ALL {
            text.push_str(&format!("[kinds.{kind}]\nfixed_ns = 1.0\n"));
        }
        assert!(CostModel::parse(&text).is_ok());
        let bad = text.replacen("fixed_ns = 1.0", "fixed_ns = -1.0", 1);
        let err = CostModel::parse(&bad).unwrap_err();
        assert!(matches!(err, ModelError::BadValue { .. }), "{err}");
    }

    #[test]
    fn the_charge_is_the_fixed_part_plus_each_unit_times_its_cost() {
        let mut text = String::new();
        for kind in CallKind::ALL {
            text.push_str(&format!(
                "[kinds.{kind}]\nfixed_ns = 1000.0\nper_in_byte_ns = 2.0\nper_member_ns = 0.5\n"
            ));
        }
        let model = CostModel::parse(&text).expect("valid");
        let units = Units {
            in_bytes: 100,
            members: 10_000,
            ..Units::default()
        };
        // 1,000 + 100 × 2 + 10,000 × 0.5 ns.
        let want = Duration::from_nanos(6_200);
        assert_eq!(model.cost(CallKind::FocaDatagram, &units), want);
    }
}
