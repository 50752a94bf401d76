//! CONNECT tunnels: establishment, relaying both ways, half-close, byte
//! counts in the log, failures.

use crate::assert_log;
use proxy_tests::{cases, refused_addr, EchoServer, Proxy, RawOrigin};
use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ESTABLISHED: &str = "HTTP/1.1 200 Connection established\r\n\r\n";

fn connect_request(authority: &str) -> String {
    format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n")
}

cases! {
    /// CONNECT to an echo server: `200 Connection established`, bytes both
    /// ways, the client's half-close passes through and the echo of
    /// everything still arrives; the log line counts the bytes.
    fn connect_tunnel_relays_both_ways_with_half_close(bin) {
        let echo = EchoServer::start();
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        let target = echo.addr().to_string();
        c.send(connect_request(&target));
        let head = c.read_head();
        assert_eq!(head.status, 200, "{head:#?}");
        assert_eq!(head.minor, 1);
        assert_eq!(head.reason, "Connection established");
        // Interactive round trips.
        let mut sent = 0u64;
        for msg in ["hello", "\x16\x03\x01 pretend TLS"] {
            c.send(msg);
            assert_eq!(c.read_exact_bytes(msg.len()), msg.as_bytes());
            sent += msg.len() as u64;
        }
        // A bulk transfer, then half-close: the rest must still come back.
        let bulk: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
        c.send(&bulk);
        c.shutdown_write();
        let back = c.read_to_end();
        assert_eq!(back.len(), bulk.len(), "echo after half-close");
        assert!(back == bulk);
        sent += bulk.len() as u64;
        let line = assert_log(&proxy, "CONNECT", &target, 200, Some(&target), None);
        assert_eq!(line.bytes, ESTABLISHED.len() as u64 + sent, "bytes to client in {line:?}");
        let head = connect_request(&target).len() as u64;
        assert_eq!(line.client_sent, Some(head + sent), "bytes from client in {line:?}");
        // The echo server counts a connection once done with it, just
        // after sending its FIN, so maybe after the proxy logged the end.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while echo.echoed() < sent && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(echo.echoed(), sent);
    }

    /// Megabytes both ways at once, more than any socket buffer or pipe
    /// holds, so both directions block on a full destination and resume:
    /// every byte arrives, in order, and the log counts them all.
    fn tunnel_moves_megabytes_both_ways_at_once(bin) {
        const LEN: usize = 24 << 20;
        fn pattern(seed: u32) -> Vec<u8> {
            (0..LEN as u32).map(|i| (i.wrapping_mul(seed) >> 7) as u8).collect()
        }
        let received = Arc::new(Mutex::new(Vec::new()));
        let got = Arc::clone(&received);
        let origin = RawOrigin::start(move |mut s, _| {
            let mut reader = s.try_clone().unwrap();
            let collect = std::thread::spawn(move || {
                let mut all = Vec::new();
                reader.read_to_end(&mut all).map(|_| all)
            });
            s.write_all(&pattern(2_654_435_761)).unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            let all = collect.join().unwrap().unwrap();
            *got.lock().unwrap() = all;
        });
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        let target = origin.addr().to_string();
        c.send(connect_request(&target));
        assert_eq!(c.read_head().status, 200);
        let mut writer = c.stream().try_clone().unwrap();
        let upload = std::thread::spawn(move || {
            writer.write_all(&pattern(40_503)).unwrap();
            writer.shutdown(Shutdown::Write).unwrap();
        });
        let down = c.read_to_end();
        upload.join().unwrap();
        assert_eq!(down.len(), LEN, "bytes to the client");
        assert!(down == pattern(2_654_435_761), "the client got other bytes");
        let line = assert_log(&proxy, "CONNECT", &target, 200, Some(&target), None);
        // The origin may still be finishing its read.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while received.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let up = received.lock().unwrap();
        assert_eq!(up.len(), LEN, "bytes to the origin");
        assert!(*up == pattern(40_503), "the origin got other bytes");
        assert_eq!(line.bytes, (ESTABLISHED.len() + LEN) as u64);
        let head = connect_request(&target).len() as u64;
        assert_eq!(line.client_sent, Some(head + LEN as u64));
    }

    /// The origin finishes sending first (half-close from upstream): the
    /// client sees EOF but may still send, and the origin still receives.
    fn tunnel_upstream_half_close_keeps_other_direction(bin) {
        let received = Arc::new(Mutex::new(Vec::new()));
        let got = Arc::clone(&received);
        let origin = RawOrigin::start(move |mut s, _| {
            let _ = s.write_all(b"server says bye\n");
            let _ = s.shutdown(Shutdown::Write);
            let mut all = Vec::new();
            let _ = s.read_to_end(&mut all);
            got.lock().unwrap().extend_from_slice(&all);
        });
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        let target = origin.addr().to_string();
        c.send(connect_request(&target));
        assert_eq!(c.read_head().status, 200);
        assert_eq!(c.read_to_end(), b"server says bye\n");
        // The client's direction is still open.
        std::thread::sleep(Duration::from_millis(100));
        c.send("late data from the client");
        c.shutdown_write();
        let line = assert_log(&proxy, "CONNECT", &target, 200, Some(&target), None);
        assert_eq!(line.bytes, (ESTABLISHED.len() + 16) as u64);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while received.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(&*received.lock().unwrap(), b"late data from the client");
    }

    /// Bytes the client sends right behind the CONNECT head, before the
    /// 200, are relayed too.
    fn tunnel_bytes_sent_with_the_connect_head(bin) {
        let echo = EchoServer::start();
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        let target = echo.addr().to_string();
        let mut first = connect_request(&target).into_bytes();
        first.extend_from_slice(b"early bytes");
        c.send(&first);
        assert_eq!(c.read_head().status, 200);
        assert_eq!(c.read_exact_bytes(11), b"early bytes");
        c.shutdown_write();
        assert!(c.read_to_end().is_empty());
        assert_log(&proxy, "CONNECT", &target, 200, Some(&target), None);
    }

    /// CONNECT to a pinned name.
    fn tunnel_to_a_named_host(bin) {
        let echo = EchoServer::start();
        let proxy = Proxy::start(bin, &["--resolve", "tls.test=127.0.0.1"]);
        let mut c = proxy.connect();
        let target = format!("tls.test:{}", echo.addr().port());
        c.send(connect_request(&target));
        assert_eq!(c.read_head().status, 200);
        c.send("x");
        assert_eq!(c.read_exact_bytes(1), b"x");
        c.shutdown_write();
        assert!(c.read_to_end().is_empty());
        assert_log(&proxy, "CONNECT", &target, 200, Some(&echo.addr().to_string()), None);
    }

    /// CONNECT to a refused port: 502 connection_refused, no tunnel.
    fn tunnel_to_refused_port_is_502(bin) {
        let refused = refused_addr();
        let addr = refused.to_string();
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        c.send(connect_request(&addr));
        let resp = c.read_response("CONNECT");
        resp.assert_error(502, "connection_refused", "refused");
        assert_log(&proxy, "CONNECT", &addr, 502, None, Some("connection_refused"));
    }

    /// CONNECT to an unresolvable name: 502 dns_error.
    fn tunnel_to_unresolvable_host_is_502(bin) {
        let proxy = Proxy::start(bin, &["--resolve", "gone.test="]);
        let mut c = proxy.connect();
        c.send(connect_request("gone.test:443"));
        let resp = c.read_response("CONNECT");
        resp.assert_error(502, "dns_error", "gone.test");
        assert_log(&proxy, "CONNECT", "gone.test:443", 502, Some("-"), Some("dns_error"));
    }

    /// CONNECT without a port, or with a body, is a bad request.
    fn malformed_connect_is_400(bin) {
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        c.send("CONNECT 127.0.0.1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        let resp = c.read_response("CONNECT");
        resp.assert_error(400, "http_request_error", "");
        let mut c = proxy.connect();
        c.send("CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nContent-Length: 3\r\n\r\nabc");
        let resp = c.read_response("CONNECT");
        resp.assert_error(400, "http_request_error", "body");
    }
}
