//! The compact document gives back exactly the document it was made from,
//! writes exactly its JSON, reads it back from JSON node by node, and
//! refuses a compact form whose checks do not decode.

use std::collections::BTreeMap;

use patrol_model::compact::MAX_CATALOG;
use patrol_model::{
    CheckOutcome, ClockOffset, CompactDocument, GoneNode, NodeEntry, NodeState, Observed, Selector,
    Severity, Silence, StateCounts, Status, SweepDocument, SweepTiming, SwimState,
};

fn outcome(id: &str, status: Status, observed: Observed) -> CheckOutcome {
    CheckOutcome {
        id: id.into(),
        kind: "sysctl".into(),
        status,
        severity: Severity::Fail,
        observed,
        expected: String::new(),
        message: String::new(),
        duration_us: 0,
        description: String::new(),
        remediation: String::new(),
    }
}

fn node(name: &str, state: NodeState, checks: Vec<CheckOutcome>) -> NodeEntry {
    NodeEntry {
        name: name.into(),
        addr: "10.0.0.1:7946".into(),
        tags: BTreeMap::from([("zone".into(), "z1".into())]),
        state,
        late_joiner: false,
        reached_ms: Some(3),
        answered_ms: Some(9),
        checks_ms: Some(2),
        checks,
        clock: Some(ClockOffset {
            offset_ms: -4,
            bound_ms: 1,
        }),
        silence: None,
        swim: None,
    }
}

/// Every status, every observed variant, duplicate ids with different
/// templates, the same id twice in one node, empty and non-empty text.
fn edge_cases() -> SweepDocument {
    let mut passing_with_text = outcome("a", Status::Pass, Observed::Number(1.5));
    passing_with_text.expected = ">= 1".into();
    passing_with_text.message = "observed 1.5".into();
    passing_with_text.description = "what a is".into();
    passing_with_text.remediation = "raise a".into();
    passing_with_text.duration_us = 17;
    passing_with_text.severity = Severity::Warn;
    let mut other_kind = outcome("a", Status::Pass, Observed::Text(String::new()));
    other_kind.kind = "command".into();
    let mut failing = outcome("b", Status::Fail, Observed::Number(65530.0));
    failing.expected = ">= 262144".into();
    failing.message = "observed 65530, expected >= 262144".into();
    let checks = vec![
        outcome("a", Status::Pass, Observed::Number(1.0)),
        passing_with_text,
        other_kind,
        outcome("a", Status::Pass, Observed::None),
        failing,
        outcome("c", Status::Warn, Observed::Version("1.2.3".into())),
        outcome("d", Status::Error, Observed::None),
        outcome(
            "e",
            Status::Pass,
            Observed::List(vec![Observed::Number(-0.25), Observed::Text("x".into())]),
        ),
        outcome(
            "",
            Status::Pass,
            Observed::Named(vec![("load1".into(), Observed::Number(0.31))]),
        ),
    ];
    let mut silent = node("n3", NodeState::NoAnswer, vec![]);
    silent.reached_ms = None;
    silent.answered_ms = None;
    silent.checks_ms = None;
    silent.clock = None;
    silent.silence = Some(Silence {
        last_heard_ago_ms: Some(1200),
        swim: SwimState::Suspect,
        backstop_requests: 2,
    });
    let mut late = node(
        "n4",
        NodeState::Ok,
        vec![outcome("a", Status::Pass, Observed::Number(2.0))],
    );
    late.late_joiner = true;
    late.swim = Some(SwimState::Down);
    late.tags.clear();
    let mut doc = SweepDocument {
        version: patrol_model::document::DOCUMENT_VERSION,
        sweep_id: "0123456789abcdef".into(),
        cluster: "prod".into(),
        coordinator: "n1".into(),
        operator: Some("alice".into()),
        started_at_unix_ms: 1_795_316_400_000,
        deadline_ms: 5000,
        selector: Selector::default(),
        node_filter: BTreeMap::from([("zone".into(), "z1".into())]),
        counts: StateCounts::default(),
        nodes: vec![
            node("n1", NodeState::Failing, checks.clone()),
            node("n2", NodeState::Ok, checks[..4].to_vec()),
            silent,
            late,
            node("n5", NodeState::Down, vec![]),
        ],
        timing: SweepTiming {
            reached_p50_ms: Some(3),
            reached_p99_ms: None,
            reached_max_ms: Some(3),
            last_answer_ms: Some(9),
            completed_ms: 10,
        },
        gone: vec![GoneNode {
            name: "old".into(),
            addr: "10.0.0.9:7946".into(),
            reason: "left".into(),
            last_seen_unix_ms: 1,
            gone_unix_ms: 2,
        }],
    };
    doc.recount();
    doc
}

