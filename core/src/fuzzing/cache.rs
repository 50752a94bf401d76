//! The shared cache through real connections: requests (GET, HEAD,
//! conditional, `no-cache`, POST) to a handful of URLs, answered by an
//! origin whose responses the fuzzer shapes (lifetimes, Vary, validators,
//! statuses, `no-store`, `private`, cookies, sizes), with the clock
//! moving. Whatever happens, the store stays within its budget, and a
//! response answered from it was fetched for the same URL (and the same
//! variant, when it varied), after the last successful POST to it.

use super::connection::World;
use crate::cache::CacheConfig;
use crate::config::Config;
use crate::shared::Shared;
use crate::time::Instant;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// One client request.
#[derive(Debug, Clone, arbitrary::Arbitrary)]
pub enum Step {
    /// A request for `/u<url>`.
    Get {
        /// Which of six URLs.
        url: u8,
        /// `Accept-Language`: none, `en` or `de`.
        lang: u8,
        /// HEAD rather than GET.
        head: bool,
        /// `If-None-Match` with the origin's current tag.
        conditional: bool,
        /// `Cache-Control: no-cache`.
        no_cache: bool,
    },
    /// A POST to `/u<url>` (which invalidates it).
    Post {
        /// Which of six URLs.
        url: u8,
    },
    /// Time passes, in tenths of a second.
    Wait(u8),
}

/// How the origin answers its next request.
#[derive(Debug, Clone, arbitrary::Arbitrary)]
pub struct Answer {
    max_age: u8,
    vary: bool,
    etag: bool,
    status: u8,
    /// Bits: no-store, private, no-cache, must-revalidate, s-maxage,
    /// public, Set-Cookie, Last-Modified.
    flags: u8,
    size: u16,
}

/// The fuzzer's script.
#[derive(Debug, Clone, arbitrary::Arbitrary)]
pub struct Script {
    /// The budget, in KiB above the 64 KiB minimum: small, so the store
    /// is crowded.
    pub memory: u8,
    /// The requests, and the clock moving between them.
    pub steps: Vec<Step>,
    /// The origin's answers, in turn.
    pub answers: Vec<Answer>,
}

const STATUSES: [u16; 8] = [200, 200, 203, 301, 404, 410, 500, 206];
const LANGS: [&str; 3] = ["", "en", "de"];

/// What the origin sent for one fetch.
struct Fetched {
    url: u8,
    lang: u8,
    varied: bool,
}

