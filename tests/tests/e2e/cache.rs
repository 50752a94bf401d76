//! The shared HTTP cache (`--cache`, `cache:`): hits without the origin,
//! revalidation, what is never stored, Vary, invalidation and PURGE,
//! ranges, collapsed misses, serving stale, bad responses never stored,
//! poisoning attempts, and a bounded store under a flood of URLs.

use crate::request;
use proxy_tests::client::Client;
use proxy_tests::origin::read_request_head;
use proxy_tests::{cases, Origin, Proxy, RawOrigin, Reply, Response};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The cache on, with `extra` settings inside `cache: (...)`.
fn cached(bin: proxy_tests::Binary, extra: &str) -> Proxy {
    Proxy::start_with_config(bin, &format!("(cache: (enabled: true, {extra}))"), &[])
}

/// An origin answering `max-age=3600` with a body naming how many
/// requests it has had.
fn counting_origin(cache_control: &'static str) -> (Origin, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let origin = Origin::start(move |r| {
        let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
        Reply::ok(format!("response {n} to {}", r.target))
            .header("Cache-Control", cache_control)
            .header("ETag", &format!("\"v{n}\""))
    });
    (origin, count)
}

fn get(c: &mut Client, url: &str, headers: &[(&str, &str)]) -> Response {
    c.send(request("GET", url, headers, b""));
    c.read_response("GET")
}

