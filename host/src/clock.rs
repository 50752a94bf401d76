//! Converting the OS clocks into the core's time types.

use proxy_core::{Instant, UnixTime, WallAnchor};
use std::time::{Duration, SystemTime};

/// The process's clock: a monotonic origin plus the wall time it maps to.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: std::time::Instant,
    anchor: WallAnchor,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Clock {
            origin: std::time::Instant::now(),
            anchor: WallAnchor {
                unix_at_zero: wall_now(),
            },
        }
    }

    /// The current monotonic time in core units.
    pub fn now(&self) -> Instant {
        self.from_std(std::time::Instant::now())
    }

    /// A std instant in core units.
    pub fn from_std(&self, t: std::time::Instant) -> Instant {
        let micros = t.saturating_duration_since(self.origin).as_micros();
        Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// A core instant as a std instant.
    pub fn to_std(&self, t: Instant) -> std::time::Instant {
        self.origin + Duration::from_micros(t.as_micros())
    }

    /// The wall-clock anchor to give connections.
    pub fn anchor(&self) -> WallAnchor {
        self.anchor
    }
}

/// The current wall time.
pub fn wall_now() -> UnixTime {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    UnixTime(u64::try_from(since.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip() {
        let c = Clock::new();
        let now = std::time::Instant::now() + Duration::from_millis(5);
        let core = c.from_std(now);
        let back = c.to_std(core);
        assert!(back <= now && now - back < Duration::from_micros(2));
    }
}
