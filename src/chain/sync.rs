//! Keeping a copy of the metagraph fresh without letting the chain take a daemon down.
//!
//! [`MetagraphSync::run`] reads the metagraph every `interval`; when the chain fails, it
//! keeps the last good copy, marks the chain down and tries again with exponential
//! backoff (1 s doubling to at most a minute or the interval). Services read the copy
//! through a [`watch`] channel: the miner to authorise validators, the validator to pick
//! miners, the daemon to tell systemd and Prometheus how the chain is.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{Chain, Metagraph};
use crate::shutdown::{Shutdown, stopped};

/// How long one metagraph read may take before it counts as a failure.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What the services see of the chain.
#[derive(Debug, Clone, Default)]
pub struct SyncState {
    /// The last metagraph read, if any read ever succeeded.
    pub metagraph: Option<Arc<Metagraph>>,
    /// Whether the last read succeeded.
    pub up: bool,
    /// Why the last read failed, while the chain is down.
    pub last_error: Option<String>,
    /// Failed reads since the last success.
    pub failures: u32,
    /// Failed reads since the start.
    pub total_failures: u64,
}

pub struct MetagraphSync {
    chain: Arc<dyn Chain>,
    interval: Duration,
    state: watch::Sender<SyncState>,
}

impl MetagraphSync {
    pub fn new(chain: Arc<dyn Chain>, interval: Duration) -> Self {
        Self {
            chain,
            interval,
            state: watch::Sender::new(SyncState::default()),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<SyncState> {
        self.state.subscribe()
    }

    pub fn chain(&self) -> &Arc<dyn Chain> {
        &self.chain
    }

    /// Reads the metagraph once and publishes the result; returns the time to wait
    /// before the next read.
    pub async fn sync_once(&self) -> Duration {
        let read = tokio::time::timeout(READ_TIMEOUT, self.chain.metagraph()).await;
        let result = match read {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!(
                "no answer from {} in {} s",
                self.chain.describe(),
                READ_TIMEOUT.as_secs()
            )),
        };
        match result {
            Ok(metagraph) => {
                let recovered = !self.state.borrow().up && self.state.borrow().failures > 0;
                if recovered {
                    tracing::info!(chain = %self.chain.describe(), "chain reachable again");
                }
                tracing::debug!(
                    block = metagraph.block,
                    neurons = metagraph.neurons.len(),
                    "metagraph synced"
                );
                self.state.send_modify(|state| {
                    state.metagraph = Some(Arc::new(metagraph));
                    state.up = true;
                    state.last_error = None;
                    state.failures = 0;
                });
                self.interval
            }
            Err(error) => {
                let (mut failures, mut kept) = (0, false);
                self.state.send_modify(|state| {
                    state.up = false;
                    state.failures += 1;
                    state.total_failures += 1;
                    state.last_error = Some(error.clone());
                    failures = state.failures;
                    kept = state.metagraph.is_some();
                });
                let delay = backoff(failures).min(self.interval.max(Duration::from_secs(1)));
                tracing::warn!(
                    %error,
                    failures,
                    retry_in_secs = delay.as_secs(),
                    kept_last_metagraph = kept,
                    "cannot sync the metagraph"
                );
                delay
            }
        }
    }

    /// Syncs until `shutdown`.
    pub async fn run(self: Arc<Self>, mut shutdown: Shutdown) {
        loop {
            let wait = tokio::select! {
                wait = self.sync_once() => wait,
                _ = stopped(&mut shutdown) => return,
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stopped(&mut shutdown) => return,
            }
        }
    }

    /// Syncs until a metagraph is in hand (or `shutdown`, then `None`): a daemon cannot
    /// do anything useful before.
    pub async fn first(&self, shutdown: &mut Shutdown) -> Option<Arc<Metagraph>> {
        loop {
            let wait = tokio::select! {
                wait = self.sync_once() => wait,
                _ = stopped(shutdown) => return None,
            };
            if let Some(metagraph) = self.state.borrow().metagraph.clone() {
                return Some(metagraph);
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stopped(shutdown) => return None,
            }
        }
    }
}

/// 1 s, 2 s, 4 s, ... up to a minute.
fn backoff(failures: u32) -> Duration {
    let secs = 1u64 << failures.saturating_sub(1).min(6);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let delays: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
