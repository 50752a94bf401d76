//! Counters every connection feeds, read by `/_metrics` (Prometheus text)
//! and `/_status` (a small HTML page).
//!
//! [`Metrics`] is plain data shared by every connection, like the
//! connection caps: it never reads a clock (time comes in as `now`) and is
//! `Send + Sync`. The hot path takes no lock shared by every request: one
//! access record turns into a handful of relaxed atomic additions on fixed
//! arrays indexed by small label sets (method, [`Decision`], status class,
//! ...), plus one atomic addition in the table of destinations the status
//! page shows (see [`board`]). Both of the page's lists are bounded, so a
//! crowd of distinct hosts cannot grow memory.
//!
//! Everything is counted from the [`AccessRecord`] each request or tunnel
//! ends with ([`Metrics::record`]), so the metrics and the access log can
//! never disagree about what happened. The one exception is what became of
//! the records themselves ([`AccessLogCounters`]): the access log's writer
//! lives in the host, and counts into counters it is handed from here.

mod board;

use crate::cache::Cache;
use crate::http::date::rfc3339;
use crate::http::target::split_scheme;
use crate::log::{AccessRecord, ExchangeKind};
use crate::reason::{CacheResult, Decision, ErrorType};
use crate::time::{Instant, UnixTime};
use board::{RecentRing, TopCounter};
use std::fmt::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Methods counted by name; any other is counted as `other`.
pub const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "other",
];

/// The best TLS version a ClientHello offered, the `version` label.
pub const TLS_VERSIONS: [&str; 4] = ["TLS1.3", "TLS1.2", "older", "unknown"];

/// The first ALPN protocol a ClientHello offered, the `alpn` label.
pub const ALPNS: [&str; 4] = ["h2", "http/1.1", "other", "none"];

/// Status classes; `none` is a record with no status sent (status 0).
pub const STATUS_CLASSES: [&str; 7] = ["none", "1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// The RFC 9209 error types of a failure to reach an upstream.
pub const CONNECT_FAILURES: [ErrorType; 5] = [
    ErrorType::DnsError,
    ErrorType::DnsTimeout,
    ErrorType::ConnectionRefused,
    ErrorType::ConnectionTimeout,
    ErrorType::DestinationUnavailable,
];

/// Exchange kinds, the `kind` label of the duration histogram.
pub const KINDS: [&str; 4] = ["http", "tunnel", "upgrade", "local"];

/// Upper bounds of the duration histogram's buckets: microseconds, and the
/// `le` label in seconds. Prometheus's default buckets, stretched to five
/// minutes because tunnels live long.
const BUCKETS: [(u64, &str); 14] = [
    (5_000, "0.005"),
    (10_000, "0.01"),
    (25_000, "0.025"),
    (50_000, "0.05"),
    (100_000, "0.1"),
    (250_000, "0.25"),
    (500_000, "0.5"),
    (1_000_000, "1"),
    (2_500_000, "2.5"),
    (5_000_000, "5"),
    (10_000_000, "10"),
    (30_000_000, "30"),
    (60_000_000, "60"),
    (300_000_000, "300"),
];

/// How many destinations are tracked for the status page. When full, a new
/// host replaces the least counted one, so busy hosts stay.
const DESTINATIONS_KEPT: usize = 1024;
/// How many destinations the status page lists.
const TOP_DESTINATIONS: usize = 10;
/// How many refusals the status page lists.
const RECENT_REFUSALS: usize = 20;
/// Longest target or rule kept for a refusal, in bytes.
const TEXT_KEPT: usize = 200;

/// Counters shared by every connection of one proxy. See the module docs.
pub struct Metrics {
    /// When the proxy started: microseconds of [`Instant`].
    start: AtomicU64,
    requests: [[AtomicU64; Decision::ALL.len()]; METHODS.len()],
    responses: [AtomicU64; STATUS_CLASSES.len()],
    bytes_to_client: AtomicU64,
    bytes_from_client: AtomicU64,
    /// Established CONNECT tunnels and protocol upgrades.
    tunnels: AtomicU64,
    upgrades: AtomicU64,
    connect_failures: [AtomicU64; CONNECT_FAILURES.len()],
    rate_limited: AtomicU64,
    /// Per kind: counts per bucket (not cumulative), the last one for
    /// durations beyond every bound.
    durations: [[AtomicU64; BUCKETS.len() + 1]; KINDS.len()],
    duration_sum_micros: [AtomicU64; KINDS.len()],
    upstreams_in_use: AtomicU64,
    /// ClientHellos read on tunnels: [version][alpn][ech].
    tls_hellos: [[[AtomicU64; 2]; ALPNS.len()]; TLS_VERSIONS.len()],
    /// Requests the cache took part in, by what it did.
    cache: [AtomicU64; CacheResult::ALL.len()],
    access_log: Arc<AccessLogCounters>,
    destinations: TopCounter,
    refusals: RecentRing<Refusal, RECENT_REFUSALS>,
}

/// What became of the access records: written, or lost. The host's
/// access-log writer adds to these very counters (it is handed them with
/// [`Metrics::access_log`]), so `/_metrics` reads what the writer counts
/// and no copy has to be kept in step.
#[derive(Debug, Default)]
pub struct AccessLogCounters {
    /// Records written to the sink (file or console).
    pub written: AtomicU64,
    /// Records lost: not queued because the writer was behind, or queued
    /// and then not written because the write failed.
    pub dropped: AtomicU64,
}

/// One refusal, as the status page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// When it was logged.
    pub at: Instant,
    /// The client's address.
    pub client: SocketAddr,
    /// The request method.
    pub method: String,
    /// The target as the client sent it (cut to 200 bytes).
    pub target: String,
    /// The status answered.
    pub status: u16,
    /// Which check refused.
    pub decision: Decision,
    /// The rule that refused.
    pub rule: Option<String>,
}

/// Holds one upstream connection's place in the
/// `proxy_active_upstream_connections` gauge; dropping it gives it back,
/// so no path that ends a connection can leak a count.
#[must_use = "the count is given back as soon as this is dropped"]
pub struct UpstreamInUse {
    metrics: Arc<Metrics>,
}

impl Drop for UpstreamInUse {
    fn drop(&mut self) {
        self.metrics
            .upstreams_in_use
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for UpstreamInUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UpstreamInUse")
    }
}

