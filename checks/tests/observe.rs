//! Observe-only checks: a check without an expectation (or with
//! `observe = true`) records its value, passes whenever it could observe,
//! and is still an `error` when it could not.

mod support;

use std::time::Duration;

use patrol_checks::{CheckSpec, Observed, Status};
use support::{one, Fixture};

fn problems(text: &str) -> Vec<(String, String)> {
    let table: toml::Table = toml::from_str(text).unwrap();
    let check = table["check"].as_array().unwrap()[0].as_table().unwrap();
    match CheckSpec::from_table(check, Duration::from_secs(5), None) {
        Ok(_) => Vec::new(),
        Err(p) => p,
    }
}

#[tokio::test]
async fn a_sysctl_without_expect_passes_with_its_value() {
    let f = Fixture::new();
    f.file("/proc/sys/net/ipv4/tcp_congestion_control", "bbr\n");
    let o = one(
        f.host(),
        "[[check]]\nid = \"cc\"\ntype = \"sysctl\"\nkey = \"net.ipv4.tcp_congestion_control\"\n",
    )
    .await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    assert_eq!(o.observed, Observed::Text("bbr".into()));
    assert_eq!(o.expected, "(observe only)");
}

#[tokio::test]
async fn an_observe_only_check_that_cannot_observe_is_still_an_error() {
    let f = Fixture::new();
    let o = one(
        f.host(),
        "[[check]]\nid = \"cc\"\ntype = \"sysctl\"\nkey = \"net.nope\"\n",
    )
    .await;
    assert_eq!(o.status, Status::Error, "{o:?}");
}

#[tokio::test]
async fn observe_true_turns_a_default_expectation_and_an_exit_code_into_data() {
    let f = Fixture::new();
    f.script(
        "/bin/systemctl",
        "printf 'LoadState=loaded\\nActiveState=failed\\n'",
    );
    let unit = one(
        f.host(),
        "[[check]]\nid = \"u\"\ntype = \"systemd_unit\"\nunit = \"containerd.service\"\nobserve = true\n",
    )
    .await;
    assert_eq!(unit.status, Status::Pass, "{unit:?}");
    assert_eq!(unit.observed.to_string(), "failed");

    let critical = f.script("/bin/critical", "echo 'CRITICAL - 3 things'; exit 2");
    let cmd = one(
        f.host(),
        &format!(
            "[[check]]\nid = \"c\"\ntype = \"command\"\nprogram = \"{}\"\nobserve = true\n",
            critical.display()
        ),
    )
    .await;
    assert_eq!(cmd.status, Status::Pass, "{cmd:?}");
    assert_eq!(cmd.observed.to_string(), "CRITICAL - 3 things");
}

#[test]
fn observe_with_an_expectation_is_a_problem_naming_observe() {
    let p = problems(
        "[[check]]\nid = \"s\"\ntype = \"sysctl\"\nkey = \"vm.swappiness\"\nexpect = 0\nobserve = true\n",
    );
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].0, "observe");
}

#[test]
fn a_gauge_without_expect_must_say_observe() {
    let p = problems("[[check]]\nid = \"z\"\ntype = \"process_count\"\ncount = \"zombies\"\n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].0, "expect");
    assert!(p[0].1.contains("observe = true"), "{}", p[0].1);
    assert!(problems(
        "[[check]]\nid = \"z\"\ntype = \"process_count\"\ncount = \"zombies\"\nobserve = true\n"
    )
    .is_empty());
}
