//! `patrol members`: the mesh as one agent sees it; with `--stats`, the
//! answering agent's counters (the one counter list,
//! `patrol_core::counter_list`), also as a node_exporter textfile with
//! `--prometheus FILE` (the same series its `/metrics` serves).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use patrol_agent::control::{ControlRequest, Reply};
use patrol_agent::counter_list::Count;
use patrol_agent::membership::{MemberInfo, MemberState};
use patrol_checks::printable::one_line;

use crate::connect::ControlArgs;
use crate::format::Format;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub control: ControlArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Also show the answering agent's counters: datagrams in, out and
    /// dropped by reason, sweep messages refused by reason, sweeps, relay
    /// work.
    #[arg(long)]
    pub stats: bool,
    /// With --stats: also write the agent's counters as a node_exporter
    /// textfile-collector file, the same series its /metrics endpoint
    /// serves (replaced atomically; no timestamps).
    #[arg(long, value_name = "FILE", requires = "stats")]
    pub prometheus: Option<PathBuf>,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (addr, mut client) = args.control.open(&ControlRequest::Members).await?;
    let members = match client.recv().await? {
        Reply::Members(m) => m,
        Reply::Error(e) => bail!("{addr}: {e}"),
        other => bail!("{addr}: unexpected reply {other:?}"),
    };
    let stats = if args.stats {
        let (_, mut client) = args.control.open(&ControlRequest::Stats).await?;
        match client.recv().await? {
            Reply::Stats(s) => Some(*s),
            Reply::Error(e) => bail!("{addr}: {e}"),
            other => bail!("{addr}: unexpected reply {other:?}"),
        }
    } else {
        None
    };
    if let Some(note) = alone(&members, args.control.load_config()?.as_ref()) {
        eprintln!("patrol: warning: {note}");
    }
    let counts = stats.as_ref().map(|s| s.counts());
    if let (Some(path), Some(counts)) = (&args.prometheus, &counts) {
        let text = patrol_agent::metrics::counters_text(counts);
        crate::textfile::write_atomic(path, &text)?;
    }
    match (args.format, stats) {
        (Format::Junit, _) => {
            bail!("--format junit is for check results (sweep, check), not members")
        }
        (Format::Ndjson, stats) => {
            for m in &members {
                crate::stdout::outln!("{}", serde_json::to_string(m)?);
            }
            if let Some(s) = stats {
                crate::stdout::outln!(
                    "{}",
                    serde_json::to_string(&serde_json::json!({ "stats": s, "counters": counts }))?
                );
            }
        }
        (Format::Json, None) => {
            crate::stdout::outln!("{}", serde_json::to_string_pretty(&members)?)
        }
        (Format::Json, Some(s)) => crate::stdout::outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "members": members,
                "stats": s,
                "counters": counts,
            }))?
        ),
        (Format::Table, _) => {
            crate::stdout::out!("{}", table(&members));
            if let Some(counts) = &counts {
                crate::stdout::out!("{}", counters_table(&addr.to_string(), counts));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// When the answering agent sees no other live node: says so, naming the
/// config's seeds when it lists some besides the agent's own address.
pub fn alone(members: &[MemberInfo], config: Option<&patrol_config::Config>) -> Option<String> {
    let others = members
        .iter()
        .filter(|m| !m.is_self && matches!(m.state, MemberState::Alive | MemberState::Suspect))
        .count();
    if others > 0 {
        return None;
    }
    let seeds: Vec<&str> = config
        .map(|c| {
            let own = [Some(c.node.bind), c.node.advertise];
            c.node
                .seeds
                .iter()
                .filter(|s| {
                    s.parse::<std::net::SocketAddr>()
                        .map_or(true, |a| !own.contains(&Some(a)))
                })
                .map(String::as_str)
                .collect()
        })
        .unwrap_or_default();
    Some(if seeds.is_empty() {
        "this agent sees no other node: it is a cluster of one (if it should have company, list a few nodes in [node] seeds)".to_string()
    } else {
        format!(
            "this agent sees no other node: none of the seeds {} has joined it (check the seed addresses, that their gossip port is open to this node, and that they share the cluster name and key; the agent logs a warning after a minute alone)",
            one_line(&seeds.join(", "))
        )
    })
}

/// The agent's counters, one row each, in the counter list's order.
pub fn counters_table(addr: &str, counts: &[Count]) -> String {
    let rows: Vec<[String; 3]> = counts
        .iter()
        .map(|c| {
            [
                c.name.to_string(),
                c.reason.unwrap_or_default().to_string(),
                c.value.to_string(),
            ]
        })
        .collect();
    format!(
        "\ncounters of the agent at {}:\n{}",
        one_line(addr),
        crate::columns::render(["COUNTER", "REASON", "VALUE"], &rows)
    )
}

/// The members table with a summary line. Names, addresses and tags come
/// from other nodes: the table's cells and the conflict lines are printed
/// through [`one_line`].
pub fn table(members: &[MemberInfo]) -> String {
    let rows: Vec<[String; 4]> = members
        .iter()
        .map(|m| {
            let tags = m
                .tags
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            let name = if m.is_self {
                format!("{} (this agent)", m.name)
            } else {
                m.name.clone()
            };
            let state = if m.name_conflict {
                format!("{} (name conflict)", m.state.as_str())
            } else {
                m.state.as_str().to_string()
            };
            [name, m.addr.clone(), state, tags]
        })
        .collect();
    let mut out = crate::columns::render(["NAME", "ADDRESS", "STATE", "TAGS"], &rows);
    let count = |s: MemberState| members.iter().filter(|m| m.state == s).count();
    out.push_str(&format!(
        "{} members: {} alive, {} suspect, {} down, {} left\n",
        members.len(),
        count(MemberState::Alive),
        count(MemberState::Suspect),
        count(MemberState::Down),
        count(MemberState::Left)
    ));
    let conflicts: std::collections::BTreeSet<&str> = members
        .iter()
        .filter(|m| m.name_conflict)
        .map(|m| m.name.as_str())
        .collect();
    for name in conflicts {
        out.push_str(&format!(
            "name conflict: more than one node is called {}; sweeps list each as failing until one is renamed ([node] name)\n",
            one_line(name)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_tags_and_conflicts_from_other_nodes_print_no_control_character() {
        let member = |name: &str, conflict| MemberInfo {
            name: name.to_string(),
            addr: "10.0.0.1:7946\x1b[2J".to_string(),
            state: MemberState::Alive,
            tags: [("role\u{202e}".to_string(), "=x\r\n".to_string())].into(),
            is_self: false,
            name_conflict: conflict,
        };
        let text = table(&[member("evil\x1b]0;pwned\x07", true), member("ok", false)]);
        assert!(
            !text
                .chars()
                .any(|c| c != '\n' && patrol_checks::printable::is_unsafe(c, false)),
            "{text}"
        );
        assert_eq!(text.lines().count(), 5, "{text}");
        assert!(text.contains("evil\\x1b]0;pwned\\x07  10.0.0.1:7946\\x1b[2J"));
        assert!(text.contains("role\\u{202e}==x\\r\\n"), "{text}");
        assert!(text.contains("called evil\\x1b]0;pwned\\x07;"), "{text}");
    }

    #[test]
    fn the_counters_table_has_a_row_per_counter_with_its_reason() {
        let stats = patrol_agent::agent::AgentStats {
            dropped_unsealed: 3,
            ..Default::default()
        };
        let counts = stats.counts();
        let text = counters_table("127.0.0.1:7947", &counts);
        assert!(
            text.contains("counters of the agent at 127.0.0.1:7947:\n"),
            "{text}"
        );
        assert_eq!(text.lines().count(), counts.len() + 3, "{text}");
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>()
                    == ["datagrams_dropped", "unsealed", "3"]),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["datagrams_sent", "0"]),
            "{text}"
        );
    }
}
