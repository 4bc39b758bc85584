//! Several clusters from one laptop: two meshes of real agent processes on
//! loopback, each with its own cluster name and key, swept at once through
//! a contexts file into one merged document with one exit code; a cluster
//! that cannot be reached (nobody listening, or the wrong key) is listed
//! as such.

use std::process::Command;
use std::time::{Duration, Instant};

use patrol_tests::process::{binary, cluster_key, patrol, write_cluster_config, AgentProcess};
use serde_json::Value;

const CHECKS: &str = "[[check]]\nid = \"pid-max\"\ntype = \"sysctl\"\nkey = \"kernel.pid_max\"\nexpect = { min = 1 }\n";

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn names(doc: &Value) -> Vec<String> {
    doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn two_meshes_with_their_own_keys_sweep_into_one_document_with_one_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let (alpha_dir, beta_dir) = (dir.path().join("alpha"), dir.path().join("beta"));
    std::fs::create_dir_all(&alpha_dir).unwrap();
    std::fs::create_dir_all(&beta_dir).unwrap();
    let alpha_key = cluster_key(dir.path(), "alpha.key");
    let beta_key = cluster_key(dir.path(), "beta.key");
    let a0 = AgentProcess::start(&write_cluster_config(
        &alpha_dir,
        "alpha",
        "n0",
        &alpha_key,
        &[],
        0,
        CHECKS,
    ));
    let a1 = AgentProcess::start(&write_cluster_config(
        &alpha_dir,
        "alpha",
        "n1",
        &alpha_key,
        &[a0.gossip],
        0,
        CHECKS,
    ));
    let b0 = AgentProcess::start(&write_cluster_config(
        &beta_dir,
        "beta",
        "n0",
        &beta_key,
        &[],
        0,
        CHECKS,
    ));

    let contexts = dir.path().join("contexts.toml");
    std::fs::write(
        &contexts,
        format!(
            "[context.alpha]\nseeds = [\"{a0}\", \"{a1}\"]\ncluster = \"alpha\"\nkey_file = \"{ak}\"\n\n\
             [context.beta]\nseeds = [\"{b0}\"]\ncluster = \"beta\"\nkey_file = \"{bk}\"\n\n\
             [context.gamma]\nseeds = [\"127.0.0.1:{closed}\"]\ncluster = \"gamma\"\nkey_file = \"{ak}\"\n\n\
             [context.wrong-key]\nseeds = [\"{b0}\"]\ncluster = \"beta\"\nkey_file = \"{ak}\"\n",
            a0 = a0.control,
            a1 = a1.control,
            b0 = b0.control,
            ak = alpha_key.display(),
            bk = beta_key.display(),
            closed = closed_port(),
        ),
    )
    .unwrap();
    let file = contexts.to_str().unwrap();

    // Until alpha's two agents know each other.
    let start = Instant::now();
    let doc = loop {
        let out = patrol(&[
            "sweep",
            "--contexts-file",
            file,
            "--context",
            "alpha",
            "--context",
            "beta",
            "--format",
            "json",
            "--deadline",
            "2s",
        ]);
        let doc = json(&out);
        if doc["counts"]["expected"] == 3 {
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            break doc;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "alpha never had 2 members: {doc:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // Same node names in both meshes, told apart by their cluster.
    assert_eq!(names(&doc), ["alpha/n0", "alpha/n1", "beta/n0"]);
    for n in doc["nodes"].as_array().unwrap() {
        let cluster = n["name"].as_str().unwrap().split('/').next().unwrap();
        assert_eq!(n["tags"]["cluster"], cluster, "{n:#}");
        assert_eq!(n["state"], "ok", "{n:#}");
    }
    assert_eq!(doc["cluster"], "alpha+beta");
    assert_eq!(doc["counts"]["ok"], 3);

    // Every context: two of them cannot be swept; both are listed with
    // why, the healthy clusters' nodes are all there, and the one exit
    // code says something is wrong.
    let out = patrol(&[
        "sweep",
        "--contexts-file",
        file,
        "--all-contexts",
        "--format",
        "json",
        "--deadline",
        "2s",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json(&out);
    assert_eq!(
        names(&doc),
        ["alpha/n0", "alpha/n1", "beta/n0", "gamma/*", "wrong-key/*"]
    );
    assert_eq!(doc["counts"]["no_answer"], 2, "{doc:#}");
    let gamma = &doc["nodes"][3];
    assert_eq!(gamma["state"], "no_answer");
    assert!(
        gamma["checks"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no agent answered"),
        "{gamma:#}"
    );
    let wrong = &doc["nodes"][4];
    assert!(
        wrong["checks"][0]["message"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{wrong:#}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cluster gamma could not be swept"),
        "{stderr}"
    );

    // The table says the same to a person.
    let out = patrol(&[
        "sweep",
        "--contexts-file",
        file,
        "--all-contexts",
        "--deadline",
        "2s",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("gamma/*") && table.contains("could not be swept"),
        "{table}"
    );
    assert!(
        table.contains("5 expected: 3 ok, 0 failing, 2 no answer, 0 down"),
        "{table}"
    );

    // The default file: $XDG_CONFIG_HOME/patrol/contexts.toml.
    let xdg = dir.path().join("xdg");
    std::fs::create_dir_all(xdg.join("patrol")).unwrap();
    std::fs::copy(&contexts, xdg.join("patrol/contexts.toml")).unwrap();
    let out = Command::new(binary("patrol"))
        .args(["members", "--context", "beta", "--format", "json"])
        .env("XDG_CONFIG_HOME", &xdg)
        .env_remove("PATROL_CONTEXTS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let members = json(&out);
    assert_eq!(members.as_array().map(Vec::len), Some(1), "{members:#}");

    // members talks to one cluster only; an unknown context is named.
    let out = patrol(&[
        "members",
        "--contexts-file",
        file,
        "--context",
        "alpha",
        "--context",
        "beta",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let out = patrol(&["sweep", "--contexts-file", file, "--context", "delta"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no context `delta`"));
    drop((a0, a1, b0));
}
