//! Delivery: render a sweep into report files, store it in the history,
//! send the mail or write an `.eml`, and send a kept report later.
//!
//! Files of one report, in one folder:
//! `report.html`, `report.txt`, `nodes.csv` (every node and check),
//! `anomalies.csv` (the rows worth reading), `sweep.json` (the sweep
//! document) and, when the mail did not go out, `message.eml` (the exact
//! message, ready for `patrol report --send`).
//!
//! The mail stays under `[mail] max_bytes` at any fleet size: it attaches
//! `anomalies.csv` (gzipped when large), or nothing when even that would
//! break the limit, and its footer says where the full detail is.
//!
//! **Invariant:** the report files are on disk before any SMTP exchange
//! starts, and a failed send writes `message.eml` next to them and returns
//! [`ReportError::Send`] naming both. Nothing is lost.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use patrol_checks::{DocumentJson, SweepView};
use patrol_config::{Config, MailSection, DEFAULT_MAIL_MAX_BYTES};

use crate::error::ReportError;
use crate::history::{self, write_atomic, write_atomic_with};
use crate::mail::{self, MailFile, Parts};
use crate::render;
use crate::store::{History, Stored, SweepSummary};
use crate::summary::{self, PreviousSweep, Report};
use crate::text::stamp;

/// Subject prefix when there is no `[mail]` section.
pub const DEFAULT_PREFIX: &str = "[patrol]";
/// Name of the CSV file with every node and check.
pub const CSV_NAME: &str = "nodes.csv";
/// Name of the CSV file with the rows worth reading, which the mail
/// attaches (gzipped, `.gz`, when over [`GZIP_OVER`] bytes).
pub const ANOMALIES_NAME: &str = "anomalies.csv";
/// An attachment over this many bytes is gzipped.
pub const GZIP_OVER: usize = 64 * 1024;
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
    /// History problems that did not stop the report (also in its text).
    pub warnings: Vec<String>,
    /// The trend chart beside `report.html`, when there is one.
    pub chart: Option<PathBuf>,
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
    /// The HTML as written to disk (the chart is `trend.png` beside it).
    pub html: String,
    /// The HTML as mailed (the chart is the inline part `cid:...`).
    pub mail_html: String,
    /// The rows worth reading ([`ANOMALIES_NAME`]): what the mail attaches.
    pub anomalies_csv: String,
    /// The trend chart, when the history has two sweeps or more.
    pub chart_png: Option<Vec<u8>>,
    /// The view as mailed, to render the mail's bodies with their own
    /// footer (what is attached, where the rest is).
    mail_view: render::View,
}

/// Subject prefix from the config's `[mail]`, or [`DEFAULT_PREFIX`].
fn prefix(config: &Config) -> &str {
    config
        .mail
        .as_ref()
        .map_or(DEFAULT_PREFIX, |m| m.subject_prefix.as_str())
}

/// Render `doc` (compared with `previous` when given) into memory: the
/// subject, text and HTML bodies and the CSV attachment (the rows worth
/// reading; the CSV of every node is [`crate::attachment::write_csv`]).
/// Pure.
pub fn render_report(
    doc: &dyn SweepView,
    previous: Option<PreviousSweep<'_>>,
    subject_prefix: &str,
    time_zone: &jiff::tz::TimeZone,
) -> Result<Rendered, ReportError> {
    let mut report = summary::build(doc, previous);
    report.time_zone = time_zone.clone();
    render_built(doc, &report, subject_prefix)
}

fn render_built(
    doc: &dyn SweepView,
    report: &Report,
    prefix: &str,
) -> Result<Rendered, ReportError> {
    let mut view = render::view(report, prefix);
    let chart_png = crate::chart::trend_png(&report.trend, &report.time_zone)?;
    let text = render::text(&view)?;
    if chart_png.is_some() {
        view.chart = Some(crate::chart::FILE_NAME.to_string());
    }
    let html = render::html(&view)?;
    if chart_png.is_some() {
        view.chart = Some(format!("cid:{}", crate::chart::CONTENT_ID));
    }
    let mail_html = render::html(&view)?;
    Ok(Rendered {
        text,
        html,
        mail_html,
        anomalies_csv: crate::attachment::anomalies_csv(doc),
        subject: view.subject.clone(),
        chart_png,
        mail_view: view,
    })
}

