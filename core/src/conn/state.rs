//! Every transition of a [`Connection`]: the `handle_*` inputs and what
//! each does to the phase, the timers and the action queue.

use super::caching::CachePlan;
use super::exchange::{Exchange, PendingAuth, Resp, Stage};
use super::Action;
use super::{Connection, HeadBuf, Phase};
use crate::cache;
use crate::error::{ProxyError, RequestError, UpstreamError};
use crate::http::date::http_date;
use crate::http::framing::{request_framing, response_framing, BodyReader, Framing, Segment};
use crate::http::head::{find_head_end, parse_request, parse_response, RequestHead, Version};
use crate::http::page::{self, ErrorPage};
use crate::http::rewrite::{
    ClientAddress, ClientConnection, Conditionals, RequestRewrite, ResponseRewrite,
};
use crate::http::target::{split_scheme, AbsoluteUri, Authority, Host};
use crate::id::{QueryId, UpstreamId};
use crate::io::{CloseReason, ConnectError, Connected, ResolveError, Role, Side, TunnelEnd};
use crate::log::{AccessRecord, ExchangeKind};
use crate::policy::auth::VerifyJob;
use crate::policy::caps::CapExceeded;
use crate::policy::{Authn, Denial, DenyKind};
use crate::proxy_protocol;
use crate::reason::{Decision, ErrorType};
use crate::time::{Instant, Timer};
use crate::tls::client_hello::{HelloPeeker, Peek};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// A fatal TLS `access_denied` alert (RFC 8446 §6.2) in a TLS 1.2-framed
/// record, which every TLS client understands.
const ACCESS_DENIED_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 49];

/// Methods a proxy may send again after a stale pooled connection failed
/// (RFC 9110 §9.2.2).
const IDEMPOTENT: &[&str] = &["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"];

impl Connection {
    // ----- inputs: client ------------------------------------------------

    /// Bytes from the client: all the runtime holds unconsumed, oldest
    /// first. Returns how many were consumed; the rest must be offered
    /// again once [`wants_client_data`](Connection::wants_client_data).
    pub(crate) fn handle_client_data(&mut self, now: Instant, data: &[u8]) -> usize {
        self.debug_assert_drained();
        match &self.phase {
            Phase::ProxyHeader => self.read_proxy_header(now, data),
            Phase::Head => self.read_head(now, data),
            Phase::Exchange(ex) if matches!(ex.stage, Stage::Peeking { .. }) => {
                self.read_hello(now, data)
            }
            Phase::Exchange(ex) if ex.wants_client_data() => self.read_request_body(now, data),
            _ => 0,
        }
    }

    /// The client closed its sending side. Call only once every byte read
    /// before the FIN has been consumed.
    pub(crate) fn handle_client_eof(&mut self, now: Instant) {
        self.debug_assert_drained();
        self.client_eof = true;
        match &self.phase {
            Phase::ProxyHeader => {
                let bytes = self.head.buf.len() as u64;
                if bytes > 0 {
                    return self.refuse_proxy_header(now, bytes, "closed within the PROXY header");
                }
                self.close(CloseReason::ClientDone);
            }
            Phase::Head => {
                if !self.head.buf.is_empty() {
                    let bytes = self.head.buf.len() as u64;
                    let started = self.head.started.unwrap_or(now);
                    self.log_unparsed(now, started, bytes, 0, ErrorType::IncompleteRequest);
                }
                self.close(CloseReason::ClientDone);
            }
            // The tunnel's first bytes never came.
            Phase::Exchange(ex) if matches!(ex.stage, Stage::Peeking { .. }) => {
                self.abort(now, ErrorType::ClientClosed)
            }
            // The request is whole; answer it, then close.
            Phase::Exchange(ex) if ex.req_done() => {}
            Phase::Exchange(_) => self.abort(now, ErrorType::ClientClosed),
            Phase::Tunnel(_) | Phase::Closed => {}
        }
    }

    /// The client connection failed (reset, or a write to it failed).
    pub(crate) fn handle_client_error(&mut self, now: Instant) {
        self.debug_assert_drained();
        match &self.phase {
            Phase::Exchange(_) => self.abort(now, ErrorType::ClientError),
            Phase::Head | Phase::ProxyHeader => self.close(CloseReason::Aborted),
            Phase::Tunnel(_) | Phase::Closed => {}
        }
    }

    /// The PROXY header a balancer sends first: once whole, the client
    /// it names is this connection's client for everything after (ACL,
    /// caps, rate limits, records); the rest of `data` is offered again
    /// as the first request.
    fn read_proxy_header(&mut self, now: Instant, data: &[u8]) -> usize {
        let old = self.head.buf.len();
        let take = data
            .len()
            .min(proxy_protocol::V2_MAX - old.min(proxy_protocol::V2_MAX));
        self.head.buf.extend_from_slice(&data[..take]);
        match proxy_protocol::parse(&self.head.buf) {
            proxy_protocol::Parsed::Incomplete if take == data.len() => take,
            proxy_protocol::Parsed::Incomplete => {
                let bytes = self.head.buf.len() as u64;
                self.refuse_proxy_header(now, bytes, "PROXY header too large");
                data.len()
            }
            proxy_protocol::Parsed::Invalid(why) => {
                let bytes = self.head.buf.len() as u64;
                self.refuse_proxy_header(now, bytes, why);
                data.len()
            }
            proxy_protocol::Parsed::Done { consumed, source } => {
                if let Some(client) = source {
                    let unique_id =
                        proxy_protocol::unique_id(&self.head.buf[..consumed]).map(str::to_owned);
                    self.balancer = Some(Box::new(crate::log::Balancer {
                        peer: self.client,
                        unique_id,
                    }));
                    self.client = client;
                }
                self.head = HeadBuf::default();
                self.timers.stop(Timer::HeadRead);
                self.phase = Phase::Head;
                let permit = self.shared.caps().try_acquire(self.client.ip());
                self.admit(now, permit);
                consumed - old
            }
        }
    }

    /// A connection whose PROXY header is missing, broken, late, or from
    /// a sender not trusted to send one: logged and closed without an
    /// answer (it is not HTTP yet, and the sender is a balancer).
    pub(super) fn refuse_proxy_header(&mut self, now: Instant, bytes_in: u64, why: &str) {
        let mut record = self.unparsed_record(now, now, bytes_in, 0, ErrorType::HttpRequestError);
        record.rule = Some(format!("PROXY protocol: {why}"));
        self.log(now, record);
        self.close(CloseReason::BadRequest);
    }

    fn read_head(&mut self, now: Instant, data: &[u8]) -> usize {
        let mut skipped = 0;
        if self.head.buf.is_empty() {
            // RFC 9112 §2.2: ignore empty lines before a request line.
            skipped = data
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            if skipped == data.len() {
                return skipped;
            }
        }
        let data = &data[skipped..];
        if self.head.started.is_none() {
            self.head.started = Some(now);
            self.timers.stop(Timer::ClientIdle);
            self.timers
                .set(Timer::HeadRead, now + self.config.timeouts.head_read);
        }
        let max = self.config.limits.max_head_bytes;
        // Fast path: a whole head in one read is parsed in place.
        if self.head.buf.is_empty() {
            if let Some(end) = find_head_end(data, 0).filter(|&e| e <= max) {
                self.on_request_head(now, &data[..end]);
                return skipped + end;
            }
        }
        let old = self.head.buf.len();
        let take = data.len().min((max + 1).saturating_sub(old));
        self.head.buf.extend_from_slice(&data[..take]);
        match find_head_end(&self.head.buf, self.head.scanned) {
            Some(end) if end <= max => {
                let raw = std::mem::take(&mut self.head.buf);
                self.on_request_head(now, &raw[..end]);
                skipped + end - old
            }
            _ if self.head.buf.len() > max => {
                let limits = &self.config.limits;
                // No line end at all: the request line alone is too long.
                let err = if self.head.buf.contains(&b'\n') {
                    RequestError::HeadTooLarge(limits.max_head_bytes)
                } else {
                    RequestError::UriTooLong(limits.max_uri_bytes)
                };
                let started = self.head.started.unwrap_or(now);
                let bytes = self.head.buf.len() as u64;
                self.refuse_unparsed(now, started, bytes, err);
                skipped + take
            }
            _ => {
                self.head.scanned = self.head.buf.len();
                skipped + take
            }
        }
    }

    fn on_request_head(&mut self, now: Instant, raw: &[u8]) {
        let started = self.head.started.unwrap_or(now);
        self.head = HeadBuf::default();
        self.timers.stop(Timer::HeadRead);
        self.begin_exchange(now, started, raw, None);
    }

