//! Chunked bodies (RFC 9112 §7.1), which carry request bodies to origins
//! and response bodies to clients alike.

use crate::http::framing::{ChunkedDecoder, Segment};

/// What a decoder made of a body.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    payload: Vec<u8>,
    consumed: usize,
    done: bool,
}

/// Feeds `pieces` in turn; `splice` hands chunk data on without decoding
/// it whenever the decoder says some is due, as the splice path does.
/// `None` when the body is malformed.
fn decode_pieces(pieces: &[&[u8]], splice: bool) -> Option<Decoded> {
    let mut d = ChunkedDecoder::new(64, 1024);
    let mut out = Decoded {
        payload: Vec::new(),
        consumed: 0,
        done: false,
    };
    for piece in pieces {
        let mut at = 0;
        while at < piece.len() && !d.is_done() {
            let due = d.data_remaining();
            if splice && due > 0 {
                let take = (due as usize).min(piece.len() - at);
                out.payload.extend_from_slice(&piece[at..at + take]);
                d.skip_data(take as u64);
                at += take;
                continue;
            }
            let mut offset = at;
            let mut payload = Vec::new();
            let n = d
                .decode(&piece[at..], |s| match s {
                    Segment::Data(len) => {
                        payload.extend_from_slice(&piece[offset..offset + len]);
                        offset += len;
                    }
                    Segment::Framing(len) => offset += len,
                })
                .ok()?;
            assert_eq!(offset, at + n, "segments do not cover what was consumed");
            out.payload.extend_from_slice(&payload);
            at += n;
            if splice {
                continue;
            }
            break;
        }
        out.consumed += at;
        if d.is_done() {
            break;
        }
        assert_eq!(at, piece.len(), "stopped before the end without finishing");
    }
    out.done = d.is_done();
    Some(out)
}

/// Arbitrary bytes as a chunked body: whole, cut at up to three points
/// the first bytes choose, and with chunk data spliced past the decoder,
/// the decoder must agree with itself: same payload, same end, same
/// verdict on malformed input.
pub fn decode(data: &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let cuts = usize::from(n % 4).min(rest.len());
    let (points, bytes) = rest.split_at(cuts);
    let mut at: Vec<usize> = points
        .iter()
        .map(|&p| usize::from(p) * bytes.len() / 255)
        .collect();
    at.sort_unstable();
    let mut pieces = Vec::new();
    let mut from = 0;
    for &p in &at {
        pieces.push(&bytes[from..p]);
        from = p;
    }
    pieces.push(&bytes[from..]);

    let whole = decode_pieces(&[bytes], false);
    let split = decode_pieces(&pieces, false);
    let spliced = decode_pieces(&pieces, true);
    assert_eq!(whole, split, "cut at {at:?}");
    assert_eq!(whole, spliced, "spliced, cut at {at:?}");
}

/// A body as a sender might chunk it.
#[derive(Debug, Clone, arbitrary::Arbitrary)]
pub struct Body {
    /// Chunks: their data, an extension, and whether the size is written
    /// in upper case.
    pub chunks: Vec<(Vec<u8>, Option<String>, bool)>,
    /// Trailer fields.
    pub trailers: Vec<(String, String)>,
}

fn token(text: &str) -> String {
    let t: String = text
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(*c))
        .take(20)
        .collect();
    if t.is_empty() {
        "x".to_owned()
    } else {
        t
    }
}

/// A well-formed chunked body decodes to exactly its data, consuming
/// exactly its bytes, whole and one byte at a time.
pub fn round_trip(body: &Body) {
    let mut wire = Vec::new();
    let mut payload = Vec::new();
    for (data, ext, upper) in &body.chunks {
        if data.is_empty() {
            continue;
        }
        let size = if *upper {
            format!("{:X}", data.len())
        } else {
            format!("{:x}", data.len())
        };
        wire.extend_from_slice(size.as_bytes());
        if let Some(ext) = ext {
            wire.extend_from_slice(format!(";{}={}", token(ext), token(ext)).as_bytes());
        }
        wire.extend_from_slice(b"\r\n");
        wire.extend_from_slice(data);
        wire.extend_from_slice(b"\r\n");
        payload.extend_from_slice(data);
    }
    wire.extend_from_slice(b"0\r\n");
    for (name, value) in body.trailers.iter().take(8) {
        let value: String = value
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .take(40)
            .collect();
        wire.extend_from_slice(format!("{}: {}\r\n", token(name), value.trim()).as_bytes());
    }
    wire.extend_from_slice(b"\r\n");
    let want = Decoded {
        payload,
        consumed: wire.len(),
        done: true,
    };
    assert_eq!(decode_pieces(&[&wire], false).as_ref(), Some(&want));
    let bytes: Vec<&[u8]> = wire.chunks(1).collect();
    assert_eq!(decode_pieces(&bytes, true).as_ref(), Some(&want));
}
