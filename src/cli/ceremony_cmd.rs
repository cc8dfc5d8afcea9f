//! `sn2 ceremony`: the public setups that make keys everyone can trust. For now, phase 1:
//! checking a powers-of-tau file.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;

use super::Outcome;
use crate::proof::ptau::Ptau;

#[derive(Debug, Subcommand)]
pub enum CeremonyCommand {
    /// Powers of tau (phase 1), in snarkjs's `.ptau` format.
    #[command(subcommand)]
    Ptau(PtauCommand),
}

#[derive(Debug, Subcommand)]
pub enum PtauCommand {
    /// Check a `.ptau` file: every point on its curve and in its subgroup, and every
    /// power consistent with the one before (the contributions are counted, not replayed).
    Verify {
        /// The `.ptau` file (snarkjs's `powersoftau new/contribute/prepare phase2`, or a
        /// Perpetual Powers of Tau / Hermez file for bn128).
        file: PathBuf,
    },
}

impl CeremonyCommand {
    pub fn run(self) -> anyhow::Result<Outcome> {
        match self {
            CeremonyCommand::Ptau(PtauCommand::Verify { file }) => {
                let bytes = std::fs::read(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                let checked = Ptau::read(&bytes).and_then(|ptau| ptau.check().map(|()| ptau));
                match checked {
                    Ok(ptau) => {
                        println!(
                            "{}: powers of tau for BN254, 2^{} powers (from a ceremony of 2^{}), {} contribution{}{}",
                            file.display(),
                            ptau.power,
                            ptau.ceremony_power,
                            ptau.contributions,
                            if ptau.contributions == 1 { "" } else { "s" },
                            if ptau.prepared() {
                                ", prepared for phase 2"
                            } else {
                                ""
                            }
                        );
                        println!(
                            "every point is on its curve and in its subgroup, and every power follows from the one before: circuits of up to 2^{} constraints and public inputs can use it",
                            ptau.power
                        );
                        if ptau.contributions == 0 {
                            eprintln!(
                                "sn2: warning: no one has contributed to this file: its τ is known to whoever made it"
                            );
                        }
                        Ok(Outcome::Success)
                    }
                    Err(error) => {
                        eprintln!("sn2: {}: refused: {error}", file.display());
                        Ok(Outcome::Failure)
                    }
                }
            }
        }
    }
}