fn bincode_round_trip(doc: &CompactDocument) -> CompactDocument {
    let bytes = bincode::serde::encode_to_vec(doc, bincode::config::standard()).unwrap();
    let (back, used): (CompactDocument, usize) =
        bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
    assert_eq!(used, bytes.len());
    back
}

#[test]
fn a_compact_document_gives_back_exactly_the_document() {
    let doc = edge_cases();
    let compact = CompactDocument::from_document(doc.clone());
    assert_eq!(compact.to_document(), doc);
    for (i, n) in doc.nodes.iter().enumerate() {
        assert_eq!(compact.expand_node(i).as_ref(), Some(n));
    }
    assert_eq!(compact.expand_node(doc.nodes.len()), None);
    // Passing checks share templates: `a` twice (two kinds, and one with
    // its own text), `e`, the empty id; failing ones are kept whole.
    assert_eq!(compact.catalog.templates().len(), 5);
    let mut recounted = compact.clone();
    recounted.recount();
    assert_eq!(recounted.counts, doc.counts);
}

#[test]
fn the_compact_json_is_the_documents_json_byte_for_byte() {
    let doc = edge_cases();
    let compact = CompactDocument::from_document(doc.clone());
    let json = serde_json::to_string(&doc).unwrap();
    assert_eq!(serde_json::to_string(&compact).unwrap(), json);
    assert_eq!(
        serde_json::to_string_pretty(&compact).unwrap(),
        serde_json::to_string_pretty(&doc).unwrap()
    );
    let read: CompactDocument = serde_json::from_str(&json).unwrap();
    assert_eq!(
        read.to_document(),
        serde_json::from_str::<SweepDocument>(&json).unwrap()
    );
    assert_eq!(serde_json::to_string(&read).unwrap(), json);
}

#[test]
fn json_with_unknown_fields_in_any_order_reads_like_the_document() {
    let json = r#"{"nodes":[],"extra":{"x":[1]},"version":2,"sweep_id":"s","cluster":"c",
        "coordinator":"n","started_at_unix_ms":1,"deadline_ms":2,"selector":{"checks":[]},
        "node_filter":{},"counts":{"expected":0,"ok":0,"failing":0,"no_answer":0,"down":0,"late_joiners":0},
        "timing":{"completed_ms":3}}"#;
    let doc: SweepDocument = serde_json::from_str(json).unwrap();
    let compact: CompactDocument = serde_json::from_str(json).unwrap();
    assert_eq!(compact.to_document(), doc);
    let missing = json.replace(r#""cluster":"c","#, "");
    assert!(serde_json::from_str::<CompactDocument>(&missing)
        .unwrap_err()
        .to_string()
        .contains("cluster"));
}

