//! The `bundle` binary: see the crate docs and `bundle --help`.

fn main() -> std::process::ExitCode {
    bundle::cli::main()
}
