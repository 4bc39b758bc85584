//! Target `expect`: the expectation language (`checks/src/expect.rs`) and
//! the version constraints behind `expect.version` (`checks/src/version.rs`).
//!
//! Input: UTF-8 text; the first line is the TOML value of `expect` (`1`,
//! `{ min = 5 }`, `{ regex = "^a", version = ">= 1.2" }`), the rest is
//! the observed value. The expectation is parsed with
//! [`Expect::from_toml`] and judged against the observation as text, as a
//! number, as a list of words, as a version and as nothing; the
//! observation's text is also read as a version, a version constraint and
//! a number.
//!
//! Checked: nothing panics and no regular expression takes unbounded time
//! or memory to build; an empty expectation accepts everything; a bare
//! value accepts itself; a miss says what was observed; a version that
//! parses prints as text that parses to itself.

use patrol_checks::expect::{parse_number, Expect};
use patrol_checks::version::{Version, VersionReq};
use patrol_checks::Observed;

pub fn fuzz(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (value, observed) = text.split_once('\n').unwrap_or((text, ""));
    versions(observed);
    let observations = observations(observed);
    let Ok(table) = toml::from_str::<toml::Table>(&format!("expect = {value}")) else {
        return;
    };
    let Some(value) = table.get("expect") else {
        return;
    };
    let Ok(expect) = Expect::from_toml(value) else {
        return;
    };
    let _ = expect.describe();
    for obs in &observations {
        match expect.check(obs) {
            Ok(()) => {}
            Err(why) => {
                assert!(!expect.is_empty(), "an empty expectation refused {obs:?}");
                assert!(why.starts_with("observed "), "{why:?}");
            }
        }
    }
    if let (toml::Value::String(s), Some(want)) = (value, &expect.equals) {
        assert_eq!(s, want);
        assert_eq!(
            expect.check(&Observed::Text(s.clone())),
            Ok(()),
            "`expect = {value}` refuses its own text"
        );
    }
}

fn observations(text: &str) -> Vec<Observed> {
    let mut out = vec![
        Observed::Text(text.to_string()),
        Observed::Version(text.to_string()),
        Observed::List(
            text.split_whitespace()
                .map(|w| Observed::Text(w.to_string()))
                .collect(),
        ),
        Observed::None,
    ];
    if let Some(n) = parse_number(text) {
        assert!(n.is_finite());
        out.push(Observed::Number(n));
    }
    out
}

fn versions(text: &str) {
    if let Ok(v) = Version::parse(text) {
        let shown = v.to_string();
        assert_eq!(
            Version::parse(&shown).as_ref(),
            Ok(&v),
            "shown as {shown:?}"
        );
    }
    if let Some(v) = Version::find_in(text) {
        let _ = v.to_string();
    }
    if let Ok(req) = VersionReq::parse(text) {
        let _ = req.as_str();
        if let Some(v) = Version::find_in(text) {
            let _ = req.matches(&v);
        }
    }
}
