//! `tgp-impair`: the userspace link impairer (being written, issue 5).

fn main() -> std::process::ExitCode {
    eprintln!("tgp-impair: not built yet");
    std::process::ExitCode::from(2)
}
