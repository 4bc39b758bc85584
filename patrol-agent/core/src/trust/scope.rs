//! What an operator may ask, carried in the operator's certificate.
//!
//! A scope only ever narrows: each restriction that is set must hold for a
//! request, and a request may always narrow further (a selector's checks,
//! labels and profile are conjunctive; extra node-filter pairs select fewer
//! nodes). The coordinator checks it before it starts a sweep, and every
//! participant checks it again before it runs a check, so a coordinator
//! cannot widen what the operator signed. Its `share` narrows what a
//! node gives the operator: how many of its participations the operator
//! may hold at once, never more than the node's own `operator_share`.

use std::collections::BTreeMap;

use patrol_model::Selector;
use serde::{Deserialize, Serialize};

/// An operator's permissions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// A label for people and audit logs (`full`, `nightly`, `read-only`).
    pub name: String,
    /// May start sweeps. Without it the operator may only read
    /// (`patrol members`, stats).
    pub sweep: bool,
    /// Non-empty: a request must name one of these profiles.
    pub profiles: Vec<String>,
    /// Non-empty: a request must select by labels, all from this list.
    pub labels: Vec<String>,
    /// Non-empty: a request must select by check ids, all from this list.
    pub checks: Vec<String>,
    /// Every request's node filter must contain these pairs.
    pub node_filter: BTreeMap<String, String>,
    /// Longest deadline a request may carry, milliseconds.
    pub max_deadline_ms: u64,
    /// Most sweeps of this operator a node holds at once (running, or
    /// answered and not acked yet): every participant takes the smaller
    /// of this and its own `SweepSettings::operator_share`, and refuses
    /// the rest as `patrol.over_quota`. None: the node's share alone.
    /// Certificate version 2 (a version 1 certificate has none).
    pub share: Option<u16>,
}

/// Why a request falls outside a scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("scope `{0}` is read-only: it may not start sweeps")]
    ReadOnly(String),
    #[error("scope `{scope}` allows profiles {allowed}, the request asks for {asked}")]
    Profile {
        scope: String,
        allowed: String,
        asked: String,
    },
    #[error("scope `{scope}` allows labels {allowed}, the request asks for {asked}")]
    Labels {
        scope: String,
        allowed: String,
        asked: String,
    },
    #[error("scope `{scope}` allows checks {allowed}, the request asks for {asked}")]
    Checks {
        scope: String,
        allowed: String,
        asked: String,
    },
    #[error("scope `{scope}` requires the node filter {key}={value}")]
    NodeFilter {
        scope: String,
        key: String,
        value: String,
    },
    #[error(
        "scope `{scope}` allows deadlines up to {max_ms} ms, the request asks for {asked_ms} ms"
    )]
    Deadline {
        scope: String,
        max_ms: u64,
        asked_ms: u64,
    },
    #[error("scope `{0}` may not sweep every node, so it may not forget one from the roster")]
    NotFleetWide(String),
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_string()
    } else {
        items.join(",")
    }
}

impl Scope {
    /// Everything: any sweep, deadlines up to `max_deadline_ms`.
    pub fn full(max_deadline_ms: u64) -> Scope {
        Scope {
            name: "full".into(),
            sweep: true,
            profiles: Vec::new(),
            labels: Vec::new(),
            checks: Vec::new(),
            node_filter: BTreeMap::new(),
            max_deadline_ms,
            share: None,
        }
    }

    /// Members and stats only.
    pub fn read_only() -> Scope {
        Scope {
            name: "read-only".into(),
            sweep: false,
            max_deadline_ms: 0,
            ..Scope::full(0)
        }
    }

    /// The most sweeps of this operator a node whose own share is
    /// `node_share` holds at once: the smaller of the two.
    pub fn share_on(&self, node_share: usize) -> usize {
        self.share
            .map_or(node_share, |s| usize::from(s).min(node_share))
    }

    /// Whether a sweep with this selector, node filter and deadline is
    /// allowed, and if not, the first reason.
    pub fn permits(
        &self,
        selector: &Selector,
        node_filter: &BTreeMap<String, String>,
        deadline_ms: u64,
    ) -> Result<(), ScopeError> {
        let scope = || self.name.clone();
        if !self.sweep {
            return Err(ScopeError::ReadOnly(scope()));
        }
        if !self.profiles.is_empty() {
            let ok = selector
                .profile
                .as_ref()
                .is_some_and(|p| self.profiles.contains(p));
            if !ok {
                return Err(ScopeError::Profile {
                    scope: scope(),
                    allowed: list(&self.profiles),
                    asked: selector.profile.clone().unwrap_or_else(|| "(any)".into()),
                });
            }
        }
        if !self.labels.is_empty()
            && (selector.labels.is_empty()
                || !selector.labels.iter().all(|l| self.labels.contains(l)))
        {
            return Err(ScopeError::Labels {
                scope: scope(),
                allowed: list(&self.labels),
                asked: list(&selector.labels),
            });
        }
        if !self.checks.is_empty()
            && (selector.checks.is_empty()
                || !selector.checks.iter().all(|c| self.checks.contains(c)))
        {
            return Err(ScopeError::Checks {
                scope: scope(),
                allowed: list(&self.checks),
                asked: list(&selector.checks),
            });
        }
        for (key, value) in &self.node_filter {
            if node_filter.get(key) != Some(value) {
                return Err(ScopeError::NodeFilter {
                    scope: scope(),
                    key: key.clone(),
                    value: value.clone(),
                });
            }
        }
        if deadline_ms > self.max_deadline_ms {
            return Err(ScopeError::Deadline {
                scope: scope(),
                max_ms: self.max_deadline_ms,
                asked_ms: deadline_ms,
            });
        }
        Ok(())
    }

