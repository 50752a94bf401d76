//! A shared HTTP cache (RFC 9111), in memory, in the core.
//!
//! The [`Cache`] is plain data shared by every connection (in
//! [`Shared`](crate::Shared)): a sharded, byte-bounded [`store`] of
//! [`Entry`]s, and the rules. A connection consults it when a request
//! head has passed policy: a fresh stored response is answered from
//! memory (its body written from the shared bytes, never copied per
//! request), a stale one is revalidated with the origin, and a response
//! that may be stored is copied into an entry as it streams to the client
//! and stored once it arrived whole. This module holds the decisions, as
//! pure functions of the messages and `now`:
//!
//! - [`lifetime`]: freshness lifetime (`s-maxage` > `max-age` > `Expires`
//!   − `Date` > heuristic, RFC 9111 §4.2.1-4.2.2);
//! - [`may_store`]: whether a response may be stored (§3);
//! - [`Cache::select`]: the stored response a request may use, by key and
//!   `Vary` (§4.1), and [`usable`]: whether it is fresh enough for the
//!   request, or must be revalidated (§4.2, §5.2.1);
//! - [`not_modified`]: whether a client's own conditional request is
//!   answered 304 from a stored response (RFC 9110 §13.1).

pub mod directives;
pub mod entry;
pub mod key;
pub mod range;
pub mod store;

use crate::http::head::Fields;
use crate::time::{Instant, UnixTime};
use directives::Directives;
pub use entry::Entry;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use store::Store;

/// What to do with a response that sets a cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetCookie {
    /// Store it when its freshness is explicit (`max-age`, `s-maxage`,
    /// `Expires`) or it is marked `public`, never by heuristic alone: the
    /// origin said it may be shared (RFC 9111 §7.3 lets a cache store and
    /// reuse such responses); a guess never shares a cookie.
    Explicit,
    /// Store it as any other response (RFC 9111 as written).
    Always,
    /// Never store it (Varnish's default).
    Never,
}

/// The cache's settings (`cache:` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Cache at all (`--cache`).
    pub enabled: bool,
    /// Most memory the stored responses take, heads, bodies and keys
    /// together.
    #[serde(with = "crate::units::size")]
    pub memory: usize,
    /// Largest response stored; larger ones pass through uncached.
    #[serde(with = "crate::units::size")]
    pub max_object: usize,
    /// Longest freshness guessed from `Last-Modified` (10 % of the
    /// response's age when it came) for responses that state none.
    #[serde(with = "crate::units::duration")]
    pub heuristic_max: Duration,
    /// How long a request waits for another connection's fetch of the
    /// same resource (request collapsing) before going to the origin
    /// itself; zero: never waits.
    #[serde(with = "crate::units::duration")]
    pub collapse_wait: Duration,
    /// Responses with `Set-Cookie`.
    pub set_cookie: SetCookie,
    /// Client addresses (CIDRs) whose `PURGE` requests are obeyed.
    pub purge_from: Vec<String>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: false,
            memory: 256 << 20,
            max_object: 8 << 20,
            heuristic_max: Duration::from_secs(24 * 3600),
            collapse_wait: Duration::from_secs(5),
            set_cookie: SetCookie::Explicit,
            purge_from: vec!["127.0.0.0/8".to_owned(), "::1/128".to_owned()],
        }
    }
}

/// The shared cache: the store and the settings it was made with.
#[derive(Debug)]
pub struct Cache {
    /// The stored responses.
    pub store: Store,
    config: CacheConfig,
}

/// What [`Cache::select`] found for a request.
#[derive(Debug)]
pub enum Selected {
    /// A stored response whose `Vary` matches.
    Entry(Arc<Entry>),
    /// Responses are stored for the URI, none for this request's
    /// variant.
    VaryMiss,
    /// Nothing stored for the URI.
    Miss,
}

/// How a stored response may serve a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usable {
    /// As it is: fresh enough (or stale, within what the request allows).
    Yes {
        /// It is stale (served under `max-stale`).
        stale: bool,
    },
    /// Only once the origin says it is still good (a conditional request).
    Revalidate,
}

