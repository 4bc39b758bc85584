//! Families: the anomaly groups of one check that differ only by value.
//!
//! Grouping by (check, status, value) is right for `fs.file-max = 65536`,
//! but a check whose value varies (disk used 85 %, 86 %, 87 % ..., zombie
//! counts) would otherwise fill the report with one card per value. When a
//! (check, status, expectation) has at least [`FOLD_MIN`] groups, the
//! report shows them as one family card: the value range, every node
//! counted, sample nodes with their values. The groups themselves (and the
//! subject's count, the history and the diff) are unchanged. Pure.

use std::collections::HashMap;

use patrol_checks::Status;

use crate::diff::MarkedGroup;

/// A (check, status, expectation) with at least this many distinct values
/// is shown as one family.
pub const FOLD_MIN: usize = 4;

/// The cards for `groups`: each card is the indices of its groups (one
/// for a single group, at least [`FOLD_MIN`] for a family), in the order
/// of each card's first group.
pub fn fold(groups: &[MarkedGroup]) -> Vec<Vec<usize>> {
    let key = |m: &MarkedGroup| -> (String, Status, String) {
        (
            m.group.key.check.clone(),
            m.group.key.status,
            m.group.expected.clone(),
        )
    };
    let mut members: HashMap<(String, Status, String), Vec<usize>> = HashMap::new();
    for (i, m) in groups.iter().enumerate() {
        members.entry(key(m)).or_default().push(i);
    }
    let mut out = Vec::new();
    for (i, m) in groups.iter().enumerate() {
        match members.get(&key(m)) {
            Some(idx) if idx.len() >= FOLD_MIN => {
                if idx[0] == i {
                    out.push(idx.clone());
                }
            }
            _ => out.push(vec![i]),
        }
    }
    out
}

/// `85 .. 99` for numbers, else the first values and `...`.
pub fn value_range(values: &[&str]) -> String {
    let numbers: Option<Vec<f64>> = values.iter().map(|v| v.parse::<f64>().ok()).collect();
    match numbers {
        Some(n) if !n.is_empty() => {
            let (lo, hi) = n
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
                    (lo.min(x), hi.max(x))
                });
            let show = |x: f64| {
                values
                    .iter()
                    .find(|v| v.parse::<f64>().ok() == Some(x))
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| x.to_string())
            };
            format!("{} .. {}", show(lo), show(hi))
        }
        _ => {
            let mut s = values
                .iter()
                .take(3)
                .copied()
                .collect::<Vec<_>>()
                .join(", ");
            if values.len() > 3 {
                s.push_str(", ...");
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_of_numbers_and_lists_of_words() {
        assert_eq!(value_range(&["86", "85", "99", "90"]), "85 .. 99");
        assert_eq!(
            value_range(&["1.29.0", "1.29.1", "1.28.3", "1.27.0"]),
            "1.29.0, 1.29.1, 1.28.3, ..."
        );
    }
}
