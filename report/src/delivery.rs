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
//! The CSV files are written node by node and the attachment is read
//! back from `anomalies.csv` on disk (gzipped as it is read, and kept only
//! while it can fit in the mail): neither is ever held whole in memory.
//!
//! **Invariant:** the report files are on disk before any SMTP exchange
//! starts, and a failed send writes `message.eml` next to them and returns
//! [`ReportError::Send`] naming both. Nothing is lost.

use std::fs;
use std::io::{BufReader, Write};
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
/// subject, text and HTML bodies (the CSV files are written node by node:
/// [`crate::attachment::write_csv`],
/// [`crate::attachment::write_anomalies_csv`]). Pure.
pub fn render_report(
    doc: &dyn SweepView,
    previous: Option<PreviousSweep<'_>>,
    subject_prefix: &str,
    time_zone: &jiff::tz::TimeZone,
) -> Result<Rendered, ReportError> {
    let mut report = summary::build(doc, previous);
    report.time_zone = time_zone.clone();
    render_built(&report, subject_prefix)
}

fn render_built(report: &Report, prefix: &str) -> Result<Rendered, ReportError> {
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
        subject: view.subject.clone(),
        chart_png,
        mail_view: view,
    })
}

/// `anomalies.csv` as written into a report folder.
struct AnomaliesFile {
    path: PathBuf,
    /// Its size in bytes.
    bytes: u64,
    /// Its line feeds: the lines `str::lines` would count in it (a cell
    /// may hold a line break), the header's included.
    lines: usize,
}