impl Cache {
    /// An empty cache with `config`'s budget.
    pub fn new(config: &CacheConfig) -> Cache {
        Cache {
            store: Store::new(config.memory, config.max_object),
            config: config.clone(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// The stored response for a request with `fields` to `key`, if one
    /// matches its `Vary`.
    pub fn select(&self, key: &str, fields: &Fields<'_>) -> Selected {
        let variants = self.store.get(key);
        if variants.is_empty() {
            return Selected::Miss;
        }
        // The most recent match wins (RFC 9111 §4.1).
        let best = variants
            .into_iter()
            .filter(|e| {
                e.vary
                    .iter()
                    .all(|(name, value)| key::vary_value(fields, name) == *value)
            })
            .max_by_key(|e| e.response_time);
        match best {
            Some(e) => Selected::Entry(e),
            None => Selected::VaryMiss,
        }
    }
}

/// Statuses a response may be stored with on heuristic freshness (RFC
/// 9110 §15.1).
const HEURISTIC: &[u16] = &[200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501];

/// Statuses this cache understands: may store with explicit freshness.
fn understood(status: u16) -> bool {
    matches!(
        status,
        200 | 203
            | 204
            | 300
            | 301
            | 302
            | 303
            | 307
            | 308
            | 400
            | 403
            | 404
            | 405
            | 410
            | 414
            | 421
            | 451
            | 500
            | 501
            | 502
            | 503
            | 504
    )
}

/// The response's `Expires`, if it has one that parses; `Some(None)` for
/// one that does not (which means already expired, RFC 9111 §5.3).
fn expires(fields: &Fields<'_>) -> Option<Option<UnixTime>> {
    let mut all = fields.get_all("expires");
    let first = all.next()?;
    Some(crate::http::date::parse_http_date(first))
}

/// Freshness lifetime of a response (RFC 9111 §4.2.1): `s-maxage`, then
/// `max-age`, then `Expires` − `Date`, then a heuristic for statuses that
/// allow one: 10 % of the time since `Last-Modified`, at most
/// `heuristic_max`. `date` is the response's `Date` (or its arrival).
pub fn lifetime(
    status: u16,
    fields: &Fields<'_>,
    d: &Directives,
    date: UnixTime,
    heuristic_max: Duration,
) -> Duration {
    if let Some(s) = d.s_maxage {
        return s;
    }
    if let Some(m) = d.max_age {
        return m;
    }
    if let Some(exp) = expires(fields) {
        return match exp {
            Some(t) => Duration::from_micros(t.0.saturating_sub(date.0)),
            None => Duration::ZERO,
        };
    }
    if HEURISTIC.contains(&status) {
        if let Some(lm) = fields
            .get("last-modified")
            .and_then(crate::http::date::parse_http_date)
        {
            let age = Duration::from_micros(date.0.saturating_sub(lm.0));
            return (age / 10).min(heuristic_max);
        }
    }
    Duration::ZERO
}

/// Whether the response has freshness of its own (not a heuristic one).
pub fn explicit_freshness(fields: &Fields<'_>, d: &Directives) -> bool {
    d.s_maxage.is_some() || d.max_age.is_some() || fields.contains("expires")
}

/// Why a response is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    /// `no-store` in the request or the response.
    NoStore,
    /// `private`: for one user's cache.
    Private,
    /// The request carried `Authorization` and the response does not say
    /// it may be shared.
    Authorization,
    /// A status the cache does not store.
    Status,
    /// `Vary: *`: never selectable.
    VaryStar,
    /// Nothing says how long it stays fresh, and no validator to revive it.
    NoFreshness,
    /// It sets a cookie (see [`SetCookie`]).
    SetCookie,
}

/// What a response's storing depends on from its request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts {
    /// The request's `Cache-Control` said `no-store`.
    pub no_store: bool,
    /// The request carried `Authorization`.
    pub authorization: bool,
}

/// Whether a response to a GET may be stored (RFC 9111 §3).
pub fn may_store(
    config: &CacheConfig,
    request: RequestFacts,
    status: u16,
    fields: &Fields<'_>,
    d: &Directives,
) -> Result<(), NotStored> {
    if d.must_understand && !understood(status) {
        return Err(NotStored::Status);
    }
    // `must-understand` with a status we know overrides the response's
    // `no-store` (RFC 9111 §5.2.2.3); the request's still holds.
    if request.no_store || (d.no_store && !d.must_understand) {
        return Err(NotStored::NoStore);
    }
    if d.private {
        return Err(NotStored::Private);
    }
    // Final, and whole: partial content is passed through, not stored.
    if status < 200 || status == 206 || status == 304 {
        return Err(NotStored::Status);
    }
    if request.authorization && !(d.public || d.s_maxage.is_some() || d.must_revalidate) {
        return Err(NotStored::Authorization);
    }
    if key::vary_names(fields).is_none() {
        return Err(NotStored::VaryStar);
    }
    // Something must say it may be reused: explicit freshness, `public`,
    // or a status that allows a heuristic (RFC 9111 §3).
    let explicit = explicit_freshness(fields, d);
    if !explicit && !d.public && !HEURISTIC.contains(&status) {
        return Err(NotStored::NoFreshness);
    }
    if fields.contains("set-cookie") || fields.contains("set-cookie2") {
        match config.set_cookie {
            SetCookie::Always => {}
            SetCookie::Never => return Err(NotStored::SetCookie),
            SetCookie::Explicit if explicit || d.public => {}
            SetCookie::Explicit => return Err(NotStored::SetCookie),
        }
    }
    Ok(())
}

/// Whether `entry` may serve a request with directives `req` at `now`
/// (RFC 9111 §4.2, §4.2.4, §5.2): `None` when it must not be used at all
/// (the request or the response forbids it and there is nothing to
/// revalidate with... which a caller treats as a miss).
pub fn usable(entry: &Entry, req: &Directives, pragma_no_cache: bool, now: Instant) -> Usable {
    let d = &entry.directives;
    // no-cache, either side: always ask the origin first.
    if d.no_cache || req.no_cache || (pragma_no_cache && !req.present) {
        return Usable::Revalidate;
    }
    let age = entry.age(now);
    if req.max_age.is_some_and(|max| age > max) {
        return Usable::Revalidate;
    }
    match entry.freshness(now) {
        Ok(left) => {
            if req.min_fresh.is_some_and(|min| left < min) {
                return Usable::Revalidate;
            }
            Usable::Yes { stale: false }
        }
        Err(past) => {
            // A stale response is served only if the request accepts that
            // much staleness and the response allows serving it stale.
            let strict = d.must_revalidate || d.proxy_revalidate || d.s_maxage.is_some();
            if !strict && req.max_stale.is_some_and(|max| past <= max) {
                Usable::Yes { stale: true }
            } else {
                Usable::Revalidate
            }
        }
    }
}

/// Whether `entry` may still be served stale because the origin failed
/// (`stale-if-error`, RFC 5861 §4), `past` after it went stale.
pub fn stale_if_error(entry: &Entry, req: &Directives, past: Duration) -> bool {
    let d = &entry.directives;
    if d.must_revalidate || d.proxy_revalidate || d.s_maxage.is_some() || d.no_cache {
        return false;
    }
    let allowed = req
        .stale_if_error
        .or(d.stale_if_error)
        .unwrap_or(Duration::ZERO);
    past <= allowed && allowed > Duration::ZERO
}

/// Whether `entry` may be served stale while it is revalidated in the
/// background (`stale-while-revalidate`, RFC 5861 §3), `past` after it
/// went stale.
pub fn stale_while_revalidate(entry: &Entry, past: Duration) -> bool {
    let d = &entry.directives;
    if d.must_revalidate || d.proxy_revalidate || d.s_maxage.is_some() || d.no_cache {
        return false;
    }
    d.stale_while_revalidate.is_some_and(|w| past <= w)
}

/// Whether a client's conditional request (`If-None-Match`, or
/// `If-Modified-Since` without it) is answered 304 by `entry`
/// (RFC 9110 §13.1.2-13.1.3, weak comparison for `If-None-Match`).
pub fn not_modified(entry: &Entry, fields: &Fields<'_>) -> bool {
    if fields.contains("if-none-match") {
        let Some(etag) = entry.etag() else {
            return false;
        };
        return fields
            .list("if-none-match")
            .any(|tag| tag == b"*" || weak_eq(tag, etag));
    }
    let Some(since) = fields
        .get("if-modified-since")
        .and_then(crate::http::date::parse_http_date)
    else {
        return false;
    };
    match entry
        .last_modified()
        .and_then(crate::http::date::parse_http_date)
    {
        Some(lm) => lm <= since,
        None => entry.date() <= since,
    }
}

/// Weak comparison of two entity tags (RFC 9110 §8.8.3.2).
pub fn weak_eq(a: &[u8], b: &[u8]) -> bool {
    fn opaque(tag: &[u8]) -> &[u8] {
        let tag = crate::http::head::trim(tag);
        tag.strip_prefix(b"W/").unwrap_or(tag)
    }
    opaque(a) == opaque(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::{parse_request, parse_response, ResponseHead};

    const NOW: Instant = Instant::from_micros(1_000_000_000);
    /// The calendar time at `NOW`: Sun, 06 Nov 1994 08:49:37 GMT.
    const WALL: UnixTime = UnixTime(784_111_777_000_000);
    const DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

    fn response(lines: &str) -> ResponseHead<'_> {
        let raw = Box::leak(format!("HTTP/1.1 200 OK\r\n{lines}\r\n").into_boxed_str());
        parse_response(raw.as_bytes(), 50).unwrap()
    }

    fn request_fields(lines: &str) -> Fields<'static> {
        let raw =
            Box::leak(format!("GET http://a/ HTTP/1.1\r\nHost: a\r\n{lines}\r\n").into_boxed_str());
        parse_request(raw.as_bytes(), 50, 1000).unwrap().fields
    }

