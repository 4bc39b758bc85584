//! End to end through a real SMTP server on loopback (`smtp_sink.py`,
//! Debian python3-aiosmtpd): the report mail as received, parsed by an
//! independent MIME parser; and a failed send that keeps the report on
//! disk until `send_file` delivers it.

use std::path::Path;

use patrol_config::{Config, MailSection, SmtpSecurity};
use patrol_report::diff::Change;
use patrol_report::{build, email_sweep, send_file, PreviousSweep, ReportError};
use sha2::Digest;

mod common;
#[path = "common/smtp.rs"]
mod smtp;

use common::{day_one, day_two};
use smtp::{closed_port, SmtpSink};

const TO: [&str; 3] = [
    "ops-a@example.test",
    "ops-b@example.test",
    "oncall@example.test",
];

fn config(dir: &Path, port: u16) -> Config {
    let mut c = Config::default();
    c.report.history_dir = dir.join("history");
    c.report.out_dir = dir.join("reports");
    // The times the report shows, whatever this machine's zone.
    c.report.time_zone = Some("UTC".to_string());
    c.mail = Some(MailSection {
        smtp_host: Some("127.0.0.1".to_string()),
        smtp_port: Some(port),
        security: SmtpSecurity::Plain,
        username: None,
        password_file: None,
        from: "Patrol <patrol@fleet.example.test>".to_string(),
        to: TO.iter().map(|s| s.to_string()).collect(),
        subject_prefix: "[patrol]".to_string(),
        max_bytes: patrol_config::DEFAULT_MAIL_MAX_BYTES,
    });
    c
}

