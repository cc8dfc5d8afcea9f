//! `sn2 bench --ceremony`: what a model's phase 2 costs — starting it from powers of tau,
//! one contribution, verifying a transcript of three contributions — and the
//! transcript's size. The powers of tau are made here from secrets this process draws
//! and drops ([`Ptau::from_secrets`]): the work is the same whoever knows τ, and a public
//! file large enough for every reference model (2^17) would take snarkjs hours to prepare.

use std::path::PathBuf;
use std::time::Instant;

use ark_bn254::Fr;
use ark_ff::UniformRand;
use ark_poly::EvaluationDomain;
use rand_core::OsRng;
use serde::Serialize;

use super::{import_folder, peak_memory_mib, reset_peak_memory};
use crate::model::ModelStore;
use crate::proof::groth16::ceremony::{self, Transcript};
use crate::proof::ptau::Ptau;

#[derive(Debug, Clone, Serialize)]
pub struct CeremonyBench {
    pub model: String,
    /// The QAP's domain: 2^power points.
    pub domain_power: u32,
    pub init_ms: f64,
    /// The median of three contributions.
    pub contribute_ms: f64,
    /// Verifying the transcript of three contributions, the initial key remade.
    pub verify_ms: f64,
    pub transcript_bytes: usize,
    /// Peak resident memory of the process while contributing and verifying (the powers
    /// of tau held throughout), in MiB (Linux only).
    pub peak_memory_mib: Option<f64>,
}

pub fn bench_ceremony(
    folders: &[PathBuf],
    store: &ModelStore,
) -> anyhow::Result<(u32, f64, Vec<CeremonyBench>)> {
    let mut models = Vec::new();
    for folder in folders {
        let (stored, _) = import_folder(folder, store)?;
        let system = ceremony::circuit(&stored.model);
        let power = ark_poly::Radix2EvaluationDomain::<Fr>::new(
            system.constraint_count() + system.instance_count(),
        )
        .map_or(0, |d| d.log_size_of_group() as u32);
        models.push((stored, system, power));
    }
    let largest = models.iter().map(|(_, _, p)| *p).max().unwrap_or(1);
    eprintln!("making throwaway powers of tau of 2^{largest} ...");
    let started = Instant::now();
    let rng = &mut OsRng;
    let ptau = Ptau::from_secrets(largest, Fr::rand(rng), Fr::rand(rng), Fr::rand(rng));
    let ptau_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut results = Vec::new();
    for (stored, system, power) in models {
        eprintln!("ceremony for {} ...", stored.info.name);
        let ms = |started: Instant| started.elapsed().as_secs_f64() * 1000.0;
        reset_peak_memory();
        let started = Instant::now();
        let mut transcript = Transcript::init(stored.id, &system, &ptau)?;
        let init_ms = ms(started);
        let mut contributions: Vec<f64> = (0..3)
            .map(|_| {
                let started = Instant::now();
                transcript.contribute(None);
                ms(started)
            })
            .collect();
        contributions.sort_by(f64::total_cmp);
        let started = Instant::now();
        transcript.verify(&stored.id, &system, &ptau)?;
        let verify_ms = ms(started);
        results.push(CeremonyBench {
            model: stored.info.name.clone(),
            domain_power: power,
            init_ms,
            contribute_ms: contributions[1],
            verify_ms,
            transcript_bytes: transcript.to_bytes().len(),
            peak_memory_mib: peak_memory_mib(),
        });
    }
    Ok((largest, ptau_ms, results))
}

pub fn ceremony_table(results: &[CeremonyBench]) -> String {
    let mut out = String::from(
        "| model | domain | init | contribute | verify (3 contributions) | transcript | peak memory |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in results {
        out.push_str(&format!(
            "| {} | 2^{} | {:.2} s | {:.2} s | {:.2} s | {:.2} MB | {} |\n",
            r.model,
            r.domain_power,
            r.init_ms / 1000.0,
            r.contribute_ms / 1000.0,
            r.verify_ms / 1000.0,
            r.transcript_bytes as f64 / 1e6,
            r.peak_memory_mib
                .map_or("n/a".into(), |m| format!("{m:.0} MiB")),
        ));
    }
    out
}
