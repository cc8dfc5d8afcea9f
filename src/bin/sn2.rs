//! `sn2`, the operator's tool. All logic lives in the library.
fn main() -> std::process::ExitCode {
    sn2::cli::main()
}
