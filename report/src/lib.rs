//! Patrol report: turn a sweep document into the daily inspection email.
//!
//! - [`aggregate`]: headline figures, anomalies grouped across nodes,
//!   unreachable nodes (pure);
//! - [`diff`] and [`drift`]: new / persisting / resolved against the
//!   previous sweep, and values that differ from their peer group (pure);
//! - [`distribution`]: how each check's values spread over the fleet (pure);
//! - [`summary`]: all of that as one [`Report`];
//! - [`store`]: the history in SQLite: every sweep, values only when they
//!   change, timelines, trends; [`history`]: sweep JSON files and the
//!   import of the former one-file-per-sweep history;
//! - [`family`]: groups of one check that differ only by value, shown as one;
//! - [`chart`]: the trend chart (PNG) of the last sweeps;
//! - [`render`]: subject, askama HTML and text bodies; [`attachment`]: CSV;
//! - [`mail`]: the lettre message and SMTP transport;
//! - [`delivery`]: [`write_report`], [`email_sweep`], [`send_file`],
//!   [`render_report`];
//! - [`permissions`]: every file written 0640 in folders 0750;
//! - [`silence`]: why a `no_answer` node is silent, in words;
//! - [`roster`]: nodes gone from the roster, answers SWIM disagreed with;
//! - [`expiry`]: certified nodes grouped by when their certificate expires;
//! - [`sample`]: generated sweep documents for tests and benchmarks.

pub mod aggregate;
pub mod attachment;
pub mod chart;
pub mod delivery;
pub mod diff;
pub mod distribution;
pub mod drift;
pub mod error;
pub mod expiry;
pub mod family;
pub mod history;
pub mod mail;
pub mod permissions;
pub mod render;
pub mod roster;
pub mod sample;
pub mod silence;
pub mod store;
pub mod summary;
pub mod text;

pub use delivery::{
    email_sweep, render_report, report_dir, send_file, write_report, Delivered, Rendered,
    ReportFiles, Sent,
};
pub use error::ReportError;
pub use summary::{build, PreviousSweep, Report};
