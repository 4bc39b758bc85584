//! The sweep core's side of node and operator identities (see
//! [`crate::trust`]): what a coordinator puts in a request, what a
//! participant checks before it runs a check, how a participant proves its
//! answer, and how the coordinator checks that proof.
//!
//! Costs: a participant checks two certificates and one signature per
//! sweep and derives its pair key with the coordinator once (cached). The
//! coordinator has the pair key of every member whose certificate its
//! membership learned (derived then, one X25519 each, and cached in
//! [`PeerKeys`]); for another certificate it checks the certificate and
//! derives the key at its first answer (about 90 µs). Otherwise it checks
//! one HMAC per answer.

use std::collections::VecDeque;

use crate::trust::authorization::{AuthError, Authorization, SigningWindow, SweepAsk};
use crate::trust::{Credentials, PairKey, PeerKeys, TrustBundle, Verified};

use super::wire::{AnswerPayload, AnswerProof, CertRef, RequestAuth, SweepRequest};
use super::SweepSettings;

/// Sweep ids refused for their authorization, remembered so that the
/// gossip copies of one refused request are counted and audited once.
const REFUSED_MEMORY: usize = 256;

/// Coordinators (name and peer epoch) a node remembers having given its
/// certificate to.
const TOLD_MEMORY: usize = 256;

/// Sweep ids a participant admitted, remembered until their operator's
/// signature expires (the signing window), so a captured request replayed
/// after its sweep ended cannot run again. At most this many; when full
/// of ids still in their window, a new request is refused (counted) rather
/// than an id forgotten early.
pub(crate) const ADMITTED_MEMORY: usize = 65_536;

/// The one check of an operator's signed sweep, made by the control server
/// when the CLI asks, by the coordinator when it starts the sweep, and (in
/// two halves, around the clock-skew answer) by every participant: the
/// operator's certificate, its signature over `ask`, its scope, and its
/// signing time within the node's [`signing_window`].
pub fn check_signed_sweep(
    authorization: &Authorization,
    bundle: &TrustBundle,
    ask: &SweepAsk<'_>,
    settings: &SweepSettings,
    unix_ms: u64,
) -> Result<Verified, AuthError> {
    authorization.check(bundle, ask, unix_ms, signing_window(settings))
}

/// The node's signing window: `clock_skew_tolerance` ahead,
/// `signed_request_slack` past the deadline.
pub fn signing_window(settings: &SweepSettings) -> SigningWindow {
    SigningWindow {
        skew_ms: settings.clock_skew_tolerance.as_millis() as u64,
        slack_ms: settings.signed_request_slack.as_millis() as u64,
    }
}

/// A node's identity and what it trusts, as the sweep core uses them.
#[derive(Debug)]
pub(crate) struct SweepTrust {
    pub(crate) creds: Credentials,
    pub(crate) bundle: TrustBundle,
    pub(crate) peers: PeerKeys,
    /// Refused requests: sweep id and the digest of the request's bytes
    /// (another request under a refused id, the real one after a forged
    /// copy, is still checked).
    refused: VecDeque<(u64, [u8; 16])>,
    /// Admitted sweep ids and the end of their signing window (unix ms).
    /// With the digest of the request admitted: another copy of the same
    /// bytes is the same request (a gossip and a direct copy, or the
    /// backstop), not a replay.
    admitted: std::collections::HashMap<u64, (u64, [u8; 16])>,
    admitted_order: VecDeque<u64>,
    /// As a coordinator: the generation of `peers` (see
    /// `RequestAuth::peer_epoch`).
    pub(crate) epoch: u64,
    /// As a participant: coordinators that have our certificate, by name
    /// and peer epoch.
    told: VecDeque<(String, u64)>,
}

/// Why a coordinator did not record an answer's proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProofRefusal {
    /// Not the node's own answer.
    Forged(String),
    /// Named by a certificate digest this coordinator does not have (it
    /// restarted, reloaded or evicted it): the backstop asks the node
    /// again, and it sends its whole certificate.
    Unknown,
    /// The node's own answer (its key's proof checks), proven by
    /// certificate `serial`, which the bundle accepted until it expired at
    /// `not_after` (Unix seconds). Its checks are not recorded; the node is
    /// listed with `patrol.cert_expiry` failing instead, so a node whose
    /// certificate lapsed is named as such, not silent.
    Expired { serial: u64, not_after: u64 },
}

