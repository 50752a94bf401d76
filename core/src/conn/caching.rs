//! The cache's part in an exchange: looking a request up before it is
//! forwarded, answering from a stored response, waiting for another
//! connection's fetch of the same resource, revalidating a stale response
//! (in the background under `stale-while-revalidate`), serving it stale
//! when the origin cannot be reached, storing a response as it streams to
//! the client, and invalidating what an unsafe request changed. The
//! decisions themselves are in [`crate::cache`]; this is where they meet
//! the connection.

use super::exchange::{Exchange, Resp};
use super::{Action, Connection, Phase};
use crate::cache::directives::Directives;
use crate::cache::entry::{self, Entry};
use crate::cache::range::{self, Ranged};
use crate::cache::{self, key, Cache, RequestFacts, Selected, Usable};
use crate::http::framing::Framing;
use crate::http::head::{Field, Fields, RequestHead, ResponseHead, Version};
use crate::http::rewrite::write_decimal;
use crate::io::Side;
use crate::reason::CacheResult;
use crate::time::{Instant, Timer};
use std::sync::Arc;
use std::time::Duration;

/// The first look for a stored response while another connection fetches
/// it; each later look waits twice as long, up to [`COLLAPSE_STEP_MAX`].
const COLLAPSE_STEP: Duration = Duration::from_millis(2);
const COLLAPSE_STEP_MAX: Duration = Duration::from_millis(50);

/// What the cache knows of the exchange in flight.
#[derive(Debug)]
pub(super) struct CacheExchange {
    cache: Arc<Cache>,
    key: String,
    /// The request's fields, kept for `Vary`, `Range` and the client's
    /// own conditionals once the response is in.
    req_fields: Vec<(Box<str>, Box<[u8]>)>,
    req: Directives,
    /// `Pragma: no-cache` without `Cache-Control` (RFC 9111 §5.4).
    pragma_no_cache: bool,
    facts: RequestFacts,
    /// GET or HEAD: answered from storage or stored.
    lookup: bool,
    head_only: bool,
    /// A `Range` request: answered from a complete stored response; what
    /// is forwarded for it is never stored.
    ranged: bool,
    /// An unsafe method: what it changes is invalidated once it succeeds.
    invalidates: bool,
    /// The stored response the origin is asked about: refreshed by a 304
    /// when `conditional`, served stale if the origin cannot be reached
    /// and the response allows it.
    stale: Option<Arc<Entry>>,
    /// The request carries the stored response's validators.
    conditional: bool,
    /// The client was answered already (stale, under
    /// `stale-while-revalidate`); the origin's response only refreshes
    /// the store.
    background: bool,
    /// The response being stored as it arrives.
    fill: Option<Fill>,
    /// Registered as the fetch others may wait for (request collapsing).
    filling: bool,
    /// Waiting for another connection's fetch until then.
    collapse_until: Option<Instant>,
    collapse_step: Duration,
    /// Answered from a response another connection fetched meanwhile.
    collapsed: bool,
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
    /// Forward it; with these validators when asking whether a stored
    /// response is still good.
    Forward(Option<Validators>),
    /// Answer from this stored response.
    Serve(Arc<Entry>, CacheResult),
    /// Answer from this stale response, then revalidate it with these
    /// validators (`stale-while-revalidate`).
    ServeStale(Arc<Entry>, Validators),
    /// Another connection is fetching it: look again at this time.
    Wait(Instant),
    /// `only-if-cached` and nothing usable: 504.
    OnlyIfCached,
}

/// A stored response's validators, for a conditional request.
pub(super) struct Validators {
    pub(super) etag: Option<Box<[u8]>>,
    pub(super) last_modified: Option<Box<[u8]>>,
}

impl Validators {
    fn of(entry: &Entry) -> Validators {
        Validators {
            etag: entry.etag().map(Box::from),
            last_modified: entry.last_modified().map(Box::from),
        }
    }
}

