//! `type = "clock"`: the system clock's offset from chrony (`chronyc -c
//! tracking`), in milliseconds, absolute (default expectation: `max =
//! 100`). Without chrony, or when chrony is not synchronised, Patrol cannot
//! tell, and says so (`error`).

use serde::Deserialize;

use super::{round2, Context, Finding};
use crate::expect::{parse_number, Expect};
use crate::host::{CommandError, CommandRequest};
use crate::Observed;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clock {
    /// The chronyc program (default `chronyc`).
    #[serde(default = "default_chronyc")]
    pub chronyc: String,
}

fn default_chronyc() -> String {
    "chronyc".into()
}

/// (offset in ms, leap status) from `chronyc -c tracking` CSV.
pub fn parse_tracking(csv: &str) -> Option<(f64, String)> {
    let line = csv.lines().next()?;
    let f: Vec<&str> = line.split(',').collect();
    if f.len() < 14 {
        return None;
    }
    let offset = parse_number(f[4])?;
    Some((offset.abs() * 1000.0, f[f.len() - 1].trim().to_string()))
}

impl Clock {
    pub(crate) async fn run(&self, cx: &Context<'_>, expect: &Expect) -> Finding {
        let timeout = cx.timeout;
        let req = CommandRequest {
            program: self.chronyc.clone(),
            args: vec!["-c".into(), "tracking".into()],
            timeout,
            max_output: 16 * 1024,
            run_as: cx.run_as.cloned(),
        };
        let out = match cx.host.run_command(req).await {
            Ok(o) => o,
            Err(CommandError::NotFound(_)) => {
                return Finding::error(
                    expect.describe(),
                    format!(
                        "cannot tell the clock offset: `{}` not found (chrony is not installed)",
                        self.chronyc
                    ),
                )
            }
            Err(e) => {
                return Finding::error(
                    expect.describe(),
                    format!("cannot tell the clock offset: {e}"),
                )
            }
        };
        if out.exit_code != Some(0) {
            let why = format!("{}{}", out.stdout.trim(), out.stderr.trim());
            return Finding::error(
                expect.describe(),
                format!("cannot tell the clock offset: chronyc says: {why}"),
            );
        }
        match parse_tracking(&out.stdout) {
            Some((_, leap)) if leap != "Normal" => Finding::error(
                expect.describe(),
                format!("cannot tell the clock offset: chrony leap status is `{leap}` (not synchronised)"),
            ),
            Some((ms, _)) => {
                let mut f = Finding::judge(Observed::Number(round2(ms)), expect);
                f.message = format!("{} ms offset from chrony's reference", Observed::Number(round2(ms)));
                if f.verdict != super::Verdict::Pass {
                    f.message = format!("{} ({})", f.message, expect.check(&f.observed).err().unwrap_or_default());
                }
                f
            }
            None => Finding::error(expect.describe(), "chronyc -c tracking printed nothing readable"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_csv() {
        let csv = "A9FEA97B,169.254.169.123,4,1700000000.123456789,-0.000012345,0.000001,0.000003,-11.5,0.001,0.05,0.0003,0.01,64.2,Normal\n";
        let (ms, leap) = parse_tracking(csv).unwrap();
        assert!((ms - 0.012345).abs() < 1e-9);
        assert_eq!(leap, "Normal");
        assert!(parse_tracking("506 Cannot talk to daemon").is_none());
    }
}
