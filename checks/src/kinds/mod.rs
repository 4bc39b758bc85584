//! The check kinds: one module per kind, a closed enum selected by `type`,
//! and what they share (the [`Context`] a kind runs with, the
//! [`Finding`] it returns).

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::blocking::BlockingCalls;
use crate::expect::{show, Expect};
use crate::host::{Account, Host};
use crate::Observed;

pub mod clock;
pub mod command;
pub mod disk;
pub mod etcd_health;
pub mod file;
pub mod file_descriptors;
pub mod kernel_log;
pub mod kube;
pub mod kubelet_version;
pub mod log_volume;
pub mod memory;
pub mod network;
pub mod package;
pub mod perfdata;
pub mod process_count;
pub mod sysctl;
pub mod systemd_unit;
mod tls;

pub use tls::TlsFiles;

/// Every check kind, selected by `type = "..."`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CheckKind {
    Sysctl(sysctl::Sysctl),
    ProcessCount(process_count::ProcessCount),
    KubeletVersion(kubelet_version::KubeletVersion),
    EtcdHealth(etcd_health::EtcdHealth),
    Command(command::CommandCheck),
    Disk(disk::Disk),
    Memory(memory::Memory),
    FileDescriptors(file_descriptors::FileDescriptors),
    KernelLog(kernel_log::KernelLog),
    SystemdUnit(systemd_unit::SystemdUnit),
    Clock(clock::Clock),
    Network(network::Network),
    LogVolume(log_volume::LogVolume),
    File(file::FileCheck),
    Package(package::Package),
    Kubelet(kube::KubeSetting),
    KubeProxy(kube::KubeSetting),
}

