//! `history::read_document` reads a sweep document node by node into its
//! compact form (issue 25). What it reads must be exactly what the whole
//! read it replaced (`serde_json::from_slice` of a `SweepDocument`, then
//! `upgrade_from_v1`) gave: for the sample fleets, for fields it does not
//! know, for version 1; and a broken file must be an error that names the
//! file and the place.

use std::path::Path;

use patrol_checks::SweepDocument;
use patrol_report::history::read_document;
use patrol_report::{sample, ReportError};
use serde_json::Value;

/// The read the streaming one replaced: the whole file, then the upgrade.
fn whole_read(bytes: &[u8]) -> SweepDocument {
    let mut doc: SweepDocument = serde_json::from_slice(bytes).unwrap();
    doc.upgrade_from_v1();
    doc
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn samples() -> Vec<SweepDocument> {
    let (previous, current) = sample::overflowing(300, 1_795_316_400_000);
    vec![
        sample::generate(500, 40, 7),
        sample::with_roster(),
        previous,
        current,
    ]
}

#[test]
fn the_streaming_read_gives_the_document_the_whole_read_gave() {
    let dir = tempfile::tempdir().unwrap();
    for (i, doc) in samples().into_iter().enumerate() {
        for (form, bytes) in [
            ("pretty", serde_json::to_vec_pretty(&doc).unwrap()),
            ("plain", serde_json::to_vec(&doc).unwrap()),
        ] {
            let path = write(dir.path(), &format!("{i}-{form}.json"), &bytes);
            let read = read_document(&path).unwrap().to_document();
            assert_eq!(read, whole_read(&bytes), "sample {i}, {form}");
            // JSON does not tell a version from text: compare what it says.
            assert_eq!(
                serde_json::to_string(&read).unwrap(),
                serde_json::to_string(&doc).unwrap(),
                "sample {i}, {form}"
            );
        }
    }
}

/// Every observed value of `v` (a document as JSON) as version 1 wrote it:
/// externally tagged, `"none"` for nothing.
fn to_v1(observed: &Value) -> Value {
    match observed {
        Value::Null => Value::from("none"),
        Value::Number(_) => serde_json::json!({ "number": observed }),
        Value::String(_) => serde_json::json!({ "text": observed }),
        Value::Array(items) => {
            serde_json::json!({ "list": items.iter().map(to_v1).collect::<Vec<_>>() })
        }
        Value::Object(named) => serde_json::json!({
            "named": named
                .iter()
                .map(|(k, v)| serde_json::json!([k, to_v1(v)]))
                .collect::<Vec<_>>()
        }),
        Value::Bool(_) => observed.clone(),
    }
}

#[test]
fn unknown_fields_are_ignored_and_version_one_is_upgraded_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let doc = sample::generate(60, 12, 3);
    let mut v = serde_json::to_value(&doc).unwrap();
    v["added_later"] = serde_json::json!({ "nested": [1, 2, { "x": null }] });
    for n in v["nodes"].as_array_mut().unwrap() {
        n["future"] = Value::from("x");
        for c in n["checks"].as_array_mut().unwrap() {
            c["also_future"] = Value::from(7);
        }
    }
    let bytes = serde_json::to_vec(&v).unwrap();
    let path = write(dir.path(), "unknown.json", &bytes);
    let read = read_document(&path).unwrap().to_document();
    assert_eq!(read, whole_read(&bytes));
    let json = serde_json::to_string(&doc).unwrap();
    assert_eq!(serde_json::to_string(&read).unwrap(), json);

    v["version"] = Value::from(1);
    for n in v["nodes"].as_array_mut().unwrap() {
        for c in n["checks"].as_array_mut().unwrap() {
            c["observed"] = to_v1(&c["observed"]);
        }
    }
    let bytes = serde_json::to_vec(&v).unwrap();
    let path = write(dir.path(), "v1.json", &bytes);
    let read = read_document(&path).unwrap().to_document();
    assert_eq!(read.version, 2);
    assert_eq!(read, whole_read(&bytes));
    assert_eq!(
        serde_json::to_string(&read).unwrap(),
        json,
        "version 1 reads as the version 2 it stands for"
    );
}

#[test]
fn a_broken_file_is_an_error_naming_the_file_and_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = serde_json::to_vec_pretty(&sample::generate(20, 4, 1)).unwrap();

    let cut = write(dir.path(), "cut.json", &bytes[..bytes.len() / 2]);
    let err = read_document(&cut).unwrap_err();
    assert!(matches!(err, ReportError::Document { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("cut.json"), "{text}");
    assert!(text.contains("line") && text.contains("column"), "{text}");

    let mut trailing = bytes.clone();
    trailing.extend_from_slice(b"\n{}");
    let trailing = write(dir.path(), "trailing.json", &trailing);
    let text = read_document(&trailing).unwrap_err().to_string();
    assert!(text.contains("trailing.json"), "{text}");
    assert!(text.contains("trailing characters"), "{text}");
    // The whole read refused it too.
    assert!(serde_json::from_slice::<SweepDocument>(&std::fs::read(&trailing).unwrap()).is_err());

    let mut v: Value = serde_json::from_slice(&bytes).unwrap();
    v["nodes"][3]["state"] = Value::from("sleeping");
    let bad = write(dir.path(), "bad.json", &serde_json::to_vec(&v).unwrap());
    let text = read_document(&bad).unwrap_err().to_string();
    assert!(
        text.contains("bad.json") && text.contains("sleeping"),
        "{text}"
    );

    v["nodes"][3]["state"] = Value::from("ok");
    v["version"] = Value::from(99);
    let newer = write(dir.path(), "newer.json", &serde_json::to_vec(&v).unwrap());
    let err = read_document(&newer).unwrap_err();
    assert!(
        matches!(err, ReportError::DocumentVersion { found: 99, .. }),
        "{err:?}"
    );

    let missing = read_document(&dir.path().join("absent.json")).unwrap_err();
    assert!(missing.to_string().contains("absent.json"), "{missing}");
}
