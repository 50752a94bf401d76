//! Response heads: parsed, forwarded, and relayed by a connection whole and split; see `proxy_core::fuzzing::heads`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proxy_core::fuzzing::heads::response_head(data);
});
