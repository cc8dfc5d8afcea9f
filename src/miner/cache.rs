//! Which models a miner fetched by id, the bytes each takes on disk (its proving keys
//! included) and their order of last use: once the total passes the limit
//! (`[miner] model_cache_bytes`), the least recently used go first. Models imported by hand
//! are not counted and never evicted.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::model::ModelId;

pub struct FetchedModels {
    limit: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Bytes and the tick of last use, per model.
    entries: HashMap<ModelId, (u64, u64)>,
    tick: u64,
}

impl FetchedModels {
    /// The cache as found on disk: `existing` with each model's bytes and when it was
    /// last used.
    pub fn new(limit: u64, mut existing: Vec<(ModelId, u64, SystemTime)>) -> Self {
        existing.sort_by_key(|(_, _, used)| *used);
        let mut state = State::default();
        for (id, bytes, _) in existing {
            state.tick += 1;
            state.entries.insert(id, (bytes, state.tick));
        }
        Self {
            limit,
            state: Mutex::new(state),
        }
    }

    /// Marks a use of `id`, if it is a fetched model.
    pub fn touch(&self, id: &ModelId) {
        let mut state = self.state.lock().expect("not poisoned");
        state.tick += 1;
        let tick = state.tick;
        if let Some(entry) = state.entries.get_mut(id) {
            entry.1 = tick;
        }
    }

    /// Records that `id` now takes `bytes` (and is in use), and returns the models to
    /// evict, least recently used first, to bring the total under the limit. `id` itself
    /// is never among them, even when it alone passes the limit.
    pub fn record(&self, id: ModelId, bytes: u64) -> Vec<ModelId> {
        let mut state = self.state.lock().expect("not poisoned");
        state.tick += 1;
        let tick = state.tick;
        state.entries.insert(id, (bytes, tick));
        let mut total: u64 = state.entries.values().map(|(bytes, _)| bytes).sum();
        let mut by_age: Vec<(ModelId, u64, u64)> = state
            .entries
            .iter()
            .filter(|(other, _)| **other != id)
            .map(|(other, (bytes, used))| (*other, *bytes, *used))
            .collect();
        by_age.sort_by_key(|(_, _, used)| *used);
        let mut victims = Vec::new();
        for (victim, bytes, _) in by_age {
            if total <= self.limit {
                break;
            }
            total -= bytes;
            state.entries.remove(&victim);
            victims.push(victim);
        }
        victims
    }

    #[cfg(test)]
    fn total_bytes(&self) -> u64 {
        let state = self.state.lock().expect("not poisoned");
        state.entries.values().map(|(bytes, _)| bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(byte: u8) -> ModelId {
        ModelId::of(&[byte])
    }

    #[test]
    fn the_least_recently_used_go_first_and_the_new_one_stays() {
        let cache = FetchedModels::new(100, Vec::new());
        assert!(cache.record(id(1), 40).is_empty());
        assert!(cache.record(id(2), 40).is_empty());
        cache.touch(&id(1));
        // 3 pushes the total to 120: 2 is the least recently used.
        assert_eq!(cache.record(id(3), 40), vec![id(2)]);
        assert_eq!(cache.total_bytes(), 80);
        // One model over the limit alone evicts everything else but stays.
        assert_eq!(cache.record(id(4), 500).len(), 2);
        assert_eq!(cache.total_bytes(), 500);
    }

    #[test]
    fn models_found_on_disk_keep_their_order_of_use() {
        let old = SystemTime::UNIX_EPOCH;
        let new = SystemTime::now();
        let cache = FetchedModels::new(50, vec![(id(1), 30, new), (id(2), 30, old)]);
        assert_eq!(cache.record(id(3), 10), vec![id(2)]);
    }
}
