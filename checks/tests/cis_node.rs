//! The built-in `cis-node` profile on fixture host trees (there is no
//! kubelet package to install): a stock kubeadm node, a node whose flags
//! override its hardened configuration file, an RKE2-style node whose
//! kubelet reads drop-ins only, and a node with no kubelet. Each of the 25
//! checks is compared with kube-bench's rule for its CIS id, written out
//! here in our own words (`RULES`: where the value comes from, the test
//! items, their operator and value) and evaluated the way kube-bench
//! evaluates rules (flag on the command line first, else the config
//! file's key; `set` items; `and` / `or`). A real process started under
//! the name `kubelet` exercises `/proc` discovery on the live machine.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use patrol_checks::kinds::kube::settings;
use patrol_checks::{Catalog, CheckOutcome, Observed, RealHost, Runner, Status};
use serde_json::Value;
use support::Fixture;

// --- fixtures --------------------------------------------------------------

const STRONG: &str = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384";

const HARDENED: &str = "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: /etc/kubernetes/pki/ca.crt
authorization:
  mode: Webhook
readOnlyPort: 0
streamingConnectionIdleTimeout: 5m
makeIPTablesUtilChains: true
eventRecordQPS: 50
rotateCertificates: true
tlsCertFile: /var/lib/kubelet/pki/kubelet.crt
tlsPrivateKeyFile: /var/lib/kubelet/pki/kubelet.key
tlsCipherSuites:
  - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
  - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
featureGates:
  RotateKubeletServerCertificate: true
podPidsLimit: 4096
seccompDefault: true
";

/// A fixture host: `/etc/passwd` names the test's own user root (the
/// fixture's files belong to it), PID 1 is init.
fn base() -> Fixture {
    let f = Fixture::new();
    let (uid, gid) = (rustix::process::getuid(), rustix::process::getgid());
    f.file(
        "/etc/passwd",
        &format!(
            "root:x:{}:{}::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
            uid.as_raw(),
            gid.as_raw()
        ),
    )
    .file("/etc/group", &format!("root:x:{}:\n", gid.as_raw()));
    process(&f, 1, "systemd", &["/sbin/init", "splash"]);
    f
}

fn process(f: &Fixture, pid: u32, comm: &str, argv: &[&str]) {
    let mut cmdline = argv.join("\0");
    cmdline.push('\0');
    f.file(&format!("/proc/{pid}/cmdline"), &cmdline)
        .file(&format!("/proc/{pid}/comm"), &format!("{comm}\n"));
}

