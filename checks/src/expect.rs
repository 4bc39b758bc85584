//! The expectation language shared by every check kind.
//!
//! In TOML an expectation is either a bare value (`expect = 1`, meaning
//! `equals`) or a table whose keys all must hold:
//! `equals`, `not_equals`, `one_of`, `min`, `max`, `range = [lo, hi]`,
//! `regex`, `contains`, `not_contains`, `all_in` (every entry of a list is
//! one of these), `mode_at_most` (a permission mode no looser than this,
//! `"0600"`), `version` (a constraint such as `">= 1.28, < 1.31"`), and
//! `or_unset = true` (the observation `unset` passes whatever else is
//! asked: a setting left at its default).
//! Numbers written as strings (`"1"`, sysctl values) compare as numbers;
//! multi-value observations (`32768 60999`) compare word by word.

use std::fmt::Write as _;

use regex::Regex;

use crate::version::{Version, VersionReq};
use crate::Observed;

/// A parsed expectation. Every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    pub equals: Option<String>,
    pub not_equals: Option<String>,
    pub one_of: Vec<String>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub regex: Option<Regex>,
    pub contains: Option<String>,
    pub not_contains: Option<String>,
    /// Every entry of the observation is one of these.
    pub all_in: Vec<String>,
    /// Permission bits (`0o600`): the observed octal mode sets no bit
    /// outside them.
    pub mode_at_most: Option<u32>,
    pub version: Option<VersionReq>,
    /// The observation `unset` (a key a daemon's settings leave out)
    /// passes, whatever the other conditions say.
    pub or_unset: bool,
}

/// How the `kubelet` and `kube_proxy` kinds observe a key left unset.
pub const UNSET: &str = "unset";

/// Parse a number the way config and sysctl write them: `10`, `-3`,
/// `0.5`, `1e6`, with surrounding blanks. `inf` and `nan` are not numbers.
pub fn parse_number(text: &str) -> Option<f64> {
    let t = text.trim();
    if t.is_empty()
        || !t
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))
    {
        return None;
    }
    t.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// The observation as words, for word-by-word comparison.
fn words(observed: &Observed) -> Vec<String> {
    match observed {
        Observed::List(items) => items.iter().map(|i| i.to_string()).collect(),
        other => other
            .to_string()
            .split_whitespace()
            .map(str::to_string)
            .collect(),
    }
}

/// Word-by-word equality; words that are both numbers compare as numbers.
fn equal(observed: &Observed, want: &str) -> bool {
    let got = words(observed);
    let want: Vec<&str> = want.split_whitespace().collect();
    got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|(g, w)| match (parse_number(g), parse_number(w)) {
                (Some(a), Some(b)) => a == b,
                _ => g == w,
            })
}

fn as_number(observed: &Observed) -> Option<f64> {
    match observed {
        Observed::Number(n) => Some(*n),
        Observed::Text(t) => parse_number(t),
        Observed::List(items) if items.len() == 1 => as_number(&items[0]),
        _ => None,
    }
}

fn fmt_num(n: f64) -> String {
    Observed::Number(n).to_string()
}

impl Expect {
    /// True when no condition is set.
    pub fn is_empty(&self) -> bool {
        self.describe().is_empty()
    }

