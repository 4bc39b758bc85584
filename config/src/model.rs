//! The config model and its loader: the sections, their defaults and
//! limits, and [`Config::load`] / [`Config::parse`] (each section's
//! validation is in `validate.rs`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::serde_duration;
use crate::validate::{check_tables, optional_section, section, Problems};
use crate::{ConfigError, MailSection, ReportSection};

/// Where the agent and the CLI look when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/patrol/patrol.toml";

/// `[node]`: who this agent is and how it joins the mesh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Node name, unique in the cluster. Default: the hostname.
    #[serde(default = "default_name")]
    pub name: String,
    /// Cluster name; authenticated with every packet, so two clusters that
    /// share a key still cannot mix.
    #[serde(default = "default_cluster")]
    pub cluster: String,
    /// UDP address the gossip socket binds. Port 0 picks a free port.
    #[serde(default = "default_bind")]
    pub bind: SocketAddr,
    /// Address other nodes use to reach this one (default: `bind`, which
    /// then must not be unspecified).
    pub advertise: Option<SocketAddr>,
    /// `host:port` of nodes to join through: all are sent a join request,
    /// again with backoff (up to 5 s) until one answers.
    #[serde(default)]
    pub seeds: Vec<String>,
    /// Free-form labels carried with the membership, e.g. `role = "etcd"`.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The cluster keyring (made by `patrol keys generate`, mode 0600).
    #[serde(default = "default_key_file")]
    pub key_file: PathBuf,
    /// Where the host's root filesystem is mounted when the agent runs in
    /// a container (e.g. `/host`): every check reads `/proc`, `/sys`,
    /// `/dev/kmsg`, files and mounts under it, and commands run chrooted
    /// into it. Default: none, the agent reads the machine it runs on.
    /// Must be an absolute path.
    #[serde(default)]
    pub host_root: Option<PathBuf>,
}

/// `[control]`: the TCP listener the CLI talks to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSection {
    #[serde(default = "default_control_listen")]
    pub listen: SocketAddr,
}

/// `[sweep]`: how this node takes part in sweeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSection {
    /// Sweeps this node runs checks for at once; more are answered `error`.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: usize,
    /// Deadline of a sweep coordinated here when the request names none.
    #[serde(default = "default_deadline", with = "serde_duration")]
    pub default_deadline: Duration,
    /// In sweeps this node coordinates, a node whose clock is further than
    /// this from ours, for certain (the measured offset less its bound), is
    /// listed `failing` with a `patrol.clock_skew` outcome.
    #[serde(default = "default_clock_skew_limit", with = "serde_duration")]
    pub clock_skew_limit: Duration,
    /// With `[trust]`: how long a node stays on this agent's roster (the
    /// nodes its sweeps expect) after it was last seen; then sweeps list
    /// it as gone, with the date it was last seen. Default 7 days.
    #[serde(default = "default_roster_expiry", with = "serde_duration")]
    pub roster_expiry: Duration,
}

fn default_roster_expiry() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

/// `[checks]`: settings shared by every check this node runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecksSection {
    /// Built-in profiles whose checks this node runs, e.g. `["k8s-node"]`.
    #[serde(default)]
    pub profiles: Vec<String>,
    /// How many checks run at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Timeout of a check that sets none.
    #[serde(default = "default_check_timeout", with = "serde_duration")]
    pub default_timeout: Duration,
    /// Blocking host calls (file reads, `statvfs`, HTTP, name lookups) of
    /// one check kind in flight at once. A call cannot be cancelled: one
    /// stuck on a hung NFS mount keeps its thread and its slot until it
    /// returns, and when every slot of a kind is held by such calls, that
    /// kind's checks answer `error` at once instead of starting another
    /// thread. Default: [`DEFAULT_BLOCKING_PER_KIND`]; 1 to
    /// [`MAX_BLOCKING_PER_KIND`].
    #[serde(default = "default_blocking_per_kind")]
    pub blocking_per_kind: usize,
    /// The user every command a check runs (plugins, `systemctl`,
    /// `chronyc`, `kubelet --version`, `rpm`) runs as, by name or uid from
    /// `/etc/passwd` (the host's own under `[node] host_root`); a
    /// `command` check's `user` overrides it. Resolved when the config is
    /// loaded; switching users needs an agent running as root. Default:
    /// none, commands run as the agent's own user.
    #[serde(default)]
    pub command_user: Option<String>,
}

