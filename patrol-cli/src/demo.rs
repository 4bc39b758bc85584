//! `patrol demo`: the main job on a built-in default. Starts N real agents
//! (real UDP sockets, sealed envelope, control listeners) on loopback in
//! this process, waits for the mesh to converge, runs a sweep of the
//! built-in `k8s-node` profile on this machine through one of them, prints
//! the table, writes the sweep JSON and the HTML/text report into a
//! directory it names, and stops every agent (leaving the mesh gracefully).
//!
//! The mesh runs with identities, as a production cluster does: a
//! throwaway CA made in memory issues every node a certificate and signs
//! for a `demo` operator, who asks for the sweep. Every node's audit log
//! is written under the output folder (`audit/NAME.jsonl`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
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
use patrol_checks::Selector;
use patrol_config::Config;

use patrol_config::parse_duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many agents to start.
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u16).range(1..=500))]
    pub nodes: u16,
    /// Where to write the sweep JSON and the report.
    #[arg(long, default_value = "patrol-demo")]
    pub out: PathBuf,
    /// Sweep deadline.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub deadline: Duration,
    /// Built-in profile to sweep with.
    #[arg(long, default_value = "k8s-node")]
    pub profile: String,
    /// Root only: six agent processes, each in its own network namespace
    /// with its own network sysctls; one is killed and two sweeps tell the
    /// drift story (see demo_netns.rs). Ignores --nodes and --profile.
    #[arg(long)]
    pub netns: bool,
}

fn node_config(i: u16, profile: &str, seed: Option<SocketAddr>, out: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.node.name = format!("demo-{i:02}");
    c.node.cluster = "demo".into();
    c.node.bind = SocketAddr::from(([127, 0, 0, 1], 0));
    c.node.seeds = seed.map(|s| vec![s.to_string()]).unwrap_or_default();
    let role = if i < 3 { "control-plane" } else { "worker" };
    c.node.tags = BTreeMap::from([
        ("role".to_string(), role.to_string()),
        (
            "dc".to_string(),
            if i.is_multiple_of(2) { "a" } else { "b" }.to_string(),
        ),
    ]);
    c.control.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    c.checks.profiles = vec![profile.to_string()];
    c.report.history_dir = out.join("history");
    c.report.out_dir = out.to_path_buf();
    c
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
    // A fresh key and a throwaway CA for this demo only, never written
    // to disk.
    let envelope = Envelope::new(Keyring::generate(), "demo");
    let ca = Throwaway::new()?;
    let n = usize::from(args.nodes);

    let started = Instant::now();
    let mut daemons: Vec<Daemon> = Vec::with_capacity(n);
    let mut seed = None;
    for i in 0..args.nodes {
        let config = node_config(i, &args.profile, seed, &out);
        let trust = ca.node(&config.node.name, &out.join("audit"))?;
        let d = daemon::start_trusted(&config, envelope.clone(), Some(trust))
            .await
            .with_context(|| format!("starting agent {}", config.node.name))?;
        seed.get_or_insert(d.ready.gossip);
        daemons.push(d);
    }
    eprintln!(
        "started {n} agents on 127.0.0.1 (gossip {} ..., control {} ...)",
        daemons[0].ready.gossip, daemons[0].ready.control
    );

    let result = sweep_and_report(&daemons, n, &args, &out, started, &ca).await;
    for d in daemons {
        d.stop(StopMode::Leave).await;
    }
    result
}

async fn sweep_and_report(
    daemons: &[Daemon],
    n: usize,
    args: &Args,
    out: &std::path::Path,
    started: Instant,
    ca: &Throwaway,
) -> anyhow::Result<ExitCode> {
    // Wait until every agent sees every other one alive.
    let limit = Duration::from_secs(60);
    loop {
        let mut converged = true;
        for d in daemons {
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

    let coordinator = &daemons[n / 2].agent;
    let selector = Selector {
        profile: Some(args.profile.clone()),
        ..Selector::default()
    };
    let id = rand::random::<u64>();
    let authorization = ca.sign(id, &selector, args.deadline);
    let mut events = coordinator
        .start_sweep(StartSweep {
            selector,
            node_filter: BTreeMap::new(),
            deadline: args.deadline,
            id: Some(id),
            authorization: Some(authorization),
        })
        .await?;
    let bar = crate::sweep::progress_bar(Some(n as u64));
    let doc = loop {
        match events.recv().await {
            Some(SweepEvent::Progress { answered, expected }) => {
                bar.set_length(expected);
                bar.set_position(answered);
            }
            Some(SweepEvent::Done(doc)) => break *doc,
            Some(SweepEvent::Refused(reason)) => {
                bail!("the coordinator refused the sweep: {reason}")
            }
            None => bail!("the coordinator stopped during the sweep"),
        }
    };
    bar.finish_and_clear();
    crate::stdout::out!(
        "{}",
        crate::sweep::table(&doc, false, &jiff::tz::TimeZone::system())
    );

    let config = node_config(0, &args.profile, None, out);
    let files = patrol_report::write_report(&doc, &config, &patrol_report::report_dir(out, &doc))
        .context("writing the report")?;
    crate::stdout::outln!("\nsweep document: {}", files.json.display());
    crate::stdout::outln!("HTML report:    {}", files.html.display());
    crate::stdout::outln!("text report:    {}", files.text.display());
    crate::stdout::outln!("per-node CSV:   {}", files.csv.display());
    crate::stdout::outln!("audit logs:     {}", out.join("audit").display());
    Ok(ExitCode::SUCCESS)
}

/// The demo's CA: made in memory, gone with the process.
struct Throwaway {
    ca: Credentials,
    operator: Credentials,
}

impl Throwaway {
    fn new() -> anyhow::Result<Throwaway> {
        let now = now_s();
        let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        let cert = Certificate::new_ca(&key, "demo-ca", rand::random(), now - 60, now + 86_400);
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
                not_after: now + 86_400,
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
    fn sign(&self, id: u64, selector: &Selector, deadline: Duration) -> Authorization {
        let filter = BTreeMap::new();
        let ask = SweepAsk {
            sweep_id: id,
            selector,
            node_filter: &filter,
            deadline_ms: deadline.as_millis() as u64,
        };
        Authorization::sign(&self.operator, &ask, patrol_agent::clock::unix_ms())
    }
}

fn now_s() -> u64 {
    patrol_agent::clock::unix_ms() / 1000
}