/// Whether a stored response was forwarded for, and what came back: the
/// `fwd` half of `Cache-Status` for a response served from storage.
#[derive(Debug, Clone, Copy)]
enum Forwarded {
    /// Served without asking the origin.
    No,
    /// Asked; the origin answered with this status.
    Status(u16),
    /// Asked; no answer came.
    Unanswered,
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

impl CacheExchange {
    /// What the store has for this request: the plan, with `self` set up
    /// to carry it out.
    fn look_up(&mut self, now: Instant) -> CachePlan {
        let cache = self.cache.clone();
        let fields = borrowed(&self.req_fields);
        let mut plan = CachePlan::Forward(None);
        match cache.select(&self.key, &fields) {
            Selected::Entry(entry) => {
                match cache::usable(&entry, &self.req, self.pragma_no_cache, now) {
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
                        self.fwd = if client_forced { "request" } else { "stale" };
                        if client_forced {
                            self.result = CacheResult::ClientRefresh;
                        }
                        let swr = match entry.freshness(now) {
                            Err(past) => {
                                !client_forced
                                    && !self.req.no_cache
                                    && !self.pragma_no_cache
                                    && cache::stale_while_revalidate(&entry, past)
                            }
                            Ok(_) => false,
                        };
                        // One refresh at a time: others serve it stale too.
                        let refreshing = swr
                            && (self.head_only
                                || !cache.store.begin_fill(
                                    &self.key,
                                    now,
                                    cache.config().collapse_wait,
                                ));
                        if swr && refreshing {
                            plan = CachePlan::Serve(entry, CacheResult::StaleHit);
                        } else if swr {
                            self.filling = true;
                            self.conditional = true;
                            self.background = true;
                            self.stale = Some(entry.clone());
                            plan = CachePlan::ServeStale(entry.clone(), Validators::of(&entry));
                        } else {
                            self.conditional = !self.ranged
                                && (entry.etag().is_some() || entry.last_modified().is_some());
                            if self.conditional {
                                plan = CachePlan::Forward(Some(Validators::of(&entry)));
                            }
                            self.stale = Some(entry);
                        }
                    }
                }
            }
            Selected::VaryMiss => self.fwd = "vary-miss",
            Selected::Miss => {}
        }
        if self.req.only_if_cached && !matches!(plan, CachePlan::Serve(..)) {
            return CachePlan::OnlyIfCached;
        }
        // A plain miss: fetch it for everyone, or wait for whoever is.
        if matches!(plan, CachePlan::Forward(None))
            && self.stale.is_none()
            && !self.head_only
            && !self.ranged
        {
            let wait = cache.config().collapse_wait;
            self.filling = cache.store.begin_fill(&self.key, now, wait);
            if !self.filling && !wait.is_zero() {
                self.collapse_until = Some(now + wait);
                self.collapse_step = COLLAPSE_STEP;
                return CachePlan::Wait(now + COLLAPSE_STEP);
            }
        }
        plan
    }
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
        let lookup = matches!(head.method, "GET" | "HEAD") && !ex.upgrade;
        let mut state = Box::new(CacheExchange {
            cache,
            key,
            req_fields: Vec::new(),
            pragma_no_cache: !req.present && fields.has_token("pragma", "no-cache"),
            facts: RequestFacts {
                no_store: req.no_store,
                authorization: fields.contains("authorization"),
            },
            req,
            lookup,
            head_only: head.method == "HEAD",
            ranged: head.method == "GET" && fields.contains("range"),
            invalidates: unsafe_method(head.method),
            stale: None,
            conditional: false,
            background: false,
            fill: None,
            filling: false,
            collapse_until: None,
            collapse_step: COLLAPSE_STEP,
            collapsed: false,
            result: CacheResult::Bypass,
            fwd: if lookup { "uri-miss" } else { "method" },
            request_time: now,
        });
        if !lookup {
            ex.cache = Some(state);
            return Some(CachePlan::Forward(None));
        }
        state.req_fields = owned_fields(fields);
        state.result = CacheResult::Miss;
        let plan = state.look_up(now);
        ex.cache = Some(state);
        Some(plan)
    }

    /// A collapsed request's next look: answered if the other fetch was
    /// stored, forwarded once it failed or the wait is over.
    pub(super) fn collapse_check(&mut self, now: Instant) {
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        let Some(state) = ex.cache.as_mut() else {
            return;
        };
        let Some(until) = state.collapse_until else {
            return;
        };
        let fields = borrowed(&state.req_fields);
        if let Selected::Entry(entry) = state.cache.select(&state.key, &fields) {
            if let Usable::Yes { stale } =
                cache::usable(&entry, &state.req, state.pragma_no_cache, now)
            {
                state.collapse_until = None;
                state.collapsed = true;
                let result = if stale {
                    CacheResult::StaleHit
                } else {
                    CacheResult::Hit
                };
                return self.answer_from_cache(now, entry, result, Forwarded::No);
            }
        }
        drop(fields);
        if now < until && state.cache.store.filling(&state.key) {
            state.collapse_step = (state.collapse_step * 2).min(COLLAPSE_STEP_MAX);
            let next = (now + state.collapse_step).min(until);
            self.timers.set(Timer::Collapse, next);
            return;
        }
        // The other fetch came to nothing storable, or is too slow: ask
        // the origin, as the one others now wait for.
        state.collapse_until = None;
        let wait = state.cache.config().collapse_wait;
        state.filling = state.cache.store.begin_fill(&state.key, now, wait);
        self.start_upstream(now);
    }

    /// Answers the exchange in flight from a stored response found
    /// before anything was forwarded.
    pub(super) fn answer_hit(&mut self, now: Instant, entry: Arc<Entry>, result: CacheResult) {
        self.answer_from_cache(now, entry, result, Forwarded::No);
    }

    /// Answers the exchange in flight from `entry`, which ends it: 304
    /// when the client's own conditional request says it has it, the part
    /// it asked for, or the whole response (its head only for HEAD).
    fn answer_from_cache(
        &mut self,
        now: Instant,
        entry: Arc<Entry>,
        result: CacheResult,
        fwd: Forwarded,
    ) {
        self.write_from_cache(now, &entry, result, fwd);
        let ex = self.exchange_mut();
        ex.resp = Resp::Done;
        self.finish(now);
    }

    /// Answers a request from a stored response (see
    /// [`answer_from_cache`](Self::answer_from_cache)) without ending
    /// the exchange.
    fn write_from_cache(
        &mut self,
        now: Instant,
        entry: &Arc<Entry>,
        result: CacheResult,
        fwd: Forwarded,
    ) {
        let shutting_down = self.shutting_down || self.client_eof;
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        let Some(state) = ex.cache.as_mut() else {
            return;
        };
        let req = borrowed(&state.req_fields);
        let (answer, result) = if cache::not_modified(entry, &req) {
            (Answer::NotModified, CacheResult::NotModifiedHit)
        } else if state.head_only || !state.ranged {
            (Answer::Whole, result)
        } else {
            match range::select(&req, entry) {
                Ranged::Whole => (Answer::Whole, result),
                Ranged::Part(r) => (Answer::Part(r), result),
                Ranged::Unsatisfiable => (Answer::Unsatisfiable, result),
            }
        };
        drop(req);
        state.result = result;
        let head_only = state.head_only;
        let ttl = match entry.freshness(now) {
            Ok(left) => left.as_secs() as i64,
            Err(past) => -(past.as_secs() as i64),
        };
        let params = status_params(state, fwd, ttl);
        // The exchange ends here for the client: persistence as after any
        // response.
        let keep = ex.client_keep_alive && ex.req_done() && !shutting_down;
        ex.close_after = !keep;
        let stored = StoredHead {
            entry,
            answer: &answer,
            age: entry.age(now).as_secs(),
            cache_status: &params,
            proxy_name: &self.config.proxy_name,
            version: ex.version,
            keep_alive: keep,
        };
        let len = self
            .outbox
            .write_with(Side::Client, |out| stored.write(out));
        let body = match &answer {
            Answer::Whole if !head_only => 0..entry.body.len(),
            Answer::Part(r) => r.clone(),
            _ => 0..0,
        };
        if !body.is_empty() {
            self.outbox.push(Action::Stored {
                body: entry.body.clone(),
                range: body.clone(),
            });
        }
        ex.status = answer.status(entry);
        ex.bytes_to_client += (len + body.len()) as u64;
    }

    /// Serves `entry` stale and goes on to revalidate it in the
    /// background (`stale-while-revalidate`).
    pub(super) fn serve_then_refresh(&mut self, now: Instant, entry: Arc<Entry>) {
        self.write_from_cache(now, &entry, CacheResult::StaleHit, Forwarded::No);
        self.start_upstream(now);
    }

    /// Whether the client has its response already and the origin's only
    /// refreshes the store.
    pub(super) fn background(ex: &Exchange) -> bool {
        ex.cache.as_ref().is_some_and(|c| c.background)
    }

    /// The origin could not be reached or answered nothing usable: the
    /// stale response asked about, if it may stand in (RFC 9111 §4.2.4: a
    /// disconnected cache may serve stale unless the response forbids
    /// it). Ends the exchange if so.
    pub(super) fn serve_stale_on_error(&mut self, now: Instant) -> bool {
        let Phase::Exchange(ex) = &mut self.phase else {
            return false;
        };
        if !ex.response_unstarted() {
            return false;
        }
        let Some(state) = ex.cache.as_mut() else {
            return false;
        };
        let Some(entry) = state.stale.clone() else {
            return false;
        };
        let d = &entry.directives;
        if d.must_revalidate || d.proxy_revalidate || d.s_maxage.is_some() || d.no_cache {
            return false;
        }
        state.fill = None;
        ex.upstream_reusable = false;
        self.answer_from_cache(now, entry, CacheResult::StaleHit, Forwarded::Unanswered);
        true
    }

    /// The response head is in: revalidation answered, storing begun,
    /// invalidation noted. `true` when the exchange is over: the client
    /// was answered from storage instead of with this response (a 304 to
    /// a revalidation, or an error the stored response may stand in for),
    /// or the response only refreshed the store.
    pub(super) fn cache_response_head(
        &mut self,
        now: Instant,
        head: &ResponseHead,
        framing: Framing,
        rest: bool,
    ) -> bool {
        let wall = self.anchor.wall(now);
        let Phase::Exchange(ex) = &mut self.phase else {
            return false;
        };
        let Some(state) = ex.cache.as_mut() else {
            return false;
        };
        let heuristic_max = state.cache.config().heuristic_max;
        if state.invalidates && (200..400).contains(&head.status) {
            invalidate(state, &ex.authority, head);
        }
        if !state.lookup {
            return false;
        }
        let d = Directives::of(&head.fields);
        let mut served = None;
        if let Some(old) = state.stale.take() {
            if head.status == 304 && state.conditional {
                let fresh = refreshed(&old, head, state.request_time, now, wall, heuristic_max);
                state.cache.store.replace(&state.key, &old, fresh.clone());
                served = Some((fresh, CacheResult::RefreshUnmodified));
            } else if head.status >= 500 {
                if let Err(past) = old.freshness(now) {
                    if cache::stale_if_error(&old, &state.req, past) {
                        served = Some((old, CacheResult::StaleHit));
                    }
                }
            } else {
                state.result = CacheResult::RefreshModified;
            }
        }
        if let Some((entry, result)) = served {
            // What is left of this response is not read: the connection
            // is reused only when nothing is left.
            ex.upstream_reusable = head.version == Version::Http11
                && !head.fields.has_token("connection", "close")
                && !rest;
            if state.background {
                ex.resp = Resp::Done;
                self.finish(now);
            } else {
                self.answer_from_cache(now, entry, result, Forwarded::Status(head.status));
            }
            return true;
        }
        if state.head_only || state.ranged {
            return false;
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
            // Complete when the origin closes cleanly; but a transfer
            // coding other than chunked cannot be undone, and so not
            // stored.
            Framing::UntilClose => !head.fields.contains("transfer-encoding"),
        };
        if stored.is_ok() && fits {
            let mut fields = entry::stored_fields(&head.fields);
            if !fields.iter().any(|(n, _)| n.eq_ignore_ascii_case("date")) {
                let date = crate::http::date::http_date(wall);
                fields.push(("Date".into(), date.into_bytes().into()));
            }
            let lifetime = stored_lifetime(head.status, &fields, &d, wall, heuristic_max);
            // Stale from the start and without a validator, it could never
            // be used: not worth its room.
            let validator = head.fields.contains("etag") || head.fields.contains("last-modified");
            if lifetime.is_zero() && !validator {
                return false;
            }
            let vary_names = key::vary_names(&head.fields).unwrap_or_default();
            let req = borrowed(&state.req_fields);
            let vary = vary_names
                .into_iter()
                .map(|name| {
                    let value = key::vary_value(&req, &name);
                    (name, value)
                })
                .collect();
            drop(req);
            state.fill = Some(Fill {
                status: head.status,
                reason: head.reason.into(),
                lifetime,
                directives: d,
                fields,
                vary,
                age_value: entry::age_value(&head.fields),
                response_time: now,
                response_wall: wall,
                body: Vec::new(),
                limit,
            });
        }
        false
    }

    /// The `Cache-Status` of the response being forwarded, if the cache is
    /// on.
    pub(super) fn forwarded_cache_status(&self) -> Option<String> {
        let Phase::Exchange(ex) = &self.phase else {
            return None;
        };
        let state = ex.cache.as_ref()?;
        let mut s = format!("{}; fwd={}", self.config.proxy_name, state.fwd);
        if let Some(fill) = &state.fill {
            s.push_str("; stored; ttl=");
            s.push_str(&fill.lifetime.as_secs().to_string());
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

    /// The response is not to be stored after all.
    pub(super) fn forget_fill(ex: &mut Exchange) {
        if let Some(state) = ex.cache.as_mut() {
            state.fill = None;
        }
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
        if state.filling {
            state.cache.store.end_fill(&state.key);
            state.filling = false;
        }
    }
}

/// The `Cache-Status` parameters after the cache's name (RFC 9211).
fn status_params(state: &CacheExchange, fwd: Forwarded, ttl: i64) -> String {
    let mut s = match fwd {
        Forwarded::No if state.collapsed => "fwd=uri-miss; collapsed".to_owned(),
        Forwarded::No => "hit".to_owned(),
        Forwarded::Status(status) => format!("fwd={}; fwd-status={status}", state.fwd),
        Forwarded::Unanswered => format!("fwd={}; detail=origin-unreachable", state.fwd),
    };
    s.push_str("; ttl=");
    s.push_str(&ttl.to_string());
    s
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

/// The freshness lifetime of a response stored with `fields` (which
/// have a `Date`: the origin's, or the one given at arrival, `wall`).
fn stored_lifetime(
    status: u16,
    fields: &[(Box<str>, Box<[u8]>)],
    d: &Directives,
    wall: crate::time::UnixTime,
    heuristic_max: Duration,
) -> Duration {
    let view = borrowed(fields);
    let date = view
        .get("date")
        .and_then(crate::http::date::parse_http_date)
        .unwrap_or(wall);
    cache::lifetime(status, &view, d, date, heuristic_max)
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
    // A 304 without a Date is dated when it came, as any response a
    // cache keeps (RFC 9110 §6.6.1); the old Date would age it at once.
    if !head.fields.contains("date") {
        fields.retain(|(n, _)| !n.eq_ignore_ascii_case("date"));
        let date = crate::http::date::http_date(wall);
        fields.push(("Date".into(), date.into_bytes().into()));
    }
    let d = Directives::of(&borrowed(&fields));
    let lifetime = stored_lifetime(old.status, &fields, &d, wall, heuristic_max);
    let size = old.size - entry::cost("", &old.fields, 0) + entry::cost("", &fields, 0);
    Arc::new(Entry {
        status: old.status,
        reason: old.reason.clone(),
        fields,
        body: old.body.clone(),
        request_time,
        response_time: now,
        response_wall: wall,
        age_value: entry::age_value(&head.fields),
        vary: old.vary.clone(),
        directives: d,
        lifetime,
        size,
    })
}

/// What a request gets of a stored response.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Whole,
    /// 304: the client's conditional request matched.
    NotModified,
    /// 206 with these body bytes.
    Part(std::ops::Range<usize>),
    /// 416.
    Unsatisfiable,
}

impl Answer {
    fn status(&self, entry: &Entry) -> u16 {
        match self {
            Answer::Whole => entry.status,
            Answer::NotModified => 304,
            Answer::Part(_) => 206,
            Answer::Unsatisfiable => 416,
        }
    }
}

/// The head of a response answered from a stored one.
struct StoredHead<'a> {
    entry: &'a Entry,
    answer: &'a Answer,
    age: u64,
    cache_status: &'a str,
    proxy_name: &'a str,
    version: Version,
    keep_alive: bool,
}

