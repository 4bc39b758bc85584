//! The catalog: every check a node defines (its own `[[check]]` tables
//! plus the built-in profiles it names), and selection by selector and
//! node tags.
//!
//! Ids are unique on a node. A node's own `[[check]]` with the id of a
//! profile check replaces that profile check (a node tunes a profile
//! value that way); two own checks, or two profiles, defining the same id
//! is a config problem, except a check two built-in profiles share (the
//! scored CIS checks are in `k8s-node` and `cis-node`): it is one check
//! that belongs to both.
//!
//! The users commands run as (`[checks] command_user`, a `command`
//! check's `user`) are resolved here, from the machine's `/etc/passwd`
//! and `/etc/group`, so that an unknown user is a config problem with its
//! file and key, found by `patrol config check` and at start.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use patrol_config::{Config, ConfigError, Problem};

use crate::host::{resolve_account, switch_refused, Account, Host};
use crate::{CheckKind, CheckSpec, Selector};

/// Built-in profiles: (name, TOML text in the `[[check]]` syntax).
const PROFILES: &[(&str, &str)] = &[
    (
        "k8s-node",
        include_str!("../../config/profiles/k8s-node.toml"),
    ),
    (
        "cis-node",
        include_str!("../../config/profiles/cis-node.toml"),
    ),
];

const PROFILE_NAMES: &[&str] = &["k8s-node", "cis-node"];

/// Built-in profiles that include another's checks of severity `fail`
/// (the scored ones): (profile, included profile). `k8s-node` carries the
/// automated CIS worker-node checks, `cis-node` adds the manual ones.
const INCLUDES_SCORED: &[(&str, &str)] = &[("k8s-node", "cis-node")];

/// Default timeout of a built-in profile check when no config gives one.
const PROFILE_TIMEOUT: Duration = Duration::from_secs(5);

/// Every check a node defines, in order: its own, then the profiles'.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    checks: Vec<CheckSpec>,
    /// The config file it came from (for problems found later).
    source: PathBuf,
    /// Every user some command runs as, with the key that named it.
    users: Vec<(String, Account)>,
}

impl Catalog {
    /// The node's `[[check]]` tables plus the built-in profiles named in
    /// `checks.profiles`. Every problem is reported with the config file
    /// and a key (`check[3].expect.min`, `checks.profiles[0]`,
    /// `checks.command_user`). Users are looked up on the machine the
    /// config's `[node]` reads ([`crate::host_for`]).
    pub fn from_config(config: &Config) -> Result<Catalog, ConfigError> {
        Catalog::from_config_on(config, &*crate::host_for(&config.node))
    }

