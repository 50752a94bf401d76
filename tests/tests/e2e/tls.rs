//! HTTPS policy without decryption: the proxy reads the TLS ClientHello
//! a client sends first through a CONNECT tunnel and judges its server
//! name (SNI) before anything reaches the origin (`policy.tls`).
//!
//! The `200 Connection established` goes out before the client says
//! anything, so a refusal is a closed tunnel: after a TLS
//! `access_denied` alert when the first bytes were a ClientHello and
//! `alert` is on, silently otherwise. The access record says 403,
//! `http_request_denied`, the rule and the SNI. By default the origin is
//! connected before the hello is read (it may see a connection, never a
//! byte of a refused hello); with `delay_connect: true` a refused name
//! causes no connection at all.
//!
//! The clients and the TLS origin are rustls (see `proxy_tests::tls`);
//! names are pinned to 127.0.0.1 with `--resolve`.

use crate::assert_log;
use proxy_tests::tls::{
    client_config, client_hello, connect_tunnel, read_until_closed, server_name, tls_get,
    tls_get_through, HelloWrite, ACCESS_DENIED_ALERT, ESTABLISHED,
};
use proxy_tests::{cases, LogLine, Origin, Proxy, RawOrigin, TlsOrigin, TlsOutcome, IO_TIMEOUT};
use rustls::AlertDescription;
use std::io::Write;
use std::time::{Duration, Instant};

/// The names every proxy here resolves to 127.0.0.1.
const RESOLVE: &[&str] = &[
    "--resolve",
    "good.test=127.0.0.1",
    "--resolve",
    "other.test=127.0.0.1",
    "--resolve",
    "blocked.test=127.0.0.1",
];

/// The length of `CONNECT target` as the tunnel helpers send it.
fn connect_head_len(target: &str) -> u64 {
    format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").len() as u64
}

/// A proxy with `tls` as its `policy.tls` settings (RON fields, may be
/// empty) and `extra` policy fields.
fn proxy_with(bin: proxy_tests::Binary, tls: &str, extra: &str) -> Proxy {
    let ron = format!("(policy: (tls: ({tls}), {extra}))");
    Proxy::start_with_config(bin, &ron, RESOLVE)
}

/// Waits until the proxy has logged `n` records for `CONNECT target`,
/// and returns them.
fn wait_records(proxy: &Proxy, target: &str, n: usize) -> Vec<LogLine> {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let got = proxy.records("CONNECT", target);
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{}: {} of {n} records for CONNECT {target}; log:\n{}",
            proxy.binary().name(),
            got.len(),
            proxy.log_lines().join("\n")
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Asserts the record of an allowed TLS tunnel to `origin`.
fn assert_allowed(line: &LogLine, origin: &TlsOrigin, sni: Option<&str>) {
    assert_eq!(line.status, 200, "status in {line:?}");
    assert_eq!(
        line.upstream,
        origin.addr().to_string(),
        "upstream in {line:?}"
    );
    assert_eq!(line.error, None, "error in {line:?}");
    assert_eq!(line.rule, None, "rule in {line:?}");
    assert_eq!(line.sni.as_deref(), sni, "sni in {line:?}");
    // The head, the whole handshake and the request went through.
    let head = connect_head_len(&line.target);
    assert!(
        line.client_sent.is_some_and(|n| n > head + 200),
        "client_sent in {line:?}"
    );
}

/// Asserts the record of a refused tunnel: 403, `http_request_denied`,
/// the rule and the SNI.
fn assert_refused(line: &LogLine, rule: &str, sni: Option<&str>) {
    assert_eq!(line.status, 403, "status in {line:?}");
    assert_eq!(
        line.error.as_deref(),
        Some("http_request_denied"),
        "error in {line:?}"
    );
    let got = line.rule.as_deref().unwrap_or("");
    assert!(
        got.contains(rule),
        "rule {got:?} should say {rule:?}; {line:?}"
    );
    assert_eq!(line.sni.as_deref(), sni, "sni in {line:?}");
}

/// Asserts a full response from the TLS origin, which names the SNI it
/// saw (`-` for none).
fn assert_response(outcome: &TlsOutcome, sni: &str) {
    let text = outcome.text();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text:?}");
    assert!(
        text.ends_with(&format!("\r\n\r\nhello over TLS, sni={sni}")),
        "{text:?}"
    );
}

