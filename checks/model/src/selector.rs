//! Which checks a sweep asks for. A selector names checks; it never carries
//! a command or a check definition: each node runs only what its own config
//! defines.

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
