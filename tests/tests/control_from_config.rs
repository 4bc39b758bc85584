//! `patrol sweep --config FILE` and `patrol members --config FILE` without
//! `--seed` ask the agent the file configures, at its `[control] listen`,
//! on a real agent process.

use std::net::TcpListener;

use patrol_tests::process::{patrol, write_config, AgentProcess};

#[test]
fn without_seed_the_configs_control_address_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cluster.key");
    let out = patrol(&["keys", "generate", "--out", key.to_str().unwrap()]);
    assert!(out.status.success());
    // A port free a moment ago; the agent binds it below.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let checks = "[[check]]\nid = \"pid-max\"\ntype = \"sysctl\"\nkey = \"kernel.pid_max\"\nexpect = { min = 1 }\n";
    let config = write_config(dir.path(), "ctl0", &key, &[], 0, checks);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    std::fs::write(&config, text).unwrap();
    let agent = AgentProcess::start(&config);
    assert_eq!(agent.control.port(), port);
    let config = config.to_str().unwrap();

    let out = patrol(&["sweep", "--config", config, "--deadline", "2s"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("coordinated by ctl0"), "{stdout}");
    assert!(stdout.contains("1 expected: 1 ok"), "{stdout}");

    let out = patrol(&["members", "--config", config]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ctl0 (this agent)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Port 0 is chosen at start: no address to ask, and the error says so.
    let zero = dir.path().join("zero.toml");
    std::fs::write(
        &zero,
        std::fs::read_to_string(config)
            .unwrap()
            .replace(&format!("127.0.0.1:{port}"), "127.0.0.1:0"),
    )
    .unwrap();
    let out = patrol(&["sweep", "--config", zero.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("control.listen has port 0 (chosen at start): pass --seed HOST:PORT"),
        "{stderr}"
    );
}
