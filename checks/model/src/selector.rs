//! Which checks a sweep asks for. A selector names checks; it never carries
//! a command or a check definition: each node runs only what its own config
//! defines.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, Serializer};

use crate::fields::Fields;

/// Which of a node's configured checks to run. Empty everywhere means "all
/// of the node's configured checks". In JSON, empty lists and a missing
/// profile are left out.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize)]
pub struct Selector {
    /// Run only checks with these ids (empty: no restriction by id).
    #[serde(default)]
    pub checks: Vec<String>,
    /// Run only checks carrying one of these labels in their `labels` list
    /// (empty: no restriction by label).
    #[serde(default)]
    pub labels: Vec<String>,
    /// Run only checks from this profile (e.g. `k8s-node`).
    #[serde(default)]
    pub profile: Option<String>,
}

impl Serialize for Selector {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut f = Fields::new(serializer, "Selector", 3)?;
        f.optional("checks", &self.checks)?;
        f.optional("labels", &self.labels)?;
        f.optional("profile", &self.profile)?;
        f.end()
    }
}

impl Selector {
    /// Short text for tables and report headers, e.g. `profile k8s-node`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = &self.profile {
            parts.push(format!("profile {p}"));
        }
        if !self.checks.is_empty() {
            parts.push(format!("checks {}", self.checks.join(",")));
        }
        if !self.labels.is_empty() {
            parts.push(format!("labels {}", self.labels.join(",")));
        }
        if parts.is_empty() {
            "all configured checks".to_string()
        } else {
            parts.join("; ")
        }
    }
}

/// True when `tags` carry every pair of `filter` (an empty filter matches
/// every node). The one rule for a sweep's node filter and for a check's
/// `tags`: the coordinator's expected set, a participant's own test and the
/// catalog all call it.
pub fn tags_match(filter: &BTreeMap<String, String>, tags: &BTreeMap<String, String>) -> bool {
    filter.iter().all(|(k, v)| tags.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn empty_filter_matches_every_node() {
        assert!(tags_match(&tags(&[]), &tags(&[])));
        assert!(tags_match(&tags(&[]), &tags(&[("role", "worker")])));
    }

    #[test]
    fn every_pair_must_be_present_with_its_value() {
        let node = tags(&[("role", "worker"), ("zone", "a")]);
        assert!(tags_match(&tags(&[("role", "worker")]), &node));
        assert!(!tags_match(&tags(&[("role", "etcd")]), &node));
        assert!(!tags_match(
            &tags(&[("role", "worker"), ("rack", "1")]),
            &node
        ));
    }
}
