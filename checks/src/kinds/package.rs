//! `type = "package"`: the installed version of a Debian or RPM package
//! (`name = "kubelet"`, `"libc6:amd64"` for one architecture).
//!
//! Debian: the dpkg status database, `/var/lib/dpkg/status` (read as a
//! file, no dpkg process); a stanza counts when its `Status` ends in
//! `installed`. Where there is no dpkg database, RPM through
//! `rpm -q --queryformat '%{VERSION}-%{RELEASE}' NAME`. A package that is
//! not installed is observed as `not-installed` (data: it misses
//! `expect = { version = ">= 1.30" }`); a machine with neither database is
//! an error. Without `expect` the check is observe-only, which is how a
//! rollout is tracked across the fleet.

use serde::Deserialize;

use super::{Context, Finding};
use crate::expect::Expect;
use crate::host::CommandRequest;
use crate::Observed;

/// The dpkg status database.
pub const DPKG_STATUS: &str = "/var/lib/dpkg/status";
/// Most bytes of it read (a desktop with 5,000 packages has ~8 MB).
const DPKG_STATUS_LIMIT: usize = 64 << 20;
/// What a package that is not installed is observed as.
pub const NOT_INSTALLED: &str = "not-installed";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    /// Package name, optionally `:arch` (Debian multiarch).
    pub name: String,
}

impl Package {
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        let (name, arch) = self.split();
        let ok = |s: &str| {
            !s.is_empty()
                && !s.starts_with('-')
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '_'))
        };
        if !ok(name) || arch.is_some_and(|a| !ok(a)) {
            return Err((
                "name".into(),
                format!("`{}` is not a package name", self.name),
            ));
        }
        Ok(())
    }

    fn split(&self) -> (&str, Option<&str>) {
        match self.name.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (self.name.as_str(), None),
        }
    }

    pub(crate) async fn run(&self, cx: &Context<'_>, expect: &Expect) -> Finding {
        let status = cx
            .blocking(|h| h.read_file(DPKG_STATUS, DPKG_STATUS_LIMIT))
            .await;
        match status {
            Ok(Ok(text)) => {
                let (name, arch) = self.split();
                Finding::judge(dpkg_version(&text, name, arch), expect)
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => self.rpm(cx, expect).await,
            Ok(Err(e)) => {
                Finding::error(expect.describe(), format!("cannot read {DPKG_STATUS}: {e}"))
            }
            Err(e) => Finding::error(expect.describe(), e),
        }
    }

    async fn rpm(&self, cx: &Context<'_>, expect: &Expect) -> Finding {
        let timeout = cx.timeout;
        let req = CommandRequest {
            program: "rpm".into(),
            args: vec![
                "-q".into(),
                "--queryformat".into(),
                "%{VERSION}-%{RELEASE}".into(),
                self.name.clone(),
            ],
            timeout,
            max_output: 64 * 1024,
            run_as: cx.run_as.cloned(),
        };
        match cx.host.run_command(req).await {
            Ok(out) if out.exit_code == Some(0) => {
                Finding::judge(Observed::Version(out.stdout.trim().to_string()), expect)
            }
            // rpm -q: exit 1 and "package X is not installed".
            Ok(out) if out.stdout.contains("is not installed") => {
                Finding::judge(Observed::Text(NOT_INSTALLED.into()), expect)
            }
            Ok(out) => Finding::error(
                expect.describe(),
                format!(
                    "rpm -q {} exited {:?}: {}",
                    self.name,
                    out.exit_code,
                    out.stderr.trim()
                ),
            ),
            Err(crate::host::CommandError::NotFound(_)) => Finding::error(
                expect.describe(),
                format!("no package database: {DPKG_STATUS} does not exist and there is no rpm"),
            ),
            Err(e) => Finding::error(expect.describe(), e.to_string()),
        }
    }
}

/// The installed version of `name` (of `arch`, when given) in the text of
/// a dpkg status file, or `not-installed`.
pub fn dpkg_version(status: &str, name: &str, arch: Option<&str>) -> Observed {
    for stanza in status.split("\n\n") {
        let field = |key: &str| {
            stanza.lines().find_map(|l| {
                l.strip_prefix(key)
                    .and_then(|r| r.strip_prefix(':'))
                    .map(str::trim)
            })
        };
        if field("Package") != Some(name) {
            continue;
        }
        if arch.is_some_and(|a| field("Architecture") != Some(a)) {
            continue;
        }
        let installed = field("Status").is_some_and(|s| s.ends_with(" installed"));
        if let (true, Some(v)) = (installed, field("Version")) {
            return Observed::Version(v.to_string());
        }
    }
    Observed::Text(NOT_INSTALLED.into())
}