    /// A response with `lines`, stored at `NOW`.
    fn stored(lines: &str) -> Entry {
        let head = response(lines);
        let d = Directives::of(&head.fields);
        let fields = entry::stored_fields(&head.fields);
        Entry {
            status: 200,
            reason: "OK".into(),
            lifetime: lifetime(200, &head.fields, &d, WALL, Duration::from_secs(86_400)),
            directives: d,
            age_value: entry::age_value(&head.fields),
            size: entry::cost("k", &fields, 0),
            fields,
            body: Arc::from(&b""[..]),
            request_time: NOW,
            response_time: NOW,
            response_wall: WALL,
            vary: Vec::new(),
        }
    }

    fn storable(lines: &str, facts: RequestFacts) -> Result<(), NotStored> {
        let head = response(lines);
        let d = Directives::of(&head.fields);
        may_store(
            &CacheConfig::default(),
            facts,
            head.status,
            &head.fields,
            &d,
        )
    }

    const PLAIN: RequestFacts = RequestFacts {
        no_store: false,
        authorization: false,
    };

    #[test]
    fn lifetime_prefers_s_maxage_then_max_age_then_expires_then_heuristic() {
        let life = |lines: &str| {
            let head = response(lines);
            let d = Directives::of(&head.fields);
            lifetime(200, &head.fields, &d, WALL, Duration::from_secs(3600)).as_secs()
        };
        assert_eq!(life("Cache-Control: max-age=10, s-maxage=20\r\n"), 20);
        assert_eq!(
            life("Cache-Control: max-age=10\r\nExpires: Sun, 06 Nov 1994 09:49:37 GMT\r\n"),
            10
        );
        assert_eq!(life("Expires: Sun, 06 Nov 1994 08:50:37 GMT\r\n"), 60);
        // An Expires that does not parse means already expired.
        assert_eq!(
            life("Expires: 0\r\nLast-Modified: Sun, 06 Nov 1994 07:49:37 GMT\r\n"),
            0
        );
        // 10% of an hour since Last-Modified; capped by heuristic_max.
        assert_eq!(
            life("Last-Modified: Sun, 06 Nov 1994 07:49:37 GMT\r\n"),
            360
        );
        assert_eq!(
            life("Last-Modified: Sun, 06 Nov 1980 07:49:37 GMT\r\n"),
            3600
        );
        assert_eq!(life(""), 0);
    }