/// A request whose authorization a participant accepted: who asked, and
/// the key its answer is proved with.
#[derive(Debug)]
pub(crate) struct Authorized {
    pub(crate) operator: String,
    /// The share of this node's participations the operator's scope allows
    /// (`Scope::share`; None: the node's `operator_share` alone).
    pub(crate) share: Option<u16>,
    pub(crate) pair: PairKey,
    /// The coordinator has our certificate (this peer epoch): the answer
    /// names it by digest.
    pub(crate) told: bool,
}

/// Why a participant refused a request's authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthRefusal {
    /// First time for this sweep id: count and audit it.
    Refused(String),
    /// A copy of a request already refused.
    RefusedBefore,
}

impl SweepTrust {
    pub(crate) fn new(
        creds: Credentials,
        bundle: TrustBundle,
        settings: &SweepSettings,
        epoch: u64,
    ) -> Self {
        let peers = PeerKeys::new(creds.key.clone(), settings.peer_keys);
        SweepTrust {
            creds,
            bundle,
            peers,
            refused: VecDeque::new(),
            admitted: std::collections::HashMap::new(),
            admitted_order: VecDeque::new(),
            epoch,
            told: VecDeque::new(),
        }
    }

    /// Sweep `id` was admitted; its signature is good until `until_ms`.
    /// False when the memory is full of ids still in their window.
    fn remember_admitted(
        &mut self,
        id: u64,
        digest: [u8; 16],
        until_ms: u64,
        unix_ms: u64,
    ) -> bool {
        while let Some(old) = self.admitted_order.front().copied() {
            let expired = self.admitted.get(&old).is_none_or(|(u, _)| *u <= unix_ms);
            if !expired && self.admitted.len() < ADMITTED_MEMORY {
                break;
            }
            if !expired {
                return false;
            }
            self.admitted_order.pop_front();
            self.admitted.remove(&old);
        }
        self.admitted.insert(id, (until_ms, digest));
        self.admitted_order.push_back(id);
        true
    }

    /// A new bundle or deny list: cached peers are checked again, under a
    /// new peer epoch.
    pub(crate) fn set_bundle(&mut self, bundle: TrustBundle, epoch: u64) {
        self.bundle = bundle;
        self.peers.clear();
        self.epoch = epoch;
    }

    /// Participant: `coordinator` has our certificate in peer epoch
    /// `epoch` (an answer carrying it was acked).
    pub(crate) fn told(&mut self, coordinator: &str, epoch: u64) {
        if self.knows_us(coordinator, epoch) {
            return;
        }
        if self.told.len() >= TOLD_MEMORY {
            self.told.pop_front();
        }
        self.told.push_back((coordinator.to_string(), epoch));
    }

    pub(crate) fn knows_us(&self, coordinator: &str, epoch: u64) -> bool {
        self.told
            .iter()
            .any(|(name, e)| *e == epoch && name == coordinator)
    }

