//! Connection caps, global and per client IP.
//!
//! Checked when a connection is accepted, before a byte is read, so that one
//! client (or a crowd) cannot take every socket the proxy has. A place is
//! held by a [`ConnPermit`] and given back when the permit is dropped, so no
//! path that ends a connection (error, timeout, panic unwinding a
//! connection's thread) can leak a place.

use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Per-IP counts are spread over this many independently locked maps so
/// accepts on different threads rarely wait for each other.
const SHARDS: usize = 16;

/// Why a connection was refused: the limit that was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CapExceeded {
    /// The proxy already holds this many connections.
    #[error("the proxy's limit of {0} connections is reached")]
    Global(usize),
    /// This client address already holds this many connections.
    #[error("the limit of {0} connections per client address is reached")]
    PerIp(usize),
}

/// Counts of open client connections, shared by every accept.
///
/// `Send + Sync`. Per-IP entries exist only while the address has a
/// connection open, so memory follows the open connections, not every
/// client ever seen.
#[derive(Debug)]
pub struct ConnectionCaps {
    global: Option<usize>,
    per_ip: Option<usize>,
    active: AtomicUsize,
    shards: [Mutex<HashMap<IpAddr, usize>>; SHARDS],
}

/// Holds one connection's place; dropping it frees the place.
#[must_use = "the place is given back as soon as the permit is dropped"]
pub struct ConnPermit {
    caps: Arc<ConnectionCaps>,
    ip: IpAddr,
}

impl ConnectionCaps {
    /// Caps of `global` connections in all and `per_ip` from one client
    /// address; `None` means unlimited (counts are still kept, for
    /// [`active`](Self::active) and [`active_for`](Self::active_for)).
    pub fn new(global: Option<usize>, per_ip: Option<usize>) -> Arc<Self> {
        Arc::new(ConnectionCaps {
            global,
            per_ip,
            active: AtomicUsize::new(0),
            shards: Default::default(),
        })
    }

    /// Takes a place for a connection from `ip`, or says which cap is full.
    ///
    /// IPv4-mapped IPv6 addresses count as the IPv4 address. A refusal
    /// changes no count, not even for an instant, so it cannot make another
    /// accept fail spuriously.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnPermit, CapExceeded> {
        let ip = ip.to_canonical();
        // The per-IP check and the global increment happen under the shard
        // lock, so a global refusal needs no per-IP undo and a per-IP refusal
        // never touches the global count.
        let mut shard = self.shard(ip);
        let current = shard.get(&ip).copied().unwrap_or(0);
        if let Some(cap) = self.per_ip {
            if current >= cap {
                return Err(CapExceeded::PerIp(cap));
            }
        }
        self.take_global()?;
        *shard.entry(ip).or_insert(0) += 1;
        drop(shard);
        Ok(ConnPermit {
            caps: Arc::clone(self),
            ip,
        })
    }

    /// Open connections in all.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Open connections from `ip`.
    pub fn active_for(&self, ip: IpAddr) -> usize {
        let ip = ip.to_canonical();
        self.shard(ip).get(&ip).copied().unwrap_or(0)
    }

    /// The caps in force: (global, per IP).
    pub fn limits(&self) -> (Option<usize>, Option<usize>) {
        (self.global, self.per_ip)
    }

    fn take_global(&self) -> Result<(), CapExceeded> {
        let Some(cap) = self.global else {
            self.active.fetch_add(1, Ordering::AcqRel);
            return Ok(());
        };
        // Compare-and-swap rather than add-then-check: the count never
        // exceeds the cap, even for an instant, however many threads race.
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .map(drop)
            .map_err(|_| CapExceeded::Global(cap))
    }

    fn release(&self, ip: IpAddr) {
        let mut shard = self.shard(ip);
        if let Entry::Occupied(mut entry) = shard.entry(ip) {
            *entry.get_mut() -= 1;
            if *entry.get() == 0 {
                entry.remove();
            }
        }
        drop(shard);
        self.active.fetch_sub(1, Ordering::AcqRel);
    }

    fn shard(&self, ip: IpAddr) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        let mut hasher = DefaultHasher::new();
        ip.hash(&mut hasher);
        let shard = &self.shards[(hasher.finish() % SHARDS as u64) as usize];
        // Every update is one map operation, so a panic on another thread
        // cannot leave a count half-changed; poisoning carries no news.
        shard.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ConnPermit {
    /// The client address this place is counted against (canonical form).
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.caps.release(self.ip);
    }
}

