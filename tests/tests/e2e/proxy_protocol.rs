//! Behind a load balancer: the PROXY protocol header names the client,
//! and that client is what the ACL and the log see. The tests play the
//! balancer on loopback (a trusted sender by default).

use crate::request;
use proxy_tests::{cases, Origin, Proxy};
use std::time::Duration;

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
}