/// No byte of any tunnel reached `origin` (with the default
/// connect-first it may have seen connections, which must be closed).
fn assert_no_bytes_reached(origin: &TlsOrigin) {
    origin.wait_idle();
    assert_eq!(
        origin.bytes_received(),
        0,
        "bytes of a refused tunnel reached the origin"
    );
    assert_eq!(origin.handshakes(), 0);
}

/// The client learns of the refusal as the TLS alert access_denied.
fn assert_access_denied(outcome: &TlsOutcome) {
    assert_eq!(
        *outcome,
        TlsOutcome::Alert(AlertDescription::AccessDenied),
        "the client should get access_denied"
    );
}

cases! {
    /// A rustls client through the tunnel to a rustls origin: the
    /// handshake completes, the request gets its response over TLS, and
    /// the record names the SNI.
    fn tls_through_the_tunnel_when_allowed(bin) {
        let origin = TlsOrigin::start();
        let proxy = proxy_with(bin, "", "");
        let target = format!("good.test:{}", origin.port());
        let outcome = tls_get_through(proxy.addr(), &target, Some("good.test"));
        assert_response(&outcome, "good.test");
        let line = assert_log(&proxy, "CONNECT", &target, 200, None, None);
        assert_allowed(&line, &origin, Some("good.test"));
        assert_eq!(origin.server_names(), [Some("good.test".to_owned())]);
    }

    /// CONNECT to an IP literal is judged by its SNI alone: a denied name
    /// gets the alert (exactly `15 03 03 00 02 02 31`), the origin (with
    /// `delay_connect: true`) never sees a connection, and the record
    /// names the rule and the SNI; an allowed name goes through to the
    /// same address.
    fn sni_denied_by_a_domain_rule_gets_access_denied(bin) {
        let origin = TlsOrigin::start();
        let proxy = proxy_with(bin, "delay_connect: true", "deny: [\"blocked.test\"]");
        let target = format!("127.0.0.1:{}", origin.port());
        let rule = "SNI blocked.test: deny blocked.test (config)";

        let outcome = tls_get_through(proxy.addr(), &target, Some("blocked.test"));
        assert_access_denied(&outcome);
        let lines = wait_records(&proxy, &target, 1);
        assert_refused(&lines[0], rule, Some("blocked.test"));
        assert_eq!(lines[0].rule.as_deref(), Some(rule));

        // The bytes on the wire: the alert record, then the close.
        let mut stream = connect_tunnel(proxy.addr(), &target);
        let (_, hello) = client_hello(client_config(true), server_name("blocked.test"));
        stream.write_all(&hello).unwrap();
        assert_eq!(read_until_closed(&mut stream), ACCESS_DENIED_ALERT);
        let lines = wait_records(&proxy, &target, 2);
        assert_refused(&lines[1], rule, Some("blocked.test"));
        assert_eq!(origin.connections(), 0, "a refused SNI reached the origin");

        // Another name, to the same IP literal, passes.
        let outcome = tls_get_through(proxy.addr(), &target, Some("good.test"));
        assert_response(&outcome, "good.test");
        let lines = wait_records(&proxy, &target, 3);
        assert_allowed(&lines[2], &origin, Some("good.test"));
        assert_eq!(origin.connections(), 1);
    }

    /// Domain fronting: CONNECT good.test with SNI other.test is refused
    /// by default, no byte of it reaching the origin; with `mismatch: Allow` it goes through and the record
    /// names the SNI.
    fn sni_mismatch_is_refused_unless_allowed(bin) {
        let origin = TlsOrigin::start();
        let target = format!("good.test:{}", origin.port());

        let proxy = proxy_with(bin, "", "");
        let outcome = tls_get_through(proxy.addr(), &target, Some("other.test"));
        assert_access_denied(&outcome);
        let line = proxy.wait_for_record("CONNECT", &target);
        assert_refused(&line, "mismatch", Some("other.test"));
        assert_eq!(
            line.rule.as_deref(),
            Some("SNI other.test does not match CONNECT good.test (policy.tls.mismatch)")
        );
        assert_no_bytes_reached(&origin);
        drop(proxy);

        let proxy = proxy_with(bin, "mismatch: Allow", "");
        let outcome = tls_get_through(proxy.addr(), &target, Some("other.test"));
        assert_response(&outcome, "other.test");
        let line = proxy.wait_for_record("CONNECT", &target);
        assert_allowed(&line, &origin, Some("other.test"));
        assert_eq!(origin.server_names(), [Some("other.test".to_owned())]);
    }

    /// The same name in another case, or with a trailing dot, is no
    /// mismatch: the SNI is compared as a normalized name.
    fn sni_matching_in_another_spelling_passes(bin) {
        let origin = TlsOrigin::start();
        let proxy = proxy_with(bin, "", "");
        let target = format!("GOOD.test.:{}", origin.port());
        let outcome = tls_get_through(proxy.addr(), &target, Some("good.test"));
        assert_response(&outcome, "good.test");
        let line = assert_log(&proxy, "CONNECT", &target, 200, None, None);
        assert_allowed(&line, &origin, Some("good.test"));
    }

    /// Plain HTTP through the tunnel: relayed with the defaults
    /// (`not_tls: Allow`); with `not_tls: Refuse` the tunnel closes with
    /// no alert and the request never reaches the origin.
    fn non_tls_tunnel_follows_not_tls(bin) {
        let origin = Origin::echo_target();
        let target = origin.authority();
        let get = "GET /plain HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n";

        let proxy = proxy_with(bin, "", "");
        let mut stream = connect_tunnel(proxy.addr(), &target);
        stream.write_all(get.as_bytes()).unwrap();
        let back = String::from_utf8_lossy(&read_until_closed(&mut stream)).into_owned();
        assert!(back.starts_with("HTTP/1.1 200 OK\r\n") && back.ends_with("/plain"), "{back:?}");
        drop(stream);
        let line = assert_log(&proxy, "CONNECT", &target, 200, Some(&target), None);
        assert_eq!(line.sni, None, "{line:?}");
        assert_eq!(line.client_sent, Some(connect_head_len(&target) + get.len() as u64));
        assert_eq!(origin.connections(), 1);
        drop(proxy);

        let proxy = proxy_with(bin, "not_tls: Refuse", "");
        let mut stream = connect_tunnel(proxy.addr(), &target);
        stream.write_all(get.as_bytes()).unwrap();
        assert_eq!(read_until_closed(&mut stream), b"", "no alert for a client that is not TLS");
        let line = proxy.wait_for_record("CONNECT", &target);
        assert_refused(&line, "not a readable TLS ClientHello", None);
        assert_eq!(origin.requests().len(), 1, "the refused tunnel's request reached the origin");
    }

    /// An SNI that is not a host name (`127.0.0.1:18443`, as Go's
    /// net/http sends it) is no reason to refuse: the tunnel is judged by
    /// its CONNECT authority, the hello reaches the origin whole, and the
    /// record names the SNI as malformed. `malformed_sni: Refuse` refuses
    /// it with the alert.
    fn an_sni_that_is_not_a_host_name_follows_the_connect_authority(bin) {
        let origin = TlsOrigin::start();
        let target = format!("good.test:{}", origin.port());
        let sni = "127.0.0.1:18443";
        // rustls will not send such a name: its hello for a name of the
        // same length, with the name's bytes replaced.
        let placeholder = "aaaaaaaaa.aaaaa";
        assert_eq!(placeholder.len(), sni.len());
        let (_, mut hello) = client_hello(client_config(true), server_name(placeholder));
        let at = hello
            .windows(sni.len())
            .position(|w| w == placeholder.as_bytes())
            .expect("the name is in the hello");
        hello[at..at + sni.len()].copy_from_slice(sni.as_bytes());

        let proxy = proxy_with(bin, "", "");
        let mut stream = connect_tunnel(proxy.addr(), &target);
        stream.write_all(&hello).unwrap();
        let deadline = Instant::now() + IO_TIMEOUT;
        while origin.bytes_received() < hello.len() as u64 {
            assert!(Instant::now() < deadline, "the hello never reached the origin");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(stream);
        let line = proxy.wait_for_record("CONNECT", &target);
        assert_eq!(line.status, 200, "{line:?}");
        assert_eq!((line.sni.as_deref(), line.sni_malformed), (Some(sni), true), "{line:?}");
        assert_eq!(line.rule, None);
        drop(proxy);

        let proxy = proxy_with(bin, "malformed_sni: Refuse", "");
        let mut stream = connect_tunnel(proxy.addr(), &target);
        stream.write_all(&hello).unwrap();
        assert_eq!(read_until_closed(&mut stream), ACCESS_DENIED_ALERT);
        let line = proxy.wait_for_record("CONNECT", &target);
        assert_refused(&line, "policy.tls.malformed_sni", Some(sni));
        // The origin's accept may trail the proxy's connect.
        let deadline = Instant::now() + IO_TIMEOUT;
        while origin.connections() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(origin.connections(), 2, "connected first, as by default");
        origin.wait_idle();
        assert_eq!(
            origin.bytes_received(),
            hello.len() as u64,
            "the refused hello never reached the origin"
        );
    }

    /// `hey` (Go's net/http) puts `host:port` in its SNI. Its HTTPS
    /// requests through CONNECT tunnels are all served.
    fn hey_https_through_the_proxy_is_served(bin) {
        let Some(hey) = proxy_tests::tool("hey", "E2E_SKIP_HEY") else {
            return;
        };
        // rustls would refuse the SNI itself; openssl, like most
        // servers, ignores it.
        let origin = proxy_tests::tls::OpensslOrigin::start();
        let proxy = proxy_with(bin, "", "");
        let url = format!("https://127.0.0.1:{}/", origin.port());
        let out = std::process::Command::new(hey)
            .args(["-n", "20", "-c", "2", "-t", "10", "-x"])
            .arg(format!("http://{}", proxy.addr()))
            .arg(&url)
            .output()
            .expect("run hey");
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "hey failed: {report}");
        assert!(report.contains("[200]\t20 responses"), "{report}");
        let target = format!("127.0.0.1:{}", origin.port());
        let lines = wait_records(&proxy, &target, 20);
        for line in &lines {
            assert_eq!(line.status, 200, "{line:?}");
            assert_eq!(line.sni.as_deref(), Some(&*target), "{line:?}");
            assert!(line.sni_malformed, "{line:?}");
        }
    }

    /// A ClientHello without SNI (rustls to an IP address, `enable_sni`
    /// off): let through by default, refused with `no_sni: Refuse`.
    fn hello_without_sni_follows_no_sni(bin) {
        let origin = TlsOrigin::start();
        let target = format!("127.0.0.1:{}", origin.port());

        let proxy = proxy_with(bin, "", "");
        let outcome = tls_get_through(proxy.addr(), &target, None);
        assert_response(&outcome, "-");
        let line = assert_log(&proxy, "CONNECT", &target, 200, None, None);
        assert_allowed(&line, &origin, None);
        drop(proxy);

        let proxy = proxy_with(bin, "no_sni: Refuse", "");
        let outcome = tls_get_through(proxy.addr(), &target, None);
        assert_access_denied(&outcome);
        let line = proxy.wait_for_record("CONNECT", &target);
        assert_refused(&line, "no SNI", None);
        origin.wait_idle();
        assert_eq!(origin.server_names(), [None], "only the allowed hello reached the origin");
    }

    /// The ClientHello one byte per write (nodelay, small pauses), and
    /// cut into many small TLS records: reassembled, judged, relayed
    /// whole. A mismatching one cut the same ways is still caught.
    fn split_hello_is_reassembled(bin) {
        let origin = TlsOrigin::start();
        let proxy = proxy_with(bin, "", "");
        let target = format!("good.test:{}", origin.port());
        let name = || server_name("good.test");

        for (i, how) in [
            HelloWrite::Bytewise(Duration::from_millis(1)),
            HelloWrite::Records(7),
        ]
        .into_iter()
        .enumerate()
        {
            let mut stream = connect_tunnel(proxy.addr(), &target);
            let outcome = tls_get(&mut stream, client_config(true), name(), "good.test", how);
            assert_response(&outcome, "good.test");
            drop(stream);
            let lines = wait_records(&proxy, &target, i + 1);
            assert_allowed(&lines[i], &origin, Some("good.test"));
        }

        let other = format!("other.test:{}", origin.port());
        for (i, how) in [HelloWrite::Bytewise(Duration::ZERO), HelloWrite::Records(1)]
            .into_iter()
            .enumerate()
        {
            let mut stream = connect_tunnel(proxy.addr(), &other);
            let outcome = tls_get(&mut stream, client_config(true), name(), "good.test", how);
            assert_access_denied(&outcome);
            let lines = wait_records(&proxy, &other, i + 1);
            assert_refused(&lines[i], "mismatch", Some("good.test"));
        }
        origin.wait_idle();
        assert_eq!(origin.handshakes(), 2, "only the allowed hellos reached the origin");
    }

    /// A client that says nothing after the 200 is judged as not TLS once
    /// `hello_timeout` has passed: closed then with `not_tls: Refuse`;
    /// with `Allow`, connected and relayed, so a hello sent later still
    /// goes through (unjudged).
    fn silent_client_is_not_tls_after_hello_timeout(bin) {
        let origin = TlsOrigin::start();
        let target = format!("good.test:{}", origin.port());

        let proxy = proxy_with(bin, "hello_timeout: \"300ms\", not_tls: Refuse", "");
        let mut stream = connect_tunnel(proxy.addr(), &target);
        let start = Instant::now();
        assert_eq!(read_until_closed(&mut stream), b"", "closed without an alert");
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
            "closed after {waited:?}, expected about 300ms"
        );
        let line = proxy.wait_for_record("CONNECT", &target);
        assert_refused(&line, "not a readable TLS ClientHello", None);
        assert_no_bytes_reached(&origin);
        drop(proxy);

        let proxy = proxy_with(bin, "hello_timeout: \"300ms\"", "");
        let mut stream = connect_tunnel(proxy.addr(), &target);
        std::thread::sleep(Duration::from_millis(500));
        let outcome = tls_get(
            &mut stream,
            client_config(true),
            server_name("good.test"),
            "good.test",
            HelloWrite::Whole,
        );
        assert_response(&outcome, "good.test");
        drop(stream);
        let line = assert_log(&proxy, "CONNECT", &target, 200, None, None);
        assert_allowed(&line, &origin, None);
    }

    /// By default (`delay_connect: false`) the origin is connected before
    /// the 200 and sees the connection of a refused tunnel, but not one
    /// byte; with `delay_connect: true` a refused SNI never causes a
    /// connection to it. Allowed tunnels work both ways.
    fn delay_connect_keeps_refused_tunnels_off_the_origin(bin) {
        let target = |o: &TlsOrigin| format!("good.test:{}", o.port());

        let origin = TlsOrigin::start();
        let proxy = proxy_with(bin, "", "");
        assert_access_denied(&tls_get_through(proxy.addr(), &target(&origin), Some("other.test")));
        let lines = wait_records(&proxy, &target(&origin), 1);
        assert_refused(&lines[0], "mismatch", Some("other.test"));
        let deadline = Instant::now() + IO_TIMEOUT;
        while origin.connections() < 1 {
            assert!(Instant::now() < deadline, "the origin saw no connection");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_no_bytes_reached(&origin);
        assert_eq!(origin.connections(), 1);
        assert_response(&tls_get_through(proxy.addr(), &target(&origin), Some("good.test")), "good.test");
        let lines = wait_records(&proxy, &target(&origin), 2);
        assert_allowed(&lines[1], &origin, Some("good.test"));
        drop(proxy);

        let origin = TlsOrigin::start();
        let proxy = proxy_with(bin, "delay_connect: true", "");
        assert_access_denied(&tls_get_through(proxy.addr(), &target(&origin), Some("other.test")));
        let lines = wait_records(&proxy, &target(&origin), 1);
        assert_refused(&lines[0], "mismatch", Some("other.test"));
        assert_eq!(origin.connections(), 0, "the origin saw a connection");
        assert_response(&tls_get_through(proxy.addr(), &target(&origin), Some("good.test")), "good.test");
        let lines = wait_records(&proxy, &target(&origin), 2);
        assert_allowed(&lines[1], &origin, Some("good.test"));
        assert_eq!(origin.connections(), 1);
    }

    /// A server that speaks first (an SMTP-like greeting) is relayed at
    /// once with the default connect-first, without waiting for the
    /// client's first bytes or `hello_timeout`; the client's answer,
    /// not TLS, is relayed too.
    fn server_speaking_first_is_relayed_at_once(bin) {
        let origin = RawOrigin::start(|mut s, _| {
            let _ = s.write_all(b"220 ready\r\n");
            let mut buf = [0u8; 64];
            if let Ok(n) = std::io::Read::read(&mut s, &mut buf) {
                let _ = s.write_all(&buf[..n]);
            }
        });
        let target = origin.addr().to_string();
        let proxy = proxy_with(bin, "", "");
        let mut stream = connect_tunnel(proxy.addr(), &target);
        let start = Instant::now();
        let mut greeting = [0u8; 11];
        std::io::Read::read_exact(&mut stream, &mut greeting).expect("the greeting");
        assert_eq!(&greeting, b"220 ready\r\n");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the greeting waited {:?} (for hello_timeout?)",
            start.elapsed()
        );
        stream.write_all(b"EHLO a.test\r\n").unwrap();
        assert_eq!(read_until_closed(&mut stream), b"EHLO a.test\r\n");
        drop(stream);
        let line = assert_log(&proxy, "CONNECT", &target, 200, Some(&target), None);
        assert_eq!(line.sni, None, "{line:?}");
        assert_eq!(line.client_sent, Some(connect_head_len(&target) + 13));
    }

    /// `alert: false`: a refused hello gets a bare close, no alert.
    fn refusal_without_alert_just_closes(bin) {
        let origin = TlsOrigin::start();
        let target = format!("good.test:{}", origin.port());
        let proxy = proxy_with(bin, "alert: false", "");
        let outcome = tls_get_through(proxy.addr(), &target, Some("other.test"));
        assert_eq!(outcome, TlsOutcome::Closed { handshake_done: false });
        let mut stream = connect_tunnel(proxy.addr(), &target);
        let (_, hello) = client_hello(client_config(true), server_name("other.test"));
        stream.write_all(&hello).unwrap();
        assert_eq!(read_until_closed(&mut stream), b"");
        for line in wait_records(&proxy, &target, 2) {
            assert_refused(&line, "mismatch", Some("other.test"));
        }
        assert_no_bytes_reached(&origin);
    }

    /// `peek: false`: the hello is not read at all; a mismatch goes
    /// through and the record has no SNI.
    fn peek_off_relays_without_looking(bin) {
        let origin = TlsOrigin::start();
        let target = format!("good.test:{}", origin.port());
        let proxy = proxy_with(bin, "peek: false", "");
        let outcome = tls_get_through(proxy.addr(), &target, Some("other.test"));
        assert_response(&outcome, "other.test");
        let line = assert_log(&proxy, "CONNECT", &target, 200, None, None);
        assert_allowed(&line, &origin, None);
    }

    /// Bytes sent right behind the CONNECT head (the hello in the same
    /// write, before the 200 arrives) are peeked like any others.
    fn hello_sent_with_the_connect_head(bin) {
        let origin = TlsOrigin::start();
        let proxy = proxy_with(bin, "", "");
        for (i, (sni, allowed)) in [("good.test", true), ("other.test", false)].into_iter().enumerate() {
            let target = format!("good.test:{}", origin.port());
            let mut stream = std::net::TcpStream::connect(proxy.addr()).unwrap();
            stream.set_nodelay(true).unwrap();
            stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            let (_, hello) = client_hello(client_config(true), server_name(sni));
            let mut first =
                format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").into_bytes();
            first.extend_from_slice(&hello);
            stream.write_all(&first).unwrap();
            if allowed {
                // The 200, then the origin's ServerHello flight.
                let mut got = Vec::new();
                let mut chunk = [0u8; 4096];
                while got.len() < ESTABLISHED.len() + 5 {
                    let n = std::io::Read::read(&mut stream, &mut chunk).unwrap();
                    assert!(n > 0, "closed after {got:02x?}");
                    got.extend_from_slice(&chunk[..n]);
                }
                assert_eq!(&got[..ESTABLISHED.len()], ESTABLISHED);
                assert_eq!(got[ESTABLISHED.len()], 0x16, "a handshake record from the origin");
            } else {
                let mut want = ESTABLISHED.to_vec();
                want.extend_from_slice(&ACCESS_DENIED_ALERT);
                assert_eq!(read_until_closed(&mut stream), want);
            }
            drop(stream);
            let lines = wait_records(&proxy, &target, i + 1);
            assert_eq!(lines[i].sni.as_deref(), Some(sni), "{:?}", lines[i]);
            assert_eq!(lines[i].status, if allowed { 200 } else { 403 }, "{:?}", lines[i]);
        }
    }

    /// A real browser's ClientHello (Chromium: GREASE values, a
    /// post-quantum key share, some 1.8 KB): read, allowed, relayed; the
    /// page shows what the origin said and the record names the SNI.
    /// Only good.test may be reached, so nothing Chromium tries on its
    /// own leaves the machine.
    fn chromium_hello_is_read_and_allowed(bin) {
        let Some(exe) = proxy_tests::chromium::executable() else { return };
        let origin = TlsOrigin::start();
        let proxy = Proxy::start_with_config(
            bin,
            "(policy: (default: Deny, allow: [\"good.test\"]))",
            RESOLVE,
        );
        let url = format!("https://good.test:{}/", origin.port());
        let through = [
            "--ignore-certificate-errors".to_owned(),
            format!("--proxy-server=http://{}", proxy.addr()),
        ];
        let dom = proxy_tests::chromium::dump_dom(&exe, &url, &through);
        assert!(dom.contains("hello over TLS, sni=good.test"), "DOM: {dom}");
        let target = format!("good.test:{}", origin.port());
        // Chromium may open more than one tunnel (a favicon, a
        // preconnect): one of them carried the page.
        let needle = format!(" CONNECT {target} -> ");
        let line = proxy.wait_for_log(
            |l| l.contains(&needle) && l.contains(" sni=good.test"),
            IO_TIMEOUT,
        );
        let line = LogLine::parse(&line).expect("a well-formed record");
        assert_allowed(&line, &origin, Some("good.test"));
        assert!(origin.server_names().contains(&Some("good.test".to_owned())));
    }
}
