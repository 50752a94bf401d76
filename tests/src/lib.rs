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
pub use net::{blackhole, free_port, ipv6_available, refused_addr, refused_on, Blackhole, Refused};
pub use origin::{EchoServer, Framing, Origin, RawOrigin, Reply, Request};
pub use proxy::{Binary, LogLine, Proxy};
pub use tls::{TlsOrigin, TlsOutcome};

use std::path::PathBuf;
use std::time::Duration;

/// The bound on every socket read and write, and on most waits.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A program the tests need (the first of `names` on PATH), or `None`
/// (the test skips, saying so) when it is absent and `skip_var` is `1`.
/// Absent otherwise, the test fails: `.ci/run` installs what the tests
/// need, and a skipped check must be asked for, never silent.
pub fn tool_named(names: &[&str], skip_var: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert_eq!(
            std::env::var(skip_var).as_deref(),
            Ok("1"),
            "{} is not on PATH: install it (`apt-get install -y {}`, as .ci/run does) or set {skip_var}=1",
            names.join(" or "),
            names[0],
        );
        eprintln!("skipped: {} is not installed ({skip_var}=1)", names[0]);
    }
    found
}

/// Whether the machine can do what a test needs (`available`); when it
/// cannot, the test fails saying `what`, unless `skip_var` is `1`, in
/// which case it says it skipped and the caller returns.
pub fn machine_can(available: bool, what: &str, skip_var: &str) -> bool {
    if !available {
        assert_eq!(
            std::env::var(skip_var).as_deref(),
            Ok("1"),
            "this machine cannot run the test: {what} (set {skip_var}=1 to skip it)"
        );
        eprintln!("skipped: {what} ({skip_var}=1)");
    }
    available
}

/// [`machine_can`] for a loopback IPv6 address: `[::1]` must bind, unless
/// `E2E_SKIP_IPV6=1`.
pub fn needs_ipv6() -> bool {
    machine_can(ipv6_available(), "[::1] cannot be bound", "E2E_SKIP_IPV6")
}

/// A [`Blackhole`] to connect to, unless this kernel cannot make one and
/// `E2E_SKIP_BLACKHOLE=1` (see [`machine_can`]); then `None`, the test
/// returns.
pub fn needs_blackhole() -> Option<Blackhole> {
    let hole = blackhole();
    let what = "a loopback listener with a full accept queue does not drop SYNs";
    machine_can(hole.is_some(), what, "E2E_SKIP_BLACKHOLE");
    hole
}

/// [`tool_named`] for a program with one name.
pub fn tool(name: &str, skip_var: &str) -> Option<PathBuf> {
    tool_named(&[name], skip_var)
}

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
