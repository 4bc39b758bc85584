//! Target `config`: a config file's text through [`Config::parse`], then
//! its `[[check]]` tables and named profiles through
//! [`Catalog::from_config`] and a selection, as `patrol config check` and
//! the agent read them; also the human durations on their own.
//!
//! Checked: nothing panics; every problem names the file and says what is
//! wrong; a parsed catalog has unique ids and selects only its own checks;
//! a duration that parses formats to text that parses again.

use std::collections::BTreeSet;
use std::path::Path;

use patrol_checks::{Catalog, Selector};
use patrol_config::{format_duration, parse_duration, Config, ConfigError};

const FILE: &str = "fuzz.toml";

pub fn fuzz(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = parse_duration(text) {
        let shown = format_duration(d);
        assert!(
            parse_duration(&shown).is_ok(),
            "{text:?} shows as {shown:?}"
        );
    }
    let config = match Config::parse(text, Path::new(FILE)) {
        Ok(config) => config,
        Err(e) => return well_formed(&e),
    };
    let catalog = match Catalog::from_config(&config) {
        Ok(catalog) => catalog,
        Err(e) => return well_formed(&e),
    };
    let ids: BTreeSet<&str> = catalog.checks().iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids.len(), catalog.len(), "duplicate check ids");
    let all = catalog.select(&Selector::default(), &config.node.tags);
    assert!(all.len() <= catalog.len());
    let first = Selector {
        checks: ids.iter().take(1).map(|s| s.to_string()).collect(),
        ..Selector::default()
    };
    assert!(catalog.select(&first, &config.node.tags).len() <= 1);
    for spec in catalog.checks() {
        let _ = spec.expect.describe();
    }
}

fn well_formed(e: &ConfigError) {
    assert!(!e.problems.is_empty(), "an error without a problem");
    for p in &e.problems {
        assert_eq!(p.file, Path::new(FILE));
        assert!(!p.message.is_empty(), "a problem without a message");
    }
}
