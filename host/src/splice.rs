//! Moving bytes between sockets (tunnels, response bodies) with
//! splice(2), through a pipe, so they never enter user space; and a pool
//! of empty pipes, so a connection holds a pipe only while bytes are
//! moving through it.
//!
//! Linux only. A relay takes a [`Pipe`] from the [`PipePool`] when its
//! source is readable, [`fill`](Pipe::fill_from)s it from the source
//! socket, [`drain`](Pipe::drain_to)s it into the destination socket
//! (waiting for writability while the destination is full), and puts it
//! back once it is empty. An idle tunnel then holds two sockets and
//! nothing else: thousands of idle tunnels cost no buffers and no
//! descriptors beyond their sockets.
//!
//! Every call is non-blocking on the pipe side; the socket side follows
//! the socket's own `O_NONBLOCK`. "Nothing to do now" is an error of kind
//! [`io::ErrorKind::WouldBlock`], as with reads and writes.

#![cfg(target_os = "linux")]

use rustix::pipe::{PipeFlags, SpliceFlags};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};

/// The size pipes are grown to, when the system allows.
///
/// A pipe holds at most one socket buffer fragment per page slot, so the
/// default 64 KiB (16 slots) caps each splice well below what a loopback
/// or LAN socket delivers at once: relaying a tunnel over loopback took
/// 0.37 s of CPU per GiB with 64 KiB pipes, 0.29 s with 256 KiB and 0.24 s
/// with 1 MiB. A bigger pipe costs nothing while it is empty (pages are
/// attached only while bytes sit in it), and pipes are only held while
/// bytes move.
pub const PIPE_SIZE: usize = 1 << 20;

/// Most bytes one splice call asks for: a full pipe.
pub const SPLICE_MAX: usize = PIPE_SIZE;

/// Where a tunnel's relay switches between copying and splicing, per
/// direction: a read of at least this much (a full 16 KiB buffer) means
/// bulk bytes, and the next reads splice; a splice that moves less means
/// small records again, and the next reads copy.
///
/// A splice costs two system calls per burst plus taking and returning a
/// pipe, and spliced bytes still cross the kernel twice; a copy costs a
/// read and a write through a pooled buffer. For the small TLS records
/// of interactive HTTPS (a 1 KiB exchange is one record each way) the
/// copy is cheaper; for a download, splice moves up to a pipe's worth
/// per call without touching user space. A TLS record is at most 16 KiB
/// of plaintext, so a read that fills the buffer has more than one
/// record waiting: a stream, not an exchange.
pub const BULK: usize = 16 * 1024;

/// `splice(from, to)` for up to `len` bytes: both ends are a pipe or a
/// socket, neither with an offset. `Ok(0)` from a socket is its end of
/// stream. Blocks only if the socket side is blocking.
pub fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
    Ok(rustix::pipe::splice(from, None, to, None, len, flags)?)
}

/// A non-blocking pipe, and how many bytes sit in it.
#[derive(Debug)]
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes spliced in and not yet out.
    len: usize,
}

impl Pipe {
    /// A new empty pipe, grown to [`PIPE_SIZE`] if the system allows
    /// (it is only an optimisation, so a refusal is ignored).
    pub fn new() -> io::Result<Pipe> {
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
        let _ = rustix::pipe::fcntl_setpipe_size(&write, PIPE_SIZE);
        Ok(Pipe {
            read,
            write,
            len: 0,
        })
    }

    /// Bytes in the pipe.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Moves up to `max` bytes from the socket `src` into the pipe.
    /// `Ok(0)` is the source's end of stream.
    ///
    /// Call only on an empty pipe: then `WouldBlock` can only mean the
    /// source has nothing (a full pipe says so too).
    pub fn fill_from(&mut self, src: impl AsFd, max: usize) -> io::Result<usize> {
        let n = splice(src.as_fd(), self.write.as_fd(), max)?;
        self.len += n;
        Ok(n)
    }

    /// Moves bytes from the pipe into the socket `dst`, as many as it
    /// takes now. `WouldBlock` means the destination is full.
    pub fn drain_to(&mut self, dst: impl AsFd) -> io::Result<usize> {
        if self.len == 0 {
            return Ok(0);
        }
        let n = splice(self.read.as_fd(), dst.as_fd(), self.len)?;
        if n == 0 {
            // A pipe with bytes in it never reports its end.
            return Err(io::ErrorKind::WriteZero.into());
        }
        self.len -= n.min(self.len);
        Ok(n)
    }
}

/// The process's pool of empty pipes, for splicing response bodies and
/// tunnels: at most 64 are kept idle (two descriptors each).
pub static PIPES: PipePool = PipePool::new(64);

/// Empty pipes ready for use, shared by every relay in the process.
///
/// Creating a pipe is two system calls (pipe2 and growing it) and two
/// descriptors; keeping a few spare ones makes a tunnel's burst of bytes
/// cost no setup, while idle tunnels hold none.
#[derive(Debug)]
pub struct PipePool {
    free: Mutex<Vec<Pipe>>,
    cap: usize,
}

