//! The input buffer each side's bytes wait in until the core consumes
//! them.

/// Bytes read from a socket and not yet consumed, plus initialised spare
/// room to read into.
///
/// The spare room is zeroed once and then reused, so preparing a read
/// costs nothing (re-zeroing 16 KiB before every read was most of the
/// driver's CPU time in debug builds).
#[derive(Debug, Default)]
pub struct InBuf {
    /// `data[..len]` are the held bytes; the rest is spare room.
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

    /// At least `n` bytes of room after the held bytes, to read into;
    /// follow with [`commit`](InBuf::commit).
    pub fn spare(&mut self, n: usize) -> &mut [u8] {
        let want = self.len + n;
        if self.data.len() < want {
            self.data.resize(want, 0);
        }
        &mut self.data[self.len..]
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
