//! The input buffer each side's bytes wait in until the connection
//! consumes them, and where its memory comes from.
//!
//! An idle connection should hold no read buffer: most of a proxy's
//! connections are idle at any moment (keep-alive between requests, a
//! slow client halfway through its head), and 16 KiB each adds up. So an
//! [`InBuf`] takes its storage from a [`Storage`] when a read needs room
//! and gives it back with [`InBuf::release`] once it is empty. The
//! runtimes plug in a per-thread pool (`proxy_host::buf::Pooled`), which
//! hands out initialised buffers again and again, so taking one costs
//! neither an allocation nor a memset; [`Heap`] (replay, tests, fuzzing)
//! simply allocates. The core itself holds no pool: that would be global
//! state.

use std::marker::PhantomData;

/// The size of a standard buffer: what one read asks for.
pub const STANDARD: usize = 16 * 1024;

/// Where input buffers' memory comes from and goes back to.
pub trait Storage {
    /// A buffer of [`STANDARD`] initialised bytes (`len() == STANDARD`).
    fn take() -> Vec<u8>;
    /// A buffer no longer needed, of any size: keep it or free it.
    fn give(buf: Vec<u8>);
}

/// Plain allocation: every buffer is new and freed when given back.
#[derive(Debug, Clone, Copy, Default)]
pub struct Heap;

impl Storage for Heap {
    fn take() -> Vec<u8> {
        vec![0; STANDARD]
    }

    fn give(_: Vec<u8>) {}
}

/// Bytes read from a socket and not yet consumed, plus initialised spare
/// room to read into.
///
/// The spare room is initialised once and then reused, so preparing a
/// read costs nothing (re-zeroing 16 KiB before every read was most of
/// a driver's CPU time in debug builds). Storage comes from `S` on the
/// first [`spare`](InBuf::spare) and goes back on
/// [`release`](InBuf::release) or drop.
pub struct InBuf<S: Storage = Heap> {
    /// `data[..len]` are the held bytes; the rest is spare room. Empty
    /// when the buffer holds no storage.
    data: Vec<u8>,
    len: usize,
    storage: PhantomData<fn() -> S>,
}

impl<S: Storage> Default for InBuf<S> {
    fn default() -> Self {
        InBuf {
            data: Vec::new(),
            len: 0,
            storage: PhantomData,
        }
    }
}

impl<S: Storage> std::fmt::Debug for InBuf<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InBuf")
            .field("len", &self.len)
            .field("storage", &self.data.len())
            .finish()
    }
}

impl<S: Storage> InBuf<S> {
    /// A buffer holding `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut b = InBuf::default();
        b.extend(bytes);
        b
    }

    /// The held bytes, oldest first.
    pub fn bytes(&self) -> &[u8] {
        &self.data[..self.len]
    }

    /// How many bytes are held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no bytes are held.
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
            self.data = S::take();
        }
        if self.data.len() < want {
            self.data.resize(want, 0);
        }
        &mut self.data[self.len..]
    }

    /// Room to read into after the held bytes, without outgrowing a
    /// standard buffer while it has room: the rest of the storage, or
    /// [`STANDARD`] bytes more once less than a quarter of that is left.
    /// Follow with [`commit`](InBuf::commit).
    ///
    /// Asking [`spare`](InBuf::spare) for a full read's worth whenever a
    /// few bytes are held would grow the buffer past the standard size
    /// (and out of a pool) for nothing.
    pub fn room(&mut self) -> &mut [u8] {
        let left = self.data.len() - self.len;
        let n = if left < STANDARD / 4 { STANDARD } else { left };
        self.spare(n)
    }

    /// Adds `n` bytes just read into the spare room to the held bytes.
    pub fn commit(&mut self, n: usize) {
        self.len = (self.len + n).min(self.data.len());
    }

    /// Appends `bytes` (a copy: for bytes that were not read in place).
    pub fn extend(&mut self, bytes: &[u8]) {
        self.spare(bytes.len())[..bytes.len()].copy_from_slice(bytes);
        self.commit(bytes.len());
    }

    /// Drops the first `n` held bytes (they were consumed).
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.data.copy_within(n..self.len, 0);
        self.len -= n;
    }

    /// Drops every held byte.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Gives the storage back if no bytes are held; the next
    /// [`spare`](InBuf::spare) takes one again. True if the buffer now
    /// holds no storage.
    pub fn release(&mut self) -> bool {
        if self.len == 0 && !self.data.is_empty() {
            S::give(std::mem::take(&mut self.data));
        }
        self.data.is_empty()
    }
}

impl<S: Storage> Drop for InBuf<S> {
    fn drop(&mut self) {
        // Held bytes are of no use to anyone now; the storage still is.
        if !self.data.is_empty() {
            S::give(std::mem::take(&mut self.data));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_commit_consume() {
        let mut b = InBuf::<Heap>::default();
        b.spare(4)[..3].copy_from_slice(b"abc");
        b.commit(3);
        assert_eq!(b.bytes(), b"abc");
        b.extend(b"de");
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
        let mut b = InBuf::<Heap>::default();
        assert!(!b.has_storage());
        assert!(b.spare(100).len() >= STANDARD);
        assert!(b.has_storage());
        assert!(b.release());
        assert!(!b.has_storage());
    }

    #[test]
    fn a_buffer_holding_bytes_is_not_released() {
        let mut b = InBuf::<Heap>::from_bytes(b"hi");
        assert!(!b.release());
        assert_eq!(b.bytes(), b"hi");
        b.consume(2);
        assert!(b.release());
    }

    #[test]
    fn room_fills_a_standard_buffer_before_growing_it() {
        let mut b = InBuf::<Heap>::default();
        assert_eq!(b.room().len(), STANDARD);
        b.commit(100);
        assert_eq!(b.room().len(), STANDARD - 100, "the rest of the storage");
        b.commit(STANDARD - 100 - 10);
        assert!(
            b.room().len() >= STANDARD,
            "nearly full: room for a full read"
        );
    }
}
