//! The CSV attachment: every node and every check outcome, one row each,
//! so the bounded HTML can leave names out without losing anything.

use patrol_checks::SweepDocument;

/// Header row of the CSV.
pub const CSV_HEADER: &str = "node,addr,state,tags,check,kind,status,observed,expected,message";

/// Quote one CSV field (RFC 4180) when it needs it.
fn field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

fn row(out: &mut String, fields: &[&str]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        field(out, f);
    }
    out.push_str("\r\n");
}

/// The whole per-node detail of `doc` as CSV. A node with no check
/// outcomes (unreachable, or nothing selected) has one row with empty
/// check columns.
pub fn csv(doc: &SweepDocument) -> String {
    let mut out = String::with_capacity(doc.nodes.len() * 256);
    out.push_str(CSV_HEADER);
    out.push_str("\r\n");
    for n in &doc.nodes {
        let tags = n
            .tags
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";");
        let state = n.state.as_str();
        if n.checks.is_empty() {
            row(
                &mut out,
                &[&n.name, &n.addr, state, &tags, "", "", "", "", "", ""],
            );
        }
        for c in &n.checks {
            let observed = c.observed.to_string();
            row(
                &mut out,
                &[
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
                ],
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_fields_that_need_it() {
        let mut s = String::new();
        row(&mut s, &["a", "b,c", "say \"hi\"", "x\ny"]);
        assert_eq!(s, "a,\"b,c\",\"say \"\"hi\"\"\",\"x\ny\"\r\n");
    }
}
