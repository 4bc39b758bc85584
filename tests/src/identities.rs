//! Identities for in-process agents: a CA with random keys and real
//! validity times (minted by the core's `trust::testing`, feature
//! `test-support`), node identities auditing into its temporary folder,
//! operator identities for control clients, and agents started with them
//! (their control channel taking operator certificates).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use patrol_agent::agent::{self, AgentHandle, Inspector};
use patrol_agent::audit::AuditLog;
use patrol_agent::control::client::{ClientAuth, OperatorIdentity};
use patrol_agent::control::server::{CertAuth, ControlAuth};
use patrol_agent::daemon::NodeTrust;
use patrol_agent::envelope::Envelope;
use patrol_agent::transport::Transport;
use patrol_core::trust::testing::{bundle_revoking, ca_with, issued};
use patrol_core::trust::{Credentials, Role, Scope, SigningKey, TrustBundle};

/// Unix seconds now.
pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A CA with its own temporary folder (audit logs go there).
pub struct TestCa {
    pub ca: Credentials,
    pub dir: tempfile::TempDir,
    next_serial: std::sync::atomic::AtomicU64,
}

impl TestCa {
    /// A CA named `name` with a random key, valid from a minute ago for a
    /// day (the core's [`ca_with`]).
    pub fn new(name: &str) -> TestCa {
        let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        let now = now_s();
        TestCa {
            ca: ca_with(key, name, rand::random(), now - 60..now + 86_400),
            dir: tempfile::tempdir().expect("a temporary folder"),
            next_serial: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// A certificate for `role` and `name` with a random key, valid for
    /// `valid` from now (the core's [`issued`]).
    pub fn creds_for(&self, role: Role, name: &str, valid: Duration) -> Credentials {
        let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        let now = now_s();
        let serial = self
            .next_serial
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            | (rand::random::<u64>() << 16);
        issued(
            &self.ca,
            key,
            role,
            name,
            serial,
            now - 60..now + valid.as_secs(),
        )
    }

    /// A bundle of this CA (and `others`) with `revoked` serials.
    pub fn bundle_with(&self, others: &[&TestCa], revoked: &[u64]) -> TrustBundle {
        let mut cas = vec![&self.ca];
        cas.extend(others.iter().map(|o| &o.ca));
        bundle_revoking(&cas, revoked)
    }

    pub fn bundle(&self) -> TrustBundle {
        self.bundle_with(&[], &[])
    }

    /// Where node `name`'s roster is kept.
    pub fn roster_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.roster.json"))
    }

    /// Where node `name`'s audit log is.
    pub fn audit_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.audit.jsonl"))
    }

    /// Node `name`'s identity, trusting `bundle`, auditing into
    /// [`TestCa::audit_path`].
    pub fn node_trust(&self, name: &str, bundle: TrustBundle) -> NodeTrust {
        NodeTrust {
            creds: self.creds_for(Role::Node, name, Duration::from_secs(3600)),
            bundle,
            audit: Some(AuditLog::open(&self.audit_path(name), 1 << 20, 2).expect("audit log")),
            roster_file: Some(self.roster_path(name)),
        }
    }

    /// An operator identity for control clients of cluster `test`.
    pub fn operator(&self, name: &str, scope: Scope, bundle: TrustBundle) -> ClientAuth {
        ClientAuth::Operator(Arc::new(OperatorIdentity {
            creds: self.creds_for(Role::Operator(scope), name, Duration::from_secs(3600)),
            bundle,
            cluster: "test".into(),
        }))
    }

    /// The audit lines node `name` wrote, parsed.
    pub fn audit_lines(&self, name: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.audit_path(name))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("an audit line is JSON"))
            .collect()
    }
}

/// An agent on loopback UDP with identity `trust` (None: cluster key
/// only), and its control listener (taking operator certificates when it
/// has an identity). Returns the agent, its control address, and the
/// sender that swaps its CA bundle (as SIGHUP does).
pub async fn trusted_agent(
    name: &str,
    seeds: Vec<SocketAddr>,
    envelope: &Envelope,
    inspector: Arc<dyn Inspector>,
    trust: Option<NodeTrust>,
) -> (
    AgentHandle,
    SocketAddr,
    Option<tokio::sync::watch::Sender<TrustBundle>>,
) {
    let transport = Transport::udp(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind a loopback UDP socket");
    let mut settings = crate::settings(name, seeds, BTreeMap::new());
    settings.trust = trust.clone();
    let mut agent = agent::start(settings, transport, envelope.clone(), inspector);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a control listener");
    let control = listener.local_addr().expect("its address");
    let commander = agent.commander();
    let (auth, tx) = match trust {
        Some(t) => {
            let (tx, rx) = tokio::sync::watch::channel(t.bundle.clone());
            let auth = ControlAuth::Certificates(Box::new(CertAuth {
                cluster: "test".into(),
                node: tokio::sync::watch::channel(t.creds).1,
                bundle: rx,
                audit: t.audit,
                clock: Default::default(),
                sweep: patrol_agent::sweep::SweepSettings::default(),
            }));
            (auth, Some(tx))
        }
        None => (ControlAuth::ClusterKey(envelope.clone()), None),
    };
    agent
        .tasks()
        .spawn(patrol_agent::control::serve(listener, auth, commander));
    (agent, control, tx)
}

/// A sweep request of `selector` with `deadline_ms`, unsigned (the
/// client signs it with an operator identity).
pub fn sweep_request(
    selector: patrol_checks::Selector,
    deadline_ms: u64,
) -> patrol_agent::control::ControlRequest {
    patrol_agent::control::ControlRequest::StartSweep {
        selector,
        node_filter: BTreeMap::new(),
        deadline_ms,
        signed: None,
    }
}

/// Sweep through `addr` as `auth`; the document (its accounting checked)
/// or the refusal.
pub async fn sweep_as(
    addr: SocketAddr,
    auth: ClientAuth,
    request: &patrol_agent::control::ControlRequest,
) -> Result<patrol_checks::SweepDocument, String> {
    let mut client =
        patrol_agent::control::ControlClient::connect(addr, auth, Duration::from_secs(3))
            .await
            .map_err(|e| e.to_string())?;
    client.send(request).await.map_err(|e| e.to_string())?;
    loop {
        match client.recv().await.map_err(|e| e.to_string())? {
            patrol_agent::control::Reply::Progress { .. } => {}
            patrol_agent::control::Reply::SweepDone(doc) => {
                let doc = doc.to_document();
                crate::assert_accounted(&doc);
                return Ok(doc);
            }
            patrol_agent::control::Reply::Error(e) => return Err(e),
            other => return Err(format!("unexpected {other:?}")),
        }
    }
}
