//! Hand-written pieces the core kept, against the well-kept crates that
//! could replace them, on the same input: the JSON access-log line
//! (`AccessRecord::json`) against serde_json serialising a mirror of the
//! record, and the HTTP date (IMF-fixdate) written and parsed against
//! httpdate. The outputs are the same data, not the same bytes (serde_json
//! has its own number formats); what is compared is the cost.
//!
//! ```sh
//! cargo bench -p proxy-core --bench kept
//! ```

use divan::Bencher;
use proxy_core::http::date::{http_date, parse_http_date};
use proxy_core::{AccessRecord, ConnId, Decision, ExchangeKind, UnixTime};
use serde::Serialize;
use std::time::{Duration, SystemTime};

fn main() {
    divan::main();
}

const AT: UnixTime = UnixTime(1_795_270_203_123_000);

fn record() -> AccessRecord {
    AccessRecord {
        conn: ConnId(1),
        client: "127.0.0.1:51234".parse().unwrap(),
        method: "GET".into(),
        target: "http://www.example.com/articles/2026/11/sans-io-proxies.html?utm_source=feed"
            .into(),
        upstream: Some("93.184.216.34:80".parse().unwrap()),
        status: 200,
        bytes_to_client: 1256,
        bytes_from_client: 330,
        duration: Duration::from_micros(12_400),
        kind: ExchangeKind::Http,
        error: None,
        user: None,
        decision: Decision::Allowed,
        rule: None,
        tls: None,
        cache: None,
        agent: Some(Box::new(proxy_core::log::Agent {
            referer: None,
            user_agent: Some("curl/8.5.0".into()),
        })),
        parent: false,
        balancer: None,
    }
}

/// The same fields as the JSON line, for serde_json.
#[derive(Serialize)]
struct Line<'a> {
    time: String,
    client: String,
    user: Option<&'a str>,
    method: &'a str,
    target: &'a str,
    upstream: Option<String>,
    status: u16,
    bytes_to_client: u64,
    bytes_from_client: u64,
    duration_ms: f64,
    kind: &'static str,
    decision: &'a str,
    rule: Option<&'a str>,
    error: Option<&'a str>,
    sni: Option<&'a str>,
    sni_malformed: bool,
    cache: Option<&'a str>,
    referer: Option<&'a str>,
    user_agent: Option<&'a str>,
    parent: bool,
    balancer: Option<String>,
    balancer_id: Option<&'a str>,
    conn: u64,
}

#[divan::bench]
fn json_line_hand_written(b: Bencher) {
    let r = record();
    b.bench(|| divan::black_box(&r).json(AT));
}

#[divan::bench]
fn json_line_serde_json(b: Bencher) {
    let r = record();
    b.bench(|| {
        let r = divan::black_box(&r);
        let agent = r.agent.as_deref();
        serde_json::to_string(&Line {
            // The time as the hand-written line has it: serde has no
            // RFC 3339 of its own, a crate (time, jiff) would add its cost.
            time: proxy_core::http::date::rfc3339(AT),
            client: r.client.to_string(),
            user: r.user.as_deref(),
            method: &r.method,
            target: &r.target,
            upstream: r.upstream.map(|u| u.to_string()),
            status: r.status,
            bytes_to_client: r.bytes_to_client,
            bytes_from_client: r.bytes_from_client,
            duration_ms: r.duration.as_secs_f64() * 1000.0,
            kind: "http",
            decision: r.decision.as_str(),
            rule: r.rule.as_deref(),
            error: r.error.map(|e| e.as_str()),
            sni: None,
            sni_malformed: false,
            cache: None,
            referer: agent.and_then(|a| a.referer.as_deref()),
            user_agent: agent.and_then(|a| a.user_agent.as_deref()),
            parent: r.parent,
            balancer: None,
            balancer_id: None,
            conn: r.conn.0,
        })
        .unwrap()
    });
}

#[divan::bench]
fn http_date_write_hand_written() -> String {
    http_date(divan::black_box(AT))
}

#[divan::bench]
fn http_date_write_httpdate() -> String {
    let t = SystemTime::UNIX_EPOCH + Duration::from_micros(divan::black_box(AT).0);
    httpdate::fmt_http_date(t)
}

const DATE: &str = "Wed, 02 Dec 2026 06:02:10 GMT";

#[divan::bench]
fn http_date_parse_hand_written() -> Option<UnixTime> {
    parse_http_date(divan::black_box(DATE.as_bytes()))
}

#[divan::bench]
fn http_date_parse_httpdate() -> Option<SystemTime> {
    httpdate::parse_http_date(divan::black_box(DATE)).ok()
}
