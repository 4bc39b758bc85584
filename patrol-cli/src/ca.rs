//! `patrol ca`: the cluster CA. `init` makes the CA (its key is meant to
//! stay offline), `issue node` and `issue operator` make an identity
//! folder (key, certificate, and a copy of the CA certificate to use as
//! the bundle), `issue issuer` makes an issuing CA below the root for the
//! enrollment service (`patrol enroll`), `show` prints what certificate
//! files hold, and `revoke` adds a serial to a deny list.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use patrol_agent::trust::{
    issue, Certificate, Credentials, Issue, NamePatterns, Role, Scope, SigningKey,
};
use patrol_agent::trust_files;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Make a new CA: `ca.key` (mode 0600; keep it offline) and `ca.crt`
    /// (give it to every node and operator as the trust bundle).
    Init {
        /// The folder to write into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The CA's name, shown in certificates.
        #[arg(long, default_value = "patrol-ca")]
        name: String,
        /// How long the CA is valid (e.g. 3650d).
        #[arg(long, default_value = "3650d", value_parser = parse_duration)]
        expires: Duration,
    },
    /// Issue a node or operator certificate.
    #[command(subcommand)]
    Issue(IssueCommand),
    /// Print the certificates in files: role, name, serial, validity,
    /// issuer and, for operators, the scope.
    Show {
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
    },
    /// Add a certificate serial to a deny list file (created if missing);
    /// copy it to the nodes and SIGHUP the agents.
    Revoke {
        /// The serial, as `patrol ca show` prints it (hex).
        #[arg(value_name = "SERIAL")]
        serial: String,
        /// The deny list file (`[trust] deny_list`).
        #[arg(long, value_name = "FILE")]
        deny_list: PathBuf,
    },
}

/// Where the CA is, for `issue`.
#[derive(Debug, Clone, clap::Args)]
pub struct CaArgs {
    /// The CA folder (`ca.key`, `ca.crt`) made by `patrol ca init`.
    #[arg(long = "ca", value_name = "DIR", env = "PATROL_CA")]
    pub ca: PathBuf,
    /// Where to write the new identity (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The name the certificate binds (a node's must be its `[node] name`).
    #[arg(long)]
    pub name: String,
}

#[derive(Debug, clap::Subcommand)]
pub enum IssueCommand {
    /// A node: `node.key`, `node.crt` and `ca.crt` for `[trust]`.
    Node {
        #[command(flatten)]
        ca: CaArgs,
        /// How long the certificate is valid.
        #[arg(long, default_value = "365d", value_parser = parse_duration)]
        expires: Duration,
    },
    /// An operator: `operator.key`, `operator.crt` and `ca.crt`, used with
    /// `patrol sweep --identity DIR`.
    Operator {
        #[command(flatten)]
        ca: CaArgs,
        /// `full` (any sweep), `read-only` (members and stats), or a name
        /// of your own with at least one restriction below (e.g. `nightly
        /// --profile k8s-node`).
        #[arg(long)]
        scope: String,
        /// How long the certificate is valid.
        #[arg(long, default_value = "90d", value_parser = parse_duration)]
        expires: Duration,
        /// Only sweeps of these profiles (repeatable).
        #[arg(long = "profile", value_name = "NAME")]
        profiles: Vec<String>,
        /// Only sweeps selecting by these labels (repeatable).
        #[arg(long = "label", value_name = "LABEL")]
        labels: Vec<String>,
        /// Only sweeps of these check ids (repeatable).
        #[arg(long = "check", value_name = "ID")]
        checks: Vec<String>,
        /// Every sweep must carry this node filter (repeatable TAG=VALUE).
        #[arg(long = "where", value_name = "TAG=VALUE", value_parser = parse_tag)]
        node_filter: Vec<(String, String)>,
        /// Longest sweep deadline allowed.
        #[arg(long, default_value = "600s", value_parser = parse_duration)]
        max_deadline: Duration,
        /// Most of this operator's sweeps a node holds at once (running,
        /// or answered and not acked yet); each node takes the smaller of
        /// this and its own `operator_share`, and answers the rest
        /// `patrol.over_quota`. Makes a version 2 certificate, which
        /// agents older than it refuse: upgrade the agents first.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        share: Option<u16>,
    },
    /// An issuing CA for `patrol enroll serve`: `issuer.key`, `issuer.crt`,
    /// `ca.crt` (the root) and `bundle.crt` (root and issuer: the bundle
    /// for nodes and operators). It signs node certificates only, for the
    /// names `--names` matches; revoking it revokes all it signed.
    Issuer {
        #[command(flatten)]
        ca: CaArgs,
        /// Name patterns it may certify, comma-separated (`*` is any run
        /// of characters).
        #[arg(long, default_value = "*")]
        names: String,
        /// How long it is valid (never longer than the root).
        #[arg(long, default_value = "365d", value_parser = parse_duration)]
        expires: Duration,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    patrol_config::parse_duration(s)
}

fn parse_tag(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("expected TAG=VALUE, got `{text}`")),
    }
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn fresh_key() -> SigningKey {
    SigningKey::from_bytes(&rand::random::<[u8; 32]>())
}

