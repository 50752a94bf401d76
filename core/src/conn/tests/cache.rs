//! The cache against a reference model: random sequences of GETs (over
//! URLs with and without `Vary`, fresh for various times, of sizes that
//! crowd the store) and clock steps, each on a new connection sharing one
//! cache, through the production driver. The store never exceeds its
//! budget, never answers with a response fetched for another URL or
//! variant, never answers with a stale one, and, while nothing is
//! evicted, hits exactly when the model holds a fresh response.

use super::*;
use crate::cache::CacheConfig;
use proptest::prelude::*;
use std::collections::HashMap;

#[derive(Debug, Clone)]
enum Step {
    /// GET `/u<url>`, with `Accept-Language` if `lang` says.
    Get { url: u8, lang: Option<u8> },
    /// The clock moves on.
    Wait(Duration),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..8, proptest::option::of(0u8..2)).prop_map(|(url, lang)| Step::Get { url, lang }),
        1 => (0u64..2500).prop_map(|ms| Step::Wait(Duration::from_millis(ms))),
    ]
}

const LANGS: [&str; 2] = ["en", "de"];

/// How the origin answers for `url`: fresh for 0, 1, 2 or 3 seconds;
/// `Vary: Accept-Language` for odd ones; bodies of up to 7 KiB.
fn max_age(url: u8) -> u64 {
    u64::from(url % 4)
}

fn varies(url: u8) -> bool {
    url % 2 == 1
}

/// What the model knows was stored: the body, and until when it is fresh.
#[derive(Debug, Clone)]
struct Stored {
    body: String,
    fresh_until: Instant,
}

/// Splits a response into its head (lower-cased field names) and body.
fn parse(bytes: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole head");
    (head.to_ascii_lowercase(), body.to_owned())
}

/// Runs `steps`; checks the invariants after each, and hit-or-miss
/// against the model when `exact`.
fn run(steps: &[Step], memory: usize, exact: bool) -> Result<(), TestCaseError> {
    let config = Config {
        cache: CacheConfig {
            enabled: true,
            memory,
            max_object: 8 << 10,
            ..CacheConfig::default()
        },
        ..Config::default()
    };
    let shared = crate::Shared::allow_all(config);
    let cache = shared.snapshot().cache.clone().expect("the cache is on");
    let mut now = Instant::from_micros(5_000_000);
    let mut fetches = 0u64;
    let mut model: HashMap<(u8, Option<u8>), Stored> = HashMap::new();
    for step in steps {
        let (url, lang) = match *step {
            Step::Wait(d) => {
                now = now + d;
                continue;
            }
            Step::Get { url, lang } => (url, lang),
        };
        let mut request =
            format!("GET http://origin.test/u{url} HTTP/1.1\r\nHost: origin.test\r\n");
        if let Some(l) = lang {
            request.push_str(&format!("Accept-Language: {}\r\n", LANGS[usize::from(l)]));
        }
        request.push_str("\r\n");
        let key = (url, if varies(url) { lang } else { None });
        let expected = model.get(&key).filter(|s| now < s.fresh_until).cloned();
        let mut sim = Sim::with_shared_at(shared.clone(), now);
        sim.client_sends(request.as_bytes());
        let hit = sim.resolves.is_empty();
        if !hit {
            fetches += 1;
            let body = format!(
                "u{url} lang={} fetch={fetches} {}",
                lang.map_or("-", |l| LANGS[usize::from(l)]),
                "x".repeat(usize::from(url) * 1000)
            );
            let mut response = format!(
                "HTTP/1.1 200 OK\r\nCache-Control: max-age={}\r\nContent-Length: {}\r\n",
                max_age(url),
                body.len()
            );
            if varies(url) {
                response.push_str("Vary: Accept-Language\r\n");
            }
            response.push_str("\r\n");
            response.push_str(&body);
            sim.resolve(&["192.0.2.1"]);
            sim.connect_ok(false);
            sim.upstream_sends(response.as_bytes());
            let fresh_for = Duration::from_secs(max_age(url));
            if !fresh_for.is_zero() && body.len() <= 8 << 10 {
                model.insert(
                    key,
                    Stored {
                        body,
                        fresh_until: now + fresh_for,
                    },
                );
            }
        }
        let (head, body) = parse(&sim.to_client);
        prop_assert!(head.starts_with("http/1.1 200 ok"), "{head}");
        let status = head
            .lines()
            .find_map(|l| l.strip_prefix("cache-status: "))
            .unwrap_or("")
            .to_owned();
        prop_assert_eq!(hit, status.contains("; hit"), "{}", status);
        if hit {
            // Only what was fetched for this very URL and variant, fresh.
            let expected = expected.ok_or_else(|| {
                TestCaseError::fail(format!("hit without a fresh stored response: {status}"))
            })?;
            prop_assert_eq!(&body, &expected.body);
        } else if exact {
            prop_assert!(
                expected.is_none(),
                "a miss while a fresh response is stored: {}",
                status
            );
        }
        let held = cache
            .store
            .stats
            .bytes
            .load(std::sync::atomic::Ordering::Relaxed);
        prop_assert!(
            held as usize <= memory,
            "{held} bytes held, budget {memory}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A store with room for everything: hits exactly when the model
    /// holds a fresh response.
    #[test]
    fn the_cache_agrees_with_the_model(steps in proptest::collection::vec(step(), 1..60)) {
        run(&steps, 64 << 20, true)?;
    }

    /// A store too small for the working set: within budget, and what it
    /// serves is still right.
    #[test]
    fn a_crowded_cache_stays_in_budget_and_serves_only_the_right_response(
        steps in proptest::collection::vec(step(), 1..80)
    ) {
        run(&steps, 12 << 10, false)?;
    }
}
