//! Chunked bodies decoded whole, in pieces and spliced; see `proxy_core::fuzzing::chunked`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proxy_core::fuzzing::chunked::decode(data);
});