/// `[metrics]`: the agent's OpenMetrics endpoint for Prometheus. Off
/// unless `listen` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Address to serve `GET /metrics` on (e.g. `127.0.0.1:9477`; port 0
    /// picks a free one). Default: none, no endpoint. The endpoint has no
    /// authentication: bind it to loopback or a network only Prometheus
    /// reaches.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

/// `[trust]`: this node's certificate and the CAs it accepts. With it,
/// a node's answers are its own (no other node, even one holding the
/// cluster key, can answer in its name), sweeps need an operator's
/// signature within the operator's scope, and the control channel takes
/// operator certificates instead of the cluster key. Without it the
/// cluster key is the only trust boundary (the agent warns at start).
/// Make the files with `patrol ca`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustSection {
    /// The CA certificates this node accepts (one file, one or more
    /// certificates: hold the old and the new CA while rotating).
    pub ca_bundle: PathBuf,
    /// This node's certificate (`patrol ca issue node`); its name must be
    /// `[node] name`.
    pub cert: PathBuf,
    /// This node's private key (mode 0600).
    pub key: PathBuf,
    /// Revoked certificate serials, one hex serial per line; read again on
    /// SIGHUP. Default: none.
    #[serde(default)]
    pub deny_list: Option<PathBuf>,
    /// The audit log: one JSON line per request this node receives.
    #[serde(default = "default_audit_log")]
    pub audit_log: PathBuf,
    /// Size at which the audit log is rotated (to `.1`, `.2`, ...).
    #[serde(default = "default_audit_max_bytes")]
    pub audit_max_bytes: u64,
    /// Rotated audit files kept.
    #[serde(default = "default_audit_keep")]
    pub audit_keep: usize,
    /// The roster: the certified nodes this agent has seen, which its
    /// sweeps expect. Written by the agent (mode 0640), read at start.
    #[serde(default = "default_roster_file")]
    pub roster_file: PathBuf,
    /// The enrollment service (`host:port`, `patrol enroll serve`). With
    /// it, an agent without a valid certificate enrolls at start (with
    /// `enroll_token_file`), writing `key` (made here) and `cert`; and it
    /// renews its certificate at two thirds of its life. `ca_bundle` holds
    /// the root the service's issuer must chain to. Default: none.
    #[serde(default)]
    pub enroll: Option<String>,
    /// A file holding the bootstrap token (`patrol enroll token`); needed
    /// only to enroll, not to renew. Default: none.
    #[serde(default)]
    pub enroll_token_file: Option<PathBuf>,
}

fn default_roster_file() -> PathBuf {
    PathBuf::from("/var/lib/patrol/roster.json")
}

fn default_audit_log() -> PathBuf {
    PathBuf::from("/var/log/patrol/audit.jsonl")
}
fn default_audit_max_bytes() -> u64 {
    16 * 1024 * 1024
}
fn default_audit_keep() -> usize {
    4
}

/// `[node]` values given from outside the file (command line or
/// environment); see [`Config::load_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeOverrides {
    pub advertise: Option<SocketAddr>,
    pub name: Option<String>,
}

/// A whole config file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub node: NodeSection,
    pub control: ControlSection,
    pub sweep: SweepSection,
    pub checks: ChecksSection,
    /// Raw `[[check]]` tables, in file order; `patrol-checks` parses them
    /// and reports problems as `check[INDEX].KEY`.
    pub check: Vec<toml::Table>,
    pub mail: Option<MailSection>,
    pub report: ReportSection,
    pub metrics: MetricsSection,
    /// Node and operator identities; None: cluster key only.
    pub trust: Option<TrustSection>,
    /// The file this was loaded from (for error messages).
    pub source: PathBuf,
}

