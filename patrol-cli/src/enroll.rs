//! `patrol enroll`: the enrollment service and its tokens. `serve` runs
//! the service with an issuer made by `patrol ca issue issuer`; `token`
//! adds a bootstrap token to its token file and prints it (once);
//! `request` enrolls this machine by hand (the agent does it itself with
//! `[trust] enroll`): a fresh key, made here, and the certificate the
//! service issues for it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use patrol_agent::enroll::client::{self, Proof};
use patrol_agent::enroll::service::{Service, ServiceSettings};
use patrol_agent::enroll::tokens::TokenStore;
use patrol_agent::trust::{NamePatterns, Role, SigningKey};
use patrol_agent::trust_files;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the enrollment service: nodes with a token (or their current
    /// certificate) get a node certificate signed by the issuer.
    Serve {
        /// The issuer folder (`patrol ca issue issuer --out DIR`).
        #[arg(long, value_name = "DIR")]
        issuer: PathBuf,
        /// Where to listen (e.g. 0.0.0.0:7947).
        #[arg(long, value_name = "ADDR")]
        listen: std::net::SocketAddr,
        /// The token file (default: DIR/tokens.toml).
        #[arg(long, value_name = "FILE")]
        tokens: Option<PathBuf>,
        /// Revoked serials, read again at each renewal.
        #[arg(long, value_name = "FILE")]
        deny_list: Option<PathBuf>,
        /// The audit log (default: DIR/enroll-audit.jsonl).
        #[arg(long, value_name = "FILE")]
        audit_log: Option<PathBuf>,
        /// Life of an issued certificate.
        #[arg(long, default_value = "30d", value_parser = parse_duration)]
        cert_life: Duration,
    },
    /// Add a bootstrap token to the token file and print it (the file
    /// keeps only its hash).
    Token {
        #[arg(long, value_name = "DIR")]
        issuer: PathBuf,
        /// Names it may enroll, comma-separated patterns (`node-*`); must
        /// be within the issuer's.
        #[arg(long)]
        names: String,
        /// How many enrollments it allows.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// How long it is valid (at most 30d).
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        expires: Duration,
        /// The token file (default: DIR/tokens.toml).
        #[arg(long, value_name = "FILE")]
        tokens: Option<PathBuf>,
    },
    /// Enroll this machine by hand: writes node.key (made here), node.crt
    /// (with its issuer) and ca.crt into --out.
    Request {
        /// The enrollment service (host:port).
        #[arg(long, value_name = "ADDR")]
        service: String,
        /// The root CA certificate to pin (`patrol ca init`'s ca.crt).
        #[arg(long, value_name = "FILE")]
        ca: PathBuf,
        /// The node name to enroll as.
        #[arg(long)]
        name: String,
        /// A file holding the token.
        #[arg(long, value_name = "FILE")]
        token_file: PathBuf,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    patrol_config::parse_duration(s)
}

fn now_s() -> u64 {
    patrol_agent::clock::unix_ms() / 1000
}

fn token_store(issuer: &Path, tokens: Option<PathBuf>) -> TokenStore {
    TokenStore::new(&tokens.unwrap_or_else(|| issuer.join("tokens.toml")))
}

fn load_issuer(dir: &Path) -> anyhow::Result<patrol_agent::trust::Credentials> {
    Ok(trust_files::load_credentials(
        &dir.join("issuer.crt"),
        &dir.join("issuer.key"),
    )?)
}

pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve {
            issuer,
            listen,
            tokens,
            deny_list,
            audit_log,
            cert_life,
        } => {
            let creds = load_issuer(&issuer)?;
            let audit_path = audit_log.unwrap_or_else(|| issuer.join("enroll-audit.jsonl"));
            let audit = patrol_agent::audit::AuditLog::open(&audit_path, 16 * 1024 * 1024, 4)
                .with_context(|| format!("opening the audit log {}", audit_path.display()))?;
            let settings = ServiceSettings {
                cert_life,
                ..ServiceSettings::default()
            };
            anyhow::ensure!(!cert_life.is_zero(), "--cert-life must not be zero");
            let service = Service::new(
                creds,
                issuer.join("bundle.crt"),
                deny_list,
                token_store(&issuer, tokens),
                audit,
                settings,
            );
            service.bundle().map_err(|e| anyhow::anyhow!("{e}"))?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            let addr = listener.local_addr()?;
            crate::stdout::outln!(
                "patrol enroll serving on {addr} as issuer `{}`",
                service.issuer.name()
            );
            let service = Arc::new(service);
            tokio::select! {
                _ = patrol_agent::enroll::service::serve(listener, Arc::clone(&service)) => {}
                _ = terminated() => {}
            }
            tracing::info!(counts = ?service.counts(), "enrollment service stopped");
        }
        Command::Token {
            issuer,
            names,
            uses,
            expires,
            tokens,
        } => {
            let names = NamePatterns::parse(&names).context("--names")?;
            // The certificate is enough: making a token never reads the key.
            let cert = trust_files::load_cert(&issuer.join("issuer.crt"))?;
            if let Role::Issuer(own) = &cert.body.role {
                anyhow::ensure!(
                    own.covers(&names),
                    "issuer `{}` signs only names {}: a token for {} would enroll names it refuses",
                    cert.body.name,
                    own.describe(),
                    names.describe()
                );
            }
            let now = now_s();
            let store = token_store(&issuer, tokens);
            let token = store.create(&names, uses, now.saturating_add(expires.as_secs()), now)?;
            crate::stdout::outln!("{token}");
        }
        Command::Request {
            service,
            ca,
            name,
            token_file,
            out,
        } => request(&service, &ca, &name, &token_file, &out).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn request(
    service: &str,
    ca: &Path,
    name: &str,
    token_file: &Path,
    out: &Path,
) -> anyhow::Result<()> {
    let roots = trust_files::load_bundle(ca, None)?;
    let token = std::fs::read_to_string(token_file)
        .with_context(|| format!("reading {}", token_file.display()))?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let proof = Proof::Token {
        name,
        token: token.trim(),
    };
    let enrolled = client::enroll(service, &roots, &key, proof, Duration::from_secs(30)).await?;
    trust_files::write_key(&out.join("node.key"), &key, name)?;
    trust_files::write_new(&out.join("node.crt"), &enrolled.cert_file_text(), 0o644)?;
    let roots: Vec<_> = roots.cas().map(|c| &c.cert).collect();
    trust_files::write_certs(&out.join("ca.crt"), &roots)?;
    crate::stdout::outln!(
        "node certificate `{name}` (serial {:016x}, from issuer `{}`) written to {}",
        enrolled.creds.cert.body.serial,
        enrolled.issuer,
        out.display()
    );
    Ok(())
}

/// SIGTERM or ctrl-c.
async fn terminated() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