impl PipePool {
    /// A pool keeping at most `cap` idle pipes.
    pub const fn new(cap: usize) -> PipePool {
        PipePool {
            free: Mutex::new(Vec::new()),
            cap,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Pipe>> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An empty pipe: a pooled one, or a new one. Fails when no pipe can
    /// be made (out of descriptors, say); the caller copies instead.
    pub fn take(&self) -> io::Result<Pipe> {
        match self.lock().pop() {
            Some(pipe) => Ok(pipe),
            None => Pipe::new(),
        }
    }

    /// Takes `pipe` back if it is empty and the pool has room; closes it
    /// otherwise (bytes left in a pipe belong to a relay that is over).
    pub fn put(&self, pipe: Pipe) {
        if !pipe.is_empty() {
            return;
        }
        let mut free = self.lock();
        if free.len() < self.cap {
            free.push(pipe);
        }
    }

    /// Idle pipes held.
    pub fn idle(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    /// A connected loopback TCP pair.
    fn tcp_pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i % 251) as u8 ^ seed)
            .collect::<Vec<u8>>()
    }

    #[test]
    fn the_pool_reuses_empty_pipes_and_keeps_at_most_cap() {
        let pool = PipePool::new(2);
        let pipe = pool.take().unwrap();
        let fd = pipe.read.as_raw_fd();
        pool.put(pipe);
        assert_eq!(pool.idle(), 1);
        let again = pool.take().unwrap();
        assert_eq!(again.read.as_raw_fd(), fd, "the pooled pipe is handed out");
        assert_eq!(pool.idle(), 0);
        let pipes: Vec<Pipe> = (0..3).map(|_| pool.take().unwrap()).collect();
        for p in pipes {
            pool.put(p);
        }
        pool.put(again);
        assert_eq!(pool.idle(), 2);
    }

    #[test]
    fn a_pipe_with_bytes_is_not_pooled() {
        let pool = PipePool::new(4);
        let (mut w, r) = tcp_pair();
        w.write_all(b"abc").unwrap();
        let mut pipe = pool.take().unwrap();
        assert_eq!(pipe.fill_from(&r, SPLICE_MAX).unwrap(), 3);
        pool.put(pipe);
        assert_eq!(pool.idle(), 0);
    }

    /// Splices everything from one socket pair into another: the bytes
    /// arrive exact and in order, and end of stream shows as `Ok(0)`.
    #[test]
    fn a_spliced_transfer_moves_exact_bytes() {
        let data = pattern(8 << 20, 0x5a);
        let (mut writer, src) = tcp_pair();
        let (dst, mut reader) = tcp_pair();
        let sent = data.clone();
        let w = std::thread::spawn(move || {
            writer.write_all(&sent).unwrap();
            // Dropping closes: the source's end of stream.
        });
        let r = std::thread::spawn(move || {
            let mut got = Vec::new();
            reader.read_to_end(&mut got).unwrap();
            got
        });
        // Blocking sockets: each splice waits for its socket.
        let mut pipe = Pipe::new().unwrap();
        let mut moved = 0;
        loop {
            let n = pipe.fill_from(&src, SPLICE_MAX).unwrap();
            if n == 0 {
                break;
            }
            while !pipe.is_empty() {
                moved += pipe.drain_to(&dst).unwrap();
            }
        }
        drop(dst);
        w.join().unwrap();
        assert_eq!(moved, data.len());
        assert!(r.join().unwrap() == data);
    }

    /// A destination that takes only part of the pipe leaves the rest in
    /// it, counted, and `WouldBlock` says so; the rest arrives once the
    /// destination drains.
    #[test]
    fn a_partial_drain_keeps_the_rest_in_the_pipe() {
        let (mut writer, src) = tcp_pair();
        let (dst, mut reader) = tcp_pair();
        dst.set_nonblocking(true).unwrap();
        let data = pattern(64 << 20, 0x33);
        let sent = data.clone();
        let w = std::thread::spawn(move || {
            // Fails once the test stops reading the source; fine.
            let _ = writer.write_all(&sent);
        });
        let mut pipe = Pipe::new().unwrap();
        let mut moved = 0;
        // Nobody reads `reader` yet, so `dst` fills up.
        let held = loop {
            if pipe.is_empty() {
                assert!(pipe.fill_from(&src, SPLICE_MAX).unwrap() > 0);
            }
            match pipe.drain_to(&dst) {
                Ok(n) => moved += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break pipe.len(),
                Err(e) => panic!("{e}"),
            }
        };
        assert!(held > 0, "the pipe keeps what the destination refused");
        assert!(moved < data.len(), "the destination filled up first");
        // Now read, and drain the pipe's rest: exact bytes, in order.
        let total = moved + held;
        let r = std::thread::spawn(move || {
            let mut got = vec![0; total];
            reader.read_exact(&mut got).unwrap();
            got
        });
        while !pipe.is_empty() {
            match pipe.drain_to(&dst) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(1))
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(r.join().unwrap() == data[..total]);
        drop(src);
        w.join().unwrap();
    }

    #[test]
    fn an_empty_nonblocking_source_would_block() {
        let (_w, src) = tcp_pair();
        src.set_nonblocking(true).unwrap();
        let mut pipe = Pipe::new().unwrap();
        let err = pipe.fill_from(&src, SPLICE_MAX).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(pipe.is_empty());
    }
}
