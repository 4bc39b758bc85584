//! The CIS worker-node benchmark across a fleet (issue 26): four real
//! agents on loopback, each inspecting its own `host_root` tree with a
//! running kubelet (as `/proc` shows it) and a KubeletConfiguration; one
//! node has drifted to `authentication.anonymous.enabled: true`. One sweep
//! finds exactly that node, with the value it runs with, and the report
//! groups it as one anomaly on one node.

use std::path::Path;
use std::time::{Duration, Instant};

use patrol_tests::process::{cluster_key, patrol, write_config, AgentProcess};

/// A node's tree: a kubelet process reading `/var/lib/kubelet/config.yaml`
/// with anonymous authentication `anonymous`.
fn node_tree(root: &Path, anonymous: bool) {
    let write = |path: &str, text: &str| {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write(
        "proc/4242/cmdline",
        "/usr/bin/kubelet\0--kubeconfig=/etc/kubernetes/kubelet.conf\0--config=/var/lib/kubelet/config.yaml\0",
    );
    write("proc/4242/comm", "kubelet\n");
    write(
        "var/lib/kubelet/config.yaml",
        &format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nauthentication:\n  anonymous:\n    enabled: {anonymous}\nauthorization:\n  mode: Webhook\n"
        ),
    );
}

fn start(dir: &Path, key: &Path, name: &str, seeds: &[std::net::SocketAddr]) -> AgentProcess {
    let root = dir.join(format!("{name}-root"));
    node_tree(&root, name == "w3");
    let config = write_config(
        dir,
        name,
        key,
        seeds,
        0,
        "[checks]\nprofiles = [\"cis-node\"]\n",
    );
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replacen(
        "[node]\n",
        &format!("[node]\nhost_root = \"{}\"\n", root.display()),
        1,
    );
    std::fs::write(&config, text).unwrap();
    AgentProcess::start(&config)
}

#[test]
fn one_node_drifted_on_anonymous_auth_is_found_and_grouped_across_the_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let key = cluster_key(dir.path(), "cluster.key");
    let first = start(dir.path(), &key, "w0", &[]);
    let others: Vec<AgentProcess> = ["w1", "w2", "w3"]
        .iter()
        .map(|n| start(dir.path(), &key, n, &[first.gossip]))
        .collect();
    let control = first.control.to_string();
    let config = first.config.to_str().unwrap().to_string();
    let started = Instant::now();
    let (out, doc) = loop {
        let out = patrol(&[
            "sweep",
            "--seed",
            &control,
            "--config",
            &config,
            "--checks",
            "cis-4.2.1",
            "--deadline",
            "3s",
            "--format",
            "json",
        ]);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if doc["counts"]["expected"] == 4 && doc["counts"]["no_answer"] == 0 {
            break (out, doc);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the four agents did not all answer: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    // Exit 2: a check failed (the drifted node).
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nodes = doc["nodes"].as_array().unwrap();
    for node in nodes {
        let check = &node["checks"][0];
        assert_eq!(check["id"], "cis-4.2.1", "{node}");
        if node["name"] == "w3" {
            assert_eq!(node["state"], "failing", "{node}");
            assert_eq!(check["status"], "fail", "{node}");
            assert_eq!(check["observed"], "true", "{node}");
        } else {
            assert_eq!(node["state"], "ok", "{node}");
            assert_eq!(check["observed"], "false", "{node}");
        }
    }
    // The report groups it: one anomaly, on one node of four.
    let file = dir.path().join("sweep.json");
    std::fs::write(&file, &out.stdout).unwrap();
    let report = patrol(&["report", file.to_str().unwrap(), "--text"]);
    let text = String::from_utf8_lossy(&report.stdout);
    let group = text
        .lines()
        .position(|l| l.contains("[FAIL]") && l.contains("cis-4.2.1"))
        .unwrap_or_else(|| panic!("no cis-4.2.1 anomaly group in the report:\n{text}"));
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[group].contains("cis-4.2.1 = true") && lines[group].ends_with("- 1 node"),
        "{text}"
    );
    assert_eq!(lines[group + 1].trim(), "w3", "{text}");
    assert!(
        text.contains("cis-4.2.1: false on 3 nodes, true on 1 (w3)"),
        "{text}"
    );
    drop(others);
    drop(first);
}