impl fmt::Debug for ConnPermit {
    // The shared counts are not this permit's business to print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnPermit").field("ip", &self.ip).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, d))
    }

    fn empty(caps: &ConnectionCaps) -> bool {
        caps.shards.iter().all(|s| s.lock().unwrap().is_empty())
    }

    #[test]
    fn global_cap_holds() {
        let caps = ConnectionCaps::new(Some(2), None);
        let a = caps.try_acquire(v4(1)).unwrap();
        let b = caps.try_acquire(v4(2)).unwrap();
        assert_eq!(caps.try_acquire(v4(3)).unwrap_err(), CapExceeded::Global(2));
        assert_eq!(caps.active(), 2);
        assert_eq!(caps.active_for(v4(3)), 0);
        drop(a);
        let c = caps.try_acquire(v4(3)).unwrap();
        assert_eq!(caps.active(), 2);
        drop((b, c));
        assert_eq!(caps.active(), 0);
        assert!(empty(&caps));
    }

    #[test]
    fn per_ip_cap_holds_and_addresses_are_independent() {
        let caps = ConnectionCaps::new(None, Some(2));
        let held: Vec<_> = (0..2).map(|_| caps.try_acquire(v4(1)).unwrap()).collect();
        assert_eq!(caps.try_acquire(v4(1)).unwrap_err(), CapExceeded::PerIp(2));
        assert_eq!(caps.active_for(v4(1)), 2);
        let other = caps.try_acquire(v4(2)).unwrap();
        assert_eq!(caps.active_for(v4(2)), 1);
        assert_eq!(caps.active(), 3);
        drop(held);
        assert_eq!(caps.active_for(v4(1)), 0);
        drop(other);
        assert!(empty(&caps));
    }

    #[test]
    fn refusals_leave_counts_unchanged() {
        let caps = ConnectionCaps::new(Some(3), Some(1));
        let _a = caps.try_acquire(v4(1)).unwrap();
        let _b = caps.try_acquire(v4(2)).unwrap();
        assert_eq!(caps.try_acquire(v4(1)).unwrap_err(), CapExceeded::PerIp(1));
        assert_eq!((caps.active(), caps.active_for(v4(1))), (2, 1));
        let _c = caps.try_acquire(v4(3)).unwrap();
        assert_eq!(caps.try_acquire(v4(4)).unwrap_err(), CapExceeded::Global(3));
        assert_eq!((caps.active(), caps.active_for(v4(4))), (3, 0));
        assert_eq!(
            caps.shards
                .iter()
                .map(|s| s.lock().unwrap().len())
                .sum::<usize>(),
            3
        );
    }

    #[test]
    fn ipv4_mapped_ipv6_counts_as_ipv4() {
        let caps = ConnectionCaps::new(None, Some(1));
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        let permit = caps.try_acquire(mapped).unwrap();
        assert_eq!(permit.ip(), v4(1));
        assert_eq!(caps.try_acquire(v4(1)).unwrap_err(), CapExceeded::PerIp(1));
        assert_eq!(caps.active_for(mapped), 1);
        let v6 = caps.try_acquire(IpAddr::V6(Ipv6Addr::LOCALHOST)).unwrap();
        drop((permit, v6));
        assert!(empty(&caps));
    }

    #[test]
    fn unlimited_still_counts() {
        let caps = ConnectionCaps::new(None, None);
        let held: Vec<_> = (0..100)
            .map(|i| caps.try_acquire(v4(i % 3)).unwrap())
            .collect();
        assert_eq!(caps.active(), 100);
        assert_eq!(caps.active_for(v4(0)), 34);
        drop(held);
        assert_eq!(caps.active(), 0);
        assert!(empty(&caps));
    }

    #[test]
    fn zero_caps_refuse_everyone() {
        let caps = ConnectionCaps::new(Some(0), None);
        assert_eq!(caps.try_acquire(v4(1)).unwrap_err(), CapExceeded::Global(0));
        let caps = ConnectionCaps::new(None, Some(0));
        assert_eq!(caps.try_acquire(v4(1)).unwrap_err(), CapExceeded::PerIp(0));
        assert!(empty(&caps));
    }

    #[test]
    #[cfg_attr(target_os = "wasi", ignore = "WASI (preview 1) has no threads")]
    // Real threads are the point here: the caps must hold under real races.
    fn caps_hold_under_concurrent_hammering() {
        const GLOBAL: usize = 5;
        const PER_IP: usize = 2;
        let caps = ConnectionCaps::new(Some(GLOBAL), Some(PER_IP));
        // Counted by the holders themselves, independently of the caps.
        let holders = Arc::new(AtomicUsize::new(0));
        let per_ip_holders: Arc<[AtomicUsize; 4]> = Arc::new(Default::default());
        let max_seen = Arc::new(AtomicUsize::new(0));
        let max_ip_seen = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|scope| {
            for t in 0..8 {
                let caps = Arc::clone(&caps);
                let holders = Arc::clone(&holders);
                let per_ip_holders = Arc::clone(&per_ip_holders);
                let max_seen = Arc::clone(&max_seen);
                let max_ip_seen = Arc::clone(&max_ip_seen);
                scope.spawn(move || {
                    for i in 0..20_000usize {
                        let slot = (t + i) % 4;
                        let ip = v4(slot as u8);
                        if let Ok(permit) = caps.try_acquire(ip) {
                            let n = holders.fetch_add(1, Ordering::SeqCst) + 1;
                            let m = per_ip_holders[slot].fetch_add(1, Ordering::SeqCst) + 1;
                            max_seen.fetch_max(n.max(caps.active()), Ordering::SeqCst);
                            max_ip_seen.fetch_max(m.max(caps.active_for(ip)), Ordering::SeqCst);
                            if i % 7 == 0 {
                                std::thread::yield_now();
                            }
                            per_ip_holders[slot].fetch_sub(1, Ordering::SeqCst);
                            holders.fetch_sub(1, Ordering::SeqCst);
                            drop(permit);
                        }
                    }
                });
            }
        });
        assert!(max_seen.load(Ordering::SeqCst) <= GLOBAL);
        assert!(max_ip_seen.load(Ordering::SeqCst) <= PER_IP);
        assert!(max_seen.load(Ordering::SeqCst) >= 1);
        assert_eq!(caps.active(), 0);
        assert!((0..4).all(|d| caps.active_for(v4(d)) == 0));
        assert!(empty(&caps));
    }

    #[test]
    fn caps_are_shareable_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ConnectionCaps>();
        assert_send_sync::<ConnPermit>();
    }
}
