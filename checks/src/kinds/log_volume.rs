//! `type = "log_volume"`: how much log a node keeps and how fast it grows.
//! `paths` are files, directories (summed recursively, symlinks not
//! followed) or globs (`/var/log/pods/*`); `measure = "size_mb"` (default)
//! or `"growth_mb_per_hour"`.
//!
//! Observed is one value per path, named by the path and judged one by
//! one (`expect = { max = 2048 }`). The growth rate compares with this
//! check's previous run in the same process (the agent keeps it between
//! sweeps): the first run after a start knows no rate yet and says so
//! (`pass`, nothing observed); a log that shrank (rotated) grows at 0.
//! A gauge: `observe = true` or an `expect` is required.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Deserialize;

use super::{round2, Context, Finding, Verdict};
use crate::expect::{show, Expect};
use crate::host::{expand_glob, FileKind, Host};
use crate::Observed;

/// Most directory entries visited per path (a runaway container log dir
/// must not hang the check).
pub const MAX_ENTRIES: usize = 200_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogVolume {
    pub paths: Vec<String>,
    #[serde(default)]
    pub measure: LogMeasure,
    /// Previous sizes (bytes) by path and when they were taken; shared by
    /// the clones the runner makes, kept for the agent's lifetime.
    #[serde(skip)]
    previous: Arc<Mutex<HashMap<String, (Instant, u64)>>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogMeasure {
    #[default]
    SizeMb,
    GrowthMbPerHour,
}

const MB: f64 = 1024.0 * 1024.0;

impl LogVolume {
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        if self.paths.is_empty() {
            return Err((
                "paths".into(),
                "list at least one path, e.g. [\"/var/log\"]".into(),
            ));
        }
        for p in &self.paths {
            if !p.starts_with('/') {
                return Err(("paths".into(), format!("`{p}` is not an absolute path")));
            }
            glob::Pattern::new(p)
                .map_err(|e| ("paths".to_string(), format!("bad glob `{p}`: {e}")))?;
        }
        Ok(())
    }

    pub(crate) async fn run(&self, cx: &Context<'_>, expect: &Expect) -> Finding {
        let paths = self.paths.clone();
        let sizes = match cx.blocking(move |h| sizes(h, &paths)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) | Err(e) => return Finding::error(expect.describe(), e),
        };
        let now = Instant::now();
        let values: Vec<(String, f64)> = match self.measure {
            LogMeasure::SizeMb => sizes
                .iter()
                .map(|(p, b)| (p.clone(), round2(*b as f64 / MB)))
                .collect(),
            LogMeasure::GrowthMbPerHour => {
                let mut prev = self.previous.lock().unwrap_or_else(|e| e.into_inner());
                let mut out = Vec::new();
                for (p, bytes) in &sizes {
                    if let Some((then, before)) = prev.get(p) {
                        let hours = now.duration_since(*then).as_secs_f64() / 3600.0;
                        if hours > 0.0 {
                            let grown = bytes.saturating_sub(*before) as f64 / MB;
                            out.push((p.clone(), round2(grown / hours)));
                        }
                    }
                    prev.insert(p.clone(), (now, *bytes));
                }
                if out.is_empty() {
                    let total: u64 = sizes.iter().map(|(_, b)| b).sum();
                    return Finding {
                        verdict: Verdict::Pass,
                        observed: Observed::None,
                        expected: expect.describe(),
                        message: format!(
                            "first measurement ({} MB); the growth rate is known from this agent's next run of the check",
                            round2(total as f64 / MB)
                        ),
                    };
                }
                out
            }
        };
        let observed = Observed::Named(
            values
                .iter()
                .map(|(p, v)| (p.clone(), Observed::Number(*v)))
                .collect(),
        );
        let misses: Vec<String> = values
            .iter()
            .filter_map(|(p, v)| {
                expect
                    .check(&Observed::Number(*v))
                    .err()
                    .map(|why| format!("{p}: {why}"))
            })
            .collect();
        let unit = match self.measure {
            LogMeasure::SizeMb => "MB",
            LogMeasure::GrowthMbPerHour => "MB/hour",
        };
        Finding {
            verdict: if misses.is_empty() {
                Verdict::Pass
            } else {
                Verdict::Miss
            },
            message: if misses.is_empty() {
                format!("{unit}: {}", show(&observed))
            } else {
                format!("{unit}: {}", misses.join("; "))
            },
            observed,
            expected: expect.describe(),
        }
    }
}

/// Bytes under each path (globs expanded; a path that does not exist is
/// an error naming it).
fn sizes(h: &dyn Host, paths: &[String]) -> Result<Vec<(String, u64)>, String> {
    let mut out = Vec::new();
    for pattern in paths {
        let matched = if pattern.contains(['*', '?', '[']) {
            expand_glob(h, pattern)?
        } else {
            vec![pattern.clone()]
        };
        if matched.is_empty() {
            return Err(format!("nothing matches {pattern}"));
        }
        for p in matched {
            let total = tree_size(h, &p)?;
            out.push((p, total));
        }
    }
    Ok(out)
}

fn tree_size(h: &dyn Host, root: &str) -> Result<u64, String> {
    let mut total = 0u64;
    let mut stack = vec![root.to_string()];
    let mut visited = 0usize;
    while let Some(path) = stack.pop() {
        visited += 1;
        if visited > MAX_ENTRIES {
            return Err(format!("{root} holds more than {MAX_ENTRIES} entries"));
        }
        let st = match h.stat(&path, false) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && path != root => continue,
            Err(e) => return Err(format!("cannot stat {path}: {e}")),
        };
        match st.kind {
            FileKind::File => total += st.size,
            FileKind::Dir => match h.list_dir(&path) {
                Ok(names) => stack.extend(names.into_iter().map(|n| format!("{path}/{n}"))),
                // A directory we may not read (another user's) is skipped,
                // not fatal: the rest of /var/log still counts.
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && path != root => {}
                Err(e) => return Err(format!("cannot list {path}: {e}")),
            },
            FileKind::Symlink | FileKind::Other => {}
        }
    }
    Ok(total)
}