    /// Starts the exchange for the request head `raw`, which began to
    /// arrive at `started`. `verified`: its credential was verified under
    /// the snapshot of this generation (it is being taken up again after
    /// its bcrypt run).
    fn begin_exchange(
        &mut self,
        now: Instant,
        started: Instant,
        raw: &[u8],
        verified: Option<u64>,
    ) {
        // A reload applies from the next request on.
        let generation = self.shared.generation();
        if generation != self.generation {
            let snapshot = self.shared.snapshot();
            self.config = snapshot.config.clone();
            self.policy = snapshot.policy.clone();
            self.routes = snapshot.routes.clone();
            self.cache = snapshot.cache.clone();
            self.generation = generation;
        }
        let verified = verified == Some(generation);
        let head = match parse_request(
            raw,
            self.config.limits.max_headers,
            self.config.limits.max_uri_bytes,
        ) {
            Ok(h) => h,
            Err(e) => return self.refuse_unparsed(now, started, raw.len() as u64, e),
        };
        let mut ex = Exchange {
            started,
            method: head.method.to_owned(),
            target: head.target.to_owned(),
            version: head.version,
            kind: ExchangeKind::Http,
            authority: Authority {
                host: Host::Name(String::new()),
                port: 0,
            },
            client_keep_alive: false,
            forward_head: Vec::new(),
            upgrade: false,
            retry_safe: false,
            retried: false,
            stage: Stage::Resolving(QueryId(0)),
            addrs: Vec::new(),
            next_addr: 0,
            last_connect_error: None,
            upstream: None,
            upstream_addr: None,
            reused: false,
            req_body: None,
            resp: Resp::Done,
            close_after: false,
            upstream_reusable: false,
            status: 0,
            bytes_to_client: 0,
            bytes_from_client: raw.len() as u64,
            user: None,
            denial: None,
            body_bytes: 0,
            peeker: None,
            hello: None,
            pending_auth: None,
            cache: None,
            agent: crate::log::Agent::of(&head.fields),
            parents: Vec::new(),
            parent: 0,
        };
        match self.prepare(now, &head, &mut ex, verified) {
            Ok(Prepared::Forward) => {}
            Ok(Prepared::Cached(entry, result)) => {
                self.phase = Phase::Exchange(Box::new(ex));
                return self.answer_hit(now, entry, result);
            }
            Ok(Prepared::Refresh(entry)) => {
                self.phase = Phase::Exchange(Box::new(ex));
                return self.serve_then_refresh(now, entry);
            }
            Ok(Prepared::Collapse(at)) => {
                ex.stage = Stage::Collapsing;
                self.phase = Phase::Exchange(Box::new(ex));
                self.timers.set(Timer::Collapse, at);
                return;
            }
            Ok(Prepared::Verify(job)) => {
                ex.stage = Stage::Verifying;
                ex.pending_auth = Some(Box::new(PendingAuth {
                    raw: raw.to_vec(),
                    job: job.clone(),
                    generation,
                }));
                self.phase = Phase::Exchange(Box::new(ex));
                self.outbox.push(Action::Verify(job));
                return;
            }
            Ok(Prepared::Local(reply)) => {
                self.phase = Phase::Exchange(Box::new(ex));
                return self.answer_locally(now, &head, raw, reply);
            }
            Err(e) => {
                // What could not be framed cannot be skipped over either;
                // a refusal leaves the stream sound.
                let bad_request =
                    matches!(e, ProxyError::Request(ref r) if *r != RequestError::NotAdminPage);
                self.phase = Phase::Exchange(Box::new(ex));
                return self.fail(now, e, bad_request);
            }
        }
        let tls = self.policy.tls();
        let peek_first = ex.is_connect() && tls.peek && tls.delay_connect;
        self.phase = Phase::Exchange(Box::new(ex));
        if peek_first {
            // The client sends its ClientHello only after the 200; read
            // it before the origin hears of this tunnel at all.
            return self.start_peek(now, false);
        }
        self.start_upstream(now);
    }

    /// Resolves (or, for an IP literal, connects to) the exchange's
    /// destination.
    pub(super) fn start_upstream(&mut self, now: Instant) {
        let ex = self.exchange_mut();
        let host = match ex.via_parent() {
            Some(parent) => parent.host.clone(),
            None => ex.authority.host.clone(),
        };
        match host {
            Host::Ip(ip) => {
                self.exchange_mut().addrs = vec![ip];
                self.connect_next(now);
            }
            Host::Name(name) => {
                let query = QueryId(self.next_query);
                self.next_query += 1;
                self.exchange_mut().stage = Stage::Resolving(query);
                self.outbox.push(Action::Resolve { query, host: name });
                self.timers
                    .set(Timer::Resolve, now + self.config.timeouts.resolve);
            }
        }
    }

