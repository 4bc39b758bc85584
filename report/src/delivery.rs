//! Delivery: render a sweep into report files, store it in the history,
//! send the mail or write an `.eml`, and send a kept report later.
//!
//! Files of one report, in one folder:
//! `report.html`, `report.txt`, `nodes.csv` (every node and check),
//! `sweep.json` (the sweep document) and, when the mail did not go out,
//! `message.eml` (the exact message, ready for `patrol report --send`).
//!
//! **Invariant:** the report files are on disk before any SMTP exchange
//! starts, and a failed send writes `message.eml` next to them and returns
//! [`ReportError::Send`] naming both. Nothing is lost.

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
pub const DEFAULT_PREFIX: &str = "[patrol]";
/// Name of the CSV file and attachment.
pub const CSV_NAME: &str = "nodes.csv";
/// Name of the kept message in a report folder.
pub const EML_NAME: &str = "message.eml";

/// The files of one rendered report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFiles {
    pub dir: PathBuf,
    pub html: PathBuf,
    pub text: PathBuf,
    pub csv: PathBuf,
    /// The sweep document itself, pretty JSON.
    pub json: PathBuf,
    /// The subject line the mail has (or would have).
    pub subject: String,
}

/// What [`email_sweep`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub files: ReportFiles,
    /// Recipients the SMTP server accepted (empty when no SMTP is set).
    pub sent_to: Vec<String>,
    /// The `.eml` written because no SMTP server is configured.
    pub eml: Option<PathBuf>,
}

/// The rendered subject, bodies and attachment of one report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
    pub csv: String,
}

/// Subject prefix from the config's `[mail]`, or [`DEFAULT_PREFIX`].
fn prefix(config: &Config) -> &str {
    config
        .mail
        .as_ref()
        .map_or(DEFAULT_PREFIX, |m| m.subject_prefix.as_str())
}

/// Render `doc` (compared with `previous` when given) into memory: the
/// subject, text and HTML bodies and the CSV attachment. Pure.
pub fn render_report(
    doc: &SweepDocument,
    previous: Option<PreviousSweep<'_>>,
    subject_prefix: &str,
    time_zone: &jiff::tz::TimeZone,
) -> Result<Rendered, ReportError> {
    let mut report = summary::build(doc, previous);
    report.time_zone = time_zone.clone();
    render_built(doc, &report, subject_prefix)
}

fn render_built(
    doc: &SweepDocument,
    report: &Report,
    prefix: &str,
) -> Result<Rendered, ReportError> {
    let view = render::view(report, prefix);
    Ok(Rendered {
        text: render::text(&view)?,
        html: render::html(&view)?,
        csv: crate::attachment::csv(doc),
        subject: view.subject,
    })
}

fn write_files(doc: &SweepDocument, r: &Rendered, dir: &Path) -> Result<ReportFiles, ReportError> {
    fs::create_dir_all(dir).map_err(|e| ReportError::io("create", dir, e))?;
    let files = ReportFiles {
        dir: dir.to_path_buf(),
        html: dir.join("report.html"),
        text: dir.join("report.txt"),
        csv: dir.join(CSV_NAME),
        json: dir.join("sweep.json"),
        subject: r.subject.clone(),
    };
    let json = serde_json::to_vec_pretty(doc).map_err(|source| ReportError::Encode {
        what: "the sweep document",
        source,
    })?;
    write_atomic(&files.json, &json)?;
    write_atomic(&files.html, r.html.as_bytes())?;
    write_atomic(&files.text, r.text.as_bytes())?;
    write_atomic(&files.csv, r.csv.as_bytes())?;
    Ok(files)
}

/// Store `doc` in the history and build its report against the previous
/// sweep of the same scope found there.
fn build_with_history(doc: &SweepDocument, config: &Config) -> Result<Report, ReportError> {
    let history_dir = &config.report.history_dir;
    let previous = history::previous(history_dir, doc)?;
    let mut report = summary::build(
        doc,
        previous.as_ref().map(|p| PreviousSweep {
            doc: &p.doc,
            first_seen: p.first_seen.as_ref(),
        }),
    );
    report.time_zone = config.report.zone();
    history::store(
        history_dir,
        doc,
        &report.first_seen(),
        config.report.keep_sweeps,
    )?;
    Ok(report)
}

