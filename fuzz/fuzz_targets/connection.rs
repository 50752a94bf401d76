//! A whole client connection through the production drive loop, fed an
//! arbitrary sequence of events; the checks are in
//! `proxy_core::fuzzing::connection`. With the feature
//! `fault-pass-one-more` the driver is given a bug on purpose (an extra
//! byte after bodies from the origin), which the checks must find.
#![no_main]

libfuzzer_sys::fuzz_target!(|events: Vec<proxy_core::fuzzing::Event>| {
    #[cfg(not(feature = "fault-pass-one-more"))]
    proxy_core::fuzzing::connection(&events);
    #[cfg(feature = "fault-pass-one-more")]
    proxy_core::fuzzing::connection_broken(&events, proxy_core::driver::Fault::PassOneMore);
});
