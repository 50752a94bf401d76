//! The input buffer each side's bytes wait in until the core consumes
//! them, and the per-thread pool its storage comes from.
//!
//! An idle connection should hold no read buffer: most of a proxy's
//! connections are idle at any moment (keep-alive between requests, a
//! slow client halfway through its head), and 16 KiB each adds up. So an
//! [`InBuf`] takes its storage from the pool when a read needs room, and
//! a runtime gives it back with [`InBuf::release`] once the buffer is
//! empty and the socket has nothing more to read. Pooled buffers are
//! initialised (zeroed) once and reused, so taking one costs neither an
//! allocation nor a memset.

use std::cell::RefCell;

/// The size of a pooled buffer: what one read asks for.
pub const STANDARD: usize = 16 * 1024;

/// Most free buffers a thread keeps; beyond this they are freed. 64 of
/// 16 KiB is 1 MiB per thread, enough for every connection on a thread
/// that reads at the same moment, but bounded after a burst.
const POOL_CAP: usize = 64;

thread_local! {
    /// Free standard buffers, all `STANDARD` bytes long and initialised.
    static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A standard buffer from this thread's pool, or a new one.
fn take_standard() -> Vec<u8> {
    FREE.try_with(|free| free.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_else(|| vec![0; STANDARD])
}

/// Gives `data` to this thread's pool if it is a standard buffer and the
/// pool has room; frees it otherwise. Buffers that grew are not kept, so
/// one large read does not pin its memory for good.
fn give_back(data: Vec<u8>) {
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

/// Bytes read from a socket and not yet consumed, plus initialised spare
/// room to read into.
///
/// The spare room is initialised once and then reused, so preparing a
/// read costs nothing (re-zeroing 16 KiB before every read was most of
/// the driver's CPU time in debug builds). Storage comes from the
/// thread's pool on the first [`spare`](InBuf::spare) and goes back on
/// [`release`](InBuf::release) or drop.
#[derive(Debug, Default)]
pub struct InBuf {
    /// `data[..len]` are the held bytes; the rest is spare room. Empty
    /// when the buffer holds no storage.
    data: Vec<u8>,
    len: usize,
}

impl InBuf {
    /// The held bytes, oldest first.
    pub fn bytes(&self) -> &[u8] {
        &self.data[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the buffer holds storage (held bytes or spare room).
    pub fn has_storage(&self) -> bool {
        !self.data.is_empty()
    }

    /// At least `n` bytes of room after the held bytes, to read into;
    /// follow with [`commit`](InBuf::commit).
    pub fn spare(&mut self, n: usize) -> &mut [u8] {
        let want = self.len + n;
        if self.data.is_empty() && want <= STANDARD {
            self.data = take_standard();
        }
        if self.data.len() < want {
            self.data.resize(want, 0);
        }
        &mut self.data[self.len..]
    }

    /// Room to read into after the held bytes, without outgrowing a
    /// pooled buffer while it has room: the rest of the storage, or
    /// [`STANDARD`] bytes more once less than a quarter of that is left.
    /// Follow with [`commit`](InBuf::commit).
    ///
    /// Asking [`spare`](InBuf::spare) for a full read's worth whenever a
    /// few bytes are held would grow the buffer past the pooled size (and
    /// out of the pool) for nothing.
    pub fn room(&mut self) -> &mut [u8] {
        let left = self.data.len() - self.len;
        let n = if left < STANDARD / 4 { STANDARD } else { left };
        self.spare(n)
    }

    /// Adds `n` bytes just read into [`spare`](InBuf::spare) to the held
    /// bytes.
    pub fn commit(&mut self, n: usize) {
        self.len = (self.len + n).min(self.data.len());
    }

    /// Drops the first `n` held bytes (the core consumed them).
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.data.copy_within(n..self.len, 0);
        self.len -= n;
    }

    /// Drops every held byte.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Gives the storage back to the thread's pool if no bytes are held;
    /// the next [`spare`](InBuf::spare) takes one again. True if the
    /// buffer now holds no storage.
    pub fn release(&mut self) -> bool {
        if self.len == 0 && !self.data.is_empty() {
            give_back(std::mem::take(&mut self.data));
        }
        self.data.is_empty()
    }
}

impl Drop for InBuf {
    fn drop(&mut self) {
        // Held bytes are of no use to anyone now; the storage still is.
        give_back(std::mem::take(&mut self.data));
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
    fn read_commit_consume() {
        let mut b = InBuf::default();
        b.spare(4)[..3].copy_from_slice(b"abc");
        b.commit(3);
        assert_eq!(b.bytes(), b"abc");
        b.spare(4)[..2].copy_from_slice(b"de");
        b.commit(2);
        assert_eq!(b.bytes(), b"abcde");
        b.consume(2);
        assert_eq!(b.bytes(), b"cde");
        b.consume(10);
        assert!(b.is_empty());
        b.spare(1)[0] = b'z';
        b.commit(1);
        assert_eq!(b.bytes(), b"z");
        b.clear();
        assert_eq!(b.len(), 0);
    }

    #[test]
    fn empty_buffer_holds_no_storage_until_a_read() {
        let mut b = InBuf::default();
        assert!(!b.has_storage());
        assert!(b.spare(100).len() >= STANDARD);
        assert!(b.has_storage());
        assert!(b.release());
        assert!(!b.has_storage());
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
        assert_eq!(b.bytes(), b"hi");
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
        assert_eq!(b.room().len(), STANDARD);
        b.commit(100);
        assert_eq!(b.room().len(), STANDARD - 100, "the rest of the storage");
        b.commit(STANDARD - 100 - 10);
        assert!(
            b.room().len() >= STANDARD,
            "nearly full: room for a full read"
        );
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
