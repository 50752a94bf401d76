//! The store: stored responses by primary key, in bounded memory, shared
//! by every connection.
//!
//! Keys are spread over shards, each behind its own lock and with its own
//! share of the byte budget, so connections on different threads rarely
//! wait for each other and a lock is held only to find or put an
//! `Arc<Entry>` (a hit is served from the shared bytes with no lock held).
//!
//! Eviction is S3-FIFO (Yang et al., SOSP 2023) per shard: a new object
//! enters a small FIFO (a tenth of the shard); one that was asked for
//! again while there moves to the main FIFO when it reaches the small
//! queue's head, the rest leave and are remembered in a ghost queue of
//! keys only; an object whose key is in the ghost queue goes straight to
//! main. Main is a FIFO with a second chance (a small counter of uses).
//! Unlike LRU it is scan-resistant: a crawl through many objects asked for
//! once passes through the small queue without pushing out what is asked
//! for again and again, and a hit costs a counter update, not a move in a
//! list.

use super::entry::Entry;
use crate::time::Instant;
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Most variants (by `Vary`) kept per primary key.
const MAX_VARIANTS: usize = 8;
/// Most keys the ghost queue remembers per shard.
const GHOST_KEYS: usize = 4096;

/// What the store holds and has done, for the metrics.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Responses stored.
    pub stores: AtomicU64,
    /// Objects evicted to make room.
    pub evictions: AtomicU64,
    /// Objects removed by invalidation or purge.
    pub invalidations: AtomicU64,
    /// Bytes held now.
    pub bytes: AtomicU64,
    /// Stored responses held now.
    pub entries: AtomicU64,
}

/// The sharded store. See the module docs.
#[derive(Debug)]
pub struct Store {
    shards: Box<[Mutex<Shard>]>,
    /// Each shard's share of the budget.
    shard_budget: usize,
    /// Largest object stored.
    max_object: usize,
    /// Counters.
    pub stats: StoreStats,
}

#[derive(Debug, Default)]
struct Shard {
    objects: HashMap<Arc<str>, Object>,
    small: VecDeque<(Arc<str>, u64)>,
    main: VecDeque<(Arc<str>, u64)>,
    ghost: VecDeque<u64>,
    ghost_set: HashSet<u64>,
    small_bytes: usize,
    used: usize,
    /// Stored responses (variants) held.
    entries: usize,
    /// Keys whose response is being fetched and will be stored if it may
    /// be, with when that began (request collapsing).
    filling: HashMap<Arc<str>, Instant>,
    next_gen: u64,
}

#[derive(Debug)]
struct Object {
    variants: Vec<Arc<Entry>>,
    size: usize,
    /// Uses since it entered its queue (at most 3).
    freq: u8,
    in_main: bool,
    /// Tells this object's queue slot from a removed one's.
    gen: u64,
}

