//! Chaining to parent proxies: a second instance of the proxy (the same
//! binary) acts as the parent, as a Squid or tinyproxy upstream would.

use crate::{assert_log, request};
use proxy_tests::{cases, refused_addr, EchoServer, Origin, Proxy, TempFile};

/// The child's name, so the parent's loop detection (a `Via` naming
/// itself) does not take the child for itself.
const CHILD: &str = "(proxy_name: \"edge\")";

/// `alice:password`, as `htpasswd -s` writes it.
const ALICE_SHA: &str = "alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=";

/// A 502 from the child (named `edge`) about its parents.
fn assert_edge_error(resp: &proxy_tests::Response, details: &str) {
    assert_eq!(resp.status(), 502, "{resp:#?}");
    let status = resp.header("proxy-status").unwrap_or_default();
    assert!(
        status.starts_with("edge; error=destination_unavailable;"),
        "{status}"
    );
    assert!(status.contains(details), "{status}");
}

cases! {
    /// Plain HTTP goes to the parent in absolute form; the origin sees
    /// both hops in `Via`; each proxy logs its own hop.
    fn http_goes_through_the_parent(bin) {
        let origin = Origin::echo_target();
        let parent = Proxy::start(bin, &[]);
        let child = Proxy::start_with_config(bin, CHILD, &["--parent", &parent.addr().to_string()]);
        let mut c = child.connect();
        let url = origin.url("/through");
        let resp = c.get(&url);
        assert_eq!(resp.status(), 200, "{resp:#?}");
        assert_eq!(resp.text(), "/through");
        let got = origin.wait_requests(1).pop().unwrap();
        let via: Vec<&str> = got.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("via")).map(|(_, v)| v.as_str()).collect();
        assert_eq!(via.join(", "), "1.1 edge, 1.1 proxy-rs", "{:?}", got.headers);
        // The child's hop is the parent; the parent's is the origin.
        assert_log(&child, "GET", &url, 200, Some(&parent.addr().to_string()), None);
        assert_log(&parent, "GET", &url, 200, Some(&origin.addr().to_string()), None);
        // Keep-alive through the chain.
        assert_eq!(c.get(&origin.url("/again")).text(), "/again");

        // Squid's format names the hop as Squid does.
        let squid = Proxy::start_with_config(bin, CHILD, &[
            "--parent", &parent.addr().to_string(), "--log-format", "squid",
        ]);
        let url = origin.url("/squid");
        assert_eq!(squid.connect().get(&url).status(), 200);
        let line = squid.wait_for_log(|l| l.contains(&url), proxy_tests::IO_TIMEOUT);
        assert!(line.ends_with(&format!(" FIRSTUP_PARENT/{} -", parent.addr().ip())), "{line}");
    }

    /// CONNECT is sent on to the parent as a CONNECT; the tunnel works
    /// both ways once the parent says 200.
    fn connect_goes_through_the_parent(bin) {
        let echo = EchoServer::start();
        let parent = Proxy::start(bin, &[]);
        let child = Proxy::start_with_config(bin, CHILD, &["--parent", &parent.addr().to_string()]);
        let target = echo.addr().to_string();
        let mut c = child.connect();
        c.send(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"));
        assert_eq!(c.read_head().status, 200);
        c.send("through two proxies");
        assert_eq!(c.read_exact_bytes(19), b"through two proxies");
        drop(c);
        let line = child.wait_for_record("CONNECT", &target);
        assert_eq!((line.status, line.upstream.as_str()), (200, parent.addr().to_string().as_str()));
        let line = parent.wait_for_record("CONNECT", &target);
        assert_eq!((line.status, line.upstream.as_str()), (200, target.as_str()));
    }

    /// Parents are tried in order: one that refuses is skipped for the
    /// next; when none can be reached the answer is a 502 naming them.
    fn the_next_parent_is_tried_and_none_is_a_502(bin) {
        let origin = Origin::echo_target();
        let parent = Proxy::start(bin, &[]);
        let down = refused_addr();
        let child = Proxy::start_with_config(bin, CHILD, &[
            "--parent", &down.to_string(), "--parent", &parent.addr().to_string(),
        ]);
        let url = origin.url("/failover");
        assert_eq!(child.connect().get(&url).text(), "/failover");
        assert_log(&child, "GET", &url, 200, Some(&parent.addr().to_string()), None);
        drop(child);

        let child = Proxy::start_with_config(bin, CHILD, &["--parent", &down.to_string()]);
        let resp = child.connect().get(&url);
        assert_edge_error(&resp, &format!("no parent proxy could be reached (tried {down})"));
        assert_log(&child, "GET", &url, 502, None, Some("destination_unavailable"));
        assert!(origin.requests().len() == 1, "only the first request reached the origin");
    }

    /// `user:password@host:port` authenticates to the parent, for plain
    /// HTTP and CONNECT; without it the parent's refusal of a CONNECT is
    /// a 502 that says what the parent answered.
    fn credentials_for_the_parent(bin) {
        let origin = Origin::echo_target();
        let echo = EchoServer::start();
        let users = TempFile::new("htpasswd", &format!("{ALICE_SHA}\n"));
        let parent = Proxy::start(bin, &["--auth-file", users.name()]);
        let with = format!("alice:password@{}", parent.addr());
        let child = Proxy::start_with_config(bin, CHILD, &["--parent", &with]);
        let url = origin.url("/authed");
        assert_eq!(child.connect().get(&url).status(), 200);
        let line = parent.wait_for_record("GET", &url);
        assert_eq!(line.user.as_deref(), Some("alice"));
        let got = origin.wait_requests(1).pop().unwrap();
        assert!(!got.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("proxy-authorization")), "{:?}", got.headers);
        let target = echo.addr().to_string();
        let mut c = child.connect();
        c.send(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"));
        assert_eq!(c.read_head().status, 200);
        c.send("hi");
        assert_eq!(c.read_exact_bytes(2), b"hi");
        drop(child);

        let child = Proxy::start_with_config(bin, CHILD, &["--parent", &parent.addr().to_string()]);
        let mut c = child.connect();
        c.send(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"));
        let resp = c.read_response("CONNECT");
        assert_edge_error(&resp, "answered 407 Proxy Authentication Required to CONNECT");
    }

    /// `routing.direct` names destinations that skip the parents.
    fn direct_exceptions_skip_the_parent(bin) {
        let origin = Origin::echo_target();
        let down = refused_addr();
        let config = format!("(proxy_name: \"edge\", routing: (parents: [\"{down}\"], direct: [\"127.0.0.0/8\", \"direct.test\"]))");
        let child = Proxy::start_with_config(bin, &config, &["--resolve", "direct.test=127.0.0.1"]);
        let url = origin.url("/direct");
        assert_eq!(child.connect().get(&url).text(), "/direct");
        assert_log(&child, "GET", &url, 200, Some(&origin.addr().to_string()), None);
        let named = format!("http://direct.test:{}/named", origin.addr().port());
        let mut c = child.connect();
        c.send(request("GET", &named, &[], b""));
        assert_eq!(c.read_response("GET").status(), 200);
    }
}