    /// The expectation in words, e.g. `>= 524288` or `= 1`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if let Some(e) = &self.equals {
            parts.push(format!("= {e}"));
        }
        if let Some(e) = &self.not_equals {
            parts.push(format!("!= {e}"));
        }
        if !self.one_of.is_empty() {
            parts.push(format!("one of {}", self.one_of.join(" | ")));
        }
        match (self.min, self.max) {
            (Some(lo), Some(hi)) => parts.push(format!("{} ..= {}", fmt_num(lo), fmt_num(hi))),
            (Some(lo), None) => parts.push(format!(">= {}", fmt_num(lo))),
            (None, Some(hi)) => parts.push(format!("<= {}", fmt_num(hi))),
            (None, None) => {}
        }
        if let Some(r) = &self.regex {
            parts.push(format!("matches /{}/", r.as_str()));
        }
        if let Some(c) = &self.contains {
            parts.push(format!("contains \"{c}\""));
        }
        if let Some(c) = &self.not_contains {
            parts.push(format!("does not contain \"{c}\""));
        }
        if !self.all_in.is_empty() {
            parts.push(format!("every entry one of {}", self.all_in.join(" | ")));
        }
        if let Some(m) = self.mode_at_most {
            parts.push(format!("mode {m:04o} or stricter"));
        }
        if let Some(v) = &self.version {
            parts.push(format!("version {}", v.as_str()));
        }
        let text = parts.join(", ");
        if self.or_unset {
            if text.is_empty() {
                return UNSET.to_string();
            }
            return format!("{text}, or {UNSET}");
        }
        text
    }

    /// Judge an observation. `Err` holds the reason it misses, naming what
    /// was observed and what was expected.
    pub fn check(&self, observed: &Observed) -> Result<(), String> {
        if self.or_unset && matches!(observed, Observed::Text(t) if t == UNSET) {
            return Ok(());
        }
        let mut why = String::new();
        let mut miss = |s: String| {
            if !why.is_empty() {
                why.push_str("; ");
            }
            why.push_str(&s);
        };
        if let Some(e) = &self.equals {
            if !equal(observed, e) {
                miss(format!("expected {e}"));
            }
        }
        if let Some(e) = &self.not_equals {
            if equal(observed, e) {
                miss(format!("expected anything but {e}"));
            }
        }
        if !self.one_of.is_empty() && !self.one_of.iter().any(|w| equal(observed, w)) {
            miss(format!("expected one of {}", self.one_of.join(" | ")));
        }
        if self.min.is_some() || self.max.is_some() {
            match as_number(observed) {
                None => miss(format!("expected a number {}", self.range_words())),
                Some(n) => {
                    if self.min.is_some_and(|lo| n < lo) || self.max.is_some_and(|hi| n > hi) {
                        miss(format!("expected {}", self.range_words()));
                    }
                }
            }
        }
        let text = observed.to_string();
        if let Some(r) = &self.regex {
            if !r.is_match(&text) {
                miss(format!("expected to match /{}/", r.as_str()));
            }
        }
        if let Some(c) = &self.contains {
            let hit = match observed {
                Observed::List(items) => items.iter().any(|i| i.to_string() == *c),
                _ => text.contains(c.as_str()),
            };
            if !hit {
                miss(format!("expected to contain \"{c}\""));
            }
        }
        if let Some(c) = &self.not_contains {
            let hit = match observed {
                Observed::List(items) => items.iter().any(|i| i.to_string() == *c),
                _ => text.contains(c.as_str()),
            };
            if hit {
                miss(format!("expected not to contain \"{c}\""));
            }
        }
        if !self.all_in.is_empty() {
            let entries = match observed {
                Observed::List(items) => items.iter().map(|i| i.to_string()).collect(),
                other => vec![other.to_string()],
            };
            let stray: Vec<String> = entries
                .into_iter()
                .filter(|e| !self.all_in.contains(e))
                .collect();
            if !stray.is_empty() {
                miss(format!(
                    "expected every entry to be one of the allowed ({} is not)",
                    stray.join(", ")
                ));
            }
        }
        if let Some(max) = self.mode_at_most {
            match u32::from_str_radix(text.trim(), 8) {
                Ok(mode) if mode & !max == 0 => {}
                Ok(_) => miss(format!("expected mode {max:04o} or stricter")),
                Err(_) => miss(format!("expected a mode {max:04o} or stricter")),
            }
        }
        if let Some(req) = &self.version {
            match Version::find_in(&text) {
                None => miss(format!("expected a version {}", req.as_str())),
                Some(v) if !req.matches(&v) => miss(format!("expected version {}", req.as_str())),
                Some(_) => {}
            }
        }
        if why.is_empty() {
            Ok(())
        } else {
            Err(format!("observed {}, {why}", show(observed)))
        }
    }

    fn range_words(&self) -> String {
        match (self.min, self.max) {
            (Some(lo), Some(hi)) => format!("between {} and {}", fmt_num(lo), fmt_num(hi)),
            (Some(lo), None) => format!(">= {}", fmt_num(lo)),
            (None, Some(hi)) => format!("<= {}", fmt_num(hi)),
            (None, None) => String::new(),
        }
    }

    /// Parse from the TOML value of `expect`; `Err` says what is wrong and
    /// under which sub-key (`(key, message)`).
    pub fn from_toml(value: &toml::Value) -> Result<Expect, (String, String)> {
        let table = match value {
            toml::Value::Table(t) => t,
            scalar => {
                return Ok(Expect {
                    equals: Some(scalar_text(scalar).map_err(|m| (String::new(), m))?),
                    ..Expect::default()
                })
            }
        };
        let mut e = Expect::default();
        for (key, v) in table {
            let err = |m: String| (key.clone(), m);
            match key.as_str() {
                "equals" => e.equals = Some(scalar_text(v).map_err(err)?),
                "not_equals" => e.not_equals = Some(scalar_text(v).map_err(err)?),
                "one_of" => {
                    let items = v
                        .as_array()
                        .ok_or_else(|| err("expected a list of values".into()))?;
                    for item in items {
                        e.one_of.push(scalar_text(item).map_err(err)?);
                    }
                    if e.one_of.is_empty() {
                        return Err(err("must list at least one value".into()));
                    }
                }
                "min" => e.min = Some(toml_number(v).map_err(err)?),
                "max" => e.max = Some(toml_number(v).map_err(err)?),
                "range" => {
                    let items = v.as_array().filter(|a| a.len() == 2).ok_or_else(|| {
                        err("expected [low, high], e.g. range = [1024, 65535]".into())
                    })?;
                    e.min = Some(toml_number(&items[0]).map_err(err)?);
                    e.max = Some(toml_number(&items[1]).map_err(err)?);
                }
                "regex" => {
                    let s = v
                        .as_str()
                        .ok_or_else(|| err("expected a regular expression string".into()))?;
                    e.regex = Some(
                        regex::RegexBuilder::new(s)
                            .size_limit(1 << 20)
                            .build()
                            .map_err(|x| err(format!("bad regular expression: {x}")))?,
                    );
                }
                "contains" => e.contains = Some(scalar_text(v).map_err(err)?),
                "not_contains" => e.not_contains = Some(scalar_text(v).map_err(err)?),
                "all_in" => {
                    let items = v
                        .as_array()
                        .filter(|a| !a.is_empty())
                        .ok_or_else(|| err("expected a non-empty list of allowed values".into()))?;
                    for item in items {
                        e.all_in.push(scalar_text(item).map_err(err)?);
                    }
                }
                "mode_at_most" => {
                    let s = v.as_str().ok_or_else(|| {
                        err("expected an octal mode as a string, e.g. \"0600\"".into())
                    })?;
                    e.mode_at_most = Some(
                        u32::from_str_radix(s.trim(), 8)
                            .ok()
                            .filter(|m| *m <= 0o7777)
                            .ok_or_else(|| err(format!("`{s}` is not an octal mode such as \"0600\"")))?,
                    );
                }
                "or_unset" => {
                    e.or_unset = v
                        .as_bool()
                        .ok_or_else(|| err("expected true or false".into()))?
                }
                "version" => {
                    let s = v
                        .as_str()
                        .ok_or_else(|| err("expected a constraint such as \">= 1.28, < 1.31\"".into()))?;
                    e.version = Some(VersionReq::parse(s).map_err(err)?);
                }
                _ => {
                    return Err(err(
                        "unknown expectation (expected one of: equals, not_equals, one_of, min, max, range, regex, contains, not_contains, all_in, mode_at_most, version, or_unset)"
                            .into(),
                    ))
                }
            }
        }
        if let (Some(lo), Some(hi)) = (e.min, e.max) {
            if lo > hi {
                return Err(("min".into(), format!("min {lo} is above max {hi}")));
            }
        }
        Ok(e)
    }
}

