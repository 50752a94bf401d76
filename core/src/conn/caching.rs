//! The cache's part in an exchange: looking a request up before it is
//! forwarded, answering from a stored response, revalidating a stale one,
//! storing a response as it streams to the client, and invalidating what
//! an unsafe request changed. The decisions themselves are in
//! [`crate::cache`]; this is where they meet the connection.

use super::exchange::{Exchange, Resp};
use super::{Action, Connection, Phase};
use crate::cache::directives::Directives;
use crate::cache::entry::{self, Entry};
use crate::cache::{self, key, Cache, RequestFacts, Selected, Usable};
use crate::http::framing::Framing;
use crate::http::head::{Field, Fields, RequestHead, ResponseHead, Version};
use crate::http::rewrite::write_decimal;
use crate::io::Side;
use crate::reason::CacheResult;
use crate::time::Instant;
use std::sync::Arc;
use std::time::Duration;

/// What the cache knows of the exchange in flight.
#[derive(Debug)]
pub(super) struct CacheExchange {
    cache: Arc<Cache>,
    pub(super) key: String,
    /// The request's fields, kept for `Vary` and for the client's own
    /// conditionals once the response is in.
    req_fields: Vec<(Box<str>, Box<[u8]>)>,
    req: Directives,
    facts: RequestFacts,
    /// GET or HEAD: answered from storage or stored.
    lookup: bool,
    head_only: bool,
    /// An unsafe method: what it changes is invalidated once it succeeds.
    invalidates: bool,
    /// The stored response being revalidated.
    revalidating: Option<Arc<Entry>>,
    /// The response being stored as it arrives.
    fill: Option<Fill>,
    /// Registered as the fetch others may wait for (request collapsing).
    filling: bool,
    /// What happened, for the record.
    pub(super) result: CacheResult,
    /// `fwd=` of `Cache-Status` when forwarded.
    fwd: &'static str,
    request_time: Instant,
}

impl Drop for CacheExchange {
    fn drop(&mut self) {
        if self.filling {
            self.cache.store.end_fill(&self.key);
        }
    }
}

/// A response on its way into the store.
#[derive(Debug)]
struct Fill {
    status: u16,
    reason: Box<str>,
    fields: Vec<(Box<str>, Box<[u8]>)>,
    vary: key::Secondary,
    directives: Directives,
    lifetime: Duration,
    age_value: u64,
    response_time: Instant,
    response_wall: crate::time::UnixTime,
    body: Vec<u8>,
    limit: usize,
}

/// What the cache decided about a request head.
pub(super) enum CachePlan {
    /// Forward it; with these validators (`ETag`, `Last-Modified`) to ask
    /// whether a stored response is still good.
    Forward(Option<Validators>),
    /// Answer from this stored response.
    Serve(Arc<Entry>, CacheResult),
    /// `only-if-cached` and nothing usable: 504.
    OnlyIfCached,
}

/// A stored response's validators, for a conditional request.
pub(super) struct Validators {
    pub(super) etag: Option<Box<[u8]>>,
    pub(super) last_modified: Option<Box<[u8]>>,
}

fn owned_fields(fields: &Fields<'_>) -> Vec<(Box<str>, Box<[u8]>)> {
    fields
        .0
        .iter()
        .map(|f| (Box::from(f.name), Box::from(f.value)))
        .collect()
}

fn borrowed(fields: &[(Box<str>, Box<[u8]>)]) -> Fields<'_> {
    Fields(
        fields
            .iter()
            .map(|(n, v)| Field { name: n, value: v })
            .collect(),
    )
}

/// Whether `method` changes what a URI names (RFC 9110 §9.2.1).
fn unsafe_method(method: &str) -> bool {
    !matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE")
}