/// Runs `script`; panics when an invariant breaks (see the module docs).
pub fn cache(script: &Script) {
    let memory = (64 + usize::from(script.memory)) << 10;
    let config = Config {
        cache: CacheConfig {
            enabled: true,
            memory,
            max_object: 16 << 10,
            collapse_wait: Duration::ZERO,
            ..CacheConfig::default()
        },
        ..Config::default()
    };
    let shared = Shared::allow_all(config);
    let store = shared.snapshot().cache.clone().expect("the cache is on");
    let mut now = Instant::from_micros(1_000_000);
    let mut fetched: Vec<Fetched> = Vec::new();
    let mut posted: HashMap<u8, usize> = HashMap::new();
    let mut etag: HashMap<u8, usize> = HashMap::new();
    for step in script.steps.iter().take(64) {
        let (url, method, lang, conditional, no_cache) = match *step {
            Step::Wait(tenths) => {
                now = now + Duration::from_millis(100 * u64::from(tenths));
                continue;
            }
            Step::Post { url } => (url % 6, "POST", 0, false, false),
            Step::Get {
                url,
                lang,
                head,
                conditional,
                no_cache,
            } => (
                url % 6,
                if head { "HEAD" } else { "GET" },
                lang % 3,
                conditional,
                no_cache,
            ),
        };
        let mut request =
            format!("{method} http://origin.test/u{url} HTTP/1.1\r\nHost: origin.test\r\n");
        if lang > 0 {
            request.push_str(&format!(
                "Accept-Language: {}\r\n",
                LANGS[usize::from(lang)]
            ));
        }
        if conditional {
            let tag = etag.get(&url).copied().unwrap_or(0);
            request.push_str(&format!("If-None-Match: \"t{tag}\"\r\n"));
        }
        if no_cache {
            request.push_str("Cache-Control: no-cache\r\n");
        }
        if method == "POST" {
            request.push_str("Content-Length: 1\r\n\r\nx");
        } else {
            request.push_str("\r\n");
        }

        let mut w = World::new(shared.clone(), now);
        w.client_sends(request.as_bytes());
        let mut asked_origin = false;
        for _ in 0..4 {
            match w.asked() {
                (true, _) => w.apply(&super::Event::Resolve(true)),
                (_, true) => w.apply(&super::Event::Connect(0)),
                _ if w.waits_for_upstream() => {
                    asked_origin = true;
                    let sent = w
                        .to_upstream
                        .last()
                        .map(|(_, b)| b.clone())
                        .unwrap_or_default();
                    let sent = String::from_utf8_lossy(&sent).into_owned();
                    let answer = script
                        .answers
                        .get(fetched.len() % script.answers.len().max(1));
                    let response = respond(answer, url, lang, &sent, &mut fetched, &mut etag);
                    w.upstream_sends(response.as_bytes());
                    if method == "POST" && response.starts_with("HTTP/1.1 2") {
                        posted.insert(url, fetched.len());
                    }
                }
                _ => break,
            }
        }
        w.finish();

        let held = store.store.stats.bytes.load(Ordering::Relaxed) as usize;
        assert!(held <= memory, "{held} bytes held in a budget of {memory}");
        let text = String::from_utf8_lossy(&w.to_client).into_owned();
        if asked_origin || method != "GET" {
            continue;
        }
        // Answered without the origin: from storage, so by what was
        // fetched for this URL and variant, since the last POST to it.
        let Some(at) = text.find("fetch=") else {
            continue; // a 304 or an error page: no body
        };
        let id: usize = text[at + 6..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .expect("a fetch number");
        let f = &fetched[id];
        assert_eq!(f.url, url, "served another URL's response");
        assert!(!f.varied || f.lang == lang, "served another variant");
        assert!(
            posted.get(&url).map_or(true, |&p| id >= p),
            "served what a POST invalidated"
        );
    }
}

/// The origin's response to the request `sent` for `/u<url>`.
fn respond(
    answer: Option<&Answer>,
    url: u8,
    lang: u8,
    sent: &str,
    fetched: &mut Vec<Fetched>,
    etag: &mut HashMap<u8, usize>,
) -> String {
    let default = Answer {
        max_age: 60,
        vary: false,
        etag: true,
        status: 0,
        flags: 0,
        size: 10,
    };
    let a = answer.unwrap_or(&default);
    let tag = *etag.get(&url).unwrap_or(&0);
    if a.etag && sent.contains(&format!("If-None-Match: \"t{tag}\"")) {
        return format!(
            "HTTP/1.1 304 Not Modified\r\nETag: \"t{tag}\"\r\nCache-Control: max-age={}\r\n\r\n",
            a.max_age % 5
        );
    }
    let id = fetched.len();
    fetched.push(Fetched {
        url,
        lang,
        varied: a.vary,
    });
    etag.insert(url, id);
    let body = format!(
        "u{url} lang={lang} fetch={id} {}",
        "x".repeat(usize::from(a.size % 20_000))
    );
    let status = STATUSES[usize::from(a.status) % STATUSES.len()];
    let mut cc = vec![format!("max-age={}", a.max_age % 5)];
    for (bit, directive) in [
        (0, "no-store"),
        (1, "private"),
        (2, "no-cache"),
        (3, "must-revalidate"),
        (4, "s-maxage=2"),
        (5, "public"),
    ] {
        if a.flags & (1 << bit) != 0 {
            cc.push(directive.to_owned());
        }
    }
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nCache-Control: {}\r\nContent-Length: {}\r\n",
        cc.join(", "),
        body.len()
    );
    if status == 206 {
        head.push_str(&format!(
            "Content-Range: bytes 0-{}/{}\r\n",
            body.len() - 1,
            body.len()
        ));
    }
    if a.vary {
        head.push_str("Vary: Accept-Language\r\n");
    }
    if a.etag {
        head.push_str(&format!("ETag: \"t{id}\"\r\n"));
    }
    if a.flags & (1 << 6) != 0 {
        head.push_str("Set-Cookie: s=1\r\n");
    }
    if a.flags & (1 << 7) != 0 {
        head.push_str("Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
    }
    head + "\r\n" + &body
}