    /// [`Catalog::from_config`] with the users looked up on `host`.
    pub fn from_config_on(config: &Config, host: &dyn Host) -> Result<Catalog, ConfigError> {
        let mut problems = Vec::new();
        let mut checks = Vec::new();
        let file = &config.source;
        for (i, table) in config.check.iter().enumerate() {
            match CheckSpec::from_table(table, config.checks.default_timeout, None) {
                Ok(spec) => checks.push((format!("check[{i}]"), spec)),
                Err(list) => problems.extend(list.into_iter().map(|(key, message)| Problem {
                    file: file.clone(),
                    key: if key.is_empty() {
                        format!("check[{i}]")
                    } else {
                        format!("check[{i}].{key}")
                    },
                    message,
                })),
            }
        }
        let own = checks.len();
        // The profile TOML each profile check was parsed from, by id: a
        // check two profiles share comes from one TOML, and is one check.
        let mut origins: BTreeMap<String, (&'static str, usize)> = BTreeMap::new();
        for (i, name) in config.checks.profiles.iter().enumerate() {
            match parse_profile(name, config.checks.default_timeout) {
                Some(Ok(list)) => {
                    for (origin, spec) in list {
                        if let Some((_, mine)) =
                            checks[..own].iter_mut().find(|(_, c)| c.id == spec.id)
                        {
                            // The node's own check replaces this profile
                            // check, and stands for it when a selector asks
                            // for the profile.
                            mine.profiles.push(name.clone());
                            continue;
                        }
                        match origins.get(&spec.id) {
                            Some(&(o, at))
                                if o == origin && !checks[at].1.profiles.contains(name) =>
                            {
                                checks[at].1.profiles.push(name.clone());
                            }
                            _ => {
                                origins.insert(spec.id.clone(), (origin, checks.len()));
                                checks.push((format!("checks.profiles[{i}]"), spec));
                            }
                        }
                    }
                }
                Some(Err(e)) => problems.extend(e.problems),
                None => problems.push(Problem {
                    file: file.clone(),
                    key: format!("checks.profiles[{i}]"),
                    message: format!(
                        "unknown profile `{name}` (built-in profiles: {})",
                        PROFILE_NAMES.join(", ")
                    ),
                }),
            }
        }
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (place, spec) in &checks {
            if let Some(first) = seen.get(&spec.id) {
                problems.push(Problem {
                    file: file.clone(),
                    key: format!("{place}.id"),
                    message: format!(
                        "duplicate check id `{}` (first defined at {first})",
                        spec.id
                    ),
                });
            } else {
                seen.insert(spec.id.clone(), place.clone());
            }
        }
        let users = resolve_users(config, host, &mut checks, &mut problems);
        if problems.is_empty() {
            Ok(Catalog {
                checks: checks.into_iter().map(|(_, s)| s).collect(),
                source: file.clone(),
                users,
            })
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Refuse a catalog whose commands run as another user when this
    /// process is not root (only root can switch users): the agent and
    /// `patrol check` call this before running anything, so the mistake
    /// is one clear error at start rather than an `error` in every sweep.
    pub fn check_user_switch(&self) -> Result<(), ConfigError> {
        self.check_user_switch_as(rustix::process::geteuid().as_raw())
    }

    /// [`Catalog::check_user_switch`] for a process running as `euid`.
    pub fn check_user_switch_as(&self, euid: u32) -> Result<(), ConfigError> {
        let problems: Vec<Problem> = self
            .users
            .iter()
            .filter_map(|(key, account)| {
                switch_refused(account, euid).map(|message| Problem {
                    file: self.source.clone(),
                    key: key.clone(),
                    message,
                })
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// A built-in profile alone (e.g. `k8s-node`), None if unknown.
    pub fn builtin_profile(name: &str) -> Option<Catalog> {
        // The built-in profiles are tested to parse; an error here cannot
        // come from user input.
        parse_profile(name, PROFILE_TIMEOUT)?
            .ok()
            .map(|checks| Catalog {
                checks: checks.into_iter().map(|(_, spec)| spec).collect(),
                ..Catalog::default()
            })
    }

    /// Names of the built-in profiles.
    pub fn builtin_profile_names() -> &'static [&'static str] {
        PROFILE_NAMES
    }

    /// Checks matching the selector (empty selector: all) whose `tags`
    /// match the node's tags.
    pub fn select(
        &self,
        selector: &Selector,
        node_tags: &BTreeMap<String, String>,
    ) -> Vec<CheckSpec> {
        let ids: BTreeSet<&str> = selector.checks.iter().map(String::as_str).collect();
        self.checks
            .iter()
            .filter(|c| ids.is_empty() || ids.contains(c.id.as_str()))
            .filter(|c| {
                selector.labels.is_empty() || c.labels.iter().any(|l| selector.labels.contains(l))
            })
            .filter(|c| match &selector.profile {
                None => true,
                Some(p) => c.profiles.contains(p),
            })
            .filter(|c| c.runs_on(node_tags))
            .cloned()
            .collect()
    }

    /// Every check, in definition order.
    pub fn checks(&self) -> &[CheckSpec] {
        &self.checks
    }

    pub fn len(&self) -> usize {
        self.checks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }
}

/// The unit of each check's values, by check id ([`CheckKind::unit`]):
/// the config's own checks when given, then every built-in profile's (a
/// report may show checks of a profile its own config does not name).
/// Checks without a unit are left out, and so is an own check that does
/// not parse (loading the config reports it; the profile check it would
/// replace does not lend it a unit).
pub fn check_units(config: Option<&Config>) -> BTreeMap<String, &'static str> {
    // (id, unit) in order of precedence; the first of an id counts.
    let mut found: Vec<(String, Option<&'static str>)> = Vec::new();
    if let Some(config) = config {
        for table in &config.check {
            match CheckSpec::from_table(table, config.checks.default_timeout, None) {
                Ok(spec) => found.push((spec.id.clone(), spec.kind.unit())),
                Err(_) => {
                    if let Some(id) = table.get("id").and_then(|v| v.as_str()) {
                        found.push((id.to_string(), None));
                    }
                }
            }
        }
    }
    for name in PROFILE_NAMES {
        if let Some(Ok(list)) = parse_profile(name, PROFILE_TIMEOUT) {
            found.extend(list.into_iter().map(|(_, s)| (s.id.clone(), s.kind.unit())));
        }
    }
    let mut seen = BTreeSet::new();
    let mut units = BTreeMap::new();
    for (id, unit) in found {
        if seen.insert(id.clone()) {
            if let Some(unit) = unit {
                units.insert(id, unit);
            }
        }
    }
    units
}

/// Resolve `[checks] command_user` and every `command` check's `user` on
/// `host`, set each check's `run_as`, and return the users with the keys
/// that named them; unknown users become problems at those keys.
fn resolve_users(
    config: &Config,
    host: &dyn Host,
    checks: &mut [(String, CheckSpec)],
    problems: &mut Vec<Problem>,
) -> Vec<(String, Account)> {
    let mut users = Vec::new();
    let mut resolve =
        |key: String, name: &str, problems: &mut Vec<Problem>| match resolve_account(host, name) {
            Ok(account) => {
                users.push((key, account.clone()));
                Some(account)
            }
            Err(e) => {
                problems.push(Problem {
                    file: config.source.clone(),
                    key,
                    message: e.to_string(),
                });
                None
            }
        };
    let default = config
        .checks
        .command_user
        .as_deref()
        .and_then(|name| resolve("checks.command_user".into(), name, problems));
    for (place, spec) in checks.iter_mut() {
        spec.run_as = match &spec.kind {
            CheckKind::Command(c) if c.user.is_some() => {
                let name = c.user.clone().unwrap_or_default();
                resolve(format!("{place}.user"), &name, problems)
            }
            _ => default.clone(),
        };
    }
    users
}

/// Parse a built-in profile; None when unknown.
fn parse_profile(
    name: &str,
    default_timeout: Duration,
) -> Option<Result<Vec<(&'static str, CheckSpec)>, ConfigError>> {
    let (own, _) = PROFILES.iter().find(|(n, _)| *n == name)?;
    let mut out: Vec<(&'static str, CheckSpec)> = match parse_toml(own, name, default_timeout) {
        Ok(list) => list.into_iter().map(|s| (*own, s)).collect(),
        Err(e) => return Some(Err(e)),
    };
    for (_, included) in INCLUDES_SCORED.iter().filter(|(p, _)| *p == name) {
        match parse_toml(included, name, default_timeout) {
            Ok(list) => out.extend(
                list.into_iter()
                    .filter(|s| s.severity == crate::Severity::Fail)
                    .map(|s| (*included, s)),
            ),
            Err(e) => return Some(Err(e)),
        }
    }
    Some(Ok(out))
}

/// The checks of built-in profile `source`'s TOML, as members of
/// `profile`.
fn parse_toml(
    source: &str,
    profile: &str,
    default_timeout: Duration,
) -> Result<Vec<CheckSpec>, ConfigError> {
    let text = PROFILES
        .iter()
        .find(|(n, _)| *n == source)
        .map_or("", |(_, t)| *t);
    let file = format!("(built-in profile {source})");
    let table: toml::Table = toml::from_str(text)
        .map_err(|e| ConfigError::single(Path::new(&file), "", e.to_string()))?;
    let mut problems = Vec::new();
    let mut out = Vec::new();
    let items = table
        .get("check")
        .and_then(|c| c.as_array())
        .cloned()
        .unwrap_or_default();
    for (i, item) in items.iter().enumerate() {
        let Some(t) = item.as_table() else { continue };
        match CheckSpec::from_table(t, default_timeout, Some(profile)) {
            Ok(s) => out.push(s),
            Err(list) => problems.extend(list.into_iter().map(|(k, m)| Problem {
                file: file.clone().into(),
                key: format!("check[{i}].{k}"),
                message: m,
            })),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(ConfigError { problems })
    }
}
