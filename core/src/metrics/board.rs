//! The two lists the status page shows, kept so that recording into them
//! takes no lock shared by every request.
//!
//! - [`TopCounter`]: request counts per destination in a fixed table of
//!   atomic slots. A destination seen before is one hash and one atomic
//!   addition; only the first sighting of a name (or taking over a slot
//!   from a rarely counted one) writes the name, under that slot's own
//!   lock. When every slot a name may use is taken, the least counted of
//!   them is replaced and the newcomer inherits its count (the
//!   "space-saving" algorithm), so a busy destination that arrives late
//!   still climbs. The counts are approximate under that pressure, exact
//!   while there are fewer destinations than slots.
//! - [`RecentRing`]: the last N refusals in a ring of slots, each with
//!   its own lock; writers take a ticket from an atomic counter, so two
//!   writers contend only if they are N refusals apart in time.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// How many slots a name may be put in, from the one its hash names.
const PROBES: usize = 8;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every write leaves a slot whole; poisoning carries no news.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Approximate request counts per name in bounded memory. See the module
/// docs.
pub(crate) struct TopCounter {
    slots: Box<[Slot]>,
}

struct Slot {
    /// The name's hash, never 0; 0 for an empty slot.
    key: AtomicU64,
    count: AtomicU64,
    /// The name, for display; written when the slot is (re)claimed.
    name: Mutex<Option<Box<str>>>,
}

impl TopCounter {
    /// A table of `capacity` slots (at least [`PROBES`]).
    pub(crate) fn new(capacity: usize) -> Self {
        let slots = (0..capacity.max(PROBES))
            .map(|_| Slot {
                key: AtomicU64::new(0),
                count: AtomicU64::new(0),
                name: Mutex::new(None),
            })
            .collect();
        TopCounter { slots }
    }

    /// Counts one request to `name` (compared as given: lower-case it
    /// first if case does not matter).
    pub(crate) fn count(&self, name: &str) {
        let key = key_of(name);
        let len = self.slots.len();
        let first = (key % len as u64) as usize;
        let mut least: Option<(&Slot, u64)> = None;
        for i in 0..PROBES {
            let slot = &self.slots[(first + i) % len];
            let mut found = slot.key.load(Ordering::Acquire);
            if found == 0 {
                match slot
                    .key
                    .compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => {
                        *lock(&slot.name) = Some(name.into());
                        slot.count.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    // Someone claimed it first: for this name, perhaps.
                    Err(now) => found = now,
                }
            }
            if found == key {
                slot.count.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let n = slot.count.load(Ordering::Relaxed);
            if least.map_or(true, |(_, m)| n < m) {
                least = Some((slot, n));
            }
        }
        // Every slot this name may use holds another: take over the
        // least counted one, keeping its count (space-saving).
        if let Some((slot, _)) = least {
            let mut held = lock(&slot.name);
            slot.key.store(key, Ordering::Release);
            *held = Some(name.into());
            slot.count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The `limit` most counted names, busiest first (ties by name).
    pub(crate) fn top(&self, limit: usize) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = self
            .slots
            .iter()
            .filter(|s| s.key.load(Ordering::Acquire) != 0)
            .filter_map(|s| {
                let name = lock(&s.name).as_deref().map(str::to_owned)?;
                Some((name, s.count.load(Ordering::Relaxed)))
            })
            .collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(limit);
        all
    }

    /// How many slots are in use.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.key.load(Ordering::Relaxed) != 0)
            .count()
    }
}

fn key_of(name: &str) -> u64 {
    // Fixed keys: the same on every platform and run (no OS randomness
    // in the core). The table is bounded whatever the hashes do.
    let mut h = DefaultHasher::new();
    name.hash(&mut h);
    h.finish().max(1)
}

/// The last `N` items pushed, newest first on reading. See the module
/// docs.
pub(crate) struct RecentRing<T, const N: usize> {
    next: AtomicU64,
    slots: [Mutex<Option<(u64, T)>>; N],
}

impl<T: Clone, const N: usize> RecentRing<T, N> {
    pub(crate) fn new() -> Self {
        RecentRing {
            next: AtomicU64::new(0),
            slots: std::array::from_fn(|_| Mutex::new(None)),
        }
    }

    pub(crate) fn push(&self, item: T) {
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        let mut slot = lock(&self.slots[(ticket % N as u64) as usize]);
        // A slower writer with an older ticket must not overwrite a newer
        // item that lapped it.
        if slot.as_ref().map_or(true, |(t, _)| *t < ticket) {
            *slot = Some((ticket, item));
        }
    }

    /// Newest first.
    pub(crate) fn newest_first(&self) -> Vec<T> {
        let mut all: Vec<(u64, T)> = self.slots.iter().filter_map(|s| lock(s).clone()).collect();
        all.sort_by_key(|(ticket, _)| std::cmp::Reverse(*ticket));
        all.into_iter().map(|(_, item)| item).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_exact_while_names_fit() {
        let t = TopCounter::new(64);
        for i in 0..20 {
            for _ in 0..=i {
                t.count(&format!("h{i}.test"));
            }
        }
        let top = t.top(3);
        assert_eq!(
            top,
            vec![
                ("h19.test".to_owned(), 20),
                ("h18.test".to_owned(), 19),
                ("h17.test".to_owned(), 18)
            ]
        );
        assert_eq!(t.len(), 20);
    }

    #[test]
    fn a_crowd_of_names_stays_bounded_and_busy_ones_stay_on_top() {
        // Space-saving keeps every name counted more than total / slots
        // times; the rest share what is left.
        let t = TopCounter::new(32);
        for i in 0..10_000 {
            t.count(&format!("h{i}.test"));
            if i % 10 == 0 {
                t.count("busy.test");
            }
        }
        for _ in 0..600 {
            t.count("late.test");
        }
        assert!(t.len() <= 32);
        let mut top: Vec<String> = t.top(2).into_iter().map(|(n, _)| n).collect();
        top.sort();
        assert_eq!(top, ["busy.test", "late.test"], "{:?}", t.top(4));
        let busy = t
            .top(32)
            .into_iter()
            .find(|(n, _)| n == "busy.test")
            .unwrap();
        assert!(busy.1 >= 1000, "never under-counted: {busy:?}");
    }

    #[test]
    #[cfg_attr(target_os = "wasi", ignore = "WASI (preview 1) has no threads")]
    fn counting_from_many_threads_loses_nothing_for_known_names() {
        let t = TopCounter::new(64);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..10_000 {
                        t.count(["a.test", "b.test", "c.test"][i % 3]);
                    }
                });
            }
        });
        let total: u64 = t.top(10).iter().map(|(_, n)| n).sum();
        assert_eq!(total, 40_000);
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn the_ring_keeps_the_newest() {
        let r: RecentRing<u32, 4> = RecentRing::new();
        assert!(r.newest_first().is_empty());
        for i in 0..10 {
            r.push(i);
        }
        assert_eq!(r.newest_first(), vec![9, 8, 7, 6]);
    }
}
