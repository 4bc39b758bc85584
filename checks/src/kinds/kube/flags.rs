//! The command lines of the kubelet and kube-proxy: which flags each
//! daemon has in its configuration file (flag name -> key path, and the
//! flag's type), and parsing `argv` the way pflag reads it.
//!
//! A flag given on the command line wins over the configuration file, as
//! in the daemons themselves; flags with no configuration key
//! (`--hostname-override`, `--kubeconfig`) are read as `--NAME` keys.

use serde_json::{Map, Value};

/// How a flag's text becomes a typed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagType {
    /// `--flag` alone means true; the next word is never its value.
    Bool,
    /// An integer (`--read-only-port=0`).
    Int,
    /// Text (paths, durations, modes).
    Text,
    /// Comma-separated list (`--tls-cipher-suites=A,B`).
    List,
    /// `NAME=VALUE` pairs, comma-separated (`--feature-gates=A=true,B=false`).
    Map,
}

/// One flag that has a configuration key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag {
    pub name: &'static str,
    pub key: &'static str,
    pub ty: FlagType,
}

const fn flag(name: &'static str, key: &'static str, ty: FlagType) -> Flag {
    Flag { name, key, ty }
}

/// The kubelet's flags that its KubeletConfiguration also holds (the
/// ones the CIS benchmark reads, and a few more worth comparing).
pub const KUBELET_FLAGS: &[Flag] = &[
    flag(
        "anonymous-auth",
        "authentication.anonymous.enabled",
        FlagType::Bool,
    ),
    flag(
        "authentication-token-webhook",
        "authentication.webhook.enabled",
        FlagType::Bool,
    ),
    flag(
        "client-ca-file",
        "authentication.x509.clientCAFile",
        FlagType::Text,
    ),
    flag("authorization-mode", "authorization.mode", FlagType::Text),
    flag("read-only-port", "readOnlyPort", FlagType::Int),
    flag("port", "port", FlagType::Int),
    flag("address", "address", FlagType::Text),
    flag(
        "streaming-connection-idle-timeout",
        "streamingConnectionIdleTimeout",
        FlagType::Text,
    ),
    flag(
        "protect-kernel-defaults",
        "protectKernelDefaults",
        FlagType::Bool,
    ),
    flag(
        "make-iptables-util-chains",
        "makeIPTablesUtilChains",
        FlagType::Bool,
    ),
    flag("event-qps", "eventRecordQPS", FlagType::Int),
    flag("event-burst", "eventBurst", FlagType::Int),
    flag("rotate-certificates", "rotateCertificates", FlagType::Bool),
    flag(
        "rotate-server-certificates",
        "serverTLSBootstrap",
        FlagType::Bool,
    ),
    flag("tls-cipher-suites", "tlsCipherSuites", FlagType::List),
    flag("tls-min-version", "tlsMinVersion", FlagType::Text),
    flag("tls-cert-file", "tlsCertFile", FlagType::Text),
    flag("tls-private-key-file", "tlsPrivateKeyFile", FlagType::Text),
    flag("feature-gates", "featureGates", FlagType::Map),
    flag("pod-max-pids", "podPidsLimit", FlagType::Int),
    flag("seccomp-default", "seccompDefault", FlagType::Bool),
    flag("max-pods", "maxPods", FlagType::Int),
    flag("cgroup-driver", "cgroupDriver", FlagType::Text),
    flag("cluster-dns", "clusterDNS", FlagType::List),
    flag("cluster-domain", "clusterDomain", FlagType::Text),
    flag("fail-swap-on", "failSwapOn", FlagType::Bool),
    flag("healthz-port", "healthzPort", FlagType::Int),
    flag("healthz-bind-address", "healthzBindAddress", FlagType::Text),
];

/// kube-proxy's flags that its KubeProxyConfiguration also holds.
pub const KUBE_PROXY_FLAGS: &[Flag] = &[
    flag("metrics-bind-address", "metricsBindAddress", FlagType::Text),
    flag("healthz-bind-address", "healthzBindAddress", FlagType::Text),
    flag("bind-address", "bindAddress", FlagType::Text),
    flag("proxy-mode", "mode", FlagType::Text),
    flag("cluster-cidr", "clusterCIDR", FlagType::Text),
    flag("kubeconfig", "clientConnection.kubeconfig", FlagType::Text),
    flag("feature-gates", "featureGates", FlagType::Map),
];

/// Flags read as booleans besides those in a table (they never take the
/// next word as their value).
const OTHER_BOOLS: &[&str] = &["v", "logtostderr", "alsologtostderr", "version"];

