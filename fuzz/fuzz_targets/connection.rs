//! A whole client connection through the production drive loop, fed an
//! arbitrary sequence of events; the checks are in
//! `proxy_core::fuzzing::connection`.
#![no_main]

libfuzzer_sys::fuzz_target!(|events: Vec<proxy_core::fuzzing::Event>| {
    proxy_core::fuzzing::connection(&events);
});
