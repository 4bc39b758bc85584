//! The JSON Schema of what `patrol sweep --format json` and `patrol check
//! --format json` print: generated from the model types with schemars,
//! committed in `checks/model/schema/`, and checked against the output of
//! the real binaries (agents as processes on loopback).
//!
//! After changing a model type, regenerate the files with
//! `PATROL_BLESS=1 cargo test -p patrol-tests --test schema`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use patrol_model::{CheckOutcome, NodeEntry, SweepDocument};
use patrol_tests::process::{cluster_key, patrol, write_config, AgentProcess};
use serde_json::Value;

fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../checks/model/schema")
}

fn generated() -> [(&'static str, Value); 2] {
    [
        (
            "sweep-document.schema.json",
            serde_json::to_value(schemars::schema_for!(SweepDocument)).unwrap(),
        ),
        (
            "check-outcomes.schema.json",
            serde_json::to_value(schemars::schema_for!(Vec<CheckOutcome>)).unwrap(),
        ),
    ]
}

fn committed(name: &str) -> Value {
    let path = schema_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn validate(schema: &Value, instance: &Value, what: &str) {
    let validator = jsonschema::validator_for(schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match the schema:\n{}\n{}",
        errors.join("\n"),
        serde_json::to_string_pretty(instance).unwrap()
    );
}

#[test]
fn the_committed_schemas_are_what_the_model_types_generate() {
    for (name, schema) in generated() {
        if std::env::var_os("PATROL_BLESS").is_some() {
            let mut text = serde_json::to_string_pretty(&schema).unwrap();
            text.push('\n');
            std::fs::create_dir_all(schema_dir()).unwrap();
            std::fs::write(schema_dir().join(name), text).unwrap();
        }
        assert_eq!(
            committed(name),
            schema,
            "checks/model/schema/{name} is stale: regenerate it with \
             PATROL_BLESS=1 cargo test -p patrol-tests --test schema"
        );
    }
}

#[test]
fn the_schema_refuses_the_old_bincode_shaped_json() {
    let schema = committed("check-outcomes.schema.json");
    let validator = jsonschema::validator_for(&schema).unwrap();
    let good = serde_json::json!([{
        "id": "a", "kind": "sysctl", "status": "pass", "severity": "fail",
        "observed": 0.31, "duration_us": 3
    }]);
    assert!(validator.is_valid(&good));
    let mut bad = good.clone();
    bad[0]["status"] = "fine".into();
    assert!(!validator.is_valid(&bad), "an unknown status passed");
    let mut bad = good.clone();
    bad[0].as_object_mut().unwrap().remove("duration_us");
    assert!(!validator.is_valid(&bad), "a missing required field passed");
}

const CHECKS: &str = r#"
[[check]]
id = "pid-max"
type = "sysctl"
key = "kernel.pid_max"
expect = { min = 1 }

[[check]]
id = "plugin"
type = "command"
program = "echo 'OK - fine | load1=0.31;1;2 users=3'"
shell = true

[[check]]
id = "missing"
type = "sysctl"
key = "no.such.key"
expect = "1"
"#;

/// `jq` on the text, as a user would run it. jq is a Debian package.
fn jq(filter: &str, input: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("jq")
        .arg(filter)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run jq ({e}): install it with `apt-get install jq` (bash .ci/run does)")
        });
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "jq {filter} failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn real_sweep_and_check_output_match_the_committed_schema() {
    let dir = tempfile::tempdir().unwrap();
    let key = cluster_key(dir.path(), "cluster.key");
    let a = AgentProcess::start(&write_config(dir.path(), "s0", &key, &[], 0, CHECKS));
    let b = AgentProcess::start(&write_config(
        dir.path(),
        "s1",
        &key,
        &[a.gossip],
        0,
        CHECKS,
    ));
    let seed = a.control.to_string();
    let cfg = a.config.to_str().unwrap().to_string();
    // Until both answer (the second agent may still be joining).
    let mut doc = Value::Null;
    for _ in 0..50 {
        let out = patrol(&[
            "sweep",
            "--seed",
            &seed,
            "--config",
            &cfg,
            "--format",
            "json",
            "--deadline",
            "2s",
        ]);
        doc = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        if doc["counts"]["expected"] == 2 {
            let jq_out = jq(".nodes[0].checks[0].observed", &out.stdout);
            assert!(
                jq_out.parse::<u64>().is_ok(),
                "jq '.nodes[0].checks[0].observed' printed `{jq_out}`, not a plain number"
            );
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(doc["counts"]["expected"], 2, "{doc:#}");
    validate(
        &committed("sweep-document.schema.json"),
        &doc,
        "patrol sweep --format json",
    );
    let checks = &doc["nodes"][0]["checks"];
    assert!(checks[0]["observed"].is_u64(), "{checks:#}");
    assert_eq!(checks[1]["observed"]["load1"], 0.31, "{checks:#}");
    assert_eq!(checks[1]["observed"]["users"], 3, "{checks:#}");
    assert!(checks[2].get("observed").is_none(), "{checks:#}");
    assert!(checks[0].get("remediation").is_none(), "{checks:#}");

    // --format ndjson: one node entry per line.
    let out = patrol(&[
        "sweep", "--seed", &seed, "--config", &cfg, "--format", "ndjson",
    ]);
    let node_schema = serde_json::to_value(schemars::schema_for!(NodeEntry)).unwrap();
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for line in lines {
        validate(
            &node_schema,
            &serde_json::from_str(line).unwrap(),
            "an ndjson line",
        );
    }

    // --format junit: a suite per node, a case per check; the missing
    // sysctl is an <error> on each node.
    let out = patrol(&[
        "sweep", "--seed", &seed, "--config", &cfg, "--format", "junit",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let xml = String::from_utf8(out.stdout).unwrap();
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert!(
        xml.contains("<testsuites name=\"patrol\" tests=\"6\" failures=\"0\" errors=\"2\">"),
        "{xml}"
    );
    assert_eq!(xml.matches("<testsuite name=").count(), 2, "{xml}");

    // patrol check: an array of outcomes.
    let out = patrol(&["check", "--config", &cfg, "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outcomes: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outcomes.as_array().map(Vec::len), Some(3), "{outcomes:#}");
    validate(
        &committed("check-outcomes.schema.json"),
        &outcomes,
        "patrol check --format json",
    );
    drop(b);
}
