//! The Subnet 2 miner daemon. All logic lives in the library.
fn main() -> std::process::ExitCode {
    sn2::daemon::main(sn2::daemon::Role::Miner)
}