impl Connection {
    /// Looks the request up, for a forwarded request to `key`. Sets the
    /// exchange's cache state; `None` when the cache is off.
    pub(super) fn plan_cache(
        &self,
        now: Instant,
        head: &RequestHead,
        ex: &mut Exchange,
        key: String,
    ) -> Option<CachePlan> {
        let cache = self.cache.clone()?;
        let fields = &head.fields;
        let req = Directives::of(fields);
        let pragma_no_cache = !req.present && fields.has_token("pragma", "no-cache");
        let lookup =
            matches!(head.method, "GET" | "HEAD") && !fields.contains("range") && !ex.upgrade;
        let mut state = CacheExchange {
            cache: cache.clone(),
            key,
            req_fields: Vec::new(),
            req: req.clone(),
            facts: RequestFacts {
                no_store: req.no_store,
                authorization: fields.contains("authorization"),
            },
            lookup,
            head_only: head.method == "HEAD",
            invalidates: unsafe_method(head.method),
            revalidating: None,
            fill: None,
            filling: false,
            result: CacheResult::Bypass,
            fwd: if lookup { "uri-miss" } else { "method" },
            request_time: now,
        };
        if !lookup {
            ex.cache = Some(Box::new(state));
            return Some(CachePlan::Forward(None));
        }
        state.req_fields = owned_fields(fields);
        state.result = CacheResult::Miss;
        let mut plan = CachePlan::Forward(None);
        match cache.select(&state.key, fields) {
            Selected::Entry(entry) => match cache::usable(&entry, &req, pragma_no_cache, now) {
                Usable::Yes { stale } => {
                    let result = if stale {
                        CacheResult::StaleHit
                    } else {
                        CacheResult::Hit
                    };
                    plan = CachePlan::Serve(entry, result);
                }
                Usable::Revalidate => {
                    let client_forced = entry.freshness(now).is_ok();
                    state.fwd = if client_forced { "request" } else { "stale" };
                    if client_forced {
                        state.result = CacheResult::ClientRefresh;
                    }
                    if entry.etag().is_some() || entry.last_modified().is_some() {
                        plan = CachePlan::Forward(Some(Validators {
                            etag: entry.etag().map(Box::from),
                            last_modified: entry.last_modified().map(Box::from),
                        }));
                        state.revalidating = Some(entry);
                    }
                }
            },
            Selected::VaryMiss => state.fwd = "vary-miss",
            Selected::Miss => {}
        }
        if req.only_if_cached && !matches!(plan, CachePlan::Serve(..)) {
            plan = CachePlan::OnlyIfCached;
        }
        if matches!(plan, CachePlan::Forward(None)) && !state.head_only {
            state.filling = cache
                .store
                .begin_fill(&state.key, now, cache.config().collapse_wait);
        }
        ex.cache = Some(Box::new(state));
        Some(plan)
    }

    /// Answers the exchange in flight from `entry`: 304 when the client's
    /// own conditional request says it has it, the whole response
    /// otherwise (its head only for HEAD).
    pub(super) fn answer_from_cache(
        &mut self,
        now: Instant,
        entry: Arc<Entry>,
        result: CacheResult,
    ) {
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        let Some(state) = ex.cache.as_mut() else {
            return;
        };
        let req = borrowed(&state.req_fields);
        let (status, result) = if cache::not_modified(&entry, &req) {
            (304, CacheResult::NotModifiedHit)
        } else {
            (entry.status, result)
        };
        let head_only = state.head_only || status == 304;
        state.result = result;
        let age = entry.age(now).as_secs();
        let ttl = match entry.freshness(now) {
            Ok(left) => left.as_secs() as i64,
            Err(past) => -(past.as_secs() as i64),
        };
        // The exchange ends here: persistence as after any response.
        let keep = ex.client_keep_alive && ex.req_done() && !self.shutting_down && !self.client_eof;
        ex.close_after = !keep;
        let version = ex.version;
        let proxy_name = self.config.proxy_name.clone();
        let len = self.outbox.write_with(Side::Client, |out| {
            write_stored_head(
                out,
                &entry,
                status,
                age,
                ttl,
                &proxy_name,
                version,
                keep,
                result,
            )
        });
        let body = if head_only || entry.body.is_empty() {
            0
        } else {
            self.outbox.push(Action::Stored {
                body: entry.body.clone(),
            });
            entry.body.len()
        };
        let ex = self.exchange_mut();
        ex.status = status;
        ex.bytes_to_client += (len + body) as u64;
        ex.resp = Resp::Done;
        self.finish(now);
    }

