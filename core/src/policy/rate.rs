//! Per-client and per-user request rate limiting.
//!
//! A token bucket, kept in the equivalent GCRA form: per key we store only
//! the *theoretical arrival time* (TAT), the moment the bucket would be full
//! again. Taking a token pushes the TAT one emission interval later; a request
//! is refused when that would put the TAT more than `burst` intervals ahead
//! of `now`. This needs no separate refill step and no "last seen" stamp, and
//! it gives the two properties the limiter is built around for free:
//!
//! - an entry whose TAT is not after `now` is a full bucket, exactly the same
//!   as no entry, so idle entries can be dropped without changing any answer;
//! - time going backwards cannot mint tokens: the TAT never moves earlier.
//!
//! Time is scaled by `requests` so that one emission interval (`per /
//! requests`) is the whole number `per` in microseconds: all arithmetic is
//! exact integers (u128 leaves room for any `u64` instant times any `u32`
//! rate), with no rounding drift however long the proxy runs.

use crate::time::Instant;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// How fast: `requests` per `per`, with bursts up to `burst` (token bucket).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    /// Requests allowed per `per` on average.
    pub requests: u32,
    /// The interval `requests` are counted over.
    #[serde(with = "crate::units::duration")]
    pub per: Duration,
    /// How many requests may arrive back to back after a quiet spell;
    /// `None` means `requests`.
    #[serde(default)]
    pub burst: Option<u32>,
}

impl RateConfig {
    /// The bucket size actually used.
    pub fn effective_burst(&self) -> u32 {
        self.burst.unwrap_or(self.requests)
    }

    /// Rejects settings that are almost certainly mistakes: a zero rate or
    /// burst (which would refuse everyone, forever) and a zero interval
    /// (which would allow everything).
    pub fn validate(&self) -> Result<(), String> {
        if self.requests == 0 {
            return Err("rate limit `requests` must be at least 1".to_owned());
        }
        if self.per.is_zero() {
            return Err("rate limit `per` must be longer than zero".to_owned());
        }
        if self.burst == Some(0) {
            return Err("rate limit `burst` must be at least 1".to_owned());
        }
        Ok(())
    }
}

/// What a limit is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RateKey {
    /// A client address; IPv4-mapped IPv6 counts as the IPv4 address.
    Ip(IpAddr),
    /// An authenticated user name.
    User(String),
}

impl RateKey {
    fn canonical(&self) -> Cow<'_, RateKey> {
        match self {
            RateKey::Ip(ip) if ip.to_canonical() != *ip => {
                Cow::Owned(RateKey::Ip(ip.to_canonical()))
            }
            _ => Cow::Borrowed(self),
        }
    }
}

/// The most shards; fewer when `max_keys` is too small to give each one a
/// place.
const SHARDS: usize = 16;

/// Request rate limits for many keys at once, shared by every connection.
///
/// `Send + Sync`; keys are spread over independently locked shards so
/// connections on different threads rarely wait for each other.
#[derive(Debug)]
pub struct RateLimiter {
    config: RateConfig,
    /// `requests`: how much scaled time passes per microsecond.
    rate: u128,
    /// `per` in microseconds: the emission interval in scaled time.
    interval: u128,
    /// `burst * interval`: how far ahead of now the TAT may run.
    tolerance: u128,
    /// Keys each shard may hold; `shards.len() * shard_cap <= max_keys`.
    shard_cap: usize,
    /// TAT per key, in scaled time (microseconds × `requests`).
    shards: Box<[Mutex<HashMap<RateKey, u128>>]>,
}

impl RateLimiter {
    /// `max_keys` bounds memory however many clients appear (at least one
    /// key is always kept).
    pub fn new(config: RateConfig, max_keys: usize) -> Self {
        let max_keys = max_keys.max(1);
        let shard_count = SHARDS.min(max_keys);
        let interval = u128::from(u64::try_from(config.per.as_micros()).unwrap_or(u64::MAX));
        RateLimiter {
            rate: u128::from(config.requests),
            interval,
            tolerance: u128::from(config.effective_burst()) * interval,
            shard_cap: max_keys / shard_count,
            shards: (0..shard_count)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            config,
        }
    }

    /// The settings this limiter was made with (a reload can keep the
    /// limiter, and its counts, when they did not change).
    pub fn config(&self) -> &RateConfig {
        &self.config
    }

