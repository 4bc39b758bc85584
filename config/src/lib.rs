//! Patrol configuration: the TOML model, its defaults, and validation that
//! reports every problem at once with the file, the key and what was
//! expected.
//!
//! One file (`/etc/patrol/patrol.toml` by default) configures an agent and
//! the CLI. The `[[check]]` tables are kept raw here and parsed by
//! `patrol-checks`, which owns the check model; it reports its problems in
//! the same [`Problem`] form.

mod duration;
mod error;
mod mail;
mod model;
mod validate;

pub use duration::{format_duration, parse_duration};
pub use error::{ConfigError, Problem};
pub use mail::{MailSection, ReportSection, SmtpSecurity, DEFAULT_MAIL_MAX_BYTES};
pub use model::{
    ChecksSection, Config, ControlSection, MetricsSection, NodeOverrides, NodeSection,
    SweepSection, TrustSection, DEFAULT_BLOCKING_PER_KIND, DEFAULT_CONFIG_PATH,
    MAX_BLOCKING_PER_KIND,
};
