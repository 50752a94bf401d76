//! The proxy as a whole: listeners (IPv4, IPv6), isolation between
//! connections, abrupt clients, the access log switch, memory while
//! streaming a large download, and running out of descriptors.

use crate::{assert_log, request};
use proxy_tests::origin::{matches_pattern, read_request_head};
use proxy_tests::{
    cases, free_port, refused_addr, Client, EchoServer, Origin, Proxy, RawOrigin, Reply,
};
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Size of the large download: 1 GiB, as the issue asks, when the suite
/// is built optimised; 512 MiB in debug builds, where 1 GiB through
/// `proxy-smol` alone takes over 20 s (measured: debug proxy-std ~107 MiB/s,
/// proxy-smol ~48 MiB/s on the 2-core CI machine). `E2E_BIG_DOWNLOAD_MIB`
/// overrides either.
fn big_download_bytes() -> u64 {
    let default_mib = if cfg!(debug_assertions) { 512 } else { 1024 };
    let mib: u64 = std::env::var("E2E_BIG_DOWNLOAD_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_mib);
    mib << 20
}

cases! {
    /// `--listen` on an explicit port is honoured.
    fn listens_where_told(bin) {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let proxy = Proxy::start_listening(bin, &[&listen], &[]);
        assert_eq!(proxy.addr(), listen.parse::<SocketAddr>().unwrap());
        let origin = Origin::echo_target();
        assert_eq!(Client::connect(proxy.addr()).get(&origin.url("/x")).status(), 200);
    }

    /// `--listen [::1]:0` next to an IPv4 listener: both serve, to IPv4
    /// and IPv6 origins, and the log shows IPv6 addresses properly.
    fn listens_on_ipv4_and_ipv6(bin) {
        if !proxy_tests::needs_ipv6() {
            return;
        }
        let proxy = Proxy::start_listening(bin, &["127.0.0.1:0", "[::1]:0"], &[]);
        assert_eq!(proxy.addrs().len(), 2);
        let v6 = *proxy.addrs().iter().find(|a| a.is_ipv6()).expect("an IPv6 listener");
        let v4 = *proxy.addrs().iter().find(|a| a.is_ipv4()).expect("an IPv4 listener");
        let origin6 = Origin::start_on("::1".parse().unwrap(), |r| {
            Reply::ok(format!("{} {}", r.target, r.header("host").unwrap_or("")))
        });
        let origin4 = Origin::echo_target();
        let port6 = origin6.addr().port();
        let url6 = format!("http://[::1]:{port6}/six");

        let mut c = Client::connect(v6);
        let resp = c.get(&url6);
        assert_eq!(resp.text(), format!("/six [::1]:{port6}"));
        assert_eq!(c.get(&origin4.url("/four")).text(), "/four");
        let line = assert_log(&proxy, "GET", &url6, 200, Some(&format!("[::1]:{port6}")), None);
        assert!(line.client.starts_with("[::1]:"), "{line:?}");

        let mut c = Client::connect(v4);
        assert_eq!(c.get(&format!("http://[::1]:{port6}/again")).status(), 200);

        // CONNECT to an IPv6 literal.
        let echo = RawOrigin::start_on("::1".parse().unwrap(), |mut s, _| {
            let mut buf = [0u8; 5];
            if std::io::Read::read_exact(&mut s, &mut buf).is_ok() {
                let _ = s.write_all(&buf);
            }
        });
        let target = format!("[::1]:{}", echo.addr().port());
        let mut c = Client::connect(v6);
        c.send(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"));
        assert_eq!(c.read_head().status, 200);
        c.send("hello");
        assert_eq!(c.read_exact_bytes(5), b"hello");
    }

    /// `--quiet` prints no access-log lines.
    fn quiet_suppresses_the_access_log(bin) {
        let origin = Origin::echo_target();
        let proxy = Proxy::start(bin, &["--quiet"]);
        let mut c = proxy.connect();
        assert_eq!(c.get(&origin.url("/hush")).status(), 200);
        let refused = refused_addr();
        assert_eq!(c.get(&format!("http://{refused}/refused")).status(), 502);
        std::thread::sleep(Duration::from_millis(300));
        assert!(proxy.log_lines().is_empty(), "{:?}", proxy.log_lines());
    }

    /// Errors, bad requests and aborted clients on some connections do not
    /// disturb a slow download on another, nor later requests.
    fn failures_do_not_affect_other_connections(bin) {
        let drip = RawOrigin::start(|mut s, _| {
            if read_request_head(&mut s).is_some() {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
                for i in 0..12 {
                    std::thread::sleep(Duration::from_millis(100));
                    let _ = s.write_all(format!("5\r\npart{}\r\n", i % 10).as_bytes());
                }
                let _ = s.write_all(b"0\r\n\r\n");
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        let origin = Origin::echo_target();
        let silent = RawOrigin::start(|mut s, _| {
            let _ = read_request_head(&mut s);
            std::thread::sleep(Duration::from_secs(3));
        });
        let proxy = Proxy::start_with_config(
            bin,
            "(timeouts: (response: \"300ms\", head_read: \"300ms\"))",
            &["--resolve", "gone.test="],
        );
        let mut slow = proxy.connect();
        slow.send(request("GET", &drip.url("/drip"), &[], b""));

        // Meanwhile, everything that can go wrong, on other connections.
        let mut bad = proxy.connect();
        bad.send("GET http://x/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(bad.read_response("GET").status(), 400);
        let mut garbage = proxy.connect();
        garbage.send([0u8, 255, 13, 10, 13, 10]);
        assert_eq!(garbage.read_response("GET").status(), 400);
        let mut dns = proxy.connect();
        assert_eq!(dns.get("http://gone.test/").status(), 502);
        let mut refused = proxy.connect();
        let nobody = refused_addr();
        assert_eq!(refused.get(&format!("http://{nobody}/")).status(), 502);
        let mut timeout = proxy.connect();
        assert_eq!(timeout.get(&silent.url("/never")).status(), 504);
        let mut loris = proxy.connect();
        loris.send("GET http://127.0.0.1:9/ HTTP/1.1\r\nX-Half");
        {
            // Vanishes mid-head.
            let mut gone = proxy.connect();
            gone.send("GET http://127.0.0.1:9/ HTTP/1.1\r\nHo");
        }
        {
            // Vanishes mid-body.
            let mut gone = proxy.connect();
            gone.send(format!("POST {} HTTP/1.1\r\nHost: {}\r\nContent-Length: 1000\r\n\r\nabc", origin.url("/p"), origin.authority()));
        }
        let mut fine = proxy.connect();
        assert_eq!(fine.get(&origin.url("/fine")).text(), "/fine");

        let resp = slow.read_response("GET");
        assert_eq!(resp.status(), 200);
        let want: String = (0..12).map(|i| format!("part{}", i % 10)).collect();
        assert_eq!(resp.text(), want);
        assert_eq!(loris.read_response("GET").status(), 408);
        assert_eq!(proxy.connect().get(&origin.url("/after")).text(), "/after");
        assert_log(&proxy, "GET", &drip.url("/drip"), 200, None, None);
    }

    /// Clients that vanish at every stage leave the proxy healthy, and
    /// their exchanges are still logged.
    fn abrupt_clients_leave_the_proxy_healthy(bin) {
        let origin = Origin::start(|r| {
            if r.target == "/big" {
                Reply::status(200).pattern_body(20 << 20)
            } else {
                Reply::ok("ok")
            }
        });
        let echo = proxy_tests::EchoServer::start();
        let mut proxy = Proxy::start(bin, &[]);
        for _ in 0..3 {
            // Mid-download.
            let mut c = proxy.connect();
            c.send(request("GET", &origin.url("/big"), &[], b""));
            let head = c.read_head();
            assert_eq!(head.status, 200);
            let _ = c.read_exact_bytes(1000);
            drop(c);
            // Mid-tunnel.
            let mut c = proxy.connect();
            let target = echo.addr().to_string();
            c.send(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\nsome bytes"));
            assert_eq!(c.read_head().status, 200);
            drop(c);
            // Before the response.
            let mut c = proxy.connect();
            c.send(request("GET", &origin.url("/ok"), &[], b""));
            drop(c);
        }
        let started = Instant::now();
        let mut c = proxy.connect();
        assert_eq!(c.get(&origin.url("/ok")).text(), "ok");
        assert!(started.elapsed() < Duration::from_secs(2));
        proxy.assert_alive();
        // The aborted downloads end in the log, marked as errors.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let n = proxy.records("GET", &origin.url("/big")).len();
            if n == 3 {
                break;
            }
            assert!(Instant::now() < deadline, "{n} of 3 aborted downloads logged: {:#?}", proxy.log_lines());
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(proxy.records("GET", &origin.url("/big")).iter().all(|r| r.error.is_some()));
    }

    /// A large download streams through with bounded memory: the proxy's
    /// peak RSS grows by less than 20 MiB over what a 1 KiB download
    /// needed, including while the client stops reading for a second (the
    /// proxy must push back on the origin, not buffer).
    fn large_download_uses_bounded_memory(bin) {
        let total = big_download_bytes();
        let origin = Origin::start(move |r| {
            if r.target == "/small" {
                Reply::status(200).pattern_body(1024)
            } else {
                Reply::status(200).pattern_body(total)
            }
        });
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        let small = c.get(&origin.url("/small"));
        assert_eq!(small.body.len(), 1024);
        let baseline = proxy.peak_rss();

        let started = Instant::now();
        c.send(request("GET", &origin.url("/big"), &[], b""));
        let mut offset = 0u64;
        let mut paused = false;
        let (resp, n) = c.read_response_streaming("GET", |data| {
            assert!(matches_pattern(offset, data), "corrupted at offset {offset}");
            offset += data.len() as u64;
            if !paused && offset >= total / 4 {
                paused = true;
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        let took = started.elapsed();
        assert_eq!(resp.status(), 200);
        assert_eq!(n, total);
        let peak = proxy.peak_rss();
        eprintln!(
            "{}: {} MiB in {took:?} ({:.0} MiB/s); VmHWM {} KiB after 1 KiB, {} KiB after",
            bin.name(),
            total >> 20,
            (total >> 20) as f64 / took.as_secs_f64(),
            baseline >> 10,
            peak >> 10
        );
        assert!(
            peak.saturating_sub(baseline) < 20 << 20,
            "peak RSS grew by {} KiB streaming {} MiB",
            (peak - baseline) >> 10,
            total >> 20
        );
        assert_log(&proxy, "GET", &origin.url("/big"), 200, None, None);
    }

    /// A large upload streams through with bounded memory too, including
    /// while the origin stops reading for a second.
    fn large_upload_uses_bounded_memory(bin) {
        let total = big_download_bytes() / 2;
        let origin = RawOrigin::start(|mut s, _| {
            let Some(head) = read_request_head(&mut s) else { return };
            let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let len: u64 = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let mut buf = vec![0u8; 64 * 1024];
            let (mut got, mut intact, mut paused) = (0u64, true, false);
            while got < len {
                let want = buf.len().min((len - got) as usize);
                let n = match std::io::Read::read(&mut s, &mut buf[..want]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                intact &= matches_pattern(got, &buf[..n]);
                got += n as u64;
                if !paused && got >= len / 4 && len > 1 << 20 {
                    paused = true;
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            let body = format!("{got} {intact}");
            let _ = s.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        });
        let proxy = Proxy::start(bin, &[]);
        let upload = |c: &mut Client, path: &str, len: u64| {
            let url = origin.url(path);
            c.send(format!(
                "POST {url} HTTP/1.1\r\nHost: {}\r\nContent-Length: {len}\r\n\r\n",
                origin.addr()
            ));
            let pattern = proxy_tests::origin::pattern();
            let mut offset = 0u64;
            while offset < len {
                let start = (offset % proxy_tests::origin::PATTERN_LEN as u64) as usize;
                let n = ((len - offset) as usize).min(32 * 1024);
                c.send(&pattern[start..start + n]);
                offset += n as u64;
            }
            c.read_response("POST").text()
        };
        let mut c = proxy.connect();
        assert_eq!(upload(&mut c, "/small", 1024), "1024 true");
        let baseline = proxy.peak_rss();
        let started = Instant::now();
        let mut c = proxy.connect();
        assert_eq!(upload(&mut c, "/big", total), format!("{total} true"));
        let took = started.elapsed();
        let peak = proxy.peak_rss();
        eprintln!(
            "{}: uploaded {} MiB in {took:?}; VmHWM {} KiB after 1 KiB, {} KiB after",
            bin.name(),
            total >> 20,
            baseline >> 10,
            peak >> 10
        );
        assert!(
            peak.saturating_sub(baseline) < 20 << 20,
            "peak RSS grew by {} KiB streaming {} MiB up",
            (peak - baseline) >> 10,
            total >> 20
        );
    }

    /// Idle connections hold no thread: keep-alive clients between
    /// requests and quiet tunnels, several times more than the threads a
    /// proxy may start on this machine (proxy-smol one executor per core,
    /// both a password-hashing pool of half the cores, and a few more),
    /// leave the proxy with no more than that (proxy-std parks idle
    /// connections; proxy-smol never had a thread per connection), and
    /// every one carries on when it speaks again.
    fn idle_connections_hold_no_thread(bin) {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let allowed = 16 + 2 * cores;
        let origin = Origin::echo_target();
        let echo = EchoServer::start();
        let proxy = Proxy::start(bin, &[]);
        let mut clients: Vec<Client> = (0..(3 * allowed).max(150))
            .map(|i| {
                let mut c = proxy.connect();
                assert_eq!(c.get(&origin.url(&format!("/{i}"))).status(), 200);
                c
            })
            .collect();
        let target = echo.addr().to_string();
        let mut tunnels: Vec<Client> = (0..50)
            .map(|_| {
                let mut c = proxy.connect();
                c.send(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"));
                assert_eq!(c.read_head().status, 200);
                c.send("hi");
                assert_eq!(c.read_exact_bytes(2), b"hi");
                c
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        let threads = loop {
            let n = thread_count(proxy.pid());
            if n <= allowed || Instant::now() > deadline {
                break n;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let idle = clients.len() + tunnels.len();
        assert!(
            threads <= allowed,
            "{threads} threads for {idle} idle connections ({cores} cores)"
        );
        for (i, c) in clients.iter_mut().enumerate() {
            let path = format!("/again{i}");
            assert_eq!(c.get(&origin.url(&path)).text(), path);
        }
        for c in &mut tunnels {
            c.send("again");
            assert_eq!(c.read_exact_bytes(5), b"again");
        }
    }

    /// Out of descriptors (the limit lowered under a running proxy), the
    /// proxy keeps serving the connections it holds (a keep-alive client
    /// whose upstream connection is pooled), reports the failed accepts
    /// once rather than twenty times a second, does not spin, and serves
    /// new clients again as soon as descriptors free up.
    fn out_of_descriptors_it_serves_what_it_holds_and_recovers(bin) {
        use rustix::process::{prlimit, Pid, Resource, Rlimit};
        let origin = Origin::echo_target();
        let proxy = Proxy::start(bin, &[]);
        let pid = proxy.pid();
        let mut held = proxy.connect();
        assert_eq!(held.get(&origin.url("/before")).status(), 200);

        let open = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count() as u64;
        let limit = Rlimit { current: Some(open + 4), maximum: Some(open + 4) };
        prlimit(Pid::from_raw(pid as i32), Resource::Nofile, limit).expect("prlimit (needs root or CAP_SYS_RESOURCE)");
        // More clients than descriptors left; each sends a little of a
        // head, so the kernel hands it over at once.
        let mut hoard = Vec::new();
        for _ in 0..12 {
            let mut c = proxy.connect();
            c.send("GET http://hoard.test/ HTTP/1.1\r\n");
            hoard.push(c);
        }
        let said = |proxy: &Proxy| {
            proxy.stderr_lines().into_iter().filter(|l| l.contains("cannot accept connections: Too many open files")).count()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while said(&proxy) == 0 {
            assert!(Instant::now() < deadline, "no report of the failed accepts: {:#?}", proxy.stderr_lines());
            std::thread::sleep(Duration::from_millis(20));
        }
        // Not spinning while it lasts: well under a tenth of a CPU.
        let cpu = || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            let fields: Vec<u64> = stat[stat.rfind(')').unwrap() + 2..]
                .split_whitespace()
                .map(|f| f.parse().unwrap_or(0))
                .collect();
            fields[11] + fields[12]
        };
        let before = cpu();
        std::thread::sleep(Duration::from_secs(1));
        let ticks = cpu() - before;
        assert!(ticks < 10, "{ticks} clock ticks of CPU in 1 s at the limit");
        assert_eq!(said(&proxy), 1, "reported once: {:#?}", proxy.stderr_lines());

        // What it holds still works.
        assert_eq!(held.get(&origin.url("/during")).status(), 200);

        // Descriptors free up: the waiting clients are taken, new ones served.
        drop(hoard);
        let mut fresh = proxy.connect();
        assert_eq!(fresh.get(&origin.url("/after")).status(), 200);
        assert_eq!(held.get(&origin.url("/still")).status(), 200);
    }
}

/// The number of threads in process `pid`.
fn thread_count(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a Threads line")
}
