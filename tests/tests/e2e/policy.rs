//! Access policy, authentication and limits: every refusal (status, HTML
//! body naming the rule, `Proxy-Status`, the access-log record with its
//! error and rule) and the paths that are let through, list files and
//! their report on stderr, and reloading on SIGHUP.
//!
//! Names are pinned to 127.0.0.1 with `--resolve`; the only addresses
//! connected to are loopback ones.

use crate::{assert_log, request};
use base64::Engine as _;
use proxy_tests::{cases, Client, EchoServer, LogLine, Origin, Proxy, Response, TempFile};
use std::time::{Duration, Instant};

/// `Basic base64(user:password)`.
fn basic(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

/// `GET url` with extra header fields.
fn get_with(c: &mut Client, url: &str, headers: &[(&str, &str)]) -> Response {
    c.send(request("GET", url, headers, b""));
    c.read_response("GET")
}

fn connect_request(authority: &str, headers: &[(&str, &str)]) -> String {
    let mut out = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out
}

/// Asserts a policy refusal end to end: status, `Proxy-Status` error
/// type, an HTML body (and Proxy-Status details) naming `rule`, and the
/// access-log record of `method target` with the error and the rule.
/// `upstream` as for [`assert_log`].
#[allow(clippy::too_many_arguments)]
fn assert_refused(
    proxy: &Proxy,
    resp: &Response,
    method: &str,
    target: &str,
    status: u16,
    error: &str,
    rule: &str,
    upstream: Option<&str>,
) -> LogLine {
    resp.assert_error(status, error, rule);
    let details = resp.header("proxy-status").unwrap_or("");
    assert!(
        details.contains(rule),
        "Proxy-Status {details:?} should name the rule {rule:?}"
    );
    let line = assert_log(proxy, method, target, status, upstream, Some(error));
    assert_eq!(line.rule.as_deref(), Some(rule), "rule in {line:?}");
    line
}

/// Waits until `f` gives `Some`, for at most `within`.
fn eventually<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The blocklist in the seed format: comments (whole-line and trailing),
/// a blank line, a name, a wildcard, CIDRs, and one bad line (line 7).
const BLOCKLIST: &str = "# Blocked destinations\n\
example.com  # trailing comment\n\
*.tracker.test\n\
10.0.0.0/8\n\
127.0.0.2/32\n\
\n\
bad domain here\n";

/// A configuration that changes nothing: the default policy applies.
const DEFAULTS: &str = "(proxy_name: \"proxy-rs\")";

/// The entries BLOCKLIST loads.
const BLOCKLIST_ENTRIES: usize = 4;

/// `alice:password` as `htpasswd -s` writes it.
const ALICE_SHA: &str = "alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=";

/// Fields the origin must never see from the proxy's clients.
fn assert_no_credentials(origin: &Origin) {
    for r in origin.requests() {
        assert!(
            !r.has("proxy-authorization"),
            "the credential reached the origin: {r:#?}"
        );
    }
}

cases! {
    /// A listed name is refused in every spelling (case, trailing dot,
    /// subdomain) with a 403 naming the list line; a lookalike is not;
    /// the bad line is reported with file and line, the rest loaded; the
    /// connection stays usable after the 403.
    fn blocklist_denies_every_spelling_of_a_listed_name(bin) {
        let origin = Origin::echo_target();
        let port = origin.addr().port();
        let list = TempFile::new("blocklist.txt", BLOCKLIST);
        let proxy = Proxy::start(bin, &[
            "--blocklist", list.name(),
            "--resolve", "example.com=127.0.0.1",
            "--resolve", "notexample.com=127.0.0.1",
            "--resolve", "example.com.evil.test=127.0.0.1",
        ]);
        let stderr = proxy.stderr_lines();
        let summary = format!(
            "policy: {}: {BLOCKLIST_ENTRIES} entries loaded, 1 lines rejected",
            list.name()
        );
        assert!(stderr.contains(&summary), "want {summary:?} in stderr:\n{stderr:#?}");
        let bad = format!("policy: {}:7: ", list.name());
        assert!(
            stderr.iter().any(|l| l.starts_with(&bad) && l.contains("bad domain here")),
            "want the bad line reported as {bad:?}...; stderr:\n{stderr:#?}"
        );

        let rule = format!("deny example.com ({}:2)", list.name());
        let mut c = proxy.connect();
        for (i, url) in [
            format!("http://example.com:{port}/plain"),
            format!("http://EXAMPLE.COM:{port}/upper"),
            format!("http://Example.Com.:{port}/trailing-dot"),
            format!("http://www.example.com:{port}/sub"),
            "http://a.b.EXAMPLE.com./deep".to_owned(),
        ]
        .into_iter()
        .enumerate()
        {
            let resp = c.get(&url);
            assert_refused(&proxy, &resp, "GET", &url, 403, "http_request_denied", &rule, Some("-"));
            // The refusal keeps the connection: the next request on it
            // goes through.
            let ok = format!("http://notexample.com:{port}/after{i}");
            let resp = c.get(&ok);
            assert_eq!(resp.status(), 200, "after a 403 on the same connection: {resp:#?}");
        }
        // Lookalikes are not under the rule.
        let url = format!("http://example.com.evil.test:{port}/lookalike");
        assert_eq!(c.get(&url).status(), 200);
        let line = assert_log(&proxy, "GET", &url, 200, Some(&origin.addr().to_string()), None);
        assert_eq!(line.rule, None);
        // No refused request reached the origin.
        for r in origin.requests() {
            assert!(r.target.starts_with("/after") || r.target == "/lookalike", "{r:#?}");
        }
        // A CONNECT to a listed name is refused the same way.
        let target = "www.example.com:443";
        c.send(connect_request(target, &[]));
        let resp = c.read_response("CONNECT");
        assert_refused(&proxy, &resp, "CONNECT", target, 403, "http_request_denied", &rule, Some("-"));
    }

    /// `--blacklist` is the same flag; address entries of the list deny
    /// the addresses a name resolves to.
    fn blacklist_alias_and_address_entries(bin) {
        let origin = Origin::echo_target();
        let port = origin.addr().port();
        let list = TempFile::new("blacklist.txt", BLOCKLIST);
        let proxy = Proxy::start(bin, &[
            "--blacklist", list.name(),
            "--resolve", "cidr.test=127.0.0.2",
            "--resolve", "fine.test=127.0.0.1",
        ]);
        let mut c = proxy.connect();
        let url = format!("http://example.com:{port}/alias");
        let resp = c.get(&url);
        let rule = format!("deny example.com ({}:2)", list.name());
        assert_refused(&proxy, &resp, "GET", &url, 403, "http_request_denied", &rule, Some("-"));
        // `*.tracker.test` covers names under it.
        let url = format!("http://a.tracker.test:{port}/w");
        let resp = c.get(&url);
        let rule = format!("deny *.tracker.test ({}:3)", list.name());
        assert_refused(&proxy, &resp, "GET", &url, 403, "http_request_denied", &rule, Some("-"));
        // `127.0.0.2/32` (line 5) denies a name that resolves into it.
        let url = format!("http://cidr.test:{port}/cidr");
        let resp = c.get(&url);
        let rule = format!("127.0.0.2: deny 127.0.0.2/32 ({}:5)", list.name());
        assert_refused(&proxy, &resp, "GET", &url, 403, "destination_ip_prohibited", &rule, None);
        // And an IP literal in it.
        let url = format!("http://127.0.0.2:{port}/literal");
        let resp = c.get(&url);
        assert_refused(&proxy, &resp, "GET", &url, 403, "destination_ip_prohibited", &rule, Some("-"));
        assert_eq!(c.get(&format!("http://fine.test:{port}/fine")).status(), 200);
        assert_eq!(origin.connections(), 1, "only the allowed request connected");
    }

    /// `*.tracker.test` stops names under it but not `tracker.test`
    /// itself; the most specific rule wins (`allow api.example.test` over
    /// `deny example.test`), for names under it too.
    fn wildcard_and_most_specific_rule_wins(bin) {
        let origin = Origin::echo_target();
        let port = origin.addr().port();
        let mut args = Vec::new();
        for name in ["tracker.test", "api.example.test", "v1.api.example.test", "example.test"] {
            args.push("--resolve".to_owned());
            args.push(format!("{name}=127.0.0.1"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let proxy = Proxy::start_with_config(
            bin,
            "(policy: (deny: [\"*.tracker.test\", \"example.test\"], allow: [\"api.example.test\"]))",
            &args,
        );
        let mut c = proxy.connect();
        for (host, rule) in [
            ("a.tracker.test", Some("deny *.tracker.test (config)")),
            ("x.y.tracker.test", Some("deny *.tracker.test (config)")),
            ("tracker.test", None),
            ("example.test", Some("deny example.test (config)")),
            ("www.example.test", Some("deny example.test (config)")),
            ("api.example.test", None),
            ("v1.api.example.test", None),
        ] {
            let url = format!("http://{host}:{port}/{host}");
            let resp = c.get(&url);
            match rule {
                Some(rule) => {
                    assert_refused(&proxy, &resp, "GET", &url, 403, "http_request_denied", rule, Some("-"));
                }
                None => {
                    assert_eq!(resp.status(), 200, "{host}: {resp:#?}");
                    assert_eq!(resp.text(), format!("/{host}"));
                    let line = assert_log(&proxy, "GET", &url, 200, None, None);
                    assert_eq!(line.rule, None);
                }
            }
        }
        let seen: Vec<String> = origin.requests().into_iter().map(|r| r.target).collect();
        assert_eq!(seen, ["/tracker.test", "/api.example.test", "/v1.api.example.test"]);
    }

    /// An allow-list file: its entries beat a wider deny (most specific
    /// wins), and its load is reported.
    fn allow_list_file_overrides_a_wider_deny(bin) {
        let origin = Origin::echo_target();
        let port = origin.addr().port();
        let list = TempFile::new("allowlist.txt", "# allowed\nok.corp.test   # the one\n");
        let config = format!(
            "(policy: (deny: [\"corp.test\"], allow_lists: [\"{}\"]))",
            list.name()
        );
        let proxy = Proxy::start_with_config(bin, &config, &[
            "--resolve", "ok.corp.test=127.0.0.1",
            "--resolve", "www.ok.corp.test=127.0.0.1",
            "--resolve", "other.corp.test=127.0.0.1",
        ]);
        let summary = format!("policy: {}: 1 entries loaded, 0 lines rejected", list.name());
        assert!(proxy.stderr_lines().contains(&summary), "{:#?}", proxy.stderr_lines());
        let mut c = proxy.connect();
        assert_eq!(c.get(&format!("http://ok.corp.test:{port}/ok")).status(), 200);
        assert_eq!(c.get(&format!("http://www.ok.corp.test:{port}/sub")).status(), 200);
        let url = format!("http://other.corp.test:{port}/other");
        let resp = c.get(&url);
        assert_refused(&proxy, &resp, "GET", &url, 403, "http_request_denied",
            "deny corp.test (config)", Some("-"));
        assert_eq!(origin.requests().len(), 2);
    }

    /// `default: Deny`: only names an allow rule covers pass; the rest
    /// are refused with the default named as the rule.
    fn default_deny_lets_only_allowed_names_through(bin) {
        let origin = Origin::echo_target();
        let port = origin.addr().port();
        let proxy = Proxy::start_with_config(bin, "(policy: (default: Deny, allow: [\"ok.test\"]))", &[
            "--resolve", "ok.test=127.0.0.1",
            "--resolve", "other.test=127.0.0.1",
        ]);
        let mut c = proxy.connect();
        assert_eq!(c.get(&format!("http://ok.test:{port}/ok")).status(), 200);
        let url = format!("http://other.test:{port}/other");
        let resp = c.get(&url);
        assert_refused(&proxy, &resp, "GET", &url, 403, "http_request_denied",
            "no allow rule (policy.default is Deny)", Some("-"));
        assert_eq!(origin.requests().len(), 1);
    }

    /// `--dev-allow-private` lifts the guard for trying the proxy against
    /// a local origin, and start-up says loudly that it is on; without
    /// it the refusal names the key that would.
    fn dev_allow_private_reaches_a_loopback_origin_and_says_so(bin) {
        let origin = Origin::echo_target();
        let url = origin.url("/local");
        let guarded = Proxy::start_with_policy(bin, DEFAULTS, &[]);
        let resp = guarded.connect().get(&url);
        resp.assert_error(403, "destination_ip_prohibited", "policy.allow_private_destinations or --dev-allow-private lifts it");
        assert!(
            !guarded.stderr_lines().iter().any(|l| l.contains("private destinations allowed")),
            "{:?}",
            guarded.stderr_lines()
        );

        let open = Proxy::start_with_policy(bin, DEFAULTS, &["--dev-allow-private"]);
        let warning = open.wait_for_stderr(|l| l.contains("private destinations allowed"), Duration::from_secs(5));
        assert!(warning.contains("--dev-allow-private") && warning.contains("development only"), "{warning}");
        let resp = open.connect().get(&url);
        assert_eq!(resp.status(), 200, "{resp:#?}");
        assert_eq!(resp.text(), "/local");
        assert_log(&open, "GET", &url, 200, Some(&origin.addr().to_string()), None);
    }

    /// The default policy (no loopback allowance): IP literals in
    /// loopback, however spelt, and a name that resolves to loopback (DNS
    /// rebinding) are refused with destination_ip_prohibited, and the
    /// origin never sees a connection.
    fn ssrf_guard_denies_private_destinations_by_default(bin) {
        let origin = Origin::echo_target();
        let port = origin.addr().port();
        let proxy = Proxy::start_with_policy(bin, DEFAULTS, &[
            "--resolve", "rebind.test=127.0.0.1",
        ]);
        let builtin = "deny 127.0.0.0/8 (built-in private range; policy.allow_private_destinations or --dev-allow-private lifts it)";
        let mut c = proxy.connect();
        let url = format!("http://127.0.0.1:{port}/literal");
        let resp = c.get(&url);
        let rule = format!("127.0.0.1: {builtin}");
        assert_refused(&proxy, &resp, "GET", &url, 403, "destination_ip_prohibited", &rule, Some("-"));
        resp.assert_error(403, "destination_ip_prohibited", "destination address denied by policy");

        // IPv4-mapped IPv6 is the IPv4 address it carries.
        let url = format!("http://[::ffff:127.0.0.1]:{port}/mapped");
        let resp = c.get(&url);
        resp.assert_error(403, "destination_ip_prohibited", builtin);
        let line = assert_log(&proxy, "GET", &url, 403, Some("-"), Some("destination_ip_prohibited"));
        assert!(line.rule.as_deref().is_some_and(|r| r.ends_with(builtin)), "{line:?}");

        // ::1 is guarded too.
        let url = format!("http://[::1]:{port}/v6");
        let resp = c.get(&url);
        resp.assert_error(403, "destination_ip_prohibited", "deny ::1/128 (built-in private range; policy.allow_private_destinations or --dev-allow-private lifts it)");

        // DNS rebinding: a name that resolves to loopback is refused
        // after resolution, before any connection.
        let url = format!("http://rebind.test:{port}/rebind");
        let resp = c.get(&url);
        assert_refused(&proxy, &resp, "GET", &url, 403, "destination_ip_prohibited", &rule, None);
        // A CONNECT to a loopback literal on 443 meets the same guard.
        let target = "127.0.0.1:443";
        c.send(connect_request(target, &[]));
        let resp = c.read_response("CONNECT");
        resp.assert_error(403, "destination_ip_prohibited", builtin);
        // A refused CONNECT may end the connection, if it says so.
        if c.closes_within(Duration::from_millis(200)) {
            assert!(
                resp.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")),
                "closed without announcing it: {resp:#?}"
            );
        }

        // Numeric spellings of 127.0.0.1 are either read as that address
        // or refused; never connected to.
        for host in ["2130706433", "0177.0.0.1", "0x7f.0.0.1"] {
            let mut c = proxy.connect();
            let url = format!("http://{host}:{port}/numeric");
            let resp = c.get(&url);
            assert!(
                matches!(resp.status(), 400 | 403),
                "{host}: expected a refusal, got {resp:#?}"
            );
            if resp.status() == 403 {
                resp.assert_error(403, "destination_ip_prohibited", builtin);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(origin.connections(), 0, "the origin saw a connection: {:#?}", origin.requests());
    }

    /// An explicit allow of the address lifts the guard for it only.
    fn explicit_allow_lifts_the_ssrf_guard(bin) {
        let origin = Origin::echo_target();
        let port = origin.addr().port();
        let proxy = Proxy::start_with_policy(
            bin,
            "(policy: (allow: [\"127.0.0.1/32\"]))",
            &["--resolve", "rebind.test=127.0.0.1", "--resolve", "other.test=127.0.0.3"],
        );
        let mut c = proxy.connect();
        let url = format!("http://rebind.test:{port}/named");
        let resp = c.get(&url);
        assert_eq!(resp.status(), 200, "{resp:#?}");
        assert_eq!(resp.text(), "/named");
        let line = assert_log(&proxy, "GET", &url, 200, Some(&origin.addr().to_string()), None);
        assert_eq!(line.rule, None);
        assert_eq!(c.get(&origin.url("/literal")).status(), 200);
        // The rest of 127.0.0.0/8 stays guarded.
        let url = format!("http://other.test:{port}/other");
        let resp = c.get(&url);
        assert_refused(&proxy, &resp, "GET", &url, 403, "destination_ip_prohibited",
            "127.0.0.3: deny 127.0.0.0/8 (built-in private range; policy.allow_private_destinations or --dev-allow-private lifts it)", None);
    }

    /// A client outside `clients` gets 403 and nothing goes upstream.
    fn clients_outside_the_acl_get_403(bin) {
        let origin = Origin::echo_target();
        let proxy = Proxy::start_with_config(bin, "(policy: (clients: [\"10.0.0.0/8\"]))", &[]);
        let mut c = proxy.connect();
        let url = origin.url("/acl");
        let resp = c.get(&url);
        assert_refused(&proxy, &resp, "GET", &url, 403, "http_request_denied",
            "not in policy.clients", Some("-"));
        resp.assert_error(403, "http_request_denied", "clients from this address may not use this proxy");
        let echo = EchoServer::start();
        let target = echo.addr().to_string();
        let mut c = proxy.connect();
        c.send(connect_request(&target, &[]));
        let resp = c.read_response("CONNECT");
        assert_refused(&proxy, &resp, "CONNECT", &target, 403, "http_request_denied",
            "not in policy.clients", Some("-"));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(origin.connections(), 0);
        assert_eq!(echo.connections(), 0);
    }

    /// CONNECT goes to 443 only by default; `connect_ports` opens others.
    fn connect_only_to_listed_ports(bin) {
        let echo = EchoServer::start();
        let port = echo.addr().port();
        let target = echo.addr().to_string();
        let proxy = Proxy::start_with_policy(bin, DEFAULTS, &[]);
        let mut c = proxy.connect();
        c.send(connect_request(&target, &[]));
        let resp = c.read_response("CONNECT");
        let rule = format!("port {port} not in policy.connect_ports");
        assert_refused(&proxy, &resp, "CONNECT", &target, 403, "http_request_denied", &rule, Some("-"));
        resp.assert_error(403, "http_request_denied", "port not allowed");
        drop(proxy);
        assert_eq!(echo.connections(), 0);

        let config = format!("(policy: (allow_private_destinations: true, connect_ports: [{port}]))");
        let proxy = Proxy::start_with_policy(bin, &config, &[]);
        let mut c = proxy.connect();
        c.send(connect_request(&target, &[]));
        assert_eq!(c.read_head().status, 200);
        c.send("through");
        assert_eq!(c.read_exact_bytes(7), b"through");
        c.shutdown_write();
        assert!(c.read_to_end().is_empty());
        let line = assert_log(&proxy, "CONNECT", &target, 200, Some(&target), None);
        assert_eq!(line.rule, None);
        // 443 is no longer in the list.
        let mut c = proxy.connect();
        c.send(connect_request("127.0.0.1:443", &[]));
        let resp = c.read_response("CONNECT");
        resp.assert_error(403, "http_request_denied", "port 443 not in policy.connect_ports");
    }

    /// A user's own `connect_ports` replace the general ones for that
    /// user only; CONNECT needs credentials like any request.
    fn per_user_connect_ports(bin) {
        let echo = EchoServer::start();
        let port = echo.addr().port();
        let target = echo.addr().to_string();
        let users = TempFile::new(
            "htpasswd",
            "admin:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\nbob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n",
        );
        let config = format!(
            "(policy: (allow_private_destinations: true, users: {{\"admin\": (connect_ports: Some([{port}]))}}))"
        );
        let proxy = Proxy::start_with_policy(bin, &config, &["--auth-file", users.name()]);

        // No credentials: 407 before the port is even looked at.
        let mut c = proxy.connect();
        c.send(connect_request(&target, &[]));
        let resp = c.read_response("CONNECT");
        assert_refused(&proxy, &resp, "CONNECT", &target, 407, "http_request_denied", "no credentials", Some("-"));

        // bob: the general rule (443 only).
        let mut c = proxy.connect();
        let bob = basic("bob", "password");
        c.send(connect_request(&target, &[("Proxy-Authorization", &bob)]));
        let resp = c.read_response("CONNECT");
        resp.assert_error(403, "http_request_denied", &format!("port {port} not in policy.connect_ports"));
        let line = proxy.wait_for_log(|l| l.contains(" 403 ") && l.contains(" user=bob"), proxy_tests::IO_TIMEOUT);
        let line = LogLine::parse(&line).expect("log line shape");
        assert_eq!(line.method, "CONNECT");
        assert_eq!(line.rule.as_deref(), Some(format!("port {port} not in policy.connect_ports").as_str()));

        // admin: their own list.
        let mut c = proxy.connect();
        let admin = basic("admin", "password");
        c.send(connect_request(&target, &[("Proxy-Authorization", &admin)]));
        assert_eq!(c.read_head().status, 200);
        c.send("admin");
        assert_eq!(c.read_exact_bytes(5), b"admin");
        c.shutdown_write();
        assert!(c.read_to_end().is_empty());
        let line = proxy.wait_for_log(|l| l.contains(" 200 ") && l.contains(" user=admin"), proxy_tests::IO_TIMEOUT);
        let line = LogLine::parse(&line).expect("log line shape");
        assert_eq!(line.upstream, target);
        assert_eq!(echo.connections(), 1, "only admin's tunnel connected");
        assert!(!proxy.log_lines().iter().any(|l| l.contains(&admin[6..]) || l.contains(&bob[6..])),
            "credentials in the log: {:#?}", proxy.log_lines());
    }

    /// `methods` restricts methods: others refused, GET and HEAD fine. A
    /// refusal of a request with a body (left unread) announces the close.
    fn methods_not_listed_get_403(bin) {
        let origin = Origin::echo_target();
        let proxy = Proxy::start_with_config(bin, "(policy: (methods: [\"GET\", \"HEAD\"]))", &[]);
        let mut c = proxy.connect();
        let url = origin.url("/delete");
        c.send(request("DELETE", &url, &[], b""));
        let resp = c.read_response("DELETE");
        assert_refused(&proxy, &resp, "DELETE", &url, 403, "http_request_denied",
            "DELETE not in policy.methods", Some("-"));
        resp.assert_error(403, "http_request_denied", "method not allowed");
        assert_eq!(c.get(&origin.url("/get")).status(), 200, "the connection goes on");

        let url = origin.url("/post");
        c.send(request("POST", &url, &[], b"data"));
        let resp = c.read_response("POST");
        assert_refused(&proxy, &resp, "POST", &url, 403, "http_request_denied",
            "POST not in policy.methods", Some("-"));
        if !c.closes_within(Duration::from_millis(300)) {
            // Kept open: then the body must have been read past.
            assert_eq!(c.get(&origin.url("/after-post")).status(), 200);
        } else {
            assert!(
                resp.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")),
                "closed without announcing it: {resp:#?}"
            );
        }
        let mut c = proxy.connect();
        c.send(request("HEAD", &origin.url("/head"), &[], b""));
        assert_eq!(c.read_response("HEAD").status(), 200);
        let seen: Vec<String> = origin.requests().into_iter().map(|r| r.method).collect();
        assert!(seen.iter().all(|m| m == "GET" || m == "HEAD"), "{seen:?}");
        assert_eq!(seen.last().map(String::as_str), Some("HEAD"));
    }

    /// Basic proxy authentication with `--auth-file`: 407 without or with
    /// wrong credentials (on the same connection, which stays usable);
    /// `{SHA}`, `$2y$` and `$2b$` bcrypt users get through; the origin
    /// never sees the credential; the log names the user, never the
    /// credential.
    fn basic_auth_with_htpasswd(bin) {
        let origin = Origin::echo_target();
        let carol = bcrypt::hash("carol's secret", 4).expect("bcrypt");
        let carol_2y = carol.replacen("$2b$", "$2y$", 1);
        assert!(carol_2y.starts_with("$2y$04$"), "{carol_2y}");
        let dave = bcrypt::hash("dave's secret", 4).expect("bcrypt");
        assert!(dave.starts_with("$2b$04$"), "{dave}");
        let users = TempFile::new(
            "htpasswd",
            &format!("# proxy users\n{ALICE_SHA}\ncarol:{carol_2y}\n\ndave:{dave}\n"),
        );
        let proxy = Proxy::start(bin, &["--auth-file", users.name()]);
        assert!(
            !proxy.stderr_lines().iter().any(|l| l.contains(users.name())),
            "a clean htpasswd file is not complained about: {:#?}",
            proxy.stderr_lines()
        );
        let mut c = proxy.connect();

        let url = origin.url("/none");
        let resp = c.get(&url);
        assert_refused(&proxy, &resp, "GET", &url, 407, "http_request_denied", "no credentials", Some("-"));
        resp.assert_error(407, "http_request_denied", "proxy authentication required");
        let challenge = resp.header("proxy-authenticate").unwrap_or_else(|| panic!("no Proxy-Authenticate in {resp:#?}"));
        assert!(challenge.starts_with("Basic realm=\"proxy\""), "{challenge:?}");

        let wrong = basic("alice", "wrong");
        let url = origin.url("/wrong");
        let resp = get_with(&mut c, &url, &[("Proxy-Authorization", &wrong)]);
        assert_refused(&proxy, &resp, "GET", &url, 407, "http_request_denied",
            "wrong user name or password", Some("-"));
        assert!(resp.header("proxy-authenticate").is_some());
        let nobody = basic("mallory", "password");
        let url = origin.url("/unknown");
        let resp = get_with(&mut c, &url, &[("Proxy-Authorization", &nobody)]);
        assert_refused(&proxy, &resp, "GET", &url, 407, "http_request_denied",
            "wrong user name or password", Some("-"));
        let url = origin.url("/garbled");
        let resp = get_with(&mut c, &url, &[("Proxy-Authorization", "Basic !!!not-base64")]);
        assert_eq!(resp.status(), 407, "{resp:#?}");

        // The retry with credentials on the same connection.
        let alice = basic("alice", "password");
        let url = origin.url("/alice");
        let resp = get_with(&mut c, &url, &[("Proxy-Authorization", &alice)]);
        assert_eq!(resp.status(), 200, "{resp:#?}");
        assert_eq!(resp.text(), "/alice");
        let line = assert_log(&proxy, "GET", &url, 200, Some(&origin.addr().to_string()), None);
        assert_eq!(line.user.as_deref(), Some("alice"));
        assert_eq!(line.rule, None);

        for (user, password, path) in [
            ("carol", "carol's secret", "/carol"),
            ("dave", "dave's secret", "/dave"),
        ] {
            let url = origin.url(path);
            let cred = basic(user, password);
            let resp = get_with(&mut c, &url, &[("Proxy-Authorization", &cred)]);
            assert_eq!(resp.status(), 200, "{user}: {resp:#?}");
            let line = assert_log(&proxy, "GET", &url, 200, None, None);
            assert_eq!(line.user.as_deref(), Some(user));
            // Right user, wrong password.
            let url = origin.url(&format!("{path}-wrong"));
            let cred = basic(user, "nope");
            let resp = get_with(&mut c, &url, &[("Proxy-Authorization", &cred)]);
            assert_eq!(resp.status(), 407, "{user}: {resp:#?}");
        }

        let seen: Vec<String> = origin.requests().into_iter().map(|r| r.target).collect();
        assert_eq!(seen, ["/alice", "/carol", "/dave"]);
        assert_no_credentials(&origin);
        for l in proxy.log_lines() {
            for secret in [&alice, &wrong, &nobody] {
                assert!(!l.contains(&secret[6..]), "credential in the log: {l}");
            }
            assert!(!l.contains("'s secret"), "password in the log: {l}");
        }
    }

    /// Plain `user:password` lines are refused (and reported) unless
    /// `allow_plaintext`, which loads them with a WARNING.
    fn plaintext_passwords_need_opt_in(bin) {
        let origin = Origin::echo_target();
        let users = TempFile::new("htpasswd", &format!("plain:plain-pass\n{ALICE_SHA}\n"));
        let proxy = Proxy::start(bin, &["--auth-file", users.name()]);
        let report = format!("policy: {}:1: ", users.name());
        let stderr = proxy.stderr_lines();
        assert!(
            stderr.iter().any(|l| l.starts_with(&report) && l.contains("plain")),
            "want the plain-text line reported as {report:?}...; stderr:\n{stderr:#?}"
        );
        assert!(
            !stderr.iter().any(|l| l.starts_with("WARNING") && l.contains("plain-text")),
            "{stderr:#?}"
        );
        let mut c = proxy.connect();
        let url = origin.url("/plain-refused");
        let resp = get_with(&mut c, &url, &[("Proxy-Authorization", &basic("plain", "plain-pass"))]);
        assert_eq!(resp.status(), 407, "{resp:#?}");
        let resp = get_with(&mut c, &origin.url("/alice"), &[("Proxy-Authorization", &basic("alice", "password"))]);
        assert_eq!(resp.status(), 200, "the good line still loads: {resp:#?}");
        drop(proxy);

        let config = format!(
            "(policy: (auth: Some((htpasswd: \"{}\", allow_plaintext: true))))",
            users.name()
        );
        let proxy = Proxy::start_with_config(bin, &config, &[]);
        let stderr = proxy.stderr_lines();
        assert!(
            stderr.iter().any(|l| l.starts_with("WARNING") && l.contains("plain-text")),
            "want a WARNING about plain-text passwords; stderr:\n{stderr:#?}"
        );
        let mut c = proxy.connect();
        let url = origin.url("/plain-ok");
        let resp = get_with(&mut c, &url, &[("Proxy-Authorization", &basic("plain", "plain-pass"))]);
        assert_eq!(resp.status(), 200, "{resp:#?}");
        let line = assert_log(&proxy, "GET", &url, 200, None, None);
        assert_eq!(line.user.as_deref(), Some("plain"));
        let resp = get_with(&mut c, &origin.url("/plain-wrong"), &[("Proxy-Authorization", &basic("plain", "plain-pas"))]);
        assert_eq!(resp.status(), 407);
        assert_no_credentials(&origin);
    }

    /// Over `rate`: 429 with a positive `Retry-After`, naming the client.
    fn rate_limit_answers_429_with_retry_after(bin) {
        let origin = Origin::echo_target();
        let proxy = Proxy::start_with_config(bin, "(policy: (rate: Some((requests: 3, per: \"10s\"))))", &[]);
        let mut c = proxy.connect();
        for i in 0..3 {
            assert_eq!(c.get(&origin.url(&format!("/r{i}"))).status(), 200);
        }
        let url = origin.url("/r3");
        let resp = c.get(&url);
        assert_refused(&proxy, &resp, "GET", &url, 429, "http_request_denied",
            "policy.rate for 127.0.0.1", Some("-"));
        resp.assert_error(429, "http_request_denied", "too many requests");
        let after = resp.header("retry-after").unwrap_or_else(|| panic!("no Retry-After in {resp:#?}"));
        let secs: u64 = after.parse().unwrap_or_else(|_| panic!("Retry-After {after:?} is not an integer"));
        assert!((1..=10).contains(&secs), "Retry-After {secs}");
        // Another connection from the same address is limited too.
        let mut d = proxy.connect();
        assert_eq!(d.get(&origin.url("/r4")).status(), 429);
        assert_eq!(origin.requests().len(), 3);
    }

    /// Over `max_connections_per_ip`: 503 at once, without a request, and
    /// closed; the others keep working, and a freed place is taken again.
    fn per_ip_connection_cap_gives_503_at_once(bin) {
        connection_cap(bin, "max_connections_per_ip", "limits.max_connections_per_ip (2)");
    }

    /// Over `max_connections`: the same.
    fn global_connection_cap_gives_503_at_once(bin) {
        connection_cap(bin, "max_connections", "limits.max_connections (2)");
    }

    /// A body over `max_body_bytes`: 413, announced by Content-Length
    /// before anything goes upstream, or found while relaying chunks.
    fn body_over_the_limit_gets_413(bin) {
        let origin = Origin::echo_target();
        let proxy = Proxy::start_with_config(bin, "(limits: (max_body_bytes: Some(\"1KiB\")))", &[]);
        let mut c = proxy.connect();
        let url = origin.url("/big");
        c.send(format!(
            "POST {url} HTTP/1.1\r\nHost: {}\r\nContent-Length: 2000\r\n\r\n",
            origin.authority()
        ));
        let resp = c.read_response("POST");
        resp.assert_error(413, "http_request_error", "request body larger than 1024 bytes");
        assert_log(&proxy, "POST", &url, 413, Some("-"), Some("http_request_error"));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(origin.connections(), 0, "nothing went upstream");

        // Up to the limit is fine.
        let mut c = proxy.connect();
        let url = origin.url("/fits");
        c.send(request("POST", &url, &[], &[b'x'; 1024]));
        assert_eq!(c.read_response("POST").status(), 200);
        assert_eq!(origin.wait_requests(1)[0].body.len(), 1024);

        // Chunked: the limit is found while relaying.
        let mut c = proxy.connect();
        let url = origin.url("/chunked");
        c.send(format!(
            "POST {url} HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
            origin.authority()
        ));
        c.send(format!("{:x}\r\n{}\r\n", 600, "a".repeat(600)));
        c.send(format!("{:x}\r\n{}\r\n", 600, "b".repeat(600)));
        let resp = c.read_response("POST");
        resp.assert_error(413, "http_request_error", "request body larger than 1024 bytes");
        assert_log(&proxy, "POST", &url, 413, None, Some("http_request_error"));
        c.assert_closed();
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            origin.requests().iter().all(|r| r.target != "/chunked"),
            "the origin got a complete over-limit request"
        );
    }

    /// SIGHUP reloads the lists: a name added to the blocklist is refused
    /// on new connections and on an open keep-alive one; an open tunnel
    /// is not dropped.
    fn sighup_reload_applies_new_rules(bin) {
        let origin = Origin::echo_target();
        let port = origin.addr().port();
        let echo = EchoServer::start();
        let list = TempFile::new("blocklist.txt", "# reloaded\nearly.test\n");
        let proxy = Proxy::start(bin, &[
            "--blocklist", list.name(),
            "--resolve", "late.test=127.0.0.1",
            "--resolve", "early.test=127.0.0.1",
        ]);
        let mut keep = proxy.connect();
        assert_eq!(keep.get(&format!("http://late.test:{port}/before")).status(), 200);
        let mut tunnel = proxy.connect();
        tunnel.send(connect_request(&echo.addr().to_string(), &[]));
        assert_eq!(tunnel.read_head().status, 200);
        tunnel.send("one");
        assert_eq!(tunnel.read_exact_bytes(3), b"one");

        list.append("late.test   # added\n");
        let said = proxy.reload();
        assert_eq!(said, "reloaded configuration");
        let summary = format!("policy: {}: 2 entries loaded, 0 lines rejected", list.name());
        let count = proxy.stderr_lines().iter().filter(|l| **l == summary).count();
        assert_eq!(count, 1, "want the reload's report {summary:?}; stderr:\n{:#?}", proxy.stderr_lines());

        let rule = format!("deny late.test ({}:3)", list.name());
        let url = format!("http://late.test:{port}/new-connection");
        let resp = proxy.connect().get(&url);
        assert_refused(&proxy, &resp, "GET", &url, 403, "http_request_denied", &rule, Some("-"));
        let url = format!("http://late.test:{port}/kept-connection");
        let resp = keep.get(&url);
        assert_refused(&proxy, &resp, "GET", &url, 403, "http_request_denied", &rule, Some("-"));
        // The old rule is still there, and other names still pass.
        let url = format!("http://early.test:{port}/early");
        assert_eq!(keep.get(&url).status(), 403);
        assert_eq!(keep.get(&origin.url("/other")).status(), 200);
        // The tunnel opened before the reload still relays.
        tunnel.send("two");
        assert_eq!(tunnel.read_exact_bytes(3), b"two");
        tunnel.shutdown_write();
        assert!(tunnel.read_to_end().is_empty());
        let targets: Vec<String> = origin.requests().into_iter().map(|r| r.target).collect();
        assert_eq!(targets, ["/before", "/other"]);
    }

    /// SIGHUP reloads the users: a user added to the htpasswd file can
    /// sign in on a connection opened before the reload; a removed one
    /// cannot.
    fn sighup_reloads_users(bin) {
        let origin = Origin::echo_target();
        let users = TempFile::new("htpasswd", &format!("{ALICE_SHA}\n"));
        let proxy = Proxy::start(bin, &["--auth-file", users.name()]);
        let bob = bcrypt::hash("bob's secret", 4).expect("bcrypt");
        let (alice_cred, bob_cred) = (basic("alice", "password"), basic("bob", "bob's secret"));
        let mut keep = proxy.connect();
        let resp = get_with(&mut keep, &origin.url("/bob-before"), &[("Proxy-Authorization", &bob_cred)]);
        assert_eq!(resp.status(), 407, "{resp:#?}");
        assert_eq!(get_with(&mut keep, &origin.url("/alice-before"), &[("Proxy-Authorization", &alice_cred)]).status(), 200);

        users.write(&format!("bob:{bob}\n"));
        assert_eq!(proxy.reload(), "reloaded configuration");
        let url = origin.url("/bob-after");
        let resp = get_with(&mut keep, &url, &[("Proxy-Authorization", &bob_cred)]);
        assert_eq!(resp.status(), 200, "{resp:#?}");
        assert_eq!(assert_log(&proxy, "GET", &url, 200, None, None).user.as_deref(), Some("bob"));
        let url = origin.url("/alice-after");
        let resp = get_with(&mut keep, &url, &[("Proxy-Authorization", &alice_cred)]);
        assert_refused(&proxy, &resp, "GET", &url, 407, "http_request_denied",
            "wrong user name or password", Some("-"));
        let seen: Vec<String> = origin.requests().into_iter().map(|r| r.target).collect();
        assert_eq!(seen, ["/alice-before", "/bob-after"]);
    }

    /// A reload that fails (a configuration file that no longer parses, a
    /// list that is gone) says why and keeps the running rules; open
    /// connections are not dropped.
    fn failed_reload_keeps_running_rules(bin) {
        let origin = Origin::echo_target();
        let port = origin.addr().port();
        let echo = EchoServer::start();
        let list = TempFile::new("blocklist.txt", "listed.test\n");
        let config = TempFile::new("config.ron", "(policy: (deny: [\"inline.test\"]))\n");
        let proxy = Proxy::start(bin, &[
            "--config", config.name(),
            "--blocklist", list.name(),
            "--resolve", "listed.test=127.0.0.1",
            "--resolve", "inline.test=127.0.0.1",
            "--resolve", "fine.test=127.0.0.1",
        ]);
        let mut keep = proxy.connect();
        assert_eq!(keep.get(&format!("http://fine.test:{port}/start")).status(), 200);
        let mut tunnel = proxy.connect();
        tunnel.send(connect_request(&echo.addr().to_string(), &[]));
        assert_eq!(tunnel.read_head().status, 200);

        // Invalid RON on line 2: the reload names file, line and column.
        config.write("(policy: (deny: [\"inline.test\"],\n  allow: [\"fine.test\" oops]))\n");
        list.write("listed.test\nfine.test\n");
        let said = proxy.reload();
        let prefix = format!("reload failed, keeping the running configuration: {}:", config.name());
        let rest = said.strip_prefix(&prefix).unwrap_or_else(|| panic!("{said:?} should start with {prefix:?}"));
        let mut parts = rest.splitn(3, ':');
        let (line, col) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        assert!(
            line == "2" && !col.is_empty() && col.bytes().all(|b| b.is_ascii_digit()),
            "want {prefix}2:COL: ..., got {said:?}"
        );
        let check = |c: &mut Client, tag: &str| {
            for (host, rule) in [
                ("inline.test", "deny inline.test (config)".to_owned()),
                ("listed.test", format!("deny listed.test ({}:1)", list.name())),
            ] {
                let url = format!("http://{host}:{port}/{tag}");
                let resp = c.get(&url);
                assert_refused(&proxy, &resp, "GET", &url, 403, "http_request_denied", &rule, Some("-"));
            }
            // fine.test, added to the list with the broken config, is not
            // denied: the new list was not half-loaded.
            let resp = c.get(&format!("http://fine.test:{port}/{tag}"));
            assert_eq!(resp.status(), 200, "{resp:#?}");
        };
        check(&mut keep, "after-bad-config");
        check(&mut proxy.connect(), "after-bad-config-new");

        // A list file that is gone: the same.
        config.write("(policy: (deny: [\"inline.test\"]))\n");
        std::fs::remove_file(list.path()).expect("remove list");
        let said = proxy.reload();
        let prefix = format!("reload failed, keeping the running configuration: {}: ", list.name());
        assert!(said.starts_with(&prefix), "{said:?} should start with {prefix:?}");
        check(&mut keep, "after-missing-list");

        tunnel.send("still here");
        assert_eq!(tunnel.read_exact_bytes(10), b"still here");
        tunnel.shutdown_write();
        assert!(tunnel.read_to_end().is_empty());
    }
}

/// The connection cap `key: 2`: two clients hold connections, a third
/// gets 503 without sending anything and is closed; the two still work;
/// when one closes, a new connection is served.
fn connection_cap(bin: proxy_tests::Binary, key: &str, rule: &str) {
    let origin = Origin::echo_target();
    let proxy = Proxy::start_with_config(bin, &format!("(limits: ({key}: Some(2)))"), &[]);
    let mut first = proxy.connect();
    let mut second = proxy.connect();
    assert_eq!(first.get(&origin.url("/first")).status(), 200);
    assert_eq!(second.get(&origin.url("/second")).status(), 200);

    let mut third = proxy.connect();
    let started = Instant::now();
    let resp = third.read_response("GET");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the 503 took {:?}",
        started.elapsed()
    );
    resp.assert_error(503, "connection_limit_reached", rule);
    resp.assert_error(503, "connection_limit_reached", "too many connections");
    third.assert_closed();
    let line = proxy.wait_for_log(
        |l| l.contains(" 503 ") && l.contains("error=connection_limit_reached"),
        proxy_tests::IO_TIMEOUT,
    );
    let line = LogLine::parse(&line).unwrap_or_else(|| panic!("malformed log line {line:?}"));
    assert_eq!(line.rule.as_deref(), Some(rule), "{line:?}");
    assert_eq!(line.client, third.local_addr().to_string());
    assert_eq!(line.bytes, resp.wire_len);

    // The connections holding places are served as before.
    assert_eq!(first.get(&origin.url("/first-again")).status(), 200);
    assert_eq!(second.get(&origin.url("/second-again")).status(), 200);

    // A place given back is taken again.
    drop(first);
    let served = eventually(Duration::from_secs(3), || {
        let mut c = proxy.connect();
        c.send(request("GET", &origin.url("/after-close"), &[], b""));
        let resp = c.read_response("GET");
        (resp.status() == 200).then_some(c)
    });
    let mut c = served.expect("a new connection is served once one has closed");
    assert_eq!(c.get(&origin.url("/after-close-2")).status(), 200);
    assert_eq!(second.get(&origin.url("/second-last")).status(), 200);
}
