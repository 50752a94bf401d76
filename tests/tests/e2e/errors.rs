//! Errors the proxy answers for itself: status, Proxy-Status error type,
//! an HTML body that says why, the access-log line, and whether the
//! connection survives.

use crate::{assert_log, request};
use proxy_tests::origin::read_request_head;
use proxy_tests::{cases, refused_addr, Origin, Proxy, RawOrigin, Reply};
use std::io::Write;
use std::time::Duration;

/// Sends `raw` (a request with bad framing) for `origin` and checks the
/// 400, the log line, that the connection closes and that the origin
/// never saw the request.
fn bad_framing(bin: proxy_tests::Binary, raw: impl Fn(&Origin) -> Vec<u8>, says: &str) {
    let origin = Origin::echo_target();
    let proxy = Proxy::start(bin, &[]);
    let mut c = proxy.connect();
    c.send(raw(&origin));
    let resp = c.read_response("POST");
    resp.assert_error(400, "http_request_error", says);
    assert!(
        resp.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close")),
        "a framing error must announce the close: {resp:#?}"
    );
    c.assert_closed();
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        origin.requests().is_empty(),
        "forwarded: {:#?}",
        origin.requests()
    );
    let line = proxy.wait_for_log(|l| l.contains(" 400 "), proxy_tests::IO_TIMEOUT);
    assert!(line.ends_with("error=http_request_error"), "{line}");
}

fn post_head(origin: &Origin, fields: &str) -> Vec<u8> {
    format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\n{fields}\r\n",
        origin.url("/framing"),
        origin.authority()
    )
    .into_bytes()
}

