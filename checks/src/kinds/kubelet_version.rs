//! `type = "kubelet_version"`: the kubelet's version from `kubelet
//! --version` (`Kubernetes v1.31.2`) and/or its metrics endpoint
//! (`kubernetes_build_info{git_version="v1.31.2",...} 1`), judged by
//! `expect.version` and by the Kubernetes version-skew rule against
//! `apiserver_version`: the kubelet may not be newer than the apiserver
//! and at most three minor versions older.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{Context, Finding, TlsFiles, Verdict};
use crate::expect::Expect;
use crate::host::CommandRequest;
use crate::version::Version;
use crate::Observed;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeletVersion {
    /// The kubelet binary (default `kubelet`, looked up in PATH). Set
    /// `binary = ""` to use only the metrics endpoint.
    #[serde(default = "default_binary")]
    pub binary: String,
    /// e.g. `https://127.0.0.1:10250/metrics`.
    pub metrics_url: Option<String>,
    /// The apiserver version the skew rule compares against.
    pub apiserver_version: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

fn default_binary() -> String {
    "kubelet".into()
}

/// The version in `kubelet --version` output.
pub fn parse_version_output(text: &str) -> Option<Version> {
    let line = text.lines().find(|l| l.contains("Kubernetes"))?;
    Version::find_in(line)
}

/// The `git_version` label of `kubernetes_build_info` in Prometheus text.
pub fn parse_build_info(text: &str) -> Option<Version> {
    let line = text
        .lines()
        .find(|l| l.starts_with("kubernetes_build_info{"))?;
    let at = line.find("git_version=\"")? + "git_version=\"".len();
    let rest = line.get(at..)?;
    let end = rest.find('"')?;
    Version::parse(&rest[..end]).ok()
}

/// The skew rule: Err says why it is broken.
pub fn skew(kubelet: &Version, apiserver: &Version) -> Result<(), String> {
    if kubelet.major != apiserver.major {
        return Err(format!(
            "kubelet {kubelet} and apiserver {apiserver} differ in major version"
        ));
    }
    if kubelet.minor > apiserver.minor {
        return Err(format!(
            "kubelet {kubelet} is newer than the apiserver {apiserver}"
        ));
    }
    if apiserver.minor - kubelet.minor > 3 {
        return Err(format!(
            "kubelet {kubelet} is more than three minor versions older than the apiserver {apiserver}"
        ));
    }
    Ok(())
}

impl KubeletVersion {
    fn tls(&self) -> TlsFiles {
        TlsFiles {
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        if self.binary.is_empty() && self.metrics_url.is_none() {
            return Err((
                "binary".into(),
                "give a binary, a metrics_url, or both".into(),
            ));
        }
        if let Some(v) = &self.apiserver_version {
            Version::parse(v).map_err(|e| ("apiserver_version".to_string(), e))?;
        }
        self.tls().validate()
    }

    fn expected(&self, expect: &Expect) -> String {
        let mut parts = Vec::new();
        let e = expect.describe();
        if !e.is_empty() {
            parts.push(e);
        }
        if let Some(a) = &self.apiserver_version {
            parts.push(format!("within skew of apiserver {a}"));
        }
        if parts.is_empty() {
            "a kubelet version".into()
        } else {
            parts.join(", ")
        }
    }

    pub(crate) async fn run(&self, cx: &Context<'_>, expect: &Expect) -> Finding {
        let timeout = cx.timeout;
        let expected = self.expected(expect);
        // Both sources answer within 90% of the check's timeout, so a hung
        // kubelet is reported by this check, not cut off by the runner.
        let started = std::time::Instant::now();
        let budget = timeout.mul_f64(0.9);
        let command_timeout = if self.metrics_url.is_some() {
            budget / 2
        } else {
            budget
        };
        let mut found: Vec<(&str, Version)> = Vec::new();
        if !self.binary.is_empty() {
            let req = CommandRequest {
                program: self.binary.clone(),
                args: vec!["--version".into()],
                timeout: command_timeout,
                max_output: 64 * 1024,
                run_as: cx.run_as.cloned(),
            };
            match cx.host.run_command(req).await {
                Ok(out) => match parse_version_output(&out.stdout)
                    .or_else(|| parse_version_output(&out.stderr))
                {
                    Some(v) => found.push(("binary", v)),
                    None => {
                        return Finding::error(
                            expected,
                            format!(
                                "`{} --version` printed no `Kubernetes vX.Y.Z` line",
                                self.binary
                            ),
                        )
                    }
                },
                Err(e) => {
                    return Finding::error(
                        expected,
                        format!("cannot ask the kubelet its version: {e}"),
                    )
                }
            }
        }
        if let Some(url) = &self.metrics_url {
            let left = budget
                .saturating_sub(started.elapsed())
                .max(Duration::from_millis(1));
            let req = self.tls().request(url.clone(), left, 8 << 20);
            let resp = cx.blocking(move |h| h.http_get(&req)).await;
            match resp {
                Ok(Ok(r)) if r.status == 200 => match parse_build_info(&r.body) {
                    Some(v) => found.push(("metrics", v)),
                    None => {
                        return Finding::error(
                            expected,
                            format!("{url} has no kubernetes_build_info{{git_version=...}} line"),
                        )
                    }
                },
                Ok(Ok(r)) => {
                    return Finding::error(expected, format!("{url} answered HTTP {}", r.status))
                }
                Ok(Err(e)) => return Finding::error(expected, format!("cannot read {url}: {e}")),
                Err(e) => return Finding::error(expected, e),
            }
        }
        let Some((_, version)) = found.first().cloned() else {
            return Finding::error(expected, "no version source configured");
        };
        let observed = Observed::Version(version.to_string());
        if let [(_, a), (_, b)] = found.as_slice() {
            if a != b {
                return Finding {
                    verdict: Verdict::Miss,
                    observed: Observed::List(vec![
                        Observed::Version(a.to_string()),
                        Observed::Version(b.to_string()),
                    ]),
                    expected,
                    message: format!(
                        "the binary says {a} but the running kubelet reports {b}: restart the kubelet"
                    ),
                };
            }
        }
        let mut misses = Vec::new();
        if let Err(why) = expect.check(&observed) {
            misses.push(why);
        }
        if let Some(api) = self
            .apiserver_version
            .as_deref()
            .and_then(|a| Version::parse(a).ok())
        {
            if let Err(why) = skew(&version, &api) {
                misses.push(why);
            }
        }
        Finding {
            verdict: if misses.is_empty() {
                Verdict::Pass
            } else {
                Verdict::Miss
            },
            message: if misses.is_empty() {
                format!("kubelet {version}")
            } else {
                misses.join("; ")
            },
            observed,
            expected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_sources() {
        assert_eq!(
            parse_version_output("Kubernetes v1.31.2\n")
                .unwrap()
                .to_string(),
            "1.31.2"
        );
        let metrics = "# HELP kubernetes_build_info A metric\n# TYPE kubernetes_build_info gauge\nkubernetes_build_info{build_date=\"2024-10-22T20:28:14Z\",compiler=\"gc\",git_commit=\"5864a4677267e6adeae276ad85882a8714d69d9d\",git_tree_state=\"clean\",git_version=\"v1.31.2\",go_version=\"go1.22.8\",major=\"1\",minor=\"31\",platform=\"linux/amd64\"} 1\n";
        assert_eq!(parse_build_info(metrics).unwrap().to_string(), "1.31.2");
        assert!(parse_build_info("up 1\n").is_none());
    }

    #[test]
    fn skew_rule() {
        let v = |s: &str| Version::parse(s).unwrap();
        assert!(skew(&v("1.31.2"), &v("1.31.0")).is_ok());
        assert!(skew(&v("1.28.9"), &v("1.31.0")).is_ok());
        assert!(skew(&v("1.27.9"), &v("1.31.0"))
            .unwrap_err()
            .contains("three minor"));
        assert!(skew(&v("1.32.0"), &v("1.31.0"))
            .unwrap_err()
            .contains("newer"));
    }
}
