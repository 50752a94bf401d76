//! Graceful shutdown: SIGTERM/SIGINT stop the listeners at once, let
//! what is in flight finish within the grace period, end the rest when it
//! is over, and exit 0; a second signal exits at once.

use crate::{assert_log, request};
use proxy_tests::origin::{matches_pattern, pattern, read_request_head, PATTERN_LEN};
use proxy_tests::{cases, Client, EchoServer, LogLine, Origin, Proxy, RawOrigin, Reply};
use rustix::process::Signal;
use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An origin that answers every request with `len` bytes of the test
/// pattern (Content-Length, keep-alive), sent in 64 KiB pieces with
/// `pause` after each: a slow download.
pub(crate) fn slow_origin(len: u64, pause: Duration) -> RawOrigin {
    const PIECE: usize = 64 * 1024;
    RawOrigin::start(move |mut s, _| {
        while read_request_head(&mut s).is_some() {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n");
            if s.write_all(head.as_bytes()).is_err() {
                return;
            }
            let mut offset = 0u64;
            while offset < len {
                let start = (offset % PATTERN_LEN as u64) as usize;
                let n = ((len - offset) as usize).min(PIECE).min(PATTERN_LEN);
                if s.write_all(&pattern()[start..start + n]).is_err() {
                    return;
                }
                offset += n as u64;
                std::thread::sleep(pause);
            }
        }
    })
}

/// Waits for a stderr line starting with `prefix`.
pub(crate) fn wait_stderr(proxy: &Proxy, prefix: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(l) = proxy
            .stderr_lines()
            .into_iter()
            .find(|l| l.starts_with(prefix))
        {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "no stderr line starting {prefix:?} within {timeout:?}; stderr:\n{}",
            proxy.stderr_lines().join("\n")
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for the process to exit within `timeout`; its exit status.
pub(crate) fn exit_within(proxy: &mut Proxy, timeout: Duration) -> std::process::ExitStatus {
    proxy.wait_exit(timeout).unwrap_or_else(|| {
        panic!(
            "{} still running {timeout:?} after the signal; stderr:\n{}",
            proxy.binary().name(),
            proxy.stderr_lines().join("\n")
        )
    })
}

/// Waits for `proxy`, signalled at `signalled` with a 1 s grace period
/// and something still in flight, and asserts it exited 0 as that
/// period ended: not before, and not seconds later.
fn exits_0_when_a_1s_grace_ends(proxy: &mut Proxy, signalled: Instant) {
    let status = exit_within(proxy, Duration::from_secs(8));
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "exited {took:?} after the signal"
    );
}

/// Asserts that connecting to the proxy's address is refused.
fn assert_refused(proxy: &Proxy) {
    match TcpStream::connect_timeout(&proxy.addr(), Duration::from_secs(2)) {
        Ok(_) => panic!("a connection after the signal was accepted"),
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "connect: {e}"),
    }
}

