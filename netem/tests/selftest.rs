//! End-to-end check of an impaired path: runs `netem/selftest` (two network
//! namespaces, the userspace impairer, ping and iperf3) with the impairer
//! built for this test. Needs root, iproute2, ethtool, ping, iperf3 and jq
//! (`scripts/setup`), and takes about a minute, so it is ignored by default:
//!
//! ```text
//! cargo test -p tgp-netem --test selftest -- --ignored
//! ```

use std::path::Path;
use std::process::Command;

#[test]
#[ignore = "needs root, network namespaces, ping, iperf3 and jq; about a minute"]
fn selftest_path_delivers_what_was_asked() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("selftest");
    let status = Command::new(&script)
        .env("TGP_IMPAIR", env!("CARGO_BIN_EXE_tgp-impair"))
        .status()
        .expect("run netem/selftest");
    assert!(status.success(), "netem/selftest failed: {status}");
}
