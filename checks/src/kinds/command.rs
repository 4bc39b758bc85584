//! `type = "command"`: run a program (no shell unless `shell = true`) and
//! read it the way Nagios does: exit 0/1/2/3 = pass/warn/fail/error, the
//! first output line is the message, perfdata become observed values.
//! Existing Nagios and Sensu plugins work unchanged. With `perf_label`,
//! `expect` judges that perfdata value; without, `expect` (if any) judges
//! the message text.

use serde::Deserialize;

use super::{perfdata, Context, Finding, Verdict};
use crate::expect::Expect;
use crate::host::CommandRequest;
use crate::Observed;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandCheck {
    /// Program path or name looked up in PATH; with `shell = true`, a
    /// shell script run by `/bin/sh -c`.
    pub program: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub shell: bool,
    /// Most bytes of stdout (and of stderr) accepted; more is an error.
    #[serde(default = "default_max_output")]
    pub max_output: usize,
    /// Perfdata label `expect` judges.
    pub perf_label: Option<String>,
    /// The user this program runs as, instead of `[checks] command_user`
    /// (a name or uid from `/etc/passwd`; resolved by the catalog when the
    /// config is loaded).
    pub user: Option<String>,
}

fn default_max_output() -> usize {
    64 * 1024
}

impl CommandCheck {
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        if self.program.trim().is_empty() {
            return Err(("program".into(), "must not be empty".into()));
        }
        if self.user.as_deref().is_some_and(|u| u.trim().is_empty()) {
            return Err(("user".into(), "must not be empty".into()));
        }
        if self.max_output == 0 || self.max_output > 16 << 20 {
            return Err((
                "max_output".into(),
                "must be between 1 and 16777216 bytes".into(),
            ));
        }
        Ok(())
    }

    fn request(&self, cx: &Context<'_>) -> CommandRequest {
        let (program, args) = if self.shell {
            let mut args = vec![
                "-c".to_string(),
                self.program.clone(),
                "patrol-check".into(),
            ];
            args.extend(self.args.iter().cloned());
            ("/bin/sh".to_string(), args)
        } else {
            (self.program.clone(), self.args.clone())
        };
        CommandRequest {
            program,
            args,
            timeout: cx.timeout,
            max_output: self.max_output,
            run_as: cx.run_as.cloned(),
        }
    }

    pub(crate) async fn run(&self, cx: &Context<'_>, expect: &Expect) -> Finding {
        let mut expected = "exit 0".to_string();
        if !expect.is_empty() {
            let on = self.perf_label.as_deref().unwrap_or("output");
            expected = format!("exit 0, {on} {}", expect.describe());
        }
        let out = match cx.host.run_command(self.request(cx)).await {
            Ok(o) => o,
            Err(e) => return Finding::error(expected, e.to_string()),
        };
        let (text, perf) = perfdata::split_output(&out.stdout);
        let items = perfdata::parse(&perf);
        let message = if text.is_empty() {
            out.stderr.lines().next().unwrap_or("").trim().to_string()
        } else {
            text.clone()
        };
        let observed = if items.is_empty() {
            Observed::Text(text.clone())
        } else {
            Observed::Named(
                items
                    .iter()
                    .map(|p| {
                        let v = p.value.map(Observed::Number).unwrap_or(Observed::None);
                        (p.label.clone(), v)
                    })
                    .collect(),
            )
        };
        let mut verdict = match out.exit_code {
            Some(0) => Verdict::Pass,
            Some(1) => Verdict::Warn,
            Some(2) => Verdict::Miss,
            Some(3) => Verdict::Error,
            Some(n) => {
                return Finding {
                    verdict: Verdict::Error,
                    observed,
                    expected,
                    message: format!("exit {n} is outside the plugin convention (0-3): {message}"),
                }
            }
            None => {
                return Finding {
                    verdict: Verdict::Error,
                    observed,
                    expected,
                    message: format!("`{}` was killed by a signal", self.program),
                }
            }
        };
        let mut message = if message.is_empty() {
            format!("exit {}", out.exit_code.unwrap_or(-1))
        } else {
            message
        };
        if !expect.is_empty() && verdict != Verdict::Error {
            let judged = match &self.perf_label {
                Some(label) => match items.iter().find(|p| &p.label == label) {
                    Some(p) => {
                        expect.check(&p.value.map(Observed::Number).unwrap_or(Observed::None))
                    }
                    None => {
                        return Finding {
                            verdict: Verdict::Error,
                            observed,
                            expected,
                            message: format!("no perfdata labelled `{label}` in the output"),
                        }
                    }
                },
                None => expect.check(&Observed::Text(text)),
            };
            if let Err(why) = judged {
                verdict = Verdict::Miss;
                message = format!("{message} ({why})");
            }
        }
        Finding {
            verdict,
            observed,
            expected,
            message,
        }
    }
}

/// A plugin's first line is a state (discrete); its perfdata are gauges.
pub(crate) fn value_nature(observed: &Observed) -> super::ValueNature {
    match observed {
        Observed::Text(_) | Observed::Version(_) | Observed::List(_) => {
            super::ValueNature::Discrete
        }
        _ => super::ValueNature::Gauge,
    }
}