cases! {
    /// Content-Length together with Transfer-Encoding: 400, close.
    fn content_length_with_transfer_encoding_is_400(bin) {
        bad_framing(bin, |o| {
            let mut r = post_head(o, "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n");
            r.extend_from_slice(b"5\r\nhello\r\n0\r\n\r\n");
            r
        }, "both Content-Length and Transfer-Encoding");
    }

    /// Two different Content-Lengths: 400, close.
    fn differing_content_lengths_are_400(bin) {
        bad_framing(bin, |o| {
            let mut r = post_head(o, "Content-Length: 5\r\nContent-Length: 6\r\n");
            r.extend_from_slice(b"hello!");
            r
        }, "Content-Length");
    }

    /// A Content-Length that is not a number: 400, close.
    fn invalid_content_length_is_400(bin) {
        bad_framing(bin, |o| post_head(o, "Content-Length: 5x\r\n"), "Content-Length");
    }

    /// Transfer-Encoding whose last coding is not chunked: 400, close.
    fn transfer_encoding_not_ending_in_chunked_is_400(bin) {
        bad_framing(bin, |o| {
            let mut r = post_head(o, "Transfer-Encoding: chunked, gzip\r\n");
            r.extend_from_slice(b"5\r\nhello\r\n0\r\n\r\n");
            r
        }, "Transfer-Encoding");
    }

    /// Obsolete line folding: 400, close.
    fn obs_fold_is_400(bin) {
        bad_framing(bin, |o| post_head(o, "X-Folded: first\r\n  second\r\n"), "line folding");
    }

    /// Whitespace between a field name and its colon: 400, close.
    fn space_before_colon_is_400(bin) {
        bad_framing(bin, |o| post_head(o, "Content-Length : 5\r\n"), "whitespace");
    }

    /// An invalid chunk size: 400, close, and the log says why.
    fn bad_chunk_size_is_400(bin) {
        let origin = Origin::echo_target();
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        let url = origin.url("/framing");
        c.send(post_head(&origin, "Transfer-Encoding: chunked\r\n"));
        c.send("zz\r\nhello\r\n0\r\n\r\n");
        let resp = c.read_response("POST");
        resp.assert_error(400, "http_request_error", "chunk");
        c.assert_closed();
        assert_log(&proxy, "POST", &url, 400, None, Some("http_request_error"));
        // The origin never got a complete request.
        assert!(origin.requests().is_empty());
    }

    /// A request line that is not HTTP at all: 400 (not 505: there is no
    /// HTTP version in it to be unsupported), close, logged with `-`.
    fn garbage_request_line_is_400(bin) {
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        c.send("this is not http\r\n\r\n");
        let resp = c.read_response("GET");
        resp.assert_error(400, "http_request_error", "malformed request");
        c.assert_closed();
        let line = proxy.wait_for_log(|l| l.contains(" 400 "), proxy_tests::IO_TIMEOUT);
        let rec = proxy_tests::LogLine::parse(&line).expect("log line shape");
        assert_eq!(rec.upstream, "-");
        assert_eq!(rec.error.as_deref(), Some("http_request_error"));
        assert_eq!(rec.client, c.local_addr().to_string());
    }

    /// A header line without a colon: 400, close.
    fn header_line_without_colon_is_400(bin) {
        let origin = Origin::echo_target();
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        c.send(format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nThis line has no colon\r\n\r\n",
            origin.url("/nocolon"),
            origin.authority()
        ));
        let resp = c.read_response("GET");
        resp.assert_error(400, "http_request_error", "malformed request");
        c.assert_closed();
        assert!(origin.requests().is_empty());
    }

    /// HTTP/1.1 without Host: 400.
    fn missing_host_is_400(bin) {
        let origin = Origin::echo_target();
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        c.send(format!("GET {} HTTP/1.1\r\nAccept: */*\r\n\r\n", origin.url("/nohost")));
        let resp = c.read_response("GET");
        resp.assert_error(400, "http_request_error", "Host");
        assert!(origin.requests().is_empty());
    }

    /// A request target over `limits.max_uri_bytes`: 414.
    fn long_uri_is_414(bin) {
        let origin = Origin::echo_target();
        let proxy = Proxy::start_with_config(
            bin,
            "(limits: (max_head_bytes: \"4KiB\", max_uri_bytes: \"1KiB\", max_headers: 20))",
            &[],
        );
        let mut c = proxy.connect();
        let url = origin.url(&format!("/{}", "a".repeat(1500)));
        c.send(request("GET", &url, &[], b""));
        let resp = c.read_response("GET");
        resp.assert_error(414, "http_request_error", "longer than 1024 bytes");
        c.assert_closed();
        let line = proxy.wait_for_log(|l| l.contains(" 414 "), proxy_tests::IO_TIMEOUT);
        assert!(line.ends_with("error=http_request_error"), "{line}");
        assert!(origin.requests().is_empty());
        // Just under the limit is fine.
        let mut c = proxy.connect();
        let ok = origin.url(&format!("/{}", "b".repeat(900)));
        assert_eq!(c.get(&ok).status(), 200);
    }

    /// A request line longer than the whole head limit is also 414.
    fn request_line_beyond_head_limit_is_414(bin) {
        let proxy = Proxy::start_with_config(
            bin,
            "(limits: (max_head_bytes: \"4KiB\", max_uri_bytes: \"1KiB\"))",
            &[],
        );
        let mut c = proxy.connect();
        // No line end at all yet: the proxy must not wait for one forever.
        c.send(format!("GET http://127.0.0.1:9/{}", "a".repeat(6000)));
        let resp = c.read_response("GET");
        resp.assert_error(414, "http_request_error", "longer than");
        c.assert_closed();
    }

    /// A head over `limits.max_head_bytes`: 431.
    fn big_head_is_431(bin) {
        let origin = Origin::echo_target();
        let proxy = Proxy::start_with_config(
            bin,
            "(limits: (max_head_bytes: \"4KiB\", max_uri_bytes: \"1KiB\", max_headers: 20))",
            &[],
        );
        let mut c = proxy.connect();
        let big = "v".repeat(5000);
        c.send(request("GET", &origin.url("/big-head"), &[("X-Big", &big)], b""));
        let resp = c.read_response("GET");
        resp.assert_error(431, "http_request_error", "larger than 4096 bytes");
        c.assert_closed();
        let line = proxy.wait_for_log(|l| l.contains(" 431 "), proxy_tests::IO_TIMEOUT);
        assert!(line.ends_with("error=http_request_error"), "{line}");
        assert!(origin.requests().is_empty());
    }

    /// More fields than `limits.max_headers`: 431.
    fn too_many_headers_is_431(bin) {
        let origin = Origin::echo_target();
        let proxy = Proxy::start_with_config(
            bin,
            "(limits: (max_head_bytes: \"4KiB\", max_uri_bytes: \"1KiB\", max_headers: 20))",
            &[],
        );
        let mut c = proxy.connect();
        let names: Vec<String> = (0..25).map(|i| format!("X-H{i}")).collect();
        let fields: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        c.send(request("GET", &origin.url("/many"), &fields, b""));
        let resp = c.read_response("GET");
        resp.assert_error(431, "http_request_error", "more than 20 header fields");
        c.assert_closed();
        assert!(origin.requests().is_empty());
        // 19 fields plus Host is within the limit.
        let mut c = proxy.connect();
        c.send(request("GET", &origin.url("/few"), &fields[..19], b""));
        assert_eq!(c.read_response("GET").status(), 200);
    }

    /// An unresolvable name: 502 dns_error, no upstream in the log, and
    /// the connection stays usable.
    /// A name no `--resolve` pins goes to the system resolver (on a
    /// lookup thread, not the connection's): `localhost` comes back as
    /// loopback, and the request is served.
    fn names_go_to_the_system_resolver(bin) {
        let origin = Origin::echo_target();
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        let url = format!("http://localhost:{}/system", origin.addr().port());
        let resp = c.get(&url);
        assert_eq!(resp.status(), 200, "{resp:#?}");
        assert_eq!(resp.text(), "/system");
        assert_eq!(c.get(&origin.url("/after")).status(), 200);
    }

    fn unresolvable_host_is_502(bin) {
        let origin = Origin::echo_target();
        let proxy = Proxy::start(bin, &["--resolve", "gone.test="]);
        let mut c = proxy.connect();
        let resp = c.get("http://gone.test/page");
        resp.assert_error(502, "dns_error", "gone.test");
        let line = assert_log(&proxy, "GET", "http://gone.test/page", 502, Some("-"), Some("dns_error"));
        assert_eq!(line.bytes, resp.wire_len, "logged bytes vs bytes received");
        assert_eq!(c.get(&origin.url("/after")).status(), 200);
        // HEAD gets the error without a body, and the connection goes on.
        c.send(request("HEAD", "http://gone.test/head", &[], b""));
        let resp = c.read_response("HEAD");
        assert_eq!(resp.status(), 502);
        assert!(resp.body.is_empty());
        assert_eq!(c.get(&origin.url("/after-head")).status(), 200);
    }

    /// A refused connection: 502 connection_refused.
    fn refused_connection_is_502(bin) {
        let addr = refused_addr();
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        let url = format!("http://{addr}/refused");
        let resp = c.get(&url);
        resp.assert_error(502, "connection_refused", "refused");
        assert_log(&proxy, "GET", &url, 502, None, Some("connection_refused"));
    }

    /// All addresses of a name are tried: a refusing one (127.0.0.1 on a
    /// port only ::1 listens on), then a working one.
    fn next_address_is_tried_after_refusal(bin) {
        if !proxy_tests::needs_ipv6() {
            return;
        }
        // An origin on [::1]:port whose 127.0.0.1:port is held refusing
        // (another origin is tried when someone has that port on IPv4).
        let (origin, _refused) = (0..20)
            .find_map(|_| {
                let origin = Origin::start_on("::1".parse().unwrap(), |r| Reply::ok(r.target.clone()));
                let refused = proxy_tests::refused_on(origin.addr().port())?;
                Some((origin, refused))
            })
            .expect("a port free on both 127.0.0.1 and [::1]");
        let port = origin.addr().port();
        let proxy = Proxy::start(bin, &["--resolve", "multi.test=127.0.0.1,::1"]);
        let mut c = proxy.connect();
        let url = format!("http://multi.test:{port}/multi");
        let resp = c.get(&url);
        assert_eq!(resp.status(), 200, "{resp:#?}");
        assert_eq!(resp.text(), "/multi");
        assert_log(&proxy, "GET", &url, 200, Some(&format!("[::1]:{port}")), None);
    }

    /// The origin closes without answering: 502 connection_terminated.
    fn origin_closing_without_response_is_502(bin) {
        let origin = RawOrigin::start(|mut s, _| {
            let _ = read_request_head(&mut s);
        });
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        let url = origin.url("/closes");
        let resp = c.get(&url);
        resp.assert_error(502, "connection_terminated", "without a response");
        assert_log(&proxy, "GET", &url, 502, Some(&origin.addr().to_string()), Some("connection_terminated"));
    }

    /// The origin resets the connection: 502.
    fn origin_reset_is_502(bin) {
        let origin = RawOrigin::start(|s, _| {
            // Unread request bytes make the close a reset (RST).
            std::thread::sleep(Duration::from_millis(200));
            drop(s);
        });
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        let url = origin.url("/reset");
        let resp = c.get(&url);
        resp.assert_error(502, "connection_terminated", "");
        assert_log(&proxy, "GET", &url, 502, None, Some("connection_terminated"));
    }

    /// A response that is not HTTP: 502 http_protocol_error, and nothing of
    /// it reaches the client.
    fn bad_upstream_response_is_502(bin) {
        let origin = RawOrigin::respond(b"SSH-2.0-OpenSSH_9.6\r\nnot http at all\r\n\r\n");
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        let url = origin.url("/garbage");
        let resp = c.get(&url);
        resp.assert_error(502, "http_protocol_error", "invalid response");
        assert!(!resp.text().contains("OpenSSH"));
        assert_log(&proxy, "GET", &url, 502, None, Some("http_protocol_error"));
    }

    /// A response with ambiguous framing is never passed on: 502.
    fn ambiguous_response_framing_is_502(bin) {
        let both = RawOrigin::respond(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nSMUGG\r\n0\r\n\r\n",
        );
        let two = RawOrigin::respond(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nSMUGGLE",
        );
        let fold = RawOrigin::respond(
            b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 5\r\n\r\nSMUGG",
        );
        let proxy = Proxy::start(bin, &[]);
        for (origin, says) in [(&both, "framing"), (&two, "framing"), (&fold, "folding")] {
            let mut c = proxy.connect();
            let url = origin.url("/ambiguous");
            let resp = c.get(&url);
            resp.assert_error(502, "http_protocol_error", says);
            assert!(!resp.text().contains("SMUGG"), "{resp:#?}");
            assert!(resp.header("x-folded").is_none());
            assert_log(&proxy, "GET", &url, 502, None, Some("http_protocol_error"));
        }
    }

    /// An origin that accepts and never answers: 504 after
    /// `timeouts.response`.
    fn response_timeout_is_504(bin) {
        let origin = RawOrigin::start(|mut s, _| {
            let _ = read_request_head(&mut s);
            std::thread::sleep(Duration::from_secs(4));
        });
        let proxy = Proxy::start_with_config(bin, "(timeouts: (response: \"500ms\"))", &[]);
        let mut c = proxy.connect();
        let url = origin.url("/silent");
        let started = std::time::Instant::now();
        let resp = c.get(&url);
        let took = started.elapsed();
        resp.assert_error(504, "http_response_timeout", "timed out waiting for a response");
        assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(3), "took {took:?}");
        let line = assert_log(&proxy, "GET", &url, 504, Some(&origin.addr().to_string()), Some("http_response_timeout"));
        assert!(line.millis >= 400, "{line:?}");
    }

    /// Connecting takes longer than `timeouts.connect`: 504. Uses a
    /// loopback listener whose accept queue is full (the kernel drops the
    /// SYNs); a kernel that does not behave so fails it unless
    /// `E2E_SKIP_BLACKHOLE=1`.
    fn connect_timeout_is_504(bin) {
        let Some(hole) = proxy_tests::needs_blackhole() else {
            return;
        };
        let proxy = Proxy::start_with_config(bin, "(timeouts: (connect: \"500ms\"))", &[]);
        let mut c = proxy.connect();
        let url = format!("http://{}/hangs", hole.addr);
        let started = std::time::Instant::now();
        let resp = c.get(&url);
        let took = started.elapsed();
        resp.assert_error(504, "connection_timeout", "timed out connecting");
        assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(4), "took {took:?}");
        assert_log(&proxy, "GET", &url, 504, None, Some("connection_timeout"));
        drop(hole);
    }

    /// Hundreds of clients whose origin never answers the SYN (more than
    /// proxy-std has worker threads) do not hold up a client whose origin
    /// answers: a connect waits like any socket, not on a thread. Each
    /// of the stuck ones then gets its 504.
    fn hanging_connects_do_not_hold_up_other_clients(bin) {
        let Some(hole) = proxy_tests::needs_blackhole() else {
            return;
        };
        let origin = Origin::echo_target();
        let proxy = Proxy::start_with_config(bin, "(timeouts: (connect: \"4s\"))", &[]);
        let stuck_url = format!("http://{}/hangs", hole.addr);
        let stuck: Vec<_> = (0..300)
            .map(|_| {
                let mut c = proxy.connect();
                c.send(format!("GET {stuck_url} HTTP/1.1\r\nHost: {}\r\n\r\n", hole.addr));
                c
            })
            .collect();
        // Let every stuck request reach its connect.
        std::thread::sleep(Duration::from_millis(500));
        let mut c = proxy.connect();
        let started = std::time::Instant::now();
        let resp = c.get(&origin.url("/meanwhile"));
        let took = started.elapsed();
        assert_eq!(resp.status(), 200);
        assert!(took < Duration::from_secs(1), "a working origin took {took:?} behind 300 hanging connects");
        for mut s in stuck {
            s.read_response("GET").assert_error(504, "connection_timeout", "timed out connecting");
        }
        drop(hole);
    }

    /// Whitespace inside the request target is a bad request (400), not
    /// an unsupported version (505): the version is fine.
    fn whitespace_in_the_target_is_400(bin) {
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        c.send("GET http://a.test/x y HTTP/1.1\r\nHost: a.test\r\n\r\n");
        let resp = c.read_response("GET");
        resp.assert_error(400, "http_request_error", "whitespace in the request target");
        assert_log(&proxy, "-", "-", 400, Some("-"), Some("http_request_error"));
    }

    /// Repeated Content-Length lines of one value (or a list of it) reach
    /// the origin as exactly one `Content-Length` (RFC 9110 §8.6), with
    /// the body.
    fn repeated_content_length_is_forwarded_once(bin) {
        let origin = Origin::echo_target();
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        for (i, lengths) in [&[("Content-Length", "3"), ("Content-Length", "3")][..], &[("Content-Length", "3, 3")]]
            .into_iter()
            .enumerate()
        {
            let url = origin.url(&format!("/cl{i}"));
            c.send(request("POST", &url, lengths, b"abc"));
            assert_eq!(c.read_response("POST").status(), 200);
            let got = origin.wait_requests(i + 1).pop().unwrap();
            let lines: Vec<&(String, String)> =
                got.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("content-length")).collect();
            assert_eq!(lines.len(), 1, "{:?}", got.headers);
            assert_eq!(lines[0].1, "3");
            assert_eq!(got.body, b"abc");
        }
    }

    /// A connection that opens and says nothing is closed once
    /// `timeouts.head_read` has passed, without waiting for the longer
    /// keep-alive idle time, and without an answer or a record.
    fn a_silent_connection_is_closed_after_head_read(bin) {
        let proxy = Proxy::start_with_config(bin, "(timeouts: (head_read: \"500ms\", client_idle: \"1m\"))", &[]);
        let mut c = proxy.connect();
        let started = std::time::Instant::now();
        assert!(c.closes_within(Duration::from_secs(5)), "still open");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(3), "took {took:?}");
        assert!(proxy.log_lines().is_empty(), "{:?}", proxy.log_lines());
    }

    /// `https://` in absolute form: 501, use CONNECT.
    fn https_absolute_uri_is_501(bin) {
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        let url = "https://127.0.0.1:9/secret";
        let resp = c.get(url);
        resp.assert_error(501, "http_request_error", "CONNECT");
        assert_log(&proxy, "GET", url, 501, Some("-"), Some("http_request_error"));
    }

    /// A Via that already names this proxy: 508, nothing forwarded.
    fn via_naming_the_proxy_is_508(bin) {
        let origin = Origin::echo_target();
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        let url = origin.url("/loop");
        c.send(request("GET", &url, &[("Via", "1.0 other, 1.1 proxy-rs")], b""));
        let resp = c.read_response("GET");
        resp.assert_error(508, "proxy_loop_detected", "loop");
        assert_log(&proxy, "GET", &url, 508, Some("-"), Some("proxy_loop_detected"));
        assert!(origin.requests().is_empty());
    }

    /// Proxy-generated errors are HTTP/1.1 responses with a Date.
    fn error_pages_are_well_formed(bin) {
        let proxy = Proxy::start(bin, &["--resolve", "gone.test="]);
        let mut c = proxy.connect();
        let resp = c.get("http://gone.test/x");
        assert_eq!(resp.head.minor, 1);
        crate::assert_http_date(&resp);
        let body = resp.text();
        assert!(body.contains("502"), "{body}");
        assert_eq!(resp.header("content-length").map(|v| v.parse::<usize>().unwrap()), Some(resp.body.len()));
    }

    /// The origin answers (413) before the request body is complete and
    /// closes: the client gets the response, then the proxy closes the
    /// client connection promptly (its body can no longer be delivered)
    /// rather than waiting for the transfer timeout.
    fn early_final_response_then_close(bin) {
        let origin = RawOrigin::start(|mut s, _| {
            if read_request_head(&mut s).is_some() {
                let _ = s.write_all(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big!");
                let _ = s.shutdown(std::net::Shutdown::Write);
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        let url = origin.url("/upload");
        c.send(format!("POST {url} HTTP/1.1\r\nHost: {}\r\nContent-Length: 100000\r\n\r\n", origin.addr()));
        c.send(vec![b'x'; 1000]);
        let resp = c.read_response("POST");
        assert_eq!(resp.status(), 413);
        assert_eq!(resp.text(), "too big!");
        // The rest of the body can no longer be framed: the proxy closes.
        c.assert_closed();
        let mut d = proxy.connect();
        assert_eq!(d.get(&origin.url("/next")).status(), 413);
    }
}