    /// Takes one token for `key` at `now`; `Err(retry_after)` when empty: how
    /// long until one token is back (rounding to whole seconds for
    /// `Retry-After` is the caller's business).
    ///
    /// A refused request takes nothing, so a client that keeps retrying too
    /// early is not pushed further back. With a zero `requests` rate the
    /// bucket never refills and `retry_after` is [`Duration::MAX`].
    pub fn check(&self, key: &RateKey, now: Instant) -> Result<(), Duration> {
        let key = key.canonical();
        let now = self.scaled(now);
        let mut shard = self.shard(&key);
        let tat = shard.get(key.as_ref()).copied().unwrap_or(now).max(now);
        let next = tat + self.interval;
        if next - now > self.tolerance {
            return Err(self.retry_after(next - now - self.tolerance));
        }
        if next <= now {
            // Only with a zero interval: the bucket is full again at once,
            // which is what no entry means.
            shard.remove(key.as_ref());
            return Ok(());
        }
        if let Some(slot) = shard.get_mut(key.as_ref()) {
            *slot = next;
            return Ok(());
        }
        if shard.len() >= self.shard_cap {
            self.make_room(&mut shard, now);
        }
        shard.insert(key.into_owned(), next);
        Ok(())
    }

    /// Gives back one token [`check`](Self::check) took for `key` (the
    /// attempt it was taken for turned out not to count), never filling
    /// the bucket beyond full.
    pub fn refund(&self, key: &RateKey, now: Instant) {
        let key = key.canonical();
        let now = self.scaled(now);
        let mut shard = self.shard(&key);
        if let Some(tat) = shard.get_mut(key.as_ref()) {
            *tat = tat.saturating_sub(self.interval);
            if *tat <= now {
                shard.remove(key.as_ref());
            }
        }
    }

    /// Keys currently tracked, including idle ones not yet swept.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every key whose bucket is full again at `now`. Never needed for
    /// correctness or to bound memory (a full shard sweeps itself); a runtime
    /// may call it now and then so that [`len`](Self::len) reflects active
    /// clients.
    pub fn sweep(&self, now: Instant) {
        let now = self.scaled(now);
        for shard in self.shards.iter() {
            lock(shard).retain(|_, tat| *tat > now);
        }
    }

    fn scaled(&self, now: Instant) -> u128 {
        u128::from(now.as_micros()) * self.rate
    }

    fn retry_after(&self, scaled: u128) -> Duration {
        if self.rate == 0 {
            return Duration::MAX;
        }
        let micros = scaled.div_ceil(self.rate);
        Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    fn shard(&self, key: &RateKey) -> MutexGuard<'_, HashMap<RateKey, u128>> {
        // A fixed-key hasher keeps shard choice, and so which keys compete
        // for room, the same on every run (replays are deterministic). The
        // maps themselves keep std's randomised hashing against flooding.
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let index = (hasher.finish() % self.shards.len() as u64) as usize;
        lock(&self.shards[index])
    }

