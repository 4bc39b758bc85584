//! Text from nodes is untrusted (issue 12): a sweep document whose node
//! names, tags, check ids, messages, observed values and remediation carry
//! terminal escape sequences (`ESC ]0;pwned BEL` sets the window title,
//! `ESC [2J` clears the screen), carriage returns and newlines that forge
//! rows, bidi overrides and spreadsheet formulas, through the real binary:
//! `patrol sweep --from` (flat and grouped tables, distributions),
//! `patrol report` (text, HTML, CSV) and `patrol history` print no
//! control or bidi character and show each one as a visible escape; the
//! CSV's formula cells start with `'` while numbers stay numbers; the JSON
//! keeps the exact bytes.

use std::path::Path;
use std::process::{Command, Output};

use patrol_checks::printable::is_unsafe;
use patrol_checks::{NodeState, Observed, Status, SweepDocument};
use patrol_config::Config;
use patrol_report::sample::{document, node, outcome};

const T0: u64 = 1_795_316_400_000; // 2026-11-22 03:00 UTC
/// Sets the terminal's window title.
const OSC: &str = "\x1b]0;pwned\x07";
/// Clears the screen.
const CLEAR: &str = "\x1b[2J";
/// Right-to-left override and left-to-right isolate.
const RLO: &str = "\u{202e}";
const LRI: &str = "\u{2066}";

fn patrol(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_patrol"))
        .args(args)
        .env("PATROL_LOG", "error")
        .env("TZ", "UTC")
        .output()
        .expect("run the patrol binary")
}

/// A failing outcome with hostile text in every field a node fills.
fn poisoned() -> patrol_checks::CheckOutcome {
    let mut c = outcome(
        "+cmd",
        Status::Fail,
        Observed::Text(format!("=HYPERLINK(\"http://evil.example\",\"{OSC}x\")")),
        ">= 2",
    );
    c.message = format!("@SUM(1){CLEAR}\r\nforged  ok  {RLO}gpj.exe <script>alert(1)</script>");
    c.expected = format!("{LRI}=1+1");
    c.remediation = format!("{OSC}rm -rf / <script>alert(2)</script>");
    c
}

/// `extra` more poisoned nodes beyond the three hand-made ones (over 40
/// makes the sweep table group its rows).
fn hostile(extra: usize) -> SweepDocument {
    let mut negative = outcome("temp", Status::Warn, Observed::Number(-3.0), ">= 0");
    negative.message = "-3 is below zero".into();
    let role = format!("{RLO}worker");
    let mut silent = node(&format!("silent{CLEAR}"), &[], NodeState::NoAnswer, vec![]);
    // A cluster that could not be swept carries its reason as a message.
    silent.checks.push(outcome(
        "patrol.reachable",
        Status::Error,
        Observed::None,
        "",
    ));
    silent.checks[0].message = format!("agent said: {OSC}\nforged line");
    let mut nodes = vec![
        node(
            &format!("evil{OSC}"),
            &[("role", &role), ("=x", "+y")],
            NodeState::Ok,
            vec![poisoned(), negative],
        ),
        node("csi\u{9b}31m", &[], NodeState::Ok, vec![poisoned()]),
        node(&format!("down{CLEAR}"), &[], NodeState::Down, vec![]),
        silent,
    ];
    for i in 0..extra {
        nodes.push(node(
            &format!("n{i:03}{OSC}"),
            &[("role", &role)],
            NodeState::Ok,
            vec![poisoned()],
        ));
    }
    let mut doc = document(&format!("prod{OSC}"), "0123456789abcdef", T0, nodes);
    doc.coordinator = format!("coord{CLEAR}");
    doc.selector.profile = Some(format!("k8s{OSC}"));
    doc
}

fn write(dir: &Path, name: &str, doc: &SweepDocument) -> (String, Vec<u8>) {
    let path = dir.join(name);
    let bytes = serde_json::to_vec_pretty(doc).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    (path.to_str().unwrap().to_string(), bytes)
}

/// Fails naming the first character a terminal would act on (anything
/// unsafe but the newlines that end lines).
fn assert_printable(what: &str, text: &str) {
    if let Some((at, c)) = text
        .char_indices()
        .find(|&(_, c)| c != '\n' && is_unsafe(c, false))
    {
        panic!("{what}: {c:?} at byte {at}:\n{text}");
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("UTF-8 output")
}

#[test]
fn sweep_tables_of_a_hostile_document_print_no_control_or_bidi_character() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, grouped) in [(0, false), (60, true)] {
        let (file, _) = write(dir.path(), &format!("s{extra}.json"), &hostile(extra));
        for args in [
            &["sweep", "--from", &file][..],
            &["sweep", "--from", &file, "--all"],
            &["sweep", "--from", &file, "--distribution", "+cmd"],
        ] {
            let out = patrol(args);
            let text = stdout(&out);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {text}");
            assert_printable(&format!("{args:?}"), &text);
            assert_eq!(
                text.contains("share a row"),
                grouped && !args.contains(&"--all"),
                "{args:?}: {text}"
            );
            // The text is still there, visibly escaped.
            assert!(text.contains("coord\\x1b[2J"), "{args:?}: {text}");
            assert!(
                text.contains("@SUM(1)\\x1b[2J\\r\\nforged  ok  \\u{202e}gpj.exe"),
                "{args:?}: {text}"
            );
            // A forged line never starts a row of its own.
            assert!(!text.lines().any(|l| l.starts_with("forged")), "{text}");
        }
        let all = stdout(&patrol(&["sweep", "--from", &file, "--all"]));
        assert!(all.contains("evil\\x1b]0;pwned\\x07"), "{all}");
        assert!(all.contains("csi\\u{9b}31m"), "{all}");
        assert!(all.contains("agent said: \\x1b]0;pwned\\x07\\nforged line"));
        let dist = stdout(&patrol(&[
            "sweep",
            "--from",
            &file,
            "--distribution",
            "+cmd",
        ]));
        assert!(
            dist.contains("=HYPERLINK(\"http://evil.example\",\"\\x1b]0;pwned\\x07x\")"),
            "{dist}"
        );
    }
}