fn file(f: &Fixture, path: &str, text: &str, mode: u32) {
    f.file(path, text);
    let p = f.root().join(path.trim_start_matches('/'));
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// kubeadm as it installs a node: unit drop-in and config file 0644, the
/// generated KubeletConfiguration (no cipher list, no PID limit, no
/// seccompDefault, no serving certificate), kube-proxy in its pod with
/// metrics on all addresses.
fn kubeadm() -> Fixture {
    let f = base();
    process(
        &f,
        812,
        "kubelet",
        &[
            "/usr/bin/kubelet",
            "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf",
            "--kubeconfig=/etc/kubernetes/kubelet.conf",
            "--config=/var/lib/kubelet/config.yaml",
            "--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock",
            "--pod-infra-container-image=registry.k8s.io/pause:3.10",
        ],
    );
    process(
        &f,
        1400,
        "kube-proxy",
        &[
            "/usr/local/bin/kube-proxy",
            "--config=/var/lib/kube-proxy/config.conf",
            "--hostname-override=node-1",
        ],
    );
    file(
        &f,
        "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
        "[Service]\n",
        0o644,
    );
    file(&f, "/etc/kubernetes/kubelet.conf", "kind: Config\n", 0o600);
    file(&f, "/etc/kubernetes/pki/ca.crt", "CA\n", 0o644);
    file(
        &f,
        "/var/lib/kubelet/config.yaml",
        "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous:
    enabled: false
  webhook:
    cacheTTL: 0s
    enabled: true
  x509:
    clientCAFile: /etc/kubernetes/pki/ca.crt
authorization:
  mode: Webhook
cgroupDriver: systemd
rotateCertificates: true
streamingConnectionIdleTimeout: 0s
",
        0o644,
    );
    file(
        &f,
        "/var/lib/kube-proxy/config.conf",
        "{\"kind\": \"KubeProxyConfiguration\", \"metricsBindAddress\": \"0.0.0.0:10249\", \"clientConnection\": {\"kubeconfig\": \"/var/lib/kube-proxy/kubeconfig.conf\"}}\n",
        0o644,
    );
    file(
        &f,
        "/var/lib/kube-proxy/kubeconfig.conf",
        "kind: Config\n",
        0o644,
    );
    f
}

/// A hardened configuration file that the command line undoes.
fn flags_override() -> Fixture {
    let f = base();
    process(
        &f,
        950,
        "kubelet",
        &[
            "/usr/local/bin/kubelet",
            "--config",
            "/etc/kubernetes/kubelet/kubelet-config.yaml",
            "--kubeconfig=/etc/kubernetes/kubelet/kubeconfig",
            "--anonymous-auth=true",
            "--authorization-mode=AlwaysAllow",
            "--client-ca-file=/etc/kubernetes/pki/other-ca.crt",
            "--read-only-port=10255",
            "--make-iptables-util-chains=false",
            "--hostname-override=worker-7",
            "--event-qps=-1",
            "--rotate-certificates=false",
            "--feature-gates=RotateKubeletServerCertificate=false,NodeSwap=true",
            "--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_RSA_WITH_RC4_128_SHA",
        ],
    );
    process(
        &f,
        1500,
        "kube-proxy",
        &[
            "/usr/local/bin/kube-proxy",
            "--metrics-bind-address=127.0.0.1:10249",
            "--kubeconfig=/etc/kubernetes/proxy.conf",
        ],
    );
    file(
        &f,
        "/etc/systemd/system/kubelet.service",
        "[Service]\n",
        0o600,
    );
    file(
        &f,
        "/etc/kubernetes/kubelet/kubeconfig",
        "kind: Config\n",
        0o640,
    );
    file(&f, "/etc/kubernetes/pki/ca.crt", "CA\n", 0o644);
    file(&f, "/etc/kubernetes/pki/other-ca.crt", "CA\n", 0o666);
    file(
        &f,
        "/etc/kubernetes/kubelet/kubelet-config.yaml",
        HARDENED,
        0o600,
    );
    file(&f, "/etc/kubernetes/proxy.conf", "kind: Config\n", 0o600);
    f
}

/// RKE2's layout: no config file, settings in `--config-dir` drop-ins
/// (merged in name order), the kubelet under rancher's data directory.
fn rke2() -> Fixture {
    let f = base();
    let dir = "/var/lib/rancher/rke2/agent/etc/kubelet.conf.d";
    process(
        &f,
        2210,
        "kubelet",
        &[
            "/var/lib/rancher/rke2/data/v1.31.4-rke2r1/bin/kubelet",
            "--volume-plugin-dir=/var/lib/kubelet/volumeplugins",
            "--config-dir",
            dir,
            "--kubeconfig=/var/lib/rancher/rke2/agent/kubelet.kubeconfig",
            "--hostname-override=rke2-node-3",
            "--node-labels=",
        ],
    );
    file(
        &f,
        "/usr/local/lib/systemd/system/rke2-agent.service",
        "[Service]\n",
        0o644,
    );
    file(
        &f,
        "/var/lib/rancher/rke2/agent/kubelet.kubeconfig",
        "kind: Config\n",
        0o600,
    );
    file(
        &f,
        "/var/lib/rancher/rke2/agent/client-ca.crt",
        "CA\n",
        0o600,
    );
    file(
        &f,
        &format!("{dir}/00-rke2-defaults.conf"),
        "{\"apiVersion\":\"kubelet.config.k8s.io/v1beta1\",\"kind\":\"KubeletConfiguration\",\"authentication\":{\"anonymous\":{\"enabled\":true},\"x509\":{\"clientCAFile\":\"/var/lib/rancher/rke2/agent/client-ca.crt\"}},\"authorization\":{\"mode\":\"Webhook\"},\"readOnlyPort\":10255,\"tlsCipherSuites\":[\"TLS_RSA_WITH_AES_128_CBC_SHA\"]}\n",
        0o600,
    );
    file(
        &f,
        &format!("{dir}/10-hardening.conf"),
        &format!("authentication:\n  anonymous:\n    enabled: false\nreadOnlyPort: 0\ntlsCipherSuites: [{STRONG}]\nprotectKernelDefaults: true\n"),
        0o600,
    );
    f.file(&format!("{dir}/README"), "not a drop-in: ignored\n");
    f
}

/// A node with no kubelet running and none of its files.
fn no_kubelet() -> Fixture {
    let f = base();
    process(&f, 300, "sshd", &["sshd: /usr/sbin/sshd -D"]);
    f
}

// --- kube-bench's rules, in our words --------------------------------------

/// Where a rule's audit reads its value.
#[derive(Clone, Copy)]
enum Source {
    /// `stat` of a file: its mode (`permissions=NNN`) or `user:group`.
    FileMode(Place),
    FileOwner(Place),
    /// The kubelet's command line, else its configuration file.
    Kubelet,
    /// kube-proxy's command line only (the config audit cats a kubeconfig,
    /// which has no such key).
    KubeProxy,
}

/// How kube-bench finds a file: the first existing of its known paths, or
/// for the client CA the `--client-ca-file` flag, else its default.
#[derive(Clone, Copy)]
enum Place {
    Known(&'static [&'static str]),
    ClientCa,
}