#[test]
fn a_version_1_document_is_upgraded_like_the_document() {
    let v2 = serde_json::to_string(&edge_cases()).unwrap();
    let json = v2
        .replacen(r#""version":2"#, r#""version":1"#, 1)
        .replace(r#""observed":65530"#, r#""observed":{"number":65530}"#);
    assert!(json.contains(r#"{"number":65530}"#));
    let mut doc: SweepDocument = serde_json::from_str(&json).unwrap();
    let mut compact: CompactDocument = serde_json::from_str(&json).unwrap();
    doc.upgrade_from_v1();
    compact.upgrade_from_v1();
    assert_eq!(compact.to_document(), doc);
    assert_eq!(serde_json::to_string(&compact).unwrap(), v2);
}

#[test]
fn the_compact_form_survives_the_wire() {
    let compact = CompactDocument::from_document(edge_cases());
    assert_eq!(bincode_round_trip(&compact), compact);
}

#[test]
fn a_compact_form_whose_checks_name_no_template_is_refused() {
    let mut doc = edge_cases();
    doc.nodes.truncate(2);
    let compact = CompactDocument::from_document(doc);
    let bytes = bincode::serde::encode_to_vec(&compact, bincode::config::standard()).unwrap();
    // The catalog is written just before the nodes: an empty one leaves
    // every shared check pointing nowhere.
    let mut no_catalog = compact.clone();
    no_catalog.catalog = Default::default();
    let forged = bincode::serde::encode_to_vec(&no_catalog, bincode::config::standard()).unwrap();
    assert!(forged.len() < bytes.len());
    let err = bincode::serde::decode_from_slice::<CompactDocument, _>(
        &forged,
        bincode::config::standard(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("not in the catalog"), "{err}");
    // Tag sets likewise.
    let mut untagged = compact.clone();
    untagged.catalog = patrol_model::compact::Catalog::default();
    for n in &mut untagged.nodes {
        n.checks = Default::default();
    }
    let forged = bincode::serde::encode_to_vec(&untagged, bincode::config::standard()).unwrap();
    let err = bincode::serde::decode_from_slice::<CompactDocument, _>(
        &forged,
        bincode::config::standard(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("tag set"), "{err}");
    // Every truncation is refused, never a panic.
    for cut in 0..bytes.len() {
        assert!(bincode::serde::decode_from_slice::<CompactDocument, _>(
            &bytes[..cut],
            bincode::config::standard()
        )
        .is_err());
    }
}

#[test]
fn the_pieces_are_the_compact_encoding_cut_at_any_size() {
    let compact = CompactDocument::from_document(edge_cases());
    let whole = bincode::serde::encode_to_vec(&compact, bincode::config::standard()).unwrap();
    for piece in [
        1,
        7,
        64,
        whole.len() - 1,
        whole.len(),
        whole.len() + 1,
        1 << 22,
    ] {
        let pieces: Vec<Vec<u8>> = compact.clone().into_pieces(piece).collect();
        assert!(!pieces.is_empty());
        assert!(pieces.iter().all(|p| p.len() <= piece));
        assert!(pieces[..pieces.len() - 1].iter().all(|p| p.len() == piece));
        assert_eq!(pieces.concat(), whole, "pieces of {piece}");
    }
}

#[test]
fn nodes_with_the_same_tags_share_a_tag_set() {
    let compact = CompactDocument::from_document(edge_cases());
    // Four nodes tagged zone=z1, one (the late joiner) untagged.
    assert_eq!(compact.catalog.tag_sets().len(), 2);
    assert_eq!(compact.nodes[0].tags, compact.nodes[4].tags);
    assert!(compact.catalog.tags(compact.nodes[3].tags).is_empty());
}

#[test]
fn a_check_with_a_message_of_many_megabytes_still_expands() {
    let mut doc = edge_cases();
    let mut long = outcome("long", Status::Pass, Observed::Text("x".repeat(1 << 20)));
    long.message = "m".repeat(17 << 20);
    doc.nodes[1].checks.push(long);
    let compact = CompactDocument::from_document(doc.clone());
    assert_eq!(compact.expand_node(1).as_ref(), Some(&doc.nodes[1]));
    assert_eq!(bincode_round_trip(&compact), compact);
}

#[test]
fn a_full_catalog_keeps_further_passing_checks_whole() {
    let mut catalog = patrol_model::compact::Catalog::default();
    let checks: Vec<CheckOutcome> = (0..MAX_CATALOG + 3)
        .map(|i| outcome(&format!("c{i}"), Status::Pass, Observed::Number(i as f64)))
        .collect();
    let packed = catalog.pack(&checks);
    assert_eq!(catalog.templates().len(), MAX_CATALOG);
    assert_eq!(packed.expand(&catalog), checks);
}
