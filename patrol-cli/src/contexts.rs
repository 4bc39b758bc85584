//! Several clusters from one laptop, in the spirit of kubeconfig
//! contexts: `~/.config/patrol/contexts.toml` names each cluster's seeds,
//! cluster name and credentials, and `patrol sweep --context a --context
//! b` (or `--all-contexts`) sweeps them concurrently into one merged
//! document ([`merge`]).
//!
//! ```toml
//! [context.prod-eu]
//! seeds = ["10.1.0.10:7947", "10.1.0.11:7947"]
//! cluster = "prod-eu"
//! key_file = "~/.config/patrol/prod-eu.key"
//!
//! [context.prod-us]
//! seeds = ["10.2.0.10:7947"]
//! cluster = "prod-us"
//! key_file = "/etc/patrol/prod-us.key"
//! ```
//!
//! The merged document is an ordinary sweep document (same schema, same
//! report, same exit code): every node is named `CLUSTER/NODE` and tagged
//! `cluster = CLUSTER`, so the cluster shows on every node and on every
//! anomaly group of the report; a cluster that could not be swept is one
//! `no_answer` entry `CLUSTER/*` whose single `error` outcome
//! (`patrol.cluster_unreachable`) says why, so it is listed, counted and
//! turns the exit code to 2, never silently dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use patrol_agent::envelope::Envelope;
use patrol_agent::keyring::Keyring;
use patrol_checks::{
    CheckOutcome, CompactDocument, CompactNode, NodeEntry, NodeState, Observed, Severity, Status,
};
use serde::Deserialize;

use crate::connect::Target;
use patrol_agent::control::client::ClientAuth;

/// One cluster the operator can reach.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterContext {
    /// Control addresses (`[control] listen`) of agents, tried in order.
    pub seeds: Vec<String>,
    /// The cluster name its agents have (`[node] cluster`).
    pub cluster: String,
    /// Its cluster key file (mode 0600), for a cluster without `[trust]`;
    /// `~/` is the home directory.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Its operator identity folder (`patrol ca issue operator --out`),
    /// for a cluster with `[trust]`. One of `key_file` and `identity`.
    #[serde(default)]
    pub identity: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileModel {
    #[serde(default)]
    context: BTreeMap<String, ClusterContext>,
}

/// A loaded contexts file.
#[derive(Debug)]
pub struct ContextsFile {
    pub path: PathBuf,
    pub contexts: BTreeMap<String, ClusterContext>,
}

/// `$XDG_CONFIG_HOME/patrol/contexts.toml`, else
/// `~/.config/patrol/contexts.toml`.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".config")))?;
    Some(base.join("patrol").join("contexts.toml"))
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn expand_home(p: &Path) -> PathBuf {
    match (p.strip_prefix("~"), home()) {
        (Ok(rest), Some(h)) => h.join(rest),
        _ => p.to_path_buf(),
    }
}

impl ContextsFile {
    /// Load `path`, or the default file.
    pub fn load(path: Option<&Path>) -> anyhow::Result<ContextsFile> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None => default_path()
                .context("no contexts file: HOME is not set (pass --contexts-file FILE)")?,
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the contexts file {}", path.display()))?;
        ContextsFile::parse(&text, &path)
    }

    pub fn parse(text: &str, path: &Path) -> anyhow::Result<ContextsFile> {
        let model: FileModel = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        for (name, c) in &model.context {
            if c.seeds.is_empty() {
                bail!(
                    "{}: context.{name}.seeds: needs at least one HOST:PORT",
                    path.display()
                );
            }
        }
        Ok(ContextsFile {
            path: path.to_path_buf(),
            contexts: model.context,
        })
    }

    pub fn names(&self) -> Vec<String> {
        self.contexts.keys().cloned().collect()
    }

    /// The target of context `name`. A key that does not load is kept as
    /// the reason the target cannot be opened; an unknown name is an error.
    pub fn target(&self, name: &str, connect_timeout: Duration) -> anyhow::Result<Target> {
        let c = self.contexts.get(name).with_context(|| {
            format!(
                "no context `{name}` in {} (it has: {})",
                self.path.display(),
                self.names().join(", ")
            )
        })?;
        let auth = match (&c.identity, &c.key_file) {
            (Some(dir), None) => crate::connect::load_identity(&expand_home(dir), &c.cluster)
                .map_err(|e| format!("{e:#}")),
            (None, Some(key_file)) => {
                let key_file = expand_home(key_file);
                Keyring::load(&key_file)
                    .map(|k| ClientAuth::ClusterKey(Envelope::new(k, &c.cluster)))
                    .map_err(|e| format!("loading {}: {e}", key_file.display()))
            }
            _ => Err(format!(
                "context `{name}` needs exactly one of key_file and identity"
            )),
        };
        Ok(Target {
            context: Some(name.to_string()),
            cluster: Some(c.cluster.clone()),
            seeds: c.seeds.clone(),
            auth,
            connect_timeout,
        })
    }
}

