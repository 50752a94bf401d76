//! A tiny blocking HTTP/1.1 client for the per-target checks: one GET with
//! `Connection: close`, read to EOF, and the status and sizes compared
//! with what the origin holds.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::error::{bail, Context, Result};

/// GETs `path` from `origin`, through `proxy` (absolute-form) if given, and
/// checks for a 200 whose Content-Length and body are exactly `size` bytes.
pub(crate) fn check(
    proxy: Option<SocketAddr>,
    origin: SocketAddr,
    path: &str,
    size: usize,
) -> Result<()> {
    check_head(proxy, origin, path, size).map(|_| ())
}

/// [`check`], returning the response head (lower-cased) for more checks.
pub(crate) fn check_head(
    proxy: Option<SocketAddr>,
    origin: SocketAddr,
    path: &str,
    size: usize,
) -> Result<String> {
    let (connect_to, target) = match proxy {
        Some(p) => (p, format!("http://{origin}{path}")),
        None => (origin, path.to_string()),
    };
    let what = format!("GET {target}");
    let mut stream = TcpStream::connect_timeout(&connect_to, Duration::from_secs(5))
        .context(format!("{what}: connecting to {connect_to}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .context("setting a read timeout")?;
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {origin}\r\nUser-Agent: proxy-bench\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .context(format!("{what}: sending"))?;
    let mut response = Vec::with_capacity(size + 1024);
    stream
        .read_to_end(&mut response)
        .context(format!("{what}: reading the response"))?;

    let Some(head_end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!(
            "{what}: no complete response head in {} bytes",
            response.len()
        );
    };
    let head = String::from_utf8_lossy(&response[..head_end]);
    let status = status_code(&head).context(format!("{what}: bad status line"))?;
    let length = content_length(&head);
    let body = response.len() - head_end - 4;
    if status != 200 || length != Some(size) || body != size {
        bail!(
            "{what}: expected 200 with {size} bytes, got {status}, Content-Length {}, {body} body bytes",
            length.map_or("none".to_string(), |l| l.to_string())
        );
    }
    Ok(head.to_ascii_lowercase())
}

/// Whether the proxy closes a client connection after one response
/// without saying so (no `Connection: close`): two requests on one
/// connection, and the second meets EOF or a reset. wrk counts each such
/// close as a socket error, so the run tolerates them for that target.
pub(crate) fn closes_silently(proxy: SocketAddr, origin: SocketAddr) -> Result<bool> {
    let what = "probing keep-alive";
    let mut stream = TcpStream::connect_timeout(&proxy, Duration::from_secs(5))
        .context(format!("{what}: connecting to {proxy}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .context("setting a read timeout")?;
    let request = format!(
        "GET http://{origin}/1k HTTP/1.1\r\nHost: {origin}\r\nUser-Agent: proxy-bench\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .context(format!("{what}: sending"))?;
    let head = read_head(&mut stream).context(what)?;
    let length = content_length(&head).context(format!("{what}: no Content-Length"))?;
    let mut body = vec![0u8; length];
    stream
        .read_exact(&mut body)
        .context(format!("{what}: reading the body"))?;
    let announced = head.lines().skip(1).any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("connection")
                && value.to_ascii_lowercase().contains("close")
        })
    });
    if announced {
        return Ok(false);
    }
    // The write may succeed on a connection the peer has closed; the read
    // then tells.
    let _ = stream.write_all(request.as_bytes());
    let mut byte = [0u8; 1];
    Ok(!matches!(stream.read(&mut byte), Ok(1)))
}

/// Reads a response head up to its blank line, a byte at a time so that
/// nothing after it (body, tunnel data) is consumed with it.
pub(crate) fn read_head(stream: &mut TcpStream) -> Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 64 * 1024 {
            bail!("response head over 64 KiB");
        }
        match stream.read(&mut byte) {
            Ok(0) => bail!(
                "connection closed during the response head ({:?})",
                String::from_utf8_lossy(&head)
            ),
            Ok(_) => head.push(byte[0]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => bail!("reading a response head: {e}"),
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// The code of an `HTTP/1.x NNN reason` status line.
pub(crate) fn status_code(head: &str) -> Option<u16> {
    let line = head.lines().next()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

fn content_length(head: &str) -> Option<usize> {
    head.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if name.trim().eq_ignore_ascii_case("content-length") {
            value.trim().parse().ok()
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_length() {
        let head = "HTTP/1.1 200 OK\r\nServer: x\r\ncontent-length: 1024\r\n";
        assert_eq!(status_code(head), Some(200));
        assert_eq!(content_length(head), Some(1024));
        assert_eq!(status_code("SSH-2.0 hello"), None);
    }
}
