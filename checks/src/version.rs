//! Lenient version numbers (`v1.31.2`, `3.5.16`, `1.30`) and version
//! constraints (`">= 1.28, < 1.31"`), as used by `expect.version`.

use std::cmp::Ordering;
use std::fmt;

/// A parsed version: up to three numeric components and an optional
/// pre-release / build suffix (`-rc.1`, `+k3s1`), which orders before the
/// plain release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    /// Pre-release text after `-` (empty for a release). Build metadata
    /// after `+` is dropped.
    pub pre: String,
}

impl Version {
    /// Parse `v1.31.2`, `1.31`, `1`, `1.31.2-rc.1+abc`. Missing minor and
    /// patch are 0.
    pub fn parse(text: &str) -> Result<Version, String> {
        let t = text.trim();
        let t = t.strip_prefix(['v', 'V']).unwrap_or(t);
        let t = t.split('+').next().unwrap_or("");
        // Trimmed again: a blank before `+build` is not part of the
        // pre-release.
        let (core, pre) = match t.split_once('-') {
            Some((c, p)) => (c, p.trim().to_string()),
            None => (t, String::new()),
        };
        let mut nums = [0u64; 3];
        let parts: Vec<&str> = core.split('.').collect();
        if parts.is_empty() || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(format!("`{text}` is not a version (expected e.g. 1.31.2)"));
        }
        for (i, p) in parts.iter().enumerate() {
            nums[i] = p
                .parse()
                .map_err(|_| format!("`{text}` is not a version (expected e.g. 1.31.2)"))?;
        }
        Ok(Version {
            major: nums[0],
            minor: nums[1],
            patch: nums[2],
            pre,
        })
    }

    /// Find the first thing that looks like a version inside `text`
    /// (`Kubernetes v1.31.2` -> 1.31.2).
    pub fn find_in(text: &str) -> Option<Version> {
        text.split(|c: char| c.is_whitespace() || c == '"' || c == ',' || c == '=')
            .filter(|w| {
                let w = w.strip_prefix(['v', 'V']).unwrap_or(w);
                w.starts_with(|c: char| c.is_ascii_digit()) && w.contains('.')
            })
            .find_map(|w| Version::parse(w).ok())
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre.is_empty() {
            write!(f, "-{}", self.pre)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
    Ne,
}

/// A conjunction of comparisons: `>= 1.28, < 1.31`. A bare version (`1.30`)
/// or `= 1.30` with fewer than three components matches every patch of it
/// (`= 1.30` matches 1.30.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionReq {
    text: String,
    parts: Vec<(Op, Version, usize)>,
}

impl VersionReq {
    pub fn parse(text: &str) -> Result<VersionReq, String> {
        let mut parts = Vec::new();
        for raw in text.split(',') {
            let p = raw.trim();
            if p.is_empty() {
                return Err(format!(
                    "`{text}` is not a version constraint (expected e.g. \">= 1.28, < 1.31\")"
                ));
            }
            let (op, rest) = [
                (">=", Op::Ge),
                ("<=", Op::Le),
                ("!=", Op::Ne),
                ("==", Op::Eq),
                (">", Op::Gt),
                ("<", Op::Lt),
                ("=", Op::Eq),
            ]
            .iter()
            .find_map(|(s, op)| p.strip_prefix(s).map(|r| (*op, r)))
            .unwrap_or((Op::Eq, p));
            let rest = rest.trim();
            let v = Version::parse(rest)?;
            let core = rest.trim_start_matches(['v', 'V']);
            let core = core.split(['-', '+']).next().unwrap_or("");
            let given = core.split('.').count();
            parts.push((op, v, given));
        }
        Ok(VersionReq {
            text: text.trim().to_string(),
            parts,
        })
    }

