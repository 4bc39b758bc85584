//! What `dist/` ships stays consistent with the code: the Kubernetes
//! ConfigMap's `patrol.toml` is a valid config whose checks load, the
//! DaemonSet mounts what that config points at (identities by enrollment
//! included), the CronJob signs with an operator identity, and every
//! Secret a manifest mounts is one `secret.yaml` defines; the .deb's
//! config runs with identities, says what a fresh install lacks, and
//! enrolls once its enrollment lines are uncommented, and the systemd
//! units write only where they may and agree with it. (The manifests
//! themselves are validated against the Kubernetes schemas by
//! `.ci/kubernetes`; the package is built, installed and run by
//! `.ci/deb`.)

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

/// The .deb's `patrol.toml` with `/etc/patrol/` and `/var/lib/patrol/`
/// moved under `root`, parsed as node `web-1`.
fn deb_config(text: &str, root: &Path) -> patrol_config::Config {
    let text = text
        .replace("/etc/patrol/", &format!("{}/etc/", root.display()))
        .replace("/var/lib/patrol/", &format!("{}/lib/", root.display()));
    let overrides = patrol_config::NodeOverrides {
        advertise: None,
        name: Some("web-1".into()),
    };
    patrol_config::Config::parse_with(&text, Path::new("deb/patrol.toml"), &overrides)
        .unwrap_or_else(|e| panic!("the .deb's patrol.toml is not valid:\n{e}"))
}

/// The value of `Key=` in a unit file.
fn unit_value<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in the unit"))
}

#[test]
fn the_deb_runs_with_identities_says_what_a_fresh_install_lacks_and_enrolls_once_uncommented() {
    let text = dist("deb/patrol.toml");
    let config = deb_config(&text, Path::new("/nonexistent"));
    let trust = config
        .trust
        .as_ref()
        .expect("the .deb's config has [trust]");
    assert!(trust.enroll.is_none(), "enrollment is optional: commented");
    // The agent's unit may write only its StateDirectory and
    // LogsDirectory (ProtectSystem=strict): an enrolled key and
    // certificate, the roster and the audit log go there.
    let agent = dist("systemd/patrol-agent.service");
    assert_eq!(unit_value(&agent, "ProtectSystem"), "strict");
    let state = Path::new("/var/lib").join(unit_value(&agent, "StateDirectory"));
    let logs = Path::new("/var/log").join(unit_value(&agent, "LogsDirectory"));
    let deb = deb_config(&text, Path::new("/x"));
    let t = deb.trust.as_ref().unwrap();
    for (what, path) in [
        ("cert", &t.cert),
        ("key", &t.key),
        ("roster_file", &t.roster_file),
    ] {
        assert!(
            path.starts_with("/x/lib"),
            "[trust] {what} is under /var/lib/patrol"
        );
    }
    assert_eq!(state, Path::new("/var/lib/patrol"));
    assert!(
        t.audit_log.starts_with(&logs),
        "the audit log is under {}",
        logs.display()
    );
    let postinst = dist("deb/postinst");
    assert!(
        postinst.contains(&logs.display().to_string()),
        "postinst makes {} for an agent started outside systemd",
        logs.display()
    );

    // A fresh install: the agent names what it lacks, first the root,
    // then (without enrollment) its own certificate.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let fresh = deb_config(&text, root);
    let e = patrol_agent::daemon::check_identity_files(&fresh)
        .unwrap_err()
        .to_string();
    assert!(e.contains("ca_bundle") && e.contains("etc/ca.crt"), "{e}");
    std::fs::write(root.join("etc/ca.crt"), "").unwrap();
    let e = patrol_agent::daemon::check_identity_files(&fresh)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("lib/node.crt")
            && e.contains("[trust] enroll")
            && e.contains("patrol ca issue node --name web-1"),
        "{e}"
    );
    // Its enrollment lines uncommented: the agent will enroll itself.
    let enrolling = text
        .replace("# enroll = ", "enroll = ")
        .replace("# enroll_token_file = ", "enroll_token_file = ");
    let config = deb_config(&enrolling, root);
    let t = config.trust.as_ref().unwrap();
    let service = t.enroll.as_deref().expect("an enroll line to uncomment");
    assert!(
        t.enroll_token_file.is_some(),
        "an enroll_token_file line to uncomment"
    );
    patrol_agent::daemon::check_identity_files(&config)
        .expect("enrolls: no certificate needed yet");

    // The enrollment service's unit listens on the port the config names,
    // reads the deny list the agents read, and writes only its state and
    // log directories.
    let enroll = dist("systemd/patrol-enroll.service");
    let serve = unit_value(&enroll, "ExecStart");
    let port = service.rsplit(':').next().unwrap();
    assert!(
        serve.contains(&format!("--listen 0.0.0.0:{port} ")),
        "{serve}"
    );
    let arg = |flag: &str| {
        serve
            .split(&format!("{flag} "))
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .unwrap_or_else(|| panic!("no {flag} in {serve}"))
    };
    assert_eq!(arg("--deny-list"), "/etc/patrol/revoked.txt");
    assert!(text.contains("deny_list = \"/etc/patrol/revoked.txt\""));
    assert!(arg("--tokens").starts_with("/var/lib/patrol/"));
    assert!(arg("--audit-log").starts_with("/var/log/patrol/"));
    assert_eq!(unit_value(&enroll, "StateDirectory"), "patrol");
    assert_eq!(unit_value(&enroll, "LogsDirectory"), "patrol");

    // The nightly sweep signs as an operator, for the config's profile.
    let sweep = dist("systemd/patrol-sweep.service");
    assert_eq!(
        unit_value(&sweep, "Environment"),
        "PATROL_IDENTITY=/etc/patrol/operator"
    );
    for profile in &deb.checks.profiles {
        assert!(
            unit_value(&sweep, "ExecStart").contains(&format!("--profile {profile}")),
            "the nightly sweep selects the config's profile {profile}"
        );
    }

    // The package ships every unit and the deny list, as conffiles where
    // an admin edits them.
    let cargo = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../patrol-cli/Cargo.toml"),
    )
    .unwrap();
    for entry in
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/systemd")).unwrap()
    {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            cargo.contains(&format!("\"../dist/systemd/{name}\"")),
            "the .deb does not ship {name}"
        );
        assert!(
            dist("deb/postrm").contains(&name),
            "postrm does not clean up after {name}"
        );
    }
    assert!(
        cargo.contains("\"/etc/patrol/revoked.txt\""),
        "revoked.txt is a conffile"
    );
}
