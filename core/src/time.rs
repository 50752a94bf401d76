//! The core's own clock types.
//!
//! The core never reads a clock. Runtimes convert their monotonic clock to
//! [`Instant`] (microseconds since an origin of their choosing) and pass it to
//! every entry point that can depend on time. Using our own type rather than
//! `std::time::Instant` makes instants literal in tests, serialisable in
//! traces, and identical on every target, wasm included.

use serde::{Deserialize, Serialize};
use std::ops::{Add, Sub};
use std::time::Duration;

/// A monotonic point in time: microseconds since the runtime's origin.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Instant(u64);

impl Instant {
    /// The runtime's origin.
    pub const ZERO: Instant = Instant(0);

    /// An instant `micros` microseconds after the origin.
    pub const fn from_micros(micros: u64) -> Self {
        Instant(micros)
    }

    /// Microseconds since the origin.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(micros))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_since(earlier)
    }
}

/// Wall-clock time as microseconds since the Unix epoch.
///
/// Only used for what must carry a calendar date (the `Date` header); the
/// core derives it from `now` and the [`WallAnchor`] it was given, so replays
/// are deterministic.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct UnixTime(pub u64);

impl UnixTime {
    /// Whole seconds since the epoch.
    pub const fn as_secs(self) -> u64 {
        self.0 / 1_000_000
    }
}

/// Ties the runtime's monotonic origin to the calendar: the wall time at
/// [`Instant::ZERO`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WallAnchor {
    /// Wall time when the runtime's monotonic clock read [`Instant::ZERO`].
    pub unix_at_zero: UnixTime,
}

impl WallAnchor {
    /// The wall time corresponding to `now`.
    pub fn wall(self, now: Instant) -> UnixTime {
        UnixTime(self.unix_at_zero.0.saturating_add(now.as_micros()))
    }
}

/// The timers a connection can arm. Each has one slot in a [`TimerTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Timer {
    /// Waiting for the first byte of a request on an idle keep-alive connection.
    ClientIdle,
    /// Reading a request head that has begun (slowloris defence).
    HeadRead,
    /// Waiting for a name to resolve.
    Resolve,
    /// Waiting for an upstream connection to be established.
    Connect,
    /// Waiting for the upstream's response head.
    Response,
    /// A body transfer made no progress in either direction.
    Transfer,
    /// Waiting for a tunnel's TLS ClientHello.
    ClientHello,
    /// Looking again whether another connection's fetch of a resource
    /// was stored (request collapsing).
    Collapse,
}

impl Timer {
    /// Every timer, in slot order.
    pub const ALL: [Timer; 8] = [
        Timer::ClientIdle,
        Timer::HeadRead,
        Timer::Resolve,
        Timer::Connect,
        Timer::Response,
        Timer::Transfer,
        Timer::ClientHello,
        Timer::Collapse,
    ];

    fn slot(self) -> usize {
        self as usize
    }
}

/// One optional deadline per [`Timer`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimerTable([Option<Instant>; Timer::ALL.len()]);

impl TimerTable {
    /// Arms `timer` to fire at `at`, replacing any earlier deadline.
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.0[timer.slot()] = Some(at);
    }

    /// Disarms `timer`.
    pub fn stop(&mut self, timer: Timer) {
        self.0[timer.slot()] = None;
    }

    /// Disarms every timer.
    pub fn stop_all(&mut self) {
        self.0 = Default::default();
    }

    /// The deadline of `timer`, if armed.
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.0[timer.slot()]
    }

    /// The earliest armed deadline.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }

    /// Whether `timer` is armed and due at `now`.
    pub fn is_expired(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|at| at <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_timeout_is_the_earliest_armed() {
        let mut t = TimerTable::default();
        assert_eq!(t.next_timeout(), None);
        t.set(Timer::Response, Instant::from_micros(50));
        t.set(Timer::HeadRead, Instant::from_micros(20));
        assert_eq!(t.next_timeout(), Some(Instant::from_micros(20)));
        t.stop(Timer::HeadRead);
        assert_eq!(t.next_timeout(), Some(Instant::from_micros(50)));
        assert!(!t.is_expired(Timer::Response, Instant::from_micros(49)));
        assert!(t.is_expired(Timer::Response, Instant::from_micros(50)));
    }

    #[test]
    fn instant_arithmetic_saturates() {
        let a = Instant::from_micros(10);
        assert_eq!(a + Duration::from_millis(1), Instant::from_micros(1010));
        assert_eq!(Instant::ZERO - a, Duration::ZERO);
        assert_eq!(
            Instant::from_micros(u64::MAX) + Duration::from_secs(1),
            Instant::from_micros(u64::MAX)
        );
    }

    #[test]
    fn wall_anchor_maps_monotonic_to_calendar() {
        let anchor = WallAnchor {
            unix_at_zero: UnixTime(1_000_000_000),
        };
        assert_eq!(anchor.wall(Instant::from_micros(2_500_000)).as_secs(), 1002);
    }
}