impl fmt::Debug for Metrics {
    // Hundreds of counters say nothing in a debug print of `Shared`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn index_of(names: &[&str], name: &str) -> usize {
    names
        .iter()
        .position(|n| *n == name)
        .unwrap_or(names.len() - 1)
}

fn kind_index(kind: ExchangeKind) -> usize {
    match kind {
        ExchangeKind::Http => 0,
        ExchangeKind::Tunnel => 1,
        ExchangeKind::Upgrade => 2,
        ExchangeKind::Local => 3,
    }
}

fn class_index(status: u16) -> usize {
    match status {
        0 => 0,
        100..=599 => usize::from(status / 100),
        _ => 6,
    }
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn add(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

/// `target` cut to at most [`TEXT_KEPT`] bytes, on a character boundary.
fn kept(text: &str) -> String {
    text[..kept_len(text)].to_owned()
}

/// How many bytes of `text` are kept: at most [`TEXT_KEPT`], ending on a
/// character boundary.
fn kept_len(text: &str) -> usize {
    let mut end = text.len().min(TEXT_KEPT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// The destination a record went to, as the status page counts it: the
/// authority (`host[:port]`) as sent, cut to [`TEXT_KEPT`] bytes (the
/// counting lower-cases it). `None` for a record without a usable target.
fn destination(record: &AccessRecord) -> Option<&str> {
    let target = record.target.as_str();
    let authority = match split_scheme(target) {
        Some((_, rest)) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let authority = &rest[..end];
            authority.rsplit_once('@').map_or(authority, |(_, a)| a)
        }
        None if record.kind == ExchangeKind::Tunnel => target,
        None => return None,
    };
    if authority.is_empty() || authority == "-" {
        return None;
    }
    Some(&authority[..kept_len(authority)])
}

impl Metrics {
    /// Zeroed counters; the start is [`Instant::ZERO`], the runtime's
    /// origin, until [`set_start`](Metrics::set_start) says otherwise.
    pub fn new() -> Self {
        Metrics {
            start: AtomicU64::new(0),
            requests: Default::default(),
            responses: Default::default(),
            bytes_to_client: AtomicU64::new(0),
            bytes_from_client: AtomicU64::new(0),
            tunnels: AtomicU64::new(0),
            upgrades: AtomicU64::new(0),
            connect_failures: Default::default(),
            rate_limited: AtomicU64::new(0),
            durations: Default::default(),
            duration_sum_micros: Default::default(),
            upstreams_in_use: AtomicU64::new(0),
            tls_hellos: Default::default(),
            cache: Default::default(),
            access_log: Arc::default(),
            destinations: TopCounter::new(DESTINATIONS_KEPT),
            refusals: RecentRing::new(),
        }
    }

    /// When the proxy started, for the uptime.
    pub fn set_start(&self, start: Instant) {
        self.start.store(start.as_micros(), Ordering::Relaxed);
    }

    /// When the proxy started.
    pub fn start(&self) -> Instant {
        Instant::from_micros(load(&self.start))
    }

    /// Counts one finished request or tunnel, logged at `now`.
    pub fn record(&self, now: Instant, record: &AccessRecord) {
        let method = index_of(&METHODS, &record.method);
        add(&self.requests[method][record.decision.index()], 1);
        add(&self.responses[class_index(record.status)], 1);
        add(&self.bytes_to_client, record.bytes_to_client);
        add(&self.bytes_from_client, record.bytes_from_client);
        match record.kind {
            // A tunnel is established once the 200 went out; a failed
            // CONNECT is only a request.
            ExchangeKind::Tunnel if record.status == 200 => add(&self.tunnels, 1),
            ExchangeKind::Upgrade => add(&self.upgrades, 1),
            _ => {}
        }
        if let Some(error) = record.error {
            if let Some(i) = CONNECT_FAILURES.iter().position(|f| *f == error) {
                add(&self.connect_failures[i], 1);
            }
        }
        if record.decision == Decision::RateLimited {
            add(&self.rate_limited, 1);
        }
        if let Some(result) = record.cache {
            add(&self.cache[result.index()], 1);
        }
        if let Some(hello) = &record.tls {
            let version = if hello.versions.iter().any(|v| v == "TLS1.3") {
                0
            } else if hello.versions.iter().any(|v| v == "TLS1.2") {
                1
            } else if hello.versions.is_empty() {
                3
            } else {
                2
            };
            let alpn = match hello.alpn.first().map(String::as_str) {
                Some("h2") => 0,
                Some("http/1.1") => 1,
                Some(_) => 2,
                None => 3,
            };
            add(&self.tls_hellos[version][alpn][usize::from(hello.ech)], 1);
        }
        let kind = kind_index(record.kind);
        let micros = u64::try_from(record.duration.as_micros()).unwrap_or(u64::MAX);
        let bucket = BUCKETS
            .iter()
            .position(|&(bound, _)| micros <= bound)
            .unwrap_or(BUCKETS.len());
        add(&self.durations[kind][bucket], 1);
        add(&self.duration_sum_micros[kind], micros);

        if !record.decision.is_allowed() {
            self.refusals.push(Refusal {
                at: now,
                client: record.client,
                method: kept(&record.method),
                target: kept(&record.target),
                status: record.status,
                decision: record.decision,
                rule: record.rule.as_deref().map(kept),
            });
        } else if record.kind != ExchangeKind::Local {
            if let Some(host) = destination(record) {
                // Most authorities come lower-case already: counted
                // without a copy. (Lower-casing ASCII keeps the length and
                // so the cut.)
                if host.bytes().any(|b| b.is_ascii_uppercase()) {
                    self.destinations.count(&host.to_ascii_lowercase());
                } else {
                    self.destinations.count(host);
                }
            }
        }
    }

    /// Counts an upstream connection as in use until the result is dropped.
    pub fn upstream_in_use(self: &Arc<Self>) -> UpstreamInUse {
        add(&self.upstreams_in_use, 1);
        UpstreamInUse {
            metrics: Arc::clone(self),
        }
    }

    /// The counters the access log's writer adds to: hand them to it when
    /// it starts.
    pub fn access_log(&self) -> &Arc<AccessLogCounters> {
        &self.access_log
    }

    /// Requests counted with this method (as the label spells it) and
    /// decision.
    pub fn requests(&self, method: &str, decision: Decision) -> u64 {
        load(&self.requests[index_of(&METHODS, method)][decision.index()])
    }

    /// Requests the cache answered or forwarded with this result.
    pub fn cache_results(&self, result: CacheResult) -> u64 {
        load(&self.cache[result.index()])
    }

    /// The share of the requests the cache could answer (GET and HEAD)
    /// that it answered from storage; `None` before there were any.
    fn hit_ratio(&self) -> Option<f64> {
        let (mut hits, mut total) = (0, 0);
        for result in CacheResult::ALL {
            if result == CacheResult::Bypass {
                continue;
            }
            let n = self.cache_results(result);
            total += n;
            if result.is_hit() {
                hits += n;
            }
        }
        (total > 0).then(|| hits as f64 / total as f64)
    }

    /// Every request counted.
    pub fn requests_total(&self) -> u64 {
        self.requests.iter().flatten().map(load).sum()
    }

    /// The `limit` most requested destinations, busiest first.
    pub fn top_destinations(&self, limit: usize) -> Vec<(String, u64)> {
        self.destinations.top(limit)
    }

    /// The latest refusals, newest first.
    pub fn recent_refusals(&self) -> Vec<Refusal> {
        self.refusals.newest_first()
    }

    fn uptime(&self, now: Instant) -> std::time::Duration {
        now.saturating_since(self.start())
    }

    /// The Prometheus text exposition (format 0.0.4) at `now`, with the
    /// number of open client connections (which the connection caps keep)
    /// and the cache's store, when caching is on.
    pub fn render_prometheus(
        &self,
        now: Instant,
        active_connections: usize,
        cache: Option<&Cache>,
    ) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let w = &mut out;

        family(
            w,
            "proxy_requests_total",
            "counter",
            "Requests and tunnels by method and policy decision.",
        );
        for (m, method) in METHODS.iter().enumerate() {
            for decision in Decision::ALL {
                let n = load(&self.requests[m][decision.index()]);
                if n > 0 {
                    let _ = writeln!(
                        w,
                        "proxy_requests_total{{method=\"{method}\",decision=\"{decision}\"}} {n}"
                    );
                }
            }
        }

        family(
            w,
            "proxy_responses_total",
            "counter",
            "Responses sent to clients by status class (none: the exchange ended before a status was sent).",
        );
        for (i, class) in STATUS_CLASSES.iter().enumerate() {
            let n = load(&self.responses[i]);
            if n > 0 || *class != "other" {
                let _ = writeln!(w, "proxy_responses_total{{class=\"{class}\"}} {n}");
            }
        }

        family(
            w,
            "proxy_client_bytes_total",
            "counter",
            "Bytes exchanged with clients, heads and tunnel traffic included.",
        );
        let _ = writeln!(
            w,
            "proxy_client_bytes_total{{direction=\"to_client\"}} {}",
            load(&self.bytes_to_client)
        );
        let _ = writeln!(
            w,
            "proxy_client_bytes_total{{direction=\"from_client\"}} {}",
            load(&self.bytes_from_client)
        );

        family(
            w,
            "proxy_tunnels_total",
            "counter",
            "Tunnels relayed to their end: established CONNECT tunnels and protocol upgrades (101).",
        );
        let _ = writeln!(
            w,
            "proxy_tunnels_total{{kind=\"connect\"}} {}",
            load(&self.tunnels)
        );
        let _ = writeln!(
            w,
            "proxy_tunnels_total{{kind=\"upgrade\"}} {}",
            load(&self.upgrades)
        );

        family(
            w,
            "proxy_upstream_connect_failures_total",
            "counter",
            "Requests that failed to reach their upstream, by RFC 9209 error type.",
        );
        for (i, reason) in CONNECT_FAILURES.iter().enumerate() {
            let _ = writeln!(
                w,
                "proxy_upstream_connect_failures_total{{reason=\"{reason}\"}} {}",
                load(&self.connect_failures[i])
            );
        }

        family(
            w,
            "proxy_rate_limited_total",
            "counter",
            "Requests refused by a rate limit (429).",
        );
        let _ = writeln!(w, "proxy_rate_limited_total {}", load(&self.rate_limited));

        for (name, help, value) in [
            (
                "proxy_access_log_written_records_total",
                "Access records written to the log.",
                &self.access_log.written,
            ),
            (
                "proxy_access_log_dropped_records_total",
                "Access records lost: the log's writer could not keep up (its queue was full) or the write failed.",
                &self.access_log.dropped,
            ),
        ] {
            family(w, name, "counter", help);
            let _ = writeln!(w, "{name} {}", load(value));
        }

        family(
            w,
            "proxy_tls_client_hellos_total",
            "counter",
            "TLS ClientHellos read on CONNECT tunnels, by the best version offered, the first ALPN protocol, and whether ECH was offered.",
        );
        for (v, version) in TLS_VERSIONS.iter().enumerate() {
            for (a, alpn) in ALPNS.iter().enumerate() {
                for (e, ech) in ["false", "true"].iter().enumerate() {
                    let n = load(&self.tls_hellos[v][a][e]);
                    if n > 0 {
                        let _ = writeln!(
                            w,
                            "proxy_tls_client_hellos_total{{version=\"{version}\",alpn=\"{alpn}\",ech=\"{ech}\"}} {n}"
                        );
                    }
                }
            }
        }

        family(
            w,
            "proxy_request_duration_seconds",
            "histogram",
            "From the first byte of a request to the end of its exchange, by kind.",
        );
        for (k, kind) in KINDS.iter().enumerate() {
            // One load per bucket, so the cumulative counts are monotone
            // and `+Inf` equals `_count` even while requests are counted.
            let counts: Vec<u64> = self.durations[k].iter().map(load).collect();
            let total: u64 = counts.iter().sum();
            if total == 0 {
                continue;
            }
            let mut cumulative = 0;
            for (i, &(_, le)) in BUCKETS.iter().enumerate() {
                cumulative += counts[i];
                let _ = writeln!(
                    w,
                    "proxy_request_duration_seconds_bucket{{kind=\"{kind}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                w,
                "proxy_request_duration_seconds_bucket{{kind=\"{kind}\",le=\"+Inf\"}} {total}"
            );
            let _ = writeln!(
                w,
                "proxy_request_duration_seconds_sum{{kind=\"{kind}\"}} {}",
                Seconds(load(&self.duration_sum_micros[k]))
            );
            let _ = writeln!(
                w,
                "proxy_request_duration_seconds_count{{kind=\"{kind}\"}} {total}"
            );
        }

        if let Some(cache) = cache {
            family(
                w,
                "proxy_cache_requests_total",
                "counter",
                "Requests the cache took part in, by result (hit: answered from storage; miss: forwarded; refresh_*: revalidated; bypass: not cacheable by method).",
            );
            for result in CacheResult::ALL {
                let _ = writeln!(
                    w,
                    "proxy_cache_requests_total{{result=\"{result}\"}} {}",
                    self.cache_results(result)
                );
            }
            let stats = &cache.store.stats;
            for (name, kind, help, value) in [
                (
                    "proxy_cache_stores_total",
                    "counter",
                    "Responses stored.",
                    load(&stats.stores),
                ),
                (
                    "proxy_cache_evictions_total",
                    "counter",
                    "Stored responses evicted to make room.",
                    load(&stats.evictions),
                ),
                (
                    "proxy_cache_invalidations_total",
                    "counter",
                    "Stored responses removed by an unsafe request or a PURGE.",
                    load(&stats.invalidations),
                ),
                (
                    "proxy_cache_entries",
                    "gauge",
                    "Stored responses held.",
                    load(&stats.entries),
                ),
                (
                    "proxy_cache_bytes",
                    "gauge",
                    "Bytes held by the cache, bodies, fields and keys.",
                    load(&stats.bytes),
                ),
                (
                    "proxy_cache_capacity_bytes",
                    "gauge",
                    "The cache's budget (cache.memory).",
                    cache.config().memory as u64,
                ),
            ] {
                family(w, name, kind, help);
                let _ = writeln!(w, "{name} {value}");
            }
        }

        family(
            w,
            "proxy_active_connections",
            "gauge",
            "Open client connections.",
        );
        let _ = writeln!(w, "proxy_active_connections {active_connections}");

        family(
            w,
            "proxy_active_upstream_connections",
            "gauge",
            "Upstream connections serving a request or tunnel (idle pooled ones not included).",
        );
        let _ = writeln!(
            w,
            "proxy_active_upstream_connections {}",
            load(&self.upstreams_in_use)
        );

        family(
            w,
            "proxy_uptime_seconds",
            "gauge",
            "Seconds since the proxy started.",
        );
        let _ = writeln!(
            w,
            "proxy_uptime_seconds {}",
            Seconds(u64::try_from(self.uptime(now).as_micros()).unwrap_or(u64::MAX))
        );

        family(
            w,
            "proxy_build_info",
            "gauge",
            "Always 1; the labels say which build is running.",
        );
        let _ = writeln!(
            w,
            "proxy_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        out
    }

    /// The status page at `now` (`wall` is the calendar time at `now`): a
    /// self-contained HTML document that refreshes itself every 5 seconds.
    pub fn render_status(
        &self,
        now: Instant,
        wall: UnixTime,
        proxy_name: &str,
        active_connections: usize,
        cache: Option<&Cache>,
    ) -> String {
        let uptime = self.uptime(now);
        let wall_at = |at: Instant| {
            UnixTime(
                wall.0
                    .saturating_sub(u64::try_from((now - at).as_micros()).unwrap_or(u64::MAX)),
            )
        };
        let mut h = String::with_capacity(8 * 1024);
        h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
        h.push_str("<meta http-equiv=\"refresh\" content=\"5\">\n");
        h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
        // An empty icon, so browsers do not ask us for /favicon.ico.
        h.push_str("<link rel=\"icon\" href=\"data:,\">\n");
        h.push_str("<title>");
        escape(proxy_name, &mut h);
        h.push_str(" status</title>\n<style>");
        h.push_str(STYLE);
        h.push_str("</style></head>\n<body>\n<header><h1>");
        escape(proxy_name, &mut h);
        let _ = write!(
            h,
            "</h1>\n<p>version {} &middot; up <span id=\"uptime\">{}</span> &middot; started {} &middot; as of <span id=\"now\">{}</span></p></header>\n",
            env!("CARGO_PKG_VERSION"),
            Uptime(uptime),
            rfc3339(wall_at(self.start())),
            rfc3339(wall),
        );

        // Counters.
        let total = self.requests_total();
        let allowed: u64 = self.requests.iter().map(|row| load(&row[0])).sum();
        h.push_str("<section><h2>Counters</h2>\n<table class=\"counters\">\n");
        let mut row = |id: &str, label: &str, value: &dyn fmt::Display| {
            let _ = writeln!(h, "<tr><th>{label}</th><td id=\"{id}\">{value}</td></tr>");
        };
        row("requests", "Requests", &total);
        row("allowed", "Allowed", &allowed);
        row("refused", "Refused by policy", &(total - allowed));
        row("rate-limited", "Rate-limited", &load(&self.rate_limited));
        row(
            "active-connections",
            "Open client connections",
            &active_connections,
        );
        row(
            "active-upstreams",
            "Upstream connections in use",
            &load(&self.upstreams_in_use),
        );
        row("tunnels", "CONNECT tunnels", &load(&self.tunnels));
        row("upgrades", "Upgrades", &load(&self.upgrades));
        row(
            "bytes-to-clients",
            "Sent to clients",
            &Bytes(load(&self.bytes_to_client)),
        );
        row(
            "bytes-from-clients",
            "Received from clients",
            &Bytes(load(&self.bytes_from_client)),
        );
        for (i, class) in STATUS_CLASSES.iter().enumerate() {
            let n = load(&self.responses[i]);
            if n > 0 || (1..=5).contains(&i) {
                let label = if *class == "none" {
                    "No response".to_owned()
                } else {
                    format!("Responses {class}")
                };
                row(&format!("responses-{class}"), &label, &n);
            }
        }
        for (i, reason) in CONNECT_FAILURES.iter().enumerate() {
            let n = load(&self.connect_failures[i]);
            if n > 0 {
                row(
                    &format!("failures-{reason}"),
                    &format!("Upstream failures: {reason}"),
                    &n,
                );
            }
        }
        if let Some(cache) = cache {
            let ratio = match self.hit_ratio() {
                Some(r) => format!("{:.1}%", r * 100.0),
                None => "-".to_owned(),
            };
            row("cache-hit-ratio", "Cache hit ratio", &ratio);
            row(
                "cache-entries",
                "Cached responses",
                &load(&cache.store.stats.entries),
            );
            row(
                "cache-bytes",
                "Cache size",
                &Bytes(load(&cache.store.stats.bytes)),
            );
        }
        h.push_str("</table></section>\n");

        // Top destinations.
        h.push_str("<section><h2>Top destinations</h2>\n");
        let top = self.top_destinations(TOP_DESTINATIONS);
        if top.is_empty() {
            h.push_str("<p class=\"empty\">None yet.</p>\n");
        } else {
            h.push_str(
                "<table id=\"destinations\"><tr><th>Destination</th><th>Requests</th></tr>\n",
            );
            for (host, n) in top {
                h.push_str("<tr><td>");
                escape(&host, &mut h);
                let _ = writeln!(h, "</td><td class=\"n\">{n}</td></tr>");
            }
            h.push_str("</table>\n");
        }
        h.push_str("</section>\n");

        // Recent refusals.
        h.push_str("<section><h2>Recent refusals</h2>\n");
        let refusals = self.recent_refusals();
        if refusals.is_empty() {
            h.push_str("<p class=\"empty\">None.</p>\n");
        } else {
            h.push_str("<table id=\"refusals\"><tr><th>Time</th><th>Client</th><th>Request</th><th>Status</th><th>Decision</th><th>Rule</th></tr>\n");
            for r in refusals {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td class=\"w\">",
                    rfc3339(wall_at(r.at)),
                    r.client
                );
                escape(&r.method, &mut h);
                h.push(' ');
                escape(&r.target, &mut h);
                let _ = write!(h, "</td><td>{}</td><td>", r.status);
                escape(r.decision.as_str(), &mut h);
                h.push_str("</td><td class=\"w\">");
                escape(r.rule.as_deref().unwrap_or(""), &mut h);
                h.push_str("</td></tr>\n");
            }
            h.push_str("</table>\n");
        }
        h.push_str("</section>\n");
        h.push_str("<footer>Prometheus metrics: <a href=\"/_metrics\">/_metrics</a></footer>\n</body></html>\n");
        h
    }
}

const STYLE: &str = "\
body{font:15px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:60em;padding:0 1em;color:#222;background:#fafafa}\
h1{margin:0 0 .2em;font-size:1.5em}h2{font-size:1.1em;margin:1.4em 0 .4em}\
header p{margin:0;color:#555}\
table{border-collapse:collapse;width:100%;background:#fff}\
th,td{text-align:left;padding:.25em .6em;border-bottom:1px solid #e4e4e4;vertical-align:top}\
table.counters th{width:40%;font-weight:normal;color:#444}\
td.n,table.counters td{font-variant-numeric:tabular-nums}\
#refusals td{white-space:nowrap}#refusals td.w{white-space:normal;overflow-wrap:anywhere}\
.empty{color:#777}\
footer{margin-top:2em;color:#777;font-size:.9em}";

/// `# HELP` and `# TYPE` lines of a metric family.
fn family(w: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(w, "# HELP {name} {help}");
    let _ = writeln!(w, "# TYPE {name} {kind}");
}

fn escape(text: &str, out: &mut String) {
    crate::http::page::escape_html(text, out);
}

/// Microseconds written as decimal seconds, exactly (`1.5`, `0.000012`).
struct Seconds(u64);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (secs, micros) = (self.0 / 1_000_000, self.0 % 1_000_000);
        if micros == 0 {
            return write!(f, "{secs}");
        }
        let frac = format!("{micros:06}");
        write!(f, "{secs}.{}", frac.trim_end_matches('0'))
    }
}

/// A duration as a person reads an uptime: `3d 4h 5m 6s`, largest unit
/// first, leading zero units left out.
struct Uptime(std::time::Duration);

impl fmt::Display for Uptime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        let (d, h, m, s) = (s / 86_400, s / 3_600 % 24, s / 60 % 60, s % 60);
        if d > 0 {
            write!(f, "{d}d {h}h {m}m {s}s")
        } else if h > 0 {
            write!(f, "{h}h {m}m {s}s")
        } else if m > 0 {
            write!(f, "{m}m {s}s")
        } else {
            write!(f, "{s}s")
        }
    }
}