/// One test item: the flag (or `--flag` / config path pair), whether it
/// must be set, and the comparison.
struct Item {
    flag: &'static str,
    path: &'static str,
    set: bool,
    op: &'static str,
    value: &'static str,
}

struct Rule {
    id: &'static str,
    scored: bool,
    source: Source,
    or: bool,
    items: Vec<Item>,
}

const SVC: &[&str] = &[
    "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
    "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf",
    "/lib/systemd/system/kubelet.service",
    "/etc/systemd/system/kubelet.service",
    "/usr/lib/systemd/system/kubelet.service",
    "/usr/local/lib/systemd/system/rke2-agent.service",
];
const PROXY_KUBECONFIG: &[&str] = &[
    "/var/lib/kube-proxy/kubeconfig.conf",
    "/etc/kubernetes/proxy.conf",
    "/var/lib/kube-proxy/kubeconfig",
    "/var/lib/rancher/rke2/agent/kubeproxy.kubeconfig",
];
const KUBECONFIG: &[&str] = &[
    "/etc/kubernetes/kubelet.conf",
    "/var/lib/kubelet/kubeconfig",
    "/etc/kubernetes/kubelet/kubeconfig",
    "/var/lib/rancher/rke2/agent/kubelet.kubeconfig",
];
const CONF: &[&str] = &[
    "/var/lib/kubelet/config.yaml",
    "/etc/kubernetes/kubelet/kubelet-config.yaml",
];

fn item(flag: &'static str, path: &'static str, op: &'static str, value: &'static str) -> Item {
    Item {
        flag,
        path,
        set: true,
        op,
        value,
    }
}

fn unset(flag: &'static str, path: &'static str) -> Item {
    Item {
        flag,
        path,
        set: false,
        op: "",
        value: "",
    }
}

