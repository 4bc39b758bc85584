//! `type = "systemd_unit"`: a unit's active state from `systemctl show`
//! (default expectation: `active`). A unit that is not installed is
//! observed as `not-found`; a machine without systemd is an error.

use serde::Deserialize;

use super::{Context, Finding};
use crate::expect::Expect;
use crate::host::CommandRequest;
use crate::Observed;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemdUnit {
    /// e.g. `kubelet.service`.
    pub unit: String,
}

impl SystemdUnit {
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        if self.unit.trim().is_empty() || self.unit.starts_with('-') {
            return Err(("unit".into(), format!("`{}` is not a unit name", self.unit)));
        }
        Ok(())
    }

    pub(crate) async fn run(&self, cx: &Context<'_>, expect: &Expect) -> Finding {
        let timeout = cx.timeout;
        let req = CommandRequest {
            program: "systemctl".into(),
            args: vec![
                "show".into(),
                "--property=LoadState,ActiveState".into(),
                "--".into(),
                self.unit.clone(),
            ],
            timeout,
            max_output: 16 * 1024,
            run_as: cx.run_as.cloned(),
        };
        let out = match cx.host.run_command(req).await {
            Ok(o) => o,
            Err(e) => return Finding::error(expect.describe(), format!("cannot ask systemd: {e}")),
        };
        let prop = |name: &str| {
            out.stdout
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix('=').map(str::to_string))
        };
        if out.exit_code != Some(0) {
            let why = out.stderr.lines().next().unwrap_or("").trim().to_string();
            return Finding::error(
                expect.describe(),
                format!("systemctl failed for {}: {why}", self.unit),
            );
        }
        let (Some(load), Some(active)) = (prop("LoadState"), prop("ActiveState")) else {
            return Finding::error(
                expect.describe(),
                "systemctl printed no LoadState/ActiveState",
            );
        };
        let observed = if load == "not-found" {
            Observed::Text("not-found".into())
        } else {
            Observed::Text(active)
        };
        let mut f = Finding::judge(observed, expect);
        f.message = format!("{}: {}", self.unit, f.message);
        if load == "not-found" {
            f.message.push_str(" (unit not installed)");
        }
        f
    }
}
