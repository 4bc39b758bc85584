//! The `[mail]` and `[report]` sections: how the daily report is sent and
//! where reports and sweep history are kept.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How to talk to the SMTP server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain SMTP upgraded with STARTTLS (required).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
    /// No TLS at all: only for a local relay.
    Plain,
}

/// `[mail]`: the SMTP server and the message. With no `[mail]` section (or
/// no `smtp_host`), reports are written as `.eml` files instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailSection {
    pub smtp_host: Option<String>,
    pub smtp_port: Option<u16>,
    #[serde(default)]
    pub security: SmtpSecurity,
    pub username: Option<String>,
    /// File holding the SMTP password (never the password itself).
    pub password_file: Option<PathBuf>,
    pub from: String,
    pub to: Vec<String>,
    /// Prefix of the subject, default `[patrol]`.
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
    /// Largest message sent, bytes, as encoded (base64 attachments
    /// included). Default 10,240,000: Postfix's default
    /// `message_size_limit`, the smallest limit a relay commonly has. The
    /// attachment (the rows worth reading, gzipped when that helps) is
    /// left out when it would break the limit; the full detail always
    /// stays in the report folder, and the mail says where. At least
    /// 65,536.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
}

fn default_subject_prefix() -> String {
    "[patrol]".to_string()
}

/// See [`MailSection::max_bytes`].
pub const DEFAULT_MAIL_MAX_BYTES: u64 = 10_240_000;

fn default_max_bytes() -> u64 {
    DEFAULT_MAIL_MAX_BYTES
}

/// `[report]`: where reports and history live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSection {
    /// Directory holding every stored sweep.
    #[serde(default = "default_history_dir")]
    pub history_dir: PathBuf,
    /// Directory where rendered reports and `.eml` files are written.
    #[serde(default = "default_out_dir")]
    pub out_dir: PathBuf,
    /// Sweeps kept per scope in the history; older ones are deleted when a
    /// new one is stored. At least 2 (the diff needs the previous one).
    #[serde(default = "default_keep_sweeps")]
    pub keep_sweeps: usize,
    /// IANA time zone (e.g. `Europe/Paris`) for every time the report, the
    /// email and the CLI show. Default: the system's local zone.
    /// File and folder names stay in UTC so that they sort by time.
    #[serde(default)]
    pub time_zone: Option<String>,
}

impl ReportSection {
    /// The zone times are shown in: `time_zone`, else the system's local
    /// zone (UTC when the system has none). A name that does not resolve
    /// is a config problem caught by `Config::parse`; here it falls back
    /// to the system zone.
    pub fn zone(&self) -> jiff::tz::TimeZone {
        self.time_zone
            .as_deref()
            .and_then(|name| jiff::tz::TimeZone::get(name).ok())
            .unwrap_or_else(jiff::tz::TimeZone::system)
    }
}

fn default_keep_sweeps() -> usize {
    400
}

fn default_history_dir() -> PathBuf {
    PathBuf::from("/var/lib/patrol/history")
}

fn default_out_dir() -> PathBuf {
    PathBuf::from("/var/lib/patrol/reports")
}

impl Default for ReportSection {
    fn default() -> Self {
        ReportSection {
            history_dir: default_history_dir(),
            out_dir: default_out_dir(),
            keep_sweeps: default_keep_sweeps(),
            time_zone: None,
        }
    }
}
