//! `/_metrics`: after a known sequence of requests, the proxy's own
//! Prometheus exposition parses with a real Prometheus text parser
//! (`prometheus-parse`), and every value is the one the sequence implies,
//! down to the bytes each way.

use crate::request;
use prometheus_parse::{HistogramCount, LineInfo, Scrape, Value};
use proxy_tests::{cases, refused_addr, Client, EchoServer, Origin, Proxy, Reply, Response};
use std::time::Duration;

/// The families the proxy exposes, with their types.
const FAMILIES: &[(&str, &str)] = &[
    ("proxy_requests_total", "counter"),
    ("proxy_responses_total", "counter"),
    ("proxy_client_bytes_total", "counter"),
    ("proxy_tunnels_total", "counter"),
    ("proxy_upstream_connect_failures_total", "counter"),
    ("proxy_rate_limited_total", "counter"),
    ("proxy_access_log_written_records_total", "counter"),
    ("proxy_access_log_dropped_records_total", "counter"),
    ("proxy_request_duration_seconds", "histogram"),
    ("proxy_active_connections", "gauge"),
    ("proxy_active_upstream_connections", "gauge"),
    ("proxy_uptime_seconds", "gauge"),
    ("proxy_build_info", "gauge"),
];

/// A parsed scrape, with lookups by name and labels.
struct Metrics {
    text: String,
    scrape: Scrape,
}

