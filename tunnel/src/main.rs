//! The `tgp` command. The daemon (TUN device, UDP underlay) is issue 4 and
//! is not built yet, so the command says so instead of pretending to work.

fn main() -> std::process::ExitCode {
    eprintln!("tgp: the tunnel daemon is not built yet (see issue 4); the protocol core lives in tgp-proto");
    std::process::ExitCode::from(2)
}
