//! Delivery: write the report files, store the sweep in the history, send
//! the mail or write an `.eml`, and send a kept report later.
//!
//! Files of one report, in one folder:
//! `report.html`, `report.txt`, `nodes.csv` (every node and check),
//! `sweep.json` (the sweep document) and, when the mail did not go out,
//! `message.eml` (the exact message, ready for `patrol report --send`).

use std::fs;
use std::path::{Path, PathBuf};

use patrol_checks::SweepDocument;
use patrol_config::Config;

use crate::error::ReportError;
use crate::history::{self, write_atomic};
use crate::mail::{self, Parts};
use crate::render;
use crate::summary::{self, PreviousSweep, Report};
use crate::text::stamp;

/// Subject prefix when there is no `[mail]` section.
const DEFAULT_PREFIX: &str = "[patrol]";
/// Name of the CSV file and attachment.
pub const CSV_NAME: &str = "nodes.csv";

/// What was written and whether mail went out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub dir: PathBuf,
    pub html: PathBuf,
    pub text: PathBuf,
    pub csv: PathBuf,
    pub json: PathBuf,
    pub eml: Option<PathBuf>,
    pub sent_to: Vec<String>,
}

/// Rendered bodies of one report.
struct Rendered {
    subject: String,
    text: String,
    html: String,
    csv: String,
}

fn render_all(doc: &SweepDocument, report: &Report, prefix: &str) -> Result<Rendered, ReportError> {
    let view = render::view(report, prefix);
    Ok(Rendered {
        text: render::text(&view)?,
        html: render::html(&view)?,
        csv: crate::attachment::csv(doc),
        subject: view.subject,
    })
}

fn write_files(doc: &SweepDocument, r: &Rendered, dir: &Path) -> Result<Delivery, ReportError> {
    fs::create_dir_all(dir).map_err(|e| ReportError::io("create", dir, e))?;
    let d = Delivery {
        dir: dir.to_path_buf(),
        html: dir.join("report.html"),
        text: dir.join("report.txt"),
        csv: dir.join(CSV_NAME),
        json: dir.join("sweep.json"),
        eml: None,
        sent_to: Vec::new(),
    };
    write_atomic(&d.html, r.html.as_bytes())?;
    write_atomic(&d.text, r.text.as_bytes())?;
    write_atomic(&d.csv, r.csv.as_bytes())?;
    let json = serde_json::to_vec_pretty(doc).map_err(|source| ReportError::Encode {
        what: "the sweep document",
        source,
    })?;
    write_atomic(&d.json, &json)?;
    Ok(d)
}

/// `patrol demo` and `patrol report`: render the report files for `doc`
/// into `dir` (creating it), diffing against `previous` if given. No mail.
pub fn write_report(
    doc: &SweepDocument,
    previous: Option<&SweepDocument>,
    dir: &Path,
) -> Result<Delivery, ReportError> {
    let report = summary::build(
        doc,
        previous.map(|p| PreviousSweep {
            doc: p,
            first_seen: None,
        }),
    );
    let rendered = render_all(doc, &report, DEFAULT_PREFIX)?;
    write_files(doc, &rendered, dir)
}

/// The folder of one report under `out_dir`: `<date-time>-<sweep id>`.
pub fn report_dir(out_dir: &Path, doc: &SweepDocument) -> PathBuf {
    let id: String = doc
        .sweep_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(32)
        .collect();
    out_dir.join(format!("{}-{id}", stamp(doc.started_at_unix_ms)))
}

/// `patrol sweep --email`: store `doc` in the history
/// (`config.report.history_dir`), diff against the previous sweep of the
/// same scope, render into `config.report.out_dir/<date-sweepid>/`, then
/// send per `config.mail` (or write an `.eml` when no SMTP is configured).
/// When sending fails, the files and `message.eml` stay on disk and the
/// error ([`ReportError::Send`]) says where.
pub async fn email_sweep(doc: &SweepDocument, config: &Config) -> Result<Delivery, ReportError> {
    let history_dir = &config.report.history_dir;
    let previous = history::previous(history_dir, doc)?;
    let report = summary::build(
        doc,
        previous.as_ref().map(|p| PreviousSweep {
            doc: &p.doc,
            first_seen: p.first_seen.as_ref(),
        }),
    );
    history::store(history_dir, doc, &report.first_seen())?;

    let mail_cfg = config.mail.as_ref();
    let prefix = mail_cfg.map_or(DEFAULT_PREFIX, |m| m.subject_prefix.as_str());
    let rendered = render_all(doc, &report, prefix)?;
    let dir = report_dir(&config.report.out_dir, doc);
    let mut delivery = write_files(doc, &rendered, &dir)?;
    let message = mail::build_message(
        mail_cfg,
        Parts {
            subject: &rendered.subject,
            text: &rendered.text,
            html: &rendered.html,
            csv: &rendered.csv,
            csv_name: CSV_NAME,
        },
    )?;
    let eml = dir.join("message.eml");
    match mail_cfg.filter(|m| m.smtp_host.is_some()) {
        Some(m) => match mail::send(m, message.clone()).await {
            Ok(to) => delivery.sent_to = to,
            Err(reason) => {
                write_atomic(&eml, &message.formatted())?;
                return Err(ReportError::Send { reason, dir, eml });
            }
        },
        None => {
            write_atomic(&eml, &message.formatted())?;
            delivery.eml = Some(eml);
        }
    }
    Ok(delivery)
}

/// `patrol report FILE --send`: send a kept report. `FILE` is either a
/// `message.eml` written when sending failed (sent byte for byte to the
/// recipients of `config.mail`) or a sweep JSON (handled as by
/// [`email_sweep`]). Returns the recipients.
pub async fn send_file(file: &Path, config: &Config) -> Result<Vec<String>, ReportError> {
    if file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("eml"))
    {
        let mail_cfg = config.mail.as_ref().ok_or(ReportError::NoMail)?;
        if mail_cfg.smtp_host.is_none() {
            return Err(ReportError::NoSmtp(file.to_path_buf()));
        }
        let bytes = fs::read(file).map_err(|e| ReportError::io("read", file, e))?;
        let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
        mail::send_raw(mail_cfg, &bytes)
            .await
            .map_err(|reason| ReportError::Send {
                reason,
                dir,
                eml: file.to_path_buf(),
            })
    } else {
        let doc = history::read_document(file)?;
        if config
            .mail
            .as_ref()
            .and_then(|m| m.smtp_host.as_ref())
            .is_none()
        {
            return Err(ReportError::NoSmtp(file.to_path_buf()));
        }
        let d = email_sweep(&doc, config).await?;
        Ok(d.sent_to)
    }
}
