//! `patrol demo`: the main job on a built-in default, and the story a
//! fleet tells over two nights, without root. Starts N real agents (real
//! UDP sockets, sealed envelope, control listeners) on loopback in this
//! process, each inspecting a fixture tree of its own (`[node] host_root`,
//! written by [`crate::demo_hosts`] under `OUT/hosts/`), waits for the mesh
//! to converge, and runs two sweeps of the built-in `k8s-node` profile
//! through one of them, with a change between them (one node fixed,
//! another broken, one agent stopped). Both are stored in the demo's own
//! history (`OUT/history/`, started afresh), so the second report shows
//! new, persisting and resolved anomalies, drift, a silent node, value
//! distributions and a trend chart. The first sweep is dated a day back
//! (and the demo says so), so the report reads as two nights. Then it
//! prints the second sweep's table, writes both sweeps' JSON and reports
//! into folders it names, and stops every agent (leaving the mesh
//! gracefully).
//!
//! The mesh runs with identities, as a production cluster does: a
//! throwaway CA made in memory issues every node a certificate and signs
//! for a `demo` operator, who asks for the sweeps. Every node's audit log
//! is written under the output folder (`audit/NAME.jsonl`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use patrol_agent::agent::{StopMode, SweepEvent};
use patrol_agent::audit::AuditLog;
use patrol_agent::daemon::{self, Daemon, NodeTrust};
use patrol_agent::envelope::Envelope;
use patrol_agent::keyring::Keyring;
use patrol_agent::membership::MemberState;
use patrol_agent::sweep::StartSweep;
use patrol_agent::trust::authorization::SweepAsk;
use patrol_agent::trust::{
    issue, Authorization, Certificate, Credentials, Issue, Revocations, Role, Scope, SigningKey,
    TrustBundle,
};
use patrol_checks::{Selector, SweepDocument};
use patrol_config::Config;

use patrol_config::parse_duration;

use crate::demo_hosts::{self, Night, Story, HOST_TAG};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many agents to start (the story needs at least 10).
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u16).range(demo_hosts::MIN_NODES as i64..=500))]
    pub nodes: u16,
    /// Where to write the sweep JSON and the report.
    #[arg(long, default_value = "patrol-demo")]
    pub out: PathBuf,
    /// Deadline of each sweep. The second sweep lasts this long: it waits
    /// for the stopped agent until then (SWIM takes about 8 s to call a
    /// crashed node down).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub deadline: Duration,
    /// Built-in profile to sweep with (the fixture trees are written for
    /// `k8s-node`; another profile runs on them as it can).
    #[arg(long, default_value = "k8s-node")]
    pub profile: String,
    /// Root only: twelve agent processes, each in its own network namespace
    /// with its own network sysctls; one is killed and two sweeps tell the
    /// drift story (see demo_netns.rs). Ignores --nodes and --profile.
    #[arg(long)]
    pub netns: bool,
}

fn node_config(i: usize, args: &Args, seed: Option<SocketAddr>, out: &Path) -> Config {
    let mut c = Config::default();
    c.node.name = Story::name(i);
    c.node.cluster = "demo".into();
    c.node.bind = SocketAddr::from(([127, 0, 0, 1], 0));
    c.node.seeds = seed.map(|s| vec![s.to_string()]).unwrap_or_default();
    c.node.tags = BTreeMap::from([
        ("role".to_string(), Story::role(i).to_string()),
        (
            "dc".to_string(),
            if i.is_multiple_of(2) { "a" } else { "b" }.to_string(),
        ),
        (HOST_TAG.0.to_string(), HOST_TAG.1.to_string()),
    ]);
    c.node.host_root = Some(Story::tree(&out.join("hosts"), i));
    c.control.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    c.checks.profiles = vec![args.profile.clone()];
    c.check = own_checks();
    c.report.history_dir = out.join("history");
    c.report.out_dir = out.to_path_buf();
    c
}