fn create_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn load_ca(dir: &Path) -> anyhow::Result<Credentials> {
    Ok(trust_files::load_credentials(
        &dir.join("ca.crt"),
        &dir.join("ca.key"),
    )?)
}

/// Make a CA in `dir`; returns its credentials (for `patrol demo` and
/// tests, which make a throwaway one).
pub fn init(dir: &Path, name: &str, valid: Duration) -> anyhow::Result<Credentials> {
    create_dir(dir)?;
    let key = fresh_key();
    let now = now_s();
    let cert = Certificate::new_ca(
        &key,
        name,
        rand::random(),
        now.saturating_sub(60),
        now.saturating_add(valid.as_secs()),
    );
    trust_files::write_key(&dir.join("ca.key"), &key, "CA: keep offline")?;
    trust_files::write_certs(&dir.join("ca.crt"), &[&cert])?;
    Ok(Credentials::new(key, cert)?)
}

/// Issue `role` for `name` into `out` as `<file_stem>.key`,
/// `<file_stem>.crt` and `ca.crt`.
pub fn issue_into(
    ca: &Credentials,
    out: &Path,
    file_stem: &str,
    role: Role,
    name: &str,
    valid: Duration,
) -> anyhow::Result<Certificate> {
    create_dir(out)?;
    let key = fresh_key();
    let now = now_s();
    let cert = issue(
        ca,
        Issue {
            role,
            name,
            public_key: key.verifying_key(),
            serial: rand::random(),
            not_before: now.saturating_sub(60),
            not_after: now.saturating_add(valid.as_secs()),
        },
    )?;
    trust_files::write_key(&out.join(format!("{file_stem}.key")), &key, name)?;
    trust_files::write_certs(&out.join(format!("{file_stem}.crt")), &[&cert])?;
    let bundle = out.join("ca.crt");
    if std::fs::symlink_metadata(&bundle).is_err() {
        trust_files::write_certs(&bundle, &[&ca.cert])?;
    }
    Ok(cert)
}

pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Init { out, name, expires } => {
            let ca = init(&out, &name, expires)?;
            crate::stdout::outln!(
                "CA `{}` (serial {:016x}) written to {}: keep ca.key offline, give ca.crt to every node and operator",
                ca.name(),
                ca.cert.body.serial,
                out.display()
            );
        }
        Command::Issue(IssueCommand::Node { ca, expires }) => {
            let authority = load_ca(&ca.ca)?;
            let cert = issue_into(&authority, &ca.out, "node", Role::Node, &ca.name, expires)?;
            crate::stdout::outln!(
                "node certificate `{}` (serial {:016x}) written to {}: node.key, node.crt, ca.crt for [trust]",
                cert.body.name,
                cert.body.serial,
                ca.out.display()
            );
        }
        Command::Issue(IssueCommand::Operator {
            ca,
            scope,
            expires,
            profiles,
            labels,
            checks,
            node_filter,
            max_deadline,
            share,
        }) => {
            let max_deadline_ms = u64::try_from(max_deadline.as_millis()).unwrap_or(u64::MAX);
            let restricted = !(profiles.is_empty()
                && labels.is_empty()
                && checks.is_empty()
                && node_filter.is_empty());
            let scope = match scope.as_str() {
                "read-only" if restricted || share.is_some() => {
                    bail!("a read-only scope starts no sweep: it takes no --profile/--label/--check/--where/--share")
                }
                "read-only" => Scope::read_only(),
                name => {
                    if name != "full" && !restricted && share.is_none() {
                        bail!("scope `{name}` restricts nothing: use --scope full, or give --profile, --label, --check, --where or --share");
                    }
                    if name == "full" && restricted {
                        bail!("scope `full` takes no restriction: give the restricted scope a name of its own (e.g. --scope nightly)");
                    }
                    Scope {
                        name: name.to_string(),
                        sweep: true,
                        profiles,
                        labels,
                        checks,
                        node_filter: node_filter.into_iter().collect::<BTreeMap<_, _>>(),
                        max_deadline_ms,
                        share,
                    }
                }
            };
            let authority = load_ca(&ca.ca)?;
            let describe = scope.describe();
            let cert = issue_into(
                &authority,
                &ca.out,
                "operator",
                Role::Operator(scope),
                &ca.name,
                expires,
            )?;
            crate::stdout::outln!(
                "operator certificate `{}` (serial {:016x}, scope {describe}) written to {}: use it with --identity {}",
                cert.body.name,
                cert.body.serial,
                ca.out.display(),
                ca.out.display()
            );
        }
        Command::Issue(IssueCommand::Issuer { ca, names, expires }) => {
            let names = NamePatterns::parse(&names).context("--names")?;
            let authority = load_ca(&ca.ca)?;
            let describe = names.describe();
            let cert = issue_into(
                &authority,
                &ca.out,
                "issuer",
                Role::Issuer(names),
                &ca.name,
                expires,
            )?;
            trust_files::write_certs(&ca.out.join("bundle.crt"), &[&authority.cert, &cert])?;
            crate::stdout::outln!(
                "issuer `{}` (serial {:016x}, signs nodes named {describe}) written to {}: run `patrol enroll serve --issuer {}`; give bundle.crt to operators",
                cert.body.name,
                cert.body.serial,
                ca.out.display(),
                ca.out.display()
            );
        }
        Command::Show { files } => {
            for f in files {
                for cert in trust_files::load_certs(&f)? {
                    crate::stdout::out!("{}: {}", f.display(), show(&cert));
                }
            }
        }
        Command::Revoke { serial, deny_list } => {
            let hex = serial.trim().trim_start_matches("0x");
            let n = u64::from_str_radix(hex, 16).map_err(|_| {
                anyhow::anyhow!(
                    "`{serial}` is not a serial (16 hex digits, as `patrol ca show` prints it)"
                )
            })?;
            let mut text = match std::fs::read_to_string(&deny_list) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    "# Patrol deny list: revoked certificate serials, one per line\n".to_string()
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("reading {}", deny_list.display()))
                }
            };
            let current = patrol_agent::trust::Revocations::parse(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", deny_list.display()))?;
            if current.contains(n) {
                crate::stdout::outln!("{n:016x} is already in {}", deny_list.display());
                return Ok(ExitCode::SUCCESS);
            }
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&format!("{n:016x}\n"));
            let tmp = deny_list.with_extension("tmp");
            std::fs::write(&tmp, &text).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &deny_list)
                .with_context(|| format!("replacing {}", deny_list.display()))?;
            crate::stdout::outln!(
                "{n:016x} revoked in {}: copy it to the nodes and send the agents SIGHUP",
                deny_list.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `patrol ca show` prints for one certificate.
pub fn show(cert: &Certificate) -> String {
    let b = &cert.body;
    let when = |s: u64| {
        jiff::Timestamp::from_second(s as i64)
            .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_else(|_| s.to_string())
    };
    let mut out = format!(
        "{} `{}` serial {:016x}, valid {} to {}, issuer {}, version {}\n",
        b.role.word(),
        b.name,
        b.serial,
        when(b.not_before),
        when(b.not_after),
        b.issuer,
        b.version
    );
    if let Role::Operator(scope) = &b.role {
        out.push_str(&format!("  scope {}\n", scope.describe()));
    }
    if let Role::Issuer(names) = &b.role {
        out.push_str(&format!("  signs nodes named {}\n", names.describe()));
    }
    out
}