    /// Participant: check `req`'s operator signature and scope, the
    /// coordinator's certificate, and the signing time, in that order.
    /// The clock-skew check on `issued_at` runs between the signature and
    /// the signing time, so that a node whose clock is off is told so.
    pub(crate) fn admit(
        &mut self,
        req: &SweepRequest,
        unix_ms: u64,
        settings: &SweepSettings,
    ) -> Result<Authorized, AuthRefusal> {
        let digest = super::participant::digest(req);
        if self.refused.contains(&(req.id, digest)) {
            return Err(AuthRefusal::RefusedBefore);
        }
        let result = self.check(req, unix_ms, settings).and_then(|authorized| {
            let window = signing_window(settings);
            let until = req
                .auth
                .as_ref()
                .map_or(0, |a| a.authorization.signed_at_unix_ms)
                .saturating_add(req.deadline_ms)
                .saturating_add(window.slack_ms)
                .saturating_add(window.skew_ms);
            match self.admitted.get(&req.id) {
                // The same request again: a refusal for this node's own
                // reasons (its tags, its capacity) is judged again.
                Some((u, d)) if *u > unix_ms && *d == digest => return Ok(authorized),
                _ => {}
            }
            if self
                .admitted
                .get(&req.id)
                .is_some_and(|(u, _)| *u > unix_ms)
            {
                return Err(format!(
                    "sweep {:016x} was admitted before: a replay of its request",
                    req.id
                ));
            }
            if !self.remember_admitted(req.id, digest, until, unix_ms) {
                return Err(format!(
                    "{ADMITTED_MEMORY} signed sweeps are still within their window here"
                ));
            }
            Ok(authorized)
        });
        if let Err(reason) = &result {
            if self.refused.len() >= REFUSED_MEMORY {
                self.refused.pop_front();
            }
            self.refused.push_back((req.id, digest));
            return Err(AuthRefusal::Refused(reason.clone()));
        }
        result.map_err(AuthRefusal::Refused)
    }

    fn check(
        &mut self,
        req: &SweepRequest,
        unix_ms: u64,
        settings: &SweepSettings,
    ) -> Result<Authorized, String> {
        let Some(auth) = &req.auth else {
            return Err(
                "the request carries no operator signature (this node requires one)".into(),
            );
        };
        let ask = SweepAsk {
            sweep_id: req.id,
            selector: &req.selector,
            node_filter: &req.node_filter,
            deadline_ms: req.deadline_ms,
            coordinator: &req.coordinator.name,
        };
        // The issue time is not signed (the coordinator sets it when it
        // starts the sweep); it must be close to the signing time, so a
        // replay cannot give a captured request a fresh one.
        let skew = signing_window(settings).skew_ms;
        let signed_at = auth.authorization.signed_at_unix_ms;
        if req.issued_at_unix_ms.abs_diff(signed_at) > skew {
            return Err(format!(
                "the request was issued {} ms from its signing time, over the {skew} ms allowed",
                req.issued_at_unix_ms.abs_diff(signed_at)
            ));
        }
        let operator = auth
            .authorization
            .verify(&self.bundle, &ask, unix_ms)
            .map_err(|e| e.to_string())?;
        let (_, coordinator) = self
            .peers
            .peer(&self.bundle, &auth.coordinator, unix_ms / 1000)
            .map_err(|e| format!("coordinator certificate refused: {e}"))?;
        if coordinator.cert.name() != req.coordinator.name {
            return Err(format!(
                "the request names coordinator `{}` but carries the certificate of `{}`",
                req.coordinator.name,
                coordinator.cert.name()
            ));
        }
        let pair = coordinator.key.clone();
        auth.authorization
            .fresh(req.deadline_ms, unix_ms, signing_window(settings))
            .map_err(|e| e.to_string())?;
        let share = match operator.role() {
            crate::trust::Role::Operator(scope) => scope.share,
            _ => None,
        };
        Ok(Authorized {
            operator: operator.name().to_string(),
            share,
            pair,
            told: self.knows_us(&req.coordinator.name, auth.peer_epoch),
        })
    }

    /// Coordinator: the proofs a request it starts carries.
    pub(crate) fn request_auth(&self, authorization: crate::trust::Authorization) -> RequestAuth {
        RequestAuth {
            authorization,
            coordinator: self.creds.cert.clone(),
            peer_epoch: self.epoch,
        }
    }

    /// Participant: `body` with this node's proof for the coordinator,
    /// naming our certificate whole or, when the coordinator has it, by
    /// digest.
    pub(crate) fn prove(
        &self,
        pair: &PairKey,
        sweep_id: u64,
        node: &str,
        nonce: u64,
        body: Vec<u8>,
        whole: bool,
    ) -> AnswerPayload {
        let mac = pair.answer_proof(sweep_id, node, nonce, &body).to_vec();
        let cert = if whole {
            CertRef::Whole(Box::new(self.creds.cert.clone()))
        } else {
            CertRef::Known(crate::trust::cert_digest(&self.creds.cert))
        };
        AnswerPayload {
            body,
            proof: Some(AnswerProof { cert, mac }),
        }
    }