/// What one cluster's sweep came to.
#[derive(Debug)]
pub struct ClusterResult {
    /// The context (or cluster) name shown when the sweep failed.
    pub label: String,
    pub result: Result<CompactDocument, String>,
}

/// One document for several clusters' sweeps (see the module doc). The
/// order of `parts` does not matter: nodes are sorted by name. Made node
/// by node, compact: each part is dropped once its nodes are in.
pub fn merge(parts: Vec<ClusterResult>) -> CompactDocument {
    let mut catalog = patrol_checks::compact::Catalog::default();
    let mut nodes: Vec<CompactNode> = Vec::new();
    let mut clusters = Vec::new();
    let mut ids = Vec::new();
    let mut coordinators = Vec::new();
    let mut template: Option<CompactDocument> = None;
    let mut timing = patrol_checks::SweepTiming::default();
    let max = |a: Option<u64>, b: Option<u64>| a.max(b);
    for part in parts {
        match part.result {
            Ok(mut doc) => {
                let cluster = doc.cluster.clone();
                clusters.push(cluster.clone());
                ids.push(doc.sweep_id.clone());
                coordinators.push(format!("{cluster}/{}", doc.coordinator));
                timing.reached_max_ms = max(timing.reached_max_ms, doc.timing.reached_max_ms);
                timing.last_answer_ms = max(timing.last_answer_ms, doc.timing.last_answer_ms);
                timing.completed_ms = timing.completed_ms.max(doc.timing.completed_ms);
                for mut n in doc.expanded_nodes() {
                    n.name = format!("{cluster}/{}", n.name);
                    n.tags.insert("cluster".into(), cluster.clone());
                    nodes.push(CompactNode::pack(&n, &mut catalog));
                }
                // Only the earliest part's fields are kept, not its nodes.
                doc.nodes = Vec::new();
                template = match template {
                    Some(t) if t.started_at_unix_ms <= doc.started_at_unix_ms => Some(t),
                    _ => Some(doc),
                };
            }
            Err(reason) => {
                clusters.push(part.label.clone());
                nodes.push(CompactNode::pack(
                    &unreachable(&part.label, &reason),
                    &mut catalog,
                ));
            }
        }
    }
    let mut doc = template.unwrap_or_else(|| CompactDocument {
        version: patrol_checks::document::DOCUMENT_VERSION,
        sweep_id: String::new(),
        cluster: String::new(),
        coordinator: String::new(),
        operator: None,
        started_at_unix_ms: now_unix_ms(),
        deadline_ms: 0,
        selector: Default::default(),
        node_filter: Default::default(),
        counts: Default::default(),
        catalog: Default::default(),
        nodes: Vec::new(),
        timing: Default::default(),
        gone: Vec::new(),
    });
    clusters.sort();
    doc.cluster = clusters.join("+");
    doc.sweep_id = ids.join("+");
    doc.coordinator = coordinators.join("+");
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    doc.catalog = catalog;
    doc.nodes = nodes;
    // Percentiles of different sweeps do not merge; the bounds do.
    doc.timing = timing;
    doc.recount();
    doc
}

