//! When a subnet's epochs run, and so when a weight commit is revealed.
//!
//! Since May 2026 subtensor runs epochs on a stateful schedule rather than on a formula
//! over `Tempo`: an epoch runs at a block when an owner's trigger is due (`PendingEpochAt`),
//! when `Tempo` blocks have passed since `LastEpochBlock`, or when the subnet has gone more
//! than `MAX_TEMPO` blocks without one; `SubnetEpochIndex` counts them. A commit belongs to
//! the epoch counted at its block, and is revealed in the first block of epoch
//! `commit epoch + RevealPeriodEpochs`.
//!
//! [`EpochSchedule::first_reveal_block`] simulates that schedule block by block from the
//! state at the best block, as bittensor-drand 2.x (`get_encrypted_commit_v2`) does; its
//! answers are checked against it in `tests/timelock.rs`. Like it, the simulation ignores the
//! per-block cap on epochs (`MaxEpochsPerBlock`), which can defer an epoch by a block.
//! Runtimes without the schedule's storage use the old formula, [`legacy_first_reveal_block`].

/// The largest tempo an owner may set; past it an epoch runs regardless.
pub const MAX_TEMPO: u64 = 50_400;
/// A commit sent at the best block lands in the next one.
pub const INCLUSION_OFFSET: u64 = 1;
/// Blocks past the first reveal block whose drand pulse the commit is locked to, so that the
/// chain has surely stored that pulse when it tries the reveal.
pub const SECURITY_OFFSET: u64 = 3;

/// The epoch schedule's state of one subnet at `block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochSchedule {
    pub block: u64,
    pub tempo: u16,
    pub last_epoch_block: u64,
    /// 0: no trigger pending.
    pub pending_epoch_at: u64,
    pub epoch_index: u64,
    pub blocks_since_last_step: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("the subnet's tempo is 0: it runs no epochs, so a commit would never be revealed")]
    TempoIsZero,
    #[error("no reveal block within {0} blocks of the best block; the schedule state looks wrong")]
    TooFar(u64),
}

impl EpochSchedule {
    /// Whether an epoch runs at `block`, seen from this state.
    fn epoch_runs_at(&self, block: u64) -> bool {
        if self.tempo == 0 {
            return false;
        }
        (self.pending_epoch_at > 0 && block >= self.pending_epoch_at)
            || self.blocks_since_last_step > MAX_TEMPO
            || block.saturating_sub(self.last_epoch_block) >= u64::from(self.tempo)
    }

    /// The epoch a commit or a reveal in `block` belongs to: the counter, plus one when an
    /// epoch runs in that block (the chain runs it before the block's extrinsics).
    fn epoch_of(&self, block: u64) -> u64 {
        self.epoch_index + u64::from(self.epoch_runs_at(block))
    }

    /// The state after `block`'s epoch step.
    fn step(&mut self, block: u64) {
        self.blocks_since_last_step = self.blocks_since_last_step.saturating_add(1);
        self.block = block;
        if self.epoch_runs_at(block) {
            self.last_epoch_block = block;
            self.pending_epoch_at = 0;
            self.epoch_index += 1;
            self.blocks_since_last_step = 0;
        }
    }

    /// The first block of the epoch in which a commit sent now (landing in the next
    /// block) is revealed.
    pub fn first_reveal_block(&self, reveal_period_epochs: u64) -> Result<u64, ScheduleError> {
        self.first_reveal_block_for(self.block + INCLUSION_OFFSET, reveal_period_epochs)
    }

    /// The first block of the reveal epoch of a commit landing in `commit_block` (after
    /// this state's block).
    pub fn first_reveal_block_for(
        &self,
        commit_block: u64,
        reveal_period_epochs: u64,
    ) -> Result<u64, ScheduleError> {
        if self.tempo == 0 {
            return Err(ScheduleError::TempoIsZero);
        }
        let commit_block = commit_block.max(self.block + 1);
        let mut state = *self;
        for block in self.block + 1..commit_block {
            state.step(block);
        }
        let target = state.epoch_of(commit_block) + reveal_period_epochs;
        let budget = reveal_period_epochs
            .saturating_mul(MAX_TEMPO)
            .saturating_add(MAX_TEMPO);
        for block in commit_block..=commit_block.saturating_add(budget) {
            if state.epoch_of(block) == target {
                return Ok(block);
            }
            state.step(block);
        }
        Err(ScheduleError::TooFar(budget))
    }
}