    /// Coordinator: whether `payload` is `node`'s own answer `nonce` to
    /// `sweep_id` (then the key the node's tags are checked with); the
    /// reason when not.
    pub(crate) fn check_answer(
        &mut self,
        sweep_id: u64,
        node: &str,
        nonce: u64,
        payload: &AnswerPayload,
        unix_ms: u64,
    ) -> Result<PairKey, ProofRefusal> {
        let Some(proof) = &payload.proof else {
            return Err(ProofRefusal::Forged(format!(
                "an answer for `{node}` without a node proof"
            )));
        };
        let now_s = unix_ms / 1000;
        let (digest, peer) = match &proof.cert {
            CertRef::Whole(cert) if now_s > cert.body.not_after => {
                return Err(self.expired(sweep_id, node, nonce, payload, &proof.mac, cert));
            }
            CertRef::Whole(cert) => self.peers.peer(&self.bundle, cert, now_s).map_err(|e| {
                ProofRefusal::Forged(format!(
                    "an answer for `{node}` with a refused certificate: {e}"
                ))
            })?,
            CertRef::Known(digest) => match self.peers.known(digest, now_s) {
                Some(peer) => (*digest, peer),
                None => {
                    return Err(match self.peers.lapsed(digest, now_s) {
                        Some(p) => match p.cert.certificate() {
                            Ok(cert) => {
                                self.expired(sweep_id, node, nonce, payload, &proof.mac, &cert)
                            }
                            Err(e) => ProofRefusal::Forged(format!(
                                "an answer for `{node}` with a refused certificate: {e}"
                            )),
                        },
                        None => ProofRefusal::Unknown,
                    })
                }
            },
        };
        check_mac(
            peer.cert.name(),
            &peer.key,
            sweep_id,
            node,
            nonce,
            payload,
            &proof.mac,
        )?;
        let key = peer.key.clone();
        if !peer.answered {
            // Looked up again only the first time.
            self.peers.mark_answered(&digest);
        }
        Ok(key)
    }

    /// Coordinator: what an answer proven by `cert`, which has expired,
    /// is: [`ProofRefusal::Expired`] when the bundle accepted `cert` at
    /// its last valid second (its chain, its role, not revoked) and the
    /// node's proof checks under it; forged otherwise. Costs a certificate
    /// check and an X25519 every time (an expired certificate is not
    /// cached), as a certificate not seen before does.
    fn expired(
        &self,
        sweep_id: u64,
        node: &str,
        nonce: u64,
        payload: &AnswerPayload,
        mac: &[u8],
        cert: &crate::trust::Certificate,
    ) -> ProofRefusal {
        let refused = |e: &dyn std::fmt::Display| {
            ProofRefusal::Forged(format!(
                "an answer for `{node}` with a refused certificate: {e}"
            ))
        };
        let verified = match self.bundle.verify(cert, "node", cert.body.not_after) {
            Ok(v) => v,
            Err(e) => return refused(&e),
        };
        let pair = match self.peers.derive(&verified) {
            Ok(pair) => pair,
            Err(e) => return refused(&e),
        };
        match check_mac(verified.name(), &pair, sweep_id, node, nonce, payload, mac) {
            Ok(()) => ProofRefusal::Expired {
                serial: cert.body.serial,
                not_after: cert.body.not_after,
            },
            Err(forged) => forged,
        }
    }
}

/// Whether the answer's `mac` is `node`'s proof by the node certificate it
/// names (whose name is `cert_name`) under `pair`.
fn check_mac(
    cert_name: &str,
    pair: &PairKey,
    sweep_id: u64,
    node: &str,
    nonce: u64,
    payload: &AnswerPayload,
    mac: &[u8],
) -> Result<(), ProofRefusal> {
    if cert_name != node {
        return Err(ProofRefusal::Forged(format!(
            "an answer for `{node}` proved by `{cert_name}`"
        )));
    }
    if !pair.check_answer(sweep_id, node, nonce, &payload.body, mac) {
        return Err(ProofRefusal::Forged(format!(
            "an answer for `{node}` whose proof does not check"
        )));
    }
    Ok(())
}