#[test]
fn sweep_json_of_a_hostile_document_keeps_the_exact_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let doc = hostile(2);
    let (file, bytes) = write(dir.path(), "s.json", &doc);
    let out = patrol(&["sweep", "--from", &file, "--format", "json"]);
    // serde_json writes ESC as \u001b: the bytes are those of the file,
    // and the text reads back exactly.
    assert_eq!(out.stdout, [&bytes[..], b"\n"].concat());
    assert!(String::from_utf8_lossy(&out.stdout).contains("evil\\u001b]0;pwned\\u0007"));
    let back: SweepDocument = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(back, doc);
    let ndjson = patrol(&["sweep", "--from", &file, "--format", "ndjson"]);
    let first: patrol_checks::NodeEntry =
        serde_json::from_str(stdout(&ndjson).lines().next().unwrap()).unwrap();
    assert_eq!(first, doc.nodes[0]);
}

#[test]
fn report_text_html_and_csv_of_a_hostile_document_are_neutralised() {
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = write(dir.path(), "s.json", &hostile(0));
    let html = dir.path().join("r.html");
    let csv = dir.path().join("r.csv");
    let out = patrol(&[
        "report",
        &file,
        "--against",
        &file,
        "--text",
        "--html",
        html.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    assert_printable("text report", &text);
    assert!(text.contains("rm -rf /"), "{text}");
    assert!(text.contains("\\x1b]0;pwned\\x07rm -rf /"), "{text}");
    assert!(
        text.starts_with("[patrol] prod\\x1b]0;pwned\\x07: "),
        "the subject line: {text}"
    );

    let html = std::fs::read_to_string(&html).unwrap();
    assert_printable("HTML report", &html.replace(['\n', '\t', '\r'], " "));
    assert!(!html.contains("<script>"), "{html}");
    assert!(
        html.contains("&lt;script&gt;") || html.contains("&#60;script&#62;"),
        "the remediation is in the HTML, escaped"
    );
    assert!(html.contains("evil\\x1b]0;pwned\\x07"), "{html}");

    let bytes = std::fs::read(&csv).unwrap();
    let mut reader = csv::ReaderBuilder::new().from_reader(&bytes[..]);
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect();
    for cell in rows.iter().flatten() {
        assert!(!cell.chars().any(|c| is_unsafe(c, true)), "{cell:?}");
        match cell.chars().next() {
            Some('=' | '+' | '@' | '\t' | '\r') => panic!("formula cell {cell:?}"),
            Some('-') => assert!(cell.parse::<f64>().is_ok(), "formula cell {cell:?}"),
            _ => {}
        }
    }
    let evil = rows
        .iter()
        .find(|r| r[0].starts_with("evil") && r[4] == "'+cmd")
        .expect("the poisoned row, its check id quoted");
    assert_eq!(evil[0], "evil\\x1b]0;pwned\\x07");
    assert_eq!(evil[3], "'=x=+y;role=\\u{202e}worker");
    assert_eq!(
        evil[7],
        "'=HYPERLINK(\"http://evil.example\",\"\\x1b]0;pwned\\x07x\")"
    );
    assert_eq!(evil[8], "\\u{2066}=1+1");
    assert!(
        evil[9].starts_with("'@SUM(1)\\x1b[2J\\r\nforged"),
        "{:?}",
        evil[9]
    );
    let negative = rows
        .iter()
        .find(|r| r[4] == "temp")
        .expect("the negative reading");
    assert_eq!(negative[7], "-3", "a number stays a number");
    assert_eq!(negative[9], "'-3 is below zero");
}

#[test]
fn history_of_a_hostile_node_prints_no_control_or_bidi_character() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history");
    let mut cfg = Config::default();
    cfg.report.history_dir = history.clone();
    patrol_report::write_report(&hostile(0), &cfg, &dir.path().join("r")).unwrap();
    let h = history.to_str().unwrap();
    let name = format!("evil{OSC}");
    let node = patrol(&["history", "node", &name, "--history-dir", h]);
    let text = stdout(&node);
    assert!(node.status.success(), "{text}");
    assert_printable("history node", &text);
    assert!(text.contains("evil\\x1b]0;pwned\\x07"), "{text}");
    assert!(text.contains("@SUM(1)\\x1b[2J"), "{text}");
    let check = patrol(&["history", "check", "+cmd", "--history-dir", h]);
    let text = stdout(&check);
    assert!(check.status.success(), "{text}");
    assert_printable("history check", &text);
    assert!(
        text.contains("profile k8s\\x1b]0;pwned\\x07"),
        "the scope names the selector: {text}"
    );
}
