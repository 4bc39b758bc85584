//! `patrol sweep`: ask any agent to coordinate a sweep, show progress,
//! print the result (table or the JSON sweep document), optionally store
//! it and send the report email, and exit with a code cron can act on.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use patrol_agent::control::{ControlRequest, Reply};
use patrol_checks::printable::one_line;
use patrol_checks::{CompactDocument, NodeEntry, NodeState, Selector, Status, SweepView};

use crate::connect::{ControlArgs, Target};
use crate::format::Format;
use patrol_config::parse_duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub control: ControlArgs,
    /// Run only these checks (comma-separated ids).
    #[arg(long, value_delimiter = ',', value_name = "ID,...")]
    pub checks: Vec<String>,
    /// Run only checks carrying one of these labels (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "LABEL,...")]
    pub labels: Vec<String>,
    /// Run only the checks of this profile (e.g. k8s-node).
    #[arg(long)]
    pub profile: Option<String>,
    /// Only nodes with this tag take part; repeat to require several.
    #[arg(long = "where", value_name = "TAG=VALUE", value_parser = parse_tag)]
    pub filter: Vec<(String, String)>,
    /// How long the coordinator waits for answers (default: the config's
    /// `sweep.default_deadline`, else 5s).
    #[arg(long, value_parser = parse_duration)]
    pub deadline: Option<Duration>,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Also write the sweep document (JSON) to this file.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Also write the sweep's figures as a node_exporter textfile-collector
    /// file (replaced atomically; no timestamps).
    #[arg(long, value_name = "FILE")]
    pub prometheus: Option<PathBuf>,
    /// In the table, list the nodes whose checks all passed too.
    #[arg(long)]
    pub all: bool,
    /// After the table, show how this check's observed values spread over
    /// the fleet: top values first, with sample nodes (repeatable).
    #[arg(long, value_name = "CHECK")]
    pub distribution: Vec<String>,
    /// Show a stored sweep document (written by `--out`, or from the
    /// history) as if it had just run: no agent is asked.
    #[arg(long, value_name = "FILE.json")]
    pub from: Option<PathBuf>,
    /// Store the sweep in the history, render the report and send it per
    /// the config's [mail] section (or write a .eml when none is set).
    #[arg(long)]
    pub email: bool,
}

/// The exit codes, as `patrol sweep --help` and its man page list them
/// (the same table is in patrol-cli/README.md).
pub const EXIT_CODES: &str = "\
Exit codes:
  0  every node answered and every check passed
  1  warnings only
  2  a check failed or errored, or a node did not answer or is down
  3  the sweep could not run (no agent answered, refused, bad config)
  4  with --email: the report was not sent (it is kept on disk)
  5  the sweep did not cover what was asked: a --checks id no node has
     (the closest known id is named), a --where filter that matched no
     node, a selector that ran no check on any node, or a coordinator
     that sees no other node although the config lists seeds
     (5 wins over 0, 1 and 2; 3 and 4 win over 5)";