    /// One line for certificate comments and `patrol ca show`.
    pub fn describe(&self) -> String {
        if !self.sweep {
            return format!("{} (read-only: members and stats)", self.name);
        }
        let mut parts = vec![format!("{}: sweeps", self.name)];
        if !self.profiles.is_empty() {
            parts.push(format!("profiles {}", self.profiles.join(",")));
        }
        if !self.labels.is_empty() {
            parts.push(format!("labels {}", self.labels.join(",")));
        }
        if !self.checks.is_empty() {
            parts.push(format!("checks {}", self.checks.join(",")));
        }
        for (k, v) in &self.node_filter {
            parts.push(format!("nodes {k}={v}"));
        }
        parts.push(format!("deadline up to {} ms", self.max_deadline_ms));
        if let Some(share) = self.share {
            parts.push(format!("at most {share} sweeps at once per node"));
        }
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(profile: Option<&str>, labels: &[&str], checks: &[&str]) -> Selector {
        Selector {
            checks: checks.iter().map(|s| s.to_string()).collect(),
            labels: labels.iter().map(|s| s.to_string()).collect(),
            profile: profile.map(str::to_string),
        }
    }

    fn nightly() -> Scope {
        Scope {
            name: "nightly".into(),
            profiles: vec!["k8s-node".into()],
            node_filter: BTreeMap::from([("env".into(), "prod".into())]),
            max_deadline_ms: 60_000,
            ..Scope::full(600_000)
        }
    }

    fn prod() -> BTreeMap<String, String> {
        BTreeMap::from([("env".into(), "prod".into())])
    }

    #[test]
    fn a_full_scope_permits_any_sweep_within_its_deadline() {
        let s = Scope::full(600_000);
        assert!(s
            .permits(&Selector::default(), &BTreeMap::new(), 600_000)
            .is_ok());
        assert!(matches!(
            s.permits(&Selector::default(), &BTreeMap::new(), 600_001),
            Err(ScopeError::Deadline { .. })
        ));
    }

    #[test]
    fn a_read_only_scope_starts_no_sweep() {
        let e = Scope::read_only()
            .permits(&Selector::default(), &BTreeMap::new(), 1)
            .unwrap_err();
        assert!(matches!(e, ScopeError::ReadOnly(_)));
    }

    #[test]
    fn a_profile_scope_refuses_other_checks_and_allows_narrowing() {
        let s = nightly();
        assert!(s
            .permits(&selector(Some("k8s-node"), &[], &[]), &prod(), 5000)
            .is_ok());
        // Narrower: a check id or a label on top of the profile.
        assert!(s
            .permits(
                &selector(Some("k8s-node"), &["net"], &["kubelet"]),
                &prod(),
                5000
            )
            .is_ok());
        // Everything, or other checks: refused.
        assert!(matches!(
            s.permits(&selector(None, &[], &[]), &prod(), 5000),
            Err(ScopeError::Profile { .. })
        ));
        assert!(matches!(
            s.permits(&selector(None, &[], &["etcd"]), &prod(), 5000),
            Err(ScopeError::Profile { .. })
        ));
        assert!(matches!(
            s.permits(&selector(Some("other"), &[], &[]), &prod(), 5000),
            Err(ScopeError::Profile { .. })
        ));
    }

    #[test]
    fn a_node_filter_in_the_scope_must_be_in_every_request() {
        let s = nightly();
        let sel = selector(Some("k8s-node"), &[], &[]);
        assert!(matches!(
            s.permits(&sel, &BTreeMap::new(), 5000),
            Err(ScopeError::NodeFilter { .. })
        ));
        let mut narrower = prod();
        narrower.insert("role".into(), "worker".into());
        assert!(s.permits(&sel, &narrower, 5000).is_ok());
        let other = BTreeMap::from([("env".into(), "staging".into())]);
        assert!(s.permits(&sel, &other, 5000).is_err());
    }

    #[test]
    fn label_and_check_scopes_need_a_subset() {
        let s = Scope {
            name: "net".into(),
            labels: vec!["net".into(), "dns".into()],
            checks: vec!["a".into(), "b".into()],
            ..Scope::full(10_000)
        };
        let none = BTreeMap::new();
        assert!(s
            .permits(&selector(None, &["net"], &["a"]), &none, 1)
            .is_ok());
        assert!(s.permits(&selector(None, &[], &["a"]), &none, 1).is_err());
        assert!(s
            .permits(&selector(None, &["net", "disk"], &["a"]), &none, 1)
            .is_err());
        assert!(s
            .permits(&selector(None, &["net"], &["a", "c"]), &none, 1)
            .is_err());
    }

    #[test]
    fn a_share_only_ever_narrows_the_nodes_share() {
        let full = Scope::full(10_000);
        assert_eq!(full.share_on(16), 16);
        let capped = Scope {
            share: Some(2),
            ..Scope::full(10_000)
        };
        assert_eq!(capped.share_on(16), 2);
        let generous = Scope {
            share: Some(100),
            ..Scope::full(10_000)
        };
        assert_eq!(
            generous.share_on(16),
            16,
            "a scope never widens the node's share"
        );
        assert!(capped
            .describe()
            .ends_with("at most 2 sweeps at once per node"));
        assert!(!full.describe().contains("at once"));
    }
}