    /// Brings a full shard below its cap before an insert.
    ///
    /// Dropping a key forgives its debt (it comes back with a full bucket),
    /// so the keys dropped are those owing least: full buckets first (owing
    /// nothing), then the ones whose TAT is nearest. That is a better choice
    /// than least recently used: a heavy hitter that has paused is still
    /// deep in debt and stays limited, while a flood of one-off addresses
    /// evicts only itself. An eighth of the shard goes at once so that a
    /// flood costs amortised constant time per new key, not a scan each.
    fn make_room(&self, shard: &mut HashMap<RateKey, u128>, now: u128) {
        shard.retain(|_, tat| *tat > now);
        if shard.len() < self.shard_cap {
            return;
        }
        let keep = self.shard_cap - 1 - (self.shard_cap - 1) / 8;
        let mut by_debt: Vec<(u128, RateKey)> =
            shard.iter().map(|(k, &tat)| (tat, k.clone())).collect();
        let drop = by_debt.len() - keep;
        // Ties are broken by key so the choice does not depend on the map's
        // random iteration order.
        by_debt.select_nth_unstable(drop - 1);
        for (_, key) in &by_debt[..drop] {
            shard.remove(key);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is a single map operation, so a panic elsewhere cannot
    // leave a shard half-changed; poisoning carries no information.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn config(requests: u32, per: Duration, burst: Option<u32>) -> RateConfig {
        RateConfig {
            requests,
            per,
            burst,
        }
    }

    fn at(micros: u64) -> Instant {
        Instant::from_micros(micros)
    }

    fn ip(a: u8, b: u8, c: u8, d: u8) -> RateKey {
        RateKey::Ip(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
    }

    #[test]
    fn a_refund_gives_one_token_back_and_never_more_than_a_full_bucket() {
        let limiter = RateLimiter::new(config(1, Duration::from_secs(60), Some(2)), 100);
        let key = ip(10, 0, 0, 9);
        assert_eq!(limiter.check(&key, at(0)), Ok(()));
        assert_eq!(limiter.check(&key, at(0)), Ok(()));
        assert!(limiter.check(&key, at(0)).is_err());
        limiter.refund(&key, at(0));
        assert_eq!(limiter.check(&key, at(0)), Ok(()), "the refunded token");
        assert!(limiter.check(&key, at(0)).is_err());
        // Refunds beyond a full bucket are lost, not banked.
        for _ in 0..5 {
            limiter.refund(&key, at(0));
        }
        assert!(limiter.is_empty(), "a full bucket is no entry");
        assert_eq!(limiter.check(&key, at(0)), Ok(()));
        assert_eq!(limiter.check(&key, at(0)), Ok(()));
        assert!(limiter.check(&key, at(0)).is_err());
    }

    #[test]
    fn burst_then_refusal_with_exact_retry_after() {
        // 10 per second, bursts of 3: one token every 100ms.
        let limiter = RateLimiter::new(config(10, Duration::from_secs(1), Some(3)), 100);
        let key = ip(10, 0, 0, 1);
        for _ in 0..3 {
            assert_eq!(limiter.check(&key, at(0)), Ok(()));
        }
        assert_eq!(limiter.check(&key, at(0)), Err(Duration::from_millis(100)));
        assert_eq!(
            limiter.check(&key, at(30_000)),
            Err(Duration::from_millis(70))
        );
        assert_eq!(limiter.check(&key, at(100_000)), Ok(()));
        assert_eq!(
            limiter.check(&key, at(100_000)),
            Err(Duration::from_millis(100))
        );
    }

    #[test]
    fn burst_defaults_to_requests() {
        let limiter = RateLimiter::new(config(5, Duration::from_secs(60), None), 100);
        let key = RateKey::User("alice".into());
        for _ in 0..5 {
            assert_eq!(limiter.check(&key, at(0)), Ok(()));
        }
        assert_eq!(limiter.check(&key, at(0)), Err(Duration::from_secs(12)));
    }

    #[test]
    fn retry_after_rounds_fractional_intervals_up() {
        // 3 per second: an interval of 333_333.33µs.
        let limiter = RateLimiter::new(config(3, Duration::from_secs(1), Some(1)), 100);
        let key = ip(10, 0, 0, 1);
        assert_eq!(limiter.check(&key, at(0)), Ok(()));
        assert_eq!(
            limiter.check(&key, at(0)),
            Err(Duration::from_micros(333_334))
        );
        assert!(limiter.check(&key, at(333_333)).is_err());
        assert_eq!(limiter.check(&key, at(333_334)), Ok(()));
    }

    #[test]
    fn no_drift_over_a_long_run() {
        // A client draining the bucket every millisecond for 1000 seconds at
        // 3 per second gets the burst plus exactly 3000, however the
        // 333_333.33µs intervals fall between the milliseconds.
        let limiter = RateLimiter::new(config(3, Duration::from_secs(1), Some(10)), 100);
        let key = ip(10, 0, 0, 1);
        let mut allowed = 0;
        for ms in 0..=1_000_000u64 {
            while limiter.check(&key, at(ms * 1_000)).is_ok() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 10 + 3_000);
    }

    #[test]
    fn tokens_refill_over_time_up_to_the_burst() {
        let limiter = RateLimiter::new(config(1, Duration::from_secs(1), Some(2)), 100);
        let key = ip(10, 0, 0, 1);
        assert!(limiter.check(&key, at(0)).is_ok());
        assert!(limiter.check(&key, at(0)).is_ok());
        assert!(limiter.check(&key, at(0)).is_err());
        assert!(limiter.check(&key, at(1_000_000)).is_ok());
        assert!(limiter.check(&key, at(1_000_000)).is_err());
        // A long silence refills to the burst, no further.
        let later = at(3_600_000_000);
        assert!(limiter.check(&key, later).is_ok());
        assert!(limiter.check(&key, later).is_ok());
        assert!(limiter.check(&key, later).is_err());
    }

    #[test]
    fn keys_are_independent() {
        let limiter = RateLimiter::new(config(1, Duration::from_secs(1), Some(1)), 100);
        assert!(limiter.check(&ip(10, 0, 0, 1), at(0)).is_ok());
        assert!(limiter.check(&ip(10, 0, 0, 1), at(0)).is_err());
        assert!(limiter.check(&ip(10, 0, 0, 2), at(0)).is_ok());
        assert!(limiter.check(&RateKey::User("a".into()), at(0)).is_ok());
        assert!(limiter.check(&RateKey::User("b".into()), at(0)).is_ok());
        assert!(limiter.check(&RateKey::User("a".into()), at(0)).is_err());
        assert_eq!(limiter.len(), 4);
    }

    #[test]
    fn ipv4_mapped_ipv6_counts_as_ipv4() {
        let limiter = RateLimiter::new(config(1, Duration::from_secs(1), Some(1)), 100);
        let mapped = RateKey::Ip(IpAddr::V6(Ipv4Addr::new(1, 2, 3, 4).to_ipv6_mapped()));
        assert!(limiter.check(&ip(1, 2, 3, 4), at(0)).is_ok());
        assert!(limiter.check(&mapped, at(0)).is_err());
        assert_eq!(limiter.len(), 1);
        // A genuine IPv6 address is its own key.
        let v6 = RateKey::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert!(limiter.check(&v6, at(0)).is_ok());
    }

    #[test]
    fn time_going_backwards_neither_panics_nor_mints() {
        let limiter = RateLimiter::new(config(1, Duration::from_secs(1), Some(2)), 100);
        let key = ip(10, 0, 0, 1);
        assert!(limiter.check(&key, at(10_000_000)).is_ok());
        assert!(limiter.check(&key, at(10_000_000)).is_ok());
        assert!(limiter.check(&key, at(5_000_000)).is_err());
        assert!(limiter.check(&key, at(0)).is_err());
        assert!(limiter.check(&key, at(10_999_999)).is_err());
        assert!(limiter.check(&key, at(11_000_000)).is_ok());
    }

    #[test]
    fn degenerate_settings_do_not_panic() {
        let never = RateLimiter::new(config(0, Duration::from_secs(1), Some(1)), 10);
        let key = ip(10, 0, 0, 1);
        assert!(never.check(&key, at(0)).is_ok());
        assert_eq!(never.check(&key, at(u64::MAX)), Err(Duration::MAX));
        let none = RateLimiter::new(config(5, Duration::from_secs(1), Some(0)), 10);
        assert_eq!(none.check(&key, at(0)), Err(Duration::from_millis(200)));
        assert!(none.is_empty());
        let free = RateLimiter::new(config(5, Duration::ZERO, None), 10);
        for _ in 0..100 {
            assert!(free.check(&key, at(0)).is_ok());
        }
        let huge = RateLimiter::new(config(u32::MAX, Duration::MAX, Some(u32::MAX)), 0);
        assert!(huge.check(&key, at(u64::MAX)).is_ok());
        assert!(config(0, Duration::from_secs(1), None).validate().is_err());
        assert!(config(1, Duration::ZERO, None).validate().is_err());
        assert!(config(1, Duration::from_secs(1), Some(0))
            .validate()
            .is_err());
        assert!(config(1, Duration::from_secs(1), None).validate().is_ok());
    }

    #[test]
    fn full_buckets_are_swept() {
        let limiter = RateLimiter::new(config(1, Duration::from_secs(1), Some(5)), 100);
        assert!(limiter.check(&ip(10, 0, 0, 1), at(0)).is_ok());
        for _ in 0..5 {
            let _ = limiter.check(&ip(10, 0, 0, 2), at(0));
        }
        limiter.sweep(at(999_999));
        assert_eq!(limiter.len(), 2);
        limiter.sweep(at(1_000_000));
        assert_eq!(limiter.len(), 1);
        limiter.sweep(at(5_000_000));
        assert!(limiter.is_empty());
    }

    #[test]
    fn memory_stays_bounded_and_heavy_hitters_stay_limited() {
        let limiter = RateLimiter::new(config(10, Duration::from_secs(60), None), 1_000);
        let hitter = ip(192, 0, 2, 1);
        for _ in 0..10 {
            assert!(limiter.check(&hitter, at(0)).is_ok());
        }
        assert!(limiter.check(&hitter, at(0)).is_err());
        for i in 0..100_000u32 {
            let now = at(u64::from(i) * 10);
            let key = RateKey::Ip(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)));
            assert!(limiter.check(&key, now).is_ok());
            assert!(limiter.len() <= 1_000);
            if i % 1_000 == 0 {
                assert!(limiter.check(&hitter, now).is_err(), "forgiven at {i}");
            }
        }
        assert!(limiter.len() <= 1_000);
        assert!(limiter.check(&hitter, at(1_000_000)).is_err());
    }

