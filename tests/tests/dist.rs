//! What `dist/` ships stays consistent with the code: the Kubernetes
//! ConfigMap's `patrol.toml` is a valid config whose checks load, the
//! DaemonSet mounts what that config points at (identities by enrollment
//! included), the CronJob signs with an operator identity, and every
//! Secret a manifest mounts is one `secret.yaml` defines. (The manifests
//! themselves are validated against the Kubernetes schemas by
//! `.ci/kubernetes`.)

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

/// Every `KEY: VALUE` value in a YAML text.
fn values<'a>(yaml: &'a str, key: &str) -> Vec<&'a str> {
    yaml.lines()
        .filter_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
        .map(|v| v.trim().trim_matches('"'))
        .collect()
}

fn config() -> patrol_config::Config {
    let text = block(&dist("kubernetes/configmap.yaml"), "patrol.toml");
    let overrides = patrol_config::NodeOverrides {
        advertise: Some("10.0.0.7:7946".parse().unwrap()),
        name: Some("node-7".into()),
    };
    patrol_config::Config::parse_with(&text, Path::new("configmap.yaml:patrol.toml"), &overrides)
        .unwrap_or_else(|e| panic!("the ConfigMap's patrol.toml is not valid:\n{e}"))
}

#[test]
fn the_daemonset_enrolls_each_node_with_the_token_secret_and_keeps_its_key_on_the_node() {
    let config = config();
    let trust = config.trust.as_ref().expect("the ConfigMap has [trust]");
    let ds = dist("kubernetes/daemonset.yaml");
    // The node name is spec.nodeName: each pod enrolls as its node.
    let name_env = ds
        .split("name: PATROL_NODE_NAME")
        .nth(1)
        .expect("the DaemonSet sets PATROL_NODE_NAME");
    assert!(
        name_env
            .split("- name:")
            .next()
            .unwrap()
            .contains("fieldPath: spec.nodeName"),
        "PATROL_NODE_NAME comes from spec.nodeName"
    );
    let mounts = values(&ds, "mountPath");
    let mounted = |p: &Path| mounts.iter().any(|m| p.parent() == Some(Path::new(m)));
    let token = trust.enroll_token_file.as_ref().expect("enroll_token_file");
    for (what, path) in [
        ("ca_bundle", &trust.ca_bundle),
        ("enroll_token_file", token),
        ("cert", &trust.cert),
        ("key", &trust.key),
        ("audit_log", &trust.audit_log),
        ("roster_file", &trust.roster_file),
    ] {
        assert!(
            mounted(path),
            "[trust] {what} ({}) is on a mounted volume",
            path.display()
        );
    }
    // The token and root come from the Secret patrol-enroll, read-only;
    // the key is written to the node's own disk.
    assert!(ds.contains("secretName: patrol-enroll"), "{ds}");
    assert!(ds.contains("path: /var/lib/patrol-agent\n            type: DirectoryOrCreate"));
    // The agents reach the enrollment service by its Service.
    let enroll = trust.enroll.as_deref().expect("[trust] enroll");
    let (host, port) = enroll.rsplit_once(':').unwrap();
    let service = dist("kubernetes/enroll.yaml");
    assert!(host.starts_with("patrol-enroll.patrol.svc"), "{enroll}");
    assert!(
        values(&service, "port").contains(&port),
        "the Service listens on {port}"
    );
    assert!(
        service.contains(&format!("0.0.0.0:{port}")),
        "the service listens on {port}"
    );
}

#[test]
fn the_cronjob_signs_with_the_operator_secret_and_every_mounted_secret_exists() {
    let cron = dist("kubernetes/cronjob.yaml");
    let dir = cron
        .split("--identity ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .expect("the CronJob sweeps with --identity");
    assert!(
        values(&cron, "mountPath").contains(&dir),
        "{dir} is mounted"
    );
    assert!(cron.contains("secretName: patrol-operator"));
    let secrets = dist("kubernetes/secret.yaml");
    let defined: Vec<&str> = secrets
        .split("\n---\n")
        .filter(|doc| doc.contains("kind: Secret"))
        .filter_map(|doc| values(doc, "name").first().copied())
        .collect();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/kubernetes");
    let mut used = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for name in values(&text, "secretName") {
            used += 1;
            assert!(
                defined.contains(&name),
                "{} mounts Secret {name}, which secret.yaml does not define ({defined:?})",
                path.display()
            );
        }
    }
    assert!(used >= 5, "only {used} Secret mounts found");
}
