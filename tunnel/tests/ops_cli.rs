//! The `tgp` command's operations helpers: shell completions and manual
//! pages generated from the clap definitions, and the new subcommands'
//! behaviour without a daemon.

use std::path::Path;
use std::process::{Command, Output};

fn tgp(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tgp"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run tgp")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn completions_cover_every_subcommand_and_flag() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = tgp(&["completions", shell], dir.path());
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        for word in [
            "genkey", "pubkey", "check", "up", "status", "reload", "down", "json",
        ] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let out = tgp(&["completions", "tcsh"], dir.path());
    assert!(!out.status.success(), "an unknown shell is refused");
}

#[test]
fn man_pages_are_written_for_the_command_and_each_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = tgp(&["man", "pages"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pages = dir.path().join("pages");
    for page in [
        "tgp.1",
        "tgp-up.1",
        "tgp-status.1",
        "tgp-reload.1",
        "tgp-down.1",
        "tgp-completions.1",
    ] {
        let roff =
            std::fs::read_to_string(pages.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(
            roff.starts_with(".ie") || roff.contains(".TH"),
            "{page} is not roff"
        );
    }
    let main = std::fs::read_to_string(pages.join("tgp.1")).unwrap();
    assert!(
        main.contains("full tunnel"),
        "the main page says what up does"
    );
    assert!(
        !pages.join("tgp-man.1").exists(),
        "the hidden man command gets no page"
    );
    let reload = std::fs::read_to_string(pages.join("tgp-reload.1")).unwrap();
    assert!(reload.contains("SIGHUP"));
}

#[test]
fn help_names_the_new_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let out = tgp(&["--help"], dir.path());
    let help = text(&out.stdout);
    for word in ["reload", "completions", "status"] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
    let out = tgp(&["status", "--help"], dir.path());
    assert!(text(&out.stdout).contains("--json"));
}

#[test]
fn reload_without_a_daemon_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = tgp(&["reload", "--interface", "tgpnone9"], dir.path());
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("tgpnone9"),
        "{}",
        text(&out.stderr)
    );
}