    /// Validates a parsed head and fills in where and how it goes.
    fn prepare(
        &self,
        now: Instant,
        head: &RequestHead,
        ex: &mut Exchange,
        verified: bool,
    ) -> Result<Prepared, ProxyError> {
        let framing = request_framing(head).map_err(RequestError::from)?;
        let hosts = head.fields.get_all("host").count();
        // RFC 9112 §3.2: exactly one Host in HTTP/1.1, at most one in 1.0.
        if hosts > 1 || (hosts == 0 && head.version == Version::Http11) {
            return Err(RequestError::BadHost.into());
        }
        if self.via_names_us(head) {
            return Err(RequestError::Loop.into());
        }
        let fields = &head.fields;
        ex.client_keep_alive = match head.version {
            Version::Http11 => {
                !fields.has_token("connection", "close")
                    && !fields.has_token("proxy-connection", "close")
            }
            Version::Http10 => {
                fields.has_token("connection", "keep-alive")
                    || fields.has_token("proxy-connection", "keep-alive")
            }
        };
        let limits = &self.config.limits;
        ex.req_body = BodyReader::new(
            framing,
            limits.max_chunk_line_bytes,
            limits.max_trailer_bytes,
        );
        ex.retry_safe = ex.req_body.is_none() && IDEMPOTENT.contains(&head.method);

        if let (Some(max), Framing::Length(n)) = (limits.max_body_bytes, framing) {
            if n > max {
                return Err(RequestError::BodyTooLarge(max).into());
            }
        }

        if self.role == Role::Admin {
            // The operator chose where this listener binds; it serves the
            // pages to whoever reaches it, and nothing else.
            ex.kind = ExchangeKind::Local;
            return match self.admin_page(head) {
                Some(page) => Ok(Prepared::Local(page)),
                None => Err(RequestError::NotAdminPage.into()),
            };
        }

        let connect = head.method == "CONNECT";
        let path_and_query = if connect {
            ex.kind = ExchangeKind::Tunnel;
            ex.authority = Authority::parse(head.target, None)?;
            if framing != Framing::None {
                return Err(RequestError::Malformed("CONNECT request with a body").into());
            }
            None
        } else {
            if let Some(page) = self.admin_page(head) {
                // The proxy's own pages: for the clients allowed to use
                // it, without proxy credentials (a scraper talks to us as
                // to an origin server).
                self.policy.check_client(self.client.ip())?;
                ex.kind = ExchangeKind::Local;
                return Ok(Prepared::Local(page));
            }
            if head.target == "*" || head.target.starts_with('/') {
                return Err(RequestError::BadTarget(
                    "origin-form request to a proxy; send an absolute URI (is the client configured to use this proxy?)",
                )
                .into());
            }
            let uri = AbsoluteUri::parse(head.target)?;
            ex.authority = uri.authority;
            Some(uri.path_and_query)
        };

        // Policy, in the order the policy module documents.
        let policy = &self.policy;
        let client_ip = self.client.ip();
        policy.check_client(client_ip)?;
        let credential = fields.get("proxy-authorization");
        ex.user = match policy.authenticate(credential, client_ip, now, verified)? {
            Authn::Done(user) => user,
            Authn::Verify(job) => return Ok(Prepared::Verify(job)),
        };
        let user = ex.user.as_deref();
        policy.check_method_and_port(head.method, ex.authority.port, connect, user)?;
        policy.check_host(&ex.authority.host)?;
        policy.check_rate(client_ip, user, now)?;
        ex.parents = self.routes.parents_for(&ex.authority.host, now);

        let Some(path_and_query) = path_and_query else {
            return Ok(Prepared::Forward);
        };

        // RFC 9110 §7.6.2: Max-Forwards governs TRACE and OPTIONS only.
        let mut max_forwards = None;
        if head.method == "TRACE" || head.method == "OPTIONS" {
            if let Some(v) = fields.get("max-forwards") {
                let n: u64 = std::str::from_utf8(v)
                    .ok()
                    .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|s| s.parse().ok())
                    .ok_or(ProxyError::Request(RequestError::BadMaxForwards))?;
                if n == 0 {
                    return Ok(Prepared::Local(if head.method == "TRACE" {
                        LocalReply::Trace
                    } else {
                        LocalReply::Options
                    }));
                }
                max_forwards = Some(n - 1);
            }
        }
        ex.upgrade = fields.contains("upgrade") && fields.has_token("connection", "upgrade");
        // RFC 9112 §3.2.4: server-wide OPTIONS arrives as an absolute URI
        // with an empty path and leaves as `*`.
        let server_wide = head.method == "OPTIONS"
            && !split_scheme(head.target)
                .map_or("", |(_, r)| r)
                .contains(['/', '?']);
        // A parent proxy is sent the absolute form (RFC 9112 §3.2.2).
        let absolute;
        let target = match (server_wide, ex.parents.is_empty()) {
            (true, true) => "*",
            (false, true) => &path_and_query[..],
            (wide, false) => {
                let path = if wide { "" } else { &path_and_query[..] };
                absolute = format!("http://{}{path}", ex.authority.host_field(80));
                absolute.as_str()
            }
        };
        // Keyed only when there is a cache to look in.
        let key = || {
            cache::key::primary(
                &ex.authority.host.to_string(),
                ex.authority.port,
                &path_and_query,
            )
        };
        if head.method == "PURGE" && self.cache.is_some() {
            if let Some(reply) = self.purge(&key())? {
                return Ok(Prepared::Local(reply));
            }
        }
        let planned = match self.cache {
            Some(_) => {
                let key = key();
                self.plan_cache(now, head, ex, key)
            }
            None => None,
        };
        let (prepared, validators) = match planned {
            Some(CachePlan::Serve(entry, result)) => return Ok(Prepared::Cached(entry, result)),
            Some(CachePlan::OnlyIfCached) => return Err(RequestError::NotCached.into()),
            Some(CachePlan::Forward(validators)) => (Prepared::Forward, validators),
            Some(CachePlan::ServeStale(entry, validators)) => {
                (Prepared::Refresh(entry), Some(validators))
            }
            Some(CachePlan::Wait(at)) => (Prepared::Collapse(at), None),
            None => (Prepared::Forward, None),
        };
        RequestRewrite {
            target,
            host: &ex.authority.host_field(80),
            proxy_name: &self.config.proxy_name,
            max_forwards,
            upgrade: ex.upgrade,
            validators: validators.as_ref().map(|v| Conditionals {
                etag: v.etag.as_deref(),
                last_modified: v.last_modified.as_deref(),
            }),
            client: Some(ClientAddress {
                ip: self.client.ip(),
                fields: &self.config.forwarded_headers,
            }),
        }
        .write(head, &mut ex.forward_head);
        Ok(prepared)
    }

    /// A `PURGE` of `key` (Squid's method): obeyed when the cache is on and
    /// the client may purge, refused (403) when it may not; `None` when
    /// the cache is off (the request is forwarded like any other).
    fn purge(&self, key: &str) -> Result<Option<LocalReply>, ProxyError> {
        let Some(cache) = &self.cache else {
            return Ok(None);
        };
        let ip = crate::policy::cidr::canonical(self.client.ip());
        let allowed = cache
            .config()
            .purge_from
            .iter()
            .any(|c| crate::policy::cidr::parse_net(c).is_ok_and(|net| net.contains(&ip)));
        if !allowed {
            return Err(Denial {
                kind: DenyKind::Method,
                rule: "PURGE not allowed from this address (cache.purge_from)".to_owned(),
            }
            .into());
        }
        Ok(Some(LocalReply::Purged(cache.store.remove(key))))
    }

    /// Whether a `Via` element's received-by is our pseudonym.
    fn via_names_us(&self, head: &RequestHead) -> bool {
        let name = self.config.proxy_name.as_bytes();
        head.fields.list("via").any(|element| {
            element
                .split(|&b| b == b' ' || b == b'\t')
                .filter(|t| !t.is_empty())
                .nth(1)
                .is_some_and(|by| by.eq_ignore_ascii_case(name))
        })
    }

    /// Which of the proxy's own pages an origin-form `GET` or `HEAD`
    /// asks for, when they are enabled. The query is ignored.
    fn admin_page(&self, head: &RequestHead) -> Option<LocalReply> {
        // They are origin-form: a proxy request's absolute URI is none.
        if !self.config.admin.enabled
            || !(head.method == "GET" || head.method == "HEAD")
            || !head.target.starts_with('/')
        {
            return None;
        }
        let path = head.target.split_once('?').map_or(head.target, |(p, _)| p);
        match path {
            // `/metrics` is where Prometheus looks by default.
            "/_metrics" | "/metrics" => Some(LocalReply::Metrics),
            "/_status" => Some(LocalReply::Status),
            // Browsers' auto-config, at the address they reached us by.
            "/proxy.pac" | "/wpad.dat" => {
                let host = head
                    .fields
                    .get("host")
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .filter(|h| crate::policy::pac::safe_authority(h))
                    .map(str::to_owned);
                let proxy = host
                    .or_else(|| self.config.listen.first().map(ToString::to_string))
                    .unwrap_or_else(|| "127.0.0.1:8888".to_owned());
                Some(LocalReply::Pac(proxy))
            }
            _ => None,
        }
    }

    /// Answers what the proxy answers itself: TRACE or OPTIONS with
    /// `Max-Forwards: 0`, and its own pages.
    fn answer_locally(&mut self, now: Instant, head: &RequestHead, raw: &[u8], reply: LocalReply) {
        let wall = self.anchor.wall(now);
        let date = http_date(wall);
        let proxy_name = self.config.proxy_name.clone();
        let head_only = head.method == "HEAD";
        let (keep_alive, req_done) = match &self.phase {
            Phase::Exchange(ex) => (ex.client_keep_alive, ex.req_done()),
            _ => (false, true),
        };
        let close = !keep_alive || !req_done || self.shutting_down || self.client_eof;
        let page = match reply {
            LocalReply::Metrics => Some((
                "text/plain; version=0.0.4; charset=utf-8",
                self.shared.render_metrics(now),
            )),
            LocalReply::Status => Some((
                "text/html; charset=utf-8",
                self.shared.render_status(now, wall),
            )),
            LocalReply::Purged(found) => Some((
                "text/plain; charset=utf-8",
                if found {
                    "purged\n"
                } else {
                    "not in the cache\n"
                }
                .to_owned(),
            )),
            LocalReply::Pac(ref proxy) => Some((
                "application/x-ns-proxy-autoconfig",
                crate::policy::pac::render(proxy, self.config.policy.allow_private_destinations),
            )),
            LocalReply::Trace | LocalReply::Options => None,
        };
        let status = match reply {
            LocalReply::Purged(false) => 404,
            _ => 200,
        };
        let len = self
            .outbox
            .write_with(Side::Client, |out| match (reply, &page) {
                (LocalReply::Trace, _) => {
                    page::write_trace_reply(head, raw, &date, &proxy_name, out)
                }
                (_, Some((content_type, body))) => page::write_local_page(
                    status,
                    &date,
                    content_type,
                    body.as_bytes(),
                    head_only,
                    close,
                    out,
                ),
                _ => page::write_options_reply(&date, out),
            });
        let ex = self.exchange_mut();
        ex.kind = ExchangeKind::Local;
        ex.status = status;
        ex.bytes_to_client += len as u64;
        // A body we did not read would be taken for the next request.
        ex.close_after = !ex.req_done() || !ex.client_keep_alive;
        self.finish(now);
    }

    fn read_request_body(&mut self, now: Instant, data: &[u8]) -> usize {
        let Phase::Exchange(ex) = &mut self.phase else {
            return 0;
        };
        let Some(reader) = ex.req_body.as_mut() else {
            return 0;
        };
        // The request body goes upstream verbatim, chunk framing and all;
        // only its payload counts against the body limit.
        let mut payload = 0u64;
        let mut decoded = 0usize;
        let result = reader.read(data, |s| {
            if let Segment::Data(n) = s {
                payload += n as u64;
            }
            decoded += s.bytes();
        });
        ex.body_bytes += payload;
        if let Some(max) = self
            .config
            .limits
            .max_body_bytes
            .filter(|&max| ex.body_bytes > max)
        {
            self.fail(now, RequestError::BodyTooLarge(max).into(), true);
            return data.len();
        }
        match result {
            Ok(n) => {
                ex.bytes_from_client += n as u64;
                if reader.is_done() {
                    ex.req_body = None;
                }
                let done = ex.req_body.is_none();
                let resp_done = ex.resp_done();
                let awaiting_head = matches!(ex.resp, Resp::AwaitHead { .. });
                self.outbox.pass(Side::Client, 0, n);
                if done {
                    if awaiting_head {
                        self.timers
                            .set(Timer::Response, now + self.config.timeouts.response);
                        self.timers.stop(Timer::Transfer);
                    }
                    if resp_done {
                        self.finish(now);
                    }
                } else {
                    let wait = self.request_body_wait();
                    self.timers.set(Timer::Transfer, now + wait);
                }
                n
            }
            Err(e) => {
                // What decoded before the malformed part goes on, as it
                // would have had it come in an earlier read.
                if decoded > 0 {
                    self.exchange_mut().bytes_from_client += decoded as u64;
                    self.outbox.pass(Side::Client, 0, decoded);
                }
                self.fail(now, RequestError::BadChunk(e.0).into(), true);
                data.len()
            }
        }
    }

    /// The answer to an [`Action::Verify`]: the request goes on as if its
    /// credential had been known good (or is refused with 407). Late
    /// answers are ignored.
    pub(crate) fn handle_verified(&mut self, now: Instant, ok: bool) {
        self.debug_assert_drained();
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        if ex.stage != Stage::Verifying {
            return;
        }
        let Some(pending) = ex.pending_auth.take() else {
            return;
        };
        let started = ex.started;
        match self
            .policy
            .verified(&pending.job, ok, self.client.ip(), now)
        {
            Ok(_) => {
                self.phase = Phase::Head;
                self.begin_exchange(now, started, &pending.raw, Some(pending.generation));
            }
            Err(denial) => self.fail(now, denial.into(), false),
        }
    }

    // ----- inputs: resolver and connector ---------------------------------

    /// The answer to an [`Action::Resolve`]. Late answers are ignored.
    pub(crate) fn handle_resolved(
        &mut self,
        now: Instant,
        query: QueryId,
        result: Result<&[IpAddr], ResolveError>,
    ) {
        self.debug_assert_drained();
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        if ex.stage != Stage::Resolving(query) {
            return;
        }
        self.timers.stop(Timer::Resolve);
        match result {
            Ok(addrs) if !addrs.is_empty() => {
                // Every address is judged, so a name cannot smuggle a
                // private one past the guard (DNS rebinding); the core
                // connects only to addresses from this list.
                // Nothing was connected, so the record names no upstream;
                // the rule names the address that was refused.
                // A parent's addresses are the operator's choice; the
                // guard is for destinations.
                if ex.via_parent().is_none() {
                    if let Err(d) = self.policy.check_addresses(addrs) {
                        return self.fail(now, d.into(), false);
                    }
                }
                ex.addrs = addrs.to_vec();
                self.connect_next(now);
            }
            Ok(_) | Err(ResolveError::NotFound) => {
                if ex.via_parent().is_some() {
                    return self.next_parent(now);
                }
                let host = ex.authority.host.to_string();
                self.fail(now, UpstreamError::DnsNotFound(host).into(), false)
            }
            Err(ResolveError::Failed(why)) => {
                if ex.via_parent().is_some() {
                    return self.next_parent(now);
                }
                let host = ex.authority.host.to_string();
                self.fail(now, UpstreamError::DnsFailed(host, why).into(), false)
            }
        }
    }

    fn connect_next(&mut self, now: Instant) {
        let id = UpstreamId(self.next_upstream);
        let ex = self.exchange_mut();
        let Some(&ip) = ex.addrs.get(ex.next_addr) else {
            if ex.via_parent().is_some() {
                return self.next_parent(now);
            }
            let host = ex.authority.to_string();
            let err = match ex.last_connect_error {
                Some(ConnectError::Refused) => UpstreamError::Refused(host),
                Some(ConnectError::Unreachable) => UpstreamError::Unreachable(host),
                _ => UpstreamError::Closed(host),
            };
            return self.fail(now, err.into(), false);
        };
        ex.next_addr += 1;
        let port = ex.via_parent().map_or(ex.authority.port, |p| p.port);
        let addr = SocketAddr::new(ip, port);
        ex.stage = Stage::Connecting(id);
        ex.upstream = Some(id);
        ex.upstream_addr = Some(addr);
        let allow_pooled = !ex.retried;
        self.next_upstream += 1;
        self.outbox.push(Action::Connect {
            upstream: id,
            addr,
            allow_pooled,
        });
        self.timers
            .set(Timer::Connect, now + self.config.timeouts.connect);
    }

    /// The parent being tried cannot be reached: the next one, in order;
    /// after the last, a 502 naming them all.
    fn next_parent(&mut self, now: Instant) {
        let routes = self.routes.clone();
        let ex = self.exchange_mut();
        if let Some(down) = ex.via_parent() {
            routes.mark_down(down, now);
        }
        ex.parent += 1;
        ex.addrs.clear();
        ex.next_addr = 0;
        ex.upstream_addr = None;
        if ex.via_parent().is_some() {
            return self.start_upstream(now);
        }
        let tried: Vec<String> = ex.parents.iter().map(|p| p.name()).collect();
        let err = UpstreamError::ParentsDown(tried.join(", "));
        self.fail(now, err.into(), false)
    }

    /// The answer to an [`Action::Connect`]. Late answers are ignored.
    pub(crate) fn handle_connected(
        &mut self,
        now: Instant,
        upstream: UpstreamId,
        result: Result<Connected, ConnectError>,
    ) {
        self.debug_assert_drained();
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        if ex.stage != Stage::Connecting(upstream) {
            return;
        }
        self.timers.stop(Timer::Connect);
        let connected = match result {
            Ok(c) => c,
            Err(e) => {
                ex.last_connect_error = Some(e);
                ex.upstream = None;
                return self.connect_next(now);
            }
        };
        ex.reused = connected.reused;
        if let Some(parent) = ex.via_parent() {
            self.routes.mark_up(parent);
        }
        self.upstream_in_use = Some(self.shared.metrics().upstream_in_use());
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        if ex.is_connect() {
            if let Some(parent) = ex.via_parent() {
                // The parent is asked for the tunnel; its answer decides.
                let authority = ex.authority.to_string();
                let authorization = parent.authorization.clone();
                ex.stage = Stage::ParentConnect(upstream);
                ex.resp = Resp::AwaitHead {
                    buf: Vec::new(),
                    scanned: 0,
                    got_bytes: false,
                };
                self.outbox.write_with(Side::Upstream, |out| {
                    out.extend_from_slice(b"CONNECT ");
                    out.extend_from_slice(authority.as_bytes());
                    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
                    out.extend_from_slice(authority.as_bytes());
                    out.extend_from_slice(b"\r\n");
                    if let Some(a) = &authorization {
                        out.extend_from_slice(b"Proxy-Authorization: ");
                        out.extend_from_slice(a.as_bytes());
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(b"\r\n");
                });
                self.timers
                    .set(Timer::Response, now + self.config.timeouts.response);
                return;
            }
            return self.tunnel_connected(now, upstream);
        }
        ex.stage = Stage::Forwarding;
        ex.resp = Resp::AwaitHead {
            buf: Vec::new(),
            scanned: 0,
            got_bytes: false,
        };
        let req_done = ex.req_done();
        let authorization = ex.via_parent().and_then(|p| p.authorization.clone());
        self.outbox
            .write_with(Side::Upstream, |out| match &authorization {
                // The parent's credentials go in just before the blank line.
                Some(a) => {
                    let head = &ex.forward_head;
                    out.extend_from_slice(&head[..head.len() - 2]);
                    out.extend_from_slice(b"Proxy-Authorization: ");
                    out.extend_from_slice(a.as_bytes());
                    out.extend_from_slice(b"\r\n\r\n");
                }
                None => out.extend_from_slice(&ex.forward_head),
            });
        if !ex.retry_safe {
            // Kept only while a retry may need to send it again.
            ex.forward_head = Vec::new();
        }
        if req_done {
            self.timers
                .set(Timer::Response, now + self.config.timeouts.response);
        } else {
            let wait = self.request_body_wait();
            self.timers.set(Timer::Transfer, now + wait);
        }
    }

    /// How long a request body may stall: `body_read`, within
    /// `transfer_idle`.
    fn request_body_wait(&self) -> std::time::Duration {
        let t = &self.config.timeouts;
        t.body_read.min(t.transfer_idle)
    }

    /// The tunnel's upstream is there (the origin, or a parent that said
    /// yes): peek at the ClientHello, or relay.
    fn tunnel_connected(&mut self, now: Instant, upstream: UpstreamId) {
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        ex.resp = Resp::Done;
        if ex.peeker.is_some() {
            // The hello was read and allowed before connecting.
            return self.open_tunnel(upstream);
        }
        if self.policy.tls().peek {
            return self.start_peek(now, true);
        }
        self.send_established();
        self.open_tunnel(upstream)
    }

    /// A parent's answer to the CONNECT it was sent: a 2xx head, and the
    /// tunnel is there; anything else is a 502 naming the parent and what
    /// it said. Returns the bytes consumed (the head; what follows is the
    /// tunnel's).
    fn read_parent_answer(&mut self, now: Instant, upstream: UpstreamId, data: &[u8]) -> usize {
        let max = self.config.limits.max_head_bytes;
        let max_headers = self.config.limits.max_headers;
        let ex = self.exchange_mut();
        let name = ex.via_parent().map(|p| p.name()).unwrap_or_default();
        let Resp::AwaitHead { buf, scanned, .. } = &mut ex.resp else {
            return 0;
        };
        let old = buf.len();
        let take = data.len().min((max + 1).saturating_sub(old));
        buf.extend_from_slice(&data[..take]);
        let Some(end) = find_head_end(buf, *scanned) else {
            *scanned = buf.len();
            if buf.len() > max {
                let err = UpstreamError::HeadTooLarge(name, max);
                self.fail(now, err.into(), false);
            }
            return take;
        };
        let status =
            parse_response(&buf[..end], max_headers).map(|h| (h.status, h.reason.to_owned()));
        self.timers.stop(Timer::Response);
        match status {
            Ok((status, _)) if (200..300).contains(&status) => {
                self.tunnel_connected(now, upstream);
                end - old
            }
            Ok((status, reason)) => {
                let err = UpstreamError::ParentRefused(name, format!("{status} {reason}"));
                self.fail(now, err.into(), false);
                data.len()
            }
            Err(_) => {
                let err = UpstreamError::BadResponse(name, "invalid answer to CONNECT");
                self.fail(now, err.into(), false);
                data.len()
            }
        }
    }

    // ----- inputs: upstream ----------------------------------------------

    /// Bytes from `upstream`: all the runtime holds unconsumed, oldest
    /// first. Returns how many were consumed.
    pub(crate) fn handle_upstream_data(
        &mut self,
        now: Instant,
        upstream: UpstreamId,
        data: &[u8],
    ) -> usize {
        self.debug_assert_drained();
        if let Phase::Exchange(ex) = &self.phase {
            if ex.upstream == Some(upstream) && ex.stage == Stage::ParentConnect(upstream) {
                return self.read_parent_answer(now, upstream, data);
            }
            if ex.upstream == Some(upstream)
                && matches!(ex.stage, Stage::Peeking { connected: true })
            {
                // The origin spoke before the client (SMTP, FTP, MySQL):
                // not TLS. If that may go on, its greeting is passed to
                // the client ahead of the relay.
                self.timers.stop(Timer::ClientHello);
                if self
                    .policy
                    .check_hello(&ex.authority.host, &Peek::NotTls)
                    .is_ok()
                {
                    self.exchange_mut().bytes_to_client += data.len() as u64;
                    self.outbox.pass(Side::Upstream, 0, data.len());
                }
                self.on_hello(now, Peek::NotTls);
                return data.len();
            }
        }
        let mut pos = 0;
        loop {
            let Phase::Exchange(ex) = &mut self.phase else {
                return pos;
            };
            if ex.upstream != Some(upstream) || !ex.wants_upstream_data() || pos == data.len() {
                break;
            }
            match &mut ex.resp {
                Resp::AwaitHead { .. } => match self.read_response_head(now, &data[pos..]) {
                    HeadProgress::Partial(n) => {
                        pos += n;
                        break;
                    }
                    HeadProgress::Complete(n) => pos += n,
                    HeadProgress::Stop(n) => return pos + n,
                },
                Resp::Body { .. } => {
                    pos += self.read_response_body(now, data, pos);
                    break;
                }
                Resp::Done => break,
            }
        }
        if let Phase::Exchange(ex) = &self.phase {
            if ex.resp_done() && ex.req_done() && ex.upstream == Some(upstream) {
                self.finish(now);
            }
        }
        pos
    }

    fn read_response_head(&mut self, now: Instant, data: &[u8]) -> HeadProgress {
        let max = self.config.limits.max_head_bytes;
        let ex = self.exchange_mut();
        let Resp::AwaitHead {
            buf,
            scanned,
            got_bytes,
        } = &mut ex.resp
        else {
            return HeadProgress::Stop(0);
        };
        *got_bytes = true;
        let old = buf.len();
        let end = if buf.is_empty() {
            find_head_end(data, 0).filter(|&e| e <= max)
        } else {
            None
        };
        // A head in one read is parsed where it lies; one that came in
        // pieces is moved out of the exchange's buffer.
        let pieced: Vec<u8>;
        let (raw, consumed): (&[u8], usize) = match end {
            Some(end) => (&data[..end], end),
            None => {
                let take = data.len().min((max + 1).saturating_sub(old));
                buf.extend_from_slice(&data[..take]);
                match find_head_end(buf, *scanned) {
                    Some(end) if end <= max => {
                        pieced = std::mem::take(buf);
                        (&pieced[..end], end - old)
                    }
                    _ if buf.len() > max => {
                        let host = ex.authority.to_string();
                        self.fail(now, UpstreamError::HeadTooLarge(host, max).into(), false);
                        return HeadProgress::Stop(take);
                    }
                    _ => {
                        *scanned = buf.len();
                        return HeadProgress::Partial(take);
                    }
                }
            }
        };
        *scanned = 0;
        self.on_response_head(now, raw, consumed)
    }

    fn on_response_head(&mut self, now: Instant, raw: &[u8], consumed: usize) -> HeadProgress {
        let (max_chunk_line, max_trailer) = (
            self.config.limits.max_chunk_line_bytes,
            self.config.limits.max_trailer_bytes,
        );
        let shutting_down = self.shutting_down || self.client_eof;
        let wall = self.anchor.wall(now);
        // Borrowed from the phase alone, so the response head can be
        // written to the outbox while the exchange is in hand.
        let ex = exchange_in(&mut self.phase);
        let head = match parse_response(raw, self.config.limits.max_headers) {
            Ok(h) => h,
            Err(crate::http::head::ResponseHeadError::Malformed(why)) => {
                let host = ex.authority.to_string();
                self.fail(now, UpstreamError::BadResponse(host, why).into(), false);
                return HeadProgress::Stop(consumed);
            }
        };
        let client_version = ex.version;
        if head.status == 101 {
            if !ex.upgrade {
                let host = ex.authority.to_string();
                self.fail(
                    now,
                    UpstreamError::BadResponse(
                        host,
                        "switching protocols without an upgrade request",
                    )
                    .into(),
                    false,
                );
                return HeadProgress::Stop(consumed);
            }
            return self.switch_protocols(now, &head, consumed);
        }
        if head.status < 200 {
            // Interim responses go on to HTTP/1.1 clients only (RFC 9110
            // §15.2), and only while the client waits for this response.
            ex.resp = Resp::AwaitHead {
                buf: Vec::new(),
                scanned: 0,
                got_bytes: true,
            };
            if client_version == Version::Http11 && ex.response_unstarted() {
                let rewrite = ResponseRewrite {
                    proxy_name: &self.config.proxy_name,
                    date: self.dates.get(wall),
                    connection: ClientConnection::KeepAlive11,
                    dechunk: false,
                    cache_status: None,
                };
                let len = self
                    .outbox
                    .write_with(Side::Client, |out| rewrite.write(&head, out));
                ex.bytes_to_client += len as u64;
            }
            return HeadProgress::Complete(consumed);
        }
        let framing = match response_framing(&ex.method, &head) {
            Ok(f) => f,
            Err(e) => {
                let host = ex.authority.to_string();
                self.fail(
                    now,
                    UpstreamError::BadFraming(host, e.describe()).into(),
                    false,
                );
                return HeadProgress::Stop(consumed);
            }
        };
        let rest = !matches!(framing, Framing::None | Framing::Length(0));
        if self.cache_response_head(now, &head, framing, rest) {
            return HeadProgress::Stop(consumed);
        }
        let cache_status = self.forwarded_cache_status();
        let ex = exchange_in(&mut self.phase);
        if Self::background(ex) {
            // The client has its response; this one goes to the store.
            ex.upstream_reusable = head.version == Version::Http11
                && !head.fields.has_token("connection", "close")
                && framing != Framing::UntilClose;
            ex.resp = match BodyReader::new(framing, max_chunk_line, max_trailer) {
                Some(reader) => Resp::Body {
                    reader,
                    dechunk: false,
                },
                None => Resp::Done,
            };
            Self::cache_store(ex);
            self.timers.stop(Timer::Response);
            self.timers
                .set(Timer::Transfer, now + self.config.timeouts.transfer_idle);
            return HeadProgress::Complete(consumed);
        }
        let dechunk = client_version == Version::Http10 && framing == Framing::Chunked;
        let close_delimited = framing == Framing::UntilClose || dechunk;
        let keep = ex.client_keep_alive && !close_delimited && ex.req_done() && !shutting_down;
        ex.close_after = !keep;
        ex.upstream_reusable = head.version == Version::Http11
            && !head.fields.has_token("connection", "close")
            && framing != Framing::UntilClose;
        ex.status = head.status;
        ex.resp = match BodyReader::new(framing, max_chunk_line, max_trailer) {
            Some(reader) => Resp::Body { reader, dechunk },
            None => Resp::Done,
        };
        let has_body = !ex.resp_done();
        let connection = match (keep, client_version) {
            (false, _) => ClientConnection::Close,
            (true, Version::Http10) => ClientConnection::KeepAlive10,
            (true, Version::Http11) => ClientConnection::KeepAlive11,
        };
        let rewrite = ResponseRewrite {
            proxy_name: &self.config.proxy_name,
            date: self.dates.get(wall),
            connection,
            dechunk,
            cache_status: cache_status.as_deref(),
        };
        let len = self
            .outbox
            .write_with(Side::Client, |out| rewrite.write(&head, out));
        ex.bytes_to_client += len as u64;
        if !has_body {
            Self::cache_store(ex);
        }
        self.timers.stop(Timer::Response);
        if has_body {
            self.timers
                .set(Timer::Transfer, now + self.config.timeouts.transfer_idle);
        } else if ex.req_done() {
            self.timers.stop(Timer::Transfer);
        }
        HeadProgress::Complete(consumed)
    }

    fn switch_protocols(
        &mut self,
        now: Instant,
        head: &crate::http::head::ResponseHead,
        consumed: usize,
    ) -> HeadProgress {
        let rewrite = ResponseRewrite {
            proxy_name: &self.config.proxy_name,
            date: self.dates.get(self.anchor.wall(now)),
            connection: ClientConnection::Upgrade,
            dechunk: false,
            cache_status: None,
        };
        let len = self
            .outbox
            .write_with(Side::Client, |out| rewrite.write(head, out));
        let Phase::Exchange(mut ex) = std::mem::replace(&mut self.phase, Phase::Closed) else {
            unreachable!("only called during an exchange")
        };
        ex.bytes_to_client += len as u64;
        ex.status = 101;
        ex.kind = ExchangeKind::Upgrade;
        let upstream = ex.upstream.expect("forwarding has an upstream");
        self.phase = Phase::Tunnel(ex);
        self.timers.stop_all();
        self.outbox.push(Action::Tunnel {
            upstream,
            idle_timeout: self.config.timeouts.tunnel_idle,
        });
        HeadProgress::Stop(consumed)
    }

    /// `n` response body bytes from `upstream` went straight to the
    /// client (see [`Connection::forwardable_upstream`]); at most that
    /// many are taken into account.
    pub(crate) fn handle_upstream_forwarded(&mut self, now: Instant, upstream: UpstreamId, n: u64) {
        self.debug_assert_drained();
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        if ex.upstream != Some(upstream) {
            return;
        }
        let n = n.min(ex.forwardable_response());
        let Resp::Body { reader, .. } = &mut ex.resp else {
            return;
        };
        reader.skip_verbatim(n);
        let done = reader.is_done();
        self.response_body_moved(now, n, done);
        if let Phase::Exchange(ex) = &self.phase {
            if ex.resp_done() && ex.req_done() {
                self.finish(now);
            }
        }
    }

    /// Counts `passed` response body bytes sent to the client, and moves
    /// on if the body is `done`.
    fn response_body_moved(&mut self, now: Instant, passed: u64, done: bool) {
        let body_wait = self.request_body_wait();
        let ex = self.exchange_mut();
        ex.bytes_to_client += passed;
        if done {
            ex.resp = Resp::Done;
            Self::cache_store(ex);
            if ex.req_done() {
                self.timers.stop(Timer::Transfer);
            } else {
                // Answered before the request body ended (an early 413,
                // say): only the client's upload is left, and it gets
                // what any upload gets, `body_read`, not the response's
                // `transfer_idle`.
                self.timers.set(Timer::Transfer, now + body_wait);
            }
        } else {
            self.timers
                .set(Timer::Transfer, now + self.config.timeouts.transfer_idle);
        }
    }

    /// Passes what of `data[pos..]` belongs to the response body.
    fn read_response_body(&mut self, now: Instant, data: &[u8], pos: usize) -> usize {
        let Phase::Exchange(ex) = &mut self.phase else {
            return 0;
        };
        let Resp::Body { reader, dechunk } = &mut ex.resp else {
            return 0;
        };
        let dechunk = *dechunk;
        let mut segments = std::mem::take(&mut self.segments);
        segments.clear();
        let result = reader.read(&data[pos..], |s| segments.push(s));
        let done = reader.is_done();
        let storing = Self::storing(ex);
        // Bytes that only refresh the store are not the client's.
        let to_client = !Self::background(ex);
        // Every segment decoded is passed on, also those before a
        // malformed part: the client gets the same bytes however the body
        // was split into reads.
        let mut offset = pos;
        let mut passed = 0u64;
        for s in &segments {
            match *s {
                Segment::Data(len) => {
                    if storing {
                        Self::tee(ex, &data[offset..offset + len]);
                    }
                    if to_client {
                        self.outbox.pass(Side::Upstream, offset, len);
                        passed += len as u64;
                    }
                    offset += len;
                }
                Segment::Framing(len) => {
                    if !dechunk && to_client {
                        self.outbox.pass(Side::Upstream, offset, len);
                        passed += len as u64;
                    }
                    offset += len;
                }
            }
        }
        self.segments = segments;
        match result {
            Ok(n) => {
                if done && pos + n < data.len() {
                    // Bytes past the end the framing gave: the origin's
                    // length was a lie, or it answers what was not asked.
                    // Neither response nor connection is to be trusted.
                    let ex = self.exchange_mut();
                    ex.upstream_reusable = false;
                    Self::forget_fill(ex);
                }
                self.response_body_moved(now, passed, done);
                n
            }
            Err(_) => {
                self.exchange_mut().bytes_to_client += passed;
                self.abort(now, ErrorType::HttpResponseIncomplete);
                data.len() - pos
            }
        }
    }

    /// `upstream` closed its sending side.
    pub(crate) fn handle_upstream_eof(&mut self, now: Instant, upstream: UpstreamId) {
        self.debug_assert_drained();
        self.upstream_lost(now, upstream, true);
    }

    /// `upstream` failed (reset, or a write to it failed).
    pub(crate) fn handle_upstream_error(
        &mut self,
        now: Instant,
        upstream: UpstreamId,
        _error: ConnectError,
    ) {
        self.debug_assert_drained();
        self.upstream_lost(now, upstream, false);
    }

    fn upstream_lost(&mut self, now: Instant, upstream: UpstreamId, clean: bool) {
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        if ex.upstream != Some(upstream) || ex.stage != Stage::Forwarding {
            return;
        }
        match &ex.resp {
            Resp::AwaitHead { got_bytes, .. } => {
                if !got_bytes && ex.reused && ex.retry_safe && !ex.retried {
                    // A pooled connection the origin had already closed:
                    // nothing was answered, so send it again on a new one.
                    ex.retried = true;
                    ex.next_addr -= 1;
                    ex.upstream = None;
                    self.upstream_in_use = None;
                    self.outbox.push(Action::Release {
                        upstream,
                        reuse: false,
                    });
                    self.timers.stop(Timer::Response);
                    return self.connect_next(now);
                }
                let host = ex.authority.to_string();
                self.fail(now, UpstreamError::Closed(host).into(), false);
            }
            Resp::Body { reader, .. } if clean && reader.is_close_delimited() => {
                ex.resp = Resp::Done;
                ex.upstream_reusable = false;
                Self::cache_store(ex);
                if ex.req_done() {
                    self.finish(now);
                } else {
                    self.abort(now, ErrorType::UpstreamClosed);
                }
            }
            Resp::Body { .. } => self.abort(now, ErrorType::HttpResponseIncomplete),
            // The whole response was passed on but the request body was
            // still coming: it has nowhere to go now. The client was told
            // `Connection: close` with the response.
            Resp::Done if !ex.req_done() => self.finish(now),
            Resp::Done => {}
        }
    }

    /// A tunnel or upgraded connection finished relaying.
    pub(crate) fn handle_tunnel_end(&mut self, now: Instant, end: TunnelEnd) {
        self.debug_assert_drained();
        if !matches!(self.phase, Phase::Tunnel(_)) {
            return;
        }
        let Phase::Tunnel(mut ex) = std::mem::replace(&mut self.phase, Phase::Closed) else {
            unreachable!()
        };
        ex.bytes_to_client += end.to_client;
        ex.bytes_from_client += end.to_upstream;
        let note = match end.reason {
            crate::io::TunnelEndReason::Closed => None,
            crate::io::TunnelEndReason::IdleTimeout => Some(ErrorType::TunnelIdleTimeout),
            crate::io::TunnelEndReason::Error => Some(ErrorType::TunnelError),
            crate::io::TunnelEndReason::Shutdown => Some(ErrorType::Shutdown),
        };
        let record = self.record(now, ex, note);
        self.log(now, record);
        self.close(CloseReason::TunnelDone);
    }

    // ----- inputs: time and commands ---------------------------------------

    /// Acts on every timer due at `now`. Spurious calls do nothing.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.debug_assert_drained();
        if matches!(self.phase, Phase::ProxyHeader) && self.timers.is_expired(Timer::HeadRead, now)
        {
            let bytes = self.head.buf.len() as u64;
            return self.refuse_proxy_header(now, bytes, "no whole PROXY header in time");
        }
        if self.timers.is_expired(Timer::ClientIdle, now) {
            return self.close(CloseReason::IdleTimeout);
        }
        if self.timers.is_expired(Timer::HeadRead, now) {
            let started = self.head.started.unwrap_or(now);
            let bytes = self.head.buf.len() as u64;
            return self.refuse_unparsed(now, started, bytes, RequestError::HeadTimeout);
        }
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        if self.timers.is_expired(Timer::Collapse, now) {
            self.timers.stop(Timer::Collapse);
            return self.collapse_check(now);
        }
        let host = ex.authority.to_string();
        if self.timers.is_expired(Timer::ClientHello, now) {
            // Silence: judged as "not TLS".
            self.timers.stop(Timer::ClientHello);
            return self.on_hello(now, Peek::NeedMore);
        }
        if self.timers.is_expired(Timer::Resolve, now) {
            return self.fail(now, UpstreamError::DnsTimeout(host).into(), false);
        }
        if self.timers.is_expired(Timer::Connect, now) {
            self.timers.stop(Timer::Connect);
            if let Some(upstream) = ex.upstream.take() {
                self.outbox.push(Action::Release {
                    upstream,
                    reuse: false,
                });
            }
            // A parent that does not answer gives way to the next.
            if ex.via_parent().is_some() {
                return self.next_parent(now);
            }
            return self.fail(now, UpstreamError::ConnectTimeout(host).into(), false);
        }
        if self.timers.is_expired(Timer::Response, now) {
            return self.fail(now, UpstreamError::ResponseTimeout(host).into(), false);
        }
        if self.timers.is_expired(Timer::Transfer, now) {
            if ex.response_unstarted() && !ex.req_done() {
                // The client stalled mid-body.
                return self.fail(now, RequestError::HeadTimeout.into(), true);
            }
            self.abort(now, ErrorType::TransferTimeout);
        }
    }

    /// Stop taking new requests: close now if idle, else after the
    /// exchange in flight. Tunnels are ended by the runtime.
    pub(crate) fn begin_shutdown(&mut self, _now: Instant) {
        self.debug_assert_drained();
        self.shutting_down = true;
        if matches!(self.phase, Phase::Head) && self.head.buf.is_empty() {
            self.close(CloseReason::Shutdown);
        }
    }

    // ----- CONNECT tunnels and their ClientHello ------------------------------

    /// Writes `200 Connection established` for the exchange's CONNECT.
    fn send_established(&mut self) {
        let len = self.outbox.write_with(Side::Client, |out| {
            out.extend_from_slice(page::CONNECT_ESTABLISHED)
        });
        let ex = self.exchange_mut();
        ex.status = 200;
        ex.bytes_to_client += len as u64;
    }

    /// Answers 200 (unless already done) and starts reading the tunnel's
    /// first bytes.
    fn start_peek(&mut self, now: Instant, connected: bool) {
        self.send_established();
        let tls = self.policy.tls().clone();
        let ex = self.exchange_mut();
        ex.stage = Stage::Peeking { connected };
        ex.peeker = Some(HelloPeeker::new(tls.max_hello_bytes));
        self.timers.set(Timer::ClientHello, now + tls.hello_timeout);
    }

    fn read_hello(&mut self, now: Instant, data: &[u8]) -> usize {
        let ex = self.exchange_mut();
        let Some(peeker) = ex.peeker.as_mut() else {
            return 0;
        };
        let (taken, peek) = peeker.feed(data);
        ex.bytes_from_client += taken as u64;
        if peek != Peek::NeedMore {
            self.timers.stop(Timer::ClientHello);
            self.on_hello(now, peek);
        }
        taken
    }

    /// The tunnel's first bytes are known (or the wait for them is over):
    /// refuse the tunnel, or let it go on.
    fn on_hello(&mut self, now: Instant, peek: Peek) {
        let policy = self.policy.clone();
        let ex = self.exchange_mut();
        let Stage::Peeking { connected } = ex.stage else {
            return;
        };
        if let Peek::Hello(info) = &peek {
            let mut info = info.clone();
            info.sni_malformed = info
                .sni
                .as_deref()
                .is_some_and(|sni| crate::policy::sni_host_name(sni).is_none());
            ex.hello = Some(info);
        }
        if let Err(denial) = policy.check_hello(&ex.authority.host, &peek) {
            // Past the 200 there is no HTTP answer left: a TLS client gets
            // an alert it can report, then the tunnel closes.
            if policy.tls().alert && matches!(peek, Peek::Hello(_)) {
                self.outbox.write_with(Side::Client, |out| {
                    out.extend_from_slice(&ACCESS_DENIED_ALERT)
                });
            }
            let ex = self.exchange_mut();
            ex.status = denial.status();
            ex.denial = Some(denial);
            return self.abort(now, ErrorType::HttpRequestDenied);
        }
        if connected {
            let upstream = ex.upstream.expect("connected tunnels have an upstream");
            self.open_tunnel(upstream);
        } else {
            self.start_upstream(now);
        }
    }

    /// Forwards what was read of the tunnel so far and hands the
    /// connection to the runtime's relay.
    fn open_tunnel(&mut self, upstream: UpstreamId) {
        self.timers.stop_all();
        let Some(mut ex) = self.take_exchange() else {
            return;
        };
        if let Some(mut peeker) = ex.peeker.take() {
            let hello = peeker.take_bytes();
            self.outbox
                .write_with(Side::Upstream, |out| out.extend_from_slice(&hello));
        }
        self.phase = Phase::Tunnel(ex);
        self.outbox.push(Action::Tunnel {
            upstream,
            idle_timeout: self.config.timeouts.tunnel_idle,
        });
    }

    /// The shutdown grace period is over: cut off an exchange still in
    /// flight (its record says `error=shutdown`) and close. Tunnels are
    /// ended by the runtime, which reports them with
    /// [`TunnelEndReason::Shutdown`](crate::io::TunnelEndReason::Shutdown).
    pub(crate) fn force_shutdown(&mut self, now: Instant) {
        self.debug_assert_drained();
        self.shutting_down = true;
        match self.phase {
            Phase::Exchange(_) => self.abort(now, ErrorType::Shutdown),
            Phase::Head | Phase::ProxyHeader => self.close(CloseReason::Shutdown),
            Phase::Tunnel(_) | Phase::Closed => {}
        }
    }

    // ----- endings ---------------------------------------------------------

    /// The exchange completed normally: log, release, and go idle or close.
    pub(super) fn finish(&mut self, now: Instant) {
        self.finish_noting(now, None);
    }

    /// A background refresh failed: the client, answered already, goes on
    /// as after any response; the record says what went wrong.
    fn end_background(&mut self, now: Instant, note: ErrorType) {
        let ex = self.exchange_mut();
        ex.upstream_reusable = false;
        self.finish_noting(now, Some(note));
    }

    fn finish_noting(&mut self, now: Instant, note: Option<ErrorType>) {
        let Some(ex) = self.take_exchange() else {
            return;
        };
        let upstream = ex.upstream;
        let reuse = ex.upstream_reusable && ex.req_done() && ex.resp_done();
        let persistent = !ex.close_after && ex.req_done();
        let record = self.record(now, ex, note);
        self.log(now, record);
        if let Some(upstream) = upstream {
            self.outbox.push(Action::Release { upstream, reuse });
        }
        if !persistent {
            self.close(CloseReason::NotPersistent);
        } else if self.client_eof {
            self.close(CloseReason::ClientDone);
        } else if self.shutting_down {
            self.close(CloseReason::Shutdown);
        } else {
            self.enter_idle(now);
        }
    }

    /// The exchange failed. Answers with an error page if no response has
    /// started, else cuts the client off so it sees the response is
    /// incomplete. `bad_request` means the client's stream can no longer be
    /// trusted and the connection closes.
    fn fail(&mut self, now: Instant, err: ProxyError, bad_request: bool) {
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        if Self::background(ex) {
            return self.end_background(now, err.proxy_status());
        }
        if matches!(err, ProxyError::Upstream(_)) && self.serve_stale_on_error(now) {
            return;
        }
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        if !ex.response_unstarted() {
            return self.abort(now, err.proxy_status());
        }
        // A client whose CONNECT failed may already have sent its first
        // tunnel bytes (a TLS ClientHello); they must not be read as a
        // request, so the connection closes.
        let close = bad_request
            || ex.is_connect()
            || !ex.client_keep_alive
            || !ex.req_done()
            || self.shutting_down
            || self.client_eof;
        let head_only = ex.method == "HEAD";
        if let ProxyError::Denied(d) = &err {
            ex.denial = Some(d.clone());
        }
        let extra = err.extra_fields();
        let status = err.status();
        let date = http_date(self.anchor.wall(now));
        let message = err.to_string();
        let page = ErrorPage {
            status,
            proxy_status: err.proxy_status().as_str(),
            message: &message,
            proxy_name: &self.config.proxy_name,
            date: &date,
            close,
            head_only,
            extra: &extra,
        };
        let mut bytes = Vec::new();
        page.write(&mut bytes);
        let len = self
            .outbox
            .write_with(Side::Client, |out| out.extend_from_slice(&bytes));
        let Some(mut ex) = self.take_exchange() else {
            return;
        };
        ex.status = status;
        ex.bytes_to_client += len as u64;
        let upstream = ex.upstream;
        let record = self.record(now, ex, Some(err.proxy_status()));
        self.log(now, record);
        if let Some(upstream) = upstream {
            self.outbox.push(Action::Release {
                upstream,
                reuse: false,
            });
        }
        if close {
            self.close(if bad_request {
                CloseReason::BadRequest
            } else {
                CloseReason::AfterError
            });
        } else {
            self.enter_idle(now);
        }
    }

    /// Ends the exchange without an answer: log, drop the upstream, close.
    fn abort(&mut self, now: Instant, note: ErrorType) {
        if matches!(&self.phase, Phase::Exchange(ex) if Self::background(ex)) {
            return self.end_background(now, note);
        }
        let Some(ex) = self.take_exchange() else {
            return;
        };
        let upstream = ex.upstream;
        let record = self.record(now, ex, Some(note));
        self.log(now, record);
        if let Some(upstream) = upstream {
            self.outbox.push(Action::Release {
                upstream,
                reuse: false,
            });
        }
        self.close(CloseReason::Aborted);
    }

    /// Refuses a head that never became an exchange; the stream is
    /// unusable after it.
    fn refuse_unparsed(
        &mut self,
        now: Instant,
        started: Instant,
        bytes_in: u64,
        err: RequestError,
    ) {
        self.refuse_connection(now, started, bytes_in, err.into(), CloseReason::BadRequest);
    }

    /// Refuses a connection over a cap: 503 before reading anything.
    pub(super) fn refuse_over_cap(&mut self, now: Instant, exceeded: CapExceeded) {
        let rule = match exceeded {
            CapExceeded::Global(n) => format!("limits.max_connections ({n})"),
            CapExceeded::PerIp(n) => format!("limits.max_connections_per_ip ({n})"),
        };
        let denial = Denial {
            kind: DenyKind::Connections,
            rule,
        };
        self.refuse_connection(now, now, 0, denial.into(), CloseReason::AfterError);
    }

    /// Answers `err` outside any exchange, logs it, and closes.
    fn refuse_connection(
        &mut self,
        now: Instant,
        started: Instant,
        bytes_in: u64,
        err: ProxyError,
        reason: CloseReason,
    ) {
        let date = http_date(self.anchor.wall(now));
        let message = err.to_string();
        let extra = err.extra_fields();
        let page = ErrorPage {
            status: err.status(),
            proxy_status: err.proxy_status().as_str(),
            message: &message,
            proxy_name: &self.config.proxy_name,
            date: &date,
            close: true,
            head_only: false,
            extra: &extra,
        };
        let mut bytes = Vec::new();
        page.write(&mut bytes);
        let len = self
            .outbox
            .write_with(Side::Client, |out| out.extend_from_slice(&bytes));
        let mut record =
            self.unparsed_record(now, started, bytes_in, err.status(), err.proxy_status());
        record.bytes_to_client = len as u64;
        if let ProxyError::Denied(d) = &err {
            record.decision = d.decision();
            record.rule = Some(d.rule.clone());
        }
        self.log(now, record);
        self.close(reason);
    }

    fn log_unparsed(
        &mut self,
        now: Instant,
        started: Instant,
        bytes_in: u64,
        status: u16,
        note: ErrorType,
    ) {
        let record = self.unparsed_record(now, started, bytes_in, status, note);
        self.log(now, record);
    }

    fn unparsed_record(
        &self,
        now: Instant,
        started: Instant,
        bytes_in: u64,
        status: u16,
        note: ErrorType,
    ) -> AccessRecord {
        AccessRecord {
            conn: self.id,
            client: self.client,
            method: "-".to_owned(),
            target: "-".to_owned(),
            upstream: None,
            status,
            bytes_to_client: 0,
            bytes_from_client: bytes_in,
            duration: now - started,
            kind: ExchangeKind::Http,
            error: Some(note),
            user: None,
            decision: Decision::Allowed,
            rule: None,
            tls: None,
            cache: None,
            agent: None,
            parent: false,
            balancer: self.balancer.clone(),
        }
    }

    /// The record of an exchange that has ended. It takes the exchange,
    /// so that what both hold (method, target, user, ...) moves into the
    /// record instead of being copied.
    fn record(&self, now: Instant, ex: Box<Exchange>, error: Option<ErrorType>) -> AccessRecord {
        let ex = *ex;
        let parent = ex.upstream_addr.is_some() && ex.via_parent().is_some();
        let decision = ex
            .denial
            .as_ref()
            .map_or(Decision::Allowed, Denial::decision);
        AccessRecord {
            conn: self.id,
            client: self.client,
            method: ex.method,
            target: ex.target,
            upstream: ex.upstream_addr,
            status: ex.status,
            bytes_to_client: ex.bytes_to_client,
            bytes_from_client: ex.bytes_from_client,
            duration: now - ex.started,
            kind: ex.kind,
            error,
            user: ex.user,
            decision,
            rule: ex.denial.map(|d| d.rule),
            tls: ex.hello,
            cache: ex.cache.as_ref().map(|c| c.result),
            parent,
            agent: ex.agent,
            balancer: self.balancer.clone(),
        }
    }

    /// Emits the record that ends a request or tunnel: counted in the
    /// metrics, then queued for the access log. The exchange's upstream
    /// is no longer counted as in use from here.
    fn log(&mut self, now: Instant, record: AccessRecord) {
        self.upstream_in_use = None;
        self.shared.metrics().record(now, &record);
        self.outbox.push(Action::Log(Box::new(record)));
    }

    /// A new connection has `head_read` to begin its first request, not
    /// the keep-alive idle time: a client that connects and says nothing
    /// holds a descriptor for nothing (Apache's RequestReadTimeout counts
    /// from the connection too). It is closed without an answer, as an
    /// idle keep-alive connection is.
    pub(super) fn await_first_request(&mut self, now: Instant) {
        self.enter_idle(now);
        let t = &self.config.timeouts;
        self.timers
            .set(Timer::ClientIdle, now + t.head_read.min(t.client_idle));
    }

    pub(super) fn enter_idle(&mut self, now: Instant) {
        self.phase = Phase::Head;
        self.head = HeadBuf::default();
        self.timers.stop_all();
        self.timers
            .set(Timer::ClientIdle, now + self.config.timeouts.client_idle);
    }

    fn close(&mut self, reason: CloseReason) {
        self.phase = Phase::Closed;
        self.timers.stop_all();
        self.outbox.push(Action::Close { reason });
    }

    /// Moves the exchange out, leaving the phase `Closed` until the caller
    /// decides what follows.
    fn take_exchange(&mut self) -> Option<Box<Exchange>> {
        if !matches!(self.phase, Phase::Exchange(_)) {
            return None;
        }
        match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::Exchange(ex) => Some(ex),
            _ => None,
        }
    }

    pub(super) fn exchange_mut(&mut self) -> &mut Exchange {
        exchange_in(&mut self.phase)
    }
}

