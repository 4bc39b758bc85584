//! Processes a check's program started that left its process group
//! (`setsid`, a double fork), found and killed when the program ends, so
//! a check leaves nothing running (issue 22's leftover: a `setsid` child
//! escaped the group kill and outlived the check, and the agent).
//!
//! Without cgroups there is no kernel handle on "everything this program
//! started", so each run carries a marker: the environment variable
//! [`MARKER_VAR`] with a value unique to the run, which every descendant
//! inherits whatever its session or parent. When the run ends (exit,
//! timeout, flood, the caller dropping it, the agent stopping), every
//! process whose environment holds the marker is killed through a pidfd
//! (opened, then checked again, then signalled: a pid reused in between
//! is not hit). What can still escape: a descendant that replaces its
//! whole environment (`env -i`, `execve` with an empty one) and leaves the
//! group, or one the agent may not read (`/proc/PID/environ` of another
//! user when the agent is not root).

use std::sync::atomic::{AtomicU64, Ordering};

use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};

/// The environment variable that marks a run's processes.
pub const MARKER_VAR: &str = "PATROL_CHECK_RUN";

/// Rounds of look-and-kill: a process forking while the first round kills
/// is found by the next.
const ROUNDS: usize = 4;

/// One run's marker.
#[derive(Debug, Clone)]
pub(crate) struct RunMarker {
    value: String,
}

impl RunMarker {
    /// A marker no other run of this agent (nor of another process) has.
    pub(crate) fn new() -> RunMarker {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        RunMarker {
            value: format!(
                "{}-{}-{nanos}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }

    /// The value of [`MARKER_VAR`] for this run.
    pub(crate) fn value(&self) -> &str {
        &self.value
    }

    /// Kill every process that carries this marker; how many were killed.
    pub(crate) fn kill_all(&self) -> usize {
        let needle = format!("{MARKER_VAR}={}", self.value).into_bytes();
        let mut killed = 0;
        for _ in 0..ROUNDS {
            let found = marked(&needle);
            if found.is_empty() {
                break;
            }
            for pid in found {
                let Ok(fd) = pidfd_open(pid, PidfdFlags::empty()) else {
                    continue;
                };
                // The pidfd holds this very process: look again, then kill.
                if carries(pid, &needle) && pidfd_send_signal(&fd, Signal::KILL).is_ok() {
                    killed += 1;
                }
            }
        }
        killed
    }
}

/// Processes whose environment holds `needle` (`VAR=value`).
fn marked(needle: &[u8]) -> Vec<Pid> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(Pid::from_raw)
        .filter(|pid| carries(*pid, needle))
        .collect()
}

fn carries(pid: Pid, needle: &[u8]) -> bool {
    std::fs::read(format!("/proc/{}/environ", pid.as_raw_nonzero()))
        .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_differ_from_run_to_run() {
        assert_ne!(RunMarker::new().value(), RunMarker::new().value());
    }
}
