//! Enrollment on real processes: a real `patrol enroll serve`, real
//! `patrol-agent`s with `[trust] enroll` and no certificate on disk, and
//! `patrol enroll request`. Twenty agents enroll with one token and sweep
//! under identities; four renew 30-second certificates while sweeps run;
//! a revoked node cannot renew, and once its certificate expires the
//! sweep lists it as expired, not silent; and each
//! attack of PROTOCOL.md's enrollment threat model is refused, counted and
//! audited: a used-up, an expired and a guessed token, a token for
//! another name pattern, a replayed request, a renewal by a revoked
//! certificate, a service whose issuer does not chain to the pinned root
//! (a MITM), and an issuer revoked under running agents.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use patrol_agent::control::frame;
use patrol_agent::control::handshake::Ephemeral;
use patrol_agent::enroll::wire::{self, EnrollResponse};
use patrol_agent::envelope::Purpose;
use patrol_agent::trust::SigningKey;
use patrol_tests::process::{binary, patrol, write_config, AgentProcess};
use patrol_tests::wait_blocking;

/// Run `patrol ARGS`, which must succeed; its stdout.
fn ok(args: &[&str]) -> String {
    let out = patrol(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run `patrol ARGS`, which must fail; its stderr.
fn fails(args: &[&str]) -> String {
    let out = patrol(args);
    assert!(!out.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn s(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

/// A running `patrol enroll serve`, stopped on drop.
struct EnrollService {
    child: Child,
    addr: String,
}

impl EnrollService {
    fn start(issuer: &Path, extra: &[&str]) -> EnrollService {
        let mut child = Command::new(binary("patrol"))
            .args([
                "enroll",
                "serve",
                "--issuer",
                &s(issuer),
                "--listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start patrol enroll serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("read the ready line");
        // `patrol enroll serving on ADDR as issuer `NAME``
        let addr = line
            .split_whitespace()
            .nth(4)
            .unwrap_or_else(|| panic!("no address in `{line}`"))
            .to_string();
        EnrollService { child, addr }
    }
}

impl Drop for EnrollService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A root CA, an issuer for `names` below it, in `dir`.
fn authority(dir: &Path, names: &str) -> (PathBuf, PathBuf) {
    let ca = dir.join("ca");
    let issuer = dir.join("issuer");
    ok(&["ca", "init", "--out", &s(&ca)]);
    ok(&[
        "ca",
        "issue",
        "issuer",
        "--ca",
        &s(&ca),
        "--name",
        "enroll-1",
        "--names",
        names,
        "--out",
        &s(&issuer),
    ]);
    (ca, issuer)
}

/// A token of `issuer` written to `DIR/NAME.token`.
fn token(issuer: &Path, names: &str, uses: &str, expires: &str, file: &Path) -> PathBuf {
    let t = ok(&[
        "enroll",
        "token",
        "--issuer",
        &s(issuer),
        "--names",
        names,
        "--uses",
        uses,
        "--expires",
        expires,
    ]);
    std::fs::write(file, t.trim()).unwrap();
    file.to_path_buf()
}

/// One check that passes anywhere: a sweep with only `patrol.*` outcomes
/// covers nothing and exits 5.
const CHECKS: &str =
    "[[check]]\nid = \"pid-max\"\ntype = \"sysctl\"\nkey = \"kernel.pid_max\"\nexpect = { min = 1 }\n";

/// `[trust]` of an agent that enrolls itself into `DIR/NAME/`.
fn enrolling_trust(dir: &Path, ca: &Path, name: &str, service: &str, token: &Path) -> String {
    let (ca, own, dir, token) = (s(ca), s(&dir.join(name)), s(dir), s(token));
    format!(
        "[trust]\nca_bundle = \"{ca}/ca.crt\"\ncert = \"{own}/node.crt\"\nkey = \"{own}/node.key\"\naudit_log = \"{own}/audit.jsonl\"\nroster_file = \"{own}/roster.json\"\ndeny_list = \"{dir}/revoked.txt\"\nenroll = \"{service}\"\nenroll_token_file = \"{token}\"\n"
    )
}

fn audit_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Audit lines of the service with `action` (and for `node`, if given).
fn count(issuer: &Path, action: &str, node: Option<&str>) -> usize {
    audit_lines(&issuer.join("enroll-audit.jsonl"))
        .iter()
        .filter(|l| l["action"] == action && node.is_none_or(|n| l["node"] == n))
        .count()
}

fn refusals(issuer: &Path, reason: &str) -> usize {
    audit_lines(&issuer.join("enroll-audit.jsonl"))
        .iter()
        .filter(|l| {
            l["action"] == "refused"
                && l["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with(&format!("{reason}:")))
        })
        .count()
}

/// The serial of the first certificate of `file`, as `patrol ca show`
/// prints it.
fn serial(file: &Path) -> String {
    let shown = ok(&["ca", "show", &s(file)]);
    shown
        .split("serial ")
        .nth(1)
        .and_then(|t| t.split(',').next())
        .unwrap_or_else(|| panic!("no serial in {shown}"))
        .to_string()
}

/// An operator `alice` of the root, whose bundle holds the issuer too.
fn operator(dir: &Path, ca: &Path, issuer: &Path) -> PathBuf {
    let alice = dir.join("alice");
    ok(&[
        "ca",
        "issue",
        "operator",
        "--ca",
        &s(ca),
        "--name",
        "alice",
        "--scope",
        "full",
        "--out",
        &s(&alice),
        "--expires",
        "3d",
    ]);
    std::fs::copy(issuer.join("bundle.crt"), alice.join("ca.crt")).unwrap();
    alice
}

/// A sweep as `alice` through `control` in `format`: its output and
/// exit code.
fn sweep_as(control: &str, alice: &Path, format: &str) -> std::process::Output {
    let out = patrol(&[
        "sweep",
        "--seed",
        control,
        "--cluster",
        "proc-test",
        "--identity",
        &s(alice),
        "--format",
        format,
        "--deadline",
        "3s",
    ]);
    // An operator may start 30 sweeps a minute through one agent.
    std::thread::sleep(Duration::from_millis(500));
    out
}

/// A sweep as `alice` through `control`: its document and exit code.
fn sweep_doc(control: &str, alice: &Path) -> Result<(serde_json::Value, Option<i32>), String> {
    let out = sweep_as(control, alice, "json");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&out.stderr)))?;
    Ok((doc, out.status.code()))
}

/// A sweep as `alice` through `control`: (expected, answered: ok or
/// failing).
fn sweep(control: &str, alice: &Path) -> Result<(u64, u64), String> {
    let (doc, _) = sweep_doc(control, alice)?;
    let n = |k: &str| doc["counts"][k].as_u64().unwrap_or(0);
    Ok((n("expected"), n("ok") + n("failing")))
}

/// The entry of node `name` in a sweep document.
fn node_of<'a>(doc: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    doc["nodes"].as_array()?.iter().find(|n| n["name"] == name)
}

#[test]
fn twenty_agents_enroll_with_one_token_and_sweep_under_identities() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("revoked.txt"), "").unwrap();
    let key = patrol_tests::process::cluster_key(d, "cluster.key");
    let (ca, issuer) = authority(d, "node-*");
    // Default certificate life (30 days): `patrol.cert_expiry` passes, so
    // every node that answered is `ok`.
    let service = EnrollService::start(&issuer, &[]);
    let tok = token(&issuer, "node-*", "20", "1h", &d.join("fleet.token"));
    let names: Vec<String> = (1..=20).map(|i| format!("node-{i:02}")).collect();
    let mut agents: Vec<AgentProcess> = Vec::new();
    for name in &names {
        // Every node seeds from the first two, as a fleet's config would.
        let seeds: Vec<_> = agents.iter().take(2).map(|a| a.gossip).collect();
        let trust = enrolling_trust(d, &ca, name, &service.addr, &tok);
        agents.push(AgentProcess::start(&write_config(
            d,
            name,
            &key,
            &seeds,
            0,
            &format!("{trust}{CHECKS}"),
        )));
    }
    // One token, twenty enrollments, each node's own key and certificate
    // from the issuer: no per-node `patrol ca`.
    assert_eq!(count(&issuer, "issued", None), 20);
    let records = std::fs::read_to_string(issuer.join("tokens.toml")).unwrap();
    assert!(records.contains("used = 20\n"), "{records}");
    for name in &names {
        let shown = ok(&["ca", "show", &s(&d.join(name).join("node.crt"))]);
        assert!(
            shown.contains(&format!("node `{name}`")) && shown.contains("issuer `enroll-1`"),
            "{shown}"
        );
    }
    // A sweep under an operator identity, coordinated by a node that did
    // not seed anyone, accounts for all twenty, each with its proof.
    let alice = operator(d, &ca, &issuer);
    let control = agents[19].control.to_string();
    let mut last = None;
    wait_blocking(
        Duration::from_secs(90),
        "a sweep of the twenty enrolled nodes, all ok",
        || {
            let (doc, code) = sweep_doc(&control, &alice)?;
            let n = |k: &str| doc["counts"][k].as_u64().unwrap_or(0);
            let counts = (n("expected"), n("ok"));
            let not_ok: Vec<String> = doc["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|n| n["state"] != "ok")
                .map(|n| n.to_string())
                .collect();
            last = Some((doc, code));
            match counts {
                (20, 20) => Ok(()),
                other => Err(format!("(expected, ok) = {other:?}; not ok: {not_ok:?}")),
            }
        },
    );
    let (doc, code) = last.expect("a sweep ran");
    assert_eq!(code, Some(0), "{doc}");
    assert_eq!(doc["operator"], "alice");
    for name in &names {
        let node = node_of(&doc, name).unwrap_or_else(|| panic!("{name} not in {doc}"));
        assert_eq!(node["state"], "ok", "{node}");
        let expiry = node["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "patrol.cert_expiry")
            .unwrap_or_else(|| panic!("no patrol.cert_expiry: {node}"));
        assert_eq!(expiry["status"], "pass", "{expiry}");
    }
    for a in agents {
        a.terminate();
    }
}

#[test]
fn agents_enroll_with_one_token_renew_while_sweeps_run_and_an_exhausted_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("revoked.txt"), "").unwrap();
    let key = patrol_tests::process::cluster_key(d, "cluster.key");
    let (ca, issuer) = authority(d, "node-*");
    let service = EnrollService::start(&issuer, &["--cert-life", "30s"]);
    let tok = token(&issuer, "node-*", "4", "1h", &d.join("fleet.token"));
    let names = ["node-1", "node-2", "node-3", "node-4"];
    let mut agents: Vec<AgentProcess> = Vec::new();
    for name in names {
        let seeds: Vec<_> = agents.first().map(|a| a.gossip).into_iter().collect();
        let trust = enrolling_trust(d, &ca, name, &service.addr, &tok);
        agents.push(AgentProcess::start(&write_config(
            d, name, &key, &seeds, 0, &trust,
        )));
    }
    // No per-node `patrol ca`: each agent wrote its own key and got a
    // certificate from the issuer, chain included.
    for name in names {
        let shown = ok(&["ca", "show", &s(&d.join(name).join("node.crt"))]);
        assert!(
            shown.contains(&format!("node `{name}`")) && shown.contains("issuer `enroll-1`"),
            "{shown}"
        );
        assert_eq!(count(&issuer, "issued", Some(name)), 1);
    }
    let alice = operator(d, &ca, &issuer);
    let control = agents[0].control.to_string();
    wait_blocking(
        Duration::from_secs(30),
        "a sweep of the four enrolled nodes",
        || match sweep(&control, &alice)? {
            (4, 4) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );

    // Every answer carries `patrol.cert_expiry`: 30-second certificates
    // warn. The operator's 3-day certificate is warned about too.
    let out = patrol(&[
        "sweep",
        "--seed",
        &control,
        "--cluster",
        "proc-test",
        "--identity",
        &s(&alice),
        "--format",
        "json",
        "--deadline",
        "3s",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("operator certificate `alice` expires in "),
        "{err}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for node in doc["nodes"].as_array().unwrap() {
        let expiry = node["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "patrol.cert_expiry")
            .unwrap_or_else(|| panic!("no patrol.cert_expiry: {node}"));
        assert_eq!(expiry["status"], "warn", "{expiry}");
        assert!(
            expiry["message"]
                .as_str()
                .unwrap()
                .contains("node certificate"),
            "{expiry}"
        );
    }

    // 30-second certificates renew (at two thirds of their life) while
    // sweeps run; every sweep after the mesh formed answers from all four.
    let first: Vec<String> = names
        .iter()
        .map(|n| serial(&d.join(n).join("node.crt")))
        .collect();
    let mut sweeps = 0;
    wait_blocking(
        Duration::from_secs(90),
        "two renewals of every node",
        || {
            let (expected, answered) = sweep(&control, &alice)?;
            sweeps += 1;
            assert_eq!(
                (expected, answered),
                (4, 4),
                "a sweep lost a node during renewals"
            );
            let renewed: Vec<usize> = names
                .iter()
                .map(|n| count(&issuer, "renewed", Some(n)))
                .collect();
            if renewed.iter().all(|r| *r >= 2) {
                Ok(())
            } else {
                Err(format!("renewals so far {renewed:?}"))
            }
        },
    );
    assert!(sweeps >= 2, "only {sweeps} sweeps ran during the renewals");
    for (n, old) in names.iter().zip(&first) {
        assert_ne!(
            &serial(&d.join(n).join("node.crt")),
            old,
            "{n} still has its first certificate"
        );
    }

    // The token allowed four enrollments: a fifth is refused and audited.
    let e = fails(&[
        "enroll",
        "request",
        "--service",
        &service.addr,
        "--ca",
        &s(&ca.join("ca.crt")),
        "--name",
        "node-5",
        "--token-file",
        &s(&tok),
        "--out",
        &s(&d.join("node-5")),
    ]);
    assert!(e.contains("token_used_up"), "{e}");
    assert_eq!(refusals(&issuer, "token_used_up"), 1);
    assert!(!d.join("node-5").join("node.crt").exists());

    // The issuer is revoked on every node, SIGHUP: what it signed is
    // refused, so the nodes no longer answer each other's sweeps.
    std::fs::write(
        d.join("revoked.txt"),
        format!("{}\n", serial(&issuer.join("issuer.crt"))),
    )
    .unwrap();
    for a in &agents {
        a.hangup();
    }
    wait_blocking(
        Duration::from_secs(30),
        "sweeps refused by the other nodes",
        || match sweep(&control, &alice)? {
            (4, answered) if answered <= 1 => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    for a in agents {
        a.terminate();
    }
}

/// Read one length-prefixed frame.
fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).expect("a frame header");
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut buf).expect("a frame body");
    buf
}

fn write_frame(stream: &mut TcpStream, bytes: &[u8]) {
    stream
        .write_all(&(bytes.len() as u32).to_be_bytes())
        .unwrap();
    stream.write_all(bytes).unwrap();
}

/// Enroll `name` with `token` by the wire, by hand; returns the sealed
/// request as sent and the service's answer.
fn enroll_by_hand(addr: &str, name: &str, token: &str) -> (Vec<u8>, [u8; 32], EnrollResponse) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let hello = read_frame(&mut stream);
    let (challenge, server_eph) = wire::decode_hello(&hello).unwrap();
    let mine = Ephemeral::new();
    write_frame(&mut stream, &mine.public);
    let _proof = read_frame(&mut stream);
    let t = wire::transcript(&hello, &mine.public);
    let session = wire::session(&mine, &server_eph, &t).unwrap();
    let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let req = wire::token_request(&key, &t, name, token);
    let sealed = frame::seal(&session, Purpose::ControlRequest, challenge, &req).unwrap();
    write_frame(&mut stream, &sealed);
    let reply = read_frame(&mut stream);
    let answer = frame::open(&session, Purpose::ControlReply, challenge, &reply).unwrap();
    (sealed, mine.public, answer)
}

#[test]
fn stolen_expired_foreign_and_replayed_enrollments_are_refused_counted_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca, issuer) = authority(d, "*");
    let service = EnrollService::start(&issuer, &[]);
    let root = s(&ca.join("ca.crt"));
    let request = |name: &str, token: &Path, out: &str| {
        patrol(&[
            "enroll",
            "request",
            "--service",
            &service.addr,
            "--ca",
            &root,
            "--name",
            name,
            "--token-file",
            &s(token),
            "--out",
            &s(&d.join(out)),
        ])
    };
    let stderr = |o: std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();

    // A token for other names.
    let web = token(&issuer, "web-*", "5", "1h", &d.join("web.token"));
    let e = stderr(request("db-1", &web, "db-1"));
    assert!(e.contains("token_name") && e.contains("web-*"), "{e}");
    assert_eq!(refusals(&issuer, "token_name"), 1);

    // A token past its expiry.
    let short = token(&issuer, "*", "5", "1s", &d.join("short.token"));
    std::thread::sleep(Duration::from_millis(2100));
    let e = stderr(request("web-1", &short, "w1"));
    assert!(e.contains("token_expired"), "{e}");
    assert_eq!(refusals(&issuer, "token_expired"), 1);

    // A guessed secret for a real token id.
    let text = std::fs::read_to_string(&web).unwrap();
    let guessed = d.join("guessed.token");
    let text = text.trim_end();
    let last = if text.ends_with('0') { '1' } else { '0' };
    std::fs::write(&guessed, format!("{}{last}\n", &text[..text.len() - 1])).unwrap();
    let e = stderr(request("web-1", &guessed, "w1"));
    assert!(e.contains("token_unknown"), "{e}");

    // A replayed request: the sealed frame of an enrollment that
    // succeeded, sent again in a new connection with the same client key
    // (the only parts an eavesdropper has), does not open.
    let secret = text.trim().to_string();
    let (sealed, eph, answer) = enroll_by_hand(&service.addr, "web-2", &secret);
    assert!(
        matches!(answer, EnrollResponse::Issued { .. }),
        "{answer:?}"
    );
    let mut stream = TcpStream::connect(&service.addr).unwrap();
    let _hello = read_frame(&mut stream);
    write_frame(&mut stream, &eph);
    let _proof = read_frame(&mut stream);
    write_frame(&mut stream, &sealed);
    let _refusal = read_frame(&mut stream);
    wait_blocking(
        Duration::from_secs(5),
        "the replay audited",
        || match refusals(&issuer, "bad_request") {
            1 => Ok(()),
            n => Err(format!("{n} bad_request lines")),
        },
    );
    let records = std::fs::read_to_string(issuer.join("tokens.toml")).unwrap();
    assert!(
        records.contains("used = 1\n"),
        "the replay spent a use: {records}"
    );

    // A MITM: a service whose issuer chains to another root. The client
    // refuses it before the token leaves, and the impostor sees no
    // request at all.
    let (_, evil) = authority(&d.join("evil"), "*");
    let mitm = EnrollService::start(&evil, &[]);
    let e = stderr(patrol(&[
        "enroll",
        "request",
        "--service",
        &mitm.addr,
        "--ca",
        &root,
        "--name",
        "web-3",
        "--token-file",
        &s(&web),
        "--out",
        &s(&d.join("w3")),
    ]));
    assert!(e.contains("not an issuer of this node's CA"), "{e}");
    assert_eq!(count(&evil, "issued", None), 0);
    assert!(
        audit_lines(&evil.join("enroll-audit.jsonl"))
            .iter()
            .all(|l| l["request"].is_null()),
        "the impostor received a request"
    );
    // The real token still works.
    let ok_out = request("web-3", &web, "w3");
    assert!(ok_out.status.success(), "{}", stderr(ok_out));
}

#[test]
fn a_revoked_node_cannot_renew_and_as_its_certificate_expires_the_sweep_lists_it_expired() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The agents' deny list stays empty: the node is revoked at the
    // enrollment service only (as when the deny list is not pushed to
    // every node). Its short life does the rest.
    std::fs::write(d.join("revoked.txt"), "").unwrap();
    let service_deny = d.join("service-revoked.txt");
    std::fs::write(&service_deny, "").unwrap();
    let key = patrol_tests::process::cluster_key(d, "cluster.key");
    let (ca, issuer) = authority(d, "*");
    let service = EnrollService::start(
        &issuer,
        &["--cert-life", "30s", "--deny-list", &s(&service_deny)],
    );
    // One use each: once its certificate expires, `lost` cannot enroll
    // again with its token either.
    let hub_tok = token(&issuer, "hub", "1", "1h", &d.join("hub.token"));
    let lost_tok = token(&issuer, "lost", "1", "1h", &d.join("lost.token"));
    let hub_trust = enrolling_trust(d, &ca, "hub", &service.addr, &hub_tok);
    let hub_config = write_config(d, "hub", &key, &[], 0, &format!("{hub_trust}{CHECKS}"));
    let hub = AgentProcess::start(&hub_config);
    let trust = enrolling_trust(d, &ca, "lost", &service.addr, &lost_tok);
    let log = d.join("lost.log");
    let agent = AgentProcess::start_logging(
        &write_config(
            d,
            "lost",
            &key,
            &[hub.gossip],
            0,
            &format!("{trust}{CHECKS}"),
        ),
        &log,
    );
    let first = serial(&d.join("lost").join("node.crt"));
    ok(&["ca", "revoke", &first, "--deny-list", &s(&service_deny)]);
    // Until its certificate expires, the revoked node answers as before:
    // its own checks, its own `patrol.cert_expiry` (30 s: a warning).
    let alice = operator(d, &ca, &issuer);
    let control = hub.control.to_string();
    wait_blocking(
        Duration::from_secs(20),
        "a sweep with `lost`'s own answer",
        || {
            let (doc, _) = sweep_doc(&control, &alice)?;
            let lost = node_of(&doc, "lost").ok_or("`lost` not in the sweep")?;
            let own = lost["checks"].as_array().is_some_and(|c| {
                c.iter().any(|c| {
                    c["id"] == "patrol.cert_expiry"
                        && c["status"] == "warn"
                        && c["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("expires in"))
                })
            });
            if own {
                Ok(())
            } else {
                Err(format!("lost: {lost}"))
            }
        },
    );
    wait_blocking(
        Duration::from_secs(60),
        "the revoked node's renewal refused",
        || match refusals(&issuer, "renew_revoked") {
            0 => Err("no renew_revoked yet".into()),
            _ => Ok(()),
        },
    );
    assert_eq!(count(&issuer, "renewed", Some("lost")), 0);
    assert_eq!(serial(&d.join("lost").join("node.crt")), first);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("renewal refused"), "{text}");

    // Its certificate expires (30 s at most): the node still answers, but
    // the coordinator records no check proven by an expired certificate.
    // The sweep lists it failing with `patrol.cert_expiry` saying so (not
    // `no_answer`, silent), and exits 2.
    let mut last = None;
    wait_blocking(
        Duration::from_secs(60),
        "a sweep listing `lost` with an expired certificate",
        || {
            let (doc, code) = sweep_doc(&control, &alice)?;
            let lost = node_of(&doc, "lost").cloned();
            last = Some((doc, code));
            let lost = lost.ok_or("`lost` not in the sweep")?;
            let checks = lost["checks"].as_array().cloned().unwrap_or_default();
            match checks.as_slice() {
                [only] if only["id"] == "patrol.cert_expiry" && only["status"] == "fail" => Ok(()),
                _ => Err(format!("lost: {lost}")),
            }
        },
    );
    let (doc, code) = last.expect("a sweep ran");
    assert_eq!(code, Some(2), "{doc}");
    assert_eq!(doc["counts"]["expected"], 2, "{doc}");
    assert_eq!(doc["counts"]["no_answer"], 0, "{doc}");
    let lost = node_of(&doc, "lost").unwrap();
    assert_eq!(lost["state"], "failing", "{lost}");
    assert!(lost["silence"].is_null(), "{lost}");
    let message = lost["checks"][0]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "node certificate `lost` (serial {first}) expired "
        )),
        "{message}"
    );
    assert!(
        lost["checks"][0]["observed"]["node"].as_f64().unwrap() < 0.0,
        "{lost}"
    );
    // The hub, whose renewals went through, answered for itself.
    let hub_entry = node_of(&doc, "hub").unwrap();
    assert!(hub_entry["answered_ms"].is_u64(), "{hub_entry}");
    // The table says it too, in words.
    let table = sweep_as(&control, &alice, "table");
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("lost") && text.contains("expired"), "{text}");
    assert_eq!(table.status.code(), Some(2), "{text}");
    agent.terminate();
    hub.terminate();
}
