//! `type = "process_count"`: counts from /proc: all processes, threads,
//! zombies, processes matching a name or command line, or the process
//! total as a percentage of `kernel.pid_max`.

use regex::Regex;
use serde::Deserialize;

use super::{number, round2, Context, Finding};
use crate::expect::{parse_number, Expect};
use crate::host::Host;

/// What to count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Count {
    /// Every process.
    #[default]
    Total,
    /// Every thread of every process.
    Threads,
    /// Processes in state Z.
    Zombies,
    /// Processes whose name equals `name` or whose command line matches
    /// `pattern`.
    Matching,
    /// Processes in percent of `kernel.pid_max`.
    PidMaxPercent,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessCount {
    #[serde(default)]
    pub count: Count,
    /// Exact process name (`comm`, as `ps -o comm` shows it).
    pub name: Option<String>,
    /// Regular expression over the full command line.
    pub pattern: Option<String>,
}

/// One process as read from `/proc/PID/stat` (and `cmdline` when needed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub name: String,
    pub state: char,
    pub ppid: u32,
    pub threads: u64,
}

/// Parse `/proc/PID/stat`: `pid (comm) S ppid ...`; comm may hold spaces
/// and parentheses, so split at the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let state = rest.first()?.chars().next()?;
    let ppid = rest.get(1)?.parse().ok()?;
    // Field 20 (num_threads) is the 18th after the comm.
    let threads = rest.get(17)?.parse().ok()?;
    Some(ProcStat {
        name,
        state,
        ppid,
        threads,
    })
}

impl ProcessCount {
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        if let Some(p) = &self.pattern {
            Regex::new(p).map_err(|e| {
                (
                    "pattern".to_string(),
                    format!("bad regular expression: {e}"),
                )
            })?;
        }
        if self.count == Count::Matching && self.name.is_none() && self.pattern.is_none() {
            return Err((
                "count".into(),
                "count = \"matching\" needs `name` or `pattern`".into(),
            ));
        }
        if self.count != Count::Matching && (self.name.is_some() || self.pattern.is_some()) {
            return Err((
                "count".into(),
                "`name` and `pattern` need count = \"matching\"".into(),
            ));
        }
        Ok(())
    }

    pub(crate) async fn run(&self, cx: &Context<'_>, expect: &Expect) -> Finding {
        let me = self.clone();
        let counted = cx.blocking(move |h| me.observe(h)).await;
        match counted {
            Ok(Ok((n, note))) => {
                let mut f = Finding::judge(number(n), expect);
                if !note.is_empty() {
                    f.message = format!("{} ({note})", f.message);
                }
                f
            }
            Ok(Err(e)) | Err(e) => Finding::error(expect.describe(), e),
        }
    }

    fn observe(&self, h: &dyn Host) -> Result<(f64, String), String> {
        let pids: Vec<String> = h
            .list_dir("/proc")
            .map_err(|e| format!("cannot list /proc: {e}"))?
            .into_iter()
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .collect();
        let pattern = self
            .pattern
            .as_deref()
            .map(Regex::new)
            .transpose()
            .map_err(|e| e.to_string())?;
        let mut total = 0u64;
        let mut threads = 0u64;
        let mut zombies = 0u64;
        let mut matching = 0u64;
        for pid in &pids {
            // A process may exit between the listing and the read.
            let Ok(stat) = h.read_file(&format!("/proc/{pid}/stat"), 4096) else {
                continue;
            };
            let Some(st) = parse_stat(&stat) else {
                continue;
            };
            total += 1;
            threads += st.threads;
            // Our own children between exit and reaping are not the
            // node's problem (with many agents in one process, as in
            // `patrol demo`, they were counted as the node's zombies).
            if st.state == 'Z' && st.ppid != std::process::id() {
                zombies += 1;
            }
            if self.count == Count::Matching {
                let by_name = self.name.as_deref().is_some_and(|n| n == st.name);
                let by_cmd = pattern.as_ref().is_some_and(|re| {
                    h.read_file(&format!("/proc/{pid}/cmdline"), 64 * 1024)
                        .map(|c| re.is_match(&c.replace('\0', " ")))
                        .unwrap_or(false)
                });
                if by_name || by_cmd {
                    matching += 1;
                }
            }
        }
        Ok(match self.count {
            Count::Total => (total as f64, String::new()),
            Count::Threads => (threads as f64, format!("{total} processes")),
            Count::Zombies => (zombies as f64, format!("{total} processes")),
            Count::Matching => (matching as f64, String::new()),
            Count::PidMaxPercent => {
                let max = h
                    .read_file("/proc/sys/kernel/pid_max", 64)
                    .map_err(|e| format!("cannot read kernel.pid_max: {e}"))?;
                let max = parse_number(&max)
                    .filter(|m| *m > 0.0)
                    .ok_or_else(|| format!("kernel.pid_max is `{}`, not a number", max.trim()))?;
                (
                    round2(total as f64 * 100.0 / max),
                    format!("{total} processes of pid_max {}", max as u64),
                )
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_names() {
        let s = "1234 (my (odd) proc) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 7 0 123 456 78 18446744073709551615";
        let p = parse_stat(s).unwrap();
        assert_eq!(p.name, "my (odd) proc");
        assert_eq!(p.state, 'S');
        assert_eq!(p.threads, 7);
        assert!(parse_stat("garbage").is_none());
    }
}