    /// The response head is in: revalidation answered, storing begun,
    /// invalidation noted. `Some(..)` when the client is answered from
    /// storage instead of with this response (a 304 to a revalidation,
    /// or an error the stored response may stand in for).
    pub(super) fn cache_response_head(
        &mut self,
        now: Instant,
        head: &ResponseHead,
        framing: Framing,
    ) -> Option<(Arc<Entry>, CacheResult)> {
        let wall = self.anchor.wall(now);
        let Phase::Exchange(ex) = &mut self.phase else {
            return None;
        };
        let state = ex.cache.as_mut()?;
        let heuristic_max = state.cache.config().heuristic_max;
        if state.invalidates && (200..400).contains(&head.status) {
            let authority = ex.authority.clone();
            invalidate(state, &authority, head);
        }
        if !state.lookup {
            return None;
        }
        let d = Directives::of(&head.fields);
        if let Some(old) = state.revalidating.take() {
            if head.status == 304 {
                let fresh = refreshed(&old, head, state.request_time, now, wall, heuristic_max);
                state.cache.store.replace(&state.key, &old, fresh.clone());
                return Some((fresh, CacheResult::RefreshUnmodified));
            }
            if head.status >= 500 {
                if let Err(past) = old.freshness(now) {
                    if cache::stale_if_error(&old, &state.req, past) {
                        return Some((old, CacheResult::StaleHit));
                    }
                }
            }
            state.result = CacheResult::RefreshModified;
        }
        if state.head_only {
            return None;
        }
        let stored = cache::may_store(
            state.cache.config(),
            state.facts,
            head.status,
            &head.fields,
            &d,
        );
        let limit = state.cache.store.max_object();
        let fits = match framing {
            Framing::Length(n) => n <= limit as u64,
            Framing::Chunked | Framing::None => true,
            Framing::UntilClose => false,
        };
        if stored.is_ok() && fits {
            let mut fields = entry::stored_fields(&head.fields);
            if !fields.iter().any(|(n, _)| n.eq_ignore_ascii_case("date")) {
                let date = crate::http::date::http_date(wall);
                fields.push(("Date".into(), date.into_bytes().into()));
            }
            let date = crate::http::date::parse_http_date(
                fields
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("date"))
                    .map_or(&b""[..], |(_, v)| &v[..]),
            )
            .unwrap_or(wall);
            let vary_names = key::vary_names(&head.fields).unwrap_or_default();
            let req = borrowed(&state.req_fields);
            let vary = vary_names
                .into_iter()
                .map(|name| {
                    let value = key::vary_value(&req, &name);
                    (name, value)
                })
                .collect();
            let age_value = head
                .fields
                .get("age")
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            state.fill = Some(Fill {
                status: head.status,
                reason: head.reason.into(),
                lifetime: cache::lifetime(head.status, &head.fields, &d, date, heuristic_max),
                directives: d,
                fields,
                vary,
                age_value,
                response_time: now,
                response_wall: wall,
                body: Vec::new(),
                limit,
            });
        }
        None
    }

    /// The `Cache-Status` of the response being forwarded, if the cache is
    /// on.
    pub(super) fn forwarded_cache_status(&self) -> Option<String> {
        let Phase::Exchange(ex) = &self.phase else {
            return None;
        };
        let state = ex.cache.as_ref()?;
        let mut s = format!("{}; fwd={}", self.config.proxy_name, state.fwd);
        if state.fill.is_some() {
            s.push_str("; stored");
        }
        Some(s)
    }

    /// Whether response body bytes must pass through the core (they are
    /// being stored).
    pub(super) fn storing(ex: &Exchange) -> bool {
        ex.cache.as_ref().is_some_and(|c| c.fill.is_some())
    }

    /// Copies response payload bytes into the entry being stored; gives
    /// up on it once it outgrows the largest object.
    pub(super) fn tee(ex: &mut Exchange, payload: &[u8]) {
        let Some(state) = ex.cache.as_mut() else {
            return;
        };
        let Some(fill) = state.fill.as_mut() else {
            return;
        };
        if fill.body.len() + payload.len() > fill.limit {
            state.fill = None;
            return;
        }
        fill.body.extend_from_slice(payload);
    }

    /// The response arrived whole: what was being stored is stored.
    pub(super) fn cache_store(ex: &mut Exchange) {
        if !matches!(ex.resp, Resp::Done) {
            return;
        }
        let Some(state) = ex.cache.as_mut() else {
            return;
        };
        let Some(fill) = state.fill.take() else {
            return;
        };
        let size = entry::cost(&state.key, &fill.fields, fill.body.len());
        let entry = Entry {
            status: fill.status,
            reason: fill.reason,
            fields: fill.fields,
            body: fill.body.into(),
            request_time: state.request_time,
            response_time: fill.response_time,
            response_wall: fill.response_wall,
            age_value: fill.age_value,
            vary: fill.vary,
            directives: fill.directives,
            lifetime: fill.lifetime,
            size,
        };
        state.cache.store.put(&state.key, Arc::new(entry));
        state.filling = false;
    }
}

