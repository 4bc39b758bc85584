//! `type = "memory"`: from /proc/meminfo, available memory in percent,
//! available MiB, swap used in percent or swap size in MiB (Kubernetes
//! nodes usually run without swap: `measure = "swap_total_mb"`,
//! `expect = 0`).

use serde::Deserialize;

use super::{round2, Context, Finding};
use crate::expect::Expect;
use crate::Observed;

/// What to measure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryMeasure {
    #[default]
    AvailablePercent,
    AvailableMb,
    SwapUsedPercent,
    SwapTotalMb,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Memory {
    #[serde(default)]
    pub measure: MemoryMeasure,
}

/// A field of /proc/meminfo in KiB.
pub fn meminfo_kib(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == field).then(|| v.split_whitespace().next()?.parse().ok())?
    })
}

impl Memory {
    pub(crate) async fn run(&self, cx: &Context<'_>, expect: &Expect) -> Finding {
        let text = match cx
            .blocking(|h| h.read_file("/proc/meminfo", 64 * 1024))
            .await
        {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                return Finding::error(expect.describe(), format!("cannot read /proc/meminfo: {e}"))
            }
            Err(e) => return Finding::error(expect.describe(), e),
        };
        let field =
            |f: &str| meminfo_kib(&text, f).ok_or_else(|| format!("/proc/meminfo has no {f}"));
        let value = (|| -> Result<f64, String> {
            Ok(match self.measure {
                MemoryMeasure::AvailablePercent => {
                    let total = field("MemTotal")?;
                    if total == 0 {
                        return Err("MemTotal is 0".into());
                    }
                    field("MemAvailable")? as f64 * 100.0 / total as f64
                }
                MemoryMeasure::AvailableMb => field("MemAvailable")? as f64 / 1024.0,
                MemoryMeasure::SwapUsedPercent => {
                    let total = field("SwapTotal")?;
                    if total == 0 {
                        0.0
                    } else {
                        (total.saturating_sub(field("SwapFree")?)) as f64 * 100.0 / total as f64
                    }
                }
                MemoryMeasure::SwapTotalMb => field("SwapTotal")? as f64 / 1024.0,
            })
        })();
        match value {
            Ok(v) => Finding::judge(Observed::Number(round2(v)), expect),
            Err(e) => Finding::error(expect.describe(), e),
        }
    }
}
