//! Target `perfdata`: a Nagios plugin's output through
//! [`split_output`] and [`parse`] (`checks/src/kinds/perfdata.rs`), as the
//! `command` check reads a plugin's stdout.
//!
//! Checked: nothing panics; the message has no `|`; every item has a
//! label and only finite numbers; the items, written back in the perfdata
//! syntax, parse to the same items.

use std::fmt::Write as _;

use patrol_checks::kinds::perfdata::{parse, split_output, PerfValue};

pub fn fuzz(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (message, perf) = split_output(&text);
    assert!(
        !message.contains('|'),
        "the message keeps a `|`: {message:?}"
    );
    for source in [perf.as_str(), &text] {
        let items = parse(source);
        for item in &items {
            assert!(!item.label.is_empty());
            for n in [item.value, item.min, item.max].into_iter().flatten() {
                assert!(n.is_finite(), "{item:?}");
            }
        }
        let written = write(&items);
        assert_eq!(parse(&written), items, "written back as {written:?}");
    }
}

/// Items in the syntax plugins write: `'label'=value[UOM];warn;crit;min;max`.
fn write(items: &[PerfValue]) -> String {
    let mut out = String::new();
    let num = |n: Option<f64>| n.map(|n| n.to_string()).unwrap_or_default();
    for item in items {
        let value = match item.value {
            Some(v) => format!("{v}{}", item.uom),
            None => "U".to_string(),
        };
        let _ = write!(
            out,
            "'{}'={value};{};{};{};{} ",
            item.label.replace('\'', "''"),
            item.warn,
            item.crit,
            num(item.min),
            num(item.max),
        );
    }
    out
}
