//! What `dist/` ships stays consistent with the code: the Kubernetes
//! ConfigMap's `patrol.toml` is a valid config whose checks load, and the
//! DaemonSet mounts what that config points at. (The manifests themselves
//! are validated against the Kubernetes schemas by `.ci/kubernetes`.)

use std::path::{Path, PathBuf};

fn dist(path: &str) -> String {
    let p: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../dist")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The block scalar under `key: |` in a YAML text, dedented.
fn block(yaml: &str, key: &str) -> String {
    let mut lines = yaml.lines().skip_while(|l| l.trim() != format!("{key}: |"));
    let head = lines
        .next()
        .unwrap_or_else(|| panic!("no `{key}: |` block"));
    let outer = head.len() - head.trim_start().len();
    let body: Vec<&str> = lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > outer)
        .collect();
    let indent = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    body.iter()
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_kubernetes_configmap_holds_a_valid_config_that_the_daemonset_mounts() {
    let text = block(&dist("kubernetes/configmap.yaml"), "patrol.toml");
    // The DaemonSet gives the node's address as PATROL_ADVERTISE.
    let overrides = patrol_config::NodeOverrides {
        advertise: Some("10.0.0.7:7946".parse().unwrap()),
        name: Some("node-7".into()),
    };
    assert!(
        patrol_config::Config::parse(&text, Path::new("x")).is_err(),
        "bind 0.0.0.0 without the advertised address is refused"
    );
    let config = patrol_config::Config::parse_with(
        &text,
        Path::new("configmap.yaml:patrol.toml"),
        &overrides,
    )
    .unwrap_or_else(|e| panic!("the ConfigMap's patrol.toml is not valid:\n{e}"));
    assert_eq!(config.node.name, "node-7");
    let ds = dist("kubernetes/daemonset.yaml");
    assert!(
        ds.contains("name: PATROL_ADVERTISE"),
        "the DaemonSet sets the advertised address"
    );
    let catalog = patrol_checks::Catalog::from_config(&config)
        .unwrap_or_else(|e| panic!("its checks do not load:\n{e}"));
    assert!(catalog.len() > 5, "the k8s-node profile runs");
    let root = config.node.host_root.as_ref().expect("host_root is set");
    assert!(
        ds.contains(&format!("mountPath: {}\n", root.display())),
        "host_root is mounted"
    );
    let keys_dir = config.node.key_file.parent().unwrap();
    assert!(
        ds.contains(&format!("mountPath: {}\n", keys_dir.display())),
        "the key Secret is mounted where key_file points"
    );
    assert!(
        ds.contains("defaultMode: 0400"),
        "the agent refuses a key file others can read"
    );
    let metrics = config.metrics.listen.expect("metrics on");
    assert!(ds.contains(&format!("prometheus.io/port: \"{}\"", metrics.port())));
    let cron = dist("kubernetes/cronjob.yaml");
    assert!(
        cron.contains(&format!("--seed {}", config.control.listen)),
        "the CronJob reaches the control port"
    );
}