/// Most bytes `[node] name` and `[node] tags` may take together (name,
/// plus key and value of each tag with two bytes of framing each): the
/// identity rides in every gossip packet's header, up to three times in an
/// indirect probe, within foca's 1,296-byte packet. `patrol_core` checks
/// the encoded identity again at start.
pub const MAX_IDENTITY_TEXT: usize = 192;
/// Largest `[checks] concurrency`.
pub const MAX_CHECK_CONCURRENCY: usize = 256;
/// Largest `[sweep] max_concurrent`.
pub const MAX_SWEEPS_AT_ONCE: usize = 64;
/// Default of `[checks] blocking_per_kind`: a hung mount costs at most
/// four threads per kind (the disk kind's, mostly), while a burst of
/// healthy checks of one kind (ten `sysctl` reads in one sweep) only
/// waits a few microseconds for a slot.
pub const DEFAULT_BLOCKING_PER_KIND: usize = 4;
/// Largest `[checks] blocking_per_kind`.
pub const MAX_BLOCKING_PER_KIND: usize = 64;
/// Longest sweep deadline or check timeout (what an agent accepts): the
/// one cap every layer reads, kept in `patrol_model`.
pub use patrol_model::MAX_DEADLINE;
/// Largest `[sweep] clock_skew_limit`: datagrams from a clock further off
/// than a minute are refused by the agents' replay window, so no larger
/// skew can ever be measured.
pub const MAX_CLOCK_SKEW_LIMIT: Duration = Duration::from_secs(60);

/// The bytes a name and tags take in an identity, framing included.
pub fn identity_text_len(name: &str, tags: &BTreeMap<String, String>) -> usize {
    name.len()
        + tags
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2)
            .sum::<usize>()
}

/// A config decides what commands run, as root: one that others can write
/// is refused.
fn refuse_writable_by_others(path: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| ConfigError::single(path, "", format!("cannot read the file: {e}")))?
        .permissions()
        .mode();
    if mode & 0o022 != 0 {
        return Err(ConfigError::single(
            path,
            "",
            format!(
                "the file is writable by group or others (mode {:o}); it decides which commands the agent runs: chmod go-w {}",
                mode & 0o777,
                path.display()
            ),
        ));
    }
    Ok(())
}

fn default_name() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
fn default_cluster() -> String {
    "default".to_string()
}
fn default_bind() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 7946))
}
fn default_key_file() -> PathBuf {
    PathBuf::from("/etc/patrol/cluster.key")
}
fn default_control_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7947))
}
fn default_max_concurrent() -> usize {
    2
}
fn default_deadline() -> Duration {
    Duration::from_secs(5)
}
fn default_clock_skew_limit() -> Duration {
    Duration::from_secs(1)
}
fn default_concurrency() -> usize {
    8
}
fn default_check_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_blocking_per_kind() -> usize {
    DEFAULT_BLOCKING_PER_KIND
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            name: default_name(),
            cluster: default_cluster(),
            bind: default_bind(),
            advertise: None,
            host_root: None,
            seeds: Vec::new(),
            tags: BTreeMap::new(),
            key_file: default_key_file(),
        }
    }
}
impl Default for ControlSection {
    fn default() -> Self {
        ControlSection {
            listen: default_control_listen(),
        }
    }
}
impl Default for SweepSection {
    fn default() -> Self {
        SweepSection {
            max_concurrent: default_max_concurrent(),
            default_deadline: default_deadline(),
            clock_skew_limit: default_clock_skew_limit(),
            roster_expiry: default_roster_expiry(),
        }
    }
}
impl Default for ChecksSection {
    fn default() -> Self {
        ChecksSection {
            profiles: Vec::new(),
            concurrency: default_concurrency(),
            default_timeout: default_check_timeout(),
            blocking_per_kind: default_blocking_per_kind(),
            command_user: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node: NodeSection::default(),
            control: ControlSection::default(),
            sweep: SweepSection::default(),
            checks: ChecksSection::default(),
            check: Vec::new(),
            mail: None,
            report: ReportSection::default(),
            metrics: MetricsSection::default(),
            trust: None,
            source: PathBuf::from("(built-in defaults)"),
        }
    }
}

