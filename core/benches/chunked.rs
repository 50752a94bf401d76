//! Chunked body throughput: 1 MiB of payload in 4 KiB chunks and in
//! 16-byte chunks (the worst case: framing is most of the work), read
//! 16 KiB at a time as a runtime reads a socket.
//!
//! - `decoder`: the public `ChunkedDecoder` alone, telling payload from
//!   framing.
//! - `connection`: a whole keep-alive exchange through a `Driver`
//!   (request head, connect, response head, then the chunked body passed
//!   to the HTTP/1.1 client verbatim), driven by the stand-in runtime in
//!   `common/mod.rs`.
//!
//! Throughput is in payload bytes (the 1 MiB), not bytes on the wire.
//!
//! ```sh
//! cargo bench -p proxy-core --bench chunked
//! cargo bench -p proxy-core --bench chunked -- --sample-count 20  # quicker
//! ```

mod common;

use common::{World, READ};
use divan::counter::BytesCount;
use divan::Bencher;
use proxy_core::config::Limits;
use proxy_core::http::framing::{ChunkedDecoder, Segment};
use proxy_core::policy::Sources;
use proxy_core::{Config, Shared};

fn main() {
    divan::main();
}

const PAYLOAD_LEN: usize = 1 << 20;
const CHUNK_SIZES: [usize; 2] = [16, 4096];

const REQUEST: &str = concat!(
    "GET http://192.0.2.7/downloads/archive.bin HTTP/1.1\r\n",
    "Host: 192.0.2.7\r\n",
    "User-Agent: curl/8.5.0\r\n",
    "Accept: */*\r\n",
    "\r\n",
);

const RESPONSE_HEAD: &str = concat!(
    "HTTP/1.1 200 OK\r\n",
    "Content-Type: application/octet-stream\r\n",
    "Transfer-Encoding: chunked\r\n",
    "\r\n",
);

#[divan::bench(args = CHUNK_SIZES)]
fn decoder(bencher: Bencher, chunk: usize) {
    let payload = payload();
    let body = chunked(&payload, chunk);
    let mut decoded = Vec::new();
    decode(&body, |data| decoded.extend_from_slice(data));
    assert!(decoded == payload, "the decoded body is not what was sent");

    bencher
        .counter(BytesCount::new(PAYLOAD_LEN))
        .bench_local(|| {
            let mut len = 0;
            decode(&body, |data| len += data.len());
            assert_eq!(len, PAYLOAD_LEN);
        });
}

#[divan::bench(args = CHUNK_SIZES)]
fn connection(bencher: Bencher, chunk: usize) {
    let payload = payload();
    let body = chunked(&payload, chunk);
    let response = [RESPONSE_HEAD.as_bytes(), &body].concat();
    let request = REQUEST.as_bytes();
    let (shared, _) = Shared::new(Config::default(), Sources::new()).expect("policy compiles");
    let mut world = World::new(shared);

    // The client gets the rewritten head, then the body verbatim, which
    // decodes to the payload; the upstream goes back to the pool.
    let (first, seen) = world.exchange_captured(request, &response);
    assert_eq!(first.status, 200, "{first:?}");
    assert!(first.released_for_reuse);
    assert!(seen.to_client.starts_with(b"HTTP/1.1 200 OK\r\n"));
    let head_len = seen.to_client.len() - body.len();
    assert!(seen.to_client[..head_len].ends_with(b"\r\n\r\n"));
    assert!(seen.to_client[head_len..] == body[..]);
    let mut decoded = Vec::new();
    decode(&seen.to_client[head_len..], |data| {
        decoded.extend_from_slice(data)
    });
    assert!(decoded == payload, "the client did not get the payload");

    let steady = world.exchange(request, &response);
    assert!(steady.reused && steady.released_for_reuse, "{steady:?}");
    assert_eq!(steady.to_client, first.to_client);

    bencher
        .counter(BytesCount::new(PAYLOAD_LEN))
        .bench_local(|| {
            let trip = world.exchange(request, &response);
            assert_eq!(trip, steady);
        });
}

/// 1 MiB of bytes that are not all alike.
fn payload() -> Vec<u8> {
    (0..PAYLOAD_LEN).map(|i| (i * 7 % 251) as u8).collect()
}

/// `payload` as a chunked body of `chunk`-byte chunks, with the last
/// chunk and an empty trailer section.
fn chunked(payload: &[u8], chunk: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(payload.len() * 2);
    for data in payload.chunks(chunk) {
        body.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    body
}

/// Decodes a whole chunked `body` fed [`READ`] bytes at a time, handing
/// each run of payload bytes to `sink`.
fn decode(body: &[u8], mut sink: impl FnMut(&[u8])) {
    let limits = Limits::default();
    let mut decoder = ChunkedDecoder::new(limits.max_chunk_line_bytes, limits.max_trailer_bytes);
    for slice in body.chunks(READ) {
        let mut at = 0;
        let consumed = decoder
            .decode(slice, |segment| match segment {
                Segment::Data(n) => {
                    sink(&slice[at..at + n]);
                    at += n;
                }
                Segment::Framing(n) => at += n,
            })
            .expect("a well-formed chunked body");
        assert_eq!((consumed, at), (slice.len(), slice.len()));
    }
    assert!(decoder.is_done(), "the body did not end");
}
