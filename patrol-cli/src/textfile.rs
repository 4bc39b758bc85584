//! `patrol sweep --prometheus FILE`: the sweep as a node_exporter
//! textfile-collector file, so a Prometheus that already scrapes
//! node_exporter on the host running the nightly sweep sees fleet-wide
//! figures without another scrape target.
//!
//! Series (gauges, one set per cluster):
//!
//! | series | labels | value |
//! |---|---|---|
//! | `patrol_sweep_nodes` | `cluster`, `state` (ok, failing, no_answer, down) | nodes in that state |
//! | `patrol_sweep_failing_nodes` | `cluster`, `check` | nodes whose check was `fail` or `error` (0 for checks that ran and passed everywhere) |
//! | `patrol_sweep_warning_nodes` | `cluster`, `check` | nodes whose check was `warn` |
//! | `patrol_sweep_anomaly_groups` | `cluster` | anomaly groups as the report counts them (check, status, observed value) |
//! | `patrol_sweep_start_time_seconds` | `cluster` | unix time the sweep started |
//! | `patrol_sweep_duration_seconds` | `cluster` | until every node was accounted for |
//! | `patrol_sweep_cluster_up` | `cluster` | 1 when the cluster was swept, 0 when none of its agents answered (`--context`) |
//!
//! No sample carries a timestamp (the textfile collector refuses them;
//! the start time is a value instead). The file is written to a temporary
//! name in the same directory and renamed over `FILE`, so the collector
//! never reads half a file ([`write_atomic`], which `patrol members
//! --stats --prometheus FILE` uses for the agent's counters too).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use patrol_checks::{NodeState, Status, SweepView};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabel {
    cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    cluster: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    cluster: String,
    check: String,
}

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// The textfile for one or more sweeps (one per cluster) and the clusters
/// that could not be swept, in the classic Prometheus text format.
pub fn render<'a>(
    docs: impl IntoIterator<Item = &'a dyn SweepView>,
    unreachable: &[String],
) -> String {
    let up = Family::<ClusterLabel, Gauge>::default();
    for cluster in unreachable {
        up.get_or_create(&ClusterLabel {
            cluster: cluster.clone(),
        })
        .set(0);
    }
    let nodes = Family::<StateLabels, Gauge>::default();
    let failing = Family::<CheckLabels, Gauge>::default();
    let warning = Family::<CheckLabels, Gauge>::default();
    let groups = Family::<ClusterLabel, Gauge>::default();
    let started = Family::<ClusterLabel, FloatGauge>::default();
    let duration = Family::<ClusterLabel, FloatGauge>::default();
    for doc in docs {
        let h = doc.head();
        let cluster = h.cluster.to_string();
        // One pass over the nodes: by state, and per check.
        let mut by_state: BTreeMap<NodeState, i64> = BTreeMap::new();
        let mut per_check: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for n in doc.nodes() {
            *by_state.entry(n.state).or_default() += 1;
            for c in &n.checks {
                if !per_check.contains_key(&c.id) {
                    per_check.insert(c.id.clone(), (0, 0));
                }
                let Some(entry) = per_check.get_mut(&c.id) else {
                    continue;
                };
                match c.status {
                    Status::Fail | Status::Error => entry.0 += 1,
                    Status::Warn => entry.1 += 1,
                    Status::Pass => {}
                }
            }
        }
        for state in [
            NodeState::Ok,
            NodeState::Failing,
            NodeState::NoAnswer,
            NodeState::Down,
        ] {
            let n = by_state.get(&state).copied().unwrap_or(0);
            nodes
                .get_or_create(&StateLabels {
                    cluster: cluster.clone(),
                    state: state.as_str().to_string(),
                })
                .set(n);
        }
        for (check, (f, w)) in per_check {
            let labels = CheckLabels {
                cluster: cluster.clone(),
                check,
            };
            failing.get_or_create(&labels).set(f);
            warning.get_or_create(&labels).set(w);
        }
        let label = ClusterLabel { cluster };
        up.get_or_create(&label).set(1);
        groups
            .get_or_create(&label)
            .set(patrol_report::aggregate::group_anomalies(doc).len() as i64);
        started
            .get_or_create(&label)
            .set(h.started_at_unix_ms as f64 / 1000.0);
        duration
            .get_or_create(&label)
            .set(h.timing.completed_ms as f64 / 1000.0);
    }
    let mut registry = Registry::with_prefix("patrol_sweep");
    registry.register("nodes", "Nodes of the last sweep by state", nodes);
    registry.register(
        "failing_nodes",
        "Nodes whose check was fail or error in the last sweep",
        failing,
    );
    registry.register(
        "warning_nodes",
        "Nodes whose check was warn in the last sweep",
        warning,
    );
    registry.register(
        "anomaly_groups",
        "Anomaly groups (check, status, observed value) in the last sweep",
        groups,
    );
    registry.register(
        "start_time_seconds",
        "Unix time the last sweep started",
        started,
    );
    registry.register(
        "duration_seconds",
        "Seconds until every node of the last sweep was accounted for",
        duration,
    );
    registry.register(
        "cluster_up",
        "1 when the cluster was swept, 0 when none of its agents answered",
        up,
    );
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    patrol_agent::metrics::prometheus_text(&text)
}

