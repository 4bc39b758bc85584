//! A check definition: one `[[check]]` table, parsed and validated.
//!
//! Common keys (`id`, `type`, `expect`, `observe`, `severity`, `timeout`,
//! `tags`, `labels`, `description`, `remediation`) are read here; every other key
//! belongs to the kind selected by `type` and is read by that kind's
//! settings struct, which refuses unknown keys.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::expect::Expect;
use crate::host::Account;
use crate::kinds::CheckKind;
use crate::Severity;

/// One parsed `[[check]]`.
#[derive(Debug, Clone)]
pub struct CheckSpec {
    /// Unique on the node; what selectors and reports name.
    pub id: String,
    /// What to observe and how (selected by `type`).
    pub kind: CheckKind,
    /// What the observation must satisfy.
    pub expect: Expect,
    /// What a missed expectation becomes.
    pub severity: Severity,
    pub timeout: Duration,
    /// Run only on nodes whose tags include all of these.
    pub tags: BTreeMap<String, String>,
    /// Free labels a selector can pick checks by.
    pub labels: Vec<String>,
    pub description: String,
    pub remediation: String,
    /// The built-in profiles this check belongs to (empty: only the
    /// node's config); a selector naming any of them picks it.
    pub profiles: Vec<String>,
    /// Observe only: record the value, judge nothing. The check passes
    /// whenever it could observe (an `error` stays an error); its value
    /// feeds drift and the value distributions. Set by `observe = true`,
    /// or by leaving out `expect` on a kind that reads a value and has no
    /// default expectation (`sysctl`, `kubelet_version`, `file`, ...).
    pub observe_only: bool,
    /// The user the check's commands run as: a `command` check's `user`,
    /// else `[checks] command_user`; None: the agent's own user. Set by
    /// [`crate::Catalog::from_config`], which resolves the names.
    pub run_as: Option<Account>,
}

const COMMON_KEYS: &[&str] = &[
    "id",
    "expect",
    "observe",
    "severity",
    "timeout",
    "tags",
    "labels",
    "description",
    "remediation",
];

/// A problem in one check table: (key inside the table, message).
pub type TableProblem = (String, String);

