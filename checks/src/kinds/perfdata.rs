//! Nagios plugin performance data: `'label'=value[UOM];[warn];[crit];[min];[max]`,
//! space separated, after the `|` of the first output line (and of the
//! long output).

/// One perfdata item.
#[derive(Debug, Clone, PartialEq)]
pub struct PerfValue {
    pub label: String,
    /// None when the plugin wrote `U` (unknown).
    pub value: Option<f64>,
    pub uom: String,
    pub warn: String,
    pub crit: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// Split plugin output into (first line text, perfdata text).
pub fn split_output(stdout: &str) -> (String, String) {
    let mut lines = stdout.lines();
    let first = lines.next().unwrap_or("");
    let (text, mut perf) = match first.split_once('|') {
        Some((t, p)) => (t.trim().to_string(), p.trim().to_string()),
        None => (first.trim().to_string(), String::new()),
    };
    // Long output: a later `|` starts more perfdata, to the end.
    let rest: Vec<&str> = lines.collect();
    if let Some(at) = rest.iter().position(|l| l.contains('|')) {
        let mut more = rest[at]
            .split_once('|')
            .map(|(_, p)| p)
            .unwrap_or("")
            .to_string();
        for l in &rest[at + 1..] {
            more.push(' ');
            more.push_str(l);
        }
        if !perf.is_empty() {
            perf.push(' ');
        }
        perf.push_str(more.trim());
    }
    (text, perf)
}

fn number(s: &str) -> Option<f64> {
    crate::expect::parse_number(s)
}

/// Parse perfdata; malformed items are skipped, never a panic.
pub fn parse(text: &str) -> Vec<PerfValue> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        let mut label = String::new();
        if chars[i] == '\'' {
            i += 1;
            while i < chars.len() {
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        label.push('\'');
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                label.push(chars[i]);
                i += 1;
            }
        } else {
            while i < chars.len() && chars[i] != '=' && !chars[i].is_whitespace() {
                label.push(chars[i]);
                i += 1;
            }
        }
        if chars.get(i) != Some(&'=') {
            // Not an item: skip to the next blank.
            while i < chars.len() && !chars[i].is_whitespace() {
                i += 1;
            }
            continue;
        }
        i += 1;
        let mut data = String::new();
        while i < chars.len() && !chars[i].is_whitespace() {
            data.push(chars[i]);
            i += 1;
        }
        if label.is_empty() {
            continue;
        }
        let mut fields = data.split(';');
        let head = fields.next().unwrap_or("");
        let (value, uom) = if head == "U" {
            (None, String::new())
        } else {
            let cut = head
                .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+')))
                .unwrap_or(head.len());
            match number(&head[..cut]) {
                Some(v) => (Some(v), head[cut..].to_string()),
                None => continue,
            }
        };
        let warn = fields.next().unwrap_or("").to_string();
        let crit = fields.next().unwrap_or("").to_string();
        let min = fields.next().and_then(number);
        let max = fields.next().and_then(number);
        out.push(PerfValue {
            label,
            value,
            uom,
            warn,
            crit,
            min,
            max,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_plugin_forms() {
        let (text, perf) = split_output(
            "DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968 'my label'=5%;80;90 time=0.5s\nlong text\n",
        );
        assert_eq!(text, "DISK OK - free space: / 3326 MB (56%);");
        let items = parse(&perf);
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].label, "/");
        assert_eq!(items[0].value, Some(2643.0));
        assert_eq!(items[0].uom, "MB");
        assert_eq!(items[0].warn, "5948");
        assert_eq!(items[0].max, Some(5968.0));
        assert_eq!(items[1].label, "my label");
        assert_eq!(items[1].uom, "%");
        assert_eq!(items[2].value, Some(0.5));
        let odd = parse("'it''s'=U;;; junk =3 x=abc ok=-1.5c");
        assert_eq!(odd[0].label, "it's");
        assert_eq!(odd[0].value, None);
        assert_eq!(odd.last().unwrap().value, Some(-1.5));
        assert_eq!(odd.last().unwrap().uom, "c");
    }

    #[test]
    fn long_output_perfdata() {
        let (_, perf) = split_output("OK | a=1\nline two\nline three | b=2\nc=3\n");
        let labels: Vec<String> = parse(&perf).into_iter().map(|p| p.label).collect();
        assert_eq!(labels, ["a", "b", "c"]);
    }

    proptest! {
        #[test]
        fn generated_items_roundtrip(
            label in "[a-z][a-z0-9_ /]{0,12}",
            value in -1e9f64..1e9,
            uom in prop::sample::select(vec!["", "s", "ms", "%", "B", "KB", "c"]),
            warn in 0u32..1000,
            crit in 0u32..1000,
        ) {
            let text = format!("'{label}'={value}{uom};{warn};{crit};0; other=1");
            let items = parse(&text);
            prop_assert_eq!(items.len(), 2);
            prop_assert_eq!(&items[0].label, &label);
            prop_assert_eq!(items[0].value, Some(value));
            prop_assert_eq!(&items[0].uom, uom);
            prop_assert_eq!(items[0].warn.clone(), warn.to_string());
            prop_assert_eq!(items[0].crit.clone(), crit.to_string());
            prop_assert_eq!(items[0].min, Some(0.0));
            prop_assert_eq!(items[0].max, None);
        }

        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let (_, perf) = split_output(&s);
            let _ = parse(&perf);
            let _ = parse(&s);
        }
    }
}
