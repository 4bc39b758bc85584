//! `type = "etcd_health"`: GET `/health` (verdict `{"health":"true"}`) and
//! `/version` on an etcd client endpoint, over HTTP or HTTPS with optional
//! CA and client certificate; `expect.version` judges the server version
//! and `max_latency` the `/health` round trip.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{round2, Context, Finding, TlsFiles, Verdict};
use crate::expect::Expect;
use crate::host::HttpError;
use crate::version::Version;
use crate::Observed;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdHealth {
    /// Client URL, e.g. `https://127.0.0.1:2379`.
    pub endpoint: String,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Slowest acceptable `/health` answer, e.g. `"200ms"` (a slower one
    /// is a miss).
    pub max_latency: Option<String>,
}

#[derive(Deserialize)]
struct HealthBody {
    health: String,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
struct VersionBody {
    etcdserver: String,
}

impl EtcdHealth {
    fn tls(&self) -> TlsFiles {
        TlsFiles {
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
        }
    }

    fn latency(&self) -> Option<Duration> {
        self.max_latency
            .as_deref()
            .and_then(|s| patrol_config::parse_duration(s).ok())
    }

    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return Err((
                "endpoint".into(),
                format!("`{}` is not an http:// or https:// URL", self.endpoint),
            ));
        }
        if let Some(l) = &self.max_latency {
            patrol_config::parse_duration(l).map_err(|e| ("max_latency".to_string(), e))?;
        }
        self.tls().validate()
    }

    fn expected(&self, expect: &Expect) -> String {
        let mut parts = vec!["health true".to_string()];
        let e = expect.describe();
        if !e.is_empty() {
            parts.push(e);
        }
        if let Some(l) = self.latency() {
            parts.push(format!("latency <= {}", patrol_config::format_duration(l)));
        }
        parts.join(", ")
    }

    pub(crate) async fn run(&self, cx: &Context<'_>, expect: &Expect) -> Finding {
        let timeout = cx.timeout;
        let expected = self.expected(expect);
        let base = self.endpoint.trim_end_matches('/').to_string();
        // Both requests finish within 90% of the check's timeout, so that a
        // hung etcd is reported by this check ("unreachable: timed out")
        // rather than cut off by the runner.
        let budget = timeout.mul_f64(0.9);
        let health_req =
            self.tls()
                .request(format!("{base}/health"), timeout.mul_f64(0.7), 64 * 1024);
        let mut version_req = self
            .tls()
            .request(format!("{base}/version"), budget, 64 * 1024);
        let answers = cx
            .blocking(move |h| {
                let started = Instant::now();
                let health = h.http_get(&health_req);
                let left = budget.saturating_sub(started.elapsed());
                let version = match &health {
                    Ok(_) if !left.is_zero() => {
                        version_req.timeout = left;
                        Some(h.http_get(&version_req))
                    }
                    _ => None,
                };
                (health, version)
            })
            .await;
        let (health, version) = match answers {
            Ok(a) => a,
            Err(e) => return Finding::error(expected, e),
        };
        let health = match health {
            Ok(r) => r,
            // Nothing was asked of etcd (e.g. the CA file is unreadable):
            // Patrol could not observe.
            Err(HttpError::Setup(e)) => {
                return Finding::error(expected, format!("cannot ask etcd at {base}: {e}"))
            }
            Err(HttpError::Transport(e)) => {
                // Unreachable etcd is a failed check, not a blind spot.
                return Finding {
                    verdict: Verdict::Miss,
                    observed: Observed::Named(vec![(
                        "health".into(),
                        Observed::Text("unreachable".into()),
                    )]),
                    expected,
                    message: format!("etcd at {base} is unreachable: {e}"),
                };
            }
        };
        let latency_ms = round2(health.elapsed.as_secs_f64() * 1000.0);
        let verdict_text = match serde_json::from_str::<HealthBody>(&health.body) {
            Ok(b) => (b.health, b.reason),
            Err(_) => {
                return Finding::error(
                    expected,
                    format!(
                    "{base}/health answered HTTP {} with a body that is not etcd's health JSON: {}",
                    health.status,
                    health.body.chars().take(120).collect::<String>()
                ),
                )
            }
        };
        let server_version = match version {
            Some(Ok(r)) if r.status == 200 => serde_json::from_str::<VersionBody>(&r.body)
                .ok()
                .and_then(|v| Version::parse(&v.etcdserver).ok()),
            _ => None,
        };
        let mut observed = vec![
            ("health".to_string(), Observed::Text(verdict_text.0.clone())),
            ("latency_ms".to_string(), Observed::Number(latency_ms)),
        ];
        if let Some(v) = &server_version {
            observed.push(("version".to_string(), Observed::Version(v.to_string())));
        }
        let mut misses = Vec::new();
        if verdict_text.0 != "true" {
            let reason = if verdict_text.1.is_empty() {
                String::new()
            } else {
                format!(" ({})", verdict_text.1)
            };
            misses.push(format!("etcd reports health {}{reason}", verdict_text.0));
        }
        if expect.version.is_some() || !expect.is_empty() {
            match &server_version {
                Some(v) => {
                    if let Err(why) = expect.check(&Observed::Version(v.to_string())) {
                        misses.push(why);
                    }
                }
                None => misses.push(format!("{base}/version gave no etcdserver version")),
            }
        }
        if let Some(max) = self.latency() {
            if health.elapsed > max {
                misses.push(format!(
                    "/health took {latency_ms} ms, expected <= {}",
                    patrol_config::format_duration(max)
                ));
            }
        }
        Finding {
            verdict: if misses.is_empty() {
                Verdict::Pass
            } else {
                Verdict::Miss
            },
            message: if misses.is_empty() {
                format!(
                    "healthy{}, {latency_ms} ms",
                    server_version
                        .map(|v| format!(", version {v}"))
                        .unwrap_or_default()
                )
            } else {
                misses.join("; ")
            },
            observed: Observed::Named(observed),
            expected,
        }
    }
}
