//! The PROXY protocol header (v1, v2); the checks are in
//! `proxy_core::proxy_protocol::fuzz_parse`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proxy_core::proxy_protocol::fuzz_parse(data);
});