/// The entry standing for a cluster that could not be swept.
fn unreachable(label: &str, reason: &str) -> NodeEntry {
    NodeEntry {
        name: format!("{label}/*"),
        addr: String::new(),
        tags: BTreeMap::from([("cluster".to_string(), label.to_string())]),
        state: NodeState::NoAnswer,
        late_joiner: false,
        reached_ms: None,
        answered_ms: None,
        checks_ms: None,
        checks: vec![CheckOutcome {
            id: "patrol.cluster_unreachable".into(),
            kind: "patrol".into(),
            status: Status::Error,
            severity: Severity::Fail,
            observed: Observed::None,
            expected: "an agent of the cluster answers".into(),
            message: format!("cluster {label} could not be swept: {reason}"),
            duration_us: 0,
            description: String::new(),
            remediation: "check the context's seeds and key file, and that its agents run".into(),
        }],
        clock: None,
        silence: None,
        swim: None,
    }
}

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use patrol_report::sample::{document, node, outcome};

    #[test]
    fn merging_prefixes_every_node_with_its_cluster_and_lists_an_unreachable_one() {
        let pass = || outcome("pid", Status::Pass, Observed::Number(1.0), ">= 1");
        let a = document(
            "alpha",
            "aa",
            2_000,
            vec![
                node("n0", &[], NodeState::Ok, vec![pass()]),
                node("n1", &[], NodeState::Down, vec![]),
            ],
        );
        let b = document(
            "beta",
            "bb",
            1_000,
            vec![node("n0", &[], NodeState::Ok, vec![pass()])],
        );
        let doc = merge(vec![
            ClusterResult {
                label: "beta".into(),
                result: Ok(b.into()),
            },
            ClusterResult {
                label: "gamma".into(),
                result: Err("no agent answered".into()),
            },
            ClusterResult {
                label: "alpha".into(),
                result: Ok(a.into()),
            },
        ])
        .to_document();
        let names: Vec<&str> = doc.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["alpha/n0", "alpha/n1", "beta/n0", "gamma/*"]);
        assert!(doc.nodes.iter().all(|n| n.tags.contains_key("cluster")));
        assert_eq!(doc.nodes[2].tags["cluster"], "beta");
        assert_eq!(doc.cluster, "alpha+beta+gamma");
        assert_eq!(doc.started_at_unix_ms, 1_000, "the earliest start");
        assert_eq!(
            (
                doc.counts.expected,
                doc.counts.ok,
                doc.counts.down,
                doc.counts.no_answer
            ),
            (4, 2, 1, 1)
        );
        let gamma = &doc.nodes[3];
        assert_eq!(gamma.state, NodeState::NoAnswer);
        assert!(
            gamma.checks[0].message.contains("no agent answered"),
            "{gamma:?}"
        );
    }

    #[test]
    fn the_contexts_file_is_strict_and_names_what_is_wrong() {
        let p = Path::new("contexts.toml");
        let ok = ContextsFile::parse(
            "[context.a]\nseeds = [\"h:1\"]\ncluster = \"a\"\nkey_file = \"~/a.key\"\n",
            p,
        )
        .unwrap();
        assert_eq!(ok.names(), ["a"]);
        let err = ContextsFile::parse(
            "[context.a]\nseeds = [\"h:1\"]\ncluster = \"a\"\nkey_file = \"k\"\ncolour = 1\n",
            p,
        )
        .unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
        let err = ContextsFile::parse(
            "[context.a]\nseeds = []\ncluster = \"a\"\nkey_file = \"k\"\n",
            p,
        )
        .unwrap_err();
        assert!(err.to_string().contains("context.a.seeds"), "{err}");
        let err = ok.target("b", Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("no context `b`"), "{err}");
        // A key that does not load is the target's reason, not an error here.
        let t = ok.target("a", Duration::from_secs(1)).unwrap();
        assert!(t.auth.is_err());
    }
}