    pub fn matches(&self, v: &Version) -> bool {
        self.parts.iter().all(|(op, want, given)| match op {
            Op::Ge => v >= want,
            Op::Gt => v > want,
            Op::Le => v <= want || prefix_eq(v, want, *given),
            Op::Lt => v < want,
            Op::Eq => prefix_eq(v, want, *given),
            Op::Ne => !prefix_eq(v, want, *given),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Equal on the first `given` components (and the pre-release when all
/// three were given).
fn prefix_eq(v: &Version, want: &Version, given: usize) -> bool {
    let a = [v.major, v.minor, v.patch];
    let b = [want.major, want.minor, want.patch];
    a[..given.min(3)] == b[..given.min(3)] && (given < 3 || v.pre == want.pre)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Regression (fuzz target `expect`): the text was trimmed before the
    /// build metadata was cut off, so `1.31.0-rc.1 +k3s1` kept `rc.1 ` (with
    /// the blank) as its pre-release: it printed as text that parsed to
    /// another version, and `= 1.31.0-rc.1` did not match it.
    #[test]
    fn a_blank_before_build_metadata_is_not_part_of_the_pre_release() {
        let v = Version::parse("1.31.0-rc.1 +k3s1").unwrap();
        assert_eq!(v, Version::parse("1.31.0-rc.1").unwrap());
        assert_eq!(Version::parse(&v.to_string()).unwrap(), v);
        assert!(VersionReq::parse("= 1.31.0-rc.1").unwrap().matches(&v));
        assert_eq!(Version::parse("8.0.0- \n}1 +x").unwrap().pre, "}1");
    }

    #[test]
    fn parses_the_forms_seen_in_the_wild() {
        assert_eq!(Version::parse("v1.31.2").unwrap().to_string(), "1.31.2");
        assert_eq!(Version::parse("1.30").unwrap().to_string(), "1.30.0");
        assert_eq!(
            Version::parse("v1.29.3+k3s1").unwrap().to_string(),
            "1.29.3"
        );
        assert_eq!(
            Version::parse("1.31.0-rc.1").unwrap().to_string(),
            "1.31.0-rc.1"
        );
        assert!(Version::parse("").is_err());
        assert!(Version::parse("one.two").is_err());
        assert!(Version::parse("1..2").is_err());
        assert_eq!(
            Version::find_in("Kubernetes v1.31.2").unwrap().to_string(),
            "1.31.2"
        );
    }

    #[test]
    fn constraints() {
        let r = VersionReq::parse(">= 1.28, < 1.31").unwrap();
        assert!(r.matches(&Version::parse("1.28.0").unwrap()));
        assert!(r.matches(&Version::parse("v1.30.9").unwrap()));
        assert!(!r.matches(&Version::parse("1.31.2").unwrap()));
        assert!(!r.matches(&Version::parse("1.27.15").unwrap()));
        let eq = VersionReq::parse("1.30").unwrap();
        assert!(eq.matches(&Version::parse("1.30.7").unwrap()));
        assert!(!eq.matches(&Version::parse("1.31.0").unwrap()));
        let le = VersionReq::parse("<= 1.30").unwrap();
        assert!(le.matches(&Version::parse("1.30.7").unwrap()));
        assert!(VersionReq::parse(">= ").is_err());
        assert!(VersionReq::parse(">= 1.2,").is_err());
        assert!(Version::parse("1.31.0-rc.1").unwrap() < Version::parse("1.31.0").unwrap());
    }

    proptest! {
        #[test]
        fn display_then_parse_roundtrips(a in 0u64..10_000, b in 0u64..10_000, c in 0u64..10_000, v in any::<bool>()) {
            let text = format!("{}{a}.{b}.{c}", if v { "v" } else { "" });
            let parsed = Version::parse(&text).unwrap();
            prop_assert_eq!(Version::parse(&parsed.to_string()).unwrap(), parsed.clone());
            prop_assert_eq!((parsed.major, parsed.minor, parsed.patch), (a, b, c));
        }

        #[test]
        fn ordering_matches_tuples(a in (0u64..50, 0u64..50, 0u64..50), b in (0u64..50, 0u64..50, 0u64..50)) {
            let va = Version::parse(&format!("{}.{}.{}", a.0, a.1, a.2)).unwrap();
            let vb = Version::parse(&format!("{}.{}.{}", b.0, b.1, b.2)).unwrap();
            prop_assert_eq!(va.cmp(&vb), a.cmp(&b));
            let req = VersionReq::parse(&format!(">= {}.{}.{}", b.0, b.1, b.2)).unwrap();
            prop_assert_eq!(req.matches(&va), a >= b);
        }

        #[test]
        fn parse_never_panics(s in ".{0,40}") {
            let _ = Version::parse(&s);
            let _ = VersionReq::parse(&s);
            let _ = Version::find_in(&s);
        }
    }
}