fn rules() -> Vec<Rule> {
    use Place::*;
    use Source::*;
    let r = |id, scored, source, or, items| Rule {
        id,
        scored,
        source,
        or,
        items,
    };
    let perm = |v| vec![item("permissions", "", "bitmask", v)];
    let owner = || vec![item("root:root", "", "", "")];
    vec![
        r("4.1.1", true, FileMode(Known(SVC)), false, perm("600")),
        r("4.1.2", true, FileOwner(Known(SVC)), true, owner()),
        r(
            "4.1.3",
            false,
            FileMode(Known(PROXY_KUBECONFIG)),
            true,
            perm("600"),
        ),
        r(
            "4.1.4",
            false,
            FileOwner(Known(PROXY_KUBECONFIG)),
            true,
            owner(),
        ),
        r(
            "4.1.5",
            true,
            FileMode(Known(KUBECONFIG)),
            false,
            perm("600"),
        ),
        r("4.1.6", true, FileOwner(Known(KUBECONFIG)), false, owner()),
        r("4.1.7", false, FileMode(ClientCa), false, perm("644")),
        r(
            "4.1.8",
            false,
            FileOwner(ClientCa),
            false,
            vec![item("root:root", "", "eq", "root:root")],
        ),
        r("4.1.9", true, FileMode(Known(CONF)), false, perm("600")),
        r("4.1.10", true, FileOwner(Known(CONF)), false, owner()),
        r(
            "4.2.1",
            true,
            Kubelet,
            false,
            vec![item(
                "--anonymous-auth",
                "authentication.anonymous.enabled",
                "eq",
                "false",
            )],
        ),
        r(
            "4.2.2",
            true,
            Kubelet,
            false,
            vec![item(
                "--authorization-mode",
                "authorization.mode",
                "nothave",
                "AlwaysAllow",
            )],
        ),
        r(
            "4.2.3",
            true,
            Kubelet,
            false,
            vec![item(
                "--client-ca-file",
                "authentication.x509.clientCAFile",
                "",
                "",
            )],
        ),
        r(
            "4.2.4",
            false,
            Kubelet,
            true,
            vec![
                item("--read-only-port", "readOnlyPort", "eq", "0"),
                unset("--read-only-port", "readOnlyPort"),
            ],
        ),
        r(
            "4.2.5",
            false,
            Kubelet,
            true,
            vec![
                item(
                    "--streaming-connection-idle-timeout",
                    "streamingConnectionIdleTimeout",
                    "noteq",
                    "0",
                ),
                unset(
                    "--streaming-connection-idle-timeout",
                    "streamingConnectionIdleTimeout",
                ),
            ],
        ),
        r(
            "4.2.6",
            true,
            Kubelet,
            true,
            vec![
                item(
                    "--make-iptables-util-chains",
                    "makeIPTablesUtilChains",
                    "eq",
                    "true",
                ),
                unset("--make-iptables-util-chains", "makeIPTablesUtilChains"),
            ],
        ),
        r(
            "4.2.7",
            false,
            Kubelet,
            false,
            vec![unset("--hostname-override", "")],
        ),
        r(
            "4.2.8",
            false,
            Kubelet,
            true,
            vec![
                item("--event-qps", "eventRecordQPS", "gte", "0"),
                unset("--event-qps", "eventRecordQPS"),
            ],
        ),
        r(
            "4.2.9",
            false,
            Kubelet,
            false,
            vec![
                item("--tls-cert-file", "tlsCertFile", "", ""),
                item("--tls-private-key-file", "tlsPrivateKeyFile", "", ""),
            ],
        ),
        r(
            "4.2.10",
            true,
            Kubelet,
            true,
            vec![
                item("--rotate-certificates", "rotateCertificates", "eq", "true"),
                unset("--rotate-certificates", "rotateCertificates"),
            ],
        ),
        r(
            "4.2.11",
            false,
            Kubelet,
            true,
            vec![
                item(
                    "RotateKubeletServerCertificate",
                    "featureGates.RotateKubeletServerCertificate",
                    "nothave",
                    "false",
                ),
                unset(
                    "RotateKubeletServerCertificate",
                    "featureGates.RotateKubeletServerCertificate",
                ),
            ],
        ),
        r(
            "4.2.12",
            false,
            Kubelet,
            false,
            vec![item(
                "--tls-cipher-suites",
                "tlsCipherSuites",
                "valid_elements",
                STRONG,
            )],
        ),
        r(
            "4.2.13",
            false,
            Kubelet,
            false,
            vec![item("--pod-max-pids", "podPidsLimit", "", "")],
        ),
        r(
            "4.2.14",
            false,
            Kubelet,
            false,
            vec![item("--seccomp-default", "seccompDefault", "", "")],
        ),
        r(
            "4.3.1",
            true,
            KubeProxy,
            true,
            vec![
                item("--metrics-bind-address", "", "has", "127.0.0.1"),
                unset("--metrics-bind-address", ""),
            ],
        ),
    ]
}

/// kube-bench's comparison of a found value.
fn compare(op: &str, got: &str, want: &str) -> bool {
    match op {
        "eq" => got.to_ascii_lowercase() == want || got == want,
        "noteq" => !(got.to_ascii_lowercase() == want || got == want),
        "gte" => {
            matches!((got.trim().parse::<i64>(), want.parse::<i64>()), (Ok(a), Ok(b)) if a >= b)
        }
        "has" => got.contains(want),
        "nothave" => !got.contains(want),
        "valid_elements" => {
            let got: Vec<&str> = got
                .trim_end_matches(',')
                .split(',')
                .filter(|s| !s.is_empty())
                .collect();
            !got.is_empty() && got.iter().all(|g| want.split(',').any(|w| w == *g))
        }
        "bitmask" => matches!(
            (u32::from_str_radix(got, 8), u32::from_str_radix(want, 8)),
            (Ok(g), Ok(w)) if g & w == g
        ),
        _ => unreachable!("{op}"),
    }
}