impl CheckKind {
    /// Every `type` name.
    pub const NAMES: &'static [&'static str] = &[
        "sysctl",
        "process_count",
        "kubelet_version",
        "etcd_health",
        "command",
        "disk",
        "memory",
        "file_descriptors",
        "kernel_log",
        "systemd_unit",
        "clock",
        "network",
        "log_volume",
        "file",
        "package",
        "kubelet",
        "kube_proxy",
    ];

    /// The `type` name.
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::Sysctl(_) => "sysctl",
            CheckKind::ProcessCount(_) => "process_count",
            CheckKind::KubeletVersion(_) => "kubelet_version",
            CheckKind::EtcdHealth(_) => "etcd_health",
            CheckKind::Command(_) => "command",
            CheckKind::Disk(_) => "disk",
            CheckKind::Memory(_) => "memory",
            CheckKind::FileDescriptors(_) => "file_descriptors",
            CheckKind::KernelLog(_) => "kernel_log",
            CheckKind::SystemdUnit(_) => "systemd_unit",
            CheckKind::Clock(_) => "clock",
            CheckKind::Network(_) => "network",
            CheckKind::LogVolume(_) => "log_volume",
            CheckKind::File(_) => "file",
            CheckKind::Package(_) => "package",
            CheckKind::Kubelet(_) => "kubelet",
            CheckKind::KubeProxy(_) => "kube_proxy",
        }
    }

    /// The unit of the values this check observes, when they have one
    /// (`%`, `MiB`, `ms`, `processes`...): what the report prints next to
    /// them. None for settings, versions, states and hashes, and for a
    /// plugin's perfdata, whose values carry their own units.
    pub fn unit(&self) -> Option<&'static str> {
        match self {
            CheckKind::Disk(_) => Some("%"),
            CheckKind::Memory(k) => Some(match k.measure {
                memory::MemoryMeasure::AvailablePercent
                | memory::MemoryMeasure::SwapUsedPercent => "%",
                memory::MemoryMeasure::AvailableMb | memory::MemoryMeasure::SwapTotalMb => "MiB",
            }),
            CheckKind::FileDescriptors(k) => Some(match k.measure {
                file_descriptors::FdMeasure::UsedPercent => "%",
                file_descriptors::FdMeasure::Allocated | file_descriptors::FdMeasure::Max => {
                    "file handles"
                }
            }),
            CheckKind::ProcessCount(k) => Some(match k.count {
                process_count::Count::Total
                | process_count::Count::Zombies
                | process_count::Count::Matching => "processes",
                process_count::Count::Threads => "threads",
                process_count::Count::PidMaxPercent => "%",
            }),
            CheckKind::KernelLog(_) => Some("messages"),
            CheckKind::Clock(_) => Some("ms"),
            CheckKind::LogVolume(k) => Some(match k.measure {
                log_volume::LogMeasure::SizeMb => "MiB",
                log_volume::LogMeasure::GrowthMbPerHour => "MiB/hour",
            }),
            CheckKind::Network(k) if k.connect.is_some() => Some("ms"),
            CheckKind::Network(k) => match k.measure.unwrap_or_default() {
                network::LinkMeasure::State => None,
                network::LinkMeasure::Mtu => Some("bytes"),
                network::LinkMeasure::Errors | network::LinkMeasure::Drops => Some("packets"),
            },
            CheckKind::Sysctl(_)
            | CheckKind::KubeletVersion(_)
            | CheckKind::EtcdHealth(_)
            | CheckKind::Command(_)
            | CheckKind::SystemdUnit(_)
            | CheckKind::File(_)
            | CheckKind::Package(_)
            | CheckKind::Kubelet(_)
            | CheckKind::KubeProxy(_) => None,
        }
    }

    /// Checks of the settings serde cannot express: (key, message).
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        match self {
            CheckKind::Sysctl(k) => k.validate(),
            CheckKind::ProcessCount(k) => k.validate(),
            CheckKind::KubeletVersion(k) => k.validate(),
            CheckKind::EtcdHealth(k) => k.validate(),
            CheckKind::Command(k) => k.validate(),
            CheckKind::Disk(k) => k.validate(),
            CheckKind::KernelLog(k) => k.validate(),
            CheckKind::SystemdUnit(k) => k.validate(),
            CheckKind::Network(k) => k.validate(),
            CheckKind::LogVolume(k) => k.validate(),
            CheckKind::File(k) => k.validate(),
            CheckKind::Package(k) => k.validate(),
            CheckKind::Kubelet(k) | CheckKind::KubeProxy(k) => k.validate(),
            CheckKind::Memory(_) | CheckKind::FileDescriptors(_) | CheckKind::Clock(_) => Ok(()),
        }
    }

    /// The expectation used when the check gives none.
    pub(crate) fn default_expect(&self) -> Option<Expect> {
        match self {
            CheckKind::KernelLog(_) => Some(Expect {
                max: Some(0.0),
                ..Expect::default()
            }),
            CheckKind::SystemdUnit(_) => Some(Expect {
                equals: Some("active".into()),
                ..Expect::default()
            }),
            CheckKind::Clock(_) => Some(Expect {
                max: Some(100.0),
                ..Expect::default()
            }),
            _ => None,
        }
    }

    /// Kinds that judge nothing but the expectation, so that a check of
    /// them without `expect` is observe-only (passes with its value).
    /// Other kinds judge something of their own without one (a Nagios
    /// exit code, the kubelet's version skew, a unit's `active` default),
    /// and say `observe = true` to record their value only.
    pub fn observes_without_expect(&self) -> bool {
        matches!(
            self,
            CheckKind::Sysctl(_)
                | CheckKind::File(_)
                | CheckKind::Package(_)
                | CheckKind::Kubelet(_)
                | CheckKind::KubeProxy(_)
        )
    }

    /// Kinds whose value is only meaningful against an expectation
    /// (gauges: a bare "412 processes" feeds no decision), so a check
    /// without `expect` must say `observe = true`. Kinds that read a
    /// setting or a version (`sysctl`, `kubelet_version`, ...) observe
    /// without an expectation.
    pub(crate) fn needs_expect(&self) -> bool {
        matches!(
            self,
            CheckKind::ProcessCount(_)
                | CheckKind::LogVolume(_)
                | CheckKind::Disk(_)
                | CheckKind::Memory(_)
                | CheckKind::FileDescriptors(_)
        )
    }

    /// Observe and judge.
    pub(crate) async fn run(&self, cx: &Context<'_>, expect: &Expect) -> Finding {
        match self {
            CheckKind::Sysctl(k) => k.run(cx, expect).await,
            CheckKind::ProcessCount(k) => k.run(cx, expect).await,
            CheckKind::KubeletVersion(k) => k.run(cx, expect).await,
            CheckKind::EtcdHealth(k) => k.run(cx, expect).await,
            CheckKind::Command(k) => k.run(cx, expect).await,
            CheckKind::Disk(k) => k.run(cx, expect).await,
            CheckKind::Memory(k) => k.run(cx, expect).await,
            CheckKind::FileDescriptors(k) => k.run(cx, expect).await,
            CheckKind::KernelLog(k) => k.run(cx, expect).await,
            CheckKind::SystemdUnit(k) => k.run(cx, expect).await,
            CheckKind::Clock(k) => k.run(cx, expect).await,
            CheckKind::Network(k) => k.run(cx, expect).await,
            CheckKind::LogVolume(k) => k.run(cx, expect).await,
            CheckKind::File(k) => k.run(cx, expect).await,
            CheckKind::Package(k) => k.run(cx, expect).await,
            CheckKind::Kubelet(k) => k.run(cx, expect, &kube::KUBELET).await,
            CheckKind::KubeProxy(k) => k.run(cx, expect, &kube::KUBE_PROXY).await,
        }
    }
}

