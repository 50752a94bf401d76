//! The shared cache through connections; see `proxy_core::fuzzing::cache`.
#![no_main]

libfuzzer_sys::fuzz_target!(|script: proxy_core::fuzzing::cache::Script| {
    proxy_core::fuzzing::cache::cache(&script);
});
