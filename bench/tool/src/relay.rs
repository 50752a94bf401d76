//! The minimal relay: the physical limit column. Each listener forwards
//! every connection to one fixed address; no parsing, no policy, no
//! timeouts. One thread per core, each with its own edge-triggered epoll
//! set sharing the listeners (`EPOLLEXCLUSIVE`, so one thread wakes per
//! connection). A direction copies through a 16 KiB buffer while what it
//! reads is small, and splices through a pipe once a read fills the
//! buffer (bulk), until a splice moves less than that again.
//!
//! It is what two sockets in and two out cost on this machine: what any
//! proxy must pay at least, measured in the same run as the proxies.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use rustix::event::epoll::{self, Event, EventData, EventFlags};
use rustix::pipe::{self, PipeFlags, SpliceFlags};

use crate::error::{Context, Result};

/// The copy buffer; a read that fills it switches to splicing.
const BUF: usize = 16 * 1024;
/// A splice that moves less than this goes back to copying.
const SMALL: usize = BUF;
const PIPE: usize = 1 << 20;

/// Serves `routes` (listen address, destination) until killed.
pub(crate) fn serve(routes: &[(SocketAddr, SocketAddr)]) -> Result<()> {
    let mut listeners = Vec::new();
    for (listen, to) in routes {
        let l = TcpListener::bind(listen).context(format!("relay: binding {listen}"))?;
        l.set_nonblocking(true).context("relay: listener")?;
        listeners.push((l, *to));
    }
    let listeners = Arc::new(listeners);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let listeners = listeners.clone();
            std::thread::spawn(move || run(&listeners))
        })
        .collect();
    for h in handles {
        match h.join() {
            Ok(r) => r.context("relay thread")?,
            Err(_) => return Err(crate::error::Error::new("relay thread panicked")),
        }
    }
    Ok(())
}

/// One direction: bytes from `fds[from]` to the other.
#[derive(Default)]
struct Dir {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    pipe: Option<(OwnedFd, OwnedFd)>,
    in_pipe: usize,
    splicing: bool,
    eof: bool,
    done: bool,
}

struct Conn {
    socks: [TcpStream; 2],
    dirs: [Dir; 2],
}

/// Listener tokens count down from the top; connection `i`'s sockets are
/// `2i` (client) and `2i + 1` (destination).
fn listener_token(i: usize) -> u64 {
    u64::MAX - i as u64
}

fn run(listeners: &[(TcpListener, SocketAddr)]) -> io::Result<()> {
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
    for (i, (l, _)) in listeners.iter().enumerate() {
        let flags = EventFlags::IN | EventFlags::EXCLUSIVE;
        epoll::add(&ep, l, EventData::new_u64(listener_token(i)), flags)?;
    }
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut events: Vec<Event> = Vec::with_capacity(1024);
    loop {
        events.clear();
        match epoll::wait(&ep, rustix::buffer::spare_capacity(&mut events), None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        for ev in &events {
            let token = ev.data.u64();
            if token > u64::MAX - listeners.len() as u64 {
                let (l, to) = &listeners[(u64::MAX - token) as usize];
                accept_all(&ep, l, *to, &mut conns)?;
                continue;
            }
            let slot = (token / 2) as usize;
            let finished = match conns.get_mut(slot).and_then(Option::as_mut) {
                Some(c) => pump(c),
                None => continue,
            };
            if finished {
                // Closing the sockets takes them out of the epoll set.
                conns[slot] = None;
            }
        }
    }
}

fn accept_all(
    ep: &OwnedFd,
    l: &TcpListener,
    to: SocketAddr,
    conns: &mut Vec<Option<Conn>>,
) -> io::Result<()> {
    loop {
        let client = match l.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // Out of descriptors, say: the next event tries again.
            Err(_) => return Ok(()),
        };
        let slot = match conns.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                conns.push(None);
                conns.len() - 1
            }
        };
        // A client gone already, or a destination refusing: this
        // connection ends here, the others go on.
        if let Ok(conn) = open(ep, client, to, slot) {
            conns[slot] = Some(conn);
        }
    }
}

fn open(ep: &OwnedFd, client: TcpStream, to: SocketAddr, slot: usize) -> io::Result<Conn> {
    // A blocking connect: on loopback it is done at once.
    let upstream = TcpStream::connect(to)?;
    let flags = EventFlags::IN | EventFlags::OUT | EventFlags::ET | EventFlags::RDHUP;
    for (side, s) in [&client, &upstream].into_iter().enumerate() {
        s.set_nonblocking(true)?;
        s.set_nodelay(true)?;
        epoll::add(
            ep,
            s,
            EventData::new_u64(2 * slot as u64 + side as u64),
            flags,
        )?;
    }
    Ok(Conn {
        socks: [client, upstream],
        dirs: [Dir::default(), Dir::default()],
    })
}

/// Moves what can be moved both ways; true when the connection is over.
fn pump(c: &mut Conn) -> bool {
    for from in 0..2 {
        let (src, dst) = (&c.socks[from], &c.socks[1 - from]);
        if move_bytes(&mut c.dirs[from], src, dst).is_err() {
            return true;
        }
    }
    c.dirs[0].done && c.dirs[1].done
}

/// Until the source or the destination would block (edge-triggered: the
/// next event comes only after that).
fn move_bytes(d: &mut Dir, mut src: &TcpStream, mut dst: &TcpStream) -> io::Result<()> {
    while !d.done {
        let step = if d.in_pipe > 0 {
            let (r, _) = d.pipe.as_ref().expect("bytes in a pipe");
            splice(r, dst, d.in_pipe).map(|n| d.in_pipe -= n)
        } else if d.end > d.start {
            dst.write(&d.buf[d.start..d.end]).map(|n| d.start += n)
        } else if d.eof {
            let _ = dst.shutdown(Shutdown::Write);
            d.done = true;
            Ok(())
        } else if d.splicing {
            if d.pipe.is_none() {
                let (r, w) = pipe::pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
                let _ = pipe::fcntl_setpipe_size(&w, PIPE);
                d.pipe = Some((r, w));
            }
            let (_, w) = d.pipe.as_ref().expect("just made");
            splice(src, w, PIPE).map(|n| {
                d.eof = n == 0;
                d.in_pipe = n;
                d.splicing = n >= SMALL;
            })
        } else {
            if d.buf.is_empty() {
                d.buf = vec![0; BUF];
            }
            src.read(&mut d.buf).map(|n| {
                d.eof = n == 0;
                (d.start, d.end) = (0, n);
                d.splicing = n == BUF;
            })
        };
        match step {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn splice(from: impl AsFd, to: impl AsFd, len: usize) -> io::Result<usize> {
    let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
    Ok(pipe::splice(from, None, to, None, len, flags)?)
}
