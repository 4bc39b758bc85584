//! `type = "kubelet"` and `type = "kube_proxy"`: one setting of the
//! running daemon as it really runs: its configuration file, drop-ins and
//! command-line flags merged the way the daemon merges them
//! ([`settings`]), read by key path (`authentication.anonymous.enabled`,
//! `featureGates.RotateKubeletServerCertificate`, `tlsCipherSuites`) or as
//! a raw flag (`--hostname-override`).
//!
//! Observed values are typed: numbers as numbers, booleans as `true` /
//! `false`, lists as lists (judged element by element with `all_in`), maps
//! as named values. A key that is missing, null or empty text is observed
//! as the text `unset`, which an expectation can name (`expect = "unset"`)
//! or accept besides its other conditions (`or_unset = true`). No process,
//! an unreadable or a malformed file is an `error` outcome.

use serde::Deserialize;
use serde_json::Value;

use super::{number, Context, Finding};
use crate::expect::{Expect, UNSET};
use crate::Observed;

pub mod flags;
pub mod settings;

pub use settings::{Component, Effective, KUBELET, KUBE_PROXY};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeSetting {
    /// One key path, or a raw flag (`--hostname-override`).
    pub key: Option<String>,
    /// Several keys, observed as named values and judged one by one.
    #[serde(default)]
    pub keys: Vec<String>,
}

impl KubeSetting {
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        if self.key.is_some() != self.keys.is_empty() {
            return Err(("key".into(), "give exactly one of `key` and `keys`".into()));
        }
        for k in self.key.iter().chain(&self.keys) {
            let bad = k.is_empty()
                || k.starts_with('.')
                || k.ends_with('.')
                || k.contains("..")
                || k.contains(char::is_whitespace);
            if bad {
                return Err(("key".into(), format!("`{k}` is not a key path such as `authentication.anonymous.enabled` or a flag such as `--hostname-override`")));
            }
        }
        Ok(())
    }

    pub(crate) async fn run(
        &self,
        cx: &Context<'_>,
        expect: &Expect,
        component: &'static Component,
    ) -> Finding {
        let me = self.clone();
        match cx
            .blocking(move |h| settings::read(h, component).map(|e| me.observe(&e)))
            .await
        {
            Ok(Ok((observed, from))) => {
                let mut f = Finding::judge_each(observed, expect);
                f.message = format!("{} ({} {from})", f.message, component.process);
                f
            }
            Ok(Err(e)) | Err(e) => Finding::error(expect.describe(), e),
        }
    }

    /// The value(s) and where they came from, in words.
    fn observe(&self, e: &Effective) -> (Observed, String) {
        let n = e.drop_ins.len();
        let from = match &e.config_file {
            Some(f) if n == 0 => format!("pid {}, {f}", e.pid),
            Some(f) => format!("pid {}, {f} + {n} drop-ins", e.pid),
            None if n > 0 => format!("pid {}, {n} drop-ins", e.pid),
            None => format!("pid {}, flags only", e.pid),
        };
        let observed = match &self.key {
            Some(k) => observed(e.get(k)),
            None => Observed::Named(
                self.keys
                    .iter()
                    .map(|k| (k.clone(), observed(e.get(k))))
                    .collect(),
            ),
        };
        (observed, from)
    }
}

/// A setting's value as an observation (`unset` for None).
pub fn observed(value: Option<Value>) -> Observed {
    match value {
        None | Some(Value::Null) => Observed::Text(UNSET.into()),
        Some(Value::Bool(b)) => Observed::Text(b.to_string()),
        Some(Value::Number(n)) => n
            .as_f64()
            .map_or_else(|| Observed::Text(n.to_string()), number),
        Some(Value::String(s)) => Observed::Text(s),
        Some(Value::Array(items)) => {
            Observed::List(items.into_iter().map(|v| observed(Some(v))).collect())
        }
        Some(Value::Object(map)) => Observed::Named(
            map.into_iter()
                .map(|(k, v)| (k, observed(Some(v))))
                .collect(),
        ),
    }
}
