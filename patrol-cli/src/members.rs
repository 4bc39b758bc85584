//! `patrol members`: the mesh as one agent sees it.

use std::process::ExitCode;

use anyhow::bail;
use patrol_agent::control::{ControlRequest, Reply};
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
    /// Also show the answering agent's counters (datagrams in and out,
    /// dropped because they did not open or did not decode, sweeps).
    #[arg(long)]
    pub stats: bool,
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
            Reply::Stats(s) => Some(s),
            Reply::Error(e) => bail!("{addr}: {e}"),
            other => bail!("{addr}: unexpected reply {other:?}"),
        }
    } else {
        None
    };
    match (args.format, stats) {
        (Format::Junit, _) => {
            bail!("--format junit is for check results (sweep, check), not members")
        }
        (Format::Ndjson, stats) => {
            for m in &members {
                println!("{}", serde_json::to_string(m)?);
            }
            if let Some(s) = stats {
                println!(
                    "{}",
                    serde_json::to_string(&serde_json::json!({ "stats": s }))?
                );
            }
        }
        (Format::Json, None) => println!("{}", serde_json::to_string_pretty(&members)?),
        (Format::Json, Some(s)) => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "members": members, "stats": s }))?
        ),
        (Format::Table, stats) => {
            print!("{}", table(&members));
            if let Some(s) = stats {
                println!(
                    "agent at {addr}: {} datagrams in, {} out; dropped: {} that did not open (wrong key, corrupted, other cluster), {} malformed, {} outbound (queue full); refused: {} acks, {} answer pieces, {} future-dated requests, {} requests over capacity; {} sweeps coordinated, {} check runs",
                    s.node.datagrams_in + s.dropped_unsealed,
                    s.node.datagrams_out,
                    s.dropped_unsealed,
                    s.node.dropped_malformed,
                    s.dropped_outbound,
                    s.node.sweep.acks_refused,
                    s.node.sweep.pieces_refused,
                    s.node.sweep.requests_clock_skew,
                    s.node.sweep.requests_over_capacity,
                    s.node.sweeps_coordinated,
                    s.node.checks_runs
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
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
}
