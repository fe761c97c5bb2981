//! `tgp-bench`: measurements of tgp. The simulator benchmark (`sim`) and
//! the real-socket comparisons come with their issues (3 and 5); until then
//! the command says so.

fn main() -> std::process::ExitCode {
    eprintln!("tgp-bench: no benchmark is built yet (see issues 3 and 5)");
    std::process::ExitCode::from(2)
}
