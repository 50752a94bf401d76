//! HTTPS through CONNECT with our own client (rustls): each of
//! `connections` threads opens one tunnel (CONNECT through the proxy, or
//! straight to the TLS origin or the relay's listener standing for it),
//! makes one TLS handshake, then sends GET after GET for the 1 KiB file
//! on that connection until the time is up. Every response is checked:
//! status 200, `Content-Length: 1024`, and the body equal to the file.
//!
//! Why not hey: Go's client opens a new connection whenever a request
//! comes before the previous response's connection is back in its idle
//! pool, and drops it after the handshake if that one came back first.
//! Under load that churn makes hey's figure mostly a count of TLS
//! handshakes (and direct, the fastest, churns most: its ratio came out
//! below the proxies'). One connection per client keeps every request one
//! small TLS record each way through the tunnel, which is what this
//! figure is meant to measure.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::error::{bail, Context, Error, Result};
use crate::tunnel;

pub(crate) struct Load<'a> {
    /// Through this proxy (CONNECT), or straight to `dest`.
    pub(crate) proxy: Option<SocketAddr>,
    /// The TLS origin, or what stands for it.
    pub(crate) dest: SocketAddr,
    /// The origin's certificate (for 127.0.0.1), trusted alone.
    pub(crate) cert: &'a Path,
    pub(crate) path: &'a str,
    /// What every response body must be.
    pub(crate) body: &'a [u8],
    pub(crate) connections: usize,
    pub(crate) secs: u32,
}

#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) requests_per_sec: f64,
    pub(crate) ok: u64,
    pub(crate) p99_ms: f64,
}

pub(crate) fn run(load: &Load) -> Result<Outcome> {
    let cert = CertificateDer::from_pem_file(load.cert)
        .map_err(|e| Error::new(format!("reading {}: {e}", load.cert.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(cert)
        .map_err(|e| Error::new(format!("trusting the origin's certificate: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::new(format!("TLS versions: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let config = Arc::new(config);
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
        load.path,
        load.dest.port()
    );
    let body: Arc<[u8]> = load.body.into();
    let barrier = Arc::new(Barrier::new(load.connections + 1));
    let (proxy, dest, secs) = (load.proxy, load.dest, load.secs);
    let handles: Vec<_> = (0..load.connections)
        .map(|_| {
            let (config, request, body) = (config.clone(), request.clone(), body.clone());
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || -> Result<Vec<Duration>> {
                let opened = connect(proxy, dest, config);
                barrier.wait();
                let mut tls = opened?;
                let until = Instant::now() + Duration::from_secs(secs.into());
                let mut times = Vec::new();
                let mut buf = vec![0u8; 4096];
                while Instant::now() < until {
                    let t0 = Instant::now();
                    tls.write_all(request.as_bytes())
                        .context("sending a request")?;
                    exchange(&mut tls, &mut buf, &body)?;
                    times.push(t0.elapsed());
                }
                Ok(times)
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let mut times = Vec::new();
    for h in handles {
        times.extend(
            h.join()
                .map_err(|_| Error::new("an HTTPS client panicked"))??,
        );
    }
    let elapsed = start.elapsed().as_secs_f64();
    if times.is_empty() {
        bail!("no response completed");
    }
    times.sort();
    let p99 = times[(times.len() * 99 / 100).min(times.len() - 1)];
    Ok(Outcome {
        requests_per_sec: times.len() as f64 / elapsed,
        ok: times.len() as u64,
        p99_ms: p99.as_secs_f64() * 1000.0,
    })
}

/// The tunnel (or the direct connection) and a finished TLS handshake.
fn connect(
    proxy: Option<SocketAddr>,
    dest: SocketAddr,
    config: Arc<ClientConfig>,
) -> Result<StreamOwned<ClientConnection, std::net::TcpStream>> {
    let mut tcp = tunnel::open(proxy, dest)?;
    tcp.set_nodelay(true).context("TCP_NODELAY")?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .context("a read timeout")?;
    let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
    let mut conn = ClientConnection::new(config, name)
        .map_err(|e| Error::new(format!("a TLS client: {e}")))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)
            .context("the TLS handshake through the tunnel")?;
    }
    Ok(StreamOwned::new(conn, tcp))
}

/// Reads one response and checks it against `body`.
fn exchange(
    tls: &mut StreamOwned<ClientConnection, std::net::TcpStream>,
    buf: &mut Vec<u8>,
    body: &[u8],
) -> Result<()> {
    let mut have = 0;
    let head_end = loop {
        if have == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = tls.read(&mut buf[have..]).context("reading a response")?;
        if n == 0 {
            bail!("the connection ended before a response");
        }
        have += n;
        if let Some(i) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200") {
        bail!("answered {:?}", head.lines().next().unwrap_or(""));
    }
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    if length != Some(body.len()) {
        bail!("Content-Length {length:?}, not {}", body.len());
    }
    let mut got = buf[head_end..have].to_vec();
    while got.len() < body.len() {
        let n = tls.read(&mut buf[..]).context("reading a body")?;
        if n == 0 {
            bail!("the body ended after {} bytes", got.len());
        }
        got.extend_from_slice(&buf[..n]);
    }
    if got != body {
        bail!("a body that is not the file's ({} bytes)", got.len());
    }
    Ok(())
}