/// The first reveal block by the formula runtimes used before the stateful schedule:
/// epoch `(block + netuid + 1) / (tempo + 1)`.
pub fn legacy_first_reveal_block(
    block: u64,
    netuid: u16,
    tempo: u16,
    reveal_period_epochs: u64,
) -> u64 {
    let period = u64::from(tempo) + 1;
    let offset = u64::from(netuid) + 1;
    let reveal_epoch = (block + offset) / period + reveal_period_epochs;
    (reveal_epoch * period).saturating_sub(offset)
}

/// The drand round to lock a commit to: the pulse due `SECURITY_OFFSET` blocks after the
/// first reveal block, at `block_seconds` a block from `now_unix`, and never below the last
/// round the chain has stored (the chain refuses those).
pub fn reveal_round(
    first_reveal_block: u64,
    best_block: u64,
    block_seconds: f64,
    now_unix: f64,
    last_stored_round: u64,
) -> u64 {
    let blocks = (first_reveal_block + SECURITY_OFFSET).saturating_sub(best_block);
    crate::timelock::round_at(now_unix + blocks as f64 * block_seconds).max(last_stored_round)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(
        block: u64,
        tempo: u16,
        last: u64,
        pending: u64,
        index: u64,
        since: u64,
    ) -> EpochSchedule {
        EpochSchedule {
            block,
            tempo,
            last_epoch_block: last,
            pending_epoch_at: pending,
            epoch_index: index,
            blocks_since_last_step: since,
        }
    }

    #[test]
    fn the_reveal_is_the_first_block_of_the_epoch_after_next_by_tempo() {
        // Last epoch at 4900, tempo 360: epochs at 5260, 5620. A commit landing at 5001 is in
        // epoch 13, revealed when epoch 14 starts.
        let s = state(5000, 360, 4900, 0, 13, 100);
        assert_eq!(s.first_reveal_block(1), Ok(5260));
        assert_eq!(s.first_reveal_block(2), Ok(5620));
    }

    #[test]
    fn a_commit_landing_in_an_epoch_block_belongs_to_the_new_epoch() {
        // The epoch runs at 5260, before the commit's extrinsic: the commit is in epoch 14.
        let s = state(5259, 360, 4900, 0, 13, 359);
        assert_eq!(s.first_reveal_block(1), Ok(5620));
    }

    #[test]
    fn a_pending_trigger_runs_an_epoch_early() {
        let s = state(5000, 360, 4900, 5010, 13, 100);
        assert_eq!(s.first_reveal_block(1), Ok(5010));
    }

    #[test]
    fn a_subnet_late_past_max_tempo_runs_its_epoch_at_once() {
        let s = state(5000, 360, 4900, 0, 13, MAX_TEMPO + 1);
        // The epoch runs at 5001 (where the commit lands), so the reveal is a tempo later.
        assert_eq!(s.first_reveal_block(1), Ok(5361));
    }

    #[test]
    fn tempo_zero_never_reveals() {
        let s = state(5000, 0, 4900, 0, 13, 100);
        assert_eq!(s.first_reveal_block(1), Err(ScheduleError::TempoIsZero));
    }

    #[test]
    fn the_legacy_formula_matches_bittensor_drand_1() {
        // netuid 2, tempo 360: epochs start at 361k - 3, so 5051 and 5412.
        assert_eq!(legacy_first_reveal_block(5000, 2, 360, 1), 5051);
        assert_eq!(legacy_first_reveal_block(5051, 2, 360, 1), 5412);
    }

    #[test]
    fn the_round_is_the_pulse_after_the_reveal_and_never_below_the_stored_one() {
        let now = crate::timelock::QUICKNET_GENESIS as f64 + 3000.0;
        // 263 blocks of 12 s after round 1000: 4 rounds a block.
        assert_eq!(reveal_round(5260, 5000, 12.0, now, 0), 1000 + 263 * 4);
        assert_eq!(reveal_round(5260, 5000, 12.0, now, 5000), 5000);
    }
}