/// A command line's flags in order: (name without dashes, value; None
/// for a bare flag). Underscores read as dashes, as the daemons accept.
pub fn parse(args: &[String], table: &[Flag]) -> Vec<(String, Option<String>)> {
    let is_bool = |name: &str| {
        OTHER_BOOLS.contains(&name)
            || table
                .iter()
                .any(|f| f.name == name && f.ty == FlagType::Bool)
    };
    let mut out = Vec::new();
    let mut i = 1; // argv[0] is the program
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            continue; // a positional word
        };
        if body.is_empty() {
            break; // `--` ends the flags
        }
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n.replace('_', "-"), Some(v.to_string())),
            None => {
                let name = body.replace('_', "-");
                let next = args.get(i).filter(|n| !n.starts_with('-'));
                match next {
                    Some(v) if !is_bool(&name) => {
                        i += 1;
                        (name, Some(v.clone()))
                    }
                    _ => (name, None),
                }
            }
        };
        out.push((name, value));
    }
    out
}

/// The last value given for flag `name` (a bare flag reads `true`).
pub fn last<'a>(flags: &'a [(String, Option<String>)], name: &str) -> Option<&'a str> {
    flags
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_deref().unwrap_or("true"))
}

/// A flag's text as the value its configuration key holds.
pub fn typed(text: &str, ty: FlagType) -> Value {
    match ty {
        FlagType::Bool => Value::Bool(!text.trim().eq_ignore_ascii_case("false")),
        FlagType::Int => text
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(text.to_string())),
        FlagType::Text => Value::String(text.to_string()),
        FlagType::List => Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        ),
        FlagType::Map => {
            let mut map = Map::new();
            for pair in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
                let v = match v.trim().to_ascii_lowercase().as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => Value::String(v.trim().to_string()),
                };
                map.insert(k.trim().to_string(), v);
            }
            Value::Object(map)
        }
    }
}

/// Lay the command line's flags over the configuration `tree`, each at
/// its key; a map flag (`--feature-gates`) replaces only the entries it
/// names.
pub fn overlay(tree: &mut Value, flags: &[(String, Option<String>)], table: &[Flag]) {
    for f in table {
        let Some(text) = last(flags, f.name) else {
            continue;
        };
        let value = typed(text, f.ty);
        let slot = slot(tree, f.key);
        match (slot, value) {
            (Value::Object(have), Value::Object(given)) => have.extend(given),
            (slot, value) => *slot = value,
        }
    }
}

/// The value at a dotted key path, made (as an object) when missing.
fn slot<'a>(tree: &'a mut Value, key: &str) -> &'a mut Value {
    let mut node = tree;
    for part in key.split('.') {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let Value::Object(map) = node else {
            unreachable!("made an object above")
        };
        node = map.entry(part.to_string()).or_insert(Value::Null);
    }
    node
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn flags_with_equals_spaces_and_bare_booleans() {
        let a = argv("/usr/bin/kubelet --config /etc/k/c.yaml --anonymous-auth --read-only-port=0 --anonymous_auth=False -v 2 --rotate-certificates next");
        let f = parse(&a, KUBELET_FLAGS);
        assert_eq!(last(&f, "config"), Some("/etc/k/c.yaml"));
        assert_eq!(last(&f, "anonymous-auth"), Some("False"));
        assert_eq!(last(&f, "read-only-port"), Some("0"));
        // A boolean never takes the next word.
        assert_eq!(last(&f, "rotate-certificates"), Some("true"));
        assert_eq!(last(&f, "v"), Some("true"));
        assert_eq!(last(&f, "hostname-override"), None);
    }

    #[test]
    fn overlay_types_values_and_merges_feature_gates() {
        let mut tree: Value = serde_json::json!({
            "featureGates": {"A": true, "B": true},
            "authentication": {"anonymous": {"enabled": true}}
        });
        let a = argv("kubelet --feature-gates=B=false,C=true --anonymous-auth=false --tls-cipher-suites=X,Y --event-qps=5");
        overlay(&mut tree, &parse(&a, KUBELET_FLAGS), KUBELET_FLAGS);
        assert_eq!(
            tree,
            serde_json::json!({
                "featureGates": {"A": true, "B": false, "C": true},
                "authentication": {"anonymous": {"enabled": false}},
                "tlsCipherSuites": ["X", "Y"],
                "eventRecordQPS": 5
            })
        );
    }
}