    #[test]
    fn eviction_is_deterministic() {
        let run = || {
            let limiter = RateLimiter::new(config(1, Duration::from_secs(1), Some(1)), 20);
            for i in 0..200u32 {
                let key = RateKey::User(format!("u{i}"));
                let _ = limiter.check(&key, at(0));
            }
            (0..200u32)
                .map(|i| {
                    limiter
                        .check(&RateKey::User(format!("u{i}")), at(0))
                        .is_ok()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn limiter_is_shareable_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<RateLimiter>();
    }

    #[test]
    fn config_reads_human_durations() {
        let c: RateConfig = ron::from_str("(requests: 100, per: \"1m\", burst: Some(20))").unwrap();
        assert_eq!(c, config(100, Duration::from_secs(60), Some(20)));
        let c: RateConfig = ron::from_str("(requests: 5, per: \"10s\")").unwrap();
        assert_eq!(c.effective_burst(), 5);
        assert!(ron::from_str::<RateConfig>("(requests: 5, per: \"1s\", bursts: 3)").is_err());
    }

    proptest! {
        /// Over any calls, for any key and any window `[t, t + w]`, the
        /// requests allowed within it never exceed `burst + requests * w / per`.
        #[test]
        fn allowed_never_exceeds_burst_plus_rate_times_window(
            requests in 1u32..20,
            per_ms in 1u64..5_000,
            burst in proptest::option::of(1u32..10),
            steps in proptest::collection::vec(
                (0u8..4, prop_oneof![3 => Just(0u64), 1 => 0u64..2_000_000]),
                1..300,
            ),
        ) {
            let cfg = config(requests, Duration::from_millis(per_ms), burst);
            // Room for every key in every shard: nothing is ever forgiven.
            let limiter = RateLimiter::new(cfg.clone(), 1_000);
            let per_us = u128::from(per_ms) * 1_000;
            let burst = u128::from(cfg.effective_burst());
            let mut now = 0u64;
            let mut allowed: Vec<(u8, u64)> = Vec::new();
            for (key, advance) in steps {
                now += advance;
                if limiter.check(&RateKey::User(format!("k{key}")), at(now)).is_ok() {
                    allowed.push((key, now));
                }
            }
            for key in 0..4u8 {
                let times: Vec<u64> =
                    allowed.iter().filter(|(k, _)| *k == key).map(|(_, t)| *t).collect();
                for (i, &start) in times.iter().enumerate() {
                    for (j, &end) in times.iter().enumerate().skip(i) {
                        let count = (j - i + 1) as u128;
                        let window = u128::from(end - start);
                        prop_assert!(
                            count * per_us <= burst * per_us + u128::from(requests) * window,
                            "key {key}: {count} allowed in {window}µs"
                        );
                    }
                }
            }
        }

        /// However small the bound and whatever the keys, memory stays within it.
        #[test]
        fn tracked_keys_never_exceed_max_keys(
            max_keys in 0usize..40,
            steps in proptest::collection::vec((0u16..200, 0u64..100_000), 1..300),
        ) {
            let limiter = RateLimiter::new(config(2, Duration::from_secs(1), None), max_keys);
            let mut now = 0u64;
            for (key, advance) in steps {
                now += advance;
                let _ = limiter.check(&RateKey::User(key.to_string()), at(now));
                prop_assert!(limiter.len() <= max_keys.max(1));
            }
        }
    }
}
