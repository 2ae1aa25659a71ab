//! Single-flight for small fetches whose whole result can be shared (manifests by digest):
//! the first caller for a key fetches, callers arriving meanwhile wait for its result and
//! get a copy. A leader that fails or goes away shares nothing: its followers fetch on their
//! own (an error is the leader's alone: it may be about its credentials or its timing).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// Fetches in progress, by key.
pub struct Coalesce<T> {
    map: Mutex<HashMap<String, watch::Receiver<Option<T>>>>,
}

/// What a caller of [`Coalesce::turn`] does.
pub enum Turn<T: Clone> {
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
pub struct Lead<T> {
    owner: Arc<Coalesce<T>>,
    key: String,
    tx: Option<watch::Sender<Option<T>>>,
}

impl<T> Lead<T> {
    /// Shares `result` (when there is one) with the followers.
    pub fn finish(mut self, result: Option<T>) {
        self.remove();
        if let (Some(tx), Some(v)) = (self.tx.take(), result) {
            tx.send_replace(Some(v));
        }
    }

    fn remove(&self) {
        self.owner
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

impl<T> Drop for Lead<T> {
    fn drop(&mut self) {
        if self.tx.is_some() {
            self.remove();
        }
    }
}
