//! CONNECT tunnels: opening one (also used by the idle-tunnel figure), and
//! the throughput of several in parallel, upload to the sink or download
//! from the source. The client always speaks first, since a proxy may
//! wait for the first bytes (a TLS ClientHello) before relaying.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{bail, Context, Error, Result};
use crate::fetch::{read_head, status_code};

const CHUNK: usize = 256 * 1024;
/// The longest a tunnel may stall before the run counts as failed.
const STALL: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Direction {
    Upload,
    Download,
}

/// Connects to `dest`, through a CONNECT tunnel when `proxy` is given, and
/// returns once the proxy has answered 2xx (its head fully read).
pub(crate) fn open(proxy: Option<SocketAddr>, dest: SocketAddr) -> Result<TcpStream> {
    let Some(proxy) = proxy else {
        return TcpStream::connect_timeout(&dest, STALL).context(format!("connecting to {dest}"));
    };
    let mut stream = TcpStream::connect_timeout(&proxy, STALL)
        .context(format!("connecting to the proxy at {proxy}"))?;
    stream
        .set_read_timeout(Some(STALL))
        .context("setting a read timeout")?;
    let request = format!("CONNECT {dest} HTTP/1.1\r\nHost: {dest}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .context("sending CONNECT")?;
    let head = read_head(&mut stream).context("reading the CONNECT response")?;
    match status_code(&head) {
        Some(code) if (200..300).contains(&code) => Ok(stream),
        _ => bail!(
            "CONNECT {dest} answered {:?}",
            head.lines().next().unwrap_or("")
        ),
    }
}

/// Throughput in MB/s (10^6 bytes per second) of `streams` tunnels in
/// parallel for `secs` seconds, in one direction.
pub(crate) fn throughput(
    proxy: Option<SocketAddr>,
    dest: SocketAddr,
    direction: Direction,
    streams: usize,
    secs: u32,
) -> Result<f64> {
    // Tunnels are opened first, then all start together.
    let barrier = Arc::new(Barrier::new(streams + 1));
    let handles: Vec<_> = (0..streams)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || -> Result<(u64, Instant)> {
                let opened = open(proxy, dest);
                barrier.wait();
                let mut stream = opened?;
                let until = Instant::now() + Duration::from_secs(secs.into());
                match direction {
                    Direction::Upload => upload(&mut stream, until),
                    Direction::Download => download(&mut stream, until),
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let mut bytes = 0;
    let mut end = start;
    for handle in handles {
        let (n, done) = handle
            .join()
            .map_err(|_| Error::new("a tunnel thread panicked"))??;
        bytes += n;
        end = end.max(done);
    }
    let secs = end.duration_since(start).as_secs_f64();
    if bytes == 0 || secs == 0.0 {
        bail!("no bytes went through");
    }
    Ok(bytes as f64 / secs / 1e6)
}

/// Writes until `until`, then half-closes and waits for the sink's EOF:
/// the bytes count once they have all been read at the other end.
fn upload(stream: &mut TcpStream, until: Instant) -> Result<(u64, Instant)> {
    stream
        .set_write_timeout(Some(STALL))
        .context("setting a write timeout")?;
    stream
        .set_read_timeout(Some(STALL))
        .context("setting a read timeout")?;
    let buf = vec![0xa5u8; CHUNK];
    let mut sent = 0u64;
    while Instant::now() < until {
        stream
            .write_all(&buf)
            .context(format!("uploading after {sent} bytes"))?;
        sent += CHUNK as u64;
    }
    stream
        .shutdown(Shutdown::Write)
        .context("half-closing the upload")?;
    let mut rest = [0u8; 1024];
    loop {
        match stream.read(&mut rest) {
            Ok(0) => return Ok((sent, Instant::now())),
            Ok(n) => bail!("the sink's side sent {n} unexpected bytes"),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => bail!("waiting for the end of the upload: {e}"),
        }
    }
}

/// Asks the source to start, then reads until `until`.
fn download(stream: &mut TcpStream, until: Instant) -> Result<(u64, Instant)> {
    stream
        .set_read_timeout(Some(STALL))
        .context("setting a read timeout")?;
    stream.write_all(b"go\n").context("starting the download")?;
    let mut buf = vec![0u8; CHUNK];
    let mut received = 0u64;
    while Instant::now() < until {
        match stream.read(&mut buf) {
            Ok(0) => bail!("the download ended early, after {received} bytes"),
            Ok(n) => received += n as u64,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => bail!("downloading after {received} bytes: {e}"),
        }
    }
    Ok((received, Instant::now()))
}