cases! {
    /// 20 slow downloads in flight at SIGTERM all finish byte-exact, each
    /// logged with 200, and the process then exits 0 at once (not after
    /// the 30 s grace period); meanwhile new connections are refused.
    fn sigterm_lets_slow_downloads_finish(bin) {
        const DOWNLOADS: usize = 20;
        // ~2 s each: 32 pieces of 64 KiB, 60 ms apart.
        const LEN: u64 = 2 << 20;
        let origin = slow_origin(LEN, Duration::from_millis(60));
        let mut proxy = Proxy::start(bin, &[]);
        let started = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let urls: Vec<String> = (0..DOWNLOADS).map(|i| origin.url(&format!("/dl/{i}"))).collect();
        let downloads: Vec<_> = urls
            .iter()
            .map(|url| {
                let (url, addr) = (url.clone(), proxy.addr());
                let (started, finished) = (Arc::clone(&started), Arc::clone(&finished));
                std::thread::spawn(move || {
                    let mut c = Client::connect(addr);
                    c.send(request("GET", &url, &[], b""));
                    let mut offset = 0u64;
                    let mut exact = true;
                    let (resp, total) = c.read_response_streaming("GET", |data| {
                        if offset == 0 {
                            started.fetch_add(1, Ordering::SeqCst);
                        }
                        exact &= matches_pattern(offset, data);
                        offset += data.len() as u64;
                    });
                    finished.fetch_add(1, Ordering::SeqCst);
                    assert_eq!(resp.status(), 200, "{url}");
                    assert_eq!(total, LEN, "{url}: body length");
                    assert!(exact, "{url}: the body is not the pattern");
                    // Shutting down: the proxy closes the connection after it.
                    assert!(c.closes_within(Duration::from_secs(5)), "{url} stayed open");
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while started.load(Ordering::SeqCst) < DOWNLOADS {
            assert!(Instant::now() < deadline, "the downloads did not all start");
            std::thread::sleep(Duration::from_millis(5));
        }

        let signalled = Instant::now();
        proxy.signal(Signal::TERM);
        let line = wait_stderr(&proxy, "shutting down", Duration::from_secs(5));
        assert_eq!(line, "shutting down: waiting up to 30s for 20 connections");
        assert_refused(&proxy);
        assert!(
            finished.load(Ordering::SeqCst) < DOWNLOADS,
            "the downloads were over before the refusal was checked"
        );
        for d in downloads {
            d.join().expect("a download failed");
        }
        let status = exit_within(&mut proxy, Duration::from_secs(10));
        assert!(status.success(), "exit status {status:?}");
        assert!(signalled.elapsed() < Duration::from_secs(15), "waited out the grace period");

        for url in &urls {
            let line = assert_log(&proxy, "GET", url, 200, None, None);
            assert!(line.bytes > LEN, "{line:?}");
        }
        let records = proxy
            .log_lines()
            .iter()
            .filter_map(|l| LogLine::parse(l))
            .filter(|l| l.target.contains("/dl/"))
            .count();
        assert_eq!(records, DOWNLOADS);
        // Its last word: the log holds every record, none was dropped.
        let line = wait_stderr(&proxy, "access log: 20 records", Duration::from_secs(5));
        assert_eq!(line, format!("access log: {DOWNLOADS} records written, 0 dropped"));
        assert!(
            !proxy.stderr_lines().iter().any(|l| l.contains("grace period over")),
            "{:?}",
            proxy.stderr_lines()
        );
    }

    /// Idle keep-alive connections are closed at once, and with nothing
    /// in flight the process exits well inside the grace period.
    fn sigterm_closes_idle_connections_and_exits_promptly(bin) {
        let origin = Origin::echo_target();
        let mut proxy = Proxy::start(bin, &[]);
        let mut clients: Vec<Client> = (0..3)
            .map(|i| {
                let mut c = proxy.connect();
                let url = origin.url(&format!("/idle/{i}"));
                assert_eq!(c.get(&url).status(), 200);
                c
            })
            .collect();
        let signalled = Instant::now();
        proxy.signal(Signal::TERM);
        for c in &mut clients {
            assert!(c.closes_within(Duration::from_secs(2)), "an idle connection stayed open");
        }
        drop(clients);
        let status = exit_within(&mut proxy, Duration::from_secs(5));
        assert!(status.success(), "exit status {status:?}");
        assert!(signalled.elapsed() < Duration::from_secs(5), "took {:?}", signalled.elapsed());
        assert_log(&proxy, "GET", &origin.url("/idle/2"), 200, None, None);
    }

    /// A request in flight at SIGINT is answered, with `Connection:
    /// close`; the request pipelined behind it is not started.
    fn sigint_finishes_the_request_in_flight_only(bin) {
        let origin = Origin::start(|r| {
            let reply = Reply::ok(format!("answer to {}", r.target));
            if r.target == "/slow" {
                reply.delay(Duration::from_millis(500))
            } else {
                reply
            }
        });
        let mut proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        let mut both = request("GET", &origin.url("/slow"), &[], b"");
        both.extend(request("GET", &origin.url("/next"), &[], b""));
        c.send(both);
        origin.wait_requests(1);
        proxy.signal(Signal::INT);
        let resp = c.read_response("GET");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text(), "answer to /slow");
        assert_eq!(resp.header("connection"), Some("close"), "{resp:#?}");
        c.assert_closed();
        drop(c);
        let status = exit_within(&mut proxy, Duration::from_secs(5));
        assert!(status.success(), "exit status {status:?}");
        assert_eq!(origin.requests().len(), 1, "the pipelined request was forwarded");
        assert_log(&proxy, "GET", &origin.url("/slow"), 200, None, None);
    }

    /// A connect still waiting for its SYN-ACK when the grace period ends
    /// does not hold the exit until `timeouts.connect`: the process exits
    /// 0 just after the grace period.
    fn the_end_of_the_grace_period_ends_a_hanging_connect(bin) {
        let Some(hole) = proxy_tests::needs_blackhole() else {
            return;
        };
        let mut proxy = Proxy::start_with_config(
            bin,
            r#"(timeouts: (shutdown_grace: "1s", connect: "30s"))"#,
            &[],
        );
        let mut c = proxy.connect();
        c.send(request("GET", &format!("http://{}/hangs", hole.addr), &[], b""));
        // Let the request reach its connect (and park there).
        std::thread::sleep(Duration::from_millis(300));
        let signalled = Instant::now();
        proxy.signal(Signal::TERM);
        exits_0_when_a_1s_grace_ends(&mut proxy, signalled);
        assert!(c.closes_within(Duration::from_secs(2)), "the client stayed connected");
        drop(hole);
    }

    /// When the grace period ends, a tunnel still open is ended (and
    /// logged with error=shutdown) and a download still running is cut
    /// off; the process exits 0 just after.
    fn the_end_of_the_grace_period_ends_tunnels_and_downloads(bin) {
        let echo = EchoServer::start();
        // Would take ~10 s: 160 pieces of 64 KiB, 60 ms apart.
        let len: u64 = 10 << 20;
        let origin = slow_origin(len, Duration::from_millis(60));
        let mut proxy =
            Proxy::start_with_config(bin, r#"(timeouts: (shutdown_grace: "1s"))"#, &[]);

        let target = echo.addr().to_string();
        let connect = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
        let mut tunnel = proxy.connect();
        tunnel.send(&connect);
        assert_eq!(tunnel.read_head().status, 200);
        tunnel.send("hello");
        assert_eq!(tunnel.read_exact_bytes(5), b"hello");

        let url = origin.url("/big");
        let mut download = proxy.connect();
        download.send(request("GET", &url, &[], b""));
        assert_eq!(download.read_head().status, 200);
        let first = download.read_exact_bytes(64 * 1024);
        assert!(matches_pattern(0, &first));

        let signalled = Instant::now();
        proxy.signal(Signal::TERM);
        let line = wait_stderr(&proxy, "shutting down", Duration::from_secs(5));
        assert_eq!(line, "shutting down: waiting up to 1s for 2 connections");
        // The tunnel still relays during the grace period.
        tunnel.send("again");
        assert_eq!(tunnel.read_exact_bytes(5), b"again");

        exits_0_when_a_1s_grace_ends(&mut proxy, signalled);
        wait_stderr(&proxy, "shutdown: grace period over, closing 2 connections", Duration::from_secs(1));
        assert!(tunnel.closes_within(Duration::from_secs(2)), "the tunnel stayed open");
        let rest = download.read_to_end();
        assert!(
            (first.len() + rest.len()) as u64 <= len - (1 << 20),
            "the download was not cut off: {} bytes",
            first.len() + rest.len()
        );
        let record = assert_log(&proxy, "CONNECT", &target, 200, None, Some("shutdown"));
        assert_eq!(record.client_sent, Some(connect.len() as u64 + 10), "{record:?}");
        // The download cut off mid-body is logged too, as cut off.
        assert_log(&proxy, "GET", &url, 200, None, Some("shutdown"));
    }

    /// A second signal during the grace period exits at once.
    fn a_second_signal_exits_at_once(bin) {
        let echo = EchoServer::start();
        let mut proxy = Proxy::start(bin, &[]);
        let target = echo.addr().to_string();
        let mut tunnel = proxy.connect();
        tunnel.send(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"));
        assert_eq!(tunnel.read_head().status, 200);

        proxy.signal(Signal::TERM);
        wait_stderr(&proxy, "shutting down", Duration::from_secs(5));
        assert_refused(&proxy);
        assert!(proxy.wait_exit(Duration::from_millis(200)).is_none(), "exited on the first signal");
        let second = Instant::now();
        proxy.signal(Signal::INT);
        let status = exit_within(&mut proxy, Duration::from_secs(3));
        assert!(second.elapsed() < Duration::from_secs(2), "took {:?}", second.elapsed());
        assert_eq!(status.code(), Some(130), "exit status {status:?}");
        wait_stderr(
            &proxy,
            &format!("{}: second signal, exiting now", bin.name()),
            Duration::from_secs(1),
        );
    }
}
