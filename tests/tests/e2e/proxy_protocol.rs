//! Behind a load balancer: the PROXY protocol header names the client,
//! and that client is what the ACL and the log see. The tests play the
//! balancer on loopback (a trusted sender by default).

use crate::lifecycle::{exit_within, slow_origin, wait_stderr};
use crate::request;
use proxy_tests::origin::matches_pattern;
use proxy_tests::{cases, free_port, Client, LogLine, Origin, Proxy, TempFile};
use rustix::process::Signal;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Debian's HAProxy in TCP mode in front of `backends`, sending a PROXY
/// v2 header on every connection (`send-proxy-v2`, with the connection's
/// unique id `lb-N`), round robin; a connection a backend refuses goes to
/// the next (`option redispatch`). Stopped on drop.
struct Haproxy {
    child: Child,
    addr: SocketAddr,
    _config: TempFile,
}

impl Haproxy {
    fn start(backends: &[SocketAddr]) -> Haproxy {
        let port = free_port();
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, b)| format!("  server p{i} {b} send-proxy-v2 proxy-v2-options unique-id\n"))
            .collect();
        let config = TempFile::new(
            "haproxy.cfg",
            &format!(
                "global\n  maxconn 200\n\
                 defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
                 frontend balancer\n  bind 127.0.0.1:{port}\n  unique-id-format lb-%rt\n  default_backend proxies\n\
                 backend proxies\n  balance roundrobin\n  retries 3\n  option redispatch 1\n{servers}"
            ),
        );
        let child = Command::new("haproxy")
            .args(["-db", "-f", config.name()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy is installed (./test installs Debian's haproxy)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "haproxy did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Haproxy {
            child,
            addr,
            _config: config,
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A v2 header naming `ip:port` (IPv4) as the client.
fn v2_header(ip: [u8; 4], port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&ip);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&3128u16.to_be_bytes());
    h
}

/// Clients the proxy serves: 203.0.113.0/24 only, not the balancer.
const BEHIND: &str = "(policy: (clients: [\"203.0.113.0/24\"]))";

cases! {
    /// v1 and v2 headers name the client: it is logged, and it is what
    /// the client ACL judges (the balancer itself is not allowed).
    fn the_header_names_the_client_for_acl_and_log(bin) {
        let origin = Origin::echo_target();
        let proxy = Proxy::start_with_config(bin, BEHIND, &["--proxy-protocol"]);
        let url = origin.url("/behind");
        let mut c = proxy.connect();
        let port = proxy.addr().port();
        c.send(format!("PROXY TCP4 203.0.113.7 127.0.0.1 51234 {port}\r\n"));
        c.send(request("GET", &url, &[], b""));
        assert_eq!(c.read_response("GET").status(), 200);
        // The connection stays the client's for its next request.
        c.send(request("GET", &url, &[], b""));
        assert_eq!(c.read_response("GET").status(), 200);
        let line = proxy.wait_for_record("GET", &url);
        assert_eq!(line.client, "203.0.113.7:51234");

        let mut c = proxy.connect();
        let mut bytes = v2_header([203, 0, 113, 9], 4000);
        bytes.extend_from_slice(&request("GET", &origin.url("/v2"), &[], b""));
        c.send(bytes);
        assert_eq!(c.read_response("GET").status(), 200);
        assert_eq!(proxy.wait_for_record("GET", &origin.url("/v2")).client, "203.0.113.9:4000");

        // A client outside the ACL is refused as itself.
        let mut c = proxy.connect();
        c.send("PROXY TCP4 198.51.100.1 127.0.0.1 1000 3128\r\n");
        c.send(request("GET", &origin.url("/outside"), &[], b""));
        assert_eq!(c.read_response("GET").status(), 403);
        let line = proxy.wait_for_record("GET", &origin.url("/outside"));
        assert_eq!(line.client, "198.51.100.1:1000");
        assert_eq!(origin.requests().len(), 3);
    }

    /// No header, a broken one, one cut short, or one from a sender not
    /// trusted: closed without an answer and logged; the other clients
    /// carry on.
    fn a_missing_or_bad_header_is_refused_and_logged(bin) {
        let origin = Origin::echo_target();
        let proxy = Proxy::start_with_config(
            bin,
            "(policy: (clients: [\"203.0.113.0/24\"]), proxy_protocol: (timeout: \"500ms\"))",
            &["--proxy-protocol"],
        );
        let mut good = proxy.connect();
        good.send("PROXY TCP4 203.0.113.7 127.0.0.1 51234 3128\r\n");
        for (bytes, why) in [
            (request("GET", &origin.url("/plain"), &[], b""), "no PROXY protocol header"),
            (b"PROXY TCP4 300.1.1.1 127.0.0.1 1 2\r\n".to_vec(), "PROXY v1 address or port is malformed"),
            (b"PROXY TCP4 203.0".to_vec(), "no whole PROXY header in time"),
        ] {
            let mut c = proxy.connect();
            c.send(bytes);
            assert!(c.closes_within(Duration::from_secs(3)), "{why}: still open");
            assert!(c.read_to_end().is_empty(), "{why}: answered");
            proxy.wait_for_log(|l| l.contains(&format!("rule=\"PROXY protocol: {why}\"")), proxy_tests::IO_TIMEOUT);
        }
        // The client with a good header was not disturbed.
        good.send(request("GET", &origin.url("/fine"), &[], b""));
        assert_eq!(good.read_response("GET").status(), 200);

        let untrusted = Proxy::start_with_config(bin, "(proxy_protocol: (trusted: [\"10.0.0.0/8\"]))", &["--proxy-protocol"]);
        let mut c = untrusted.connect();
        c.send("PROXY TCP4 203.0.113.7 127.0.0.1 51234 3128\r\n");
        assert!(c.closes_within(Duration::from_secs(3)));
        untrusted.wait_for_log(|l| l.contains("rule=\"PROXY protocol: sender not in proxy_protocol.trusted\""), proxy_tests::IO_TIMEOUT);
    }

    /// Through Debian's HAProxy (TCP mode, `send-proxy-v2`, round robin
    /// over two instances): each instance logs the client's own address
    /// and port, judges the client ACL by the client (127.0.0.2 allowed,
    /// 127.0.0.3 refused, the balancer itself at 127.0.0.1 is not in the
    /// list), and rate-limits per client across its connections.
    fn behind_haproxy_each_instance_sees_the_client(bin) {
        let origin = Origin::echo_target();
        let config = "(policy: (clients: [\"127.0.0.2/32\", \"127.0.0.3/32\"], \
                      rate: Some((requests: 4, per: \"1m\"))))";
        let layer = TempFile::new("behind.ron", proxy_tests::proxy::LOOPBACK_ORIGINS);
        let deny3 = TempFile::new("deny3.ron", "(policy: (clients: [\"127.0.0.2/32\"]))");
        let a = Proxy::start_with_config(bin, config, &["--proxy-protocol", "--config", layer.name(), "--config", deny3.name()]);
        let b = Proxy::start_with_config(bin, config, &["--proxy-protocol", "--config", layer.name(), "--config", deny3.name()]);
        let lb = Haproxy::start(&[a.addr(), b.addr()]);
        let two = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let three = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

        // Four connections from 127.0.0.2: two land on each instance.
        let mut ports = Vec::new();
        for i in 0..4 {
            let mut c = Client::connect_from(two, lb.addr);
            ports.push(c.local_addr().port());
            assert_eq!(c.get(&origin.url(&format!("/lb/{i}"))).status(), 200);
        }
        // The record of `path`, from whichever instance served it, and
        // which one that was.
        let record_of = |path: &str| {
            let url = origin.url(path);
            let deadline = Instant::now() + proxy_tests::IO_TIMEOUT;
            loop {
                for (i, p) in [&a, &b].iter().enumerate() {
                    if let Some(l) = p.log_lines().into_iter().find(|l| l.contains(&url)) {
                        return (i, l);
                    }
                }
                assert!(Instant::now() < deadline, "no instance logged {url}");
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        let mut served = [0, 0];
        for (i, port) in ports.iter().enumerate() {
            let (by, line) = record_of(&format!("/lb/{i}"));
            served[by] += 1;
            assert!(line.contains(&format!(" 127.0.0.2:{port} ")), "request {i}: {line}");
            // The balancer's own address and its id for the connection.
            let record = LogLine::parse(&line).unwrap();
            assert!(record.balancer.as_deref().is_some_and(|b| b.starts_with("127.0.0.1:")), "{line}");
            assert!(record.balancer_id.as_deref().is_some_and(|id| id.starts_with("lb-")), "{line}");
        }
        assert!(served[0] > 0 && served[1] > 0, "balanced over both: {served:?}");

        // 127.0.0.3 is refused as itself, by whichever instance.
        let mut c = Client::connect_from(three, lb.addr);
        let port = c.local_addr().port();
        assert_eq!(c.get(&origin.url("/lb/three")).status(), 403);
        let (_, line) = record_of("/lb/three");
        assert!(line.contains(&format!(" 127.0.0.3:{port} ")), "{line}");

        // The rate limit counts 127.0.0.2's requests on each instance (4
        // a minute each, 8 across the two, 4 used): of 6 more, on new
        // connections, at least the 2 over the pair's 8 are refused, by
        // the instance whose count ran out.
        let mut statuses = Vec::new();
        for i in 0..6 {
            let mut c = Client::connect_from(two, lb.addr);
            statuses.push(c.get(&origin.url(&format!("/lb/more/{i}"))).status());
        }
        let refused = statuses.iter().filter(|s| **s == 429).count();
        assert!(refused >= 2, "{statuses:?}");
        assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "{statuses:?}");
        assert_eq!(origin.requests().len(), 4 + 6 - refused, "the refused ones never reached it");
    }

    /// One listener for the balancer, one for clients that connect
    /// directly: only the first requires the header (and refuses a
    /// connection without it), the second reads HTTP from the first byte
    /// (a PROXY line there is a bad request). Origins are told about the
    /// client as configured, the PROXY header's client behind the
    /// balancer; the record names the balancer and its id.
    fn only_the_listeners_named_require_the_header(bin) {
        let origin = Origin::echo_target();
        let (direct, balanced) = (
            format!("127.0.0.1:{}", free_port()),
            format!("127.0.0.1:{}", free_port()),
        );
        let layer = TempFile::new(
            "listeners.ron",
            &format!(
                "(policy: (clients: [\"127.0.0.0/8\", \"203.0.113.0/24\"]), \
                 proxy_protocol: (listeners: [\"{balanced}\"]), \
                 forwarded_headers: (x_forwarded_for: Append, forwarded: Append))"
            ),
        );
        let proxy = Proxy::start_listening(bin, &[&direct, &balanced], &["--config", layer.name()]);
        let (direct, balanced): (SocketAddr, SocketAddr) = (direct.parse().unwrap(), balanced.parse().unwrap());
        assert!(
            proxy.stderr_lines().contains(&format!("listening on {balanced} (PROXY protocol required from 127.0.0.0/8, ::1/128)")),
            "{:?}",
            proxy.stderr_lines()
        );

        // Through the balancer's port: a v2 header with a unique id.
        let mut c = Client::connect(balanced);
        let mut bytes = v2_header([203, 0, 113, 9], 4000);
        bytes[15] += 7;
        bytes.extend_from_slice(&[0x05, 0, 4, b'i', b'd', b'-', b'7']);
        bytes.extend_from_slice(&request("GET", &origin.url("/balanced"), &[("X-Forwarded-For", "10.0.0.1")], b""));
        c.send(bytes);
        assert_eq!(c.read_response("GET").status(), 200);
        let seen = &origin.wait_requests(1)[0];
        assert_eq!(seen.header("x-forwarded-for"), Some("10.0.0.1, 203.0.113.9"));
        assert_eq!(seen.header("forwarded"), Some("for=203.0.113.9;proto=http"));
        let line = proxy.wait_for_record("GET", &origin.url("/balanced"));
        assert_eq!(line.client, "203.0.113.9:4000");
        assert_eq!(line.balancer, Some(c.local_addr().to_string()));
        assert_eq!(line.balancer_id.as_deref(), Some("id-7"));

        // Without the header there: closed unanswered, logged.
        let mut plain = Client::connect(balanced);
        plain.send(request("GET", &origin.url("/no-header"), &[], b""));
        assert!(plain.closes_within(Duration::from_secs(3)));
        assert!(plain.read_to_end().is_empty());
        proxy.wait_for_log(|l| l.contains("rule=\"PROXY protocol: no PROXY protocol header\""), proxy_tests::IO_TIMEOUT);

        // The direct port: HTTP, the peer is the client, no balancer.
        let mut d = Client::connect(direct);
        d.send(request("GET", &origin.url("/direct"), &[], b""));
        assert_eq!(d.read_response("GET").status(), 200);
        let seen = &origin.wait_requests(2)[1];
        assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
        let line = proxy.wait_for_record("GET", &origin.url("/direct"));
        assert_eq!(line.client, d.local_addr().to_string());
        assert_eq!(line.balancer, None);
        // A PROXY line there is not trusted as one: a bad request.
        let mut spoof = Client::connect(direct);
        let mut bytes = b"PROXY TCP4 203.0.113.7 127.0.0.1 51234 3128\r\n".to_vec();
        bytes.extend_from_slice(&request("GET", &origin.url("/spoofed"), &[], b""));
        spoof.send(bytes);
        assert_eq!(spoof.read_response("GET").status(), 400);
        assert_eq!(origin.requests().len(), 2, "neither refused request reached the origin");
    }

    /// SIGTERM to one of two instances behind HAProxy while 50 downloads
    /// run through the pair: every download finishes byte-exact, the
    /// instance exits 0 once its share is done, and the connections
    /// that come after all go to the other instance.
    fn draining_one_instance_behind_haproxy_loses_nothing(bin) {
        const DOWNLOADS: usize = 50;
        // ~1.5 s each: 24 pieces of 64 KiB, 60 ms apart.
        const LEN: u64 = 24 * 64 * 1024;
        let origin = slow_origin(LEN, Duration::from_millis(60));
        let mut a = Proxy::start(bin, &["--proxy-protocol"]);
        let b = Proxy::start(bin, &["--proxy-protocol"]);
        let lb = Haproxy::start(&[a.addr(), b.addr()]);
        let started = Arc::new(AtomicUsize::new(0));
        let urls: Vec<String> = (0..DOWNLOADS).map(|i| origin.url(&format!("/dl/{i}"))).collect();
        let downloads: Vec<_> = urls
            .iter()
            .map(|url| {
                let (url, lb, started) = (url.clone(), lb.addr, Arc::clone(&started));
                std::thread::spawn(move || {
                    let mut c = Client::connect(lb);
                    c.send(request("GET", &url, &[], b""));
                    let (mut offset, mut exact) = (0u64, true);
                    let (resp, total) = c.read_response_streaming("GET", |data| {
                        if offset == 0 {
                            started.fetch_add(1, Ordering::SeqCst);
                        }
                        exact &= matches_pattern(offset, data);
                        offset += data.len() as u64;
                    });
                    assert_eq!(resp.status(), 200, "{url}");
                    assert_eq!(total, LEN, "{url}: body length");
                    assert!(exact, "{url}: the body is not the pattern");
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while started.load(Ordering::SeqCst) < DOWNLOADS {
            assert!(Instant::now() < deadline, "the downloads did not all start");
            std::thread::sleep(Duration::from_millis(5));
        }

        a.signal(Signal::TERM);
        let line = wait_stderr(&a, "shutting down", Duration::from_secs(5));
        let draining: usize = line
            .split_whitespace()
            .nth(7)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        assert!(draining > 0 && draining < DOWNLOADS, "{line}");
        // New connections meanwhile: HAProxy finds the first instance
        // closed and every one is served by the second.
        for i in 0..10 {
            let mut c = Client::connect(lb.addr);
            assert_eq!(c.get(&origin.url(&format!("/after/{i}"))).status(), 200);
        }
        for d in downloads {
            d.join().expect("a download failed");
        }
        let status = exit_within(&mut a, Duration::from_secs(10));
        assert!(status.success(), "exit status {status:?}");

        let count = |p: &Proxy, part: &str| {
            p.log_lines()
                .iter()
                .filter_map(|l| LogLine::parse(l))
                .filter(|l| l.target.contains(part) && l.status == 200)
                .count()
        };
        assert_eq!(count(&a, "/dl/"), draining, "the draining instance logged its share");
        assert_eq!(count(&a, "/dl/") + count(&b, "/dl/"), DOWNLOADS);
        assert_eq!(count(&a, "/after/"), 0);
        assert_eq!(b.wait_for_records("GET", &origin.url("/after/9"), 1).len(), 1);
        assert_eq!(count(&b, "/after/"), 10);
    }
}
