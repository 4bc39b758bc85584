//! `patrol roster`: the roster of certified nodes one agent keeps (with
//! `[trust]`), which is the expected set of a sweep: each node with what
//! SWIM says of it now, the nodes gone from it and why, the intruders the
//! agent saw. `patrol roster forget NODE` removes a node from every
//! agent's roster with a forget signed by the operator (`--identity`).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use patrol_agent::control::{ControlRequest, Reply};
use patrol_agent::membership::roster::RosterView;
use patrol_checks::printable::one_line;

use crate::connect::ControlArgs;

/// What `patrol roster --help` adds after the options.
pub const AFTER_HELP: &str = "\
The roster exists only with [trust]: an agent without it answers that it
has no roster (membership is SWIM's view only: patrol members).

A node leaves the roster by its own signed leave, by revocation of its
certificate, by `patrol roster forget NODE`, or when it has not been seen
for [sweep] roster_expiry (default 7d). Gone nodes are listed for as long
again, and the sweep report names them.

Exit codes: 0 listed; 3 no agent answered, refused, or no [trust].";

/// What `patrol roster forget --help` adds after the options.
pub const FORGET_AFTER_HELP: &str = "\
The forget is signed with the operator identity (--identity DIR: an
operator whose scope may sweep every node; a read-only one, or one limited
to some nodes with --where, is refused), checked and audited by the agent, and
passed on to every member, each of which checks and audits it again. A
forgotten node returns to the roster only when it speaks again itself.

Exit codes: 0 forgotten; 1 the node was not on this agent's roster
(nothing to forget here; the forget is passed on all the same); 3 refused,
no agent answered, or the agent runs without [trust].";

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub control: ControlArgs,
    /// Print the roster as JSON (what the agent sent: members with their
    /// SWIM state, gone nodes, intruders, expiry and capacity).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Remove a node from the roster of every agent (signed by the
    /// operator of --identity, and audited): it is no longer expected in
    /// sweeps, and reports list it as gone (forgotten).
    #[command(after_help = FORGET_AFTER_HELP)]
    Forget(ForgetArgs),
}

