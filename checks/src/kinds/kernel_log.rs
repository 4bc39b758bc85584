//! `type = "kernel_log"`: counts kernel ring buffer records (from
//! `/dev/kmsg`) matching error patterns since a point in time. Default
//! patterns: OOM kills, hung tasks, I/O errors, filesystem errors, soft
//! lockups; default expectation: no match (`max = 0`).

use regex::RegexSet;
use serde::Deserialize;

use super::{Context, Finding};
use crate::expect::Expect;
use crate::Observed;

/// The patterns used when a check lists none.
pub const DEFAULT_PATTERNS: &[&str] = &[
    r"Out of memory: Kill|oom-kill:|invoked oom-killer|Memory cgroup out of memory",
    r"blocked for more than \d+ seconds",
    r"I/O error|blk_update_request: .*error|critical medium error",
    r"EXT4-fs error|EXT4-fs \(.*\): error|XFS \(.*\): .*(error|[Cc]orrupt)|BTRFS error|Remounting filesystem read-only",
    r"soft lockup|hard LOCKUP|Kernel panic|general protection fault",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelLog {
    /// Regular expressions; any match counts (default: [`DEFAULT_PATTERNS`]).
    #[serde(default)]
    pub patterns: Vec<String>,
    /// Only records younger than this (e.g. `"24h"`); default: since boot.
    pub since: Option<String>,
}

/// One `/dev/kmsg` record: microseconds since boot and the text.
pub fn parse_records(text: &str) -> Vec<(u64, &str)> {
    text.lines()
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| {
            let (head, msg) = l.split_once(';')?;
            let usec = head.split(',').nth(2)?.parse().ok()?;
            Some((usec, msg))
        })
        .collect()
}

impl KernelLog {
    fn patterns(&self) -> Vec<String> {
        if self.patterns.is_empty() {
            DEFAULT_PATTERNS.iter().map(|s| s.to_string()).collect()
        } else {
            self.patterns.clone()
        }
    }

    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        RegexSet::new(self.patterns()).map_err(|e| {
            (
                "patterns".to_string(),
                format!("bad regular expression: {e}"),
            )
        })?;
        if let Some(s) = &self.since {
            patrol_config::parse_duration(s).map_err(|e| ("since".to_string(), e))?;
        }
        Ok(())
    }

    pub(crate) async fn run(&self, cx: &Context<'_>, expect: &Expect) -> Finding {
        let set = match RegexSet::new(self.patterns()) {
            Ok(s) => s,
            Err(e) => return Finding::error(expect.describe(), e.to_string()),
        };
        let since = self
            .since
            .as_deref()
            .and_then(|s| patrol_config::parse_duration(s).ok());
        let read = cx
            .blocking(|h| (h.kernel_log(), h.read_file("/proc/uptime", 256)))
            .await;
        let (log, uptime) = match read {
            Ok((Ok(log), up)) => (log, up),
            Ok((Err(e), _)) => {
                return Finding::error(
                    expect.describe(),
                    format!("cannot read the kernel log (/dev/kmsg): {e}"),
                )
            }
            Err(e) => return Finding::error(expect.describe(), e),
        };
        let cutoff_us = match since {
            None => 0,
            Some(d) => {
                let up = uptime
                    .ok()
                    .and_then(|u| u.split_whitespace().next()?.parse::<f64>().ok());
                match up {
                    Some(up) => ((up - d.as_secs_f64()).max(0.0) * 1e6) as u64,
                    None => return Finding::error(expect.describe(), "cannot read /proc/uptime"),
                }
            }
        };
        let hits: Vec<&str> = parse_records(&log)
            .into_iter()
            .filter(|(us, msg)| *us >= cutoff_us && set.is_match(msg))
            .map(|(_, m)| m)
            .collect();
        let mut f = Finding::judge(Observed::Number(hits.len() as f64), expect);
        let window = self
            .since
            .as_deref()
            .map(|s| format!("in the last {s}"))
            .unwrap_or_else(|| "since boot".into());
        f.message = match hits.last() {
            None => format!("no matching kernel messages {window}"),
            Some(last) => format!(
                "{} matching kernel message(s) {window}, latest: {}",
                hits.len(),
                last.chars().take(160).collect::<String>()
            ),
        };
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_default_patterns() {
        let log = "6,1,100,-;Linux version 6.1\n SUBSYSTEM=x\n3,2,5000000,-;Out of memory: Killed process 42 (java)\n3,3,9000000,-;INFO: task kworker:1 blocked for more than 120 seconds.\n";
        let recs = parse_records(log);
        assert_eq!(recs.len(), 3);
        let set = RegexSet::new(DEFAULT_PATTERNS).unwrap();
        assert_eq!(recs.iter().filter(|(_, m)| set.is_match(m)).count(), 2);
    }
}