    #[test]
    fn what_may_be_stored() {
        let ok = |lines: &str| storable(lines, PLAIN);
        assert_eq!(ok("Cache-Control: max-age=60\r\n"), Ok(()));
        assert_eq!(
            ok("Cache-Control: max-age=60, no-store\r\n"),
            Err(NotStored::NoStore)
        );
        assert_eq!(
            ok("Cache-Control: max-age=60, private\r\n"),
            Err(NotStored::Private)
        );
        assert_eq!(
            ok("Cache-Control: max-age=60\r\nVary: *\r\n"),
            Err(NotStored::VaryStar)
        );
        // A status without heuristic freshness needs explicit freshness.
        let head = response("Content-Type: text/plain\r\n");
        let d = Directives::of(&head.fields);
        let config = CacheConfig::default();
        assert_eq!(
            may_store(&config, PLAIN, 302, &head.fields, &d),
            Err(NotStored::NoFreshness)
        );
        assert_eq!(may_store(&config, PLAIN, 200, &head.fields, &d), Ok(()));
        assert_eq!(
            may_store(&config, PLAIN, 206, &head.fields, &d),
            Err(NotStored::Status)
        );
        // A validator alone lets a heuristic apply to a 200.
        assert_eq!(
            ok("Last-Modified: Sun, 06 Nov 1994 07:49:37 GMT\r\n"),
            Ok(())
        );
        // must-understand with a status we know overrides no-store.
        assert_eq!(
            ok("Cache-Control: max-age=60, no-store, must-understand\r\n"),
            Ok(())
        );
        let no_store = RequestFacts {
            no_store: true,
            ..PLAIN
        };
        assert_eq!(
            storable("Cache-Control: max-age=60\r\n", no_store),
            Err(NotStored::NoStore)
        );
        let auth = RequestFacts {
            authorization: true,
            ..PLAIN
        };
        assert_eq!(
            storable("Cache-Control: max-age=60\r\n", auth),
            Err(NotStored::Authorization)
        );
        for shared in [
            "public, max-age=60",
            "s-maxage=60",
            "max-age=60, must-revalidate",
        ] {
            assert_eq!(
                storable(&format!("Cache-Control: {shared}\r\n"), auth),
                Ok(()),
                "{shared}"
            );
        }
    }

