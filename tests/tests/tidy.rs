//! Tidy: every Rust file under a crate's `src/`, `examples/` or
//! `fuzz_targets/` opens with a `//!` doc saying what it holds (the
//! rust-analyzer habit in STYLE.md);
//! the sans-IO core and the model depend on no runtime and keep their
//! `clippy.toml` bans (clippy, not a text search, keeps them free of
//! I/O); every default the docs quote as `` `field` = value `` is the
//! code's; and ARCHITECTURE.md stays short, quotes no default and names
//! only paths that exist.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every crate folder, nested ones included (and the cargo-fuzz crate,
/// which has a workspace of its own).
const CRATES: [&str; 10] = [
    "config",
    "checks",
    "checks/model",
    "patrol-agent",
    "patrol-agent/core",
    "report",
    "patrol-cli",
    "tests",
    "tests/fuzz-harness",
    "tests/fuzz",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn every_source_file_has_a_module_doc() {
    let root = root();
    let mut files = Vec::new();
    for krate in CRATES {
        for sub in ["src", "examples", "fuzz_targets"] {
            rust_files(&root.join(krate).join(sub), &mut files);
        }
    }
    assert!(
        files.len() > 50,
        "found only {} files under {}",
        files.len(),
        root.display()
    );
    let missing: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .map(|f| f.strip_prefix(root).unwrap_or(f).display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` doc at the top: {missing:?}"
    );
}

/// The no-I/O rule of the sans-IO crates is kept by clippy (each crate's
/// `clippy.toml` bans clock, filesystem, socket, process and OS-randomness
/// calls and types); what clippy cannot see is a dependency on a runtime,
/// and a `clippy.toml` deleted or emptied.
#[test]
fn the_core_and_the_model_have_no_runtime_and_keep_their_io_bans() {
    for krate in ["patrol-agent/core", "checks/model"] {
        let manifest = std::fs::read_to_string(root().join(krate).join("Cargo.toml")).unwrap();
        let deps = manifest.split("[dependencies]").nth(1).unwrap_or("");
        let deps = deps.split("\n[").next().unwrap_or("");
        assert!(!deps.contains("tokio"), "{krate} depends on tokio");
        let bans = std::fs::read_to_string(root().join(krate).join("clippy.toml"))
            .unwrap_or_else(|e| panic!("{krate}/clippy.toml: {e}"));
        for path in [
            "std::time::Instant::now",
            "std::time::SystemTime::now",
            "std::fs::read",
            "std::fs::File",
            "std::net::UdpSocket",
            "std::process::Command",
            "rand::rng",
        ] {
            assert!(
                bans.contains(&format!("\"{path}\"")),
                "{krate}/clippy.toml does not ban `{path}`"
            );
        }
    }
}

/// Every default a doc may quote, as the doc writes it.
fn documented_defaults() -> BTreeMap<&'static str, String> {
    let n = patrol_core::NodeSettings::default();
    let s = &n.sweep;
    let f = &n.foca;
    let mut m = BTreeMap::new();
    m.insert("max_datagram", n.max_datagram.to_string());
    m.insert("eager_push_rounds", n.eager_push_rounds.to_string());
    m.insert("direct_spread_limit", n.direct_spread_limit.to_string());
    m.insert("rejoin_initial", dur(n.rejoin_initial));
    m.insert("rejoin_max", dur(n.rejoin_max));
    m.insert("rejoin_watch", dur(n.rejoin_watch));
    m.insert("min_cluster_size", f.min_cluster_size.to_string());
    m.insert("max_transmissions", f.max_transmissions.to_string());
    m.insert("announce_every", dur(f.announce_every));
    m.insert("small_mesh", f.small_mesh.to_string());
    m.insert("announce_every_small", dur(f.announce_every_small));
    m.insert("remove_down_after", dur(f.remove_down_after));
    m.insert("max_concurrent", s.max_concurrent.to_string());
    m.insert("sweep.max_datagram", s.max_datagram.to_string());
    m.insert("answer_spread_per_node", dur(s.answer_spread_per_node));
    m.insert("answer_spread_max", dur(s.answer_spread_max));
    m.insert("retry_initial", dur(s.retry_initial));
    m.insert("retry_max", dur(s.retry_max));
    m.insert("tick", dur(s.tick));
    m.insert("backstop_min_delay", dur(s.backstop_min_delay));
    m.insert("backstop_quiet", dur(s.backstop_quiet));
    m.insert(
        "backstop_deadline_percent",
        s.backstop_deadline_percent.to_string(),
    );
    m.insert("backstop_interval", dur(s.backstop_interval));
    m.insert("max_deadline", dur(s.max_deadline));
    m.insert("max_answer_bytes", s.max_answer_bytes.to_string());
    m.insert("budget_margin", dur(s.budget_margin));
    m.insert("budget_floor", dur(s.budget_floor));
    m.insert("clock_skew_tolerance", dur(s.clock_skew_tolerance));
    m.insert("clock_skew_limit", dur(s.clock_skew_limit));
    m.insert("max_participations", s.max_participations.to_string());
    m.insert("operator_share", s.operator_share.to_string());
    m.insert("max_late_joiners", s.max_late_joiners.to_string());
    m.insert("max_partial_bytes", s.max_partial_bytes.to_string());
    m.insert(
        "max_late_partial_bytes",
        s.max_late_partial_bytes.to_string(),
    );
    m.insert("relay_min_nodes", s.relay_min_nodes.to_string());
    m.insert("nodes_per_relay", s.nodes_per_relay.to_string());
    m.insert("max_relays", s.max_relays.to_string());
    m.insert("relay_flush", dur(s.relay_flush));
    m.insert("relay_window", s.relay_window.to_string());
    m.insert("relay_spread_per_node", dur(s.relay_spread_per_node));
    m.insert("relay_attempts", s.relay_attempts.to_string());
    m.insert("max_relayed_nodes", s.max_relayed_nodes.to_string());
    let c = patrol_agent::control::server::ControlSettings::default();
    m.insert("max_connections", c.max_connections.to_string());
    m.insert("request_timeout", dur(c.request_timeout));
    m.insert("max_selector_bytes", c.max_selector_bytes.to_string());
    m.insert("max_pending_per_peer", c.max_pending_per_peer.to_string());
    m.insert("write_timeout", dur(c.write_timeout));
    m.insert(
        "MAX_SEALED_DATAGRAM",
        patrol_agent::transport::MAX_SEALED_DATAGRAM.to_string(),
    );
    m.insert("OVERHEAD", patrol_agent::envelope::OVERHEAD.to_string());
    m.insert(
        "REPLAY_HEADER",
        patrol_agent::datagram::REPLAY_HEADER.to_string(),
    );
    let r = patrol_agent::datagram::ReplaySettings::default();
    m.insert("skew_tolerance", dur(r.skew_tolerance));
    m.insert("max_senders", r.max_senders.to_string());
    m.insert("max_packet_size", n.foca_payload().to_string());
    let checks = patrol_config::ChecksSection::default();
    m.insert("blocking_per_kind", checks.blocking_per_kind.to_string());
    m.insert(
        "MAX_REMEMBERED",
        patrol_core::sweep::gossip::MAX_REMEMBERED.to_string(),
    );
    m
}

/// A duration as the docs write it: `30µs`, `150ms`, `5s`, `10min`.
fn dur(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() == 0 && secs >= 60 && secs.is_multiple_of(60) {
        format!("{}min", secs / 60)
    } else if d.subsec_nanos() == 0 {
        format!("{secs}s")
    } else if d.subsec_micros().is_multiple_of(1000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}µs", d.as_micros())
    }
}

/// Every `` `name` = value `` in `text` whose name is a documented default.
fn quoted_defaults(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('`') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('`') else { break };
        let name = &after[..end];
        let tail = &after[end + 1..];
        if let Some(value) = tail.strip_prefix(" = ") {
            let value: String = value
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == 'µ' || *c == ',' || *c == '.')
                .collect();
            let value = value.trim_end_matches(['.', ',']).replace(',', "");
            out.push((name.to_string(), value));
        }
        rest = &after[end + 1..];
    }
    out
}

#[test]
fn every_default_the_docs_quote_is_the_codes() {
    let defaults = documented_defaults();
    let mut checked = 0;
    let mut wrong = Vec::new();
    // ARCHITECTURE.md quotes no default (it links to the settings structs;
    // `architecture_md_is_short_and_names_only_paths_that_exist` keeps it so).
    for doc in [
        "PROTOCOL.md",
        "README.md",
        "patrol-agent/README.md",
        "tests/README.md",
    ] {
        let text = std::fs::read_to_string(root().join(doc)).unwrap_or_default();
        for (name, value) in quoted_defaults(&text) {
            if let Some(code) = defaults.get(name.as_str()) {
                checked += 1;
                if *code != value {
                    wrong.push(format!(
                        "{doc}: `{name}` = {value}, but the code says {code}"
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "docs disagree with the code:\n{}",
        wrong.join("\n")
    );
    assert!(
        checked >= 15,
        "only {checked} quoted defaults found: the docs should quote them as `name` = value"
    );
}

#[test]
fn a_stale_quoted_default_is_caught() {
    let found = quoted_defaults("uses `eager_push_rounds` = 3 and `tick` = 50ms.");
    assert_eq!(
        found,
        [
            ("eager_push_rounds".to_string(), "3".to_string()),
            ("tick".to_string(), "50ms".to_string())
        ]
    );
    assert_ne!(documented_defaults()["eager_push_rounds"], "3");
}

/// The files that define what travels between nodes and between the CLI
/// and an agent. A change to any of them is a wire change, and PROTOCOL.md
/// must say so: it keeps each file's SHA-256 in "Wire-format files".
const WIRE_FILES: [&str; 13] = [
    "checks/model/src/compact.rs",
    "patrol-agent/core/src/sweep/wire.rs",
    "patrol-agent/core/src/codec.rs",
    "patrol-agent/core/src/identity.rs",
    "patrol-agent/core/src/tags.rs",
    "patrol-agent/core/src/membership/wire.rs",
    "patrol-agent/core/src/trust/forget.rs",
    "patrol-agent/src/control/mod.rs",
    "patrol-agent/src/control/frame.rs",
    "patrol-agent/src/control/handshake.rs",
    "patrol-agent/src/envelope.rs",
    "patrol-agent/src/datagram.rs",
    "patrol-agent/src/enroll/wire.rs",
];

/// The part of a source file that can change the wire: everything before
/// its `#[cfg(test)]` module (a test-only change is no wire change).
fn wire_part(source: &str) -> &str {
    source
        .find("\n#[cfg(test)]")
        .map_or(source, |at| &source[..at])
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `| \`path\` | \`hash\` |` rows of PROTOCOL.md's "Wire-format files".
fn recorded_hashes(protocol: &str) -> BTreeMap<String, String> {
    let section = protocol
        .split("\n## Wire-format files")
        .nth(1)
        .expect("PROTOCOL.md has a section \"## Wire-format files\"");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            match cells.as_slice() {
                ["", path, hash, ""] if path.starts_with('`') && hash.starts_with('`') => Some((
                    path.trim_matches('`').to_string(),
                    hash.trim_matches('`').to_string(),
                )),
                _ => None,
            }
        })
        .collect()
}

/// Wire changes that PROTOCOL.md does not record.
fn stale_wire_hashes(protocol: &str) -> Vec<String> {
    let recorded = recorded_hashes(protocol);
    let mut problems = Vec::new();
    for file in WIRE_FILES {
        let source = std::fs::read_to_string(root().join(file)).expect(file);
        let now = sha256_hex(wire_part(&source).as_bytes());
        match recorded.get(file) {
            None => problems.push(format!("PROTOCOL.md records no hash for `{file}`")),
            Some(old) if *old != now => problems.push(format!(
                "`{file}` changed (sha256 {now}, PROTOCOL.md records {old}): update what PROTOCOL.md says of it (and the version, if the bytes on the wire change), then its row in \"Wire-format files\""
            )),
            Some(_) => {}
        }
    }
    for file in recorded.keys() {
        if !WIRE_FILES.contains(&file.as_str()) {
            problems.push(format!(
                "PROTOCOL.md records a hash for `{file}`, which is not a wire-format file"
            ));
        }
    }
    problems
}

#[test]
fn every_wire_format_file_is_as_protocol_md_last_described_it() {
    let protocol = std::fs::read_to_string(root().join("PROTOCOL.md")).unwrap();
    let problems = stale_wire_hashes(&protocol);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_wire_change_without_a_doc_change_is_caught() {
    let protocol = std::fs::read_to_string(root().join("PROTOCOL.md")).unwrap();
    let file = WIRE_FILES[0];
    let source = std::fs::read_to_string(root().join(file)).unwrap();
    let now = sha256_hex(wire_part(&source).as_bytes());
    let stale = protocol.replace(&now, &"0".repeat(64));
    let problems = stale_wire_hashes(&stale);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains(file), "{problems:?}");
}

/// Each protocol's one version constant: (file, constant, how PROTOCOL.md
/// names it).
const VERSIONS: [(&str, &str, &str); 4] = [
    (
        "patrol-agent/core/src/sweep/wire.rs",
        "PROTOCOL_VERSION",
        "sweep::wire::PROTOCOL_VERSION",
    ),
    (
        "patrol-agent/src/control/frame.rs",
        "CONTROL_VERSION",
        "control::frame::CONTROL_VERSION",
    ),
    (
        "patrol-agent/src/envelope.rs",
        "VERSION",
        "envelope::VERSION",
    ),
    (
        "checks/model/src/document.rs",
        "DOCUMENT_VERSION",
        "DOCUMENT_VERSION",
    ),
];

#[test]
fn every_protocol_version_is_named_once_in_code_and_quoted_by_protocol_md() {
    let protocol = std::fs::read_to_string(root().join("PROTOCOL.md")).unwrap();
    for (file, name, quoted) in VERSIONS {
        let source = std::fs::read_to_string(root().join(file)).unwrap();
        let decl = format!("pub const {name}: ");
        let values: Vec<&str> = source
            .lines()
            .filter_map(|l| l.trim().strip_prefix(&decl))
            .filter_map(|rest| rest.split_once(" = "))
            .map(|(_, v)| v.trim_end_matches(';'))
            .collect();
        assert_eq!(values.len(), 1, "`{name}` is declared once in {file}");
        let quote = format!("`{quoted} = {}`", values[0]);
        assert!(
            protocol.contains(&quote),
            "PROTOCOL.md does not quote {quote} (from {file})"
        );
    }
    // No second version constant for the control channel.
    for file in WIRE_FILES {
        let source = std::fs::read_to_string(root().join(file)).unwrap();
        let versions = source
            .lines()
            .filter(|l| l.trim_start().starts_with("pub const") && l.contains("VERSION"))
            .count();
        assert!(
            versions <= 1,
            "{file} declares {versions} version constants"
        );
    }
}

/// ARCHITECTURE.md's length limit: the codemap stays a map.
const ARCHITECTURE_MAX_LINES: usize = 550;

/// Top-level folders: a backticked token that starts with one of these is
/// a repository path.
const TOP_FOLDERS: [&str; 9] = [
    "patrol-agent/",
    "patrol-cli/",
    "checks/",
    "report/",
    "config/",
    "tests/",
    "dist/",
    "bench/",
    ".ci/",
];

/// `a/{b,c}.rs` as `a/b.rs` and `a/c.rs` (one brace group; none: itself).
fn expand_braces(token: &str) -> Vec<String> {
    let (Some(open), Some(close)) = (token.find('{'), token.find('}')) else {
        return vec![token.to_string()];
    };
    if close < open {
        return vec![token.to_string()];
    }
    let (head, tail) = (&token[..open], &token[close + 1..]);
    token[open + 1..close]
        .split(',')
        .map(|alt| format!("{head}{}{tail}", alt.trim()))
        .collect()
}

/// The repository paths `doc` names: backticked tokens that start with a
/// top-level folder or are a root file (`PROTOCOL.md`, `Cargo.toml`), and
/// relative link targets, outside fenced code blocks. `path::item` names
/// the file; a trailing `/` means a folder. (A path must not break across
/// lines: a token with whitespace in it is not a path.)
fn named_paths(doc: &str) -> Vec<String> {
    let mut fenced = false;
    let prose: String = doc
        .lines()
        .filter(|l| {
            if l.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let doc = prose.as_str();
    let mut tokens = Vec::new();
    for (i, part) in doc.split('`').enumerate() {
        if i % 2 == 1 {
            tokens.push(part.to_string());
        }
    }
    let mut rest = doc;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let Some(end) = after.find(')') else { break };
        let target = after[..end].split('#').next().unwrap_or("");
        if !target.is_empty() && !target.contains("://") {
            tokens.push(target.to_string());
        }
        rest = &after[end..];
    }
    let mut out = Vec::new();
    for token in tokens {
        let token = token.split("::").next().unwrap_or("").trim();
        if token.is_empty() || token.contains(char::is_whitespace) {
            continue;
        }
        let root_file = !token.contains('/')
            && (token.ends_with(".md") || token == "Cargo.toml" || token == "Cargo.lock");
        if root_file || TOP_FOLDERS.iter().any(|f| token.starts_with(f)) {
            out.extend(expand_braces(token));
        }
    }
    out
}

/// The paths `doc` names that do not exist under `root`.
fn missing_paths(root: &Path, doc: &str) -> Vec<String> {
    named_paths(doc)
        .into_iter()
        .filter(|p| {
            let full = root.join(p);
            if p.ends_with('/') {
                !full.is_dir()
            } else {
                !full.exists()
            }
        })
        .collect()
}

#[test]
fn architecture_md_is_short_and_names_only_paths_that_exist() {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let lines = text.lines().count();
    assert!(
        lines <= ARCHITECTURE_MAX_LINES,
        "ARCHITECTURE.md has {lines} lines (at most {ARCHITECTURE_MAX_LINES}): keep it a map, move detail to the module docs"
    );
    let named = named_paths(&text);
    assert!(
        named.len() >= 40,
        "ARCHITECTURE.md names only {} paths: is the codemap still there?",
        named.len()
    );
    let missing = missing_paths(root(), &text);
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names paths that do not exist: {missing:?}"
    );
    let defaults = documented_defaults();
    let quoted: Vec<String> = quoted_defaults(&text)
        .into_iter()
        .filter(|(name, _)| defaults.contains_key(name.as_str()))
        .map(|(name, value)| format!("`{name}` = {value}"))
        .collect();
    assert!(
        quoted.is_empty(),
        "ARCHITECTURE.md quotes defaults {quoted:?}: link to the settings struct instead"
    );
}

#[test]
fn a_made_up_path_in_architecture_md_is_caught() {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    assert!(missing_paths(root(), &text).is_empty());
    let edited = format!(
        "{text}\nSee `patrol-agent/core/src/sweep/made_up.rs::Thing`, `report/no_such_folder/`, \
         `patrol-agent/src/{{agent/mod,nowhere}}.rs`, [the plan](PLAN.md) and `NOTES.md`.\n"
    );
    assert_eq!(
        missing_paths(root(), &edited),
        [
            "patrol-agent/core/src/sweep/made_up.rs",
            "report/no_such_folder/",
            "patrol-agent/src/nowhere.rs",
            "NOTES.md",
            "PLAN.md",
        ]
    );
    // A file named as a folder is caught too.
    assert_eq!(
        missing_paths(root(), "`patrol-agent/src/daemon.rs/`"),
        ["patrol-agent/src/daemon.rs/"]
    );
}
