//! The two encodings of the model: bincode on the wire keeps every field
//! and every variant (and is byte-for-byte what the derived impls wrote
//! before JSON got its own shape, so mixed versions still understand each
//! other), while JSON is what a jq user would write by hand.

use std::collections::BTreeMap;

use patrol_model::{
    CheckOutcome, ClockOffset, NodeEntry, NodeState, Observed, Selector, Severity, Silence,
    StateCounts, Status, SweepDocument, SweepTiming, SwimState,
};
use proptest::prelude::*;
use serde::Serialize;

fn bincode_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap()
}

fn from_bincode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> T {
    let (value, used) =
        bincode::serde::decode_from_slice(bytes, bincode::config::standard()).unwrap();
    assert_eq!(used, bytes.len());
    value
}

fn outcome(id: &str, kind: &str, status: Status, observed: Observed) -> CheckOutcome {
    CheckOutcome {
        id: id.into(),
        kind: kind.into(),
        status,
        severity: Severity::Fail,
        observed,
        expected: String::new(),
        message: String::new(),
        duration_us: 42,
        description: String::new(),
        remediation: String::new(),
    }
}

fn document() -> SweepDocument {
    let mut failing = outcome(
        "vm.max_map_count",
        "sysctl",
        Status::Fail,
        Observed::Number(65530.0),
    );
    failing.expected = ">= 262144".into();
    failing.message = "observed 65530, expected >= 262144".into();
    failing.remediation = "sysctl -w vm.max_map_count=262144".into();
    let mut doc = SweepDocument {
        version: patrol_model::document::DOCUMENT_VERSION,
        sweep_id: "0123456789abcdef".into(),
        cluster: "prod".into(),
        coordinator: "n1".into(),
        operator: None,
        started_at_unix_ms: 1_795_316_400_000,
        deadline_ms: 5000,
        selector: Selector {
            checks: vec![],
            labels: vec![],
            profile: None,
        },
        node_filter: BTreeMap::new(),
        counts: StateCounts::default(),
        nodes: vec![
            NodeEntry {
                name: "n1".into(),
                addr: "127.0.0.1:7946".into(),
                tags: BTreeMap::from([("role".into(), "worker".into())]),
                state: NodeState::Failing,
                late_joiner: false,
                reached_ms: Some(2),
                answered_ms: Some(9),
                checks_ms: Some(5),
                checks: vec![
                    outcome("load", "memory", Status::Pass, Observed::Number(0.31)),
                    failing,
                    outcome(
                        "uptime",
                        "command",
                        Status::Pass,
                        Observed::Named(vec![
                            ("load1".into(), Observed::Number(0.31)),
                            ("users".into(), Observed::Number(3.0)),
                            ("state".into(), Observed::Text("fine".into())),
                        ]),
                    ),
                    outcome(
                        "mounts",
                        "disk",
                        Status::Pass,
                        Observed::List(vec![Observed::Text("/".into()), Observed::Number(1.5)]),
                    ),
                    outcome("clock", "clock", Status::Error, Observed::None),
                ],
                clock: Some(ClockOffset {
                    offset_ms: -3012,
                    bound_ms: 2,
                }),
                silence: None,
                swim: None,
            },
            NodeEntry {
                name: "n2".into(),
                addr: "127.0.0.1:7948".into(),
                tags: BTreeMap::new(),
                state: NodeState::NoAnswer,
                late_joiner: false,
                reached_ms: None,
                answered_ms: None,
                checks_ms: None,
                checks: vec![],
                clock: None,
                silence: Some(Silence {
                    last_heard_ago_ms: None,
                    swim: SwimState::Suspect,
                    backstop_requests: 2,
                }),
                swim: None,
            },
        ],
        timing: SweepTiming {
            reached_p50_ms: Some(2),
            reached_p99_ms: None,
            reached_max_ms: None,
            last_answer_ms: Some(9),
            completed_ms: 5000,
        },
        gone: vec![],
    };
    doc.recount();
    doc
}

#[test]
fn bincode_round_trips_the_whole_document_including_versions_and_absent_values() {
    let mut doc = document();
    doc.nodes[0].checks[0].observed = Observed::Version("1.31.2".into());
    doc.selector.profile = Some("k8s-node".into());
    let back: SweepDocument = from_bincode(&bincode_bytes(&doc));
    assert_eq!(back, doc);
}

