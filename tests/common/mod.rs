//! Helpers shared by the integration tests.

use std::sync::Arc;

use sn2::model::QuantModel;
use sn2::proof::{self, Binding, ProofError, Statement};

/// Fresh keys for `model`, a proof of its output on `input`, and that proof's verification.
pub fn setup_prove_verify(
    model: QuantModel,
    input: &[i8],
    binding: Binding,
) -> Result<(), ProofError> {
    let system = proof::default_backend();
    let keys = system.setup(&model)?;
    let model = Arc::new(model);
    let proven = system
        .prover(model.clone(), &keys.proving)?
        .prove(input, &binding)?;
    let statement = Statement {
        input: input.to_vec(),
        output: proven.output,
        binding,
    };
    system
        .verifier(&model, &keys.verifying)?
        .verify(&statement, &proven.proof)
}
