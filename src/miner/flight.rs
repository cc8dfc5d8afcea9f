//! One download per thing at a time: the first request for a key starts its fetch in a
//! task of its own, and every request for the same key meanwhile waits on that task's
//! result. A burst of requests downloads once, a slow download holds up no other key, and
//! a requester that goes away does not take the download with it.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::wire::{ErrorCode, WireError};

type Outcome<V> = Option<Result<V, WireError>>;

pub struct SingleFlight<K, V> {
    underway: Arc<Mutex<HashMap<K, watch::Receiver<Outcome<V>>>>>,
}

impl<K, V> Default for SingleFlight<K, V> {
    fn default() -> Self {
        Self {
            underway: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl<K, V> SingleFlight<K, V>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The result of `fetch` for `key`, started now unless a fetch of `key` is underway.
    pub async fn run<F>(&self, key: K, fetch: F) -> Result<V, WireError>
    where
        F: Future<Output = Result<V, WireError>> + Send + 'static,
    {
        let mut result = {
            let mut underway = self.underway.lock().expect("not poisoned");
            match underway.get(&key) {
                Some(result) => result.clone(),
                None => {
                    let (done, result) = watch::channel(None);
                    underway.insert(key.clone(), result.clone());
                    let underway = self.underway.clone();
                    tokio::spawn(async move {
                        let fetched = fetch.await;
                        underway.lock().expect("not poisoned").remove(&key);
                        done.send_replace(Some(fetched));
                    });
                    result
                }
            }
        };
        match result.wait_for(Option::is_some).await {
            Ok(fetched) => fetched.clone().expect("waited for a result"),
            Err(_) => Err(WireError::new(
                ErrorCode::Internal,
                "the download stopped; try again",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_requests_for_one_key_share_one_fetch() {
        let flight: Arc<SingleFlight<u8, u32>> = Arc::default();
        let started = Arc::new(AtomicUsize::new(0));
        let mut waiting = Vec::new();
        for _ in 0..5 {
            let (flight, started) = (flight.clone(), started.clone());
            waiting.push(tokio::spawn(async move {
                flight
                    .run(1, async move {
                        started.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        Ok(7)
                    })
                    .await
            }));
        }
        for task in waiting {
            assert_eq!(task.await.unwrap().unwrap(), 7);
        }
        assert_eq!(started.load(Ordering::SeqCst), 1);
        // Once done, the next request fetches again.
        assert_eq!(flight.run(1, async { Ok(8) }).await.unwrap(), 8);
    }
}