#[test]
fn json_has_plain_observed_values_and_leaves_absent_fields_out() {
    let json = serde_json::to_value(document()).unwrap();
    let checks = &json["nodes"][0]["checks"];
    assert_eq!(checks[0]["observed"], serde_json::json!(0.31));
    assert_eq!(checks[1]["observed"], serde_json::json!(65530));
    assert!(
        checks[1]["observed"].is_i64(),
        "integral values print without .0"
    );
    assert_eq!(
        checks[2]["observed"],
        serde_json::json!({"load1": 0.31, "users": 3, "state": "fine"})
    );
    assert_eq!(checks[3]["observed"], serde_json::json!(["/", 1.5]));
    // Nothing observed, no message: the keys are simply not there.
    let clock = checks[4].as_object().unwrap();
    for absent in [
        "observed",
        "expected",
        "message",
        "description",
        "remediation",
    ] {
        assert!(!clock.contains_key(absent), "{absent} in {clock:?}");
    }
    assert_eq!(
        checks[1]["remediation"],
        "sysctl -w vm.max_map_count=262144"
    );
    let silent = json["nodes"][1].as_object().unwrap();
    for absent in ["reached_ms", "answered_ms", "checks_ms", "clock"] {
        assert!(!silent.contains_key(absent), "{absent} in {silent:?}");
    }
    assert_eq!(
        json["nodes"][1]["silence"],
        serde_json::json!({"swim": "suspect", "backstop_requests": 2})
    );
    assert_eq!(
        json["nodes"][0]["clock"],
        serde_json::json!({"offset_ms": -3012, "bound_ms": 2})
    );
    assert!(!json["nodes"][0]
        .as_object()
        .unwrap()
        .contains_key("silence"));
    assert_eq!(json["nodes"][1]["checks"], serde_json::json!([]));
    assert_eq!(json["selector"], serde_json::json!({}));
    assert_eq!(
        json["timing"],
        serde_json::json!({"reached_p50_ms": 2, "last_answer_ms": 9, "completed_ms": 5000})
    );
    // Named values keep their order in the text.
    let text = serde_json::to_string(&document()).unwrap();
    let (load1, users) = (
        text.find("\"load1\"").unwrap(),
        text.find("\"users\"").unwrap(),
    );
    assert!(load1 < users);
}

#[test]
fn json_round_trips_the_whole_document() {
    let doc = document();
    let back: SweepDocument = serde_json::from_str(&serde_json::to_string(&doc).unwrap()).unwrap();
    assert_eq!(back, doc);
}

#[test]
fn a_version_read_back_from_json_is_text_with_the_same_characters() {
    let v = Observed::Version("1.31.2".into());
    let json = serde_json::to_string(&v).unwrap();
    assert_eq!(json, "\"1.31.2\"");
    let back: Observed = serde_json::from_str(&json).unwrap();
    assert_eq!(back, Observed::Text("1.31.2".into()));
    assert_eq!(back.to_string(), v.to_string());
}

#[test]
fn a_version_1_document_reads_back_as_the_same_values() {
    // What `patrol sweep --format json` printed before version 2.
    let v1 = r#"{"version":1,"sweep_id":"01","cluster":"c","coordinator":"n1",
      "started_at_unix_ms":0,"deadline_ms":5000,
      "selector":{"checks":[],"labels":[],"profile":null},"node_filter":{},
      "counts":{"expected":1,"ok":0,"failing":1,"no_answer":0,"down":0,"late_joiners":0},
      "nodes":[{"name":"n1","addr":"a","tags":{},"state":"failing","late_joiner":false,
        "reached_ms":1,"answered_ms":2,"checks_ms":1,"checks":[
        {"id":"a","kind":"sysctl","status":"pass","severity":"fail","observed":{"number":0.31},"expected":"","message":"","duration_us":1,"description":"","remediation":""},
        {"id":"b","kind":"command","status":"pass","severity":"fail","observed":{"named":[["load1",{"number":0.31}],["who",{"text":"me"}]]},"expected":"","message":"","duration_us":1,"description":"","remediation":""},
        {"id":"c","kind":"kubelet_version","status":"pass","severity":"fail","observed":{"version":"1.31.2"},"expected":"","message":"","duration_us":1,"description":"","remediation":""},
        {"id":"d","kind":"disk","status":"error","severity":"fail","observed":"none","expected":"","message":"x","duration_us":1,"description":"","remediation":""},
        {"id":"e","kind":"disk","status":"pass","severity":"fail","observed":{"list":[{"number":1.0},{"text":"/"}]},"expected":"","message":"","duration_us":1,"description":"","remediation":""}
      ]}],
      "timing":{"reached_p50_ms":null,"reached_p99_ms":null,"reached_max_ms":null,"last_answer_ms":null,"completed_ms":3}}"#;
    let mut doc: SweepDocument = serde_json::from_str(v1).unwrap();
    doc.upgrade_from_v1();
    assert_eq!(doc.version, patrol_model::document::DOCUMENT_VERSION);
    let observed: Vec<Observed> = doc.nodes[0]
        .checks
        .iter()
        .map(|c| c.observed.clone())
        .collect();
    assert_eq!(
        observed,
        [
            Observed::Number(0.31),
            Observed::Named(vec![
                ("load1".into(), Observed::Number(0.31)),
                ("who".into(), Observed::Text("me".into())),
            ]),
            Observed::Version("1.31.2".into()),
            Observed::None,
            Observed::List(vec![Observed::Number(1.0), Observed::Text("/".into())]),
        ]
    );
    // A current document is left alone, even where it looks tagged.
    let mut current = document();
    current.nodes[0].checks[0].observed =
        Observed::Named(vec![("number".into(), Observed::Number(1.0))]);
    let before = current.clone();
    current.upgrade_from_v1();
    assert_eq!(current, before);
}

