//! Socket options std, rustix and nix do not offer on Linux.

#![cfg(target_os = "linux")]
// setsockopt(2) for TCP_DEFER_ACCEPT has no safe wrapper in our crates.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// Asks the kernel to hand accepted connections over only once their
/// first bytes have arrived (`TCP_DEFER_ACCEPT`), waiting up to `secs`
/// seconds before handing over a silent one anyway.
///
/// Every client of a proxy speaks first (a request, a CONNECT, a PROXY
/// protocol header), so the first read of an accepted connection then
/// finds its bytes instead of coming up empty and waiting a round through
/// the reactor. Apache (`AcceptFilter http data`) and HAProxy
/// (`defer-accept`) do the same. A connection that stays silent is
/// accepted after the wait and then meets `timeouts.head_read` as usual.
pub fn defer_accept(listener: impl AsFd, secs: u32) -> io::Result<()> {
    let value = libc::c_int::try_from(secs).unwrap_or(libc::c_int::MAX);
    // SAFETY: the descriptor is open for the call (borrowed); the option
    // value is a c_int that lives across the call, and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_fd().as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            std::ptr::from_ref(&value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