/// What askama makes of text in an HTML body.
fn escaped(s: &str) -> String {
    s.replace('&', "&#38;")
        .replace('<', "&#60;")
        .replace('>', "&#62;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs python3-aiosmtpd (a real SMTP server)"]
async fn the_report_mail_arrives_with_headers_both_parts_and_the_csv() {
    let sink = SmtpSink::start();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), sink.port);

    // Day one, then day two: the second mail carries the diff.
    let first = email_sweep(&day_one(), &cfg).await.expect("send day one");
    assert_eq!(first.sent_to, TO);
    assert_eq!(first.eml, None);
    let second = email_sweep(&day_two(), &cfg).await.expect("send day two");
    let mails = sink.wait_for(2);
    let mail = &mails[1];

    // Headers.
    assert_eq!(
        mail.header("Subject"),
        "[patrol] prod: 2 anomalies (1 new), 1 drift - 2026-11-23"
    );
    assert_eq!(mail.header("Subject"), second.files.subject);
    assert!(mail.header("From").contains("patrol@fleet.example.test"));
    let to = mail.header("To");
    for addr in TO {
        assert!(to.contains(addr), "{addr} missing from To: {to}");
    }
    assert!(mail.raw.contains("Date: "), "no Date header");
    assert!(mail.raw.contains("Message-ID: "), "no Message-ID header");
    // Envelope: one RCPT TO per recipient.
    assert_eq!(mail.envelope[0], "patrol@fleet.example.test");
    assert_eq!(&mail.envelope[1..], TO);

    // Structure: mixed( alternative(text, related(html, chart)), csv ).
    // Day two is the second sweep in the history: there is a trend.
    assert_eq!(
        mail.part_types(),
        [
            "multipart/mixed",
            "multipart/alternative",
            "text/plain",
            "multipart/related",
            "text/html",
            "image/png",
            "text/csv"
        ]
    );
    // The chart travels inline under its Content-ID, which the HTML names,
    // and is byte for byte the trend.png written next to report.html.
    let png = mail.part("image/png");
    assert_eq!(png["content_id"], "<trend.png@patrol>");
    assert_eq!(png["disposition"], "inline");
    assert!(mail
        .body("text/html")
        .contains(r#"<img src="cid:trend.png@patrol""#));
    let on_disk = std::fs::read(second.files.chart.as_ref().expect("a chart")).unwrap();
    assert_eq!(&on_disk[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(png["size"], on_disk.len());
    assert_eq!(
        png["sha256"],
        sha2::Sha256::digest(&on_disk)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    // One sweep is no trend: the first mail has no image.
    assert!(!mails[0].part_types().contains(&"image/png".to_string()));
    let csv_part = mail.part("text/csv");
    assert_eq!(csv_part["disposition"], "attachment");
    assert_eq!(csv_part["filename"], "anomalies.csv");

    // Bodies, decoded, equal what was written next to the report, but for
    // the footer: the files point to the folder, the mail to what it
    // attaches and to the folder on this host.
    let footer = |line: &str| line.contains("Full per-node detail") || line.contains("Attached: ");
    let body = |text: &str| -> Vec<String> {
        text.trim_end()
            .lines()
            .filter(|l| !footer(l))
            .map(str::to_string)
            .collect()
    };
    let text = std::fs::read_to_string(&second.files.text).unwrap();
    assert_eq!(body(&mail.body("text/plain")), body(&text));
    let mail_text = mail.body("text/plain");
    let mail_footer = mail_text.lines().find(|l| footer(l)).expect("a footer");
    assert!(
        mail_footer.starts_with("Attached: anomalies.csv")
            && mail_footer.contains(&second.files.dir.display().to_string()),
        "{mail_footer}"
    );
    // On disk the chart is the file beside the HTML, in the mail the part.
    let html = std::fs::read_to_string(&second.files.html).unwrap();
    assert!(html.contains(r#"<img src="trend.png""#));
    assert_eq!(
        body(&mail.body("text/html")),
        body(&html.replace(r#"src="trend.png""#, r#"src="cid:trend.png@patrol""#))
    );
    // The attachment is the rows worth reading, as written beside the
    // report; every node and check stays in nodes.csv there.
    let csv = patrol_report::attachment::anomalies_csv(&day_two());
    assert_eq!(
        std::fs::read_to_string(second.files.dir.join("anomalies.csv")).unwrap(),
        csv
    );
    assert_eq!(mail.body("text/csv"), csv.replace("\r\n", "\n"));
    assert!(
        csv.lines()
            .skip(1)
            .all(|l| l.split(',').nth(2) != Some("ok")),
        "{csv}"
    );
    assert_eq!(
        std::fs::read_to_string(&second.files.csv).unwrap(),
        patrol_report::attachment::csv(&day_two())
    );

    // The HTML holds every anomaly group with its mark, and the resolved one.
    let one = day_one();
    let report = build(
        &day_two(),
        Some(PreviousSweep {
            doc: &one,
            first_seen: None,
        }),
    );
    let body = mail.body("text/html");
    assert_eq!(report.groups.len(), 2);
    for g in &report.groups {
        assert!(
            body.contains(&escaped(&g.group.title())),
            "group `{}` missing from the HTML",
            g.group.title()
        );
    }
    assert!(report
        .groups
        .iter()
        .any(|g| matches!(g.change, Change::Persisting { .. })));
    assert!(body.contains("persisting since 2026-11-22"));
    assert!(body.contains("NEW"));
    assert!(body.contains("RESOLVED"));
    assert!(body.contains(&escaped("net.core.somaxconn = 128, expected >= 4096")));
    assert!(body.contains("vm.swappiness = 60 on 1 node, 0 on 4 others"));
    assert!(mail
        .body("text/plain")
        .contains("[persisting since 2026-11-22 03:00 UTC] fs.file-max = 65536"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs python3-aiosmtpd (a real SMTP server)"]
async fn an_unreachable_server_keeps_the_report_and_send_file_delivers_it_later() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), closed_port());
    let err = email_sweep(&day_one(), &cfg)
        .await
        .expect_err("nothing listens on that port");
    let ReportError::Send { dir, eml, .. } = &err else {
        panic!("expected a send error, got {err}");
    };
    let msg = err.to_string();
    assert!(msg.contains(&dir.display().to_string()), "{msg}");
    assert!(
        msg.contains(&format!("patrol report --send {}", eml.display())),
        "{msg}"
    );
    for f in [
        "report.html",
        "report.txt",
        "nodes.csv",
        "sweep.json",
        "message.eml",
    ] {
        assert!(dir.join(f).is_file(), "{f} not kept in {}", dir.display());
    }
    assert!(eml.starts_with(&cfg.report.out_dir));

    // Later, with the server back.
    let sink = SmtpSink::start();
    let cfg = config(tmp.path(), sink.port);
    let sent = send_file(eml, &cfg).await.expect("send the kept message");
    assert_eq!(sent.to, TO);
    // Renamed, so that a retry loop over */message.eml sends it only once.
    let renamed = sent.renamed.expect("renamed");
    assert_eq!(renamed, dir.join("message.sent.eml"));
    assert!(renamed.is_file() && !eml.exists());
    let mails = sink.wait_for(1);
    assert_eq!(
        mails[0].header("Subject"),
        "[patrol] prod: 2 anomalies (2 new), 2 unreachable, 1 drift - 2026-11-22"
    );
    assert_eq!(&mails[0].envelope[1..], TO);
    assert!(mails[0].body("text/html").contains("node-a, node-b"));
}

#[tokio::test]
async fn without_smtp_the_message_is_written_as_eml() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path(), 25);
    if let Some(m) = cfg.mail.as_mut() {
        m.smtp_host = None;
    }
    let d = email_sweep(&day_one(), &cfg).await.expect("write the eml");
    let eml = d.eml.expect("an .eml path");
    let raw = std::fs::read_to_string(&eml).unwrap();
    assert!(raw.contains("Subject: [patrol] prod: 2 anomalies"));
    assert!(raw.contains("multipart/alternative"));
    assert!(raw.contains("nodes.csv"));
    assert!(d.sent_to.is_empty());
    assert_eq!(eml.parent(), Some(d.files.dir.as_path()));
}

/// An attachment that alone is over `[mail] max_bytes` is gzipped from
/// the file on disk and counted, not kept: the message goes without it
/// and names its size (the gzip of `anomalies.csv` as written).
#[tokio::test]
async fn an_attachment_over_the_limit_by_itself_is_named_with_its_size_in_the_kept_message() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path(), 25);
    let max_bytes = 65_536; // the least the config accepts
    if let Some(m) = cfg.mail.as_mut() {
        m.smtp_host = None;
        m.max_bytes = max_bytes;
    }
    let doc = patrol_report::sample::generate(2_000, 40_000, 11);
    let d = email_sweep(&doc, &cfg).await.expect("write the eml");
    let csv = std::fs::read(d.files.dir.join("anomalies.csv")).unwrap();
    assert_eq!(
        csv,
        patrol_report::attachment::anomalies_csv(&doc).as_bytes()
    );
    let gz = gzip(&csv).len();
    assert!(gz as u64 > max_bytes, "{gz}: not over the limit alone");
    let raw = std::fs::read_to_string(d.eml.expect("an .eml path")).unwrap();
    assert!(raw.len() as u64 <= max_bytes, "{}", raw.len());
    assert!(!raw.contains("application/gzip"));
    // Quoted-printable: soft line breaks joined.
    let text = raw.replace("=\r\n", "");
    let rows = csv.iter().filter(|&&b| b == b'\n').count() - 1;
    assert!(
        text.contains(&format!(
            "The {rows} rows worth reading (anomalies.csv.gz, {gz} bytes) were not attached"
        )),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs python3-aiosmtpd (a real SMTP server)"]
async fn authenticates_with_the_password_file_and_a_wrong_password_keeps_the_report() {
    let sink = SmtpSink::start_with_auth("patrol", "s3cret pass");
    let tmp = tempfile::tempdir().unwrap();
    let password_file = tmp.path().join("smtp.password");
    let mut cfg = config(tmp.path(), sink.port);

    // A wrong password: refused, report kept.
    std::fs::write(&password_file, "wrong\n").unwrap();
    if let Some(m) = cfg.mail.as_mut() {
        m.username = Some("patrol".to_string());
        m.password_file = Some(password_file.clone());
    }
    let err = email_sweep(&day_one(), &cfg)
        .await
        .expect_err("wrong password");
    assert!(matches!(err, ReportError::Send { .. }), "{err}");
    assert_eq!(sink.count(), 0);

    // The right one (trailing newline of the file ignored): delivered.
    std::fs::write(&password_file, "s3cret pass\n").unwrap();
    let d = email_sweep(&day_one(), &cfg)
        .await
        .expect("authenticated send");
    assert_eq!(d.sent_to, TO);
    assert_eq!(sink.wait_for(1).len(), 1);
}

/// Regression: a server that accepts and then says nothing hung the send
/// for minutes.
#[tokio::test]
async fn a_silent_server_times_out_instead_of_hanging() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), port);
    let mail = cfg.mail.as_ref().unwrap();
    let message = patrol_report::mail::build_message(
        Some(mail),
        patrol_report::mail::Parts {
            subject: "s",
            text: "t",
            html: "<p>h</p>",
            attachment: None,
            chart_png: None,
        },
    )
    .unwrap();
    let started = std::time::Instant::now();
    let err =
        patrol_report::mail::send_within(mail, message, std::time::Duration::from_millis(500))
            .await
            .expect_err("the server never answers");
    assert!(err.contains("no answer within 0.5 s"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    hold.abort();
}

/// `security = "starttls"` (the default) never falls back to clear text:
/// a server that does not offer STARTTLS gets nothing, the report is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs python3-aiosmtpd (a real SMTP server)"]
async fn starttls_is_required_not_optional() {
    let sink = SmtpSink::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path(), sink.port);
    if let Some(m) = cfg.mail.as_mut() {
        m.security = SmtpSecurity::Starttls;
    }
    let err = email_sweep(&day_one(), &cfg)
        .await
        .expect_err("no STARTTLS on offer");
    let ReportError::Send { eml, .. } = &err else {
        panic!("expected a send error, got {err}");
    };
    assert!(eml.is_file());
    assert!(err.to_string().contains("STARTTLS"), "{err}");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(sink.count(), 0, "mail went out in clear text");
}

/// Regression (issue 24): the mail attached every node and check, 8.4 MB
/// at 10,000 nodes and 85 MB at 100,000, over Postfix's default 10 MB
/// limit. A 20,000-node sample fleet (about 17 MB the old way) now goes
/// through a server that refuses messages over 10 MB, with the rows worth
/// reading attached and gzipped, and the full detail left in the folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs python3-aiosmtpd (a real SMTP server)"]
async fn a_large_fleets_mail_stays_under_a_ten_megabyte_server_limit() {
    let limit = 10 * 1024 * 1024;
    let sink = SmtpSink::start_with_limit(limit);
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), sink.port);
    let doc = patrol_report::sample::generate(20_000, 4_000, 7);
    let full = patrol_report::attachment::csv(&doc);
    assert!(
        full.len() as u64 > limit,
        "the old attachment alone: {}",
        full.len()
    );

    let sent = email_sweep(&doc, &cfg).await.expect("delivered");
    assert_eq!(sent.sent_to.len(), TO.len());
    let mails = sink.wait_for(1);
    let raw = &mails[0].raw;
    assert!(
        (raw.len() as u64) < cfg.mail.as_ref().unwrap().max_bytes,
        "{}",
        raw.len()
    );
    let gz = mails[0].part("application/gzip");
    assert_eq!(gz["filename"], "anomalies.csv.gz");
    // The attachment is anomalies.csv, as written to the folder.
    let on_disk = std::fs::read(sent.files.dir.join("anomalies.csv")).unwrap();
    let sha = format!("{:x}", sha2::Sha256::digest(gzip(&on_disk)));
    assert_eq!(
        gz["sha256"],
        serde_json::Value::from(sha),
        "the attachment is the gzipped anomalies.csv"
    );
    assert_eq!(std::fs::read_to_string(&sent.files.csv).unwrap(), full);
    let text = mails[0].body("text/plain");
    assert!(
        text.contains("Attached: anomalies.csv.gz")
            && text.contains(&sent.files.dir.display().to_string()),
        "{text}"
    );
}

/// With a limit the attachment cannot fit under, the mail goes without
/// it and says so; it still arrives and stays under the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs python3-aiosmtpd (a real SMTP server)"]
async fn an_attachment_over_the_limit_is_left_out_and_the_mail_says_where_it_is() {
    let sink = SmtpSink::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path(), sink.port);
    let doc = patrol_report::sample::generate(5_000, 20_000, 11);
    let rows = patrol_report::attachment::anomalies_csv(&doc);
    // First with the default limit: attached. Then with a limit the
    // bodies fit under and the attachment does not.
    email_sweep(&doc, &cfg).await.expect("delivered");
    let first = &sink.wait_for(1)[0];
    let attached = first.part("application/gzip")["size"].as_u64().unwrap();
    let max_bytes = first.raw.len() as u64 - attached / 2;
    cfg.mail.as_mut().unwrap().max_bytes = max_bytes;
    let sent = email_sweep(&doc, &cfg).await.expect("delivered");
    let mail = &sink.wait_for(2)[1];
    assert!((mail.raw.len() as u64) <= max_bytes, "{}", mail.raw.len());
    assert!(
        !mail
            .part_types()
            .iter()
            .any(|t| t == "application/gzip" || t == "text/csv"),
        "{:?}",
        mail.part_types()
    );
    let text = mail.body("text/plain");
    assert!(text.contains("were not attached"), "{text}");
    assert!(text.contains("[mail] max_bytes"), "{text}");
    assert_eq!(
        std::fs::read_to_string(sent.files.dir.join("anomalies.csv")).unwrap(),
        rows
    );
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}