impl CheckSpec {
    /// Parse one `[[check]]` table. Every problem found is returned, each
    /// with its key inside the table (empty for the table as a whole).
    pub fn from_table(
        table: &toml::Table,
        default_timeout: Duration,
        profile: Option<&str>,
    ) -> Result<CheckSpec, Vec<TableProblem>> {
        let mut problems: Vec<TableProblem> = Vec::new();
        let mut p = |k: &str, m: String| problems.push((k.to_string(), m));

        let id = match table.get("id") {
            Some(toml::Value::String(s)) if valid_id(s) => s.clone(),
            Some(toml::Value::String(s)) => {
                p(
                    "id",
                    format!("`{s}` is not a valid id (use 1-64 letters, digits, `_`, `-`, `.`)"),
                );
                String::new()
            }
            Some(_) => {
                p("id", "expected a string".into());
                String::new()
            }
            None => {
                p("id", "missing (every check needs a unique id)".into());
                String::new()
            }
        };
        let severity = match table.get("severity").map(|v| v.as_str()) {
            None | Some(Some("fail")) => Severity::Fail,
            Some(Some("warn")) => Severity::Warn,
            Some(_) => {
                p("severity", "expected \"warn\" or \"fail\"".into());
                Severity::Fail
            }
        };
        let timeout = match table.get("timeout") {
            None => default_timeout,
            Some(toml::Value::String(s)) => match patrol_config::parse_duration(s) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    p("timeout", "must be longer than 0s".into());
                    default_timeout
                }
                Err(e) => {
                    p("timeout", e);
                    default_timeout
                }
            },
            Some(_) => {
                p("timeout", "expected a duration such as \"5s\"".into());
                default_timeout
            }
        };
        let tags = match table.get("tags") {
            None => BTreeMap::new(),
            Some(v) => match BTreeMap::<String, String>::deserialize(v.clone()) {
                Ok(t) => t,
                Err(_) => {
                    p(
                        "tags",
                        "expected a table of strings, e.g. { role = \"etcd\" }".into(),
                    );
                    BTreeMap::new()
                }
            },
        };
        let labels = match table.get("labels") {
            None => Vec::new(),
            Some(v) => match Vec::<String>::deserialize(v.clone()) {
                Ok(l) => l,
                Err(_) => {
                    p("labels", "expected a list of strings".into());
                    Vec::new()
                }
            },
        };
        let mut text = |key: &str| match table.get(key) {
            None => String::new(),
            Some(toml::Value::String(s)) => s.clone(),
            Some(_) => {
                p(key, "expected a string".into());
                String::new()
            }
        };
        let description = text("description");
        let remediation = text("remediation");
        let mut expect_broken = false;
        let mut expect = match table.get("expect") {
            None => Expect::default(),
            Some(v) => match Expect::from_toml(v) {
                Ok(e) => e,
                Err((sub, msg)) => {
                    expect_broken = true;
                    let key = if sub.is_empty() {
                        "expect".to_string()
                    } else {
                        format!("expect.{sub}")
                    };
                    p(&key, msg);
                    Expect::default()
                }
            },
        };

        let observe = match table.get("observe") {
            None => false,
            Some(toml::Value::Boolean(b)) => *b,
            Some(_) => {
                p("observe", "expected true or false".into());
                false
            }
        };
        if observe && table.contains_key("expect") {
            p(
                "observe",
                "an observe-only check judges nothing: remove `expect` or `observe = true`".into(),
            );
        }

        let mut kind_table = toml::Table::new();
        for (k, v) in table {
            if !COMMON_KEYS.contains(&k.as_str()) {
                kind_table.insert(k.clone(), v.clone());
            }
        }
        let kind = if !kind_table.contains_key("type") {
            p(
                "type",
                format!("missing (expected one of: {})", CheckKind::NAMES.join(", ")),
            );
            None
        } else {
            match CheckKind::deserialize(toml::Value::Table(kind_table)) {
                Ok(k) => Some(k),
                Err(e) => {
                    let (key, msg) = serde_problem(&e.to_string());
                    p(&key, msg);
                    None
                }
            }
        };
        if let Some(kind) = &kind {
            if let Err((key, msg)) = kind.validate() {
                p(&key, msg);
            }
            // A broken `expect` is already reported; do not also call it missing.
            if expect.is_empty() && !expect_broken && !observe {
                match kind.default_expect() {
                    Some(e) => expect = e,
                    None if kind.needs_expect() => p(
                        "expect",
                        format!(
                            "missing: a {} check needs an expectation, e.g. expect = {{ min = 1 }}, \
                             or `observe = true` to record its value only",
                            kind.name()
                        ),
                    ),
                    None => {}
                }
            }
        }
        let observe_only = observe
            || (expect.is_empty()
                && kind
                    .as_ref()
                    .is_some_and(CheckKind::observes_without_expect));
        match kind {
            Some(kind) if problems.is_empty() => Ok(CheckSpec {
                id,
                kind,
                expect,
                severity,
                timeout,
                tags,
                labels,
                description,
                remediation,
                profiles: profile.map(str::to_string).into_iter().collect(),
                observe_only,
                run_as: None,
            }),
            _ => Err(problems),
        }
    }

    /// True when every tag this check requires is on the node.
    pub fn runs_on(&self, node_tags: &BTreeMap<String, String>) -> bool {
        patrol_model::selector::tags_match(&self.tags, node_tags)
    }
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Turn a serde message into (key, message): `unknown field `x`` names x,
/// `missing field `x`` names x, `unknown variant` names `type`.
fn serde_problem(msg: &str) -> TableProblem {
    let msg = msg.trim().trim_end_matches('.').to_string();
    let quoted = msg.split('`').nth(1).unwrap_or("").to_string();
    if msg.starts_with("unknown field") || msg.starts_with("missing field") {
        (quoted, msg)
    } else if msg.starts_with("unknown variant") {
        ("type".into(), msg)
    } else {
        (String::new(), msg)
    }
}
