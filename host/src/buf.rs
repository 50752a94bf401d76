//! The per-thread pool input buffers' storage comes from in both
//! runtimes ([`Pooled`], a `proxy_core::buf::Storage`), so an idle
//! connection holds no buffer and a busy one takes an initialised one
//! without an allocation or a memset.

use proxy_core::buf::{Storage, STANDARD};
use std::cell::RefCell;

/// Input buffers from this thread's pool.
pub type InBuf = proxy_core::buf::InBuf<Pooled>;

/// Most free buffers a thread keeps; beyond this they are freed. 64 of
/// 16 KiB is 1 MiB per thread, enough for every connection on a thread
/// that reads at the same moment, but bounded after a burst.
const POOL_CAP: usize = 64;

thread_local! {
    /// Free standard buffers, all `STANDARD` bytes long and initialised.
    static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// The storage of the runtimes' input buffers: this thread's pool of
/// standard buffers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pooled;

impl Storage for Pooled {
    fn take() -> Vec<u8> {
        FREE.try_with(|free| free.borrow_mut().pop())
            .ok()
            .flatten()
            .unwrap_or_else(|| vec![0; STANDARD])
    }

    /// Keeps `data` if it is a standard buffer and the pool has room;
    /// frees it otherwise. Buffers that grew are not kept, so one large
    /// read does not pin its memory for good.
    fn give(data: Vec<u8>) {
        if data.len() != STANDARD || data.capacity() != STANDARD {
            return;
        }
        let mut data = Some(data);
        // During thread exit the pool may be gone already; then `data` is
        // simply freed.
        let _ = FREE.try_with(|free| {
            let mut free = free.borrow_mut();
            if free.len() < POOL_CAP {
                free.extend(data.take());
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Free buffers in this thread's pool. Each test runs on its own
    /// thread, so tests do not see each other's buffers.
    fn pooled() -> usize {
        FREE.with(|free| free.borrow().len())
    }

    #[test]
    fn released_buffer_is_reused() {
        let mut a = InBuf::default();
        let storage = a.spare(10).as_ptr();
        assert!(a.release());
        assert_eq!(pooled(), 1);
        let mut b = InBuf::default();
        assert_eq!(b.spare(10).as_ptr(), storage);
        assert_eq!(pooled(), 0);
        // Dropping gives it back too.
        drop(b);
        assert_eq!(pooled(), 1);
    }

    #[test]
    fn a_buffer_holding_bytes_is_not_released() {
        let mut b = InBuf::default();
        b.spare(10)[..2].copy_from_slice(b"hi");
        b.commit(2);
        assert!(!b.release());
        assert_eq!(pooled(), 0);
        b.consume(2);
        assert!(b.release());
        assert_eq!(pooled(), 1);
    }

    #[test]
    fn grown_buffers_are_not_pooled() {
        let mut b = InBuf::default();
        b.spare(STANDARD);
        b.commit(STANDARD);
        // More room than a standard buffer has: it grows.
        assert!(b.spare(STANDARD).len() >= STANDARD);
        b.clear();
        assert!(b.release());
        assert_eq!(pooled(), 0);
        // Asked for more than a standard buffer from the start: likewise.
        let mut big = InBuf::default();
        big.spare(STANDARD * 2);
        drop(big);
        assert_eq!(pooled(), 0);
    }

    #[test]
    fn room_fills_a_pooled_buffer_before_growing_it() {
        let mut b = InBuf::default();
        b.room();
        b.commit(STANDARD - 10);
        assert!(b.room().len() >= STANDARD);
        b.clear();
        assert!(b.release());
        assert_eq!(pooled(), 0, "grown: not pooled");
    }

    #[test]
    fn the_pool_cap_holds() {
        let mut bufs: Vec<InBuf> = (0..POOL_CAP + 10).map(|_| InBuf::default()).collect();
        for b in &mut bufs {
            b.spare(1);
        }
        drop(bufs);
        assert_eq!(pooled(), POOL_CAP);
    }
}
