//! `config/patrol.example.toml` stays valid and complete: it parses, and
//! every section and key holds the value the file gives (not a default).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use patrol_config::{Config, SmtpSecurity};

const EXAMPLE: &str = include_str!("../patrol.example.toml");

fn example() -> Config {
    Config::parse(EXAMPLE, Path::new("patrol.example.toml"))
        .unwrap_or_else(|e| panic!("the example config does not parse:\n{e}"))
}

#[test]
fn node_section() {
    let c = example();
    assert_eq!(c.node.name, "node-a1");
    assert_eq!(c.node.cluster, "prod-eu");
    assert_eq!(c.node.bind, "0.0.0.0:7946".parse::<SocketAddr>().unwrap());
    assert_eq!(
        c.node.advertise,
        Some("10.0.1.17:7946".parse::<SocketAddr>().unwrap())
    );
    assert_eq!(c.advertise_addr(), c.node.advertise.unwrap());
    assert_eq!(
        c.node.seeds,
        [
            "10.0.1.10:7946",
            "10.0.2.10:7946",
            "patrol-seed.internal:7946"
        ]
    );
    assert_eq!(c.node.key_file, PathBuf::from("/etc/patrol/cluster.key"));
    let tags: Vec<(&str, &str)> = c
        .node
        .tags
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(tags, [("dc", "b"), ("rack", "r12"), ("role", "etcd")]);
}

#[test]
fn control_sweep_and_checks_sections() {
    let c = example();
    assert_eq!(
        c.control.listen,
        "127.0.0.1:7947".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(c.sweep.max_concurrent, 2);
    assert_eq!(c.sweep.default_deadline, Duration::from_secs(5));
    assert_eq!(c.checks.profiles, ["k8s-node"]);
    assert_eq!(c.checks.concurrency, 8);
    assert_eq!(c.checks.default_timeout, Duration::from_secs(10));
    assert_eq!(c.checks.blocking_per_kind, 4);
}

#[test]
fn mail_and_report_sections() {
    let c = example();
    let mail = c.mail.as_ref().expect("the example has a [mail] section");
    assert_eq!(mail.smtp_host.as_deref(), Some("smtp.example.net"));
    assert_eq!(mail.smtp_port, Some(587));
    assert_eq!(mail.security, SmtpSecurity::Starttls);
    assert_eq!(mail.username.as_deref(), Some("patrol"));
    assert_eq!(
        mail.password_file.as_deref(),
        Some(Path::new("/etc/patrol/smtp.password"))
    );
    assert_eq!(mail.from, "patrol@example.net");
    assert_eq!(mail.to, ["ops@example.net", "oncall@example.net"]);
    assert_eq!(mail.subject_prefix, "[patrol prod-eu]");
    assert_eq!(
        c.report.history_dir,
        PathBuf::from("/var/lib/patrol/history")
    );
    assert_eq!(c.report.out_dir, PathBuf::from("/var/lib/patrol/reports"));
    assert_eq!(c.report.keep_sweeps, 400);
    assert_eq!(c.report.time_zone.as_deref(), Some("UTC"));
    assert_eq!(
        c.metrics.listen,
        Some("127.0.0.1:9477".parse::<SocketAddr>().unwrap())
    );
}

#[test]
fn check_tables_are_kept_in_order() {
    let c = example();
    let ids: Vec<&str> = c
        .check
        .iter()
        .map(|t| t.get("id").and_then(|v| v.as_str()).unwrap_or("(no id)"))
        .collect();
    assert_eq!(
        ids,
        [
            "fs-file-max",
            "swappiness",
            "tcp-congestion",
            "containerd-state",
            "zombies",
            "etcd-running",
            "disk-space",
            "chronyd",
            "apiserver-connect",
            "uplink-errors",
            "pod-log-growth",
            "sysctl-dropins",
            "ntp-offset",
            "containerd-package"
        ]
    );
    for t in &c.check {
        assert!(t.get("type").is_some(), "a [[check]] without type: {t:?}");
    }
}

/// Every key the model knows appears in the example: serializing the
/// parsed config's sections must give no key the example does not set.
#[test]
fn example_sets_every_key_of_every_section() {
    let table: toml::Table = toml::from_str(EXAMPLE).unwrap();
    let c = example();
    let sections: [(&str, toml::Value); 6] = [
        ("node", toml::Value::try_from(&c.node).unwrap()),
        ("control", toml::Value::try_from(&c.control).unwrap()),
        ("sweep", toml::Value::try_from(&c.sweep).unwrap()),
        ("checks", toml::Value::try_from(&c.checks).unwrap()),
        ("report", toml::Value::try_from(&c.report).unwrap()),
        (
            "mail",
            toml::Value::try_from(c.mail.as_ref().unwrap()).unwrap(),
        ),
    ];
    for (name, model) in sections {
        let written = table
            .get(name)
            .and_then(|v| v.as_table())
            .unwrap_or_else(|| panic!("the example has no [{name}] section"));
        for key in model.as_table().unwrap().keys() {
            assert!(
                written.contains_key(key),
                "the example does not show {name}.{key}"
            );
        }
    }
}