fn parse_tag(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("expected TAG=VALUE, got `{text}`")),
    }
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Load the config first when mail is wanted: a broken config must not
    // cost a whole sweep.
    let loaded = args.control.load_config()?;
    let deadline = args
        .deadline
        .or(loaded.as_ref().map(|c| c.sweep.default_deadline))
        .unwrap_or(Duration::from_secs(5));
    let zone = loaded
        .as_ref()
        .map_or_else(jiff::tz::TimeZone::system, |c| c.report.zone());
    let config = args.email.then(|| loaded.clone().unwrap_or_default());
    let request = ControlRequest::StartSweep {
        selector: Selector {
            checks: args.checks.clone(),
            labels: args.labels.clone(),
            profile: args.profile.clone(),
        },
        node_filter: args.filter.iter().cloned().collect::<BTreeMap<_, _>>(),
        deadline_ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
        signed: None,
    };
    // The document is held compact, and read one node at a time by each
    // output below (issue 25: a 100,000-node document is 66 MiB so).
    let (doc, textfile) = match &args.from {
        Some(path) => {
            let doc = patrol_report::history::read_document(path)?;
            let textfile = args
                .prometheus
                .as_ref()
                .map(|_| crate::textfile::render([&doc as &dyn SweepView], &[]));
            (doc, textfile)
        }
        None => sweep_targets(&args, &request).await?,
    };

    if let Some(path) = &args.out {
        let file = patrol_report::permissions::create_file(path)
            .with_context(|| format!("writing {}", path.display()))?;
        let mut w = std::io::BufWriter::new(file);
        serde_json::to_writer_pretty(&mut w, &doc)
            .map_err(std::io::Error::from)
            .and_then(|()| std::io::Write::flush(&mut w))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let (Some(path), Some(text)) = (&args.prometheus, &textfile) {
        crate::textfile::write_atomic(path, text)?;
    }
    match args.format {
        Format::Json => crate::stdout::write_with(|w| {
            serde_json::to_writer_pretty(&mut *w, &doc)?;
            w.write_all(b"\n")
        })?,
        Format::Ndjson => {
            // One line per node, from the finished document (the control
            // channel streams counts only, not node entries, while the
            // sweep runs).
            for n in doc.expanded_nodes() {
                crate::stdout::outln!("{}", serde_json::to_string(&n)?);
            }
        }
        Format::Junit => crate::stdout::write_with(|w| junit(&doc, w))?,
        Format::Table => {
            crate::stdout::out!("{}", table(&doc, args.all, &zone));
            let units = patrol_checks::check_units(loaded.as_ref());
            crate::stdout::out!("{}", distributions(&doc, &args.distribution, &units));
        }
    }
    let mut code = exit_code(&doc);
    if args.from.is_none() {
        let asked = crate::coverage::Asked {
            config: loaded.as_ref(),
            single_cluster: args.control.contexts.is_empty() && !args.control.all_contexts,
        };
        let gaps = crate::coverage::gaps(&doc, &asked);
        for gap in &gaps {
            eprintln!("patrol: {gap}");
        }
        if !gaps.is_empty() {
            code = ExitCode::from(crate::coverage::EXIT_GAP);
        }
    }
    if let Some(config) = config {
        let delivered = patrol_report::email_sweep(&doc, &config).await;
        if let Ok(d) = &delivered {
            for w in &d.files.warnings {
                eprintln!("patrol: warning: {w}");
            }
        }
        match delivered {
            Ok(d) if d.sent_to.is_empty() => eprintln!(
                "report written to {}; no SMTP server configured, message kept as {}",
                d.files.dir.display(),
                d.eml
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
            Ok(d) => eprintln!(
                "report sent to {} (files in {})",
                d.sent_to.join(", "),
                d.files.dir.display()
            ),
            Err(e) => {
                // The error names the kept report and the command that
                // sends it later (with this config): said once.
                eprintln!("patrol: the report was not sent: {e}");
                return Ok(ExitCode::from(4));
            }
        }
    }
    Ok(code)
}

/// The sweep of every target the arguments name (one `--seed` list, or
/// contexts), with one progress bar: the merged document, and with
/// `--prometheus` the textfile of each cluster's own document and the
/// clusters that could not be swept (made before the documents are
/// merged, so that only one copy is held).
async fn sweep_targets(
    args: &Args,
    request: &ControlRequest,
) -> anyhow::Result<(CompactDocument, Option<String>)> {
    let targets = args.control.targets()?;
    let bar = progress_bar(None);
    bar.enable_steady_tick(Duration::from_millis(100));
    if targets.len() == 1 && targets[0].context.is_none() {
        let doc = sweep_target(&targets[0], request, |answered, expected| {
            bar.set_length(expected);
            bar.set_position(answered);
        })
        .await;
        bar.finish_and_clear();
        let doc = doc?;
        let textfile = args
            .prometheus
            .as_ref()
            .map(|_| crate::textfile::render([&doc as &dyn SweepView], &[]));
        return Ok((doc, textfile));
    }
    let parts = sweep_all(&targets, request, &bar).await;
    bar.finish_and_clear();
    let mut unreachable = Vec::new();
    for p in &parts {
        if let Err(e) = &p.result {
            // The reason can span lines (one per seed tried): kept as
            // lines, never folded into a literal `\n`.
            eprintln!(
                "patrol: cluster {} could not be swept: {}",
                one_line(&p.label),
                patrol_checks::printable::lines(e)
            );
            unreachable.push(p.label.clone());
        }
    }
    let textfile = args.prometheus.as_ref().map(|_| {
        let per_cluster = parts
            .iter()
            .filter_map(|p| p.result.as_ref().ok())
            .map(|d| d as &dyn SweepView);
        crate::textfile::render(per_cluster, &unreachable)
    });
    Ok((crate::contexts::merge(parts), textfile))
}

/// One cluster's sweep: connect to the first seed that answers, follow the
/// progress, return the document.
async fn sweep_target(
    target: &Target,
    request: &ControlRequest,
    on_progress: impl Fn(u64, u64),
) -> anyhow::Result<CompactDocument> {
    let (addr, mut client) = target.open(request).await?;
    loop {
        match client
            .recv()
            .await
            .with_context(|| format!("sweep through {addr}"))?
        {
            Reply::Progress { answered, expected } => on_progress(answered, expected),
            Reply::SweepDone(doc) => return Ok(*doc),
            Reply::Error(e) => bail!("{addr}: {e}"),
            other => bail!("{addr}: unexpected reply {other:?}"),
        }
    }
}

/// Every target at once; one progress bar over all of them. A cluster
/// whose sweep fails is a result too (it is listed, never dropped).
async fn sweep_all(
    targets: &[Target],
    request: &ControlRequest,
    bar: &ProgressBar,
) -> Vec<crate::contexts::ClusterResult> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(usize, u64, u64)>(256);
    let handles: Vec<_> = targets
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, target)| {
            let tx = tx.clone();
            let request = request.clone();
            tokio::spawn(async move {
                sweep_target(&target, &request, |a, e| {
                    let _ = tx.try_send((i, a, e));
                })
                .await
                .map_err(|e| format!("{e:#}"))
            })
        })
        .collect();
    drop(tx);
    let mut progress = vec![(0u64, 0u64); targets.len()];
    while let Some((i, answered, expected)) = rx.recv().await {
        progress[i] = (answered, expected);
        bar.set_length(progress.iter().map(|p| p.1).sum());
        bar.set_position(progress.iter().map(|p| p.0).sum());
    }
    let mut parts = Vec::with_capacity(targets.len());
    for (target, handle) in targets.iter().zip(handles) {
        let result = handle
            .await
            .unwrap_or_else(|e| Err(format!("the sweep task failed: {e}")));
        parts.push(crate::contexts::ClusterResult {
            label: target.label(),
            result,
        });
    }
    parts
}