/// [`demo_hosts::OWN_CHECKS`] as config tables.
fn own_checks() -> Vec<toml::Table> {
    #[derive(serde::Deserialize)]
    struct Own {
        check: Vec<toml::Table>,
    }
    // A constant, parsed by a test too.
    toml::from_str::<Own>(demo_hosts::OWN_CHECKS)
        .map(|o| o.check)
        .unwrap_or_default()
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.netns {
        let out = args.out.clone();
        return tokio::task::spawn_blocking(move || crate::demo_netns::run_demo(&out)).await?;
    }
    if patrol_checks::Catalog::builtin_profile(&args.profile).is_none() {
        bail!(
            "unknown profile `{}` (built-in: {})",
            args.profile,
            patrol_checks::Catalog::builtin_profile_names().join(", ")
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let out = args.out.canonicalize().unwrap_or(args.out.clone());
    // The demo's own trees and history, from an earlier run: the story
    // starts afresh.
    for own in ["hosts", "history"] {
        let dir = out.join(own);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("removing the earlier demo's {}", dir.display()))?;
        }
    }
    let story = Story {
        nodes: usize::from(args.nodes),
    };
    story
        .write_fleet(&out.join("hosts"), Night::First)
        .context("writing the fixture trees")?;
    // A fresh key and a throwaway CA for this demo only, never written
    // to disk.
    let envelope = Envelope::new(Keyring::generate(), "demo");
    let ca = Throwaway::new()?;

    let started = Instant::now();
    let mut daemons: Vec<Option<Daemon>> = Vec::with_capacity(story.nodes);
    let mut seed = None;
    for i in 0..story.nodes {
        let config = node_config(i, &args, seed, &out);
        let trust = ca.node(&config.node.name, &out.join("audit"))?;
        let d = daemon::start_trusted(&config, envelope.clone(), Some(trust))
            .await
            .with_context(|| format!("starting agent {}", config.node.name))?;
        seed.get_or_insert(d.ready.gossip);
        daemons.push(Some(d));
    }
    eprintln!(
        "started {} agents on 127.0.0.1, each inspecting its own fixture tree under {}",
        story.nodes,
        out.join("hosts").display()
    );
    let demo = Demo {
        args: &args,
        out: &out,
        story,
        ca: &ca,
    };
    let result = demo.tell(&mut daemons, started).await;
    for d in daemons.into_iter().flatten() {
        d.stop(StopMode::Leave).await;
    }
    result
}

/// What the two sweeps share.
struct Demo<'a> {
    args: &'a Args,
    out: &'a Path,
    story: Story,
    ca: &'a Throwaway,
}

/// A day, in milliseconds: how far back the first sweep is dated.
const DAY_MS: u64 = 86_400_000;