/// What kube-bench's audit would see on the fixture.
struct Audit {
    /// The daemon's command line as `ps` prints it ("" when not running).
    kubelet_ps: String,
    proxy_ps: String,
    /// The kubelet's configuration (its file, with any drop-ins laid over
    /// it), as kube-bench's config audit would read it.
    kubelet_config: Value,
}

fn audit(f: &Fixture) -> Audit {
    let host = f.host();
    let ps = |name: &str| {
        settings::find_process(&host, name)
            .unwrap()
            .map(|(_, args)| args.join(" "))
            .unwrap_or_default()
    };
    let kubelet_ps = ps("kubelet");
    let root = f.root();
    let read = |p: &str| std::fs::read_to_string(root.join(p.trim_start_matches('/'))).ok();
    let flag_value = |line: &str, flag: &str| {
        let at = line.find(flag)? + flag.len();
        let rest = line[at..].trim_start_matches(['=', ' ']);
        Some(rest.split(' ').next().unwrap_or("").to_string())
    };
    let mut config = Value::Object(Default::default());
    let file = flag_value(&kubelet_ps, "--config ")
        .or_else(|| flag_value(&kubelet_ps, "--config="))
        .or_else(|| {
            CONF.iter()
                .find(|p| read(p).is_some())
                .map(|p| p.to_string())
        });
    if let Some(text) = file.and_then(|p| read(&p)) {
        config = settings::parse(&text).unwrap();
    }
    if let Some(dir) = flag_value(&kubelet_ps, "--config-dir") {
        let mut names: Vec<String> = std::fs::read_dir(root.join(dir.trim_start_matches('/')))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".conf"))
            .collect();
        names.sort();
        for n in names {
            let over = settings::parse(&read(&format!("{dir}/{n}")).unwrap()).unwrap();
            for (k, v) in over.as_object().unwrap() {
                match (config.get_mut(k), v) {
                    (Some(Value::Object(have)), Value::Object(given)) => {
                        for (k2, v2) in given {
                            have.insert(k2.clone(), v2.clone());
                        }
                    }
                    _ => {
                        config[k] = v.clone();
                    }
                }
            }
        }
    }
    Audit {
        kubelet_ps,
        proxy_ps: ps("kube-proxy"),
        kubelet_config: config,
    }
}