    #[test]
    fn cookies_are_stored_only_with_explicit_freshness_by_default() {
        let cookie = "Set-Cookie: a=b\r\nLast-Modified: Sun, 06 Nov 1994 07:49:37 GMT\r\n";
        assert_eq!(storable(cookie, PLAIN), Err(NotStored::SetCookie));
        let explicit = format!("{cookie}Cache-Control: max-age=60\r\n");
        assert_eq!(storable(&explicit, PLAIN), Ok(()));
        let never = CacheConfig {
            set_cookie: SetCookie::Never,
            ..CacheConfig::default()
        };
        let head = response(&explicit);
        let d = Directives::of(&head.fields);
        assert_eq!(
            may_store(&never, PLAIN, 200, &head.fields, &d),
            Err(NotStored::SetCookie)
        );
    }

    #[test]
    fn freshness_and_what_the_request_accepts() {
        let e = stored(&format!("Date: {DATE}\r\nCache-Control: max-age=100\r\n"));
        let at = |secs: u64| NOW + Duration::from_secs(secs);
        let use_ = |req: &str, secs: u64| {
            let fields = request_fields(req);
            let d = Directives::of(&fields);
            let pragma = !d.present && fields.has_token("pragma", "no-cache");
            usable(&e, &d, pragma, at(secs))
        };
        assert_eq!(use_("", 50), Usable::Yes { stale: false });
        assert_eq!(use_("", 100), Usable::Revalidate);
        assert_eq!(use_("Cache-Control: no-cache\r\n", 0), Usable::Revalidate);
        assert_eq!(use_("Pragma: no-cache\r\n", 0), Usable::Revalidate);
        assert_eq!(
            use_("Cache-Control: max-age=10\r\n", 50),
            Usable::Revalidate
        );
        assert_eq!(
            use_("Cache-Control: min-fresh=60\r\n", 50),
            Usable::Revalidate
        );
        assert_eq!(
            use_("Cache-Control: max-stale=30\r\n", 120),
            Usable::Yes { stale: true }
        );
        assert_eq!(
            use_("Cache-Control: max-stale=30\r\n", 140),
            Usable::Revalidate
        );
        // A stored Age counts from the start.
        let aged = stored(&format!(
            "Date: {DATE}\r\nCache-Control: max-age=100\r\nAge: 90\r\n"
        ));
        assert_eq!(aged.freshness(at(5)), Ok(Duration::from_secs(5)));
        assert_eq!(aged.freshness(at(20)), Err(Duration::from_secs(10)));
        // must-revalidate forbids serving stale even when asked to.
        let strict = stored(&format!(
            "Date: {DATE}\r\nCache-Control: max-age=1, must-revalidate\r\n"
        ));
        let fields = request_fields("Cache-Control: max-stale=100\r\n");
        assert_eq!(
            usable(&strict, &Directives::of(&fields), false, at(5)),
            Usable::Revalidate
        );
    }