impl Demo<'_> {
    /// The two sweeps and the change between them.
    async fn tell(
        &self,
        daemons: &mut [Option<Daemon>],
        started: Instant,
    ) -> anyhow::Result<ExitCode> {
        converge(daemons, self.story.nodes, started).await?;
        for line in self.story.legend() {
            eprintln!("story: {line}");
        }
        for (check, why) in demo_hosts::LEFT_OUT {
            eprintln!("left out on the fixture trees: {check} ({why})");
        }
        let config = node_config(0, self.args, None, self.out);
        let zone = jiff::tz::TimeZone::system();

        let mut first = self.sweep(daemons).await?;
        first.started_at_unix_ms = first.started_at_unix_ms.saturating_sub(DAY_MS);
        let one = patrol_report::write_report(
            &first,
            &config,
            &patrol_report::report_dir(self.out, &first),
        )
        .context("writing the first report")?;
        eprintln!(
            "first sweep (dated a day back): {} ok, {} failing, {} silent",
            first.counts.ok,
            first.counts.failing,
            first.counts.no_answer + first.counts.down
        );

        // Overnight: one node fixed, one broken, one agent gone.
        self.story
            .write_fleet(&self.out.join("hosts"), Night::Second)
            .context("rewriting the fixture trees")?;
        if let Some(d) = daemons[self.story.stopped()].take() {
            d.stop(StopMode::Crash).await;
        }
        let second = self.sweep(daemons).await?;
        crate::stdout::out!("{}", crate::sweep::table(&second, false, &zone));
        let two = patrol_report::write_report(
            &second,
            &config,
            &patrol_report::report_dir(self.out, &second),
        )
        .context("writing the second report")?;
        crate::stdout::outln!("\nfirst sweep:    {}", one.json.display());
        crate::stdout::outln!("sweep document: {}", two.json.display());
        crate::stdout::outln!("HTML report:    {}", two.html.display());
        crate::stdout::outln!("text report:    {}", two.text.display());
        crate::stdout::outln!("per-node CSV:   {}", two.csv.display());
        crate::stdout::outln!("history:        {}", config.report.history_dir.display());
        crate::stdout::outln!("fixture trees:  {}", self.out.join("hosts").display());
        crate::stdout::outln!("audit logs:     {}", self.out.join("audit").display());
        Ok(ExitCode::SUCCESS)
    }

    /// One sweep of the profile, coordinated by the story's coordinator.
    async fn sweep(&self, daemons: &[Option<Daemon>]) -> anyhow::Result<SweepDocument> {
        let Some(coordinator) = &daemons[self.story.coordinator()] else {
            bail!("the coordinator's agent is not running");
        };
        let selector = Selector {
            profile: Some(self.args.profile.clone()),
            ..Selector::default()
        };
        let id = rand::random::<u64>();
        let authorization =
            self.ca
                .sign(id, &selector, self.args.deadline, &coordinator.agent.name);
        let mut events = coordinator
            .agent
            .start_sweep(StartSweep {
                selector,
                node_filter: BTreeMap::new(),
                deadline: self.args.deadline,
                id: Some(id),
                authorization: Some(authorization),
            })
            .await?;
        let bar = crate::sweep::progress_bar(Some(self.story.nodes as u64));
        let doc = loop {
            match events.recv().await {
                Some(SweepEvent::Progress { answered, expected }) => {
                    bar.set_length(expected);
                    bar.set_position(answered);
                }
                Some(SweepEvent::Done(doc)) => break doc.to_document(),
                Some(SweepEvent::Refused(reason)) => {
                    bail!("the coordinator refused the sweep: {reason}")
                }
                None => bail!("the coordinator stopped during the sweep"),
            }
        };
        bar.finish_and_clear();
        Ok(doc)
    }
}

