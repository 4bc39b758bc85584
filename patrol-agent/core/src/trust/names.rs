//! Name patterns: which node names an issuing CA may certify
//! (`patrol ca issue issuer --names 'node-*'`), and which an enrollment
//! token may ask for.
//!
//! A pattern is a name in which `*` stands for any run of characters
//! (none included); everything else matches itself. `*` alone matches
//! every name. A list matches a name when one of its patterns does.

use serde::{Deserialize, Serialize};

use super::TrustError;

/// Most patterns one list holds.
pub const MAX_PATTERNS: usize = 16;
/// Longest pattern, bytes.
pub const MAX_PATTERN_LEN: usize = 128;

/// A checked list of name patterns (1 to [`MAX_PATTERNS`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamePatterns(Vec<String>);

impl NamePatterns {
    /// Check `patterns`: 1 to [`MAX_PATTERNS`], each 1 to
    /// [`MAX_PATTERN_LEN`] printable bytes without whitespace.
    pub fn new(patterns: Vec<String>) -> Result<NamePatterns, TrustError> {
        if patterns.is_empty() || patterns.len() > MAX_PATTERNS {
            return Err(TrustError::Malformed(format!(
                "a name pattern list holds 1 to {MAX_PATTERNS} patterns, not {}",
                patterns.len()
            )));
        }
        for p in &patterns {
            if p.is_empty()
                || p.len() > MAX_PATTERN_LEN
                || p.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(TrustError::Malformed(format!(
                    "`{}` is not a name pattern (1 to {MAX_PATTERN_LEN} bytes, no spaces)",
                    p.chars().take(40).collect::<String>()
                )));
            }
        }
        Ok(NamePatterns(patterns))
    }

    /// Patterns from a comma-separated list (`node-*,edge-*`).
    pub fn parse(text: &str) -> Result<NamePatterns, TrustError> {
        NamePatterns::new(
            text.split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
        )
    }

    /// Every name.
    pub fn any() -> NamePatterns {
        NamePatterns(vec!["*".into()])
    }

    pub fn patterns(&self) -> &[String] {
        &self.0
    }

    /// Whether `name` matches one of the patterns. A list decoded from the
    /// wire is matched as it is: an empty one matches nothing.
    pub fn matches(&self, name: &str) -> bool {
        self.0
            .iter()
            .any(|p| glob_match(p.as_bytes(), name.as_bytes()))
    }

    /// Whether every name `other` matches, this list matches too
    /// (checked pattern by pattern: each of `other`'s patterns must be
    /// covered by one of ours, treating its `*` as any text).
    pub fn covers(&self, other: &NamePatterns) -> bool {
        other.0.iter().all(|o| {
            self.0
                .iter()
                .any(|p| glob_match(p.as_bytes(), o.as_bytes()))
        })
    }

    /// `node-*, edge-*`.
    pub fn describe(&self) -> String {
        self.0.join(", ")
    }
}

/// `*` matches any run of bytes; iterative, with one backtrack point, so
/// linear in practice and never recursive on input.
fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && pattern[p] == name[n] {
            p += 1;
            n += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(s: &str) -> NamePatterns {
        NamePatterns::parse(s).unwrap()
    }

    #[test]
    fn a_star_matches_any_run_and_the_rest_matches_itself() {
        let p = pats("node-*");
        assert!(p.matches("node-1") && p.matches("node-") && p.matches("node-a-b"));
        assert!(!p.matches("nod-1") && !p.matches("xnode-1") && !p.matches(""));
        let p = pats("*.eu-west,db-?");
        assert!(p.matches("a.b.eu-west") && p.matches("db-?"));
        assert!(!p.matches("a.eu-west2") && !p.matches("db-1"));
        assert!(pats("*").matches("anything") && pats("a*b*c").matches("aXXbYYc"));
        assert!(!pats("a*b*c").matches("aXXbYY"));
    }

    #[test]
    fn a_list_covers_another_only_when_each_of_its_patterns_is_inside() {
        assert!(pats("*").covers(&pats("node-*")));
        assert!(pats("node-*").covers(&pats("node-eu-*,node-1")));
        assert!(!pats("node-*").covers(&pats("*")));
        assert!(!pats("node-*").covers(&pats("edge-*")));
    }

    #[test]
    fn empty_spaced_and_too_many_patterns_are_refused() {
        assert!(NamePatterns::parse("").is_err());
        assert!(NamePatterns::new(vec!["a b".into()]).is_err());
        assert!(NamePatterns::new(vec!["a".into(); MAX_PATTERNS + 1]).is_err());
        assert!(NamePatterns::new(vec!["x".repeat(MAX_PATTERN_LEN + 1)]).is_err());
    }
}