/// What a kind runs with besides its own settings and its expectation.
pub(crate) struct Context<'a> {
    /// The machine.
    pub host: &'a Arc<dyn Host>,
    /// The check's timeout (already cut to a sweep's budget).
    pub timeout: Duration,
    /// Who the check's commands run as (None: the agent's own user).
    pub run_as: Option<&'a Account>,
    /// The runner's blocking-call slots.
    pub calls: &'a BlockingCalls,
    /// The kind running, whose slots its blocking calls take.
    pub kind: &'static str,
}

impl Context<'_> {
    /// Run a blocking read of the host on the blocking pool, in one of
    /// this kind's slots (see [`crate::blocking`]). `Err` says in words
    /// why it did not run or did not finish.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Host) -> T + Send + 'static,
    ) -> Result<T, String> {
        self.calls.run(self.kind, self.host, f).await
    }
}

/// How drift detection compares a kind's observed values across a peer
/// group. Each kind declares it (see [`value_nature`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueNature {
    /// A setting, a version, a state: compared with the peer group's
    /// majority value (`vm.swappiness = 60` where 9,997 peers have `0`).
    Discrete,
    /// A continuous gauge (free memory, process counts, disk use): only a
    /// robust outlier, far from the peer group's median, counts.
    Gauge,
    /// Left out of drift: values whose spread is noise by nature
    /// (latencies) or that mix the two.
    Ignored,
}

/// How drift treats a value of `kind` (the outcome's `kind` name). A kind
/// this Patrol does not know (a newer agent's) is compared as discrete.
pub fn value_nature(kind: &str, observed: &Observed) -> ValueNature {
    match kind {
        "sysctl" | "kubelet_version" | "systemd_unit" | "file" | "package" | "kubelet"
        | "kube_proxy" => ValueNature::Discrete,
        "process_count" | "disk" | "memory" | "file_descriptors" | "kernel_log" | "clock"
        | "log_volume" => ValueNature::Gauge,
        "network" => network::value_nature(observed),
        // Health, a latency and a version in one value.
        "etcd_health" => ValueNature::Ignored,
        "command" => command::value_nature(observed),
        _ => ValueNature::Discrete,
    }
}

/// How a kind judged its observation, before severity applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// A warning in its own right (Nagios exit 1).
    Warn,
    /// The expectation missed: becomes the check's severity.
    Miss,
    /// Could not observe.
    Error,
}

/// What a kind found.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub verdict: Verdict,
    pub observed: Observed,
    pub expected: String,
    pub message: String,
}

impl Finding {
    /// Could not observe.
    pub fn error(expected: String, message: impl Into<String>) -> Finding {
        Finding {
            verdict: Verdict::Error,
            observed: Observed::None,
            expected,
            message: message.into(),
        }
    }

    /// Judge `observed` against `expect`; `what` prefixes the pass message.
    pub fn judge(observed: Observed, expect: &Expect) -> Finding {
        let expected = expect.describe();
        match expect.check(&observed) {
            Ok(()) => Finding {
                verdict: Verdict::Pass,
                message: format!("observed {}", show(&observed)),
                observed,
                expected,
            },
            Err(why) => Finding {
                verdict: Verdict::Miss,
                observed,
                expected,
                message: why,
            },
        }
    }

    /// Judge a plain value as a whole, named values (paths, interfaces)
    /// one by one: a miss names each value that missed.
    pub fn judge_each(observed: Observed, expect: &Expect) -> Finding {
        let Observed::Named(items) = &observed else {
            return Finding::judge(observed, expect);
        };
        let misses: Vec<String> = items
            .iter()
            .filter_map(|(k, v)| expect.check(v).err().map(|why| format!("{k}: {why}")))
            .collect();
        Finding {
            verdict: if misses.is_empty() {
                Verdict::Pass
            } else {
                Verdict::Miss
            },
            message: if misses.is_empty() {
                show(&observed)
            } else {
                misses.join("; ")
            },
            observed,
            expected: expect.describe(),
        }
    }
}

/// A number observation, integral when possible.
pub(crate) fn number(n: f64) -> Observed {
    Observed::Number(n)
}

/// Round to two decimals (percentages in messages).
pub(crate) fn round2(n: f64) -> f64 {
    (n * 100.0).round() / 100.0
}