/// Write `text` to `path` atomically (temporary file in the same
/// directory, then rename), world-readable like node_exporter expects.
pub fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("cannot write {}: {e}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use patrol_checks::Observed;
    use patrol_report::sample::{document, node, outcome};

    #[test]
    fn counts_nodes_by_state_and_failing_nodes_per_check_with_no_timestamps() {
        let bad = || {
            outcome(
                "fs.file-max",
                Status::Fail,
                Observed::Number(65536.0),
                ">= 1",
            )
        };
        let good = || outcome("fs.file-max", Status::Pass, Observed::Number(2e6), ">= 1");
        let warn = || outcome("ntp", Status::Warn, Observed::Number(0.3), "< 0.1");
        let doc = document(
            "prod",
            "01",
            1_795_316_400_000,
            vec![
                node("a", &[], NodeState::Ok, vec![bad(), warn()]),
                node("b", &[], NodeState::Ok, vec![bad()]),
                node("c", &[], NodeState::Ok, vec![good()]),
                node("d", &[], NodeState::Down, vec![]),
            ],
        );
        let text = render([&doc as &dyn SweepView], &["gone".to_string()]);
        for line in [
            "patrol_sweep_nodes{cluster=\"prod\",state=\"failing\"} 2",
            "patrol_sweep_nodes{cluster=\"prod\",state=\"ok\"} 1",
            "patrol_sweep_nodes{cluster=\"prod\",state=\"down\"} 1",
            "patrol_sweep_nodes{cluster=\"prod\",state=\"no_answer\"} 0",
            "patrol_sweep_failing_nodes{cluster=\"prod\",check=\"fs.file-max\"} 2",
            "patrol_sweep_failing_nodes{cluster=\"prod\",check=\"ntp\"} 0",
            "patrol_sweep_warning_nodes{cluster=\"prod\",check=\"ntp\"} 1",
            "patrol_sweep_anomaly_groups{cluster=\"prod\"} 2",
            "patrol_sweep_start_time_seconds{cluster=\"prod\"} 1795316400.0",
            "patrol_sweep_cluster_up{cluster=\"prod\"} 1",
            "patrol_sweep_cluster_up{cluster=\"gone\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
        // name{labels} value: never a third field (a timestamp).
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            assert_eq!(
                l.rsplit('}').next().unwrap().split_whitespace().count(),
                1,
                "{l}"
            );
        }
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    fn the_file_is_replaced_whole_and_readable_by_the_collector() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("patrol.prom");
        std::fs::write(&path, "old").unwrap();
        write_atomic(&path, "new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o644);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left behind");
        assert!(write_atomic(&dir.path().join("no/such/dir/x.prom"), "x").is_err());
    }
}