    #[test]
    fn stale_allowances() {
        let e = stored(&format!(
            "Date: {DATE}\r\nCache-Control: max-age=1, stale-while-revalidate=10, stale-if-error=20\r\n"
        ));
        let none = Directives::default();
        assert!(stale_while_revalidate(&e, Duration::from_secs(10)));
        assert!(!stale_while_revalidate(&e, Duration::from_secs(11)));
        assert!(stale_if_error(&e, &none, Duration::from_secs(20)));
        assert!(!stale_if_error(&e, &none, Duration::from_secs(21)));
        let strict = stored(&format!(
            "Date: {DATE}\r\nCache-Control: max-age=1, stale-while-revalidate=10, proxy-revalidate\r\n"
        ));
        assert!(!stale_while_revalidate(&strict, Duration::from_secs(1)));
    }

    #[test]
    fn client_conditionals_against_a_stored_response() {
        let e = stored(&format!(
            "Date: {DATE}\r\nETag: \"v1\"\r\nLast-Modified: Sun, 06 Nov 1994 07:49:37 GMT\r\n"
        ));
        let nm = |req: &str| not_modified(&e, &request_fields(req));
        assert!(nm("If-None-Match: \"v0\", W/\"v1\"\r\n"));
        assert!(nm("If-None-Match: *\r\n"));
        assert!(!nm("If-None-Match: \"v2\"\r\n"));
        // If-None-Match wins over If-Modified-Since.
        assert!(!nm(&format!(
            "If-None-Match: \"v2\"\r\nIf-Modified-Since: {DATE}\r\n"
        )));
        assert!(nm(&format!("If-Modified-Since: {DATE}\r\n")));
        assert!(!nm("If-Modified-Since: Sun, 06 Nov 1994 06:49:37 GMT\r\n"));
        assert!(!nm("If-Modified-Since: yesterday\r\n"));
        assert!(!nm(""));
    }

    #[test]
    fn vary_selects_the_variant_the_request_matches() {
        let cache = Cache::new(&CacheConfig::default());
        let mut e = stored("Cache-Control: max-age=60\r\nVary: Accept-Language\r\n");
        e.vary = vec![("accept-language".into(), Some(Box::from(&b"en"[..])))];
        cache.store.put("k", Arc::new(e));
        let pick = |req: &str| match cache.select("k", &request_fields(req)) {
            Selected::Entry(_) => "entry",
            Selected::VaryMiss => "vary-miss",
            Selected::Miss => "miss",
        };
        assert_eq!(pick("Accept-Language: en\r\n"), "entry");
        assert_eq!(pick("Accept-Language: de\r\n"), "vary-miss");
        assert_eq!(pick(""), "vary-miss");
        assert!(matches!(
            cache.select("other", &request_fields("")),
            Selected::Miss
        ));
    }
}