impl Metrics {
    /// The one sample of `name` whose labels are exactly `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<&Value> = self
            .scrape
            .samples
            .iter()
            .filter(|s| {
                s.metric == name
                    && s.labels.len() == labels.len()
                    && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
            })
            .map(|s| &s.value)
            .collect();
        assert!(found.len() <= 1, "{name}{labels:?} appears twice");
        found.first().map(|v| match v {
            Value::Counter(n) | Value::Gauge(n) | Value::Untyped(n) => *n,
            other => panic!("{name}{labels:?} is not a single value: {other:?}"),
        })
    }

    /// Like [`value`](Self::value), but the sample must be there.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in\n{}", self.text))
    }

    /// The buckets of the duration histogram for `kind`.
    fn histogram(&self, kind: &str) -> Vec<HistogramCount> {
        self.scrape
            .samples
            .iter()
            .find_map(|s| match &s.value {
                Value::Histogram(h)
                    if s.metric == "proxy_request_duration_seconds"
                        && s.labels.get("kind") == Some(kind) =>
                {
                    Some(h.clone())
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no histogram for kind {kind} in\n{}", self.text))
    }
}

/// `GET /_metrics` in origin form on `c`; checks the response and parses
/// the body.
fn scrape_on(c: &mut Client) -> Metrics {
    scrape_path(c, "/_metrics")
}

/// [`scrape_on`] at `path`.
fn scrape_path(c: &mut Client, path: &str) -> Metrics {
    c.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"));
    let resp = c.read_response("GET");
    assert_eq!(resp.status(), 200, "{resp:#?}");
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    let text = resp.text();
    // The parser skips what it cannot read, so first make sure it read
    // every line: each is a comment, a HELP/TYPE, or a sample.
    for line in text.lines() {
        match LineInfo::parse(line) {
            LineInfo::Sample { value, .. } => {
                assert!(value.parse::<f64>().is_ok(), "value in {line:?}")
            }
            LineInfo::Doc { .. } | LineInfo::Type { .. } => {}
            other => panic!("unreadable line {line:?}: {other:?}"),
        }
    }
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    for (name, kind) in FAMILIES {
        assert!(
            scrape.docs.contains_key(*name),
            "no HELP for {name} in\n{text}"
        );
        assert!(
            text.contains(&format!("\n# TYPE {name} {kind}\n")),
            "no TYPE {kind} for {name} in\n{text}"
        );
    }
    // Every sample belongs to a documented family.
    for s in &scrape.samples {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| s.metric.strip_suffix(suffix))
            .filter(|f| scrape.docs.contains_key(*f))
            .unwrap_or(&s.metric);
        assert!(
            FAMILIES.iter().any(|(n, _)| *n == family),
            "undocumented sample {}",
            s.metric
        );
    }
    Metrics { text, scrape }
}

/// Sends `raw` on `c` and reads the response to `method`; returns it and
/// the bytes sent.
fn exchange(c: &mut Client, method: &str, raw: Vec<u8>) -> (Response, u64) {
    c.send(&raw);
    (c.read_response(method), raw.len() as u64)
}

cases! {
    /// 3 GETs (200), a POST (201), a denied name (403), a CONNECT tunnel
    /// and a refused connection (502), then a scrape: counts by method
    /// and decision, by status class, bytes each way, the tunnel, the
    /// connect failure, the histogram, the gauges and the build info.
    fn metrics_count_a_known_sequence(bin) {
        let origin = Origin::start(|r| {
            if r.method == "POST" {
                Reply::status(201).body("made")
            } else {
                Reply::ok("hello")
            }
        });
        let echo = EchoServer::start();
        let refused = refused_addr();
        let proxy = Proxy::start_with_config(
            bin,
            "(policy: (deny: [\"blocked.test\"]))",
            &["--resolve", "blocked.test=127.0.0.1"],
        );
        let mut to_client = 0u64;
        let mut from_client = 0u64;
        let mut c = proxy.connect();
        for i in 0..3 {
            let (resp, sent) = exchange(&mut c, "GET", request("GET", &origin.url(&format!("/{i}")), &[], b""));
            assert_eq!(resp.status(), 200);
            to_client += resp.wire_len;
            from_client += sent;
        }
        let (resp, sent) = exchange(&mut c, "POST", request("POST", &origin.url("/form"), &[], b"a=1&b=2"));
        assert_eq!(resp.status(), 201);
        to_client += resp.wire_len;
        from_client += sent;
        let (resp, sent) = exchange(&mut c, "GET", request("GET", "http://blocked.test/", &[], b""));
        assert_eq!(resp.status(), 403);
        to_client += resp.wire_len;
        from_client += sent;
        let refused_url = format!("http://{refused}/");
        let (resp, sent) = exchange(&mut c, "GET", request("GET", &refused_url, &[], b""));
        assert_eq!(resp.status(), 502);
        to_client += resp.wire_len;
        from_client += sent;

        // The tunnel: CONNECT, a round trip, then both sides close.
        let target = echo.addr().to_string();
        let mut t = proxy.connect();
        let connect = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
        t.send(&connect);
        let head = t.read_head();
        assert_eq!(head.status, 200);
        t.send("ping");
        assert_eq!(t.read_exact_bytes(4), b"ping");
        t.shutdown_write();
        assert!(t.read_to_end().is_empty());
        to_client += "HTTP/1.1 200 Connection established\r\n\r\n".len() as u64 + 4;
        from_client += connect.len() as u64 + 4;
        // A tunnel is counted when it ends, with its log record.
        let line = proxy.wait_for_record("CONNECT", &target);
        assert_eq!(line.status, 200);
        // The log of `c` is written in order; its last record is this one.
        proxy.wait_for_record("GET", &refused_url);

        // The access log and the counters tell the same story.
        let logged: u64 = proxy
            .log_lines()
            .iter()
            .filter_map(|l| proxy_tests::LogLine::parse(l))
            .map(|l| l.bytes)
            .sum();
        assert_eq!(logged, to_client, "bytes to clients in the log");

        let m = scrape_on(&mut c);
        let req = |method, decision| m.value("proxy_requests_total", &[("method", method), ("decision", decision)]);
        assert_eq!(req("GET", "allowed"), Some(4.0));
        assert_eq!(req("POST", "allowed"), Some(1.0));
        assert_eq!(req("GET", "denied_domain"), Some(1.0));
        assert_eq!(req("CONNECT", "allowed"), Some(1.0));
        let total: f64 = m
            .scrape
            .samples
            .iter()
            .filter(|s| s.metric == "proxy_requests_total")
            .map(|s| match s.value {
                Value::Counter(n) => n,
                ref v => panic!("proxy_requests_total is a counter, not {v:?}"),
            })
            .sum();
        assert_eq!(total, 7.0, "nothing else was counted:\n{}", m.text);
        let class = |c| m.get("proxy_responses_total", &[("class", c)]);
        assert_eq!(class("2xx"), 5.0);
        assert_eq!(class("4xx"), 1.0);
        assert_eq!(class("5xx"), 1.0);
        assert_eq!(class("none"), 0.0);
        assert_eq!(m.get("proxy_client_bytes_total", &[("direction", "to_client")]), to_client as f64);
        assert_eq!(m.get("proxy_client_bytes_total", &[("direction", "from_client")]), from_client as f64);
        assert_eq!(m.get("proxy_tunnels_total", &[("kind", "connect")]), 1.0);
        assert_eq!(m.get("proxy_tunnels_total", &[("kind", "upgrade")]), 0.0);
        assert_eq!(m.get("proxy_upstream_connect_failures_total", &[("reason", "connection_refused")]), 1.0);
        assert_eq!(m.get("proxy_upstream_connect_failures_total", &[("reason", "dns_error")]), 0.0);
        assert_eq!(m.get("proxy_rate_limited_total", &[]), 0.0);
        // The log kept up with these few records.
        assert_eq!(m.get("proxy_access_log_dropped_records_total", &[]), 0.0);
        // The histogram: cumulative, +Inf equal to the count.
        for (kind, n) in [("http", 6.0), ("tunnel", 1.0)] {
            let buckets = m.histogram(kind);
            assert!(buckets.windows(2).all(|w| w[0].less_than < w[1].less_than && w[0].count <= w[1].count));
            let inf = buckets.last().unwrap();
            assert!(inf.less_than.is_infinite());
            assert_eq!(inf.count, n, "{kind} count");
            assert_eq!(m.get("proxy_request_duration_seconds_count", &[("kind", kind)]), n);
            assert!(m.get("proxy_request_duration_seconds_sum", &[("kind", kind)]) >= 0.0);
        }
        assert_eq!(m.value("proxy_request_duration_seconds_count", &[("kind", "local")]), None);
        // This connection at least; the others may still be closing.
        assert!(m.get("proxy_active_connections", &[]) >= 1.0);
        assert_eq!(m.get("proxy_active_upstream_connections", &[]), 0.0);
        assert!(m.get("proxy_uptime_seconds", &[]) > 0.0);
        assert_eq!(m.get("proxy_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);

        // The scrape is itself a request, counted once it is answered.
        let again = scrape_on(&mut c);
        assert_eq!(again.value("proxy_requests_total", &[("method", "GET"), ("decision", "allowed")]), Some(5.0));
        assert_eq!(again.get("proxy_request_duration_seconds_count", &[("kind", "local")]), 1.0);
        assert!(again.get("proxy_uptime_seconds", &[]) >= m.get("proxy_uptime_seconds", &[]));
        let line = proxy.wait_for_record("GET", "/_metrics");
        assert_eq!(line.status, 200);
        assert_eq!(line.upstream, "-");
    }

    /// HEAD gets the head alone; `/_status` is HTML; other origin-form
    /// targets are still refused, and the connection lives on throughout.
    fn admin_pages_answer_head_and_html(bin) {
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        c.send("HEAD /_metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        let resp = c.read_response("HEAD");
        assert_eq!(resp.status(), 200);
        assert!(resp.body.is_empty());
        let length: usize = resp.header("content-length").unwrap().parse().unwrap();
        assert!(length > 0);

        c.send("GET /_status HTTP/1.1\r\nHost: x\r\n\r\n");
        let resp = c.read_response("GET");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.header("content-type"), Some("text/html; charset=utf-8"));
        let html = resp.text();
        assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
        assert!(html.contains("<td id=\"requests\">1</td>"), "the HEAD is counted: {html}");

        // `/metrics` (Prometheus's default path) is `/_metrics`.
        let m = scrape_path(&mut c, "/metrics");
        assert_eq!(m.get("proxy_requests_total", &[("method", "GET"), ("decision", "allowed")]), 1.0);

        c.send("GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n");
        let resp = c.read_response("GET");
        resp.assert_error(400, "http_request_error", "origin-form request to a proxy");
    }

    /// `/proxy.pac` names the address the browser reached the proxy by,
    /// and sends what the proxy would refuse (private IPv4 literals under
    /// the SSRF guard, plain names) direct: evaluated by Node with the
    /// PAC helpers a browser provides.
    fn proxy_pac_is_made_from_the_configuration(bin) {
        let Some(node) = proxy_tests::tool("node", "E2E_SKIP_NODE") else {
            return;
        };
        let proxy = Proxy::start_with_policy(bin, "(proxy_name: \"proxy-rs\")", &[]);
        let mut c = proxy.connect();
        c.send(format!("GET /proxy.pac HTTP/1.1\r\nHost: {}\r\n\r\n", proxy.addr()));
        let resp = c.read_response("GET");
        assert_eq!(resp.status(), 200, "{resp:#?}");
        assert_eq!(resp.header("content-type"), Some("application/x-ns-proxy-autoconfig"));
        let script = format!(
            "{}\n\
             function isPlainHostName(h) {{ return h.indexOf('.') < 0; }}\n\
             function isInNet(h, net, mask) {{\n\
               const n = s => s.split('.').reduce((a, o) => a * 256 + Number(o), 0);\n\
               const m = n(mask); return (n(h) & m) >>> 0 === (n(net) & m) >>> 0;\n\
             }}\n\
             for (const h of ['example.com', '10.1.2.3', '192.168.1.1', '8.8.8.8', 'intranet', 'localhost'])\n\
               console.log(h + ' ' + FindProxyForURL('http://' + h + '/', h));\n",
            resp.text()
        );
        let out = std::process::Command::new(node).arg("-e").arg(&script).output().expect("node runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let through = format!("PROXY {}", proxy.addr());
        let expected = format!(
            "example.com {through}\n10.1.2.3 DIRECT\n192.168.1.1 DIRECT\n8.8.8.8 {through}\nintranet DIRECT\nlocalhost DIRECT\n"
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
        // A Host that is not a plain authority is not written into it.
        c.send("GET /wpad.dat HTTP/1.1\r\nHost: x\";alert(1)\r\n\r\n");
        let resp = c.read_response("GET");
        assert_eq!(resp.status(), 200);
        assert!(!resp.text().contains("alert"), "{}", resp.text());
    }

    /// With `admin.enabled: false` the pages are not there.
    fn admin_pages_can_be_turned_off(bin) {
        let proxy = Proxy::start_with_config(bin, "(admin: (enabled: false))", &[]);
        let mut c = proxy.connect();
        c.send("GET /_metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        let resp = c.read_response("GET");
        resp.assert_error(400, "http_request_error", "origin-form request to a proxy");
    }

    /// `admin.listen` opens a port that answers the pages to anyone who
    /// reaches it and never forwards: 404 for anything else.
    fn admin_listener_serves_only_the_pages(bin) {
        let origin = Origin::start(|_| Reply::ok("origin"));
        let port = proxy_tests::free_port();
        let config = format!("(admin: (listen: Some(\"127.0.0.1:{port}\")))");
        let proxy = Proxy::start_with_config(bin, &config, &[]);
        proxy.wait_for_stderr(|l| l.starts_with("admin pages on http://127.0.0.1:"), Duration::from_secs(5));
        let admin: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut c = Client::connect(admin);
        c.send("GET /_metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        let resp = c.read_response("GET");
        assert_eq!(resp.status(), 200);
        assert!(resp.text().contains("# TYPE proxy_requests_total counter"));
        c.send(request("GET", &origin.url("/x"), &[], b""));
        let resp = c.read_response("GET");
        resp.assert_error(404, "http_request_error", "only /_metrics and /_status are served here");
        assert_eq!(origin.connections(), 0, "the admin port never forwards");
        // The proxy port still proxies.
        let mut p = proxy.connect();
        p.send(request("GET", &origin.url("/y"), &[], b""));
        assert_eq!(p.read_response("GET").status(), 200);
    }
}
