//! Idle upstream connections, kept per address for reuse.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most idle connections kept per upstream address, in both runtimes.
///
/// As many as the clients that use one origin at once, so that a busy
/// origin's connections are all reused: with 8, 64 keep-alive clients of
/// one origin opened a new upstream connection for a fifth of their
/// requests (connect and close were 15% of the proxy's CPU); with 256,
/// 2,000 clients of one origin (`bench/soak.sh --conns 2000`) churned so
/// many upstream connections that the origin's accept queue overflowed
/// and about 1 request in 3,000 got a 504. An idle pooled connection
/// costs a socket and no buffer, and goes after `timeouts.upstream_idle`;
/// the descriptor limit and `limits.max_connections` bound how many
/// clients there are to pool for in the first place.
pub const MAX_IDLE_PER_ADDR: usize = 8192;

/// A pool of idle connections of type `T`, keyed by the address they are
/// connected to. Entries older than the idle timeout are dropped (closing
/// them) when met.
#[derive(Debug)]
pub struct Pool<T> {
    idle: Mutex<HashMap<SocketAddr, Vec<(T, Instant)>>>,
    idle_timeout: Duration,
    max_per_addr: usize,
}

impl<T> Pool<T> {
    /// An empty pool.
    pub fn new(idle_timeout: Duration, max_per_addr: usize) -> Self {
        Pool {
            idle: Mutex::new(HashMap::new()),
            idle_timeout,
            max_per_addr,
        }
    }

    /// The most recently parked live connection to `addr`, if any.
    pub fn take(&self, addr: SocketAddr) -> Option<T> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(&addr)?;
        let now = Instant::now();
        while let Some((conn, since)) = list.pop() {
            if now.duration_since(since) < self.idle_timeout {
                return Some(conn);
            }
        }
        None
    }

    /// Parks `conn` for reuse; drops it if the pool is full for `addr`.
    pub fn put(&self, addr: SocketAddr, conn: T) {
        if self.idle_timeout.is_zero() || self.max_per_addr == 0 {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(addr).or_default();
        if list.len() >= self.max_per_addr {
            list.remove(0);
        }
        list.push((conn, Instant::now()));
    }

    /// Drops every expired connection; returns how many are left.
    pub fn sweep(&self) -> usize {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        idle.retain(|_, list| {
            list.retain(|(_, since)| now.duration_since(*since) < self.idle_timeout);
            !list.is_empty()
        });
        idle.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_newest_first_and_expires() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let p = Pool::new(Duration::from_secs(60), 2);
        p.put(a, 1);
        p.put(a, 2);
        p.put(a, 3);
        assert_eq!(p.take(a), Some(3));
        assert_eq!(p.take(a), Some(2));
        assert_eq!(p.take(a), None);
        let p = Pool::new(Duration::from_millis(1), 2);
        p.put(a, 1);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(p.take(a), None);
        assert_eq!(p.sweep(), 0);
    }
}