fn hash_of(key: &str) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // Every change leaves a shard consistent; poisoning carries no news.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Store {
    /// A store of at most `budget` bytes, holding objects of at most
    /// `max_object` bytes.
    pub fn new(budget: usize, max_object: usize) -> Store {
        // Enough shards to spread contention, few enough that each can
        // still hold several of the largest objects.
        let shards = (budget / max_object.max(1) / 4).clamp(1, 16);
        let shard_budget = budget / shards;
        Store {
            shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
            shard_budget,
            max_object: max_object.min(shard_budget),
            stats: StoreStats::default(),
        }
    }

    /// Largest object stored.
    pub fn max_object(&self) -> usize {
        self.max_object
    }

    fn shard(&self, key: &str) -> &Mutex<Shard> {
        &self.shards[(hash_of(key) % self.shards.len() as u64) as usize]
    }

    /// The stored responses for `key` (every variant), counting a use.
    pub fn get(&self, key: &str) -> Vec<Arc<Entry>> {
        let mut shard = lock(self.shard(key));
        match shard.objects.get_mut(key) {
            Some(o) => {
                o.freq = (o.freq + 1).min(3);
                o.variants.clone()
            }
            None => Vec::new(),
        }
    }

    /// Stores `entry` for `key`, replacing a variant with the same `Vary`
    /// values; makes room first. Too large an entry is not stored.
    pub fn put(&self, key: &str, entry: Arc<Entry>) {
        if entry.size > self.max_object {
            return;
        }
        let mut shard = lock(self.shard(key));
        let shard = &mut *shard;
        shard.filling.remove(key);
        let (before, before_entries) = (shard.used, shard.entries);
        if let Some(o) = shard.objects.get_mut(key) {
            let old = o.variants.iter().position(|v| v.vary == entry.vary);
            let freed = match old {
                Some(i) => o.variants.remove(i).size,
                None if o.variants.len() >= MAX_VARIANTS => o.variants.remove(0).size,
                None => {
                    shard.entries += 1;
                    0
                }
            };
            o.size = o.size - freed + entry.size;
            shard.used = shard.used - freed + entry.size;
            if !o.in_main {
                shard.small_bytes = shard.small_bytes - freed + entry.size;
            }
            o.variants.push(entry);
        } else {
            let key: Arc<str> = Arc::from(key);
            let h = hash_of(&key);
            let in_main = shard.ghost_set.remove(&h);
            let gen = shard.next_gen;
            shard.next_gen += 1;
            let size = entry.size;
            if in_main {
                shard.main.push_back((key.clone(), gen));
            } else {
                shard.small.push_back((key.clone(), gen));
                shard.small_bytes += size;
            }
            shard.used += size;
            shard.entries += 1;
            shard.objects.insert(
                key,
                Object {
                    variants: vec![entry],
                    size,
                    freq: 0,
                    in_main,
                    gen,
                },
            );
        }
        let evicted = shard.make_room(self.shard_budget);
        self.stats.stores.fetch_add(1, Ordering::Relaxed);
        self.stats.evictions.fetch_add(evicted, Ordering::Relaxed);
        self.account(before, shard.used, before_entries, shard.entries);
    }

    /// Replaces the stored variant `old` of `key` with `new` (a
    /// revalidated response), if it is still stored.
    pub fn replace(&self, key: &str, old: &Arc<Entry>, new: Arc<Entry>) {
        let mut shard = lock(self.shard(key));
        let shard = &mut *shard;
        let Some(o) = shard.objects.get_mut(key) else {
            return;
        };
        let Some(i) = o.variants.iter().position(|v| Arc::ptr_eq(v, old)) else {
            return;
        };
        let (before, before_entries) = (shard.used, shard.entries);
        o.size = o.size - old.size + new.size;
        shard.used = shard.used - old.size + new.size;
        if !o.in_main {
            shard.small_bytes = shard.small_bytes - old.size + new.size;
        }
        o.variants[i] = new;
        let evicted = shard.make_room(self.shard_budget);
        self.stats.evictions.fetch_add(evicted, Ordering::Relaxed);
        self.account(before, shard.used, before_entries, shard.entries);
    }

    /// Removes everything stored for `key`; whether anything was.
    pub fn remove(&self, key: &str) -> bool {
        let mut shard = lock(self.shard(key));
        let before = shard.used;
        match shard.objects.remove(key) {
            Some(o) => {
                shard.used -= o.size;
                shard.entries -= o.variants.len();
                if !o.in_main {
                    shard.small_bytes -= o.size;
                }
                let used = shard.used;
                self.stats.invalidations.fetch_add(1, Ordering::Relaxed);
                self.account(before, used, o.variants.len(), 0);
                true
            }
            None => false,
        }
    }

    /// Notes that `key`'s response is being fetched by one connection, so
    /// others may wait for it rather than fetch it too: true if this
    /// caller is the one (no fetch younger than `stale_after` was under
    /// way).
    pub fn begin_fill(&self, key: &str, now: Instant, stale_after: std::time::Duration) -> bool {
        let mut shard = lock(self.shard(key));
        match shard.filling.get(key) {
            Some(&began) if now.saturating_since(began) < stale_after => false,
            _ => {
                shard.filling.insert(Arc::from(key), now);
                true
            }
        }
    }

    /// The fetch of `key` is over, stored or not.
    pub fn end_fill(&self, key: &str) {
        lock(self.shard(key)).filling.remove(key);
    }

    /// Whether a fetch of `key` is under way.
    pub fn filling(&self, key: &str) -> bool {
        lock(self.shard(key)).filling.contains_key(key)
    }

    /// Keeps the byte and entry gauges in step with one shard's change.
    fn account(&self, before: usize, after: usize, entries_before: usize, entries_after: usize) {
        step(&self.stats.bytes, before, after);
        step(&self.stats.entries, entries_before, entries_after);
    }

    /// Bytes held, summed over the shards (for tests).
    #[cfg(test)]
    fn used(&self) -> usize {
        self.shards.iter().map(|s| lock(s).used).sum()
    }
}

