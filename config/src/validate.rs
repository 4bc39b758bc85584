//! Validation of a config file, section by section: [`Problems`] collects
//! every problem found (each naming the file, the key and what is wrong),
//! [`section`] reads one top-level table into its section struct, and each
//! section's `validate` checks what serde cannot (ranges, addresses,
//! names).

use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::model::{
    identity_text_len, ChecksSection, NodeSection, SweepSection, TrustSection,
    MAX_BLOCKING_PER_KIND, MAX_CHECK_CONCURRENCY, MAX_CLOCK_SKEW_LIMIT, MAX_DEADLINE,
    MAX_IDENTITY_TEXT, MAX_SWEEPS_AT_ONCE,
};
use crate::{ConfigError, MailSection, Problem, ReportSection};

/// Every problem found in one file, in the order found.
pub(crate) struct Problems<'f> {
    file: &'f Path,
    list: Vec<Problem>,
}

impl<'f> Problems<'f> {
    pub fn new(file: &'f Path) -> Problems<'f> {
        Problems {
            file,
            list: Vec::new(),
        }
    }

    /// A problem at the dotted `key` (empty: the whole file).
    pub fn push(&mut self, key: &str, message: impl Into<String>) {
        self.list.push(Problem {
            file: self.file.to_path_buf(),
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// `value` when no problem was found, else every problem.
    pub fn result<T>(self, value: impl FnOnce() -> T) -> Result<T, ConfigError> {
        if self.list.is_empty() {
            Ok(value())
        } else {
            Err(ConfigError {
                problems: self.list,
            })
        }
    }
}

/// Deserialize one top-level section (an empty table when the file has
/// none), reporting its problem with the key.
pub(crate) fn section<T: DeserializeOwned>(
    table: &toml::Table,
    name: &str,
    problems: &mut Problems<'_>,
) -> Option<T> {
    let value = table
        .get(name)
        .cloned()
        .unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
    match T::deserialize(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let msg = e.to_string();
            let msg = msg.trim_end();
            // Name the offending key when serde says which.
            let key = msg
                .split('`')
                .nth(1)
                .filter(|_| msg.starts_with("unknown field"))
                .map(|k| format!("{name}.{k}"))
                .unwrap_or_else(|| name.to_string());
            problems.push(&key, msg);
            None
        }
    }
}

/// A section the file may leave out: None when it does.
pub(crate) fn optional_section<T: DeserializeOwned>(
    table: &toml::Table,
    name: &str,
    problems: &mut Problems<'_>,
) -> Option<T> {
    if table.contains_key(name) {
        section(table, name, problems)
    } else {
        None
    }
}

/// The raw `[[check]]` tables, in file order.
pub(crate) fn check_tables(table: &toml::Table, problems: &mut Problems<'_>) -> Vec<toml::Table> {
    let mut check = Vec::new();
    match table.get("check") {
        None => {}
        Some(toml::Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item {
                    toml::Value::Table(t) => check.push(t.clone()),
                    _ => problems.push(&format!("check[{i}]"), "expected a table ([[check]])"),
                }
            }
        }
        Some(_) => problems.push("check", "expected an array of tables ([[check]])"),
    }
    check
}

/// A value that must be `1..=max`.
fn in_range(problems: &mut Problems<'_>, key: &str, value: usize, max: usize) {
    if !(1..=max).contains(&value) {
        problems.push(key, format!("must be 1-{max} (got {value})"));
    }
}

/// A deadline or timeout: longer than zero, at most [`MAX_DEADLINE`].
fn deadline(problems: &mut Problems<'_>, key: &str, value: std::time::Duration) {
    if value.is_zero() || value > MAX_DEADLINE {
        problems.push(
            key,
            format!(
                "must be longer than 0s and at most {}s",
                MAX_DEADLINE.as_secs()
            ),
        );
    }
}

impl NodeSection {
    /// `given`: the file (or an override) has a `[node]` table; without
    /// one, the defaults need no advertised address.
    pub(crate) fn validate(&self, given: bool, problems: &mut Problems<'_>) {
        self.validate_identity(problems);
        self.validate_addresses(given, problems);
        if let Some(root) = &self.host_root {
            if !root.is_absolute() {
                problems.push(
                    "node.host_root",
                    format!("`{}` must be an absolute path", root.display()),
                );
            }
        }
    }

    /// Name, cluster and tags: what every gossip packet carries.
    fn validate_identity(&self, problems: &mut Problems<'_>) {
        if self.name.trim().is_empty() {
            problems.push("node.name", "must not be empty");
        }
        if self.name == "localhost" || self.name.starts_with("localhost.") {
            problems.push(
                "node.name",
                format!(
                    "`{}` cannot tell nodes apart (every machine is localhost): set [node] name, or give the machine a real hostname",
                    self.name
                ),
            );
        }
        let identity = identity_text_len(&self.name, &self.tags);
        if identity > MAX_IDENTITY_TEXT {
            problems.push(
                "node.name",
                format!(
                    "node.name and node.tags take {identity} bytes; at most {MAX_IDENTITY_TEXT} fit in the gossip header every packet carries (shorten the name or drop tags)"
                ),
            );
        }
        if self.cluster.trim().is_empty() {
            problems.push("node.cluster", "must not be empty");
        }
        for (k, v) in &self.tags {
            if k.is_empty() || k.len() > 64 || v.len() > 128 {
                problems.push(
                    &format!("node.tags.{k}"),
                    "tag keys must be 1-64 bytes and values at most 128 bytes",
                );
            }
        }
        if self.tags.len() > 16 {
            problems.push(
                "node.tags",
                format!("{} tags; at most 16 are allowed", self.tags.len()),
            );
        }
    }

    /// The advertised address and the seeds.
    fn validate_addresses(&self, given: bool, problems: &mut Problems<'_>) {
        if self.advertise.is_none() && self.bind.ip().is_unspecified() && given {
            // Binding 0.0.0.0 needs an address others can reach.
            problems.push(
                "node.advertise",
                format!(
                    "required when node.bind ({}) is an unspecified address: give the address other nodes reach this one at",
                    self.bind
                ),
            );
        }
        if let Some(adv) = self.advertise {
            if adv.ip().is_unspecified() || adv.port() == 0 {
                problems.push(
                    "node.advertise",
                    format!("{adv} cannot be reached by others (expected a concrete ip:port)"),
                );
            }
        }
        for (i, seed) in self.seeds.iter().enumerate() {
            if seed
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                problems.push(
                    &format!("node.seeds[{i}]"),
                    format!("`{seed}` is not host:port"),
                );
            }
        }
    }
}

impl SweepSection {
    pub(crate) fn validate(&self, problems: &mut Problems<'_>) {
        in_range(
            problems,
            "sweep.max_concurrent",
            self.max_concurrent,
            MAX_SWEEPS_AT_ONCE,
        );
        deadline(problems, "sweep.default_deadline", self.default_deadline);
        if self.clock_skew_limit > MAX_CLOCK_SKEW_LIMIT {
            problems.push(
                "sweep.clock_skew_limit",
                format!(
                    "must be at most {}s (datagrams from clocks further off are refused, so a larger skew is never measured)",
                    MAX_CLOCK_SKEW_LIMIT.as_secs()
                ),
            );
        }
        if self.roster_expiry < Duration::from_secs(60) {
            problems.push(
                "sweep.roster_expiry",
                "must be at least 1m (a node that misses a few probes would leave the roster)"
                    .to_string(),
            );
        }
    }
}

impl ChecksSection {
    pub(crate) fn validate(&self, problems: &mut Problems<'_>) {
        in_range(
            problems,
            "checks.concurrency",
            self.concurrency,
            MAX_CHECK_CONCURRENCY,
        );
        in_range(
            problems,
            "checks.blocking_per_kind",
            self.blocking_per_kind,
            MAX_BLOCKING_PER_KIND,
        );
        if let Some(user) = &self.command_user {
            if user.is_empty()
                || user.len() > 256
                || user.contains([':', ','])
                || user.contains(char::is_whitespace)
            {
                problems.push(
                    "checks.command_user",
                    format!("`{user}` is not a user name (expected a name or uid from /etc/passwd, e.g. \"nobody\")"),
                );
            }
        }
        deadline(problems, "checks.default_timeout", self.default_timeout);
    }
}

impl ReportSection {
    pub(crate) fn validate(&self, problems: &mut Problems<'_>) {
        if self.keep_sweeps < 2 {
            problems.push(
                "report.keep_sweeps",
                format!(
                    "must be at least 2 (got {}): each report is compared with the previous sweep",
                    self.keep_sweeps
                ),
            );
        }
        if let Some(name) = &self.time_zone {
            if let Err(e) = jiff::tz::TimeZone::get(name) {
                problems.push(
                    "report.time_zone",
                    format!("`{name}` is not a known IANA time zone (e.g. Europe/Paris, UTC): {e}"),
                );
            }
        }
    }
}

impl TrustSection {
    pub(crate) fn validate(&self, problems: &mut Problems<'_>) {
        if self.audit_max_bytes < 4096 {
            problems.push(
                "trust.audit_max_bytes",
                format!("must be at least 4096 (got {})", self.audit_max_bytes),
            );
        }
        in_range(problems, "trust.audit_keep", self.audit_keep, 100);
        if let Some(addr) = &self.enroll {
            let port = addr
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>()));
            if !matches!(port, Some((host, Ok(p))) if !host.is_empty() && p != 0) {
                problems.push(
                    "trust.enroll",
                    format!("`{addr}` is not host:port (e.g. enroll.example.net:7947)"),
                );
            }
        }
        if self.enroll_token_file.is_some() && self.enroll.is_none() {
            problems.push(
                "trust.enroll_token_file",
                "is used only with trust.enroll (the enrollment service's host:port)",
            );
        }
    }
}

impl MailSection {
    pub(crate) fn validate(&self, problems: &mut Problems<'_>) {
        if self.to.is_empty() {
            problems.push("mail.to", "needs at least one recipient");
        }
        for (i, addr) in self.to.iter().enumerate() {
            if !addr.contains('@') {
                problems.push(
                    &format!("mail.to[{i}]"),
                    format!("`{addr}` is not a mail address"),
                );
            }
        }
        if !self.from.contains('@') {
            problems.push(
                "mail.from",
                format!("`{}` is not a mail address", self.from),
            );
        }
        if self.username.is_some() != self.password_file.is_some() {
            problems.push(
                "mail.username",
                "username and password_file go together: give both or neither",
            );
        }
        if self.max_bytes < 65_536 {
            problems.push(
                "mail.max_bytes",
                format!("must be at least 65536 (got {})", self.max_bytes),
            );
        }
    }
}
