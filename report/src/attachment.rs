//! The CSV attachment: every node and every check outcome, one row each,
//! so the bounded HTML can leave names out without losing anything.

use patrol_checks::SweepDocument;

/// Header row of the CSV.
pub const CSV_HEADER: &str = "node,addr,state,tags,check,kind,status,observed,expected,message";

/// The whole per-node detail of `doc` as CSV. A node with no check
/// outcomes (unreachable, or nothing selected) has one row with empty
/// check columns; for a silent node its `message` says why
/// ([`crate::silence::explain`]).
pub fn csv(doc: &SweepDocument) -> String {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::with_capacity(doc.nodes.len() * 256));
    // Writing to a Vec cannot fail; a record the writer refused would only
    // shorten the attachment, never stop the report.
    let mut row = |fields: &[&str]| {
        let _ = w.write_record(fields);
    };
    row(&CSV_HEADER.split(',').collect::<Vec<_>>());
    for n in &doc.nodes {
        let tags = n
            .tags
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";");
        let state = n.state.as_str();
        if n.checks.is_empty() {
            let why = n
                .silence
                .as_ref()
                .map(|s| crate::silence::explain(s, doc.timing.completed_ms))
                .unwrap_or_default();
            row(&[&n.name, &n.addr, state, &tags, "", "", "", "", "", &why]);
        }
        for c in &n.checks {
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
            ]);
        }
    }
    let bytes = w.into_inner().unwrap_or_default();
    // Every field came from a `&str`, so the bytes are UTF-8.
    String::from_utf8(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

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
