//! Well-formed chunked bodies decode to their data; see `proxy_core::fuzzing::chunked`.
#![no_main]

libfuzzer_sys::fuzz_target!(|body: proxy_core::fuzzing::chunked::Body| {
    proxy_core::fuzzing::chunked::round_trip(&body);
});
