//! What a miner keeps within a byte limit, least recently used out first: the models it
//! fetched by id, with the bytes each takes on disk, its proving keys included
//! (`[miner] model_cache_bytes`; models imported by hand are not counted and never
//! evicted), and the provers it holds in memory, by proving-key hash
//! (`[miner] prover_memory_bytes`).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::model::ModelId;

/// Entries with a size and an order of use, within a byte limit.
pub struct ByteLru<K> {
    limit: u64,
    state: Mutex<State<K>>,
}

/// The fetched models on disk.
pub type FetchedModels = ByteLru<ModelId>;

struct State<K> {
    /// Bytes and the tick of last use, per entry.
    entries: HashMap<K, (u64, u64)>,
    tick: u64,
}

impl<K: Eq + Hash + Clone> ByteLru<K> {
    /// The cache as found: `existing` with each entry's bytes and when it was last used.
    pub fn new(limit: u64, mut existing: Vec<(K, u64, SystemTime)>) -> Self {
        existing.sort_by_key(|(_, _, used)| *used);
        let mut state = State {
            entries: HashMap::new(),
            tick: 0,
        };
        for (id, bytes, _) in existing {
            state.tick += 1;
            state.entries.insert(id, (bytes, state.tick));
        }
        Self {
            limit,
            state: Mutex::new(state),
        }
    }

    /// Marks a use of `id`, if it is in the cache.
    pub fn touch(&self, id: &K) {
        let mut state = self.state.lock().expect("not poisoned");
        state.tick += 1;
        let tick = state.tick;
        if let Some(entry) = state.entries.get_mut(id) {
            entry.1 = tick;
        }
    }

    /// Records that `id` now takes `bytes` (and is in use), and returns the entries to
    /// evict, least recently used first, to bring the total under the limit. `id` itself
    /// is never among them, even when it alone passes the limit.
    pub fn record(&self, id: K, bytes: u64) -> Vec<K> {
        let mut state = self.state.lock().expect("not poisoned");
        state.tick += 1;
        let tick = state.tick;
        state.entries.insert(id.clone(), (bytes, tick));
        let mut total: u64 = state.entries.values().map(|(bytes, _)| bytes).sum();
        let mut by_age: Vec<(K, u64, u64)> = state
            .entries
            .iter()
            .filter(|(other, _)| **other != id)
            .map(|(other, (bytes, used))| (other.clone(), *bytes, *used))
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

    /// Drops `id` from the count (it was removed some other way).
    pub fn forget(&self, id: &K) {
        self.state.lock().expect("not poisoned").entries.remove(id);
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
    fn a_forgotten_entry_no_longer_counts() {
        let cache = ByteLru::<String>::new(100, Vec::new());
        assert!(cache.record("a".into(), 60).is_empty());
        cache.forget(&"a".to_string());
        assert!(cache.record("b".into(), 60).is_empty());
        assert_eq!(cache.record("c".into(), 60), vec!["b".to_string()]);
    }

    #[test]
    fn models_found_on_disk_keep_their_order_of_use() {
        let old = SystemTime::UNIX_EPOCH;
        let new = SystemTime::now();
        let cache = FetchedModels::new(50, vec![(id(1), 30, new), (id(2), 30, old)]);
        assert_eq!(cache.record(id(3), 10), vec![id(2)]);
    }
}
