//! `type = "sysctl"`: a kernel parameter under /proc/sys, single value
//! (`vm.swappiness`) or several (`net.ipv4.ip_local_port_range`).
//!
//! `min_per_cpu` raises `expect.min` to that figure times the online CPUs
//! (conntrack tables are sized to cores).

use serde::Deserialize;

use super::{Context, Finding};
use crate::expect::{parse_number, Expect};
use crate::host::{online_cpus, sysctl_path};
use crate::Observed;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sysctl {
    /// Dotted key, e.g. `net.ipv4.ip_forward`.
    pub key: String,
    /// Expect at least this many per online CPU (combined with `expect.min`
    /// by taking the larger).
    pub min_per_cpu: Option<f64>,
}

/// A value as read from /proc/sys: one word -> number or text, several ->
/// a list.
pub fn observe_value(text: &str) -> Observed {
    let one = |w: &str| match parse_number(w) {
        Some(n) => Observed::Number(n),
        None => Observed::Text(w.to_string()),
    };
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.len() {
        0 => Observed::Text(String::new()),
        1 => one(words[0]),
        _ => Observed::List(words.into_iter().map(one).collect()),
    }
}

impl Sysctl {
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        let k = self.key.trim();
        if k.is_empty()
            || k.contains("..")
            || k.contains("//")
            || k.starts_with(['.', '/'])
            || k.ends_with(['.', '/'])
        {
            return Err((
                "key".into(),
                format!(
                    "`{}` is not a sysctl key (e.g. net.ipv4.ip_forward)",
                    self.key
                ),
            ));
        }
        Ok(())
    }

    pub(crate) async fn run(&self, cx: &Context<'_>, expect: &Expect) -> Finding {
        let key = self.key.clone();
        let per_cpu = self.min_per_cpu;
        let read = cx
            .blocking(move |h| {
                let value = h.read_file(&sysctl_path(&key), 64 * 1024);
                let cpus = per_cpu.map(|_| online_cpus(h));
                (value, cpus)
            })
            .await;
        let mut expect = expect.clone();
        let mut note = String::new();
        let (value, cpus) = match read {
            Ok(r) => r,
            Err(e) => return Finding::error(expect.describe(), e),
        };
        if let (Some(per), Some(cpus)) = (per_cpu, cpus) {
            match cpus {
                Ok(n) => {
                    let want = per * n as f64;
                    if expect.min.is_none_or(|m| m < want) {
                        expect.min = Some(want);
                        note = format!(" ({} per CPU x {n} CPUs)", Observed::Number(per));
                    }
                }
                Err(e) => {
                    return Finding::error(
                        expect.describe(),
                        format!("cannot count the online CPUs: {e}"),
                    )
                }
            }
        }
        match value {
            Ok(text) => {
                let mut f = Finding::judge(observe_value(&text), &expect);
                f.expected.push_str(&note);
                f
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Finding::error(
                expect.describe(),
                format!(
                    "sysctl {} does not exist ({} is missing: kernel module not loaded, or not in this kernel)",
                    self.key,
                    sysctl_path(&self.key)
                ),
            ),
            Err(e) => Finding::error(
                expect.describe(),
                format!("cannot read sysctl {}: {e}", self.key),
            ),
        }
    }
}
