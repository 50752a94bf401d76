//! How socket errors are told to the core.

use proxy_core::{ConnectError, TunnelEndReason};
use std::io;

/// How a tunnel that met `e` on one of its sockets ended.
///
/// A peer that resets instead of closing ends the tunnel as surely as a
/// FIN does: a browser tab that goes away, or a process that exits with
/// bytes it never read, resets its connections, and that is the common
/// end of a tunnel, not a failure of the relay (Squid logs it as a normal
/// tunnel too). Anything else is an error.
pub fn tunnel_end(e: &io::Error) -> TunnelEndReason {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionAborted => TunnelEndReason::Closed,
        _ => TunnelEndReason::Error,
    }
}

/// The core's name for a failed connect or a broken upstream connection.
pub fn connect_error(e: &io::Error) -> ConnectError {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => ConnectError::Refused,
        io::ErrorKind::ConnectionReset => ConnectError::Reset,
        // The named kinds for these are newer than our minimum Rust.
        _ => match e.raw_os_error() {
            Some(libc::EHOSTUNREACH | libc::ENETUNREACH) => ConnectError::Unreachable,
            _ => ConnectError::Other,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_map_to_core_reasons() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(connect_error(&refused), ConnectError::Refused);
        assert_eq!(
            connect_error(&io::Error::from_raw_os_error(libc::EHOSTUNREACH)),
            ConnectError::Unreachable
        );
        assert_eq!(connect_error(&io::Error::other("x")), ConnectError::Other);
    }

    #[test]
    fn a_peer_resetting_ends_a_tunnel_without_an_error() {
        for kind in [io::ErrorKind::ConnectionReset, io::ErrorKind::BrokenPipe] {
            assert_eq!(tunnel_end(&kind.into()), TunnelEndReason::Closed);
        }
        let other = io::Error::from_raw_os_error(libc::EHOSTUNREACH);
        assert_eq!(tunnel_end(&other), TunnelEndReason::Error);
    }
}
