//! The `ctrip` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    ctrip::cli::main()
}