fn write_files(doc: &dyn SweepView, r: &Rendered, dir: &Path) -> Result<ReportFiles, ReportError> {
    crate::permissions::create_dir(dir).map_err(|e| ReportError::io("create", dir, e))?;
    let files = ReportFiles {
        dir: dir.to_path_buf(),
        html: dir.join("report.html"),
        text: dir.join("report.txt"),
        csv: dir.join(CSV_NAME),
        json: dir.join("sweep.json"),
        subject: r.subject.clone(),
        warnings: Vec::new(),
        chart: r
            .chart_png
            .as_ref()
            .map(|_| dir.join(crate::chart::FILE_NAME)),
    };
    // The document and the CSV of every node are written node by node:
    // at 100,000 nodes each is hundreds of megabytes.
    write_atomic_with(&files.json, |w| {
        serde_json::to_writer_pretty(w, &DocumentJson(doc)).map_err(std::io::Error::from)
    })?;
    write_atomic(&files.html, r.html.as_bytes())?;
    write_atomic(&files.text, r.text.as_bytes())?;
    write_atomic_with(&files.csv, |w| crate::attachment::write_csv(doc, w))?;
    write_atomic(&dir.join(ANOMALIES_NAME), r.anomalies_csv.as_bytes())?;
    if let (Some(path), Some(png)) = (&files.chart, &r.chart_png) {
        write_atomic(path, png)?;
    }
    Ok(files)
}

/// Sweeps shown in the trend chart.
pub const TREND_SWEEPS: usize = 30;

/// Build `doc`'s report against the previous sweep of its scope in the
/// history database, then store it there. The history never stops a
/// report: a database that cannot be opened or read, or a stored sweep
/// that cannot be rebuilt, is a warning in the report (and on the
/// returned report's `warnings`), and the sweep is then compared with
/// nothing; a failed store is a warning too.
fn build_with_history(doc: &dyn SweepView, config: &Config) -> Report {
    let mut warnings = Vec::new();
    let mut db = match History::open(&config.report.history_dir) {
        Ok(h) => Some(h),
        Err(e) => {
            warnings.push(format!(
                "the history cannot be opened ({e}): no previous sweep to compare with, and this sweep is not stored"
            ));
            None
        }
    };
    let previous = match db.as_ref().map(|h| h.previous(doc)) {
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            warnings.push(format!(
                "the previous sweep cannot be read from the history ({e}): compared with nothing"
            ));
            None
        }
        None => None,
    };
    let mut report = summary::build(
        doc,
        previous.as_ref().map(|p| PreviousSweep {
            doc: &p.doc,
            first_seen: Some(&p.first_seen),
        }),
    );
    // The report holds what it needs of the previous sweep: its packed
    // nodes (tens of megabytes at 100,000 nodes) go before the store.
    drop(previous);
    if let Some(h) = db.as_mut() {
        let summary = SweepSummary::of(&report);
        match h.store(
            doc,
            &report.first_seen(),
            summary,
            config.report.keep_sweeps,
        ) {
            Ok(Stored::Older) => warnings.push(
                "not stored in the history: a newer sweep of this scope is already there"
                    .to_string(),
            ),
            Ok(_) => {}
            Err(e) => warnings.push(format!("this sweep was not stored in the history: {e}")),
        }
        match h.trend(doc, TREND_SWEEPS) {
            Ok(t) => report.trend = t,
            Err(e) => warnings.push(format!("no trend: {e}")),
        }
    }
    report.warnings = warnings;
    report.time_zone = config.report.zone();
    // The units of the checks as this config defines them.
    crate::distribution::label_units(
        &mut report.distributions,
        &patrol_checks::check_units(Some(config)),
    );
    report
}

/// `patrol demo` (and anyone who wants the files without mail): store
/// `doc` in `config.report.history_dir`, compare it with the previous
/// sweep of the same scope there, and write `sweep.json`, `report.html`,
/// `report.txt` and `nodes.csv` into `dir` (created if missing).
pub fn write_report(
    doc: &dyn SweepView,
    config: &Config,
    dir: &Path,
) -> Result<ReportFiles, ReportError> {
    let report = build_with_history(doc, config);
    let rendered = render_built(doc, &report, prefix(config))?;
    let mut files = write_files(doc, &rendered, dir)?;
    files.warnings = report.warnings;
    Ok(files)
}