/// Drops what a successful unsafe request to `authority` changed: its
/// URI, and the `Location` and `Content-Location` ones on the same origin
/// (RFC 9111 §4.4).
fn invalidate(
    state: &mut CacheExchange,
    authority: &crate::http::target::Authority,
    head: &ResponseHead,
) {
    let store = &state.cache.store;
    store.remove(&state.key);
    let host = authority.host.to_string();
    for name in ["location", "content-location"] {
        let Some(value) = head
            .fields
            .get(name)
            .and_then(|v| std::str::from_utf8(v).ok())
        else {
            continue;
        };
        let value = value.trim();
        let key = if value.starts_with('/') {
            Some(key::primary(&host, authority.port, value))
        } else {
            crate::http::target::AbsoluteUri::parse(value)
                .ok()
                .filter(|u| {
                    u.authority.host == authority.host && u.authority.port == authority.port
                })
                .map(|u| key::primary(&host, authority.port, &u.path_and_query))
        };
        if let Some(key) = key {
            store.remove(&key);
        }
    }
}

/// `old` updated by a 304 (RFC 9111 §3.2, §4.3.4): its fields replaced
/// by the 304's, its times and freshness from now on.
fn refreshed(
    old: &Entry,
    head: &ResponseHead,
    request_time: Instant,
    now: Instant,
    wall: crate::time::UnixTime,
    heuristic_max: Duration,
) -> Arc<Entry> {
    let mut fields = old.fields.clone();
    let named: Vec<&[u8]> = head.fields.list("connection").collect();
    let mut replaced: Vec<String> = Vec::new();
    for f in &head.fields.0 {
        if !entry::updatable(f.name)
            || named
                .iter()
                .any(|n| n.eq_ignore_ascii_case(f.name.as_bytes()))
        {
            continue;
        }
        let lower = f.name.to_ascii_lowercase();
        if !replaced.contains(&lower) {
            fields.retain(|(n, _)| !n.eq_ignore_ascii_case(f.name));
            replaced.push(lower);
        }
        fields.push((Box::from(f.name), Box::from(f.value)));
    }
    let view = borrowed(&fields);
    let d = Directives::of(&view);
    let date = view
        .get("date")
        .and_then(crate::http::date::parse_http_date)
        .unwrap_or(wall);
    let age_value = head
        .fields
        .get("age")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let lifetime = cache::lifetime(old.status, &view, &d, date, heuristic_max);
    let size = old.size - entry::cost("", &old.fields, 0) + entry::cost("", &fields, 0);
    Arc::new(Entry {
        status: old.status,
        reason: old.reason.clone(),
        fields,
        body: old.body.clone(),
        request_time,
        response_time: now,
        response_wall: wall,
        age_value,
        vary: old.vary.clone(),
        directives: d,
        lifetime,
        size,
    })
}

/// The head of a response answered from `entry`.
#[allow(clippy::too_many_arguments)]
fn write_stored_head(
    out: &mut Vec<u8>,
    entry: &Entry,
    status: u16,
    age: u64,
    ttl: i64,
    proxy_name: &str,
    version: Version,
    keep_alive: bool,
    result: CacheResult,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    write_decimal(out, status.into());
    out.push(b' ');
    if status == entry.status {
        out.extend_from_slice(entry.reason.as_bytes());
    } else {
        out.extend_from_slice(b"Not Modified");
    }
    out.extend_from_slice(b"\r\n");
    for (name, value) in &entry.fields {
        if status == 304 && name.eq_ignore_ascii_case("content-type") {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Age: ");
    write_decimal(out, age);
    out.extend_from_slice(b"\r\nCache-Status: ");
    out.extend_from_slice(proxy_name.as_bytes());
    let detail = match result {
        CacheResult::RefreshUnmodified => "; fwd=stale; fwd-status=304",
        _ => "; hit",
    };
    out.extend_from_slice(detail.as_bytes());
    out.extend_from_slice(b"; ttl=");
    out.extend_from_slice(ttl.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    if status != 304 {
        out.extend_from_slice(b"Content-Length: ");
        write_decimal(out, entry.body.len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Via: 1.1 ");
    out.extend_from_slice(proxy_name.as_bytes());
    out.extend_from_slice(b"\r\n");
    match (keep_alive, version) {
        (false, _) => out.extend_from_slice(b"Connection: close\r\n"),
        (true, Version::Http10) => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        (true, Version::Http11) => {}
    }
    out.extend_from_slice(b"\r\n");
}
