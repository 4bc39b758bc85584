//! `--format junit`: check results as JUnit XML for CI systems. One
//! `<testsuite>` per node, one `<testcase>` per check: `fail` becomes a
//! `<failure>`, `error` an `<error>`, `warn` a passing case whose
//! `<system-out>` says WARN (a warning must not fail a CI job that exits
//! on failures only). A node that did not answer gets one case,
//! `patrol.reachable`, with an `<error>` saying why.

use std::fmt::Write as _;
use std::io::Write as _;

use patrol_checks::{CheckOutcome, Status};

/// One node's results, as the JUnit writer needs them.
pub struct Suite<'a> {
    /// The node name (suite name and every case's `classname`).
    pub node: &'a str,
    /// `Some(reason)` when the node did not answer; its checks are then empty.
    pub unreachable: Option<&'a str>,
    pub checks: &'a [CheckOutcome],
}

/// The XML document for these suites.
pub fn render<'a>(suites: impl IntoIterator<Item = Suite<'a>>) -> String {
    let suites: Vec<Suite<'a>> = suites.into_iter().collect();
    let mut totals = Totals::default();
    for s in &suites {
        totals.add(s);
    }
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = head(&mut out, &totals);
    for s in &suites {
        let _ = out.write_all(suite(s).as_bytes());
    }
    let _ = foot(&mut out);
    // Every piece is a `String`, so the bytes are UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// The counts the document's root element carries.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    tests: usize,
    failures: usize,
    errors: usize,
}

impl Totals {
    /// Count the cases of `s` in.
    pub fn add(&mut self, s: &Suite<'_>) {
        let unreachable = usize::from(s.unreachable.is_some());
        let count = |status| s.checks.iter().filter(|c| c.status == status).count();
        self.tests += unreachable + s.checks.len();
        self.failures += count(Status::Fail);
        self.errors += unreachable + count(Status::Error);
    }
}

/// What comes before the suites: the root element with `totals`. A large
/// sweep is written as [`head`], each [`suite`], [`foot`], with `totals`
/// counted in a first pass, so its XML is never held whole.
pub fn head(out: &mut dyn std::io::Write, totals: &Totals) -> std::io::Result<()> {
    write!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"patrol\" tests=\"{}\" failures=\"{}\" errors=\"{}\">\n",
        totals.tests, totals.failures, totals.errors
    )
}

/// What comes after the suites.
pub fn foot(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    out.write_all(b"</testsuites>\n")
}

/// One suite's XML.
pub fn suite(s: &Suite<'_>) -> String {
    let node = escape(s.node);
    let mut cases = String::new();
    let (mut t, mut f, mut e) = (0usize, 0usize, 0usize);
    if let Some(reason) = s.unreachable {
        t += 1;
        e += 1;
        let _ = writeln!(
            cases,
            "    <testcase classname=\"{node}\" name=\"patrol.reachable\" time=\"0\">\n      <error message=\"{}\" type=\"unreachable\"/>\n    </testcase>",
            escape(reason)
        );
    }
    for c in s.checks {
        t += 1;
        let _ = write!(
            cases,
            "    <testcase classname=\"{node}\" name=\"{}\" time=\"{:.6}\">",
            escape(&c.id),
            c.duration_us as f64 / 1e6
        );
        let detail = escape(&format!("observed {}, expected {}", c.observed, c.expected));
        match c.status {
            Status::Pass => {}
            Status::Warn => {
                let _ = write!(
                    cases,
                    "\n      <system-out>WARN: {}</system-out>\n    ",
                    escape(&c.message)
                );
            }
            Status::Fail => {
                f += 1;
                let _ = write!(
                    cases,
                    "\n      <failure message=\"{}\" type=\"{}\">{detail}</failure>\n    ",
                    escape(&c.message),
                    escape(&c.kind)
                );
            }
            Status::Error => {
                e += 1;
                let _ = write!(
                    cases,
                    "\n      <error message=\"{}\" type=\"{}\">{detail}</error>\n    ",
                    escape(&c.message),
                    escape(&c.kind)
                );
            }
        }
        cases.push_str("</testcase>\n");
    }
    format!(
        "  <testsuite name=\"{node}\" tests=\"{t}\" failures=\"{f}\" errors=\"{e}\">\n{cases}  </testsuite>\n"
    )
}

/// Text as XML character data or attribute value. Control characters XML
/// 1.0 cannot carry become U+FFFD.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\t' | '\r' => out.push(ch),
            c if (c as u32) < 0x20 => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use patrol_checks::{Observed, Severity};

    fn outcome(id: &str, status: Status, message: &str) -> CheckOutcome {
        CheckOutcome {
            id: id.into(),
            kind: "sysctl".into(),
            status,
            severity: Severity::Fail,
            observed: Observed::Number(1.0),
            expected: ">= 2".into(),
            message: message.into(),
            duration_us: 1500,
            description: String::new(),
            remediation: String::new(),
        }
    }

    #[test]
    fn failures_and_errors_are_counted_per_suite_and_in_total_and_text_is_escaped() {
        let a = [
            outcome("ok", Status::Pass, "fine"),
            outcome("bad", Status::Fail, "x < 2 & \"y\""),
            outcome("broken", Status::Error, "no <key>"),
            outcome("meh", Status::Warn, "close"),
        ];
        let xml = render([
            Suite {
                node: "n1",
                unreachable: None,
                checks: &a,
            },
            Suite {
                node: "n2",
                unreachable: Some("no answer before the deadline"),
                checks: &[],
            },
        ]);
        assert!(
            xml.contains("<testsuites name=\"patrol\" tests=\"5\" failures=\"1\" errors=\"2\">"),
            "{xml}"
        );
        assert!(
            xml.contains("<testsuite name=\"n1\" tests=\"4\" failures=\"1\" errors=\"1\">"),
            "{xml}"
        );
        assert!(
            xml.contains("<testsuite name=\"n2\" tests=\"1\" failures=\"0\" errors=\"1\">"),
            "{xml}"
        );
        assert!(
            xml.contains("message=\"x &lt; 2 &amp; &quot;y&quot;\""),
            "{xml}"
        );
        assert!(xml.contains("name=\"bad\" time=\"0.001500\""), "{xml}");
        assert!(
            xml.contains("<system-out>WARN: close</system-out>"),
            "{xml}"
        );
        assert!(xml.contains("name=\"patrol.reachable\""), "{xml}");
        assert!(!xml.contains("x < 2"), "{xml}");
    }
}
