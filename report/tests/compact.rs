//! The compact document holds the sample fleets losslessly: what the
//! report reads from it is what it would read from the document.

use patrol_checks::CompactDocument;
use patrol_report::sample;

#[test]
fn the_sample_fleets_survive_compaction_and_write_the_same_json() {
    let (previous, current) = sample::overflowing(300, 1_795_316_400_000);
    for doc in [
        sample::generate(2000, 40, 7),
        sample::with_roster(),
        previous,
        current,
    ] {
        let compact = CompactDocument::from_document(doc.clone());
        assert_eq!(compact.to_document(), doc);
        let json = serde_json::to_string(&doc).unwrap();
        assert_eq!(serde_json::to_string(&compact).unwrap(), json);
        // JSON does not tell a version from text, so compare what it says.
        let read: CompactDocument = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&read).unwrap(), json);
        let plain: patrol_checks::SweepDocument = serde_json::from_str(&json).unwrap();
        assert_eq!(read.to_document(), plain);
    }
}

#[test]
fn a_healthy_fleet_shares_one_template_per_check() {
    let doc = sample::generate(1000, 0, 3);
    let compact = CompactDocument::from_document(doc.clone());
    let distinct: std::collections::BTreeSet<&str> = doc
        .nodes
        .iter()
        .flat_map(|n| n.checks.iter().map(|c| c.id.as_str()))
        .collect();
    assert!(compact.catalog.templates().len() <= 2 * distinct.len());
}