/// The value at a JSON path, printed as kube-bench's jsonpath prints it.
fn json_path(tree: &Value, path: &str) -> String {
    let mut node = tree;
    for part in path.split('.') {
        match node.get(part) {
            Some(n) => node = n,
            None => return String::new(),
        }
    }
    match node {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| format!("{},", i.as_str().map_or(i.to_string(), str::to_string)))
            .collect(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// kube-bench's verdict: PASS, FAIL (scored) or WARN (manual).
fn kube_bench(rule: &Rule, f: &Fixture, a: &Audit) -> Status {
    let host_file = |p: &str| {
        let path = f.root().join(p.trim_start_matches('/'));
        std::fs::metadata(path).ok()
    };
    let place = |p: Place| -> Option<String> {
        match p {
            Place::Known(list) => list
                .iter()
                .find(|p| host_file(p).is_some())
                .map(|p| p.to_string()),
            Place::ClientCa => {
                let flag = a
                    .kubelet_ps
                    .split(' ')
                    .find_map(|w| w.strip_prefix("--client-ca-file="))
                    .map(str::to_string);
                flag.or(Some("/etc/kubernetes/pki/ca.crt".into()))
                    .filter(|p| host_file(p).is_some())
            }
        }
    };
    let names = |id: u32, file: &str| {
        std::fs::read_to_string(f.root().join(file))
            .unwrap()
            .lines()
            .find_map(|l| {
                let v: Vec<&str> = l.split(':').collect();
                (v[2].parse() == Ok(id)).then(|| v[0].to_string())
            })
            .unwrap_or_else(|| id.to_string())
    };
    use std::os::unix::fs::MetadataExt;
    let output = match rule.source {
        Source::FileMode(p) => place(p)
            .and_then(|p| host_file(&p))
            .map(|m| format!("permissions={:o}", m.mode() & 0o7777))
            .unwrap_or_default(),
        Source::FileOwner(p) => place(p)
            .and_then(|p| host_file(&p))
            .map(|m| {
                format!(
                    "{}:{}",
                    names(m.uid(), "etc/passwd"),
                    names(m.gid(), "etc/group")
                )
            })
            .unwrap_or_default(),
        Source::Kubelet => a.kubelet_ps.clone(),
        Source::KubeProxy => a.proxy_ps.clone(),
    };
    let results = rule.items.iter().map(|it| {
        // The flag on the command line (or in the stat output) first.
        let (found, value) = if output.contains(it.flag) {
            let at = output.find(it.flag).unwrap() + it.flag.len();
            let rest = &output[at..];
            let v = rest
                .trim_start_matches(['=', ':', ' '])
                .split(' ')
                .next()
                .unwrap_or("");
            let v = if rest.starts_with(['=', ':']) {
                v.to_string()
            } else if it.flag.starts_with("--") {
                "true".into()
            } else {
                it.flag.into()
            };
            (true, v)
        } else if matches!(rule.source, Source::Kubelet)
            && !it.path.is_empty()
            && !a.kubelet_ps.is_empty()
        {
            let v = json_path(&a.kubelet_config, it.path);
            (!v.is_empty(), v)
        } else {
            (false, String::new())
        };
        if !it.set {
            !found
        } else if found && !it.op.is_empty() {
            compare(it.op, &value, it.value)
        } else {
            found
        }
    });
    let results: Vec<bool> = results.collect();
    let pass = if rule.or {
        results.iter().any(|r| *r)
    } else {
        results.iter().all(|r| *r)
    };
    match (pass, rule.scored) {
        (true, _) => Status::Pass,
        (false, true) => Status::Fail,
        (false, false) => Status::Warn,
    }
}

// --- the tests -------------------------------------------------------------

async fn run_cis(f: &Fixture) -> BTreeMap<String, CheckOutcome> {
    let catalog = Catalog::builtin_profile("cis-node").expect("cis-node parses");
    Runner::new(std::sync::Arc::new(f.host()), 8)
        .run(catalog.checks())
        .await
        .into_iter()
        .map(|o| (o.id.trim_start_matches("cis-").to_string(), o))
        .collect()
}

fn letter(s: Status) -> &'static str {
    match s {
        Status::Pass => "pass",
        Status::Warn => "warn",
        Status::Fail => "fail",
        Status::Error => "error",
    }
}

/// Where Patrol deliberately differs from kube-bench's rule: (fixture,
/// id, kube-bench's verdict, Patrol's).
/// - kubeadm 4.3.1: kube-bench's config audit reads kube-proxy's
///   kubeconfig, which has no `metricsBindAddress`, so the `0.0.0.0` in
///   the KubeProxyConfiguration kube-proxy runs with is invisible to it;
///   Patrol reads that configuration.
/// - rke2 4.1.7 and 4.1.8: kube-bench takes the client CA from the
///   `--client-ca-file` flag only, else `/etc/kubernetes/pki/ca.crt`
///   (absent there); Patrol follows `clientCAFile` of the configuration.
const DIVERGES: &[(&str, &str, Status, Status)] = &[
    ("kubeadm", "4.3.1", Status::Pass, Status::Fail),
    ("rke2", "4.1.7", Status::Warn, Status::Pass),
    ("rke2", "4.1.8", Status::Warn, Status::Pass),
];

/// Patrol's verdict against kube-bench's rule for every id, on every
/// fixture; the table is printed for the record (`--nocapture`).
#[tokio::test]
async fn every_check_gives_kube_benchs_verdict_on_every_fixture() {
    let fixtures = [
        ("kubeadm", kubeadm()),
        ("flags", flags_override()),
        ("rke2", rke2()),
        ("none", no_kubelet()),
    ];
    let mut table =
        String::from("| CIS | kubeadm | flags | rke2 | no kubelet |\n|---|---|---|---|---|\n");
    let mut rows: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let rules = rules();
    assert_eq!(rules.len(), 25);
    for (name, f) in &fixtures {
        let ours = run_cis(f).await;
        assert_eq!(ours.len(), 25, "{name}");
        let a = audit(f);
        for rule in &rules {
            let o = &ours[rule.id];
            let theirs = kube_bench(rule, f, &a);
            let daemon_check = matches!(rule.source, Source::Kubelet | Source::KubeProxy);
            let running = |s: Source, a: &Audit| match s {
                Source::KubeProxy => !a.proxy_ps.is_empty(),
                _ => !a.kubelet_ps.is_empty(),
            };
            if let Some((_, _, want_theirs, want_ours)) = DIVERGES
                .iter()
                .find(|(n, id, _, _)| n == name && *id == rule.id)
            {
                assert_eq!(
                    (theirs, o.status),
                    (*want_theirs, *want_ours),
                    "{name} {}",
                    rule.id
                );
            } else if daemon_check && !running(rule.source, &a) {
                // Deliberately not kube-bench: with no daemon to read, a
                // rule that accepts "not set" passes there; here it is an
                // error, never a pass.
                assert_eq!(o.status, Status::Error, "{name} {}: {}", rule.id, o.message);
                assert!(o.message.contains("is running"), "{}", o.message);
            } else {
                assert_eq!(
                    o.status, theirs,
                    "{name} {}: ours {:?} ({}), kube-bench's rule {:?}",
                    rule.id, o.status, o.message, theirs
                );
            }
            rows.entry(rule.id)
                .or_default()
                .push(format!("{} ({})", letter(o.status), o.observed));
        }
    }
    let mut ids: Vec<&&str> = rows.keys().collect();
    ids.sort_by_key(|id| {
        id.split('.')
            .map(|p| p.parse::<u32>().unwrap())
            .collect::<Vec<_>>()
    });
    for id in ids {
        table.push_str(&format!("| {id} | {} |\n", rows[*id].join(" | ")));
    }
    println!("{table}");
}

#[tokio::test]
async fn each_fixture_passes_and_fails_where_the_rules_say() {
    let k = run_cis(&kubeadm()).await;
    let status = |m: &BTreeMap<String, CheckOutcome>, id: &str| m[id].status;
    // Stock kubeadm: 0644 unit drop-in and config file, idle timeout 0s
    // is not "0" (kube-bench compares text), metrics on all addresses.
    assert_eq!(status(&k, "4.1.1"), Status::Fail);
    assert_eq!(status(&k, "4.1.5"), Status::Pass);
    assert_eq!(status(&k, "4.1.9"), Status::Fail);
    assert_eq!(status(&k, "4.2.1"), Status::Pass);
    assert_eq!(status(&k, "4.2.12"), Status::Warn);
    assert_eq!(k["4.2.12"].observed, Observed::Text("unset".into()));
    assert_eq!(status(&k, "4.3.1"), Status::Fail);
    assert_eq!(k["4.3.1"].observed, Observed::Text("0.0.0.0:10249".into()));

    let fl = run_cis(&flags_override()).await;
    // The file says false, the flag says true: the flag wins.
    assert_eq!(fl["4.2.1"].observed, Observed::Text("true".into()));
    assert_eq!(status(&fl, "4.2.1"), Status::Fail);
    assert_eq!(fl["4.2.4"].observed, Observed::Number(10255.0));
    assert_eq!(status(&fl, "4.2.7"), Status::Warn);
    assert!(
        fl["4.2.12"]
            .message
            .contains("TLS_RSA_WITH_RC4_128_SHA is not"),
        "{}",
        fl["4.2.12"].message
    );
    // The CA file is the one the flag names, mode 0666.
    assert_eq!(fl["4.1.7"].observed, Observed::Text("0666".into()));
    assert!(
        fl["4.1.7"].message.contains("other-ca.crt"),
        "{}",
        fl["4.1.7"].message
    );
    assert_eq!(status(&fl, "4.1.5"), Status::Fail, "0640 sets a group bit");
    // Settings the flags leave alone still come from the file.
    assert_eq!(status(&fl, "4.2.13"), Status::Pass);
    assert_eq!(status(&fl, "4.3.1"), Status::Pass);

    let r = run_cis(&rke2()).await;
    // The later drop-in wins over the earlier one.
    assert_eq!(status(&r, "4.2.1"), Status::Pass);
    assert_eq!(r["4.2.4"].observed, Observed::Number(0.0));
    assert_eq!(status(&r, "4.2.12"), Status::Pass);
    assert!(
        r["4.2.1"].message.contains("2 drop-ins"),
        "{}",
        r["4.2.1"].message
    );
    assert_eq!(r["4.1.7"].observed, Observed::Text("0600".into()));
    // No config file: 4.1.9 finds nothing at the default path.
    assert_eq!(r["4.1.9"].observed, Observed::Text("absent".into()));
    assert_eq!(status(&r, "4.1.9"), Status::Fail);
    // kube-proxy is not running: an error, not a pass.
    assert_eq!(status(&r, "4.3.1"), Status::Error);

    let n = run_cis(&no_kubelet()).await;
    for id in ["4.2.1", "4.2.4", "4.2.7"] {
        assert_eq!(status(&n, id), Status::Error, "{id}");
        assert_eq!(n[id].message, "no kubelet process is running");
    }
}

#[tokio::test]
async fn a_malformed_or_missing_config_file_is_an_error() {
    let f = base();
    process(
        &f,
        10,
        "kubelet",
        &["/usr/bin/kubelet", "--config=/etc/k/bad.yaml"],
    );
    f.file("/etc/k/bad.yaml", "authentication: [unclosed\n");
    let catalog = Catalog::builtin_profile("cis-node").unwrap();
    let one: Vec<_> = catalog
        .checks()
        .iter()
        .filter(|c| c.id == "cis-4.2.1")
        .cloned()
        .collect();
    let out = Runner::new(std::sync::Arc::new(f.host()), 1)
        .run(&one)
        .await;
    assert_eq!(out[0].status, Status::Error);
    assert!(
        out[0].message.contains("/etc/k/bad.yaml: not valid YAML"),
        "{}",
        out[0].message
    );
    std::fs::remove_file(f.root().join("etc/k/bad.yaml")).unwrap();
    let out = Runner::new(std::sync::Arc::new(f.host()), 1)
        .run(&one)
        .await;
    assert_eq!(out[0].status, Status::Error);
    assert!(
        out[0].message.contains("cannot read /etc/k/bad.yaml"),
        "{}",
        out[0].message
    );
}

/// A process named `kubelet` on the live machine (a copy of `/bin/sh`
/// under that name, waiting with kubelet flags on its command line) is
/// found through the real `/proc`, and its configuration file read.
#[tokio::test]
async fn a_real_process_called_kubelet_is_found_through_proc() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("kubelet");
    std::fs::copy("/bin/sh", &bin).expect("/bin/sh exists");
    let conf = dir.path().join("config.yaml");
    std::fs::write(
        &conf,
        "authentication:\n  anonymous:\n    enabled: true\nreadOnlyPort: 10255\n",
    )
    .unwrap();
    // `sleep; true` keeps the shell itself waiting (no exec into sleep).
    let mut child = std::process::Command::new(&bin)
        .args(["-c", "sleep 30; true", "kubelet"])
        .arg(format!("--config={}", conf.display()))
        .args([
            "--read-only-port",
            "0",
            "--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        ])
        .spawn()
        .unwrap();
    let text = r#"
[[check]]
id = "anon"
type = "kubelet"
key = "authentication.anonymous.enabled"
expect = false

[[check]]
id = "ro"
type = "kubelet"
key = "readOnlyPort"
expect = { equals = 0, or_unset = true }

[[check]]
id = "ciphers"
type = "kubelet"
key = "tlsCipherSuites"
"#;
    // /proc shows the child once it has exec'd.
    let mut out = Vec::new();
    for _ in 0..100 {
        out = support::run(RealHost, text).await;
        if out[0].status != Status::Error {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(out[0].status, Status::Fail, "{}", out[0].message);
    assert_eq!(out[0].observed, Observed::Text("true".into()));
    assert!(
        out[0].message.contains(&format!("pid {}", child.id())),
        "{}",
        out[0].message
    );
    assert_eq!(
        out[1].status,
        Status::Pass,
        "the flag overrides 10255: {}",
        out[1].message
    );
    assert_eq!(
        out[2].observed,
        Observed::List(vec![Observed::Text(
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into()
        )])
    );
}
