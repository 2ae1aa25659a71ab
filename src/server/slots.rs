//! Connection slots: one cap for the whole process (every listener shares it) and one per
//! client address, so a single host cannot take every slot (PROXY-REVIEW D6, D21).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct ConnectionSlots {
    global: Arc<Semaphore>,
    per_peer_max: usize,
    peers: Mutex<HashMap<IpAddr, usize>>,
}

/// Holds one connection's slots; dropping it frees them.
pub struct Slot {
    _global: OwnedSemaphorePermit,
    peer: PeerSlot,
}

struct PeerSlot {
    slots: Arc<ConnectionSlots>,
    ip: IpAddr,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut peers = self.slots.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = peers.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                // Bounded by live connections: an address with none is forgotten.
                peers.remove(&self.ip);
            }
        }
    }
}

impl Slot {
    pub fn peer(&self) -> IpAddr {
        self.peer.ip
    }
}

impl ConnectionSlots {
    pub fn new(max: usize, per_peer_max: usize) -> Arc<ConnectionSlots> {
        Arc::new(ConnectionSlots {
            global: Arc::new(Semaphore::new(max)),
            per_peer_max,
            peers: Mutex::new(HashMap::new()),
        })
    }

    /// Waits for a free global slot. Taken *before* accepting, so excess clients queue in the
    /// kernel's backlog instead of consuming memory here. `None` once closed.
    pub async fn global(&self) -> Option<OwnedSemaphorePermit> {
        self.global.clone().acquire_owned().await.ok()
    }

    /// The per-address slot for an accepted connection; `None` when that address already
    /// holds its share (the caller closes the connection at once).
    pub fn admit(self: &Arc<Self>, global: OwnedSemaphorePermit, ip: IpAddr) -> Option<Slot> {
        let ip = canonical(ip);
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let n = peers.entry(ip).or_insert(0);
        if *n >= self.per_peer_max {
            return None;
        }
        *n += 1;
        Some(Slot {
            _global: global,
            peer: PeerSlot {
                slots: self.clone(),
                ip,
            },
        })
    }
}

/// An IPv4 client over a dual-stack socket counts as its IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn per_peer_share_is_enforced_and_freed() {
        let slots = ConnectionSlots::new(10, 2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let s1 = slots.admit(slots.global().await.unwrap(), a).unwrap();
        let _s2 = slots.admit(slots.global().await.unwrap(), a).unwrap();
        assert!(slots.admit(slots.global().await.unwrap(), a).is_none());
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(slots.admit(slots.global().await.unwrap(), mapped).is_none());
        assert!(slots.admit(slots.global().await.unwrap(), b).is_some());
        drop(s1);
        assert!(slots.admit(slots.global().await.unwrap(), a).is_some());
    }

    #[tokio::test]
    async fn the_global_cap_is_shared() {
        let slots = ConnectionSlots::new(1, 5);
        let held = slots.global().await.unwrap();
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), slots.global());
        assert!(
            waiting.await.is_err(),
            "a second global slot was handed out"
        );
        drop(held);
        assert!(slots.global().await.is_some());
    }
}
