//! The core's cost per request on a keep-alive connection, end to end:
//! parse a curl-like absolute-form GET head (~330 bytes), decide on it
//! (client, method, port, host and address rules), rewrite it to origin
//! form for the upstream, then parse the ~220-byte response head, rewrite
//! it for the client and pass its 1 KiB Content-Length body through, log
//! the exchange and release the upstream for reuse.
//!
//! Every iteration is one whole request on the same connection: the core
//! asks to resolve the name and to connect (taken from the idle pool
//! after the first request), as a runtime would see it. No I/O happens;
//! a stand-in runtime (`common/mod.rs`) answers at once and only counts
//! the bytes. Throughput is in requests.
//!
//! `domain_rules` is the size of the policy's deny list: 0 (the default
//! policy) and 100,000 names, which the request's host does not match, to
//! show the host decision does not grow with the list.
//!
//! ```sh
//! cargo bench -p proxy-core --bench request
//! cargo bench -p proxy-core --bench request -- --sample-count 20  # quicker
//! ```

mod common;

use common::World;
use divan::counter::ItemsCount;
use divan::Bencher;
use proxy_core::policy::Sources;
use proxy_core::{Config, Shared};
use std::sync::Arc;

fn main() {
    divan::main();
}

const REQUEST: &str = concat!(
    "GET http://www.example.com/articles/2026/11/sans-io-proxies.html?utm_source=feed HTTP/1.1\r\n",
    "Host: www.example.com\r\n",
    "User-Agent: curl/8.5.0\r\n",
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n",
    "Accept-Language: en-GB,en;q=0.5\r\n",
    "Accept-Encoding: gzip, deflate\r\n",
    "Proxy-Connection: Keep-Alive\r\n",
    "Cookie: session=8f14e45fceea167a5a36dedd4bea2543\r\n",
    "\r\n",
);

const RESPONSE_HEAD: &str = concat!(
    "HTTP/1.1 200 OK\r\n",
    "Date: Sun, 22 Nov 2026 10:30:03 GMT\r\n",
    "Server: nginx/1.24.0\r\n",
    "Content-Type: text/html; charset=utf-8\r\n",
    "Content-Length: 1024\r\n",
    "Cache-Control: max-age=3600\r\n",
    "ETag: \"5f1c-62a3b9e1c4d80\"\r\n",
    "Vary: Accept-Encoding\r\n",
    "\r\n",
);

const BODY_LEN: usize = 1024;

#[divan::bench(args = [0, 100_000])]
fn keep_alive_get(bencher: Bencher, domain_rules: usize) {
    let request = REQUEST.as_bytes();
    let body: Vec<u8> = (0..BODY_LEN).map(|i| b'a' + (i % 26) as u8).collect();
    let response = [RESPONSE_HEAD.as_bytes(), &body].concat();
    let mut world = World::new(shared_with_deny_list(domain_rules));

    // The first request resolves and connects afresh; check it all.
    let (first, seen) = world.exchange_captured(request, &response);
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!((first.resolves, first.reused), (1, false));
    assert!(first.released_for_reuse);
    let to_origin = std::str::from_utf8(&seen.to_upstream).unwrap();
    assert!(
        to_origin
            .starts_with("GET /articles/2026/11/sans-io-proxies.html?utm_source=feed HTTP/1.1\r\n")
            && to_origin.contains("\r\nHost: www.example.com\r\n")
            && !to_origin.contains("Proxy-Connection")
            && to_origin.ends_with("\r\n\r\n"),
        "{to_origin}"
    );
    let head_len = seen.to_client.len() - BODY_LEN;
    let to_client = std::str::from_utf8(&seen.to_client[..head_len]).unwrap();
    assert!(
        to_client.starts_with("HTTP/1.1 200 OK\r\n")
            && to_client.contains("\r\nContent-Length: 1024\r\n")
            && to_client.ends_with("\r\n\r\n"),
        "{to_client}"
    );
    assert_eq!(seen.to_client[head_len..], body[..]);

    // From the second request on the upstream comes from the pool, and
    // every iteration must do exactly what this one did.
    let steady = world.exchange(request, &response);
    assert!(steady.reused && steady.released_for_reuse, "{steady:?}");
    assert_eq!(steady.to_client, first.to_client);

    bencher.counter(ItemsCount::new(1usize)).bench_local(|| {
        let trip = world.exchange(request, &response);
        assert_eq!(trip, steady);
    });
}

/// Shared state with the default configuration, plus a deny list of
/// `rules` domain rules (none of which covers `www.example.com`).
fn shared_with_deny_list(rules: usize) -> Arc<Shared> {
    let mut config = Config::default();
    let mut sources = Sources::new();
    if rules > 0 {
        // The three kinds of rule policy_bench uses: a name and its
        // subdomains, a whole domain's subdomains, one exact host.
        let mut list = String::new();
        for i in 0..rules {
            let line = match i % 3 {
                0 => format!("site{i}.example{}.com\n", i % 97),
                1 => format!("*.ads{i}.net\n"),
                _ => format!("=host{i}.tracker{}.org\n", i % 13),
            };
            list.push_str(&line);
        }
        sources.insert("big.list".to_owned(), list);
        config.policy.deny_lists = vec!["big.list".to_owned()];
    }
    let (shared, report) = Shared::new(config, sources).expect("policy compiles");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(shared.snapshot().policy.sizes().0, rules);
    shared
}