const TOP_LEVEL_KEYS: &[&str] = &[
    "node", "control", "sweep", "checks", "check", "mail", "report", "metrics", "trust",
];

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, &NodeOverrides::default())
    }

    /// Read and validate a config file with `[node]` keys given from
    /// outside (the agent's `--advertise` and `--name`, which a
    /// Kubernetes DaemonSet takes from the downward API): they count as if
    /// the file held them, so validation sees them.
    pub fn load_with(path: &Path, overrides: &NodeOverrides) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::single(path, "", format!("cannot read the file: {e}")))?;
        refuse_writable_by_others(path)?;
        Config::parse_with(&text, path, overrides)
    }

    /// [`Config::parse`] with `[node]` overrides (see [`Config::load_with`]).
    pub fn parse_with(
        text: &str,
        file: &Path,
        overrides: &NodeOverrides,
    ) -> Result<Config, ConfigError> {
        if *overrides == NodeOverrides::default() {
            return Config::parse(text, file);
        }
        let mut table: toml::Table = match toml::from_str(text) {
            Ok(t) => t,
            // Let `parse` word the TOML error.
            Err(_) => return Config::parse(text, file),
        };
        // A `node` that is not a table stays as it is; `parse_table` says so.
        if let toml::Value::Table(node) = table
            .entry("node")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            if let Some(a) = overrides.advertise {
                node.insert("advertise".into(), toml::Value::String(a.to_string()));
            }
            if let Some(n) = &overrides.name {
                node.insert("name".into(), toml::Value::String(n.clone()));
            }
        }
        Config::parse_table(table, file)
    }

    /// Parse and validate config text; `file` names it in problems.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        match toml::from_str::<toml::Table>(text) {
            Ok(table) => Config::parse_table(table, file),
            Err(e) => Err(ConfigError::single(
                file,
                "",
                format!("not valid TOML: {}", e.to_string().trim_end()),
            )),
        }
    }

    /// Read every section of `table`, then validate each: every problem
    /// found, or the config.
    fn parse_table(table: toml::Table, file: &Path) -> Result<Config, ConfigError> {
        let mut problems = Problems::new(file);
        let p = &mut problems;
        for key in table.keys() {
            if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
                p.push(
                    key,
                    format!(
                        "unknown key (expected one of: {})",
                        TOP_LEVEL_KEYS.join(", ")
                    ),
                );
            }
        }
        let node: NodeSection = section(&table, "node", p).unwrap_or_default();
        node.validate(table.contains_key("node"), p);
        let control: ControlSection = section(&table, "control", p).unwrap_or_default();
        let sweep: SweepSection = section(&table, "sweep", p).unwrap_or_default();
        sweep.validate(p);
        let checks: ChecksSection = section(&table, "checks", p).unwrap_or_default();
        checks.validate(p);
        let report: ReportSection = section(&table, "report", p).unwrap_or_default();
        report.validate(p);
        let metrics: MetricsSection = section(&table, "metrics", p).unwrap_or_default();
        let trust: Option<TrustSection> = optional_section(&table, "trust", p);
        if let Some(t) = &trust {
            t.validate(p);
        }
        let mail: Option<MailSection> = optional_section(&table, "mail", p);
        if let Some(m) = &mail {
            m.validate(p);
        }
        let check = check_tables(&table, p);
        problems.result(|| Config {
            node,
            control,
            sweep,
            checks,
            check,
            mail,
            report,
            metrics,
            trust,
            source: file.to_path_buf(),
        })
    }

    /// The address others reach this node at.
    pub fn advertise_addr(&self) -> SocketAddr {
        self.node.advertise.unwrap_or(self.node.bind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    /// Every one of `needles` is somewhere in `text`.
    fn assert_mentions(text: &str, needles: &[&str]) {
        for needle in needles {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }

    #[test]
    fn empty_file_gives_defaults() {
        match parse("") {
            Ok(c) => {
                assert_eq!(c.control.listen, default_control_listen());
                assert_eq!(c.sweep.max_concurrent, 2);
            }
            // A machine called localhost must name its node.
            Err(e) => assert!(
                default_name() == "localhost" && e.to_string().contains("localhost"),
                "{e}"
            ),
        }
    }

    #[test]
    fn an_enrollment_service_must_be_host_port_and_a_token_file_needs_one() {
        let trust = "[node]\nname = \"n\"\nbind = \"127.0.0.1:7946\"\n[trust]\nca_bundle = \"ca.crt\"\ncert = \"n.crt\"\nkey = \"n.key\"\n";
        let c = parse(&format!(
            "{trust}enroll = \"enroll.example.net:7947\"\nenroll_token_file = \"/etc/patrol/token\"\n"
        ))
        .unwrap();
        let t = c.trust.unwrap();
        assert_eq!(t.enroll.as_deref(), Some("enroll.example.net:7947"));
        assert_eq!(
            t.enroll_token_file,
            Some(PathBuf::from("/etc/patrol/token"))
        );
        let e = parse(&format!("{trust}enroll = \"enroll.example.net\"\n")).unwrap_err();
        assert_mentions(&e.to_string(), &["test.toml", "trust.enroll", "host:port"]);
        let e = parse(&format!("{trust}enroll_token_file = \"t\"\n")).unwrap_err();
        assert_mentions(
            &e.to_string(),
            &["test.toml", "trust.enroll_token_file", "trust.enroll"],
        );
    }

    /// Regression (issue 12): the default name is the hostname, and images
    /// cloned with `localhost` made every node the same node.
    #[test]
    fn localhost_is_refused_as_a_name() {
        for name in ["localhost", "localhost.localdomain"] {
            let err = parse(&format!(
                "[node]\nbind = \"127.0.0.1:7946\"\nname = \"{name}\"\n"
            ))
            .unwrap_err();
            assert!(err.to_string().contains("cannot tell nodes apart"), "{err}");
        }
        assert!(parse("[node]\nbind = \"127.0.0.1:7946\"\nname = \"localhost-7\"\n").is_ok());
    }

    /// Regression (issue 12): about 400 bytes of tags silently broke foca's
    /// indirect probes.
    #[test]
    fn a_name_and_tags_too_large_for_the_gossip_header_are_refused() {
        let mut text =
            String::from("[node]\nbind = \"127.0.0.1:7946\"\nname = \"n1\"\n[node.tags]\n");
        for k in 0..3 {
            text.push_str(&format!("key{k} = \"{}\"\n", "v".repeat(70)));
        }
        let err = parse(&text).unwrap_err();
        assert!(
            err.to_string().contains("fit in the gossip header"),
            "{err}"
        );
        assert!(parse(
            "[node]\nbind = \"127.0.0.1:7946\"\nname = \"n1\"\n[node.tags]\nrole = \"worker\"\n"
        )
        .is_ok());
    }

    /// Regression (issue 12): `[checks] concurrency` set huge panicked the
    /// semaphore.
    #[test]
    fn numbers_out_of_bounds_are_refused() {
        let err = parse(
            "[node]\nbind = \"127.0.0.1:7946\"\nname = \"n1\"\n[checks]\nconcurrency = 9223372036854775807\nblocking_per_kind = 0\n[sweep]\nmax_concurrent = 1000\ndefault_deadline = \"2h\"\nclock_skew_limit = \"5m\"\n",
        )
        .unwrap_err();
        let text = err.to_string();
        assert_mentions(
            &text,
            &[
                "checks.concurrency: must be 1-256",
                "checks.blocking_per_kind: must be 1-64 (got 0)",
                "sweep.max_concurrent: must be 1-64",
                "sweep.default_deadline",
                "sweep.clock_skew_limit: must be at most 60s",
            ],
        );
    }

    /// A config decides what runs as root: others must not be able to write it.
    #[test]
    fn a_config_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("patrol.toml");
        std::fs::write(&path, "[node]\nbind = \"127.0.0.1:7946\"\nname = \"n1\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Config::load(&path).is_ok());
        for mode in [0o664, 0o646] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = Config::load(&path).unwrap_err();
            assert!(
                err.to_string().contains("writable by group or others"),
                "{err}"
            );
            // The agent's path, with --advertise/--name, refuses it too.
            let overrides = NodeOverrides {
                advertise: Some("10.0.0.1:7946".parse().unwrap()),
                name: None,
            };
            let err = Config::load_with(&path, &overrides).unwrap_err();
            assert!(
                err.to_string().contains("writable by group or others"),
                "{err}"
            );
        }
    }

    #[test]
    fn reports_every_problem_with_file_and_key() {
        let err = parse(
            r#"
            bogus = 1
            [node]
            name = ""
            bind = "127.0.0.1:0"
            seeds = ["nope"]
            [sweep]
            max_concurrent = 0
            [checks]
            colour = "red"
            "#,
        )
        .unwrap_err();
        let text = err.to_string();
        assert_mentions(
            &text,
            &[
                "test.toml: bogus: unknown key",
                "node.name: must not be empty",
                "node.seeds[0]: `nope` is not host:port",
                "sweep.max_concurrent: must be 1-64 (got 0)",
                "checks.colour: unknown field",
            ],
        );
        assert_eq!(err.problems.len(), 5, "{text}");
    }

    #[test]
    fn a_command_user_that_cannot_be_a_user_name_is_refused() {
        for user in ["", "nobody:nogroup", "no body"] {
            let err = parse(&format!("[checks]\ncommand_user = \"{user}\"\n")).unwrap_err();
            assert_eq!(err.problems.len(), 1, "{err}");
            assert_eq!(err.problems[0].key, "checks.command_user", "{err}");
            assert!(err.to_string().contains("is not a user name"), "{err}");
        }
        let err = parse("[checks]\ncommand_user = 65534\n").unwrap_err();
        assert_eq!(err.problems[0].key, "checks", "{err}");
        let ok = parse("[node]\nname = \"n1\"\nbind = \"127.0.0.1:7946\"\n[checks]\ncommand_user = \"nobody\"\n");
        assert_eq!(ok.unwrap().checks.command_user.as_deref(), Some("nobody"));
    }

    #[test]
    fn bad_address_names_the_key() {
        let err = parse("[node]\nbind = \"not-an-address\"\n").unwrap_err();
        assert_eq!(err.problems[0].key, "node");
        assert!(err.to_string().contains("address"), "{err}");
    }

    #[test]
    fn overrides_from_outside_count_as_if_the_file_held_them() {
        let text = "[node]\nbind = \"0.0.0.0:7946\"\n";
        assert!(parse(text).is_err(), "unspecified bind needs advertise");
        let o = NodeOverrides {
            advertise: Some("10.1.2.3:7946".parse().unwrap()),
            name: Some("n7".into()),
        };
        let c = Config::parse_with(text, Path::new("t.toml"), &o).unwrap();
        assert_eq!(c.advertise_addr(), "10.1.2.3:7946".parse().unwrap());
        assert_eq!(c.node.name, "n7");
        let c = Config::parse_with("", Path::new("t.toml"), &o).unwrap();
        assert_eq!(c.node.name, "n7");
        let err = Config::parse_with("[node\n", Path::new("t.toml"), &o).unwrap_err();
        assert!(err.to_string().contains("not valid TOML"), "{err}");
    }

    #[test]
    fn bad_duration_is_reported() {
        let err = parse("[checks]\ndefault_timeout = \"5 parsecs\"\n").unwrap_err();
        assert!(err.to_string().contains("unknown unit"), "{err}");
    }
}
