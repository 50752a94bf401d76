//! Test support for the end-to-end suite: starting the proxy binaries,
//! in-process origin servers, a raw HTTP/1.1 client, and the macro that
//! runs each case against both binaries.
//!
//! Everything binds to loopback on port 0 and every wait is bounded, so
//! tests are independent and can run in parallel.

pub mod chromium;
pub mod client;
pub mod files;
pub mod net;
pub mod origin;
pub mod proxy;
pub mod tls;

pub use client::{Client, Head, Response};
pub use files::TempFile;
pub use net::{blackhole, free_port, ipv6_available, refused_addr, Blackhole, Refused};
pub use origin::{EchoServer, Framing, Origin, RawOrigin, Reply, Request};
pub use proxy::{Binary, LogLine, Proxy};
pub use tls::{TlsOrigin, TlsOutcome};

use std::time::Duration;

/// The bound on every socket read and write, and on most waits.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes each case once, as `fn name(bin: Binary) { .. }`, and runs it
/// against both binaries as the tests `name::std` and `name::smol`.
/// Attributes (such as `#[ignore]`) go on both generated tests.
///
/// ```ignore
/// cases! {
///     fn get_works(bin) {
///         let proxy = Proxy::start(bin, &[]);
///         // ...
///     }
/// }
/// ```
#[macro_export]
macro_rules! cases {
    ($( $(#[$meta:meta])* fn $name:ident($bin:ident) $body:block )*) => {$(
        fn $name($bin: $crate::Binary) $body

        mod $name {
            $(#[$meta])*
            #[test]
            fn std() {
                super::$name($crate::Binary::Std)
            }

            $(#[$meta])*
            #[test]
            fn smol() {
                super::$name($crate::Binary::Smol)
            }
        }
    )*};
}