/// The sweep's progress bar on stderr (hidden when stderr is not a
/// terminal): answers so far of expected, and elapsed time.
pub fn progress_bar(expected: Option<u64>) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(expected, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos}/{len} nodes answered  {elapsed_precise}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar
}

/// 0: every node answered and every check passed; 1: warnings only;
/// 2: a check failed or errored, or a node is silent or down. (`run`
/// returns 3 when the sweep could not run, 4 when `--email` could not
/// send the report, which is then kept on disk, and 5 when the sweep did
/// not cover what it was asked to: see `coverage.rs`.)
pub fn exit_code(doc: &dyn SweepView) -> ExitCode {
    let c = doc.head().counts;
    let unreachable = c.no_answer + c.down > 0;
    crate::format::exit_code(doc.nodes().map(|n| n.worst()), unreachable)
}

/// The sweep as JUnit XML, into `out`: a suite per node, a case per
/// check; nodes that did not answer get one erroring case. Two passes
/// over the nodes (the totals come first), none of them held.
pub fn junit(doc: &dyn SweepView, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let completed_ms = doc.head().timing.completed_ms;
    let mut totals = crate::junit::Totals::default();
    for n in doc.nodes() {
        with_suite(&n, completed_ms, |s| totals.add(s));
    }
    crate::junit::head(out, &totals)?;
    for n in doc.nodes() {
        with_suite(&n, completed_ms, |s| {
            out.write_all(crate::junit::suite(s).as_bytes())
        })?;
    }
    crate::junit::foot(out)
}