/// A byte count with a binary-unit approximation beside it.
struct Bytes(u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
        if n < 1024 {
            return write!(f, "{n} B");
        }
        let mut value = n as f64 / 1024.0;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        write!(f, "{n} B ({value:.1} {})", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ConnId;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn rec(method: &str, target: &str, status: u16, millis: u64) -> AccessRecord {
        AccessRecord {
            conn: ConnId(1),
            client: "127.0.0.1:5000".parse().unwrap(),
            method: method.into(),
            target: target.into(),
            upstream: None,
            status,
            bytes_to_client: 100,
            bytes_from_client: 10,
            duration: Duration::from_millis(millis),
            kind: if method == "CONNECT" {
                ExchangeKind::Tunnel
            } else {
                ExchangeKind::Http
            },
            error: None,
            user: None,
            decision: Decision::Allowed,
            rule: None,
            tls: None,
            cache: None,
            agent: None,
            parent: false,
            balancer: None,
        }
    }

    fn denied(target: &str, decision: Decision, rule: &str) -> AccessRecord {
        AccessRecord {
            decision,
            rule: Some(rule.into()),
            error: Some(ErrorType::HttpRequestDenied),
            ..rec("GET", target, 403, 0)
        }
    }

    /// A strict reading of the text format, enough to hold our output to
    /// it: every sample belongs to the family announced by the `# TYPE`
    /// before it, each family is announced once with HELP then TYPE,
    /// names and labels are well formed, values are numbers, and
    /// histograms are cumulative with `+Inf` equal to `_count`.
    fn parse(text: &str) -> BTreeMap<String, f64> {
        let mut samples = BTreeMap::new();
        let mut families: Vec<(String, String)> = Vec::new();
        let mut help: Option<String> = None;
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !n.starts_with(|c: char| c.is_ascii_digit())
        };
        assert!(text.ends_with('\n'), "the exposition ends with a newline");
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, _) = rest.split_once(' ').expect("HELP has text");
                assert!(name_ok(name), "{line}");
                help = Some(name.to_owned());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE has a type");
                assert_eq!(help.as_deref(), Some(name), "HELP before TYPE: {line}");
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                assert!(
                    families.iter().all(|(n, _)| n != name),
                    "{name} announced twice"
                );
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "counter {name} ends in _total");
                }
                families.push((name.to_owned(), kind.to_owned()));
                continue;
            }
            assert!(!line.starts_with('#'), "unexpected comment {line}");
            let (series, value) = line.rsplit_once(' ').expect("sample has a value");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
            assert!(value >= 0.0, "{line}");
            let name = series.split('{').next().unwrap();
            assert!(name_ok(name), "{line}");
            let (family, kind) = families.last().expect("a sample after a TYPE");
            let belongs = match kind.as_str() {
                "histogram" => ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(family)),
                _ => name == family,
            };
            assert!(belongs, "{name} outside its family {family}");
            if let Some(labels) = series.strip_prefix(name) {
                if !labels.is_empty() {
                    let inner = labels
                        .strip_prefix('{')
                        .and_then(|l| l.strip_suffix('}'))
                        .expect("labels in braces");
                    for pair in inner.split(',') {
                        let (k, v) = pair.split_once('=').expect("label=value");
                        assert!(name_ok(k), "{line}");
                        assert!(v.len() >= 2 && v.starts_with('"') && v.ends_with('"'));
                    }
                }
            }
            assert!(
                samples.insert(series.to_owned(), value).is_none(),
                "duplicate series {series}"
            );
        }
        // Histograms: cumulative buckets, +Inf == _count.
        for kind in KINDS {
            let le = |b: &str| {
                samples.get(&format!(
                    "proxy_request_duration_seconds_bucket{{kind=\"{kind}\",le=\"{b}\"}}"
                ))
            };
            let Some(&inf) = le("+Inf") else { continue };
            let mut last = 0.0;
            for (_, b) in BUCKETS {
                let v = *le(b).expect("every bucket");
                assert!(v >= last, "buckets are cumulative");
                last = v;
            }
            assert!(inf >= last);
            assert_eq!(
                samples[&format!("proxy_request_duration_seconds_count{{kind=\"{kind}\"}}")],
                inf
            );
        }
        samples
    }

    #[test]
    fn counts_a_known_set_of_records() {
        let m = Metrics::new();
        let t = Instant::from_micros(7_000_000);
        for _ in 0..3 {
            m.record(t, &rec("GET", "http://Example.com/a", 200, 3));
        }
        m.record(t, &rec("POST", "http://example.com/form", 201, 30));
        m.record(t, &rec("CONNECT", "example.org:443", 200, 2_000));
        m.record(t, &rec("BREW", "http://pot.test/", 501, 0));
        m.record(
            t,
            &denied(
                "http://blocked.test/",
                Decision::DeniedDomain,
                "deny blocked.test",
            ),
        );
        m.record(
            t,
            &AccessRecord {
                decision: Decision::RateLimited,
                status: 429,
                ..rec("GET", "http://example.com/", 429, 0)
            },
        );
        let refused = AccessRecord {
            status: 502,
            error: Some(ErrorType::ConnectionRefused),
            ..rec("GET", "http://127.0.0.1:1/", 502, 1)
        };
        m.record(t, &refused);
        // A failed CONNECT is not a tunnel; a record with nothing sent
        // counts under `none`.
        let failed_connect = AccessRecord {
            status: 502,
            error: Some(ErrorType::DnsError),
            ..rec("CONNECT", "nowhere.test:443", 502, 1)
        };
        m.record(t, &failed_connect);
        m.record(
            t,
            &AccessRecord {
                error: Some(ErrorType::ClientClosed),
                ..rec("GET", "http://example.com/slow", 0, 12_000)
            },
        );

        let s = parse(&m.render_prometheus(Instant::from_micros(9_500_000), 4, None));
        let v = |k: &str| s.get(k).copied().unwrap_or_else(|| panic!("no {k}"));
        assert_eq!(
            v("proxy_requests_total{method=\"GET\",decision=\"allowed\"}"),
            5.0
        );
        assert_eq!(
            v("proxy_requests_total{method=\"POST\",decision=\"allowed\"}"),
            1.0
        );
        assert_eq!(
            v("proxy_requests_total{method=\"CONNECT\",decision=\"allowed\"}"),
            2.0
        );
        assert_eq!(
            v("proxy_requests_total{method=\"other\",decision=\"allowed\"}"),
            1.0
        );
        assert_eq!(
            v("proxy_requests_total{method=\"GET\",decision=\"denied_domain\"}"),
            1.0
        );
        assert_eq!(
            v("proxy_requests_total{method=\"GET\",decision=\"rate_limited\"}"),
            1.0
        );
        assert!(!s.contains_key("proxy_requests_total{method=\"PUT\",decision=\"allowed\"}"));
        assert_eq!(v("proxy_responses_total{class=\"2xx\"}"), 5.0);
        assert_eq!(v("proxy_responses_total{class=\"4xx\"}"), 2.0);
        assert_eq!(v("proxy_responses_total{class=\"5xx\"}"), 3.0);
        assert_eq!(v("proxy_responses_total{class=\"none\"}"), 1.0);
        assert_eq!(v("proxy_responses_total{class=\"1xx\"}"), 0.0);
        assert_eq!(
            v("proxy_client_bytes_total{direction=\"to_client\"}"),
            1100.0
        );
        assert_eq!(
            v("proxy_client_bytes_total{direction=\"from_client\"}"),
            110.0
        );
        assert_eq!(v("proxy_tunnels_total{kind=\"connect\"}"), 1.0);
        assert_eq!(v("proxy_tunnels_total{kind=\"upgrade\"}"), 0.0);
        assert_eq!(
            v("proxy_upstream_connect_failures_total{reason=\"connection_refused\"}"),
            1.0
        );
        assert_eq!(
            v("proxy_upstream_connect_failures_total{reason=\"dns_error\"}"),
            1.0
        );
        assert_eq!(
            v("proxy_upstream_connect_failures_total{reason=\"connection_timeout\"}"),
            0.0
        );
        assert_eq!(v("proxy_rate_limited_total"), 1.0);
        // Durations: http 3,3,3,30,0,0,0,1,12000 ms; tunnel 2000 ms and 1 ms.
        let b = |kind: &str, le: &str| {
            v(&format!(
                "proxy_request_duration_seconds_bucket{{kind=\"{kind}\",le=\"{le}\"}}"
            ))
        };
        assert_eq!(b("http", "0.005"), 7.0);
        assert_eq!(b("http", "0.05"), 8.0);
        assert_eq!(b("http", "10"), 8.0);
        assert_eq!(b("http", "30"), 9.0);
        assert_eq!(b("http", "+Inf"), 9.0);
        assert_eq!(
            v("proxy_request_duration_seconds_sum{kind=\"http\"}"),
            12.04
        );
        assert_eq!(b("tunnel", "0.005"), 1.0);
        assert_eq!(b("tunnel", "2.5"), 2.0);
        assert_eq!(
            v("proxy_request_duration_seconds_count{kind=\"tunnel\"}"),
            2.0
        );
        assert!(!s.contains_key("proxy_request_duration_seconds_count{kind=\"local\"}"));
        assert_eq!(v("proxy_active_connections"), 4.0);
        assert_eq!(v("proxy_active_upstream_connections"), 0.0);
        assert_eq!(v("proxy_uptime_seconds"), 9.5);
        assert_eq!(
            v(&format!(
                "proxy_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )),
            1.0
        );
        assert_eq!(m.requests_total(), 11);
        assert_eq!(m.requests("GET", Decision::Allowed), 5);

        // Destinations: lower-cased authorities of allowed requests.
        let top = m.top_destinations(10);
        assert_eq!(top[0], ("example.com".to_owned(), 5));
        assert!(top.contains(&("example.org:443".to_owned(), 1)));
        assert!(!top.iter().any(|(h, _)| h == "blocked.test"));
        // Refusals: policy decisions only, newest first.
        let refusals = m.recent_refusals();
        assert_eq!(refusals.len(), 2);
        assert_eq!(refusals[0].decision, Decision::RateLimited);
        assert_eq!(refusals[1].target, "http://blocked.test/");
        assert_eq!(refusals[1].rule.as_deref(), Some("deny blocked.test"));
    }

    #[test]
    fn an_empty_exposition_is_well_formed() {
        let m = Metrics::new();
        m.set_start(Instant::from_micros(1_000_000));
        let text = m.render_prometheus(Instant::from_micros(1_250_000), 0, None);
        let s = parse(&text);
        assert_eq!(s["proxy_uptime_seconds"], 0.25);
        assert!(text.contains("# TYPE proxy_request_duration_seconds histogram\n"));
        assert!(text.contains("# TYPE proxy_requests_total counter\n"));
        assert!(text.contains("# TYPE proxy_active_connections gauge\n"));
        assert_eq!(s["proxy_access_log_written_records_total"], 0.0);
        assert_eq!(s["proxy_access_log_dropped_records_total"], 0.0);
    }

    #[test]
    fn access_log_counters_are_the_ones_handed_out() {
        let m = Metrics::new();
        // What the host's writer holds: the same counters, not a copy.
        let writer = Arc::clone(m.access_log());
        writer.written.fetch_add(1_234_567, Ordering::Relaxed);
        writer.dropped.fetch_add(89, Ordering::Relaxed);
        let text = m.render_prometheus(Instant::ZERO, 0, None);
        let s = parse(&text);
        assert_eq!(s["proxy_access_log_written_records_total"], 1_234_567.0);
        assert_eq!(s["proxy_access_log_dropped_records_total"], 89.0);
        assert!(text.contains(
            "# TYPE proxy_access_log_dropped_records_total counter\nproxy_access_log_dropped_records_total 89\n"
        ));
    }

    #[test]
    fn upstream_gauge_follows_its_guards() {
        let m = Arc::new(Metrics::new());
        let a = m.upstream_in_use();
        let b = m.upstream_in_use();
        let s = parse(&m.render_prometheus(Instant::ZERO, 0, None));
        assert_eq!(s["proxy_active_upstream_connections"], 2.0);
        drop((a, b));
        let s = parse(&m.render_prometheus(Instant::ZERO, 0, None));
        assert_eq!(s["proxy_active_upstream_connections"], 0.0);
    }

    #[test]
    fn lists_stay_bounded() {
        let m = Metrics::new();
        let t = Instant::ZERO;
        for _ in 0..5 {
            m.record(t, &rec("GET", "http://busy.test/", 200, 1));
        }
        for i in 0..3 * DESTINATIONS_KEPT {
            m.record(t, &rec("GET", &format!("http://h{i}.test/"), 200, 1));
        }
        for i in 0..50 {
            m.record(
                t,
                &denied(&format!("http://d{i}.test/"), Decision::DeniedDomain, "r"),
            );
        }
        assert!(m.destinations.len() <= DESTINATIONS_KEPT);
        assert_eq!(m.recent_refusals().len(), RECENT_REFUSALS);
        assert_eq!(m.top_destinations(1), vec![("busy.test".to_owned(), 5)]);
        assert_eq!(m.recent_refusals()[0].target, "http://d49.test/");
        // Long targets are cut, on a character boundary.
        let long = format!("http://x.test/{}", "é".repeat(300));
        m.record(t, &denied(&long, Decision::DeniedDomain, "r"));
        let kept = &m.recent_refusals()[0].target;
        assert!(kept.len() <= TEXT_KEPT && long.starts_with(kept.as_str()));
    }

    #[test]
    fn destinations_are_authorities() {
        let d = |target: &str, kind| {
            destination(&AccessRecord {
                kind,
                ..rec("GET", target, 200, 0)
            })
            .map(str::to_owned)
        };
        assert_eq!(
            d("http://user:pw@Host.test:8080/p?q#f", ExchangeKind::Http).as_deref(),
            Some("Host.test:8080")
        );
        assert_eq!(
            d("http://h.test?x", ExchangeKind::Http).as_deref(),
            Some("h.test")
        );
        assert_eq!(
            d("h.test:443", ExchangeKind::Tunnel).as_deref(),
            Some("h.test:443")
        );
        assert_eq!(d("-", ExchangeKind::Http), None);
        assert_eq!(d("/_metrics", ExchangeKind::Local), None);
        // They are counted lower-cased.
        let m = Metrics::new();
        let t = Instant::from_micros(1);
        for target in [
            "http://Host.test/a",
            "http://host.test/b",
            "http://HOST.TEST/",
        ] {
            m.record(t, &rec("GET", target, 200, 0));
        }
        assert_eq!(m.top_destinations(5), vec![("host.test".to_owned(), 3)]);
    }

    #[test]
    fn status_page_shows_uptime_counters_destinations_and_refusals() {
        let m = Metrics::new();
        let t = Instant::from_micros(3_600_000_000);
        for _ in 0..3 {
            m.record(t, &rec("GET", "http://example.com/", 200, 3));
        }
        m.record(
            t,
            &denied(
                "http://<evil>.test/",
                Decision::DeniedDomain,
                "deny <evil>.test (list.txt:3)",
            ),
        );
        let now = Instant::from_micros(3_723_000_000);
        let wall = UnixTime(1_795_270_203_000_000);
        let html = m.render_status(now, wall, "proxy-rs", 2, None);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
        assert!(html.contains("<span id=\"uptime\">1h 2m 3s</span>"));
        assert!(html.contains("as of <span id=\"now\">2026-11-21T14:10:03Z</span>"));
        assert!(html.contains("<td id=\"requests\">4</td>"));
        assert!(html.contains("<td id=\"refused\">1</td>"));
        assert!(html.contains("<td id=\"active-connections\">2</td>"));
        assert!(html.contains("<td id=\"responses-2xx\">3</td>"));
        assert!(html.contains("<tr><td>example.com</td><td class=\"n\">3</td></tr>"));
        // The refusal, 123 s before `now`, escaped.
        assert!(html.contains("<td>2026-11-21T14:08:00Z</td><td>127.0.0.1:5000</td>"));
        assert!(html.contains("GET http://&lt;evil&gt;.test/"));
        assert!(html.contains("deny &lt;evil&gt;.test (list.txt:3)"));
        assert!(!html.contains("<evil>"));
        // Self-contained: nothing fetched from elsewhere.
        assert!(!html.contains("src="));
        assert!(!html.contains("href=\"http"));
        assert_eq!(html.matches("<link").count(), 1);
        assert!(html.contains("<link rel=\"icon\" href=\"data:,\">"));
    }

    #[test]
    fn seconds_and_sizes_read_well() {
        assert_eq!(Seconds(0).to_string(), "0");
        assert_eq!(Seconds(1_500_000).to_string(), "1.5");
        assert_eq!(Seconds(12).to_string(), "0.000012");
        assert_eq!(Uptime(Duration::from_secs(59)).to_string(), "59s");
        assert_eq!(
            Uptime(Duration::from_secs(90_061)).to_string(),
            "1d 1h 1m 1s"
        );
        assert_eq!(Bytes(1023).to_string(), "1023 B");
        assert_eq!(Bytes(1536).to_string(), "1536 B (1.5 KiB)");
    }

    #[test]
    #[cfg_attr(target_os = "wasi", ignore = "WASI (preview 1) has no threads")]
    // Real threads are the point here: no count may be lost under races.
    fn concurrent_records_are_all_counted() {
        let m = Arc::new(Metrics::new());
        std::thread::scope(|scope| {
            for t in 0..4 {
                let m = Arc::clone(&m);
                scope.spawn(move || {
                    for i in 0..500 {
                        m.record(
                            Instant::ZERO,
                            &rec("GET", &format!("http://h{}.test/", i % 7), 200, t),
                        );
                        m.record(
                            Instant::ZERO,
                            &denied("http://x.test/", Decision::DeniedDomain, "r"),
                        );
                        drop(m.upstream_in_use());
                    }
                });
            }
        });
        assert_eq!(m.requests("GET", Decision::Allowed), 2000);
        assert_eq!(m.requests("GET", Decision::DeniedDomain), 2000);
        let counted: u64 = m.top_destinations(100).iter().map(|(_, n)| n).sum();
        assert_eq!(counted, 2000);
        assert_eq!(m.recent_refusals().len(), RECENT_REFUSALS);
        let s = parse(&m.render_prometheus(Instant::ZERO, 0, None));
        assert_eq!(
            s["proxy_client_bytes_total{direction=\"to_client\"}"],
            400_000.0
        );
        assert_eq!(s["proxy_active_upstream_connections"], 0.0);
        assert_eq!(
            s["proxy_request_duration_seconds_count{kind=\"http\"}"],
            4000.0
        );
    }

    #[test]
    fn metrics_are_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Metrics>();
        assert_send_sync::<UpstreamInUse>();
        assert_send_sync::<AccessLogCounters>();
    }

    #[test]
    fn tunnels_count_their_client_hellos() {
        use crate::tls::client_hello::ClientHelloInfo;
        let m = Metrics::new();
        let hello = |versions: &[&str], alpn: &[&str], ech: bool| AccessRecord {
            tls: Some(ClientHelloInfo {
                sni: Some("a.test".into()),
                alpn: alpn.iter().map(|s| s.to_string()).collect(),
                versions: versions.iter().map(|s| s.to_string()).collect(),
                ech,
                sni_malformed: false,
            }),
            ..rec("CONNECT", "a.test:443", 200, 5)
        };
        m.record(
            Instant::ZERO,
            &hello(&["TLS1.3", "TLS1.2"], &["h2", "http/1.1"], true),
        );
        m.record(
            Instant::ZERO,
            &hello(&["TLS1.3", "TLS1.2"], &["h2", "http/1.1"], true),
        );
        m.record(Instant::ZERO, &hello(&["TLS1.2"], &[], false));
        m.record(Instant::ZERO, &rec("CONNECT", "b.test:443", 200, 5));
        let text = m.render_prometheus(Instant::ZERO, 0, None);
        assert!(
            text.contains(
                "proxy_tls_client_hellos_total{version=\"TLS1.3\",alpn=\"h2\",ech=\"true\"} 2\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "proxy_tls_client_hellos_total{version=\"TLS1.2\",alpn=\"none\",ech=\"false\"} 1\n"
        ));
        assert_eq!(
            text.matches("proxy_tls_client_hellos_total{").count(),
            2,
            "a tunnel without a hello counts nowhere"
        );
    }
}
