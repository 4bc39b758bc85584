//! `patrol report`: render or send the report of a stored sweep.
//!
//! ```text
//! patrol report SWEEP.json                       text report on stdout
//! patrol report SWEEP.json --html FILE [--text]  HTML into FILE (and text)
//! patrol report SWEEP.json --against OLDER.json  compare with that sweep
//! patrol report --send SWEEP.json                store, render, mail
//! patrol report --send DIR/message.eml           send a kept report (then
//!                                                renamed message.sent.eml)
//! ```
//!
//! Without `--against`, a sweep is compared with the previous sweep of the
//! same scope in `[report] history_dir` (read only: rendering stores
//! nothing). `--send` goes through [`patrol_report::send_file`].
//!
//! Exit codes: 0 done, 3 Patrol could not run (unreadable file, config
//! problem, no `[mail]`), 4 the mail was not sent: the report is kept on
//! disk and the message says where and how to send it later.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use patrol_config::{Config, DEFAULT_CONFIG_PATH};
use patrol_report::delivery::DEFAULT_PREFIX;
use patrol_report::store::History;
use patrol_report::{history, render_report, send_file, PreviousSweep, ReportError};

/// Exit code when sending failed and the report was kept on disk.
pub const EXIT_NOT_SENT: u8 = 4;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A sweep document (`patrol sweep --format json`); with --send, also
    /// a kept `message.eml`.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Write the HTML report to this file.
    #[arg(long, value_name = "FILE", conflicts_with = "send")]
    html: Option<PathBuf>,
    /// Write the CSV of every node and check to this file.
    #[arg(long, value_name = "FILE", conflicts_with = "send")]
    csv: Option<PathBuf>,
    /// Print the plain-text report on stdout (the default when neither
    /// --html nor --csv is given).
    #[arg(long, conflicts_with = "send")]
    text: bool,
    /// Send it per the config's [mail]: a sweep JSON is stored in the
    /// history, rendered and mailed; a kept `.eml` is sent as it is.
    #[arg(long)]
    send: bool,
    /// Compare with this older sweep instead of the history.
    #[arg(long, value_name = "OLDER.json", conflicts_with = "send")]
    against: Option<PathBuf>,
    /// Config file for [mail] and [report] (default: /etc/patrol/patrol.toml
    /// when it exists, else built-in defaults).
    #[arg(long)]
    config: Option<PathBuf>,
}

fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    match path {
        Some(p) => Config::load(p).map_err(|e| anyhow::anyhow!("{e}")),
        None if Path::new(DEFAULT_CONFIG_PATH).exists() => {
            Config::load(Path::new(DEFAULT_CONFIG_PATH)).map_err(|e| anyhow::anyhow!("{e}"))
        }
        None => Ok(Config::default()),
    }
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = load_config(args.config.as_deref())?;
    if args.send {
        return send(&args.file, &config).await;
    }
    let doc = history::read_document(&args.file)?;
    let against = args
        .against
        .as_deref()
        .map(history::read_document)
        .transpose()?;
    // A history that cannot be read only costs the comparison; a missing
    // one is not created (rendering stores nothing).
    let db = config
        .report
        .history_dir
        .join(patrol_report::store::DB_FILE);
    let stored = match &against {
        Some(_) => None,
        None if !db.exists() => None,
        None => match History::open(&config.report.history_dir).and_then(|h| h.previous(&doc)) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("patrol: warning: {e}; compared with nothing");
                None
            }
        },
    };
    let previous = match (&against, &stored) {
        (Some(doc), _) => Some(PreviousSweep {
            doc,
            first_seen: None,
        }),
        (None, Some(s)) => Some(PreviousSweep {
            doc: &s.doc,
            first_seen: Some(&s.first_seen),
        }),
        (None, None) => None,
    };
    let prefix = config
        .mail
        .as_ref()
        .map_or(DEFAULT_PREFIX, |m| m.subject_prefix.as_str());
    let rendered = render_report(&doc, previous, prefix, &config.report.zone())?;
    if let Some(path) = &args.html {
        patrol_report::permissions::write_file(path, rendered.html.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.csv {
        // Node by node: the CSV of a large fleet is never held whole.
        let write = || -> std::io::Result<()> {
            let mut w = std::io::BufWriter::new(patrol_report::permissions::create_file(path)?);
            patrol_report::attachment::write_csv(&doc, &mut w)?;
            std::io::Write::flush(&mut w)
        };
        write().with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.text || (args.html.is_none() && args.csv.is_none()) {
        crate::stdout::out!("{}", rendered.text);
    }
    Ok(ExitCode::SUCCESS)
}

async fn send(file: &Path, config: &Config) -> anyhow::Result<ExitCode> {
    match send_file(file, config).await {
        Ok(sent) => {
            crate::stdout::outln!("sent {} to {}", file.display(), sent.to.join(", "));
            if let Some(p) = sent.renamed {
                crate::stdout::outln!("renamed it {}", p.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ ReportError::Send { .. }) => {
            eprintln!("patrol: {e}");
            Ok(ExitCode::from(EXIT_NOT_SENT))
        }
        Err(e) => Err(e.into()),
    }
}