/// A writer that counts the bytes and line feeds that go through it.
struct Counting<W> {
    inner: W,
    bytes: u64,
    lines: usize,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        self.lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Write the report's files into `dir`; returns them, and what the mail
/// needs to know of `anomalies.csv`.
fn write_files(
    doc: &dyn SweepView,
    r: &Rendered,
    dir: &Path,
) -> Result<(ReportFiles, AnomaliesFile), ReportError> {
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
    let mut anomalies = AnomaliesFile {
        path: dir.join(ANOMALIES_NAME),
        bytes: 0,
        lines: 0,
    };
    write_atomic_with(&anomalies.path, |w| {
        let mut counted = Counting {
            inner: w,
            bytes: 0,
            lines: 0,
        };
        crate::attachment::write_anomalies_csv(doc, &mut counted)?;
        (anomalies.bytes, anomalies.lines) = (counted.bytes, counted.lines);
        Ok(())
    })?;
    if let (Some(path), Some(png)) = (&files.chart, &r.chart_png) {
        write_atomic(path, png)?;
    }
    Ok((files, anomalies))
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
    let rendered = render_built(&report, prefix(config))?;
    let (mut files, _) = write_files(doc, &rendered, dir)?;
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
    let rendered = render_built(&report, prefix(config))?;
    let dir = report_dir(&config.report.out_dir, doc);
    let (mut files, anomalies) = write_files(doc, &rendered, &dir)?;
    files.warnings = report.warnings.clone();
    let mail_cfg = config.mail.as_ref();
    let max_bytes = mail_cfg.map_or(DEFAULT_MAIL_MAX_BYTES, |m| m.max_bytes);
    let message = mail_message(mail_cfg, &rendered, &anomalies, &dir, max_bytes)?;
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

/// The mail's attachment, read back from `anomalies.csv`: its name, MIME
/// type and bytes (None when it is over `max_bytes`, so that no message
/// with it could fit), and its size.
struct Attached {
    name: String,
    content_type: &'static str,
    bytes: Option<Vec<u8>>,
    len: u64,
}

/// The mail's attachment: [`ANOMALIES_NAME`], gzipped when it is over
/// [`GZIP_OVER`] bytes (CSV of a large fleet shrinks about twentyfold),
/// read from `file` as a stream. Bytes past `max_bytes` are counted, not
/// kept: the attachment alone would break the limit.
fn attachment(file: &AnomaliesFile, max_bytes: u64) -> Result<Attached, ReportError> {
    let path = &file.path;
    let read = |e| ReportError::io("read", path, e);
    if file.bytes <= GZIP_OVER as u64 {
        return Ok(Attached {
            name: ANOMALIES_NAME.to_string(),
            content_type: "text/csv; charset=utf-8",
            bytes: Some(fs::read(path).map_err(read)?),
            len: file.bytes,
        });
    }
    let mut csv = BufReader::new(fs::File::open(path).map_err(read)?);
    let mut gz = flate2::write::GzEncoder::new(
        Capped {
            kept: Vec::new(),
            limit: max_bytes,
            len: 0,
        },
        flate2::Compression::default(),
    );
    std::io::copy(&mut csv, &mut gz).map_err(read)?;
    // Writing to a Vec cannot fail.
    let gz = gz.finish().map_err(read)?;
    Ok(Attached {
        name: format!("{ANOMALIES_NAME}.gz"),
        content_type: "application/gzip",
        bytes: (gz.len <= gz.limit).then_some(gz.kept),
        len: gz.len,
    })
}

/// A sink that keeps the first `limit` bytes written to it and counts
/// them all.
struct Capped {
    kept: Vec<u8>,
    limit: u64,
    len: u64,
}

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.len += buf.len() as u64;
        if self.len <= self.limit {
            self.kept.extend_from_slice(buf);
        } else {
            self.kept = Vec::new();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The report's mail, at most `max_bytes` as encoded: with the attachment
/// (`anomalies`, read back from the report folder) when it fits, else
/// without it, the footer saying which and where the full detail is.
/// Bodies alone over the limit are an error (the files and the report
/// folder are already written).
fn mail_message(
    mail_cfg: Option<&MailSection>,
    rendered: &Rendered,
    anomalies: &AnomaliesFile,
    dir: &Path,
    max_bytes: u64,
) -> Result<lettre::Message, ReportError> {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "the host that ran the sweep".to_string());
    let rows = anomalies.lines.saturating_sub(1);
    let attached = attachment(anomalies, max_bytes)?;
    let name = &attached.name;
    let folder = format!(
        "the full detail of every node is in {} on {host} ({CSV_NAME}, sweep.json, {ANOMALIES_NAME})",
        dir.display()
    );
    let mut size = 0;
    for attach in [true, false] {
        let file = match (attach, &attached.bytes) {
            (true, Some(bytes)) => Some(MailFile {
                name,
                content_type: attached.content_type,
                bytes,
            }),
            // Over the limit alone: a message with it cannot fit.
            (true, None) => continue,
            (false, _) => None,
        };
        let mut view = rendered.mail_view.clone();
        view.detail = if attach {
            format!("Attached: {name}, the {rows} rows worth reading (checks that did not pass, nodes not ok); {folder}.")
        } else {
            format!("The {rows} rows worth reading ({name}, {} bytes) were not attached: the message would be over [mail] max_bytes ({max_bytes}); {folder}.", attached.len)
        };
        let text = render::text(&view)?;
        let html = render::html(&view)?;
        let message = mail::build_message(
            mail_cfg,
            Parts {
                subject: &rendered.subject,
                text: &text,
                html: &html,
                attachment: file,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `anomalies.csv` of `rows` rows in a temporary folder.
    fn anomalies_file(dir: &Path, rows: usize) -> (AnomaliesFile, Vec<u8>) {
        let doc = crate::sample::generate(rows / 4 + 10, rows, 7);
        let path = dir.join(ANOMALIES_NAME);
        let csv = crate::attachment::anomalies_csv(&doc).into_bytes();
        std::fs::write(&path, &csv).unwrap();
        let file = AnomaliesFile {
            path,
            bytes: csv.len() as u64,
            lines: csv.iter().filter(|&&b| b == b'\n').count(),
        };
        (file, csv)
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn a_large_attachment_is_the_gzip_of_the_file_read_as_a_stream() {
        let tmp = tempfile::tempdir().unwrap();
        let (file, csv) = anomalies_file(tmp.path(), 4_000);
        assert!(csv.len() > GZIP_OVER, "{}", csv.len());
        let a = attachment(&file, DEFAULT_MAIL_MAX_BYTES).unwrap();
        let whole = gzip(&csv);
        assert_eq!(a.name, "anomalies.csv.gz");
        assert_eq!(a.len, whole.len() as u64);
        assert!(a.bytes == Some(whole), "the same bytes as gzip of it whole");
    }

    #[test]
    fn an_attachment_over_the_limit_alone_is_counted_not_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let (file, csv) = anomalies_file(tmp.path(), 4_000);
        let whole = gzip(&csv).len() as u64;
        let a = attachment(&file, whole - 1).unwrap();
        assert_eq!((a.bytes, a.len), (None, whole));
        let a = attachment(&file, whole).unwrap();
        assert_eq!(a.bytes.map(|b| b.len() as u64), Some(whole));
    }

    #[test]
    fn a_small_attachment_is_the_file_as_it_is() {
        let tmp = tempfile::tempdir().unwrap();
        let (file, csv) = anomalies_file(tmp.path(), 20);
        assert!(csv.len() <= GZIP_OVER);
        let a = attachment(&file, DEFAULT_MAIL_MAX_BYTES).unwrap();
        assert_eq!(a.name, ANOMALIES_NAME);
        assert_eq!(a.content_type, "text/csv; charset=utf-8");
        assert_eq!((a.bytes, a.len), (Some(csv.clone()), csv.len() as u64));
    }

    #[test]
    fn the_counting_writer_counts_what_lines_counts() {
        let text = "node,check\r\na,\"two\nlines\"\r\nb,x\r\n";
        let mut counted = Counting {
            inner: Vec::new(),
            bytes: 0,
            lines: 0,
        };
        counted.write_all(text.as_bytes()).unwrap();
        assert_eq!(counted.inner, text.as_bytes());
        assert_eq!(counted.bytes, text.len() as u64);
        assert_eq!(counted.lines, text.lines().count());
    }
}
