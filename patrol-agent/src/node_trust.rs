//! [`NodeTrust`]: a node's identity from `[trust]` (its key and
//! certificate, the CA bundle and deny list, the audit log), as the daemon
//! loads it and the agent uses it. It sits below both, so the agent does
//! not import the daemon that starts it.

/// A node's identity, loaded and checked from `[trust]`.
#[derive(Debug, Clone)]
pub struct NodeTrust {
    pub creds: patrol_core::trust::Credentials,
    pub bundle: patrol_core::trust::TrustBundle,
    pub audit: Option<crate::audit::AuditLog>,
    /// Where the agent keeps its roster (None: in memory only, as in
    /// tests that do not restart an agent).
    pub roster_file: Option<std::path::PathBuf>,
}
