//! The byte stream CONNECT tunnels carry, so the far end can check every
//! byte as it arrives: a pseudo-random block of a prime length, repeated.
//! A dropped, repeated or reordered piece of any size that is not a
//! multiple of the block shows as a difference; comparing is a memory
//! compare, cheap beside what the proxies cost.

/// The block's length: prime, so no write or read size lines up with it.
const PERIOD: usize = 65_521;
/// The longest piece [`Pattern::at`] hands out.
pub(crate) const MAX_PIECE: usize = 256 * 1024;

pub(crate) struct Pattern {
    /// The block, then as much of it again as a piece may run past it.
    bytes: Vec<u8>,
}

impl Pattern {
    pub(crate) fn new() -> Pattern {
        let mut x: u32 = 0x9e37_79b9;
        let block: Vec<u8> = (0..PERIOD)
            .map(|_| {
                // xorshift32
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect();
        let bytes = block
            .iter()
            .copied()
            .cycle()
            .take(PERIOD + MAX_PIECE)
            .collect();
        Pattern { bytes }
    }

    /// The `len` bytes (at most [`MAX_PIECE`]) at `offset` in the stream.
    pub(crate) fn at(&self, offset: u64, len: usize) -> &[u8] {
        let start = (offset % PERIOD as u64) as usize;
        &self.bytes[start..start + len.min(MAX_PIECE)]
    }
}

/// Checks a stream piece by piece against the pattern.
pub(crate) struct Checker {
    pattern: Pattern,
    /// Bytes checked so far.
    pub(crate) received: u64,
    /// Where the stream first differed, if it did.
    pub(crate) first_bad: Option<u64>,
}

impl Checker {
    pub(crate) fn new() -> Checker {
        Checker {
            pattern: Pattern::new(),
            received: 0,
            first_bad: None,
        }
    }

    /// The next `piece` of the stream (at most [`MAX_PIECE`] bytes).
    pub(crate) fn check(&mut self, piece: &[u8]) {
        if self.first_bad.is_none() && self.pattern.at(self.received, piece.len()) != piece {
            let expected = self.pattern.at(self.received, piece.len());
            let at = expected.iter().zip(piece).position(|(a, b)| a != b);
            self.first_bad = Some(self.received + at.unwrap_or(0) as u64);
        }
        self.received += piece.len() as u64;
    }

    /// The line the sink sends back at the end of an upload.
    pub(crate) fn report(&self) -> String {
        match self.first_bad {
            None => format!("ok {}\n", self.received),
            Some(at) => format!("bad {} at {at}\n", self.received),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stream as one piece of `len` bytes from 0.
    fn stream(len: usize) -> Vec<u8> {
        let p = Pattern::new();
        let mut out = Vec::new();
        while out.len() < len {
            let n = (len - out.len()).min(MAX_PIECE);
            out.extend_from_slice(p.at(out.len() as u64, n));
        }
        out
    }

    fn checked(bytes: &[u8], piece: usize) -> Checker {
        let mut c = Checker::new();
        for p in bytes.chunks(piece) {
            c.check(p);
        }
        c
    }

    #[test]
    fn the_stream_passes_in_any_pieces() {
        let s = stream(700_000);
        for piece in [1, 1000, 65_521, 100_000, MAX_PIECE] {
            let c = checked(&s, piece);
            assert_eq!((c.received, c.first_bad), (700_000, None), "{piece}");
            assert_eq!(c.report(), "ok 700000\n");
        }
        assert_ne!(&s[..PERIOD], &s[1..=PERIOD], "not a constant");
    }

    #[test]
    fn a_changed_dropped_or_repeated_piece_is_found() {
        let s = stream(700_000);
        let mut flipped = s.clone();
        flipped[300_000] ^= 1;
        assert_eq!(checked(&flipped, 4096).first_bad, Some(300_000));
        // A whole 256 KiB write lost, or sent twice.
        let dropped = [&s[..MAX_PIECE], &s[2 * MAX_PIECE..]].concat();
        assert!(checked(&dropped, 4096).first_bad.is_some());
        let repeated = [&s[..2 * MAX_PIECE], &s[MAX_PIECE..]].concat();
        assert!(checked(&repeated, 4096).first_bad.is_some());
        assert!(checked(&dropped, 4096).report().starts_with("bad "));
    }
}
