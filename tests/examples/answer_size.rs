//! What a node's answer costs on the wire, before and after compact
//! answers: reads the JSON outcomes `patrol check --format json` prints and
//! encodes them as protocol 4 sent them (every outcome whole) and as
//! protocol 5 does (check names once, text only for checks that did not
//! pass), bare and with a node proof (whole certificate, or its digest),
//! with the datagrams each takes. Then the same outcomes as a healthy node
//! would give them (every status `pass`).
//!
//! ```text
//! patrol check --profile k8s-node --format json > /tmp/k8s.json
//! cargo run --release -p patrol-tests --example answer_size -- /tmp/k8s.json
//! ```

use std::collections::BTreeMap;

use patrol_checks::{CheckOutcome, Status};
use patrol_core::sweep::wire::CertRef;
use patrol_core::sweep::{AnswerBody, AnswerPayload, AnswerProof, SweepSettings};
use patrol_core::trust::testing::{ca_with, issued};
use patrol_core::trust::{cert_digest, Certificate, Role, SigningKey};

fn main() -> anyhow::Result<()> {
    let Some(path) = std::env::args().nth(1) else {
        anyhow::bail!("usage: answer_size OUTCOMES.json (from `patrol check --format json`)");
    };
    let outcomes: Vec<CheckOutcome> = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let cert = node_certificate("node-00042");
    println!("{} outcomes from {path}", outcomes.len());
    report("as measured", &outcomes, &cert);
    let healthy: Vec<CheckOutcome> = outcomes
        .iter()
        .cloned()
        .map(|o| CheckOutcome {
            status: Status::Pass,
            ..o
        })
        .collect();
    report("every check passing", &healthy, &cert);
    Ok(())
}

fn report(what: &str, outcomes: &[CheckOutcome], cert: &Certificate) {
    let settings = SweepSettings::default();
    let payload = settings.chunk_payload("node-00042".len());
    let pieces = |bytes: usize| bytes.div_ceil(payload);
    let tags = BTreeMap::<String, String>::new();
    let now = 1_800_000_000_000u64;
    let cfg = bincode::config::standard();
    let before =
        bincode::serde::encode_to_vec((&tags, now, 50u64, outcomes), cfg).map_or(0, |v| v.len());
    let body = AnswerBody::compact(tags, now, 50, outcomes.to_vec()).encode();
    let wrap = |cert: Option<CertRef>| {
        AnswerPayload {
            body: body.clone(),
            proof: cert.map(|cert| AnswerProof {
                cert,
                mac: vec![0; 32],
            }),
        }
        .encode()
        .len()
    };
    let bare = wrap(None);
    let whole = wrap(Some(CertRef::Whole(Box::new(cert.clone()))));
    let digest = wrap(Some(CertRef::Known(cert_digest(cert))));
    println!("{what}:");
    println!(
        "  protocol 4 (every outcome whole): {before} bytes, {} datagram(s)",
        pieces(before + 8)
    );
    println!(
        "  protocol 5 compact: body {} bytes; answer {bare} bytes ({} datagram(s)); with the whole certificate {whole} ({}); with its digest {digest} ({})",
        body.len(),
        pieces(bare),
        pieces(whole),
        pieces(digest)
    );
}

/// A node certificate of a throwaway CA, the size real ones have.
fn node_certificate(name: &str) -> Certificate {
    let ca = ca_with(
        SigningKey::from_bytes(&[1; 32]),
        "patrol-ca",
        1,
        0..u64::MAX / 2,
    );
    let key = SigningKey::from_bytes(&[2; 32]);
    let node = issued(
        &ca,
        key,
        Role::Node,
        name,
        1_000_042,
        1_700_000_000..1_900_000_000,
    );
    node.cert
}