/// `Observed` exactly as it was declared before JSON got its own shape:
/// the wire must not change.
#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum DerivedObserved {
    None,
    Number(f64),
    Text(String),
    Version(String),
    List(Vec<DerivedObserved>),
    Named(Vec<(String, DerivedObserved)>),
}

#[derive(Serialize)]
struct DerivedOutcome {
    id: String,
    kind: String,
    status: Status,
    severity: Severity,
    observed: DerivedObserved,
    expected: String,
    message: String,
    duration_us: u64,
    description: String,
    remediation: String,
}

fn derived(o: &Observed) -> DerivedObserved {
    match o {
        Observed::None => DerivedObserved::None,
        Observed::Number(n) => DerivedObserved::Number(*n),
        Observed::Text(t) => DerivedObserved::Text(t.clone()),
        Observed::Version(v) => DerivedObserved::Version(v.clone()),
        Observed::List(l) => DerivedObserved::List(l.iter().map(derived).collect()),
        Observed::Named(n) => {
            DerivedObserved::Named(n.iter().map(|(k, v)| (k.clone(), derived(v))).collect())
        }
    }
}

fn observed() -> impl Strategy<Value = Observed> {
    let leaf = prop_oneof![
        Just(Observed::None),
        any::<f64>()
            .prop_filter("finite", |n| n.is_finite())
            .prop_map(Observed::Number),
        (-1_000_000i64..1_000_000).prop_map(|n| Observed::Number(n as f64)),
        ".{0,12}".prop_map(Observed::Text),
        "[0-9]{1,2}\\.[0-9]{1,2}\\.[0-9]{1,2}".prop_map(Observed::Version),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Observed::List),
            prop::collection::vec(("[a-z]{1,6}", inner), 0..4).prop_map(|v| {
                // JSON object keys are unique; perfdata labels are too.
                let mut seen = std::collections::BTreeSet::new();
                Observed::Named(
                    v.into_iter()
                        .filter(|(k, _)| seen.insert(k.clone()))
                        .collect(),
                )
            }),
        ]
    })
}

/// What JSON can keep of a value: versions become text.
fn as_json_keeps(o: &Observed) -> Observed {
    match o {
        Observed::Version(v) => Observed::Text(v.clone()),
        Observed::List(l) => Observed::List(l.iter().map(as_json_keeps).collect()),
        Observed::Named(n) => Observed::Named(
            n.iter()
                .map(|(k, v)| (k.clone(), as_json_keeps(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

proptest! {
    #[test]
    fn every_observed_value_round_trips_through_both_encodings(o in observed()) {
        let back: Observed = from_bincode(&bincode_bytes(&o));
        prop_assert_eq!(&back, &o);
        let back: Observed = serde_json::from_str(&serde_json::to_string(&o).unwrap()).unwrap();
        prop_assert_eq!(back, as_json_keeps(&o));
    }

    #[test]
    fn the_wire_bytes_are_those_of_the_derived_encoding(o in observed(), message in ".{0,8}") {
        prop_assert_eq!(bincode_bytes(&o), bincode_bytes(&derived(&o)));
        let mut full = outcome("id", "kind", Status::Warn, o.clone());
        full.message = message.clone();
        let old = DerivedOutcome {
            id: "id".into(),
            kind: "kind".into(),
            status: Status::Warn,
            severity: Severity::Fail,
            observed: derived(&o),
            expected: String::new(),
            message,
            duration_us: 42,
            description: String::new(),
            remediation: String::new(),
        };
        prop_assert_eq!(bincode_bytes(&full), bincode_bytes(&old));
    }
}
