//! Responses the proxy writes itself: error pages with `Proxy-Status`, the
//! CONNECT acknowledgement, the Max-Forwards answers, and its own pages
//! (`/_metrics`, `/_status`).

use crate::http::head::RequestHead;
use std::fmt::Write;

/// The standard reason phrase for `status`.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        508 => "Loop Detected",
        _ => "Unknown",
    }
}

/// Appends `text` to `out` with HTML's special characters escaped.
pub(crate) fn escape_html(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
}

/// Escapes `text` as the contents of a structured-field string (RFC 8941
/// §3.3.3): printable ASCII only, with `"` and `\` escaped.
fn sf_string(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 2);
    s.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                s.push('\\');
                s.push(c);
            }
            ' '..='~' => s.push(c),
            _ => s.push('?'),
        }
    }
    s.push('"');
    s
}

/// What an error page says.
#[derive(Debug, Clone)]
pub struct ErrorPage<'a> {
    /// The status code.
    pub status: u16,
    /// The RFC 9209 error type.
    pub proxy_status: &'a str,
    /// One sentence on what went wrong.
    pub message: &'a str,
    /// Our pseudonym, for `Proxy-Status` and the page footer.
    pub proxy_name: &'a str,
    /// The `Date` value.
    pub date: &'a str,
    /// Whether the connection closes after this response.
    pub close: bool,
    /// Omit the body (the request was HEAD).
    pub head_only: bool,
    /// More header fields (`Proxy-Authenticate`, `Retry-After`).
    pub extra: &'a [(&'a str, String)],
}

impl ErrorPage<'_> {
    /// Appends the whole response to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        let reason = reason_phrase(self.status);
        let mut body = String::with_capacity(256);
        let _ = write!(body, "<!DOCTYPE html>\n<html><head><title>{} {reason}</title></head>\n<body><h1>{} {reason}</h1>\n<p>", self.status, self.status);
        escape_html(self.message, &mut body);
        body.push_str("</p>\n<hr><address>");
        escape_html(self.proxy_name, &mut body);
        body.push_str("</address></body></html>\n");

        let mut head = String::with_capacity(256);
        let _ = write!(
            head,
            "HTTP/1.1 {} {reason}\r\nDate: {}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nProxy-Status: {}; error={}; details={}\r\n",
            self.status,
            self.date,
            body.len(),
            self.proxy_name,
            self.proxy_status,
            sf_string(self.message),
        );
        for (name, value) in self.extra {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        if self.status == 408 || self.close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        out.extend_from_slice(head.as_bytes());
        if !self.head_only {
            out.extend_from_slice(body.as_bytes());
        }
    }
}

/// The answer to a successful CONNECT.
pub const CONNECT_ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";

/// The answer to `TRACE` with `Max-Forwards: 0` (RFC 9110 §9.3.8): the
/// request as received, minus credentials, as `message/http`.
pub fn write_trace_reply(
    head: &RequestHead,
    raw_head: &[u8],
    date: &str,
    proxy_name: &str,
    out: &mut Vec<u8>,
) {
    let mut echo = Vec::with_capacity(raw_head.len());
    let first_line_end = raw_head
        .iter()
        .position(|&b| b == b'\n')
        .map_or(raw_head.len(), |i| i + 1);
    echo.extend_from_slice(&raw_head[..first_line_end]);
    for f in &head.fields.0 {
        // RFC 9110 §9.3.8: a sender SHOULD NOT send fields that hold
        // credentials or cookies in the reflected message.
        if ["proxy-authorization", "authorization", "cookie"]
            .iter()
            .any(|n| f.name.eq_ignore_ascii_case(n))
        {
            continue;
        }
        echo.extend_from_slice(f.name.as_bytes());
        echo.extend_from_slice(b": ");
        echo.extend_from_slice(f.value);
        echo.extend_from_slice(b"\r\n");
    }
    echo.extend_from_slice(b"\r\n");
    let _ = write!(
        WriteVec(out),
        "HTTP/1.1 200 OK\r\nDate: {date}\r\nVia: {} {proxy_name}\r\nContent-Type: message/http\r\nContent-Length: {}\r\n\r\n",
        head.version.via_token(),
        echo.len()
    );
    out.extend_from_slice(&echo);
}

/// The answer to `OPTIONS` with `Max-Forwards: 0`: the proxy's own options.
pub fn write_options_reply(date: &str, out: &mut Vec<u8>) {
    let _ = write!(
        WriteVec(out),
        "HTTP/1.1 200 OK\r\nDate: {date}\r\nAllow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE, CONNECT\r\nContent-Length: 0\r\n\r\n"
    );
}

/// A page the proxy answers itself (`/_metrics`, `/_status`, a `PURGE`):
/// `status` with `body`, never stored by a cache.
#[allow(clippy::too_many_arguments)]
pub fn write_local_page(
    status: u16,
    date: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
    close: bool,
    out: &mut Vec<u8>,
) {
    let _ = write!(
        WriteVec(out),
        "HTTP/1.1 {status} {}\r\nDate: {date}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{}\r\n",
        reason_phrase(status),
        body.len(),
        if close { "Connection: close\r\n" } else { "" },
    );
    if !head_only {
        out.extend_from_slice(body);
    }
}

/// `fmt::Write` into a byte vector.
pub(crate) struct WriteVec<'a>(pub(crate) &'a mut Vec<u8>);

impl std::fmt::Write for WriteVec<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_page_is_a_complete_response_with_proxy_status() {
        let mut out = Vec::new();
        ErrorPage {
            status: 502,
            proxy_status: "dns_error",
            message: "cannot resolve <evil>\"x\"",
            proxy_name: "p",
            date: "D",
            close: true,
            head_only: false,
            extra: &[("Retry-After", "3".to_owned())],
        }
        .write(&mut out);
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 502 Bad Gateway\r\n"));
        assert!(head.contains(
            "Proxy-Status: p; error=dns_error; details=\"cannot resolve <evil>\\\"x\\\"\""
        ));
        assert!(head.contains("Connection: close"));
        assert!(head.contains("\r\nRetry-After: 3\r\n"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(body.contains("cannot resolve &lt;evil&gt;&quot;x&quot;"));
    }

    #[test]
    fn local_page_is_a_complete_response() {
        let mut out = Vec::new();
        write_local_page(200, "D", "text/plain", b"hello", false, false, &mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nDate: D\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nCache-Control: no-store\r\n\r\nhello"
        );
        let mut out = Vec::new();
        write_local_page(200, "D", "text/html", b"hello", true, true, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with(
            "Content-Length: 5\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
        ));
    }

    #[test]
    fn head_only_error_page_keeps_the_length_but_no_body() {
        let mut out = Vec::new();
        ErrorPage {
            status: 400,
            proxy_status: "http_request_error",
            message: "m",
            proxy_name: "p",
            date: "D",
            close: false,
            head_only: true,
            extra: &[],
        }
        .write(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("\r\n\r\n"));
        assert!(!text.contains("Content-Length: 0"));
        assert!(!text.contains("Connection: close"));
    }
}
