//! A running daemon's effective settings: find its process under `/proc`
//! (of the host the checks read, so under `host_root` too), read its
//! command line, load its configuration file (`--config`, else the
//! component's default path) and drop-in directory (`--config-dir`: every
//! `*.conf` file in name order, each merged over the one before, maps key
//! by key, lists whole), then lay the flags over the result.
//!
//! Files are YAML or JSON (JSON is YAML 1.2), read with `yaml-rust2`.

use serde_json::{Map, Value};

use super::flags::{self, Flag};
use crate::host::Host;

/// Largest configuration file read.
pub const MAX_CONFIG_BYTES: usize = 4 << 20;
/// Largest `/proc/PID/cmdline` read.
const MAX_CMDLINE_BYTES: usize = 256 << 10;

/// A daemon whose settings can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Component {
    /// The process name (`comm`, or the last part of `argv[0]`).
    pub process: &'static str,
    /// Read when the command line names no `--config`.
    pub default_config: Option<&'static str>,
    pub flags: &'static [Flag],
}

pub const KUBELET: Component = Component {
    process: "kubelet",
    default_config: Some("/var/lib/kubelet/config.yaml"),
    flags: flags::KUBELET_FLAGS,
};

pub const KUBE_PROXY: Component = Component {
    process: "kube-proxy",
    default_config: None,
    flags: flags::KUBE_PROXY_FLAGS,
};

/// What a daemon runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Effective {
    pub pid: u32,
    /// The configuration file read, if any.
    pub config_file: Option<String>,
    /// Drop-in files read, in order.
    pub drop_ins: Vec<String>,
    /// The command line's flags, in order.
    pub flags: Vec<(String, Option<String>)>,
    /// File, drop-ins and flags, merged.
    pub tree: Value,
}

impl Effective {
    /// The value of a dotted key path (`authentication.anonymous.enabled`),
    /// or of a raw flag (`--hostname-override`); None when unset (missing,
    /// null or empty text). `--config` is the configuration file read,
    /// named by the flag or the component's default.
    pub fn get(&self, key: &str) -> Option<Value> {
        if key == "--config" {
            return self.config_file.clone().map(Value::String);
        }
        if let Some(name) = key.strip_prefix("--") {
            return flags::last(&self.flags, name).map(|v| Value::String(v.to_string()));
        }
        let mut node = &self.tree;
        for part in key.split('.') {
            node = node.as_object()?.get(part)?;
        }
        match node {
            Value::Null => None,
            Value::String(s) if s.is_empty() => None,
            v => Some(v.clone()),
        }
    }
}

/// Read the settings of `component`'s process. `Err` says in words why
/// they could not be read (no such process, unreadable or malformed file).
pub fn read(h: &dyn Host, component: &Component) -> Result<Effective, String> {
    let (pid, args) = find_process(h, component.process)?
        .ok_or_else(|| format!("no {} process is running", component.process))?;
    let flags = flags::parse(&args, component.flags);
    let mut tree = Value::Object(Map::new());
    let named = flags::last(&flags, "config").map(str::to_string);
    let config_file = match (&named, component.default_config) {
        (Some(path), _) => Some(path.clone()),
        (None, Some(default)) if h.stat(default, true).is_ok() => Some(default.to_string()),
        (None, _) => None,
    };
    if let Some(path) = &config_file {
        tree = load(h, path)?;
    }
    let mut drop_ins = Vec::new();
    if let Some(dir) = flags::last(&flags, "config-dir") {
        let mut names = h
            .list_dir(dir)
            .map_err(|e| format!("cannot list --config-dir {dir}: {e}"))?;
        names.retain(|n| n.ends_with(".conf"));
        names.sort();
        for name in names {
            let path = format!("{}/{name}", dir.trim_end_matches('/'));
            merge(&mut tree, load(h, &path)?);
            drop_ins.push(path);
        }
    }
    flags::overlay(&mut tree, &flags, component.flags);
    Ok(Effective {
        pid,
        config_file,
        drop_ins,
        flags,
        tree,
    })
}

