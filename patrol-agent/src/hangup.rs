//! What SIGHUP does to a running daemon: read the key file again (key
//! rotation without a restart) and, with `[trust]`, the CA bundle, the
//! deny list and the issuers the node's certificate file carries.

use std::sync::Arc;

use crate::agent;
use crate::envelope::Envelope;
use crate::keyring::Keyring;

/// What SIGHUP reloads besides the key file, with `[trust]`.
pub(crate) struct Reload {
    pub(crate) ca_bundle: std::path::PathBuf,
    /// The node's certificate file: the issuers after the certificate
    /// join the bundle.
    pub(crate) cert: std::path::PathBuf,
    pub(crate) deny_list: Option<std::path::PathBuf>,
    pub(crate) watch: Arc<tokio::sync::watch::Sender<patrol_core::trust::TrustBundle>>,
    pub(crate) commander: agent::Commander,
}

impl Reload {
    /// Read the CA bundle and deny list again; the control channel and
    /// the node use them from the next request on (the node checks every
    /// cached peer again). Files that do not load leave the old ones.
    async fn run(&self) {
        let loaded = crate::trust_files::load_certs(&self.cert).and_then(|certs| {
            crate::trust_files::load_bundle_with_chain(
                &self.ca_bundle,
                self.deny_list.as_deref(),
                &self.cert,
                certs.get(1..).unwrap_or_default(),
            )
        });
        match loaded {
            Ok(bundle) => {
                let revoked = bundle.revocations().len();
                let cas = bundle.cas().count();
                self.watch.send_replace(bundle.clone());
                if self.commander.set_bundle(bundle).await.is_ok() {
                    tracing::info!(cas, revoked, "reloaded the CA bundle and deny list");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "CA bundle or deny list not reloaded; the previous ones stay in use")
            }
        }
    }
}

/// On SIGHUP, read the key file again and use its keys from then on (the
/// gossip socket and the control channel both): key rotation without a
/// restart. A file that does not load leaves the old keys in use. With
/// `[trust]`, the CA bundle and the deny list are read again too.
pub(crate) async fn reload_on_hangup(
    envelope: Envelope,
    key_file: std::path::PathBuf,
    trust: Option<Reload>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGHUP; key file reload disabled");
            return;
        }
    };
    while hangup.recv().await.is_some() {
        match Keyring::load(&key_file) {
            Ok(ring) => {
                let primary = envelope.reload(ring);
                tracing::info!(primary, keys = ?envelope.key_ids(), file = %key_file.display(), "reloaded the key file");
            }
            Err(e) => {
                tracing::warn!(error = %e, "key file not reloaded; the previous keys stay in use")
            }
        }
        if let Some(t) = &trust {
            t.run().await;
        }
    }
}