/// Wait until every agent sees every other one alive.
async fn converge(daemons: &[Option<Daemon>], n: usize, started: Instant) -> anyhow::Result<()> {
    let limit = Duration::from_secs(60);
    loop {
        let mut converged = true;
        for d in daemons.iter().flatten() {
            let members = d.agent.members().await?;
            if members
                .iter()
                .filter(|m| m.state == MemberState::Alive)
                .count()
                != n
            {
                converged = false;
                break;
            }
        }
        if converged {
            break;
        }
        if started.elapsed() > limit {
            bail!("the {n} agents did not converge within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "mesh converged: {n} members alive on every agent after {:.2?}",
        started.elapsed()
    );
    Ok(())
}

/// The demo's CA: made in memory, gone with the process.
struct Throwaway {
    ca: Credentials,
    operator: Credentials,
}

/// Life of the demo's certificates, seconds: gone with the process, but
/// long enough that `patrol.cert_expiry` (which warns under 7 days) passes.
const DEMO_CERT_LIFE_S: u64 = 30 * 86_400;

impl Throwaway {
    fn new() -> anyhow::Result<Throwaway> {
        let now = now_s();
        let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        let cert = Certificate::new_ca(
            &key,
            "demo-ca",
            rand::random(),
            now - 60,
            now + DEMO_CERT_LIFE_S,
        );
        let ca = Credentials::new(key, cert)?;
        let operator = Self::issue(&ca, Role::Operator(Scope::full(600_000)), "demo")?;
        Ok(Throwaway { ca, operator })
    }

    fn issue(ca: &Credentials, role: Role, name: &str) -> anyhow::Result<Credentials> {
        let now = now_s();
        let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        let cert = issue(
            ca,
            Issue {
                role,
                name,
                public_key: key.verifying_key(),
                serial: rand::random(),
                not_before: now - 60,
                not_after: now + DEMO_CERT_LIFE_S,
            },
        )?;
        Ok(Credentials::new(key, cert)?)
    }

    /// Node `name`'s identity, auditing into `audit_dir/NAME.jsonl`.
    fn node(&self, name: &str, audit_dir: &std::path::Path) -> anyhow::Result<NodeTrust> {
        let bundle = TrustBundle::new(vec![self.ca.cert.clone()], Revocations::default())?;
        let log = audit_dir.join(format!("{name}.jsonl"));
        let audit = AuditLog::open(&log, 1 << 20, 1)
            .with_context(|| format!("opening {}", log.display()))?;
        Ok(NodeTrust {
            creds: Self::issue(&self.ca, Role::Node, name)?,
            bundle,
            audit: Some(audit),
            roster_file: Some(audit_dir.join(format!("{name}.roster.json"))),
        })
    }

    /// The demo operator's signature over a sweep.
    fn sign(
        &self,
        id: u64,
        selector: &Selector,
        deadline: Duration,
        coordinator: &str,
    ) -> Authorization {
        let filter = BTreeMap::new();
        let ask = SweepAsk {
            sweep_id: id,
            selector,
            node_filter: &filter,
            deadline_ms: deadline.as_millis() as u64,
            coordinator,
        };
        Authorization::sign(&self.operator, &ask, patrol_agent::clock::unix_ms())
    }
}

fn now_s() -> u64 {
    patrol_agent::clock::unix_ms() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        demo: Args,
    }

    #[test]
    fn the_demo_replaces_the_checks_a_fixture_tree_cannot_answer() {
        let args = Cli::parse_from(["demo"]).demo;
        let config = node_config(4, &args, None, Path::new("/tmp/demo"));
        assert_eq!(config.check.len(), 4, "OWN_CHECKS parses");
        let catalog = patrol_checks::Catalog::from_config(&config).unwrap();
        let selector = Selector {
            profile: Some("k8s-node".into()),
            ..Selector::default()
        };
        let run = catalog.select(&selector, &config.node.tags);
        let kinds: BTreeMap<&str, &str> =
            run.iter().map(|c| (c.id.as_str(), c.kind.name())).collect();
        // Read from the package database instead of `kubelet --version`.
        assert_eq!(kinds.get("kubelet-version"), Some(&"package"));
        // Left out on a fixture node, and said so: the program, and the
        // disk the trees share with the demo machine.
        for id in ["kubelet-running", "disk-root", "disk-root-inodes"] {
            assert_eq!(kinds.get(id), None, "{id}");
            assert!(demo_hosts::LEFT_OUT.iter().any(|(left, _)| *left == id));
        }
        // Nothing else of the profile needs a program.
        let programs = [
            "systemd_unit",
            "kubelet_version",
            "command",
            "clock",
            "etcd_health",
        ];
        assert!(
            run.iter().all(|c| !programs.contains(&c.kind.name())),
            "{kinds:?}"
        );
        assert_eq!(
            config.node.host_root.as_deref(),
            Some(Path::new("/tmp/demo/hosts/demo-04"))
        );
    }

    #[test]
    fn the_story_needs_ten_nodes() {
        assert!(Cli::try_parse_from(["demo", "--nodes", "9"]).is_err());
        assert_eq!(Cli::parse_from(["demo", "--nodes", "10"]).demo.nodes, 10);
    }
}
