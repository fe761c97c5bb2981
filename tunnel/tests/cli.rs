//! Integration tests: run the built `tgp` binary.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ed25519_dalek::SigningKey;

fn tgp(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tgp"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run tgp")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The public key computed here with ed25519-dalek directly, independent
/// of the code under test.
fn expected_public_key(seed: [u8; 32]) -> String {
    BASE64.encode(SigningKey::from_bytes(&seed).verifying_key().to_bytes())
}

#[test]
fn genkey_writes_0600_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = tgp(&["genkey", "--output", "key"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let path = dir.path().join("key");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.ends_with('\n'));
    let seed: [u8; 32] = BASE64.decode(text.trim()).unwrap().try_into().unwrap();

    let again = tgp(&["genkey", "--output", "key"], dir.path());
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("refusing to overwrite"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "key changed");

    let public = tgp(&["pubkey", "key"], dir.path());
    assert!(public.status.success());
    assert_eq!(stdout(&public).trim(), expected_public_key(seed));
}

#[test]
fn genkey_to_stdout_gives_distinct_keys() {
    let dir = tempfile::tempdir().unwrap();
    let a = stdout(&tgp(&["genkey"], dir.path()));
    let b = stdout(&tgp(&["genkey"], dir.path()));
    assert_eq!(a.len(), 45);
    assert_ne!(a, b);
}

#[test]
fn pubkey_of_known_seed() {
    let dir = tempfile::tempdir().unwrap();
    let seed: [u8; 32] = core::array::from_fn(|i| i as u8 * 7 + 1);
    std::fs::write(dir.path().join("k"), format!("{}\n", BASE64.encode(seed))).unwrap();
    let out = tgp(&["pubkey", "k"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{}\n", expected_public_key(seed)));

    // Same through standard input.
    let mut child = Command::new(env!("CARGO_BIN_EXE_tgp"))
        .args(["pubkey", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(BASE64.encode(seed).as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out).trim(), expected_public_key(seed));
}

#[test]
fn pubkey_rejects_bad_key_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("short"), BASE64.encode([1u8; 16])).unwrap();
    let out = tgp(&["pubkey", "short"], dir.path());
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("decodes to 16 bytes"),
        "{}",
        stderr(&out)
    );
    let out = tgp(&["pubkey", "missing"], dir.path());
    assert!(!out.status.success());
    assert!(stderr(&out).contains("missing"), "{}", stderr(&out));
}

fn write_config(dir: &Path, extra_interface_line: &str) {
    let peer = tgp(&["genkey"], dir);
    let peer_seed: [u8; 32] = BASE64
        .decode(stdout(&peer).trim())
        .unwrap()
        .try_into()
        .unwrap();
    let config = format!(
        "[interface]\naddresses = [\"10.77.0.1/24\"]\nprivate_key_file = \"own.key\"\nrate_ceiling = \"5mbit\"\nlisten_port = 51900\n{extra_interface_line}\n\
         [[peer]]\npublic_key = \"{}\"\nallowed_ips = [\"10.77.0.2/32\"]\n",
        expected_public_key(peer_seed)
    );
    std::fs::write(dir.join("tgp.toml"), config).unwrap();
}

#[test]
fn check_accepts_a_good_config_and_prints_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    assert!(tgp(&["genkey", "-o", "own.key"], dir.path())
        .status
        .success());
    write_config(dir.path(), "");
    let out = tgp(&["check", "tgp.toml"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let own = stdout(&tgp(&["pubkey", "own.key"], dir.path()));
    assert!(text.contains(own.trim()), "{text}");
    assert!(text.contains("10.77.0.2/32"), "{text}");
    assert!(text.contains("rate ceiling  5mbit"), "{text}");
}

#[test]
fn check_names_the_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    assert!(tgp(&["genkey", "-o", "own.key"], dir.path())
        .status
        .success());
    write_config(dir.path(), "speed = 3");
    let out = tgp(&["check", "tgp.toml"], dir.path());
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("interface.speed: unknown key"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_needs_the_private_key_file() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "");
    let out = tgp(&["check", "tgp.toml"], dir.path());
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("interface.private_key_file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn example_configs_pass_check_apart_from_the_key_file() {
    // The examples point at /etc/tgp/private.key; swap in a fresh key.
    let dir = tempfile::tempdir().unwrap();
    assert!(tgp(&["genkey", "-o", "own.key"], dir.path())
        .status
        .success());
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for name in ["server.toml", "client.toml"] {
        let text = std::fs::read_to_string(examples.join(name)).unwrap();
        assert!(text.contains("/etc/tgp/private.key"));
        std::fs::write(
            dir.path().join(name),
            text.replace("/etc/tgp/private.key", "own.key"),
        )
        .unwrap();
        let out = tgp(&["check", name], dir.path());
        assert!(out.status.success(), "{name}: {}", stderr(&out));
    }
}

#[test]
fn daemon_commands_explain_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    // A missing config names the file.
    let out = tgp(&["up", "missing.toml"], dir.path());
    assert!(!out.status.success());
    assert!(stderr(&out).contains("missing.toml"), "{}", stderr(&out));
    // Talking to a daemon of an interface that does not run says so.
    for args in [
        &["status", "--interface", "tgpnone0"][..],
        &["down", "--interface", "tgpnone0"],
    ] {
        let out = tgp(args, dir.path());
        assert!(!out.status.success(), "{args:?} pretended to work");
        assert!(
            stderr(&out).contains("is `tgp up` running"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}
