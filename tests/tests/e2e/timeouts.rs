//! Timeouts: slow request heads (slowloris), idle keep-alive clients,
//! idle tunnels, stalled bodies, and that defaults leave normal traffic
//! alone.

use crate::{assert_log, request};
use proxy_tests::origin::read_request_head;
use proxy_tests::{cases, EchoServer, LogLine, Origin, Proxy, RawOrigin, Reply};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

cases! {
    /// A head trickling in one byte at a time gets 408 once
    /// `timeouts.head_read` has passed since its first byte, then the
    /// connection closes.
    fn slowloris_head_gets_408(bin) {
        let proxy = Proxy::start_with_config(bin, "(timeouts: (head_read: \"1s\"))", &[]);
        let mut c = proxy.connect();
        c.send("GET http://127.0.0.1:9/slow HTTP/1.1\r\n");
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let mut writer = c.stream().try_clone().unwrap();
        let trickle = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for b in b"X-Slow: ".iter().cycle().take(60) {
                    if stop.load(Ordering::SeqCst) || writer.write_all(&[*b]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        let resp = c.read_response("GET");
        let took = started.elapsed();
        stop.store(true, Ordering::SeqCst);
        resp.assert_error(408, "http_request_error", "timed out reading the request head");
        assert!(
            resp.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")),
            "{resp:#?}"
        );
        assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(4), "took {took:?}");
        c.assert_closed();
        trickle.join().unwrap();
        let line = proxy.wait_for_log(|l| l.contains(" 408 "), proxy_tests::IO_TIMEOUT);
        let rec = LogLine::parse(&line).expect("log line shape");
        assert_eq!(rec.upstream, "-");
        assert_eq!(rec.error.as_deref(), Some("http_request_error"));
    }

    /// An idle keep-alive client connection is closed after
    /// `timeouts.client_idle`, whether or not it ever sent a request.
    fn idle_client_connection_is_closed(bin) {
        let origin = Origin::echo_target();
        let proxy = Proxy::start_with_config(bin, "(timeouts: (client_idle: \"600ms\"))", &[]);
        let mut used = proxy.connect();
        let mut silent = proxy.connect();
        assert_eq!(used.get(&origin.url("/once")).status(), 200);
        let idle_from = Instant::now();
        used.assert_open_for(Duration::from_millis(300));
        assert!(used.closes_within(Duration::from_secs(3)), "idle connection left open");
        let took = idle_from.elapsed();
        assert!(took >= Duration::from_millis(500), "closed after only {took:?}");
        assert!(silent.closes_within(Duration::from_secs(2)), "silent connection left open");
    }

    /// A tunnel with no traffic either way is closed after
    /// `timeouts.tunnel_idle`, and logged as such; one with steady traffic
    /// is not.
    fn idle_tunnel_is_closed(bin) {
        let echo = EchoServer::start();
        let proxy = Proxy::start_with_config(bin, "(timeouts: (tunnel_idle: \"500ms\"))", &[]);
        let target = echo.addr().to_string();
        let mut c = proxy.connect();
        c.send(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"));
        assert_eq!(c.read_head().status, 200);
        // Steady traffic for well over the idle timeout.
        for _ in 0..8 {
            c.send("tick");
            assert_eq!(c.read_exact_bytes(4), b"tick");
            std::thread::sleep(Duration::from_millis(200));
        }
        let idle_from = Instant::now();
        assert!(c.closes_within(Duration::from_secs(3)), "idle tunnel left open");
        let took = idle_from.elapsed();
        assert!(took >= Duration::from_millis(250), "closed after only {took:?}");
        assert_log(&proxy, "CONNECT", &target, 200, Some(&target), Some("tunnel_idle_timeout"));
    }

    /// A response body that stops arriving is cut off after
    /// `timeouts.transfer_idle`: the client sees an incomplete response
    /// and a close, the log says why.
    fn stalled_response_body_is_aborted(bin) {
        let origin = RawOrigin::start(|mut s, _| {
            if read_request_head(&mut s).is_some() {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
                let _ = s.write_all(&[b'a'; 100]);
                std::thread::sleep(Duration::from_secs(5));
            }
        });
        let proxy = Proxy::start_with_config(bin, "(timeouts: (transfer_idle: \"500ms\"))", &[]);
        let mut c = proxy.connect();
        let url = origin.url("/stalls");
        c.send(request("GET", &url, &[], b""));
        let head = c.read_head();
        assert_eq!(head.status, 200);
        let started = Instant::now();
        let got = c.read_to_end();
        let took = started.elapsed();
        assert_eq!(got.len(), 100, "only what the origin sent");
        assert!(took < Duration::from_secs(4), "took {took:?}");
        assert_log(&proxy, "GET", &url, 200, None, Some("transfer_timeout"));
    }

    /// A request body that stops arriving gets 408 after
    /// `timeouts.transfer_idle`, and the connection closes.
    fn stalled_request_body_gets_408(bin) {
        let origin = Origin::echo_target();
        let proxy = Proxy::start_with_config(bin, "(timeouts: (transfer_idle: \"500ms\"))", &[]);
        let mut c = proxy.connect();
        let url = origin.url("/upload");
        c.send(format!("POST {url} HTTP/1.1\r\nHost: {}\r\nContent-Length: 100\r\n\r\n0123456789", origin.authority()));
        let started = Instant::now();
        let resp = c.read_response("POST");
        assert!(started.elapsed() < Duration::from_secs(4));
        resp.assert_error(408, "http_request_error", "timed out");
        c.assert_closed();
        assert!(origin.requests().is_empty());
    }

    /// Slow but steady transfers and a slow origin are not cut off by
    /// short idle timeouts that do not apply to them.
    fn slow_but_progressing_exchange_completes(bin) {
        let origin = RawOrigin::start(|mut s, _| {
            if read_request_head(&mut s).is_some() {
                std::thread::sleep(Duration::from_millis(400));
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
                for i in 0..8 {
                    std::thread::sleep(Duration::from_millis(200));
                    let _ = s.write_all(format!("1\r\n{i}\r\n").as_bytes());
                }
                let _ = s.write_all(b"0\r\n\r\n");
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        let proxy = Proxy::start_with_config(
            bin,
            "(timeouts: (client_idle: \"300ms\", transfer_idle: \"600ms\", response: \"1s\", head_read: \"300ms\"))",
            &[],
        );
        let mut c = proxy.connect();
        let url = origin.url("/drip");
        let resp = c.get(&url);
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text(), "01234567");
        assert_log(&proxy, "GET", &url, 200, None, None);
    }

    /// With the built-in defaults, a connection idle for a couple of
    /// seconds and an origin taking a couple of seconds are fine.
    fn default_timeouts_are_not_hasty(bin) {
        let origin = Origin::start(|r| {
            if r.target == "/slow" {
                Reply::ok("slow").delay(Duration::from_millis(2000))
            } else {
                Reply::ok("fast")
            }
        });
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        assert_eq!(c.get(&origin.url("/slow")).text(), "slow");
        c.assert_open_for(Duration::from_millis(2000));
        assert_eq!(c.get(&origin.url("/fast")).text(), "fast");
    }
}
