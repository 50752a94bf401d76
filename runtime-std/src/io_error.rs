//! How socket errors are told to the core.

use proxy_core::ConnectError;
use std::io;

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
}
