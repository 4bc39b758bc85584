//! The error type of this crate.

use std::path::PathBuf;

/// What went wrong while storing, rendering or sending a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read sweep document {path}: {source}")]
    Document {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path} is a sweep document of version {found}; this Patrol reads version {supported} and older (upgrade patrol to read it)")]
    DocumentVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("history database {path}: {source}")]
    Database {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("history database {path}: cannot read {what}")]
    HistoryEntry { path: PathBuf, what: String },
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("cannot render the {what} report: {source}")]
    Render {
        what: &'static str,
        source: askama::Error,
    },
    #[error("cannot draw the trend chart: {0}")]
    Chart(String),
    #[error("cannot build the message: {0}")]
    Message(String),
    #[error("no [mail] section in the config: nowhere to send")]
    NoMail,
    #[error("no smtp_host in [mail]: cannot send {0}")]
    NoSmtp(PathBuf),
    #[error(
        "sending the report failed: {reason}; the report is kept in {dir}; \
         send it later with `{}`",
        send_later(.eml, .config)
    )]
    Send {
        reason: String,
        dir: PathBuf,
        eml: PathBuf,
        /// The config file whose `[mail]` the send used (empty: the
        /// built-in defaults), so the command to send it later names it.
        config: PathBuf,
    },
}

/// `patrol report --send EML [--config FILE]`.
fn send_later(eml: &std::path::Path, config: &std::path::Path) -> String {
    let mut command = format!("patrol report --send {}", eml.display());
    if !config.as_os_str().is_empty() {
        command.push_str(&format!(" --config {}", config.display()));
    }
    command
}

impl ReportError {
    pub(crate) fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        ReportError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// The directory holding the report files, when the error kept them.
    pub fn kept_dir(&self) -> Option<&std::path::Path> {
        match self {
            ReportError::Send { dir, .. } => Some(dir),
            _ => None,
        }
    }
}