/// One sample from `/_metrics`, by its full name with labels.
fn metric(proxy: &Proxy, sample: &str) -> f64 {
    let mut c = proxy.connect();
    c.send("GET /_metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let text = c.read_response("GET").text();
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {sample} in\n{text}"))
}

fn cache_status(resp: &Response) -> &str {
    resp.header("cache-status")
        .unwrap_or_else(|| panic!("no Cache-Status in {resp:#?}"))
}

cases! {
    /// Three GETs of a max-age response from three clients reach the
    /// origin once; the others are answered from memory with Age and
    /// `Cache-Status: ...; hit`, logged as hits, counted in /_metrics. HEAD
    /// is answered from the GET's entry.
    fn repeated_gets_are_answered_from_the_cache(bin) {
        let (origin, count) = counting_origin("max-age=3600");
        let proxy = Proxy::start(bin, &["--cache"]);
        let url = origin.url("/doc");
        let first = get(&mut proxy.connect(), &url, &[]);
        assert_eq!(first.text(), "response 1 to /doc");
        assert_eq!(cache_status(&first), "proxy-rs; fwd=uri-miss; stored; ttl=3600");
        for _ in 0..2 {
            let hit = get(&mut proxy.connect(), &url, &[]);
            assert_eq!(hit.status(), 200);
            assert_eq!(hit.text(), "response 1 to /doc");
            assert!(cache_status(&hit).starts_with("proxy-rs; hit; ttl="), "{hit:#?}");
            let age: u64 = hit.header("age").expect("Age").parse().unwrap();
            assert!(age < 5, "age {age}");
            assert_eq!(hit.header("etag"), Some("\"v1\""));
            assert_eq!(hit.header("via"), Some("1.1 proxy-rs"));
        }
        let mut c = proxy.connect();
        c.send(request("HEAD", &url, &[], b""));
        let head = c.read_response("HEAD");
        assert_eq!(head.status(), 200);
        assert!(head.body.is_empty());
        assert_eq!(head.header("content-length"), Some("18"));
        assert!(cache_status(&head).contains("; hit"));
        assert_eq!(count.load(Ordering::SeqCst), 1, "the origin was asked once");

        let records = proxy.wait_for_records("GET", &url, 3);
        // Each connection writes its own record, so the miss's may come
        // after a hit's: the log's order is not the clients'.
        let mut results: Vec<_> = records.iter().map(|l| l.cache.as_deref()).collect();
        results.sort();
        assert_eq!(results, [Some("hit"), Some("hit"), Some("miss")]);
        for hit in records.iter().filter(|l| l.cache.as_deref() == Some("hit")) {
            assert_eq!(hit.upstream, "-", "a hit has no upstream");
        }
        assert_eq!(proxy.wait_for_record("HEAD", &url).cache.as_deref(), Some("hit"));
        assert_eq!(metric(&proxy, "proxy_cache_requests_total{result=\"hit\"}"), 3.0);
        assert_eq!(metric(&proxy, "proxy_cache_requests_total{result=\"miss\"}"), 1.0);
        assert_eq!(metric(&proxy, "proxy_cache_stores_total"), 1.0);
        assert_eq!(metric(&proxy, "proxy_cache_entries"), 1.0);
        assert!(metric(&proxy, "proxy_cache_bytes") > 18.0);
    }

    /// Without `--cache` nothing is stored and no Cache-Status is added.
    fn the_cache_is_off_by_default(bin) {
        let (origin, count) = counting_origin("max-age=3600");
        let proxy = Proxy::start(bin, &[]);
        let mut c = proxy.connect();
        for n in 1..=2 {
            let resp = get(&mut c, &origin.url("/x"), &[]);
            assert_eq!(resp.text(), format!("response {n} to /x"));
            assert_eq!(resp.header("cache-status"), None);
        }
        assert_eq!(count.load(Ordering::SeqCst), 2);
        assert_eq!(proxy.wait_for_record("GET", &origin.url("/x")).cache, None);
    }

    /// A stale entry is revalidated with its validators; a 304 updates its
    /// fields and the client gets the stored body, logged as
    /// refresh_unmodified (TCP_REFRESH_UNMODIFIED in Squid's format).
    fn stale_entries_are_revalidated(bin) {
        let origin = Origin::start(|r| match r.header("if-none-match") {
            Some("\"abc\"") => Reply::status(304)
                .no_body()
                .header("Cache-Control", "max-age=60")
                .header("X-Version", "2"),
            _ => Reply::ok("body")
                .header("Cache-Control", "max-age=1")
                .header("ETag", "\"abc\"")
                .header("X-Version", "1"),
        });
        let proxy = Proxy::start_with_config(
            bin,
            "(cache: (enabled: true), logging: (format: Squid))",
            &[],
        );
        let url = origin.url("/r");
        let mut c = proxy.connect();
        assert_eq!(get(&mut c, &url, &[]).header("x-version"), Some("1"));
        std::thread::sleep(Duration::from_millis(1100));
        let resp = get(&mut c, &url, &[("If-None-Match", "\"client-tag\"")]);
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text(), "body");
        assert_eq!(resp.header("x-version"), Some("2"), "updated by the 304");
        assert!(cache_status(&resp).contains("fwd=stale; fwd-status=304"), "{resp:#?}");
        let asked = origin.wait_requests(2);
        assert_eq!(asked[1].header("if-none-match"), Some("\"abc\""), "our validator, not the client's");
        // Fresh again for a minute.
        let again = get(&mut c, &url, &[]);
        assert!(cache_status(&again).contains("; hit"));
        assert_eq!(origin.requests().len(), 2);
        proxy.wait_for_log(|l| l.contains(" TCP_REFRESH_UNMODIFIED/200 "), Duration::from_secs(5));
        proxy.wait_for_log(|l| l.contains(" TCP_MEM_HIT/200 "), Duration::from_secs(5));
    }

    /// A client's own conditional request is answered 304 from a fresh
    /// entry without asking the origin.
    fn client_conditionals_are_answered_from_the_cache(bin) {
        let (origin, count) = counting_origin("max-age=3600");
        let proxy = cached(bin, "");
        let url = origin.url("/c");
        let mut c = proxy.connect();
        get(&mut c, &url, &[]);
        let resp = get(&mut c, &url, &[("If-None-Match", "\"v1\"")]);
        assert_eq!(resp.status(), 304);
        assert!(resp.body.is_empty());
        assert_eq!(resp.header("etag"), Some("\"v1\""));
        let resp = get(&mut c, &url, &[("If-None-Match", "\"v0\"")]);
        assert_eq!(resp.status(), 200);
        assert_eq!(count.load(Ordering::SeqCst), 1);
        let records = proxy.wait_for_records("GET", &url, 2);
        assert_eq!(records[1].cache.as_deref(), Some("not_modified_hit"));
    }

    /// no-store, private, Authorization without public, cookies without
    /// explicit freshness, Vary: * and responses larger than max_object go
    /// to the origin every time (the large one still arrives whole).
    fn what_is_never_stored(bin) {
        let origin = Origin::start(|r| {
            let base = Reply::ok(format!("{} {}", r.target, r.header("x-n").unwrap_or("")));
            match r.target.as_str() {
                "/no-store" => base.header("Cache-Control", "max-age=60, no-store"),
                "/private" => base.header("Cache-Control", "max-age=60, private"),
                "/auth" => base.header("Cache-Control", "max-age=60"),
                "/cookie" => base
                    .header("Set-Cookie", "id=1")
                    .header("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
                "/vary-star" => base.header("Cache-Control", "max-age=60").header("Vary", "*"),
                _ => Reply::ok(vec![b'x'; 300_000]).header("Cache-Control", "max-age=60"),
            }
        });
        let proxy = cached(bin, "max_object: \"100KiB\"");
        let mut c = proxy.connect();
        for path in ["/no-store", "/private", "/auth", "/cookie", "/vary-star", "/big"] {
            let auth: &[(&str, &str)] = if path == "/auth" { &[("Authorization", "Basic YTpi")] } else { &[] };
            for n in ["1", "2"] {
                let mut headers = vec![("X-N", n)];
                headers.extend_from_slice(auth);
                let resp = get(&mut c, &origin.url(path), &headers);
                assert_eq!(resp.status(), 200, "{path}");
                if path == "/big" {
                    assert_eq!(resp.body.len(), 300_000);
                } else {
                    assert_eq!(resp.text(), format!("{path} {n}"), "{path} served from cache");
                }
                assert!(cache_status(&resp).starts_with("proxy-rs; fwd=uri-miss"), "{path}: {resp:#?}");
                assert!(!cache_status(&resp).contains("stored"), "{path}");
            }
        }
        assert_eq!(origin.requests().len(), 12);
    }

    /// Vary keeps variants apart, a request without the varied field
    /// included; each variant is a hit for its own kind of request.
    fn vary_keeps_variants_apart(bin) {
        let origin = Origin::start(|r| {
            let lang = r.header("accept-language").unwrap_or("none").to_owned();
            Reply::ok(format!("in {lang}"))
                .header("Cache-Control", "max-age=3600")
                .header("Vary", "Accept-Language")
        });
        let proxy = cached(bin, "");
        let url = origin.url("/v");
        let mut c = proxy.connect();
        let ask = |c: &mut Client, lang: Option<&str>| {
            let headers: Vec<(&str, &str)> = lang.map(|l| ("Accept-Language", l)).into_iter().collect();
            get(c, &url, &headers)
        };
        assert_eq!(ask(&mut c, Some("en")).text(), "in en");
        let de = ask(&mut c, Some("de"));
        assert_eq!(de.text(), "in de");
        assert!(cache_status(&de).contains("fwd=vary-miss"));
        assert_eq!(ask(&mut c, None).text(), "in none");
        for (lang, want) in [(Some("en"), "in en"), (Some("de"), "in de"), (None, "in none")] {
            let resp = ask(&mut c, lang);
            assert_eq!(resp.text(), want);
            assert!(cache_status(&resp).contains("; hit"), "{lang:?}");
        }
        assert_eq!(origin.requests().len(), 3);
    }

    /// A successful POST invalidates the URI; PURGE removes an entry when
    /// it comes from purge_from (200, then 404), and is refused with 403
    /// from elsewhere, leaving the entry in place.
    fn unsafe_methods_and_purge_invalidate(bin) {
        let (origin, count) = counting_origin("max-age=3600");
        let proxy = cached(bin, "");
        let url = origin.url("/p");
        let mut c = proxy.connect();
        get(&mut c, &url, &[]);
        c.send(request("POST", &url, &[], b"form"));
        assert_eq!(c.read_response("POST").status(), 200);
        assert_eq!(get(&mut c, &url, &[]).text(), "response 3 to /p", "POST invalidated it");
        assert!(cache_status(&get(&mut c, &url, &[])).contains("; hit"));

        c.send(request("PURGE", &url, &[], b""));
        let purged = c.read_response("PURGE");
        assert_eq!(purged.status(), 200, "{purged:#?}");
        c.send(request("PURGE", &url, &[], b""));
        assert_eq!(c.read_response("PURGE").status(), 404);
        assert_eq!(get(&mut c, &url, &[]).text(), "response 4 to /p");
        assert_eq!(count.load(Ordering::SeqCst), 4);

        let strict = cached(bin, "purge_from: [\"10.0.0.0/8\"]");
        let mut c = strict.connect();
        get(&mut c, &url, &[]);
        c.send(request("PURGE", &url, &[], b""));
        let refused = c.read_response("PURGE");
        refused.assert_error(403, "http_request_denied", "PURGE not allowed from this address");
        assert!(cache_status(&get(&mut c, &url, &[])).contains("; hit"), "still stored");
        let line = strict.wait_for_record("PURGE", &url);
        assert_eq!(line.status, 403);
    }

    /// `only-if-cached` with nothing stored is a 504 that never reaches
    /// the origin; the connection stays usable and a stored response
    /// answers it.
    fn only_if_cached_without_an_entry_is_504(bin) {
        let (origin, count) = counting_origin("max-age=3600");
        let proxy = cached(bin, "");
        let url = origin.url("/o");
        let mut c = proxy.connect();
        let resp = get(&mut c, &url, &[("Cache-Control", "only-if-cached")]);
        resp.assert_error(504, "http_request_error", "only-if-cached and no stored response can be used");
        assert_eq!(count.load(Ordering::SeqCst), 0);
        let line = proxy.wait_for_record("GET", &url);
        assert_eq!((line.status, line.error.as_deref()), (504, Some("http_request_error")));
        let mut other = proxy.connect();
        get(&mut other, &url, &[]);
        let resp = get(&mut other, &url, &[("Cache-Control", "only-if-cached")]);
        assert_eq!(resp.status(), 200);
    }

    /// A byte range is served from a complete entry as a 206 (a range past
    /// the end as a 416), without asking the origin.
    fn ranges_are_served_from_complete_entries(bin) {
        let origin = Origin::start(|_| {
            Reply::ok("0123456789").header("Cache-Control", "max-age=3600").header("ETag", "\"r\"")
        });
        let proxy = cached(bin, "");
        let url = origin.url("/range");
        let mut c = proxy.connect();
        get(&mut c, &url, &[]);
        let part = get(&mut c, &url, &[("Range", "bytes=2-5")]);
        assert_eq!(part.status(), 206);
        assert_eq!(part.text(), "2345");
        assert_eq!(part.header("content-range"), Some("bytes 2-5/10"));
        let suffix = get(&mut c, &url, &[("Range", "bytes=-3")]);
        assert_eq!(suffix.text(), "789");
        let stale_tag = get(&mut c, &url, &[("Range", "bytes=0-1"), ("If-Range", "\"other\"")]);
        assert_eq!((stale_tag.status(), stale_tag.text().as_str()), (200, "0123456789"));
        let past = get(&mut c, &url, &[("Range", "bytes=10-")]);
        assert_eq!(past.status(), 416);
        assert_eq!(past.header("content-range"), Some("bytes */10"));
        assert_eq!(origin.requests().len(), 1);
    }

    /// Concurrent misses for one URL wait for a single fetch: the origin
    /// is asked once, every client gets the body, the waiters are logged
    /// as hits and say `collapsed`.
    fn concurrent_misses_collapse_into_one_fetch(bin) {
        let origin = Origin::start(|_| {
            Reply::ok("slow body")
                .header("Cache-Control", "max-age=3600")
                .delay(Duration::from_millis(400))
        });
        let proxy = cached(bin, "");
        let url = origin.url("/slow");
        let clients: Vec<_> = (0..5)
            .map(|_| {
                let mut c = proxy.connect();
                c.send(request("GET", &url, &[], b""));
                c
            })
            .collect();
        let mut collapsed = 0;
        for mut c in clients {
            let resp = c.read_response("GET");
            assert_eq!(resp.text(), "slow body");
            collapsed += cache_status(&resp).contains("collapsed") as usize;
        }
        assert_eq!(origin.requests().len(), 1, "one fetch for five clients");
        assert_eq!(collapsed, 4);
    }

    /// Under stale-while-revalidate a stale entry is served at once and
    /// refreshed in the background: the origin gets a conditional
    /// request, and the next client gets the refreshed entry.
    fn stale_while_revalidate_refreshes_in_the_background(bin) {
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        let origin = Origin::start(move |r| {
            let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
            let reply = if r.has("if-none-match") { Reply::status(304).no_body() } else { Reply::ok("v1") };
            reply
                .header("Cache-Control", "max-age=1, stale-while-revalidate=60")
                .header("ETag", "\"t\"")
                .header("X-Fetch", &n.to_string())
                .delay(if n == 2 { Duration::from_millis(300) } else { Duration::ZERO })
        });
        let proxy = cached(bin, "");
        let url = origin.url("/swr");
        get(&mut proxy.connect(), &url, &[]);
        std::thread::sleep(Duration::from_millis(1100));
        let started = std::time::Instant::now();
        let mut c = proxy.connect();
        let stale = get(&mut c, &url, &[]);
        assert!(started.elapsed() < Duration::from_millis(250), "served before the origin answered");
        assert_eq!((stale.text().as_str(), stale.header("x-fetch")), ("v1", Some("1")));
        let ttl: i64 = cache_status(&stale).rsplit("ttl=").next().unwrap().parse().unwrap();
        assert!(cache_status(&stale).contains("; hit; ") && ttl <= 0, "{stale:#?}");
        let asked = origin.wait_requests(2);
        assert_eq!(asked[1].header("if-none-match"), Some("\"t\""));
        // Once refreshed, the same connection carries on, fresh.
        let fresh = get(&mut c, &url, &[]);
        assert_eq!(fresh.header("x-fetch"), Some("2"), "{fresh:#?}");
        assert!(cache_status(&fresh).contains("; hit; ttl="));
        assert_eq!(count.load(Ordering::SeqCst), 2);
        assert_eq!(proxy.wait_for_records("GET", &url, 2)[1].cache.as_deref(), Some("stale_hit"));
    }

    /// When the origin cannot answer, a stale entry is served (RFC 9111
    /// §4.2.4), unless it says must-revalidate: then the client gets the
    /// error.
    fn stale_entries_stand_in_when_the_origin_is_down(bin) {
        // Answers its first connection, then closes every other one
        // without a word.
        let once = |cache_control: &'static str| {
            RawOrigin::start(move |mut s, index| {
                if read_request_head(&mut s).is_none() || index > 0 {
                    return;
                }
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nCache-Control: {cache_control}\r\nContent-Length: 3\r\nConnection: close\r\n\r\nold"
                );
            })
        };
        let lenient = once("max-age=1");
        let strict = once("max-age=1, must-revalidate");
        let proxy = cached(bin, "");
        let mut c = proxy.connect();
        get(&mut c, &lenient.url("/a"), &[]);
        get(&mut c, &strict.url("/a"), &[]);
        std::thread::sleep(Duration::from_millis(1100));
        let resp = get(&mut c, &lenient.url("/a"), &[]);
        assert_eq!((resp.status(), resp.text().as_str()), (200, "old"));
        assert!(cache_status(&resp).contains("fwd=stale; detail=origin-unreachable"), "{resp:#?}");
        assert_eq!(proxy.wait_for_records("GET", &lenient.url("/a"), 2)[1].cache.as_deref(), Some("stale_hit"));
        let resp = get(&mut c, &strict.url("/a"), &[]);
        assert_eq!(resp.status(), 502, "{resp:#?}");
        assert_eq!(resp.header("cache-status"), None);
    }

    /// A body cut short, and one longer than its Content-Length said, are
    /// passed on as they came but never stored.
    fn broken_responses_are_never_stored(bin) {
        let origin = RawOrigin::start(|mut s, _| {
            let Some(head) = read_request_head(&mut s) else { return };
            let head = String::from_utf8_lossy(&head).into_owned();
            let reply: &[u8] = if head.contains("/short") {
                b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 100\r\n\r\nonly part"
            } else {
                b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 4\r\n\r\nlie and more"
            };
            let _ = s.write_all(reply);
        });
        let proxy = cached(bin, "");
        for path in ["/short", "/lie"] {
            for _ in 0..2 {
                let mut c = proxy.connect();
                c.send(request("GET", &origin.url(path), &[], b""));
                let head = c.read_head();
                assert!(
                    head.header("cache-status").is_some_and(|s| s.contains("fwd=uri-miss")),
                    "{path}: {head:#?}"
                );
            }
        }
        assert_eq!(origin.connections(), 4, "every request went to the origin");
        let short = proxy.wait_for_record("GET", &origin.url("/short"));
        assert_eq!(short.error.as_deref(), Some("http_response_incomplete"));
        assert_eq!(metric(&proxy, "proxy_cache_stores_total"), 0.0);
    }

    /// Attempts to make the cache hand another client something else: a
    /// Host that disagrees with the URI, a second Host, hop-by-hop fields
    /// either way. The key is the URI; the origin only ever sees the URI's
    /// host; hop-by-hop fields never reach the origin or the store.
    fn poisoning_attempts_do_not_reach_other_clients(bin) {
        let origin = Origin::start(|r| {
            Reply::ok(format!(
                "host={} evil={}",
                r.header("host").unwrap_or("-"),
                r.header("x-evil").unwrap_or("-")
            ))
            .header("Cache-Control", "max-age=3600")
            .header("Connection", "X-Conn-Secret")
            .header("X-Conn-Secret", "per-connection")
            .header("Keep-Alive", "timeout=5")
        });
        let proxy = cached(bin, "");
        let url = origin.url("/page");
        let mut attacker = proxy.connect();
        attacker.send(format!(
            "GET {url} HTTP/1.1\r\nHost: evil.example\r\nConnection: X-Evil\r\nX-Evil: injected\r\n\r\n"
        ));
        let first = attacker.read_response("GET");
        let honest = format!("host={} evil=-", origin.authority());
        assert_eq!(first.text(), honest);
        let mut second = proxy.connect();
        second.send(format!("GET {url} HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"));
        assert_eq!(second.read_response("GET").status(), 400);

        let mut victim = proxy.connect();
        let resp = get(&mut victim, &url, &[]);
        assert!(cache_status(&resp).contains("; hit"));
        assert_eq!(resp.text(), honest);
        assert_eq!(resp.header("x-conn-secret"), None);
        assert_eq!(resp.header("keep-alive"), None);
        assert_eq!(origin.requests().len(), 1);
    }

    /// 10,000 distinct URLs of 1 KiB through a 1 MiB cache: the store
    /// never holds more than its budget, evicts, and the process stays
    /// small.
    fn a_flood_of_urls_stays_within_the_budget(bin) {
        let origin = Origin::start(|_| Reply::ok(vec![b'z'; 1024]).header("Cache-Control", "max-age=3600"));
        let proxy = cached(bin, "memory: \"1MiB\", max_object: \"64KiB\"");
        let mut c = proxy.connect();
        get(&mut c, &origin.url("/warm"), &[]);
        let before = proxy.rss();
        let mut peak_bytes = 0.0f64;
        for i in 0..10_000 {
            let resp = get(&mut c, &origin.url(&format!("/u/{i}")), &[]);
            assert_eq!(resp.body.len(), 1024);
            if i % 2000 == 1999 {
                peak_bytes = peak_bytes.max(metric(&proxy, "proxy_cache_bytes"));
            }
        }
        let grown = proxy.rss().saturating_sub(before);
        assert!(peak_bytes > 512.0 * 1024.0 && peak_bytes <= 1024.0 * 1024.0, "held {peak_bytes} bytes");
        assert!(metric(&proxy, "proxy_cache_evictions_total") > 8_000.0);
        assert!(metric(&proxy, "proxy_cache_entries") < 1024.0);
        assert!(grown < 16 << 20, "RSS grew by {grown} bytes");
        // Recent URLs are still there.
        assert!(cache_status(&get(&mut c, &origin.url("/u/9999"), &[])).contains("; hit"));
    }
}
