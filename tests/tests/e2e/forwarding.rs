//! Plain HTTP forwarding: methods, origin-form and Host, bodies in every
//! framing, bodiless responses, interim responses, hop-by-hop fields,
//! Via and Date, Upgrade.

use crate::{assert_http_date, assert_log, request, via};
use proxy_tests::origin::{matches_pattern, read_request_head};
use proxy_tests::{cases, Origin, Proxy, RawOrigin, Reply};
use std::io::Write;

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
];

cases! {
    /// Every method goes to the origin in origin-form, with Host from the
    /// URI, and comes back on the same client connection.
    fn every_method_is_forwarded_in_origin_form(bin) {
        let origin = Origin::start(|r| {
            Reply::ok(format!("{} {} {}", r.method, r.target, r.text()))
                .header("X-Method", &r.method)
        });
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        for m in METHODS {
            let url = origin.url(&format!("/m/{m}?q=1&r=%20x"));
            let body: &[u8] = if matches!(*m, "POST" | "PUT" | "PATCH") { b"payload" } else { b"" };
            c.send(request(m, &url, &[("Accept", "*/*")], body));
            let resp = c.read_response(m);
            assert_eq!(resp.status(), 200, "{m}: {resp:#?}");
            assert_eq!(resp.head.minor, 1);
            assert_eq!(resp.header("x-method"), Some(*m));
            if *m == "HEAD" {
                assert!(resp.body.is_empty());
            } else {
                let want = format!("{m} /m/{m}?q=1&r=%20x {}", String::from_utf8_lossy(body));
                assert_eq!(resp.text(), want);
            }
            let line = assert_log(&proxy, m, &url, 200, Some(&origin.authority()), None);
            assert_eq!(line.bytes, resp.wire_len, "{m}: logged bytes vs bytes received");
        }
        let seen = origin.wait_requests(METHODS.len());
        for (req, m) in seen.iter().zip(METHODS) {
            assert_eq!(req.method, *m);
            assert_eq!(req.target, format!("/m/{m}?q=1&r=%20x"));
            assert_eq!(req.header_all("host"), vec![origin.authority().as_str()]);
            assert_eq!(req.header("accept"), Some("*/*"));
            assert!(
                via(req.header_all("via")).contains("1.1 proxy-rs"),
                "{m}: Via in {req:#?}"
            );
            assert!(req.raw_head.ends_with(b"\r\n\r\n"));
            assert!(
                req.raw_head.starts_with(format!("{m} /m/").as_bytes()),
                "request line {:?}",
                String::from_utf8_lossy(&req.raw_head)
            );
        }
    }

    /// The URI's authority wins over a conflicting Host header, and a
    /// pinned name keeps its name in Host.
    fn uri_authority_wins_over_host_header(bin) {
        let origin = Origin::echo_target();
        let port = origin.addr().port();
        let proxy = Proxy::start(bin, &["--resolve", "origin.test=127.0.0.1"]);
        let mut c = proxy.connect();

        let url = origin.url("/conflict");
        c.send(format!("GET {url} HTTP/1.1\r\nHost: evil.example:666\r\n\r\n"));
        assert_eq!(c.read_response("GET").status(), 200);

        let named = format!("http://origin.test:{port}/named");
        c.send(format!("GET {named} HTTP/1.1\r\nHost: other.test\r\n\r\n"));
        let resp = c.read_response("GET");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text(), "/named");

        let seen = origin.wait_requests(2);
        assert_eq!(seen[0].header_all("host"), vec![origin.authority().as_str()]);
        assert_eq!(seen[1].header_all("host"), vec![format!("origin.test:{port}").as_str()]);
        assert_eq!(seen[1].target, "/named");
        assert_log(&proxy, "GET", &named, 200, Some(&format!("127.0.0.1:{port}")), None);
    }

    /// A server-wide OPTIONS (`OPTIONS http://host:port`) leaves as `*`,
    /// and an absolute URI with an empty path leaves as `/`.
    fn empty_paths_become_asterisk_or_slash(bin) {
        let origin = Origin::echo_target();
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        let bare = format!("http://{}", origin.authority());
        c.send(request("OPTIONS", &bare, &[], b""));
        assert_eq!(c.read_response("OPTIONS").status(), 200);
        c.send(request("GET", &bare, &[], b""));
        assert_eq!(c.read_response("GET").text(), "/");
        let seen = origin.wait_requests(2);
        assert_eq!(seen[0].target, "*");
        assert_eq!(seen[1].target, "/");
    }

    /// Request bodies framed by Content-Length reach the origin intact,
    /// small and large.
    fn request_body_with_content_length(bin) {
        let origin = Origin::start(|r| Reply::ok(format!("got {}", r.body.len())));
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        for body in [&b"hello"[..], &big[..]] {
            let url = origin.url("/upload");
            c.send(request("PUT", &url, &[("Content-Type", "application/octet-stream")], body));
            let resp = c.read_response("PUT");
            assert_eq!(resp.text(), format!("got {}", body.len()));
        }
        let seen = origin.wait_requests(2);
        assert_eq!(seen[0].body, b"hello");
        assert_eq!(seen[0].header("content-length"), Some("5"));
        assert!(seen[1].body == big, "large body corrupted");
        assert!(!seen[1].chunked);
    }

    /// A chunked request body, trailers included, reaches the origin; the
    /// client's `Trailer` field (hop-by-hop) does not.
    fn request_body_chunked_with_trailers(bin) {
        let origin = Origin::start(|r| Reply::ok(format!("got {}", r.body.len())));
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        let url = origin.url("/chunked-up");
        let host = origin.authority();
        c.send(format!(
            "POST {url} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
        ));
        c.send("5\r\nhello\r\n");
        std::thread::sleep(std::time::Duration::from_millis(20));
        c.send("7;ext=1\r\n, world\r\n1000\r\n");
        c.send(vec![b'z'; 0x1000]);
        c.send("\r\n0\r\nX-Checksum: abc123\r\n\r\n");
        let resp = c.read_response("POST");
        assert_eq!(resp.text(), format!("got {}", 12 + 0x1000));
        let req = &origin.wait_requests(1)[0];
        assert!(req.chunked, "the body should still be chunked: {req:#?}");
        assert!(req.body.starts_with(b"hello, world"));
        assert_eq!(req.body.len(), 12 + 0x1000);
        assert!(req.header("content-length").is_none());
        assert!(
            req.trailers.iter().any(|(n, v)| n.eq_ignore_ascii_case("x-checksum") && v == "abc123"),
            "trailers {:?}",
            req.trailers
        );
        assert!(req.header("trailer").is_none(), "Trailer is hop-by-hop: {req:#?}");
        assert_log(&proxy, "POST", &url, 200, Some(&host), None);
    }

    /// Response bodies by Content-Length, small and several MiB.
    fn response_body_with_content_length(bin) {
        let origin = Origin::start(|r| {
            if r.target == "/big" {
                Reply::status(200).pattern_body(5 << 20)
            } else {
                Reply::ok("small")
            }
        });
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        let resp = c.get(&origin.url("/small"));
        assert_eq!(resp.text(), "small");
        assert_eq!(resp.header("content-length"), Some("5"));
        let resp = c.get(&origin.url("/big"));
        assert_eq!(resp.body.len(), 5 << 20);
        assert!(matches_pattern(0, &resp.body), "large body corrupted");
        let line = assert_log(&proxy, "GET", &origin.url("/big"), 200, None, None);
        assert_eq!(line.bytes, resp.wire_len, "logged bytes vs bytes received");
        // Still in step: the next response on the connection is whole.
        assert_eq!(c.get(&origin.url("/small")).text(), "small");
    }

    /// A chunked response of large chunks (their data goes on without the
    /// core reading it, where the runtime can splice) arrives exactly,
    /// framing and all, and is counted exactly.
    fn large_chunks_arrive_exactly(bin) {
        let origin = Origin::start(|_| Reply::status(200).pattern_body(3 << 20).chunked(300_000, &[]));
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        let url = origin.url("/big-chunks");
        let resp = c.get(&url);
        assert!(resp.chunked, "{resp:#?}");
        assert_eq!(resp.body.len(), 3 << 20);
        assert!(matches_pattern(0, &resp.body), "large chunked body corrupted");
        let line = assert_log(&proxy, "GET", &url, 200, None, None);
        assert_eq!(line.bytes, resp.wire_len, "logged bytes vs bytes received");
        assert_eq!(c.get(&origin.url("/again")).status(), 200);
    }

    /// A chunked response, with trailers, reaches the client chunked.
    fn response_body_chunked_with_trailers(bin) {
        let origin = Origin::start(|_| {
            Reply::status(200)
                .header("Trailer", "X-Digest")
                .pattern_body(200_000)
                .chunked(7_000, &[("X-Digest", "sha-256=abc")])
        });
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        let resp = c.get(&origin.url("/chunked-down"));
        assert_eq!(resp.status(), 200);
        assert!(resp.chunked, "{resp:#?}");
        assert_eq!(resp.body.len(), 200_000);
        assert!(matches_pattern(0, &resp.body));
        assert_eq!(resp.trailers, vec![("X-Digest".to_owned(), "sha-256=abc".to_owned())]);
        let line = assert_log(&proxy, "GET", &origin.url("/chunked-down"), 200, None, None);
        assert_eq!(line.bytes, resp.wire_len, "logged bytes vs bytes received");
        // The connection is still usable afterwards.
        assert_eq!(c.get(&origin.url("/again")).status(), 200);
    }

    /// A response delimited by the origin closing arrives whole, and the
    /// proxy then closes the client connection (that is how the client
    /// learns where it ends).
    fn close_delimited_response(bin) {
        let origin = Origin::start(|_| Reply::status(200).pattern_body(300_000).close_delimited());
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        let url = origin.url("/until-close");
        let resp = c.get(&url);
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.body.len(), 300_000);
        assert!(matches_pattern(0, &resp.body));
        if resp.close_delimited {
            c.assert_closed();
        }
        let line = assert_log(&proxy, "GET", &url, 200, Some(&origin.authority()), None);
        assert_eq!(line.bytes, resp.wire_len, "logged bytes vs bytes received");
    }

    /// HEAD responses carry the length but no body; the connection stays
    /// in step for the next request.
    fn head_response_has_no_body(bin) {
        let origin = Origin::start(|r| {
            let reply = Reply::ok(vec![b'x'; 1234]).header("X-Path", &r.target);
            if r.target == "/chunked" {
                reply.chunked(100, &[])
            } else {
                reply
            }
        });
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        c.send(request("HEAD", &origin.url("/h"), &[], b""));
        let resp = c.read_response("HEAD");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.header("content-length"), Some("1234"));
        assert!(resp.body.is_empty());
        let next = c.get(&origin.url("/after-head"));
        assert_eq!(next.header("x-path"), Some("/after-head"));
        assert_eq!(next.body.len(), 1234);
        // HEAD of a resource served chunked: the header, no chunks.
        c.send(request("HEAD", &origin.url("/chunked"), &[], b""));
        let resp = c.read_response("HEAD");
        assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
        assert_eq!(c.get(&origin.url("/after-chunked-head")).status(), 200);
    }

    /// 204 and 304 have no body even when a 304 states a length; the
    /// connection stays in step.
    fn no_content_and_not_modified_have_no_body(bin) {
        let origin = Origin::start(|r| match r.target.as_str() {
            "/204" => Reply::status(204).no_body(),
            "/304" => Reply::status(304)
                .header("ETag", "\"v1\"")
                .header("Content-Length", "5")
                .no_body(),
            _ => Reply::ok("next"),
        });
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        let resp = c.get(&origin.url("/204"));
        assert_eq!(resp.status(), 204);
        assert!(resp.body.is_empty());
        c.send(request("GET", &origin.url("/304"), &[("If-None-Match", "\"v1\"")], b""));
        let resp = c.read_response("GET");
        assert_eq!(resp.status(), 304);
        assert_eq!(resp.header("etag"), Some("\"v1\""));
        assert!(resp.body.is_empty());
        assert_eq!(c.get(&origin.url("/next")).text(), "next");
        assert_log(&proxy, "GET", &origin.url("/204"), 204, None, None);
        assert_log(&proxy, "GET", &origin.url("/304"), 304, None, None);
    }

    /// 1xx interim responses (103 Early Hints) go to the client before the
    /// final response.
    fn interim_responses_are_relayed(bin) {
        let origin = Origin::start(|_| {
            Reply::ok("final")
                .interim(103, &[("Link", "</style.css>; rel=preload")])
        });
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        let resp = c.get(&origin.url("/hints"));
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text(), "final");
        assert_eq!(resp.interim.len(), 1, "{resp:#?}");
        assert_eq!(resp.interim[0].status, 103);
        assert_eq!(resp.interim[0].header("link"), Some("</style.css>; rel=preload"));
        let line = assert_log(&proxy, "GET", &origin.url("/hints"), 200, None, None);
        assert_eq!(line.bytes, resp.wire_len, "logged bytes vs bytes received");
    }

    /// `Expect: 100-continue`: the client gets `100 Continue` before it
    /// sends the body, then the final response.
    fn expect_100_continue(bin) {
        let origin = Origin::start(|r| Reply::status(201).body(format!("stored {}", r.text())));
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        let url = origin.url("/expect");
        let host = origin.authority();
        c.send(format!(
            "PUT {url} HTTP/1.1\r\nHost: {host}\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n"
        ));
        let interim = c.read_head();
        assert_eq!(interim.status, 100, "{interim:#?}");
        c.send("hello world");
        let resp = c.read_response("PUT");
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.text(), "stored hello world");
        let req = &origin.wait_requests(1)[0];
        assert_eq!(req.header("expect"), Some("100-continue"));
        assert_log(&proxy, "PUT", &url, 201, Some(&host), None);
    }

    /// Hop-by-hop fields are removed both ways, Via is appended both ways,
    /// Date is added when the origin sent none and kept when it did.
    fn hop_by_hop_fields_removed_and_via_added(bin) {
        let origin = Origin::start(|r| {
            let mut reply = Reply::ok("ok")
                .header("Connection", "X-Origin-Secret")
                .header("X-Origin-Secret", "s")
                .header("Keep-Alive", "timeout=5")
                .header("Proxy-Connection", "keep-alive")
                .header("Trailer", "X-Nothing")
                .header("Upgrade", "h2c")
                .header("X-Origin-Keep", "yes")
                .header("Via", "1.1 upstream-cache");
            if r.target == "/dated" {
                reply = reply.header("Date", "Tue, 15 Nov 1994 08:12:31 GMT");
            }
            reply
        });
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        let headers = [
            ("Connection", "keep-alive, X-Secret"),
            ("X-Secret", "hidden"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("Proxy-Authorization", "Basic dXNlcjpwYXNz"),
            ("TE", "trailers"),
            ("Trailer", "X-Whatever"),
            ("Upgrade", "h2c"),
            ("X-Keep", "yes"),
            ("Via", "1.0 first-hop"),
        ];
        c.send(request("GET", &origin.url("/hop"), &headers, b""));
        let resp = c.read_response("GET");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.head.minor, 1);
        for gone in ["x-origin-secret", "keep-alive", "proxy-connection", "trailer", "upgrade"] {
            assert!(resp.header(gone).is_none(), "{gone} reached the client: {resp:#?}");
        }
        assert!(
            resp.header_all("connection").iter().all(|v| !v.contains("X-Origin-Secret")),
            "{resp:#?}"
        );
        assert_eq!(resp.header("x-origin-keep"), Some("yes"));
        let v = via(resp.header_all("via"));
        assert!(
            v.contains("upstream-cache") && v.contains("1.1 proxy-rs")
                && v.find("upstream-cache") < v.find("proxy-rs"),
            "response Via {v:?}"
        );
        assert_http_date(&resp);

        let req = &origin.wait_requests(1)[0];
        for gone in [
            "connection", "x-secret", "keep-alive", "proxy-connection",
            "proxy-authorization", "te", "trailer", "upgrade",
        ] {
            assert!(!req.has(gone), "{gone} was forwarded: {req:#?}");
        }
        assert_eq!(req.header("x-keep"), Some("yes"));
        let v = via(req.header_all("via"));
        assert!(
            v.contains("1.0 first-hop") && v.contains("1.1 proxy-rs")
                && v.find("first-hop") < v.find("proxy-rs"),
            "request Via {v:?}"
        );

        let resp = c.get(&origin.url("/dated"));
        assert_eq!(resp.header_all("date"), vec!["Tue, 15 Nov 1994 08:12:31 GMT"]);
    }

    /// `proxy_name` from the config names the proxy in Via and
    /// Proxy-Status.
    fn proxy_name_is_configurable(bin) {
        let origin = Origin::echo_target();
        let proxy = Proxy::start_with_config(
            bin,
            "(proxy_name: \"edge-1\")",
            &["--resolve", "gone.test="],
        );
        let mut c = proxy.connect();
        let resp = c.get(&origin.url("/named"));
        assert!(via(resp.header_all("via")).contains("edge-1"), "{resp:#?}");
        let req = &origin.wait_requests(1)[0];
        assert!(via(req.header_all("via")).contains("1.1 edge-1"), "{req:#?}");
        let resp = c.get("http://gone.test/");
        assert_eq!(resp.status(), 502);
        let ps = resp.header("proxy-status").unwrap_or("");
        assert!(ps.starts_with("edge-1") && ps.contains("error=dns_error"), "{ps:?}");
        // A Via naming the default pseudonym is no loop for edge-1...
        c.send(request("GET", &origin.url("/via"), &[("Via", "1.1 proxy-rs")], b""));
        assert_eq!(c.read_response("GET").status(), 200);
        // ...but one naming edge-1 is.
        c.send(request("GET", &origin.url("/loop"), &[("Via", "1.1 edge-1")], b""));
        assert_eq!(c.read_response("GET").status(), 508);
    }

    /// Responses always leave as HTTP/1.1, even from an HTTP/1.0 origin.
    fn responses_are_http11_from_http10_origin(bin) {
        let origin = RawOrigin::respond(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi");
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        let resp = c.get(&origin.url("/old"));
        assert_eq!(resp.head.minor, 1);
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text(), "hi");
        assert!(via(resp.header_all("via")).contains("proxy-rs"), "{resp:#?}");
        assert_http_date(&resp);
    }

    /// An HTTP/1.0 client without Host is served (Host comes from the URI),
    /// a chunked response reaches it de-chunked and delimited by close.
    fn http10_client_gets_dechunked_close_delimited_body(bin) {
        let origin = Origin::start(|_| Reply::ok("chunky body").chunked(3, &[]));
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        c.send(format!("GET {} HTTP/1.0\r\n\r\n", origin.url("/ten")));
        let resp = c.read_response("GET");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.head.minor, 1);
        assert!(!resp.chunked);
        assert_eq!(resp.text(), "chunky body");
        c.assert_closed();
        let line = assert_log(&proxy, "GET", &origin.url("/ten"), 200, None, None);
        assert_eq!(line.bytes, resp.wire_len, "logged bytes vs bytes received");
        let req = &origin.wait_requests(1)[0];
        assert_eq!(req.minor, 1, "forwarded as HTTP/1.1");
        assert_eq!(req.header("host"), Some(origin.authority().as_str()));
    }

    /// Upgrade (WebSocket style): Upgrade is forwarded when asked for with
    /// `Connection: upgrade`; after 101 bytes flow both ways until close.
    fn upgrade_becomes_a_relay(bin) {
        let origin = Origin::start(|r| {
            if r.header("upgrade") == Some("websocket") {
                Reply::upgrade("websocket", b"hello from origin\n")
            } else {
                Reply::status(400)
            }
        });
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        let url = origin.url("/chat");
        c.send(request(
            "GET",
            &url,
            &[
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("Sec-WebSocket-Version", "13"),
            ],
            b"",
        ));
        let head = c.read_head();
        assert_eq!(head.status, 101, "{head:#?}");
        assert_eq!(head.header("upgrade"), Some("websocket"));
        assert!(
            head.header("connection").is_some_and(|v| v.to_ascii_lowercase().contains("upgrade")),
            "{head:#?}"
        );
        assert_eq!(c.read_exact_bytes(18), b"hello from origin\n");
        for msg in ["ping", "a longer message \x00\x01\x02 with binary"] {
            c.send(msg);
            assert_eq!(c.read_exact_bytes(msg.len()), msg.as_bytes());
        }
        let big = vec![7u8; 200_000];
        c.send(&big);
        assert_eq!(c.read_exact_bytes(big.len()), big);
        c.shutdown_write();
        assert!(c.read_to_end().is_empty());
        let req = &origin.wait_requests(1)[0];
        assert_eq!(req.header("sec-websocket-key"), Some("dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(
            req.header("connection").is_some_and(|v| v.to_ascii_lowercase().contains("upgrade")),
            "{req:#?}"
        );
        assert_log(&proxy, "GET", &url, 101, Some(&origin.authority()), None);
    }

    /// A 101 to a request that did not ask to upgrade is a bad response.
    fn unrequested_switching_protocols_is_502(bin) {
        let origin = RawOrigin::start(|mut s, _| {
            if read_request_head(&mut s).is_some() {
                let _ = s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: evil\r\nConnection: upgrade\r\n\r\nraw bytes");
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
        });
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        let url = origin.url("/no-upgrade");
        let resp = c.get(&url);
        resp.assert_error(502, "http_protocol_error", "switching protocols");
        assert!(!resp.text().contains("raw bytes"));
        assert_log(&proxy, "GET", &url, 502, None, Some("http_protocol_error"));
    }
}
