//! `patrol completions` and `patrol man` through the real binary: what the
//! .deb installs is rendered from the same clap definitions.

use std::process::Command;

fn patrol(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_patrol"))
        .args(args)
        .output()
        .expect("run the patrol binary")
}

#[test]
fn completions_for_each_shell_name_the_subcommands_and_their_flags() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef patrol"),
        ("fish", "complete -c patrol"),
    ] {
        let out = patrol(&["completions", shell]);
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(marker), "{shell}:\n{text}");
        for word in [
            "sweep",
            "members",
            "prometheus",
            "ndjson",
            "roster",
            "forget",
        ] {
            assert!(text.contains(word), "{shell} lacks {word}");
        }
    }
    assert!(!patrol(&["completions", "tcsh"]).status.success());
}

#[test]
fn man_writes_a_page_per_command_including_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let out = patrol(&["man", "--out", dir.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for page in [
        "patrol.1",
        "patrol-sweep.1",
        "patrol-keys-generate.1",
        "patrol-agent.1",
        "patrol-completions.1",
        "patrol-roster.1",
        "patrol-roster-forget.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(
            text.starts_with(".ie \\n(.g .ds Aq") || text.contains(".TH"),
            "{page} is not roff:\n{text}"
        );
    }
    let agent = std::fs::read_to_string(dir.path().join("patrol-agent.1")).unwrap();
    assert!(agent.contains("advertise"), "{agent}");
}
