//! `type = "network"`: one of three observations, chosen by which key is
//! set (exactly one):
//!
//! - `interface = "eth0"` with `measure = "state" | "mtu" | "errors" |
//!   "drops"` (default `state`), from `/sys/class/net/IFACE/`: `state` is
//!   `operstate` (`up`, `down`, ...; a loopback or virtual interface whose
//!   operstate is `unknown` is `up` when its `flags` have IFF_UP), `mtu` a
//!   number, `errors` and `drops` the receive and transmit counters since
//!   boot, named `rx` and `tx` and judged one by one;
//! - `resolve = "name"`: the sorted addresses the name resolves to (the
//!   machine's resolver: /etc/hosts, DNS); a name that does not resolve is
//!   a miss;
//! - `connect = "host:port"`: a TCP connect, observed as `latency_ms`
//!   (`expect = { max = 50 }` judges it); refused or timed out is a miss.
//!
//! For drift: state, MTU and addresses are settings; counters are gauges;
//! latencies are left out ([`value_nature`]).

use serde::Deserialize;

use super::{round2, Context, Finding, ValueNature, Verdict};
use crate::expect::Expect;
use crate::host::Host;
use crate::Observed;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub interface: Option<String>,
    pub measure: Option<LinkMeasure>,
    pub resolve: Option<String>,
    pub connect: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkMeasure {
    #[default]
    State,
    Mtu,
    Errors,
    Drops,
}

/// How drift compares a network observation: counters (named `rx`/`tx`)
/// are gauges, a latency is left out, the rest are settings.
pub(crate) fn value_nature(observed: &Observed) -> ValueNature {
    match observed {
        Observed::Named(items) if items.iter().any(|(k, _)| k == "latency_ms") => {
            ValueNature::Ignored
        }
        Observed::Named(_) => ValueNature::Gauge,
        _ => ValueNature::Discrete,
    }
}

impl Network {
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        let set = [
            self.interface.is_some(),
            self.resolve.is_some(),
            self.connect.is_some(),
        ];
        if set.iter().filter(|s| **s).count() != 1 {
            return Err((
                String::new(),
                "set exactly one of `interface`, `resolve`, `connect`".into(),
            ));
        }
        if self.measure.is_some() && self.interface.is_none() {
            return Err(("measure".into(), "`measure` goes with `interface`".into()));
        }
        if let Some(i) = &self.interface {
            if i.is_empty() || i.contains('/') || i.starts_with('.') {
                return Err((
                    "interface".into(),
                    format!("`{i}` is not an interface name"),
                ));
            }
        }
        if let Some(c) = &self.connect {
            match c.rsplit_once(':') {
                Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0) => {}
                _ => return Err(("connect".into(), format!("`{c}` is not HOST:PORT"))),
            }
        }
        if self.resolve.as_ref().is_some_and(|r| r.trim().is_empty()) {
            return Err(("resolve".into(), "a name to resolve".into()));
        }
        Ok(())
    }

    pub(crate) async fn run(&self, cx: &Context<'_>, expect: &Expect) -> Finding {
        let timeout = cx.timeout;
        if let Some(iface) = &self.interface {
            let iface = iface.clone();
            let measure = self.measure.unwrap_or_default();
            return match cx.blocking(move |h| link(h, &iface, measure)).await {
                Ok(Ok(observed)) => Finding::judge_each(observed, expect),
                Ok(Err(e)) | Err(e) => Finding::error(expect.describe(), e),
            };
        }
        if let Some(name) = &self.resolve {
            let n = name.clone();
            return match cx.blocking(move |h| h.resolve(&n)).await {
                Ok(Ok(addrs)) if !addrs.is_empty() => Finding::judge(
                    Observed::List(
                        addrs
                            .iter()
                            .map(|a| Observed::Text(a.to_string()))
                            .collect(),
                    ),
                    expect,
                ),
                Ok(Ok(_)) => miss(expect, format!("{name} resolves to no address")),
                Ok(Err(e)) => miss(expect, format!("{name} does not resolve: {e}")),
                Err(e) => Finding::error(expect.describe(), e),
            };
        }
        let Some(addr) = &self.connect else {
            return Finding::error(expect.describe(), "no interface, resolve or connect set");
        };
        let a = addr.clone();
        // Leave the runner's timeout room to report the refusal itself.
        let budget = timeout.mul_f64(0.9);
        match cx.blocking(move |h| h.tcp_connect(&a, budget)).await {
            Ok(Ok(took)) => Finding::judge_each(
                Observed::Named(vec![(
                    "latency_ms".into(),
                    Observed::Number(round2(took.as_secs_f64() * 1000.0)),
                )]),
                expect,
            ),
            Ok(Err(e)) => miss(expect, format!("cannot connect to {addr}: {e}")),
            Err(e) => Finding::error(expect.describe(), e),
        }
    }
}

/// The observed problem is that nothing could be reached: a miss, with
/// nothing observed.
fn miss(expect: &Expect, message: String) -> Finding {
    Finding {
        verdict: Verdict::Miss,
        observed: Observed::Text("unreachable".into()),
        expected: expect.describe(),
        message,
    }
}

fn link(h: &dyn Host, iface: &str, measure: LinkMeasure) -> Result<Observed, String> {
    let dir = format!("/sys/class/net/{iface}");
    let read = |name: &str| -> Result<String, String> {
        h.read_file(&format!("{dir}/{name}"), 4096)
            .map(|s| s.trim().to_string())
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    let mut known = h.list_dir("/sys/class/net").unwrap_or_default();
                    known.sort();
                    format!("no interface {iface} (this node has: {})", known.join(", "))
                } else {
                    format!("cannot read {dir}/{name}: {e}")
                }
            })
    };
    let number = |name: &str| -> Result<f64, String> {
        let text = read(name)?;
        text.parse::<f64>()
            .map_err(|_| format!("{dir}/{name}: `{text}` is not a number"))
    };
    match measure {
        LinkMeasure::State => {
            let state = read("operstate")?;
            if state == "unknown" {
                let flags = read("flags")?;
                let up = u32::from_str_radix(flags.trim_start_matches("0x"), 16)
                    .is_ok_and(|f| f & 1 == 1);
                return Ok(Observed::Text(if up { "up" } else { "down" }.into()));
            }
            Ok(Observed::Text(state))
        }
        LinkMeasure::Mtu => Ok(Observed::Number(number("mtu")?)),
        LinkMeasure::Errors | LinkMeasure::Drops => {
            let what = if measure == LinkMeasure::Errors {
                "errors"
            } else {
                "dropped"
            };
            Ok(Observed::Named(vec![
                (
                    "rx".into(),
                    Observed::Number(number(&format!("statistics/rx_{what}"))?),
                ),
                (
                    "tx".into(),
                    Observed::Number(number(&format!("statistics/tx_{what}"))?),
                ),
            ]))
        }
    }
}