/// The first process (lowest PID) called `name`: its PID and `argv`.
pub fn find_process(h: &dyn Host, name: &str) -> Result<Option<(u32, Vec<String>)>, String> {
    let mut pids: Vec<u32> = h
        .list_dir("/proc")
        .map_err(|e| format!("cannot list /proc: {e}"))?
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        // A process may exit between the listing and the read.
        let Ok(raw) = h.read_file(&format!("/proc/{pid}/cmdline"), MAX_CMDLINE_BYTES) else {
            continue;
        };
        let args: Vec<String> = raw
            .split('\0')
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        let Some(argv0) = args.first() else {
            continue; // kernel threads have no command line
        };
        let by_argv0 = argv0.rsplit('/').next() == Some(name);
        let by_comm = || {
            h.read_file(&format!("/proc/{pid}/comm"), 64)
                .is_ok_and(|c| c.trim_end() == name)
        };
        if by_argv0 || by_comm() {
            return Ok(Some((pid, args)));
        }
    }
    Ok(None)
}

/// A configuration file as a JSON object.
fn load(h: &dyn Host, path: &str) -> Result<Value, String> {
    let text = h
        .read_file(path, MAX_CONFIG_BYTES)
        .map_err(|e| format!("cannot read {path}: {e}"))?;
    parse(&text).map_err(|e| format!("{path}: {e}"))
}

/// Parse YAML or JSON text into an object (an empty file is an empty one).
pub fn parse(text: &str) -> Result<Value, String> {
    let docs = yaml_rust2::YamlLoader::load_from_str(text)
        .map_err(|e| format!("not valid YAML or JSON: {e}"))?;
    match docs.into_iter().next().map(to_json) {
        None | Some(Value::Null) => Ok(Value::Object(Map::new())),
        Some(v @ Value::Object(_)) => Ok(v),
        Some(_) => Err("not a mapping of settings".into()),
    }
}

fn to_json(y: yaml_rust2::Yaml) -> Value {
    use yaml_rust2::Yaml;
    match y {
        Yaml::Integer(i) => Value::from(i),
        Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::String(r), Value::Number),
        Yaml::String(s) => Value::String(s),
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Array(a) => Value::Array(a.into_iter().map(to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s,
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        Yaml::Real(r) => r,
                        _ => String::new(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Yaml::Alias(_) | Yaml::Null | Yaml::BadValue => Value::Null,
    }
}

/// Merge a drop-in over the tree: maps key by key, anything else replaced.
fn merge(tree: &mut Value, over: Value) {
    match (tree, over) {
        (Value::Object(have), Value::Object(given)) => {
            for (k, v) in given {
                merge(have.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json_parse_to_the_same_tree() {
        let y = parse("authentication:\n  anonymous:\n    enabled: false\nreadOnlyPort: 0\ntlsCipherSuites: [A, B]\n").unwrap();
        let j = parse(r#"{"authentication":{"anonymous":{"enabled":false}},"readOnlyPort":0,"tlsCipherSuites":["A","B"]}"#).unwrap();
        assert_eq!(y, j);
        assert_eq!(parse("").unwrap(), Value::Object(Map::new()));
        assert!(parse("- a\n- b\n").unwrap_err().contains("mapping"));
        assert!(parse("a: [b\n").unwrap_err().contains("not valid YAML"));
    }

    #[test]
    fn drop_ins_merge_maps_and_replace_lists() {
        let mut t = parse("a: {b: 1, c: 2}\nl: [x, y]\n").unwrap();
        merge(&mut t, parse("a: {c: 3}\nl: [z]\n").unwrap());
        assert_eq!(t, serde_json::json!({"a": {"b": 1, "c": 3}, "l": ["z"]}));
    }
}
