//! ClientHello peeking: a `HelloPeeker` reads the first bytes of a CONNECT
//! tunnel until it has the whole ClientHello and its SNI, ALPN and
//! versions. Run on the real hellos in `testdata/tls/` (see its README),
//! each fed whole (`whole`) and cut into reads of 16 and 256 bytes
//! (`split`), a peeker made afresh per iteration. Throughput is in hello
//! bytes.
//!
//! ```sh
//! cargo bench -p proxy-core --bench client_hello
//! cargo bench -p proxy-core --bench client_hello -- --sample-count 20  # quicker
//! ```

use divan::counter::BytesCount;
use divan::Bencher;
use proxy_core::tls::client_hello::{HelloPeeker, Peek};
use std::fmt;

fn main() {
    divan::main();
}

/// Large enough for `python-big` (16,875 bytes, over the default 16 KiB
/// maximum); the maximum does not change the cost of smaller hellos.
const MAX_HELLO: usize = 32 * 1024;

struct Fixture {
    name: &'static str,
    bytes: &'static [u8],
    /// The server name the peeker reports (lower-cased).
    sni: Option<&'static str>,
}

impl fmt::Display for Fixture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

macro_rules! fixture {
    ($name:literal, $sni:expr) => {
        Fixture {
            name: $name,
            bytes: include_bytes!(concat!("../../testdata/tls/", $name, ".bin")),
            sni: $sni,
        }
    };
}

const FIXTURES: &[Fixture] = &[
    fixture!("curl", Some("example.test")),
    fixture!("openssl-nosni", None),
    fixture!("rustls", Some("example.test")),
    fixture!("chromium", Some("example.test")),
    fixture!("firefox", Some("example.test")),
    fixture!("openssl-fragmented", Some("fragmented.example.test")),
    fixture!("python-big", Some("big.example.test")),
];

#[divan::bench(args = FIXTURES)]
fn whole(bencher: Bencher, fixture: &Fixture) {
    bench_reads(bencher, fixture, usize::MAX);
}

#[divan::bench(args = FIXTURES, consts = [16, 256])]
fn split<const READ: usize>(bencher: Bencher, fixture: &Fixture) {
    bench_reads(bencher, fixture, READ);
}

fn bench_reads(bencher: Bencher, fixture: &Fixture, read: usize) {
    check(fixture, read);
    bencher
        .counter(BytesCount::of_slice(fixture.bytes))
        .bench(|| {
            let peek = peek(&mut HelloPeeker::new(MAX_HELLO), fixture.bytes, read);
            assert!(matches!(peek, Peek::Hello(_)));
            peek
        });
}

/// Feeds `bytes` in reads of `read` bytes until the peeker answers.
fn peek(peeker: &mut HelloPeeker, bytes: &[u8], read: usize) -> Peek {
    for data in bytes.chunks(read) {
        match peeker.feed(data) {
            (taken, Peek::NeedMore) => assert_eq!(taken, data.len()),
            (_, answer) => return answer,
        }
    }
    Peek::NeedMore
}

/// The peeker finds the expected name, and takes every byte of the
/// hello (which is all the fixture holds).
fn check(fixture: &Fixture, read: usize) {
    let mut peeker = HelloPeeker::new(MAX_HELLO);
    match peek(&mut peeker, fixture.bytes, read) {
        Peek::Hello(info) => assert_eq!(info.sni.as_deref(), fixture.sni, "{}", fixture.name),
        other => panic!("{}: {other:?}", fixture.name),
    }
    assert!(peeker.bytes() == fixture.bytes, "{}", fixture.name);
}
