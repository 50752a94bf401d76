//! Memory per idle connection: open N connections that the proxy must keep
//! (incomplete request heads, or CONNECT tunnels to the hold server), and
//! divide the growth of the proxy's RSS by N.

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{bail, Context, Result};
use crate::procstat;
use crate::tunnel;

/// What each idle connection holds the proxy with.
pub(crate) enum Hold {
    /// A request head without its final blank line.
    IncompleteRequest { origin: SocketAddr },
    /// An open tunnel to the hold server, past its first bytes.
    Tunnel { hold: SocketAddr },
}

pub(crate) struct Held {
    pub(crate) kib_per_conn: f64,
    pub(crate) before_kib: u64,
    pub(crate) after_kib: u64,
    /// Connections the proxy had closed (or answered) by the end.
    pub(crate) closed: usize,
    /// How long opening them all, and then waiting for the proxy to have
    /// accepted them and its memory to settle, took.
    pub(crate) open_time: Duration,
    pub(crate) settle_time: Duration,
}

/// Connections opened before waiting for the proxy to accept them: under
/// the smallest listen backlog in use (128).
const BATCH: usize = 100;

/// The longest opening all N connections may take.
const OPEN_LIMIT: Duration = Duration::from_secs(180);

/// Opens `n` idle connections to the proxy at `proxy` (process tree `pid`)
/// and measures its RSS before and after.
pub(crate) fn measure(proxy: SocketAddr, pid: u32, hold: &Hold, n: usize) -> Result<Held> {
    // The baseline once start-up is over: a helper forked at start counts
    // twice until it execs, and the readiness probe's connection may still
    // be open.
    thread::sleep(Duration::from_secs(1));
    let before_kib = settled_rss(pid)?;
    let fds_before = procstat::open_fds(pid);
    let started = Instant::now();
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        if started.elapsed() > OPEN_LIMIT {
            bail!("only {i} of {n} idle connections opened in {OPEN_LIMIT:?}");
        }
        let conn = open_one(proxy, hold).context(format!("idle connection {} of {n}", i + 1))?;
        conns.push(conn);
        // Let the proxy's accepts keep up: past its listen backlog, a new
        // connection's handshake is dropped and retried a second later.
        if conns.len() % BATCH == 0 {
            wait_for_fds(pid, fds_before + conns.len())?;
        }
    }
    // Every connection must have been accepted before memory is read: the
    // proxy holds a descriptor for each (two for a tunnel).
    let open_time = started.elapsed();
    wait_for_fds(pid, fds_before + n)?;
    let after_kib = settled_rss(pid)?;
    let settle_time = started.elapsed() - open_time;
    let closed = conns.iter().filter(|c| !is_open(c)).count();
    drop(conns);
    if closed * 1000 > n {
        bail!("the proxy closed or answered {closed} of {n} idle connections");
    }
    Ok(Held {
        kib_per_conn: after_kib.saturating_sub(before_kib) as f64 / n as f64,
        before_kib,
        after_kib,
        closed,
        open_time,
        settle_time,
    })
}

fn open_one(proxy: SocketAddr, hold: &Hold) -> Result<TcpStream> {
    match hold {
        Hold::IncompleteRequest { origin } => {
            let mut conn = TcpStream::connect_timeout(&proxy, Duration::from_secs(10))
                .context(format!("connecting to {proxy}"))?;
            let head = format!(
                "GET http://{origin}/1k HTTP/1.1\r\nHost: {origin}\r\nUser-Agent: proxy-bench\r\n"
            );
            conn.write_all(head.as_bytes())
                .context("sending the incomplete request")?;
            Ok(conn)
        }
        Hold::Tunnel { hold } => {
            let mut conn = tunnel::open(Some(proxy), *hold)?;
            // A proxy that peeks at the first bytes (for a TLS hello) moves
            // on to relaying once it has them.
            conn.write_all(b"hello\n")
                .context("sending the tunnel's first bytes")?;
            Ok(conn)
        }
    }
}

/// Waits (up to a minute) until the process tree holds `fds` descriptors.
fn wait_for_fds(pid: u32, fds: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let open = procstat::open_fds(pid);
        if open >= fds {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the proxy holds {open} descriptors, expected at least {fds}: not every connection was accepted");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The RSS once it stops growing: sampled every 250 ms until two samples
/// in a row differ by less than 0.5% (at most 20 s).
fn settled_rss(pid: u32) -> Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = procstat::rss_kib(pid)?;
    loop {
        thread::sleep(Duration::from_millis(250));
        let now = procstat::rss_kib(pid)?;
        if now.abs_diff(last) * 200 < now.max(1) || Instant::now() > deadline {
            return Ok(now);
        }
        last = now;
    }
}

/// Whether the proxy still holds the connection silently: a nonblocking
/// peek that would block. EOF, data (an error response) or a reset mean
/// the proxy gave up on it.
fn is_open(conn: &TcpStream) -> bool {
    if conn.set_nonblocking(true).is_err() {
        return false;
    }
    let mut byte = [0u8; 1];
    matches!(conn.peek(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock)
}
