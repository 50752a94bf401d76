//! The system calls std does not wrap: poll(2), epoll(7) for the parking
//! lot, and a peek that never blocks.
//!
//! poll and epoll are raw libc calls: the loops that use them keep fixed
//! slots with absent entries (`fd = -1`, which poll skips) and parked
//! descriptors by number, which rustix's borrowed-descriptor API cannot
//! express without an unsafe borrow of its own. Each call says what
//! makes it sound.

use proxy_core::Instant;
use std::io;
use std::os::fd::{BorrowedFd, RawFd};

/// Readable (or end of stream, or error: a read will tell).
pub(crate) const POLLIN: i16 = libc::POLLIN;
/// Writable.
pub(crate) const POLLOUT: i16 = libc::POLLOUT;

/// A poll entry for `fd`, or an ignored one when `fd` is `None`.
pub(crate) fn pollfd(fd: Option<RawFd>, events: i16) -> libc::pollfd {
    libc::pollfd {
        fd: fd.unwrap_or(-1),
        events,
        revents: 0,
    }
}

/// Waits until one of `fds` is ready or `timeout_ms` passes (-1: forever).
/// Returns how many entries have `revents` set.
#[allow(unsafe_code)]
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    let nfds = libc::nfds_t::try_from(fds.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many fds"))?;
    // SAFETY: `fds` is an exclusively borrowed, initialised slice of
    // `pollfd`, and `nfds` is its length, so the kernel reads and writes
    // only inside it; nothing else aliases it for the duration of the call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), nfds, timeout_ms) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

/// An epoll instance: the parking lot's one wait over every parked
/// connection's descriptors.
pub(crate) struct Epoll {
    fd: std::os::fd::OwnedFd,
}

/// Readiness for reading (or end of stream, or error) on an epoll entry.
pub(crate) const EPOLLIN: u32 = libc::EPOLLIN as u32;
/// Readiness for writing (or error) on an epoll entry.
pub(crate) const EPOLLOUT: u32 = libc::EPOLLOUT as u32;

impl Epoll {
    #[allow(unsafe_code)]
    pub(crate) fn new() -> io::Result<Epoll> {
        use std::os::fd::FromRawFd;
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is
        // a new descriptor that nothing else owns.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nobody else.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        Ok(Epoll { fd })
    }

    /// Watches `fd` for `events`, reported with `token`.
    pub(crate) fn add(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, token)
    }

    /// Stops watching `fd`.
    pub(crate) fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    #[allow(unsafe_code)]
    fn ctl(&self, op: i32, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let mut event = libc::epoll_event { events, u64: token };
        // SAFETY: `event` is a valid, initialised epoll_event that lives
        // across the call; the kernel only reads it.
        let r = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut event) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Waits up to `timeout_ms` (-1: forever) and fills `events` from the
    /// start; returns how many.
    #[allow(unsafe_code)]
    pub(crate) fn wait(
        &self,
        events: &mut [libc::epoll_event],
        timeout_ms: i32,
    ) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let max = i32::try_from(events.len()).unwrap_or(i32::MAX);
        // SAFETY: `events` is an exclusively borrowed slice of at least
        // `max` entries; the kernel writes at most `max` of them.
        let n =
            unsafe { libc::epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr(), max, timeout_ms) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }
}

/// An empty epoll event, to size the buffer [`Epoll::wait`] fills.
pub(crate) fn epoll_event() -> libc::epoll_event {
    libc::epoll_event { events: 0, u64: 0 }
}

/// Whether an idle connection is still usable: nothing to read and no
/// end of stream, checked with one recv(2) that never blocks (even on a
/// blocking socket) and never consumes anything.
pub(crate) fn nothing_to_read(socket: BorrowedFd<'_>) -> bool {
    use rustix::net::RecvFlags;
    let mut byte = [0u8; 1];
    matches!(
        rustix::net::recv(socket, &mut byte, RecvFlags::PEEK | RecvFlags::DONTWAIT),
        Err(rustix::io::Errno::WOULDBLOCK)
    )
}

/// The poll timeout in milliseconds until `deadline` (rounded up, so we
/// never wake before it), -1 for none.
pub(crate) fn timeout_ms(deadline: Option<Instant>, now: Instant) -> i32 {
    match deadline {
        None => -1,
        Some(d) => {
            let micros = d.saturating_since(now).as_micros();
            let ms = micros.div_ceil(1000);
            i32::try_from(ms).unwrap_or(i32::MAX)
        }
    }
}

/// Milliseconds for a std duration, rounded up, -1 for none.
pub(crate) fn duration_ms(d: Option<std::time::Duration>) -> i32 {
    match d {
        None => -1,
        Some(d) => i32::try_from(d.as_micros().div_ceil(1000)).unwrap_or(i32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_round_up() {
        let now = Instant::from_micros(1_000);
        assert_eq!(timeout_ms(None, now), -1);
        assert_eq!(timeout_ms(Some(Instant::from_micros(500)), now), 0);
        assert_eq!(timeout_ms(Some(Instant::from_micros(1_001)), now), 1);
        assert_eq!(timeout_ms(Some(Instant::from_micros(3_000)), now), 2);
        assert_eq!(
            duration_ms(Some(std::time::Duration::from_micros(1_500))),
            2
        );
    }
}
