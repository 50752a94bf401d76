//! The ClientHello peeker on arbitrary bytes; the checks are in
//! `proxy_core::tls::client_hello::fuzz_peek`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proxy_core::tls::client_hello::fuzz_peek(data);
});
