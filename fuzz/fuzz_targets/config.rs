//! The RON configuration loader; see `proxy_core::fuzzing::files`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    proxy_core::fuzzing::files::config(data);
});
