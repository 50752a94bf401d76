//! The bodies of the fuzz targets in `fuzz/` (feature `fuzzing`), here so
//! that the committed corpora replay through them as plain tests on
//! stable (`fuzz/tests/corpus.rs`) and a target is a one-line wrapper.
//! Each function panics when an input breaks what it checks.
//!
//! - [`connection`]: a whole client connection through the production
//!   drive loop, from structured [`Event`]s;
//! - [`heads::request_head`], [`heads::response_head`]: the head parsers,
//!   and a connection fed the same bytes whole and split, which must
//!   behave the same;
//! - [`chunked::decode`], [`chunked::round_trip`]: chunked bodies;
//! - [`files::config`], [`files::list`], [`files::htpasswd`],
//!   [`files::basic`]: what operators write and clients send as
//!   credentials;
//! - [`cache::cache`]: the shared cache through connections, against its
//!   invariants;
//! - the ClientHello peek is `crate::tls::client_hello::fuzz_peek`, the
//!   PROXY protocol header `crate::proxy_protocol::fuzz_parse`.

pub mod cache;
pub mod chunked;
mod connection;
pub mod files;
pub mod heads;

#[cfg(feature = "faults")]
pub use connection::connection_broken;
pub use connection::{connection, Event};

#[cfg(test)]
mod tests {
    use super::*;
    use arbitrary::{Arbitrary, Unstructured};

    /// Inputs from a fixed generator, of lengths 1 to `max`: what the
    /// fuzzer does, a little, on stable.
    fn inputs(count: usize, max: usize) -> impl Iterator<Item = Vec<u8>> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        (0..count).map(move |i| {
            (0..(i % max) + 1)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 24) as u8
                })
                .collect()
        })
    }

    #[test]
    fn heads_pass_on_arbitrary_and_real_bytes() {
        for bytes in inputs(300, 200) {
            heads::request_head(&bytes);
            heads::response_head(&bytes);
        }
        for split in [0u8, 40, 128, 255] {
            let mut req = vec![split];
            req.extend_from_slice(b"POST http://192.0.2.1/a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET http://192.0.2.1/b HTTP/1.1\r\nHost: a\r\n\r\n");
            heads::request_head(&req);
            let mut resp = vec![split];
            resp.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX: 1\r\n\r\n5;a=b\r\nhello\r\n0\r\nT: 2\r\n\r\n");
            heads::response_head(&resp);
        }
    }

    #[test]
    fn chunked_bodies_agree_with_themselves() {
        for bytes in inputs(500, 100) {
            chunked::decode(&bytes);
        }
        chunked::decode(
            b"\x03\x10\x80\xf05\r\nhello\r\n3;x=y\r\nabc\r\n0\r\nTrailer: 1\r\n\r\nrest",
        );
        for bytes in inputs(200, 300) {
            if let Ok(body) = chunked::Body::arbitrary_take_rest(Unstructured::new(&bytes)) {
                chunked::round_trip(&body);
            }
        }
    }

    #[test]
    fn files_and_credentials_pass() {
        for bytes in inputs(300, 120) {
            files::config(&bytes);
            files::list(&bytes);
            files::htpasswd(&bytes);
            files::basic(&bytes);
        }
        files::config(include_bytes!("../../../testdata/configs/example.ron"));
        files::config(b"(listen: [\"127.0.0.1:1\"], cache: (enabled: true))");
        files::list(
            b"example.com\n*.ads.example # comment\n10.0.0.0/8\nbad entry here\n=exact.example\n",
        );
        files::htpasswd(b"alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\nbob:plain\n:nouser\njunk\n");
        files::basic(b"Basic YWxpY2U6cGFzczp3b3Jk");
    }

    #[test]
    fn cache_scripts_keep_the_invariants() {
        for bytes in inputs(150, 400) {
            if let Ok(script) = cache::Script::arbitrary_take_rest(Unstructured::new(&bytes)) {
                cache::cache(&script);
            }
        }
    }
}