/// The exchange in flight, for code that runs only while there is one.
fn exchange_in(phase: &mut Phase) -> &mut Exchange {
    match phase {
        Phase::Exchange(ex) => ex,
        _ => unreachable!("called only while an exchange is in flight"),
    }
}

enum Prepared {
    Forward,
    /// Answered from this stored response.
    Cached(Arc<crate::cache::Entry>, crate::reason::CacheResult),
    /// Answer from this stale response, then revalidate it.
    Refresh(Arc<crate::cache::Entry>),
    /// Wait for another connection's fetch; look again then.
    Collapse(Instant),
    Local(LocalReply),
    /// The credential needs a bcrypt run first.
    Verify(VerifyJob),
}

/// What the proxy answers itself.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LocalReply {
    /// TRACE with `Max-Forwards: 0`.
    Trace,
    /// OPTIONS with `Max-Forwards: 0`.
    Options,
    /// `GET /_metrics`: Prometheus text.
    Metrics,
    /// `GET /_status`: the status page.
    Status,
    /// `PURGE`: whether anything was stored for the URI.
    Purged(bool),
    /// `GET /proxy.pac`: the auto-config script naming this address.
    Pac(String),
}

enum HeadProgress {
    /// Consumed this many; the head is not complete yet.
    Partial(usize),
    /// A head ended after this many; read on.
    Complete(usize),
    /// Consumed this many; the exchange moved on (error, tunnel).
    Stop(usize),
}
