//! End-to-end tests: both proxy binaries (`proxy-std`, `proxy-smol`)
//! against origins started inside the test on loopback. Every case runs
//! once per binary, as `<case>::std` and `<case>::smol`.
//!
//! Nothing here touches the network beyond 127.0.0.1 and ::1; names are
//! pinned with `--resolve`.

mod auth_flood;
mod cache;
mod errors;
mod forwarding;
mod handover;
mod keepalive;
mod lifecycle;
mod metrics;
mod operations;
mod parents;
mod policy;
mod proxy_protocol;
mod resources;
mod status_page;
mod timeouts;
mod tls;
mod tunnel;

use proxy_tests::{LogLine, Proxy, Response};

/// A request in absolute form for `url`, with `Host` from the URL, the
/// given extra header lines, and a Content-Length body if `body` is not
/// empty.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let host = proxy_tests::client::host_of(url);
    let mut out = format!("{method} {url} HTTP/1.1\r\nHost: {host}\r\n");
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Asserts the access-log line for `method target`: status, upstream
/// (`None` to skip), error, and that `bytes` equals what the client got
/// (`None` to skip).
pub fn assert_log(
    proxy: &Proxy,
    method: &str,
    target: &str,
    status: u16,
    upstream: Option<&str>,
    error: Option<&str>,
) -> LogLine {
    let line = proxy.wait_for_record(method, target);
    assert_eq!(line.status, status, "status in {line:?}");
    if let Some(u) = upstream {
        assert_eq!(line.upstream, u, "upstream in {line:?}");
    }
    assert_eq!(line.error.as_deref(), error, "error in {line:?}");
    line
}

/// Asserts an IMF-fixdate `Date` (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn assert_http_date(resp: &Response) {
    let date = resp
        .header("date")
        .unwrap_or_else(|| panic!("no Date in {resp:#?}"));
    assert!(
        date.len() == 29 && date.ends_with(" GMT") && date.as_bytes()[3] == b',',
        "Date {date:?} is not an IMF-fixdate"
    );
}

/// The `Via` values of a message, joined as one list.
pub fn via(values: Vec<&str>) -> String {
    values.join(", ")
}