impl StoredHead<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        let entry = self.entry;
        let status = self.answer.status(entry);
        out.extend_from_slice(b"HTTP/1.1 ");
        write_decimal(out, status.into());
        out.push(b' ');
        out.extend_from_slice(match self.answer {
            Answer::Whole => entry.reason.as_bytes(),
            Answer::NotModified => b"Not Modified",
            Answer::Part(_) => b"Partial Content",
            Answer::Unsatisfiable => b"Range Not Satisfiable",
        });
        out.extend_from_slice(b"\r\n");
        for (name, value) in &entry.fields {
            // A 304 carries the validators and caching fields, not the
            // ones describing a body it does not have (RFC 9110 §15.4.5).
            if *self.answer == Answer::NotModified
                && (name.eq_ignore_ascii_case("content-type")
                    || name.eq_ignore_ascii_case("content-range"))
            {
                continue;
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Age: ");
        write_decimal(out, self.age);
        out.extend_from_slice(b"\r\nCache-Status: ");
        out.extend_from_slice(self.proxy_name.as_bytes());
        out.extend_from_slice(b"; ");
        out.extend_from_slice(self.cache_status.as_bytes());
        out.extend_from_slice(b"\r\n");
        let length = entry.body.len() as u64;
        match self.answer {
            Answer::Whole => {
                out.extend_from_slice(b"Content-Length: ");
                write_decimal(out, length);
                out.extend_from_slice(b"\r\n");
            }
            Answer::NotModified => {}
            Answer::Part(r) => {
                out.extend_from_slice(b"Content-Range: bytes ");
                write_decimal(out, r.start as u64);
                out.push(b'-');
                write_decimal(out, r.end as u64 - 1);
                out.push(b'/');
                write_decimal(out, length);
                out.extend_from_slice(b"\r\nContent-Length: ");
                write_decimal(out, r.len() as u64);
                out.extend_from_slice(b"\r\n");
            }
            Answer::Unsatisfiable => {
                out.extend_from_slice(b"Content-Range: bytes */");
                write_decimal(out, length);
                out.extend_from_slice(b"\r\nContent-Length: 0\r\n");
            }
        }
        out.extend_from_slice(b"Via: 1.1 ");
        out.extend_from_slice(self.proxy_name.as_bytes());
        out.extend_from_slice(b"\r\n");
        match (self.keep_alive, self.version) {
            (false, _) => out.extend_from_slice(b"Connection: close\r\n"),
            (true, Version::Http10) => out.extend_from_slice(b"Connection: keep-alive\r\n"),
            (true, Version::Http11) => {}
        }
        out.extend_from_slice(b"\r\n");
    }
}