/// An observation as shown in a message (quoted when it is empty text).
pub fn show(observed: &Observed) -> String {
    match observed {
        Observed::Text(t) if t.is_empty() => "\"\"".to_string(),
        Observed::Named(items) => {
            let mut s = String::new();
            for (i, (k, v)) in items.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                let _ = write!(s, "{k}={v}");
            }
            s
        }
        other => other.to_string(),
    }
}

fn scalar_text(v: &toml::Value) -> Result<String, String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(fmt_num(*f)),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        toml::Value::Array(items) => {
            let mut out = Vec::new();
            for i in items {
                out.push(scalar_text(i)?);
            }
            Ok(out.join(" "))
        }
        _ => Err("expected a number, a string or a list of them".into()),
    }
}

fn toml_number(v: &toml::Value) -> Result<f64, String> {
    match v {
        toml::Value::Integer(i) => Ok(*i as f64),
        toml::Value::Float(f) if f.is_finite() => Ok(*f),
        toml::Value::String(s) => parse_number(s).ok_or_else(|| format!("`{s}` is not a number")),
        _ => Err("expected a number".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn expect(text: &str) -> Expect {
        let v: toml::Table = toml::from_str(&format!("e = {text}")).unwrap();
        Expect::from_toml(&v["e"]).unwrap()
    }

    #[test]
    fn equals_compares_numbers_written_as_strings() {
        let e = expect("1");
        assert!(e.check(&Observed::Text("1".into())).is_ok());
        assert!(e.check(&Observed::Number(1.0)).is_ok());
        let err = e.check(&Observed::Text("0".into())).unwrap_err();
        assert_eq!(err, "observed 0, expected 1");
        assert!(expect("\"01\"").check(&Observed::Number(1.0)).is_ok());
    }

    #[test]
    fn multi_value_compares_word_by_word() {
        let e = expect("\"32768   60999\"");
        let obs = Observed::List(vec![Observed::Number(32768.0), Observed::Number(60999.0)]);
        assert!(e.check(&obs).is_ok());
        assert!(expect("[32768, 60999]").check(&obs).is_ok());
        assert!(expect("\"32768\"").check(&obs).is_err());
    }

    #[test]
    fn min_max_range_and_messages() {
        let e = expect("{ min = 524288 }");
        assert_eq!(e.describe(), ">= 524288");
        assert_eq!(
            e.check(&Observed::Text("8192".into())).unwrap_err(),
            "observed 8192, expected >= 524288"
        );
        assert!(e.check(&Observed::Text("524288".into())).is_ok());
        let r = expect("{ range = [1, 10] }");
        assert!(r.check(&Observed::Number(10.0)).is_ok());
        assert!(r.check(&Observed::Number(10.5)).is_err());
        assert!(r
            .check(&Observed::Text("many".into()))
            .unwrap_err()
            .contains("expected a number between 1 and 10"));
        let v: toml::Table = toml::from_str("e = { min = 5, max = 1 }").unwrap();
        assert!(Expect::from_toml(&v["e"]).is_err());
    }

    #[test]
    fn one_of_regex_contains_version() {
        assert!(expect("{ one_of = [\"active\", \"reloading\"] }")
            .check(&Observed::Text("active".into()))
            .is_ok());
        assert!(expect("{ one_of = [0, 2] }")
            .check(&Observed::Number(1.0))
            .unwrap_err()
            .contains("one of 0 | 2"));
        assert!(expect("{ regex = \"^cubic|bbr$\" }")
            .check(&Observed::Text("bbr".into()))
            .is_ok());
        assert!(expect("{ contains = \"bbr\" }")
            .check(&Observed::List(vec![
                Observed::Text("reno".into()),
                Observed::Text("bbr".into())
            ]))
            .is_ok());
        let v = expect("{ version = \">= 1.28, < 1.31\" }");
        assert!(v.check(&Observed::Version("1.30.1".into())).is_ok());
        assert_eq!(
            v.check(&Observed::Version("1.31.2".into())).unwrap_err(),
            "observed 1.31.2, expected version >= 1.28, < 1.31"
        );
        assert!(expect("{ not_equals = 0 }")
            .check(&Observed::Number(0.0))
            .is_err());
    }

    #[test]
    fn mode_at_most_is_a_bitmask_not_a_number() {
        let e = expect("{ mode_at_most = \"0600\" }");
        assert_eq!(e.describe(), "mode 0600 or stricter");
        for ok in ["0600", "0400", "0000", "600"] {
            assert!(e.check(&Observed::Text(ok.into())).is_ok(), "{ok}");
        }
        // 0500 is numerically below 0600 but sets the execute bit.
        for bad in ["0644", "0500", "0700", "4600", "absent"] {
            assert!(e.check(&Observed::Text(bad.into())).is_err(), "{bad}");
        }
        assert_eq!(
            e.check(&Observed::Text("0644".into())).unwrap_err(),
            "observed 0644, expected mode 0600 or stricter"
        );
        let v: toml::Table = toml::from_str("e = { mode_at_most = \"0999\" }").unwrap();
        assert_eq!(Expect::from_toml(&v["e"]).unwrap_err().0, "mode_at_most");
    }

    #[test]
    fn unset_all_in_and_not_contains() {
        let unset = Observed::Text(UNSET.into());
        let e = expect("{ equals = 0, or_unset = true }");
        assert_eq!(e.describe(), "= 0, or unset");
        assert!(e.check(&unset).is_ok());
        assert!(e.check(&Observed::Number(0.0)).is_ok());
        assert!(e.check(&Observed::Number(10255.0)).is_err());
        // Without or_unset, unset is a value like any other.
        assert!(expect("0").check(&unset).is_err());
        assert!(expect("\"unset\"").check(&unset).is_ok());
        let list = |items: &[&str]| {
            Observed::List(
                items
                    .iter()
                    .map(|i| Observed::Text(i.to_string()))
                    .collect(),
            )
        };
        let allowed = expect("{ all_in = [\"A\", \"B\", \"C\"] }");
        assert!(allowed.check(&list(&["A", "C"])).is_ok());
        assert_eq!(
            allowed.check(&list(&["A", "RC4", "D"])).unwrap_err(),
            "observed A RC4 D, expected every entry to be one of the allowed (RC4, D is not)"
        );
        assert!(allowed.check(&unset).is_err());
        let nc = expect("{ not_contains = \"AlwaysAllow\" }");
        assert!(nc.check(&Observed::Text("Webhook".into())).is_ok());
        assert!(nc.check(&Observed::Text("AlwaysAllow".into())).is_err());
        assert!(nc.check(&list(&["Node", "AlwaysAllow"])).is_err());
    }

    #[test]
    fn bad_expectations_name_the_key() {
        let v: toml::Table =
            toml::from_str("e = { minimum = 1 }\nf = { regex = \"(\" }\ng = { version = \"x\" }")
                .unwrap();
        assert_eq!(Expect::from_toml(&v["e"]).unwrap_err().0, "minimum");
        assert_eq!(Expect::from_toml(&v["f"]).unwrap_err().0, "regex");
        assert_eq!(Expect::from_toml(&v["g"]).unwrap_err().0, "version");
    }

    proptest! {
        #[test]
        fn integers_written_as_text_compare_as_numbers(n in any::<i32>(), pad in "[ \t]{0,3}") {
            let text = format!("{pad}{n}{pad}");
            prop_assert_eq!(parse_number(&text), Some(n as f64));
            let e = Expect { min: Some(n as f64), ..Expect::default() };
            prop_assert!(e.check(&Observed::Text(text.clone())).is_ok());
            let e = Expect { max: Some(n as f64 - 1.0), ..Expect::default() };
            prop_assert!(e.check(&Observed::Text(text)).is_err());
        }

        #[test]
        fn floats_roundtrip(f in -1e12f64..1e12) {
            prop_assert_eq!(parse_number(&f.to_string()), Some(f));
        }

        #[test]
        fn parse_number_never_panics(s in ".{0,30}") {
            let _ = parse_number(&s);
        }
    }
}