/// What `f` makes of node `n` as a JUnit suite.
fn with_suite<R>(
    n: &NodeEntry,
    completed_ms: u64,
    f: impl FnOnce(&crate::junit::Suite<'_>) -> R,
) -> R {
    let why = n
        .silence
        .as_ref()
        .map(|s| patrol_report::silence::explain(s, completed_ms));
    f(&crate::junit::Suite {
        node: &n.name,
        unreachable: match n.state {
            NodeState::NoAnswer => Some(
                why.as_deref()
                    .unwrap_or("believed alive, no answer before the deadline"),
            ),
            NodeState::Down => Some("SWIM reports the node down or left"),
            NodeState::Ok | NodeState::Failing => None,
        },
        checks: &n.checks,
    })
}

/// `--distribution CHECK`: how each named check's values spread, with
/// the units of the checks as `units` (from the config) gives them.
pub fn distributions(
    doc: &dyn SweepView,
    checks: &[String],
    units: &std::collections::BTreeMap<String, &str>,
) -> String {
    let mut out = String::new();
    if checks.is_empty() {
        return out;
    }
    // One pass over the nodes for every check asked.
    let all = patrol_report::distribution::distributions(doc);
    for check in checks {
        out.push('\n');
        match all.iter().find(|d| &d.check == check).cloned() {
            Some(mut d) => {
                patrol_report::distribution::label_units(std::slice::from_mut(&mut d), units);
                out.push_str(&d.table())
            }
            None => out.push_str(&format!("{check}: no node that answered ran this check\n")),
        }
    }
    out
}

/// What the table keeps of a node it may list: its row's cells and its
/// problem set, never its checks.
struct Listed {
    /// The node's name.
    node: String,
    /// The NODE cell: the name with notes.
    name: String,
    state: NodeState,
    /// The PASSED cell.
    checks: String,
    /// The ANSWER cell.
    time: String,
    /// The NOT PASSING cell of the node's own row.
    detail: String,
    /// [`problem_set`].
    set: String,
    /// Ok with no check: listed even without `--all`.
    empty: bool,
}

/// The checks not passing, grouped across nodes: (worst first, id,
/// status, message) -> node names, in the document's order.
type NotPassing = BTreeMap<(u8, String, String, String), Vec<String>>;

/// The human table: nodes with problems first (down, silent, failing),
/// then the checks that did not pass grouped across nodes, then the
/// counts and timing. Text from nodes is printed through
/// [`one_line`] (the table's cells by [`crate::columns::render`]).
/// One pass over the nodes: it keeps the nodes it lists (without
/// `--all`, those with problems) and the groups of checks not passing.
pub fn table(doc: &dyn SweepView, all: bool, zone: &jiff::tz::TimeZone) -> String {
    let h = doc.head();
    let sweep_ms = h.timing.completed_ms;
    let mut out = format!(
        "sweep {} coordinated by {}{} at {} ({}, deadline {})\n\n",
        one_line(h.sweep_id),
        one_line(h.coordinator),
        h.operator
            .map(|o| format!(" for operator {}", one_line(o)))
            .unwrap_or_default(),
        patrol_report::text::date_time(h.started_at_unix_ms, zone),
        one_line(&h.selector.describe()),
        patrol_config::format_duration(Duration::from_millis(h.deadline_ms))
    );
    let mut nodes: Vec<Listed> = Vec::new();
    // Nodes with every check passing that are not listed.
    let mut hidden = 0;
    let mut not_passing = NotPassing::new();
    for n in doc.nodes() {
        for c in n.checks.iter().filter(|c| c.status != Status::Pass) {
            not_passing
                .entry((
                    u8::MAX - c.status.badness(),
                    c.id.clone(),
                    c.status.to_string(),
                    c.message.clone(),
                ))
                .or_default()
                .push(n.name.clone());
        }
        // A node none of whose checks matched the selector answered "ok"
        // having checked nothing: always shown, so nobody reads it as a pass.
        let empty = n.state == NodeState::Ok && n.checks.is_empty();
        if n.state == NodeState::Ok && !all && !empty {
            hidden += 1;
            continue;
        }
        let passed = n.checks.iter().filter(|c| c.status == Status::Pass).count();
        let mut name = n.name.clone();
        if n.late_joiner {
            name.push_str(" (joined late)");
        }
        if let Some(swim) = n.swim {
            name.push_str(&format!(" ({})", patrol_report::roster::swim_note(swim)));
        }
        nodes.push(Listed {
            checks: match n.state {
                NodeState::Ok | NodeState::Failing => format!("{passed}/{}", n.checks.len()),
                _ => "-".into(),
            },
            time: n
                .answered_ms
                .map(|ms| format!("{ms} ms"))
                .unwrap_or_else(|| "-".into()),
            detail: problem_detail(&n, sweep_ms),
            set: problem_set(&n, sweep_ms),
            node: n.name.clone(),
            name,
            state: n.state,
            empty: n.checks.is_empty(),
        });
    }
    // NodeState orders ok < failing < no_answer < down: worst first. The
    // sort is stable, as it was over the whole node list.
    nodes.sort_by(|a, b| b.state.cmp(&a.state).then(a.node.cmp(&b.node)));
    let listed = nodes.len();
    // Nodes with the same problems share a row whenever that makes the
    // table shorter (25 identical failing nodes are one row, not 25), and
    // always above a screenful.
    let sets: std::collections::BTreeSet<(NodeState, &str)> = nodes
        .iter()
        .filter(|n| n.state != NodeState::Ok || n.empty)
        .map(|n| (n.state, n.set.as_str()))
        .collect();
    if !all && (listed > SCREENFUL || sets.len() < listed) {
        out.push_str(&grouped_rows(&nodes, hidden));
        return footer(doc, not_passing, out, true, zone);
    }
    let rows: Vec<[String; 5]> = nodes
        .into_iter()
        .map(|n| [n.name, n.state.to_string(), n.checks, n.time, n.detail])
        .collect();
    if !rows.is_empty() {
        out.push_str(&crate::columns::render(
            ["NODE", "STATE", "PASSED", "ANSWER", "NOT PASSING"],
            &rows,
        ));
    }
    if hidden > 0 {
        out.push_str(&format!(
            "({hidden} nodes with every check passing not listed; --all lists them)\n"
        ));
    }

    footer(doc, not_passing, out, false, zone)
}

/// Above this many node rows (a screenful), nodes share rows by their set
/// of problems even when each set is one node's; `--all` lists every node.
pub const SCREENFUL: usize = 40;
/// Problem-set rows shown when grouped; the rest are counted.
const MAX_SET_ROWS: usize = 30;
/// Lines of "checks not passing" shown when grouped.
const MAX_CHECK_LINES: usize = 20;
/// Node names shown per grouped row.
const SET_SAMPLES: usize = 3;

/// One row per (state, set of problems): how many nodes, which problems,
/// a few names. Worst state first, then most nodes. `nodes` are the
/// listed ones, worst first; `hidden` nodes passed every check.
fn grouped_rows(nodes: &[Listed], hidden: usize) -> String {
    let mut sets: BTreeMap<(NodeState, &str), Vec<&str>> = BTreeMap::new();
    for n in nodes {
        sets.entry((n.state, &n.set)).or_default().push(&n.node);
    }
    let mut list: Vec<_> = sets.into_iter().collect();
    list.sort_by(|a, b| {
        b.0 .0
            .cmp(&a.0 .0)
            .then(b.1.len().cmp(&a.1.len()))
            .then(a.0 .1.cmp(b.0 .1))
    });
    let more = list.len().saturating_sub(MAX_SET_ROWS);
    let rows: Vec<[String; 4]> = list
        .iter()
        .take(MAX_SET_ROWS)
        .map(|((state, problems), names)| {
            let mut sample = names
                .iter()
                .take(SET_SAMPLES)
                .copied()
                .collect::<Vec<_>>()
                .join(", ");
            if names.len() > SET_SAMPLES {
                sample.push_str(", ...");
            }
            [
                names.len().to_string(),
                state.to_string(),
                problems.to_string(),
                sample,
            ]
        })
        .collect();
    let mut out = crate::columns::render(["NODES", "STATE", "NOT PASSING", "FOR EXAMPLE"], &rows);
    if more > 0 {
        out.push_str(&format!("({more} more problem sets not shown)\n"));
    }
    out.push_str(&format!(
        "(nodes with the same problems share a row; {hidden} nodes with every check passing not listed; --all lists every node)\n"
    ));
    out
}

/// What a node's own row says is wrong: its problem set, and for a silent
/// node why, with the times and counts it rests on.
fn problem_detail(n: &NodeEntry, sweep_ms: u64) -> String {
    match (&n.silence, n.state) {
        (Some(silence), NodeState::NoAnswer) => patrol_report::silence::explain(silence, sweep_ms),
        _ => problem_set(n, sweep_ms),
    }
}

/// What a node's row says is wrong, the same words for the same problems
/// (a silent node: the verdict on why, without its times).
fn problem_set(n: &NodeEntry, sweep_ms: u64) -> String {
    if let (Some(silence), NodeState::NoAnswer) = (&n.silence, n.state) {
        return patrol_report::silence::cause(silence, sweep_ms)
            .words()
            .to_string();
    }
    match n.state {
        NodeState::Down => "SWIM reports the node down or left".into(),
        // A cluster that could not be swept carries the reason.
        NodeState::NoAnswer if !n.checks.is_empty() => n
            .checks
            .iter()
            .map(|c| c.message.clone())
            .collect::<Vec<_>>()
            .join("; "),
        NodeState::NoAnswer => "believed alive, no answer before the deadline".into(),
        NodeState::Ok if n.checks.is_empty() => {
            "answered, but no check of its config matches the selector".into()
        }
        _ => {
            let mut bad: Vec<_> = n
                .checks
                .iter()
                .filter(|c| c.status != Status::Pass)
                .collect();
            bad.sort_by(|a, b| {
                b.status
                    .badness()
                    .cmp(&a.status.badness())
                    .then(a.id.cmp(&b.id))
            });
            bad.iter()
                .map(|c| format!("{} {}", c.status, c.id))
                .collect::<Vec<_>>()
                .join(", ")
        }
    }
}

/// The checks not passing, grouped across nodes (bounded when `grouped`),
/// then counts and timing.
fn footer(
    doc: &dyn SweepView,
    groups: NotPassing,
    mut out: String,
    grouped: bool,
    zone: &jiff::tz::TimeZone,
) -> String {
    // The same problem on many nodes is one line.
    if !groups.is_empty() {
        out.push_str("\nchecks not passing:\n");
        let mut list: Vec<_> = groups.into_iter().collect();
        list.sort_by(|a, b| {
            a.0 .0
                .cmp(&b.0 .0)
                .then(b.1.len().cmp(&a.1.len()))
                .then(a.0 .1.cmp(&b.0 .1))
        });
        let shown = if grouped { MAX_CHECK_LINES } else { usize::MAX };
        let more = list.len().saturating_sub(shown);
        for ((_, id, status, message), names) in list.into_iter().take(shown) {
            let sample: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
            let more = if names.len() > 3 {
                format!(" (+{})", names.len() - 3)
            } else {
                String::new()
            };
            out.push_str(&format!(
                "  {status:<5} {}: {} - {} node{}: {}{more}\n",
                one_line(&id),
                one_line(&message),
                names.len(),
                if names.len() == 1 { "" } else { "s" },
                one_line(&sample.join(", "))
            ));
        }
        if more > 0 {
            out.push_str(&format!(
                "  ... {more} more (check, value) lines; --all lists them\n"
            ));
        }
    }
    let h = doc.head();
    let c = h.counts;
    out.push_str(&format!(
        "\n{} expected: {} ok, {} failing, {} no answer, {} down",
        c.expected, c.ok, c.failing, c.no_answer, c.down
    ));
    if c.late_joiners > 0 {
        out.push_str(&format!(" (+{} joined late)", c.late_joiners));
    }
    out.push('\n');
    // With [trust]: the coordinator's roster, in words (names from nodes).
    for line in [
        patrol_report::roster::swim_line(doc),
        patrol_report::roster::gone_line(doc, zone),
    ] {
        if !line.is_empty() {
            out.push_str(&format!("{}\n", one_line(&line)));
        }
    }
    let t = h.timing;
    let ms = |v: Option<u64>| v.map(|v| format!("{v} ms")).unwrap_or_else(|| "-".into());
    out.push_str(&format!(
        "request reached 50% in {}, 99% in {}, all in {}; last answer at {}; accounted for in {} ms\n",
        ms(t.reached_p50_ms),
        ms(t.reached_p99_ms),
        ms(t.reached_max_ms),
        ms(t.last_answer_ms),
        t.completed_ms
    ));
    out
}
