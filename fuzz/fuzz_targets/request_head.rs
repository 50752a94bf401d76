//! Request heads: parsed, forwarded, and served by a connection whole and split; see `proxy_core::fuzzing::heads`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proxy_core::fuzzing::heads::request_head(data);
});