/// The folder of one report under `out_dir`: `<date-time>-<sweep id>`.
pub fn report_dir(out_dir: &Path, doc: &dyn SweepView) -> PathBuf {
    let h = doc.head();
    let id: String = h
        .sweep_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(32)
        .collect();
    out_dir.join(format!("{}-{id}", stamp(h.started_at_unix_ms)))
}

/// `patrol sweep --email`: store `doc` in the history
/// (`config.report.history_dir`), compare it with the previous sweep of
/// the same scope, write the report files into
/// [`report_dir`]`(config.report.out_dir, doc)`, then send the mail per
/// `config.mail`, or write `message.eml` there when no `smtp_host` is
/// configured. When sending fails, the files and `message.eml` stay on
/// disk and the error ([`ReportError::Send`]) names them.
pub async fn email_sweep(doc: &dyn SweepView, config: &Config) -> Result<Delivered, ReportError> {
    let report = build_with_history(doc, config);
    let rendered = render_built(doc, &report, prefix(config))?;
    let dir = report_dir(&config.report.out_dir, doc);
    let mut files = write_files(doc, &rendered, &dir)?;
    files.warnings = report.warnings.clone();
    let mail_cfg = config.mail.as_ref();
    let max_bytes = mail_cfg.map_or(DEFAULT_MAIL_MAX_BYTES, |m| m.max_bytes);
    let message = mail_message(mail_cfg, &rendered, &dir, max_bytes)?;
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
                Err(ReportError::Send {
                    reason,
                    dir,
                    eml,
                    config: config.source.clone(),
                })
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

/// The mail's attachment: [`ANOMALIES_NAME`], gzipped when it is over
/// [`GZIP_OVER`] bytes (CSV of a large fleet shrinks about twentyfold).
fn attachment(anomalies_csv: &str) -> (String, &'static str, Vec<u8>) {
    if anomalies_csv.len() <= GZIP_OVER {
        return (
            ANOMALIES_NAME.to_string(),
            "text/csv; charset=utf-8",
            anomalies_csv.as_bytes().to_vec(),
        );
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = gz.write_all(anomalies_csv.as_bytes());
    let bytes = gz.finish().unwrap_or_default();
    (format!("{ANOMALIES_NAME}.gz"), "application/gzip", bytes)
}

/// The report's mail, at most `max_bytes` as encoded: with the attachment
/// when it fits, else without it, the footer saying which and where the
/// full detail is. Bodies alone over the limit are an error (the files and
/// the report folder are already written).
fn mail_message(
    mail_cfg: Option<&MailSection>,
    rendered: &Rendered,
    dir: &Path,
    max_bytes: u64,
) -> Result<lettre::Message, ReportError> {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "the host that ran the sweep".to_string());
    let rows = rendered.anomalies_csv.lines().count().saturating_sub(1);
    let (name, content_type, bytes) = attachment(&rendered.anomalies_csv);
    let folder = format!(
        "the full detail of every node is in {} on {host} ({CSV_NAME}, sweep.json, {ANOMALIES_NAME})",
        dir.display()
    );
    let mut size = 0;
    for attach in [true, false] {
        let mut view = rendered.mail_view.clone();
        view.detail = if attach {
            format!("Attached: {name}, the {rows} rows worth reading (checks that did not pass, nodes not ok); {folder}.")
        } else {
            format!("The {rows} rows worth reading ({name}, {} bytes) were not attached: the message would be over [mail] max_bytes ({max_bytes}); {folder}.", bytes.len())
        };
        let text = render::text(&view)?;
        let html = render::html(&view)?;
        let message = mail::build_message(
            mail_cfg,
            Parts {
                subject: &rendered.subject,
                text: &text,
                html: &html,
                attachment: attach.then_some(MailFile {
                    name: &name,
                    content_type,
                    bytes: &bytes,
                }),
                chart_png: rendered.chart_png.as_deref(),
            },
        )?;
        size = message.formatted().len();
        if size as u64 <= max_bytes {
            return Ok(message);
        }
    }
    Err(ReportError::Message(format!(
        "the report's mail takes {size} bytes without its attachment, over [mail] max_bytes ({max_bytes}); the report is in {}",
        dir.display()
    )))
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
                config: config.source.clone(),
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
