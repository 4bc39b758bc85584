//! The CSV files: `nodes.csv`, every node and every check outcome, one
//! row each, so the bounded HTML can leave names out without losing
//! anything; and `anomalies.csv`, the same columns with only the rows
//! worth reading, which the mail attaches (see [`crate::delivery`]).
//!
//! Every cell is text from a node and opens in a spreadsheet, so each one
//! goes through [`cell`]: control characters, escape sequences and bidi
//! overrides are written as visible escapes
//! ([`patrol_checks::printable::lines`]: line breaks and tabs, which a
//! quoted CSV cell holds, are kept), and a cell a spreadsheet would take
//! for a formula (OWASP's "CSV injection": it starts with `=`, `+`, `-`,
//! `@`, a tab or a CR) gets a leading `'`, which spreadsheets show as
//! text and do not evaluate. A cell that is a plain decimal number
//! (`-3`, `+1.5`, `-2e-3`) is left alone: a negative observed value must
//! stay a number, and a number is never a formula.

use std::borrow::Cow;
use std::io::Write;

use patrol_checks::printable::lines;

use patrol_checks::{CheckOutcome, NodeEntry, NodeState, Status, SweepView};

/// Header row of the CSV.
pub const CSV_HEADER: &str = "node,addr,state,tags,check,kind,status,observed,expected,message";

/// The whole per-node detail of `doc` as CSV. A node with no check
/// outcomes (unreachable, or nothing selected) has one row with empty
/// check columns; for a silent node its `message` says why
/// ([`crate::silence::explain`]). Held whole: for a large fleet write it
/// with [`write_csv`].
pub fn csv(doc: &dyn SweepView) -> String {
    in_memory(|w| write_csv(doc, w))
}

/// [`csv`], written to `out` one node at a time (at 100,000 nodes the
/// CSV is hundreds of megabytes: never held whole).
pub fn write_csv(doc: &dyn SweepView, out: impl Write) -> std::io::Result<()> {
    rows(doc, out, |_, _| true)
}

/// The rows worth reading, as CSV with the same columns as [`csv`]: every
/// check that did not pass, and every node not `ok` that has no check to
/// show (silent, down, or nothing selected). The mail attaches this; the
/// full [`csv`] stays in the report folder. Held whole: the report
/// writes it with [`write_anomalies_csv`].
pub fn anomalies_csv(doc: &dyn SweepView) -> String {
    in_memory(|w| write_anomalies_csv(doc, w))
}

/// [`anomalies_csv`], written to `out` one node at a time (a fleet where
/// most nodes fail a check has as many rows as nodes).
pub fn write_anomalies_csv(doc: &dyn SweepView, out: impl Write) -> std::io::Result<()> {
    rows(doc, out, |node, check| match check {
        Some(c) => c.status != Status::Pass,
        None => node.state != NodeState::Ok,
    })
}

/// What `write` writes, as a string.
fn in_memory(write: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> String {
    let mut bytes = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = write(&mut bytes);
    // Every field came from a `&str`, so the bytes are UTF-8.
    String::from_utf8(bytes).unwrap_or_default()
}

/// The CSV of the rows `keep` keeps, into `out`: `(node, Some(check))` for
/// each outcome, `(node, None)` for a node without outcomes.
fn rows(
    doc: &dyn SweepView,
    out: impl Write,
    keep: impl Fn(&NodeEntry, Option<&CheckOutcome>) -> bool,
) -> std::io::Result<()> {
    let completed_ms = doc.head().timing.completed_ms;
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(out);
    let mut row = |fields: &[&str]| {
        w.write_record(fields.iter().map(|f| cell(f).into_owned()))
            .map_err(std::io::Error::other)
    };
    row(&CSV_HEADER.split(',').collect::<Vec<_>>())?;
    for n in doc.nodes() {
        let tags = n
            .tags
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";");
        let state = n.state.as_str();
        if n.checks.is_empty() && keep(&n, None) {
            let why = n
                .silence
                .as_ref()
                .map(|s| crate::silence::explain(s, completed_ms))
                .unwrap_or_default();
            row(&[&n.name, &n.addr, state, &tags, "", "", "", "", "", &why])?;
        }
        for c in n.checks.iter().filter(|c| keep(&n, Some(c))) {
            let observed = c.observed.to_string();
            row(&[
                &n.name,
                &n.addr,
                state,
                &tags,
                &c.id,
                &c.kind,
                c.status.as_str(),
                &observed,
                &c.expected,
                &c.message,
            ])?;
        }
    }
    w.flush()
}

/// Characters that make a spreadsheet read a cell as a formula when they
/// come first (OWASP, "CSV Injection").
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// `text` as a CSV cell that is safe to open in a spreadsheet: controls
/// escaped ([`lines`]), and a leading `'` when it starts like a formula
/// and is not a plain number.
pub fn cell(text: &str) -> Cow<'_, str> {
    let clean = lines(text);
    if clean.starts_with(FORMULA_STARTS) && !is_plain_number(&clean) {
        Cow::Owned(format!("'{clean}"))
    } else {
        clean
    }
}

/// A decimal number as people and spreadsheets write it: an optional
/// sign, digits with at most one `.`, an optional exponent. Not `inf` or
/// `NaN`, which Rust would parse but a spreadsheet would not.
fn is_plain_number(text: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.strip_prefix(['+', '-']).unwrap_or(e))),
        None => (unsigned, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            (digits(int) || int.is_empty()) && (digits(frac) || frac.is_empty()) && mantissa != "."
        }
        None => digits(mantissa),
    };
    mantissa_ok && exponent.is_none_or(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_get_a_quote_and_numbers_stay_numbers() {
        for (raw, safe) in [
            (
                "=HYPERLINK(\"http://x\",\"y\")",
                "'=HYPERLINK(\"http://x\",\"y\")",
            ),
            ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
            ("@SUM(1)", "'@SUM(1)"),
            ("-2+3+cmd", "'-2+3+cmd"),
            ("-", "'-"),
            ("\tx", "'\tx"),
            ("\r=1", "\\r=1"),
            ("-inf", "'-inf"),
            ("-3", "-3"),
            ("+1.5", "+1.5"),
            ("-2e-3", "-2e-3"),
            ("-.5", "-.5"),
            ("a=b", "a=b"),
            ("", ""),
        ] {
            assert_eq!(cell(raw), safe, "{raw:?}");
        }
        assert_eq!(
            cell("\x1b]0;pwned\x07ok\u{202e}"),
            "\\x1b]0;pwned\\x07ok\\u{202e}"
        );
        assert_eq!(cell("two\nlines"), "two\nlines");
    }

    #[test]
    fn quotes_fields_that_need_it() {
        use crate::sample::{document, node, outcome};
        use patrol_checks::{NodeState, Observed, Status};
        let mut check = outcome("c", Status::Fail, Observed::Number(1.0), ">= 2");
        check.message = "say \"hi\"\nx\ny".into();
        let mut n = node("a", &[], NodeState::Failing, vec![check]);
        n.addr = "b,c".into();
        let s = csv(&document("prod", "01", 0, vec![n]));
        let line = s.split("\r\n").nth(1).unwrap();
        assert_eq!(
            line,
            "a,\"b,c\",failing,,c,c,fail,1,>= 2,\"say \"\"hi\"\"\nx\ny\""
        );
        assert!(s.starts_with(&format!("{CSV_HEADER}\r\n")), "{s}");
    }
}
