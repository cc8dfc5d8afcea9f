//! `sn2 bench --timelock`: what one timelocked weight commit costs a validator — the
//! epoch-schedule simulation, SCALE encoding and drand encryption of 256 uids — and its
//! size against the chain's limit.

use std::time::Instant;

use serde::Serialize;

use crate::chain::epoch::{self, EpochSchedule};
use crate::chain::subtensor::calls;
use crate::chain::subtensor::weights::MAX_TIMELOCKED_COMMIT_BYTES;

#[derive(Debug, Clone, Serialize)]
pub struct TimelockBench {
    pub uids: usize,
    pub runs: usize,
    /// Median time to build one commit: schedule simulation, payload, encryption.
    pub build_ms: f64,
    /// Median time of the simulation alone (tempo 360, one reveal period).
    pub schedule_ms: f64,
    pub commit_bytes: usize,
    pub limit_bytes: usize,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub fn bench_timelock(uids: usize, runs: usize) -> TimelockBench {
    let hotkey = [7u8; 32];
    let ids: Vec<u16> = (0..uids as u16).collect();
    let values: Vec<u16> = ids.iter().map(|u| u.wrapping_mul(257)).collect();
    // A commit early in an epoch: the simulation walks most of a tempo.
    let schedule = EpochSchedule {
        block: 5000,
        tempo: 360,
        last_epoch_block: 4990,
        pending_epoch_at: 0,
        epoch_index: 13,
        blocks_since_last_step: 10,
    };
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    let mut build = Vec::with_capacity(runs);
    let mut simulate = Vec::with_capacity(runs);
    let mut commit_bytes = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let reveal_block = schedule.first_reveal_block(1).expect("tempo is not 0");
        simulate.push(started.elapsed().as_secs_f64() * 1000.0);
        let round = epoch::reveal_round(reveal_block, schedule.block, 12.0, now(), 0);
        let payload = calls::timelock_payload(&hotkey, &ids, &values, 1);
        commit_bytes = crate::timelock::encrypt(&payload, round).len();
        build.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    TimelockBench {
        uids,
        runs,
        build_ms: median(build),
        schedule_ms: median(simulate),
        commit_bytes,
        limit_bytes: MAX_TIMELOCKED_COMMIT_BYTES,
    }
}

pub fn timelock_table(result: &TimelockBench) -> String {
    format!(
        "| uids | build one commit | of which schedule | commit size | chain's limit |\n\
         | --- | --- | --- | --- | --- |\n\
         | {} | {:.2} ms | {:.3} ms | {} B | {} B |\n\
         (median of {} runs)\n",
        result.uids,
        result.build_ms,
        result.schedule_ms,
        result.commit_bytes,
        result.limit_bytes,
        result.runs
    )
}