impl Shard {
    /// Evicts until `used <= budget`; how many objects went.
    fn make_room(&mut self, budget: usize) -> u64 {
        let mut evicted = 0;
        while self.used > budget {
            let from_small = self.small_bytes > budget / 10 || self.main.is_empty();
            let queue = if from_small {
                &mut self.small
            } else {
                &mut self.main
            };
            let Some((key, gen)) = queue.pop_front() else {
                break;
            };
            let Some(o) = self.objects.get_mut(&key).filter(|o| o.gen == gen) else {
                // A slot of an object removed or replaced since.
                continue;
            };
            if from_small {
                self.small_bytes -= o.size;
                if o.freq > 0 {
                    // Used again while new: it earned a place in main.
                    o.freq = 0;
                    o.in_main = true;
                    self.main.push_back((key, gen));
                    continue;
                }
                let h = hash_of(&key);
                if self.ghost_set.insert(h) {
                    self.ghost.push_back(h);
                    if self.ghost.len() > GHOST_KEYS {
                        if let Some(old) = self.ghost.pop_front() {
                            self.ghost_set.remove(&old);
                        }
                    }
                }
            } else if o.freq > 0 {
                o.freq -= 1;
                self.main.push_back((key, gen));
                continue;
            }
            if let Some(o) = self.objects.remove(&key) {
                self.used -= o.size;
                self.entries -= o.variants.len();
                evicted += 1;
            }
        }
        evicted
    }
}

/// Moves a gauge from `before` to `after`.
fn step(gauge: &AtomicU64, before: usize, after: usize) {
    if after >= before {
        gauge.fetch_add((after - before) as u64, Ordering::Relaxed);
    } else {
        gauge.fetch_sub((before - after) as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::directives::Directives;
    use crate::time::UnixTime;
    use std::time::Duration;

    fn entry(size: usize) -> Arc<Entry> {
        Arc::new(Entry {
            status: 200,
            reason: "OK".into(),
            fields: Vec::new(),
            body: vec![0; size].into(),
            request_time: Instant::ZERO,
            response_time: Instant::ZERO,
            response_wall: UnixTime(0),
            age_value: 0,
            vary: Vec::new(),
            directives: Directives::default(),
            lifetime: Duration::from_secs(60),
            size,
        })
    }

    #[test]
    fn the_budget_holds_and_objects_are_found_by_key() {
        let store = Store::new(10_000, 1_000);
        for i in 0..100 {
            store.put(&format!("k{i}"), entry(500));
            assert!(store.used() <= 10_000);
        }
        assert_eq!(store.get("k99").len(), 1, "the newest is there");
        assert!(store.get("k0").is_empty(), "the oldest went");
        assert!(store.stats.evictions.load(Ordering::Relaxed) > 0);
        assert_eq!(
            store.stats.bytes.load(Ordering::Relaxed) as usize,
            store.used()
        );
        store.put("big", entry(5_000));
        assert!(store.get("big").is_empty(), "over max_object: not stored");
    }

    #[test]
    fn a_scan_does_not_push_out_what_is_used_again() {
        let store = Store::new(20_000, 1_000);
        for i in 0..10 {
            store.put(&format!("hot{i}"), entry(1_000));
        }
        // Each hot object is asked for while new, then a scan of many
        // objects asked for once goes by.
        for round in 0..3 {
            for i in 0..10 {
                assert_eq!(store.get(&format!("hot{i}")).len(), 1, "round {round}");
            }
            for i in 0..200 {
                store.put(&format!("scan{round}-{i}"), entry(1_000));
            }
        }
        let kept = (0..10)
            .filter(|i| !store.get(&format!("hot{i}")).is_empty())
            .count();
        assert_eq!(kept, 10, "the hot set survives the scans");
    }

    #[test]
    fn removal_and_replacement_keep_the_accounts() {
        let store = Store::new(100_000, 10_000);
        store.put("a", entry(1_000));
        let old = store.get("a").pop().unwrap();
        store.replace("a", &old, entry(3_000));
        assert_eq!(store.get("a")[0].size, 3_000);
        assert!(store.remove("a"));
        assert!(!store.remove("a"));
        assert_eq!(store.used(), 0);
        assert_eq!(store.stats.bytes.load(Ordering::Relaxed), 0);
        assert_eq!(store.stats.entries.load(Ordering::Relaxed), 0);
    }
}