#[derive(Debug, clap::Args)]
pub struct ForgetArgs {
    /// The node's name, as `patrol roster` lists it.
    pub node: String,
    #[command(flatten)]
    pub control: ControlArgs,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(Command::Forget(forget)) = args.command {
        return run_forget(forget).await;
    }
    let (addr, mut client) = args.control.open(&ControlRequest::Roster).await?;
    let view = match client.recv().await? {
        Reply::Roster(view) => view,
        Reply::Error(e) => bail!("{addr}: no roster: {e}"),
        other => bail!("{addr}: unexpected reply {other:?}"),
    };
    if args.json {
        crate::stdout::outln!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        let zone = args
            .control
            .load_config()?
            .map_or_else(jiff::tz::TimeZone::system, |c| c.report.zone());
        crate::stdout::out!("{}", table(&view, &addr.to_string(), &zone));
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_forget(args: ForgetArgs) -> anyhow::Result<ExitCode> {
    if args.node.trim().is_empty() {
        bail!("give the name of the node to forget, as `patrol roster` lists it");
    }
    let node = args.node.clone();
    let (addr, mut client) = args
        .control
        .open_with(|client| {
            // A connection without an operator is one the cluster key
            // opened: an agent with [trust] refuses those.
            client.forget_request(&node).map_err(|_| {
                anyhow::anyhow!(
                    "this agent runs without [trust]: it keeps no roster (membership is SWIM's view only), so there is nothing to forget"
                )
            })
        })
        .await?;
    let name = one_line(&node);
    match client.recv().await? {
        Reply::Forgot {
            was_on_roster: true,
        } => {
            crate::stdout::outln!(
                "{name} forgotten: it was on the roster of the agent at {addr}, which passes the signed forget on to every member; sweeps no longer expect it and list it as gone (forgotten)"
            );
            Ok(ExitCode::SUCCESS)
        }
        Reply::Forgot {
            was_on_roster: false,
        } => {
            crate::stdout::outln!(
                "{name} was not on the roster of the agent at {addr}: nothing to forget there (the forget is passed on to the other members all the same; `patrol roster` lists the names)"
            );
            Ok(ExitCode::from(1))
        }
        Reply::Error(e) => bail!("{addr}: forget refused: {e}"),
        other => bail!("{addr}: unexpected reply {other:?}"),
    }
}

/// A span in the largest whole unit (`7d`, `36h`, `90m`), else seconds.
fn span(ms: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m")];
    UNITS
        .iter()
        .find(|(unit, _)| ms >= *unit && ms.is_multiple_of(*unit))
        .map(|(unit, name)| format!("{}{name}", ms / unit))
        .unwrap_or_else(|| patrol_config::format_duration(Duration::from_millis(ms)))
}

/// A unix time in ms in `zone`, `-` for none (0).
fn when(unix_ms: u64, zone: &jiff::tz::TimeZone) -> String {
    if unix_ms == 0 {
        "-".to_string()
    } else {
        patrol_report::text::date_time(unix_ms, zone)
    }
}

/// The roster as tables: members, then gone nodes and intruders when
/// there are any, then the bounds. Names, addresses and reasons come from
/// other nodes: cells go through [`crate::columns::render`], other lines
/// through [`one_line`].
pub fn table(view: &RosterView, addr: &str, zone: &jiff::tz::TimeZone) -> String {
    let expiry = span(view.expiry_ms);
    let mut out = format!(
        "roster of {0} (the agent at {1}): {2} certified node{3} besides {0}\n",
        one_line(&view.node),
        one_line(addr),
        view.members.len(),
        if view.members.len() == 1 { "" } else { "s" }
    );
    let rows: Vec<[String; 6]> = view
        .members
        .iter()
        .map(|m| {
            let e = &m.entry;
            [
                e.name.clone(),
                e.addr.to_string(),
                m.swim.clone(),
                when(e.first_seen_unix_ms, zone),
                when(e.last_seen_unix_ms, zone),
                format!("{:016x}", e.serial),
            ]
        })
        .collect();
    out.push_str(&crate::columns::render(
        [
            "NAME",
            "ADDRESS",
            "SWIM",
            "FIRST SEEN",
            "LAST SEEN",
            "SERIAL",
        ],
        &rows,
    ));
    let count = |s: &str| view.members.iter().filter(|m| m.swim == s).count();
    let not_alive = view.members.len() - count("alive");
    if not_alive > 0 {
        out.push_str(&format!(
            "{not_alive} not alive in SWIM (still expected: a sweep asks them directly)\n"
        ));
    }
    if !view.gone.is_empty() {
        out.push_str(&format!(
            "\ngone from the roster (listed for {expiry} after they went):\n"
        ));
        let rows: Vec<[String; 4]> = view
            .gone
            .iter()
            .map(|g| {
                [
                    g.entry.name.clone(),
                    g.reason.as_str().to_string(),
                    when(g.entry.last_seen_unix_ms, zone),
                    when(g.gone_unix_ms, zone),
                ]
            })
            .collect();
        out.push_str(&crate::columns::render(
            ["NAME", "REASON", "LAST SEEN", "GONE"],
            &rows,
        ));
    }
    if !view.intruders.is_empty() {
        out.push_str("\nintruders (identities claimed without their certificate):\n");
        let rows: Vec<[String; 5]> = view
            .intruders
            .iter()
            .map(|i| {
                [
                    i.name.clone(),
                    i.addr.to_string(),
                    i.reason.clone(),
                    i.packets.to_string(),
                    when(i.last_seen_unix_ms, zone),
                ]
            })
            .collect();
        out.push_str(&crate::columns::render(
            ["NAME CLAIMED", "ADDRESS", "REASON", "PACKETS", "LAST SEEN"],
            &rows,
        ));
    }
    out.push_str(&format!(
        "\nexpiry {expiry} after last seen; room for {} nodes",
        view.capacity
    ));
    if view.refused_full > 0 {
        out.push_str(&format!(
            "; {} new names refused because the roster was full",
            view.refused_full
        ));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use patrol_agent::membership::gate::Intruder;
    use patrol_agent::membership::roster::{GoneEntry, GoneReason, RosterEntry, RosterMember};

    fn entry(name: &str, last_seen: u64) -> RosterEntry {
        RosterEntry {
            name: name.to_string(),
            serial: 0xab,
            addr: "10.0.0.1:7946".parse().unwrap(),
            bump: 1,
            tags: Default::default(),
            first_seen_unix_ms: 1_795_000_000_000,
            last_seen_unix_ms: last_seen,
        }
    }

    fn view() -> RosterView {
        RosterView {
            node: "node-a".into(),
            members: vec![
                RosterMember {
                    entry: entry("node-a", 1_795_000_600_000),
                    swim: "alive".into(),
                },
                RosterMember {
                    entry: entry("node-c\x1b[2J", 1_795_000_300_000),
                    swim: "down".into(),
                },
            ],
            gone: vec![GoneEntry {
                entry: entry("node-7", 1_795_000_120_000),
                reason: GoneReason::Forgotten,
                gone_unix_ms: 1_795_000_900_000,
            }],
            intruders: vec![Intruder {
                name: "node-a".into(),
                addr: "10.0.0.9:7946".parse().unwrap(),
                reason: "no certificate\r\nforged".into(),
                packets: 42,
                first_seen_unix_ms: 1_795_000_000_000,
                last_seen_unix_ms: 1_795_000_500_000,
            }],
            expiry_ms: 7 * 86_400_000,
            capacity: 4096,
            refused_full: 0,
        }
    }

    #[test]
    fn the_roster_table_lists_members_gone_nodes_and_intruders_with_times_in_the_zone() {
        let text = table(&view(), "127.0.0.1:7947", &jiff::tz::TimeZone::UTC);
        let words = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
        let lines: Vec<String> = text.lines().map(words).collect();
        assert_eq!(
            lines[0],
            "roster of node-a (the agent at 127.0.0.1:7947): 2 certified nodes besides node-a"
        );
        assert_eq!(
            lines[1], "NAME ADDRESS SWIM FIRST SEEN LAST SEEN SERIAL",
            "{text}"
        );
        assert!(
            lines.contains(
                &"node-c\\x1b[2J 10.0.0.1:7946 down 2026-11-18 11:06 UTC 2026-11-18 11:11 UTC 00000000000000ab"
                    .to_string()
            ),
            "{text}"
        );
        assert!(
            lines.contains(
                &"1 not alive in SWIM (still expected: a sweep asks them directly)".to_string()
            ),
            "{text}"
        );
        assert!(
            lines.contains(
                &"node-7 forgotten 2026-11-18 11:08 UTC 2026-11-18 11:21 UTC".to_string()
            ),
            "{text}"
        );
        assert!(
            lines.contains(
                &"node-a 10.0.0.9:7946 no certificate\\r\\nforged 42 2026-11-18 11:15 UTC"
                    .to_string()
            ),
            "{text}"
        );
        assert!(
            text.ends_with("expiry 7d after last seen; room for 4096 nodes\n"),
            "{text}"
        );
        assert!(
            !text
                .chars()
                .any(|c| c != '\n' && patrol_checks::printable::is_unsafe(c, false)),
            "{text}"
        );
    }

    #[test]
    fn an_empty_roster_prints_no_gone_or_intruder_section() {
        let mut v = view();
        v.members.truncate(1);
        v.gone.clear();
        v.intruders.clear();
        v.refused_full = 3;
        let text = table(&v, "127.0.0.1:7947", &jiff::tz::TimeZone::UTC);
        assert!(
            !text.contains("gone") && !text.contains("intruders"),
            "{text}"
        );
        assert!(!text.contains("not alive"), "{text}");
        assert!(
            text.contains(": 1 certified node besides node-a\n"),
            "{text}"
        );
        assert_eq!(
            [span(129_600_000), span(5_400_000), span(1_500)],
            ["36h", "90m", "1.5s"]
        );
        assert!(
            text.contains("; 3 new names refused because the roster was full\n"),
            "{text}"
        );
    }

    #[test]
    fn forget_takes_a_node_name_and_the_connection_options() {
        use clap::Parser;
        let cli = crate::Cli::try_parse_from([
            "patrol",
            "roster",
            "forget",
            "node-7",
            "--seed",
            "127.0.0.1:7947",
            "--identity",
            "/tmp/alice",
        ])
        .unwrap();
        let crate::Command::Roster(args) = cli.command else {
            panic!("not roster: {cli:?}");
        };
        let Some(Command::Forget(f)) = args.command else {
            panic!("no forget: {args:?}");
        };
        assert_eq!(f.node, "node-7");
        assert_eq!(f.control.seeds, ["127.0.0.1:7947"]);
        assert!(crate::Cli::try_parse_from(["patrol", "roster", "forget"]).is_err());
    }
}
