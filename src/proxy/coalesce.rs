//! Single-flight for small fetches whose whole result can be shared (manifests by digest):
//! the first caller for a key fetches, callers arriving meanwhile wait for its result and
//! get a copy. A leader that fails or goes away shares nothing: its followers fetch on their
//! own (an error is the leader's alone: it may be about its credentials or its timing).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// How long a finished result stays for callers that come just after it: the leader's caller
/// stores it in the caches only after `finish`, and a request in between would otherwise
/// fetch again.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Fetches in progress, by key.
pub struct Coalesce<T: Send + Sync + 'static> {
    map: Mutex<HashMap<String, watch::Receiver<Option<T>>>>,
}

/// What a caller of [`Coalesce::turn`] does.
pub enum Turn<T: Clone + Send + Sync + 'static> {
    /// Fetch, then [`Lead::finish`].
    Lead(Lead<T>),
    /// The leader's result.
    Got(T),
    /// The leader failed or went away: fetch alone.
    Alone,
}

impl<T: Clone + Send + Sync + 'static> Coalesce<T> {
    pub fn new() -> Arc<Coalesce<T>> {
        Arc::new(Coalesce {
            map: Mutex::new(HashMap::new()),
        })
    }

    pub async fn turn(self: &Arc<Self>, key: String) -> Turn<T> {
        let mut rx = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(&key) {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    map.insert(key.clone(), rx);
                    return Turn::Lead(Lead {
                        owner: self.clone(),
                        key,
                        tx: Some(tx),
                    });
                }
            }
        };
        let got = rx.wait_for(Option::is_some).await.map(|v| v.clone());
        match got {
            Ok(Some(v)) => Turn::Got(v),
            _ => Turn::Alone,
        }
    }
}

/// The caller that fetches for a key; dropped without a result, its followers go alone.
pub struct Lead<T: Send + Sync + 'static> {
    owner: Arc<Coalesce<T>>,
    key: String,
    tx: Option<watch::Sender<Option<T>>>,
}

impl<T: Send + Sync + 'static> Lead<T> {
    /// Shares `result` (when there is one) with the followers, and with callers arriving in
    /// the next [`LINGER`]; without one, the key is free at once.
    pub fn finish(mut self, result: Option<T>) {
        let Some(tx) = self.tx.take() else { return };
        let Some(v) = result else {
            self.remove();
            return;
        };
        tx.send_replace(Some(v));
        let (owner, key) = (self.owner.clone(), std::mem::take(&mut self.key));
        tokio::spawn(async move {
            tokio::time::sleep(LINGER).await;
            let mut map = owner.map.lock().unwrap_or_else(|p| p.into_inner());
            // Only this leader's entry (a later leader's stays).
            if map
                .get(&key)
                .is_some_and(|rx| rx.same_channel(&tx.subscribe()))
            {
                map.remove(&key);
            }
        });
    }

    fn remove(&self) {
        self.owner
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

impl<T: Send + Sync + 'static> Drop for Lead<T> {
    fn drop(&mut self) {
        if self.tx.is_some() {
            self.remove();
        }
    }
}
