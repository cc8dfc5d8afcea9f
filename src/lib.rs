//! sn2: Bittensor Subnet 2 ("Proof of Inference") as one crate.
//!
//! Validators send inputs to miners; a miner runs a known model and returns the output with
//! a zero-knowledge proof that exactly that model produced it; the validator verifies,
//! scores and sets weights on chain. Data flows one way through the modules:
//! [`config`] → services ([`daemon`]) → wire → proof, with [`keys`] signing for the
//! services.

pub mod bench;
pub mod chain;
pub mod circuit;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod devnet;
pub mod fs;
pub mod fuzzing;
pub mod keys;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod miner;
pub mod model;
pub mod proof;
pub mod shutdown;
pub mod timelock;
pub mod update;
pub mod validator;
pub mod wire;