/// `patrol demo` (and anyone who wants the files without mail): store
/// `doc` in `config.report.history_dir`, compare it with the previous
/// sweep of the same scope there, and write `sweep.json`, `report.html`,
/// `report.txt` and `nodes.csv` into `dir` (created if missing).
pub fn write_report(
    doc: &SweepDocument,
    config: &Config,
    dir: &Path,
) -> Result<ReportFiles, ReportError> {
    let report = build_with_history(doc, config)?;
    let rendered = render_built(doc, &report, prefix(config))?;
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
/// (`config.report.history_dir`), compare it with the previous sweep of
/// the same scope, write the report files into
/// [`report_dir`]`(config.report.out_dir, doc)`, then send the mail per
/// `config.mail`, or write `message.eml` there when no `smtp_host` is
/// configured. When sending fails, the files and `message.eml` stay on
/// disk and the error ([`ReportError::Send`]) names them.
pub async fn email_sweep(doc: &SweepDocument, config: &Config) -> Result<Delivered, ReportError> {
    let report = build_with_history(doc, config)?;
    let rendered = render_built(doc, &report, prefix(config))?;
    let dir = report_dir(&config.report.out_dir, doc);
    let files = write_files(doc, &rendered, &dir)?;
    let mail_cfg = config.mail.as_ref();
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
    let eml = dir.join(EML_NAME);
    match mail_cfg.filter(|m| m.smtp_host.is_some()) {
        Some(m) => match mail::send(m, message.clone()).await {
            Ok(sent_to) => Ok(Delivered {
                files,
                sent_to,
                eml: None,
            }),
            Err(reason) => {
                write_atomic(&eml, &message.formatted())?;
                Err(ReportError::Send { reason, dir, eml })
            }
        },
        None => {
            write_atomic(&eml, &message.formatted())?;
            Ok(Delivered {
                files,
                sent_to: Vec::new(),
                eml: Some(eml),
            })
        }
    }
}

/// What [`send_file`] sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Recipients the SMTP server accepted.
    pub to: Vec<String>,
    /// A sent `.eml` is renamed `NAME.sent.eml`, so that a retry loop over
    /// `*/message.eml` never sends it twice; this is its new path.
    pub renamed: Option<PathBuf>,
}

/// `patrol report --send FILE`: send a kept report. `FILE` is either an
/// `.eml` written when sending failed (sent byte for byte to the
/// recipients of `config.mail`, then renamed `NAME.sent.eml`) or a sweep
/// JSON (handled as by [`email_sweep`], which needs `smtp_host`).
pub async fn send_file(file: &Path, config: &Config) -> Result<Sent, ReportError> {
    let mail_cfg = config.mail.as_ref().ok_or(ReportError::NoMail)?;
    if mail_cfg.smtp_host.is_none() {
        return Err(ReportError::NoSmtp(file.to_path_buf()));
    }
    if file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("eml"))
    {
        let bytes = fs::read(file).map_err(|e| ReportError::io("read", file, e))?;
        let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
        let to = mail::send_raw(mail_cfg, &bytes)
            .await
            .map_err(|reason| ReportError::Send {
                reason,
                dir,
                eml: file.to_path_buf(),
            })?;
        let renamed = match file.file_stem().and_then(|s| s.to_str()) {
            Some(stem) if !stem.ends_with(".sent") => {
                let to_path = file.with_file_name(format!("{stem}.sent.eml"));
                fs::rename(file, &to_path)
                    .map_err(|e| ReportError::io("rename the sent message", file, e))?;
                Some(to_path)
            }
            _ => None,
        };
        Ok(Sent { to, renamed })
    } else {
        let doc = history::read_document(file)?;
        let d = email_sweep(&doc, config).await?;
        Ok(Sent {
            to: d.sent_to,
            renamed: None,
        })
    }
}
