//! Persistent connections: several requests per client connection, to one
//! or several origins, pipelining, and the upstream pool.

use crate::{assert_log, request};
use proxy_tests::origin::read_request_head;
use proxy_tests::{cases, Origin, Proxy, RawOrigin, Reply};
use std::io::Write;
use std::time::{Duration, Instant};

cases! {
    /// One client connection carries requests to the same and to
    /// different origins, interleaved.
    fn keep_alive_to_same_and_different_origins(bin) {
        let a = Origin::start(|r| Reply::ok(format!("A{}", r.target)));
        let b = Origin::start(|r| Reply::ok(format!("B{}", r.target)).chunked(2, &[]));
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        let plan = [(&a, "A", "/1"), (&b, "B", "/2"), (&a, "A", "/3"), (&b, "B", "/4"), (&a, "A", "/5")];
        for (origin, tag, path) in plan {
            let resp = c.get(&origin.url(path));
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.text(), format!("{tag}{path}"));
            assert!(!matches!(resp.header("connection"), Some(v) if v.eq_ignore_ascii_case("close")));
        }
        assert_eq!(a.requests().len(), 3);
        assert_eq!(b.requests().len(), 2);
        for (origin, _, path) in plan {
            assert_log(&proxy, "GET", &origin.url(path), 200, Some(&origin.authority()), None);
        }
        // Every line names the same client connection.
        let client = c.local_addr().to_string();
        assert_eq!(
            proxy.log_lines().iter().filter(|l| l.contains(&format!(" {client} GET "))).count(),
            5
        );
        c.assert_open_for(Duration::from_millis(100));
    }

    /// Pipelined requests, sent in one write, are answered in order even
    /// when the first is the slowest, and a body in the middle does not
    /// confuse the framing.
    fn pipelined_requests_answered_in_order(bin) {
        let a = Origin::start(|r| {
            let reply = Reply::ok(format!("{} {} {}", r.method, r.target, r.text()));
            if r.target == "/slow" {
                reply.delay(Duration::from_millis(300))
            } else {
                reply
            }
        });
        let b = Origin::start(|r| Reply::ok(format!("b{}", r.target)));
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        let mut batch = Vec::new();
        batch.extend(request("GET", &a.url("/slow"), &[], b""));
        batch.extend(request("POST", &b.url("/fast"), &[], b"ignored-body"));
        batch.extend(request("HEAD", &a.url("/head"), &[], b""));
        batch.extend(request("POST", &a.url("/post"), &[], b"data"));
        batch.extend(request("GET", &b.url("/last"), &[], b""));
        c.send(&batch);
        assert_eq!(c.read_response("GET").text(), "GET /slow ");
        assert_eq!(c.read_response("POST").text(), "b/fast");
        let head = c.read_response("HEAD");
        assert_eq!(head.status(), 200);
        assert!(head.body.is_empty());
        assert_eq!(c.read_response("POST").text(), "POST /post data");
        assert_eq!(c.read_response("GET").text(), "b/last");
        assert_eq!(b.wait_requests(2)[0].body, b"ignored-body");
    }

    /// An error answered in the middle of a pipeline does not disturb the
    /// requests around it.
    fn pipelined_error_between_successes(bin) {
        let origin = Origin::echo_target();
        let refused = proxy_tests::refused_addr();
        let proxy = Proxy::start(bin, &["--resolve", "gone.test="]);
        let mut c = proxy.connect();
        let mut batch = Vec::new();
        batch.extend(request("GET", &origin.url("/before"), &[], b""));
        batch.extend(request("GET", "http://gone.test/missing", &[], b""));
        batch.extend(request("GET", &format!("http://{refused}/refused"), &[], b""));
        batch.extend(request("GET", &origin.url("/after"), &[], b""));
        c.send(&batch);
        assert_eq!(c.read_response("GET").text(), "/before");
        assert_eq!(c.read_response("GET").status(), 502);
        assert_eq!(c.read_response("GET").status(), 502);
        assert_eq!(c.read_response("GET").text(), "/after");
        c.assert_open_for(Duration::from_millis(100));
    }

    /// Sequential requests to one origin reuse one upstream connection,
    /// on one client connection and across client connections.
    fn upstream_connection_is_reused(bin) {
        let origin = Origin::echo_target();
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        for i in 0..5 {
            assert_eq!(c.get(&origin.url(&format!("/same/{i}"))).status(), 200);
        }
        assert_eq!(origin.connections(), 1, "one client connection, sequential requests");
        drop(c);
        let mut previous = origin.url("/same/4");
        for i in 0..3 {
            // Let the previous exchange finish and put its upstream back
            // in the pool (the log line comes just before that).
            proxy.wait_for_record("GET", &previous);
            std::thread::sleep(Duration::from_millis(100));
            let url = origin.url(&format!("/other/{i}"));
            let mut c = proxy.connect();
            assert_eq!(c.get(&url).status(), 200);
            previous = url;
        }
        assert_eq!(origin.connections(), 1, "new client connections, sequential requests");
        let conns: Vec<usize> = origin.requests().iter().map(|r| r.conn).collect();
        assert_eq!(conns, vec![0; 8]);
    }

    /// Upstream connections are not reused when the response framing does
    /// not allow it (close-delimited) or the origin says close; the client
    /// connection goes on regardless when it can.
    fn upstream_not_reused_when_framing_forbids(bin) {
        let origin = Origin::start(|r| match r.target.as_str() {
            "/close-header" => Reply::ok("bye").close(),
            _ => Reply::ok("plain"),
        });
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        assert_eq!(c.get(&origin.url("/a")).text(), "plain");
        let resp = c.get(&origin.url("/close-header"));
        assert_eq!(resp.text(), "bye");
        // The origin's close concerns the upstream connection only.
        assert_eq!(c.get(&origin.url("/b")).text(), "plain");
        assert_eq!(origin.connections(), 2);
        let conns: Vec<usize> = origin.requests().iter().map(|r| r.conn).collect();
        assert_eq!(conns, vec![0, 0, 1]);
    }

    /// Pooled connections expire after `timeouts.upstream_idle`: the
    /// proxy closes them and the next request opens a new one.
    fn pool_idle_timeout_applies(bin) {
        let origin = Origin::echo_target();
        let proxy = Proxy::start_with_config(bin, "(timeouts: (upstream_idle: \"400ms\"))", &[]);
        let mut c = proxy.connect();
        assert_eq!(c.get(&origin.url("/1")).status(), 200);
        assert_eq!(c.get(&origin.url("/2")).status(), 200);
        assert_eq!(origin.connections(), 1, "reused within the idle timeout");
        std::thread::sleep(Duration::from_millis(1200));
        assert_eq!(c.get(&origin.url("/3")).status(), 200);
        assert_eq!(origin.connections(), 2, "a new connection after the idle timeout");
        // The expired connection was closed by the proxy, not left open.
        let deadline = Instant::now() + Duration::from_secs(5);
        while origin.peer_closes() < 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(origin.peer_closes() >= 1, "the idle upstream connection was never closed");
    }

    /// The proxy closes an idle pooled connection on its own once the
    /// idle timeout passes, without another request coming.
    fn pool_closes_idle_upstream_without_new_requests(bin) {
        let origin = Origin::echo_target();
        let proxy = Proxy::start_with_config(bin, "(timeouts: (upstream_idle: \"300ms\"))", &[]);
        let mut c = proxy.connect();
        assert_eq!(c.get(&origin.url("/only")).status(), 200);
        let deadline = Instant::now() + Duration::from_secs(5);
        while origin.peer_closes() < 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            origin.peer_closes(),
            1,
            "the idle pooled connection stayed open well past upstream_idle"
        );
    }

    /// A pooled connection the origin closed meanwhile is replaced
    /// transparently for a safe request.
    fn stale_pooled_connection_is_retried(bin) {
        // Serves one request per connection, without announcing close,
        // then closes shortly after.
        let origin = RawOrigin::start(|mut s, i| {
            if read_request_head(&mut s).is_some() {
                let body = format!("conn {i}");
                let _ = s.write_all(
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                        .as_bytes(),
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        assert_eq!(c.get(&origin.url("/first")).text(), "conn 0");
        std::thread::sleep(Duration::from_millis(400));
        let resp = c.get(&origin.url("/second"));
        assert_eq!(resp.status(), 200, "{resp:#?}");
        assert_eq!(resp.text(), "conn 1");
    }

    /// `Connection: close` from the client: answered, then closed.
    fn client_connection_close_is_honoured(bin) {
        let origin = Origin::echo_target();
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        c.send(request("GET", &origin.url("/bye"), &[("Connection", "close")], b""));
        let resp = c.read_response("GET");
        assert_eq!(resp.text(), "/bye");
        assert!(
            resp.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")),
            "{resp:#?}"
        );
        c.assert_closed();
        // The upstream connection is still reusable: the client's close is
        // hop-by-hop.
        assert!(!origin.requests()[0].has("connection"));
    }
}
