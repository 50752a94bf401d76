//! State every connection of one proxy shares: the configuration and
//! compiled policy in force (swapped whole on reload), the connection
//! caps, and the metrics. Plain data behind `Arc`; usable from many
//! threads (proxy-std) or one (proxy-smol, WASI).

use crate::cache::Cache;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::policy::caps::ConnectionCaps;
use crate::policy::{Policy, PolicyError, Report, Sources};
use crate::routing::Routes;
use crate::time::{Instant, UnixTime};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// The configuration and the policy compiled from it, as one unit: a
/// request sees both from the same reload.
#[derive(Debug)]
pub struct Snapshot {
    /// Limits, timeouts, names.
    pub config: Arc<Config>,
    /// Access rules.
    pub policy: Arc<Policy>,
    /// The text of the files the policy was compiled from (lists,
    /// htpasswd), so a recorded trace can compile it again.
    pub sources: Arc<Sources>,
    /// The HTTP cache, when `cache.enabled`. A reload keeps it (and what
    /// it holds) unless the cache settings changed.
    pub cache: Option<Arc<Cache>>,
    /// Where requests go: direct or through parents.
    pub routes: Arc<Routes>,
}

/// The cache for `config`: `previous` if its settings are the same.
fn cache_for(config: &Config, previous: Option<&Snapshot>) -> Option<Arc<Cache>> {
    if !config.cache.enabled {
        return None;
    }
    match previous.and_then(|p| p.cache.as_ref()) {
        Some(c) if *c.config() == config.cache => Some(c.clone()),
        _ => Some(Arc::new(Cache::new(&config.cache))),
    }
}

/// Shared by every connection.
#[derive(Debug)]
pub struct Shared {
    current: RwLock<Arc<Snapshot>>,
    /// Counts the snapshots put in force, so that a connection can tell
    /// with one load that its own is still current. Taking the snapshot
    /// itself writes to the lock and the reference counts, which every
    /// thread's connections share.
    generation: AtomicU64,
    caps: Arc<ConnectionCaps>,
    metrics: Arc<Metrics>,
}

impl Shared {
    /// Shared state for `config`, compiling its policy from `sources` (the
    /// text of every file it names). Connection caps are fixed here, at
    /// start-up.
    pub fn new(config: Config, sources: Sources) -> Result<(Arc<Shared>, Report), PolicyError> {
        let (policy, report) = Policy::compile(&config.policy, &sources)?;
        let caps = ConnectionCaps::new(
            config.limits.max_connections,
            config.limits.max_connections_per_ip,
        );
        let routes = Routes::compile(&config.routing).map_err(PolicyError)?;
        let snapshot = Snapshot {
            cache: cache_for(&config, None),
            routes: Arc::new(routes),
            config: Arc::new(config),
            policy: Arc::new(policy),
            sources: Arc::new(sources),
        };
        Ok((
            Arc::new(Shared {
                current: RwLock::new(Arc::new(snapshot)),
                generation: AtomicU64::new(0),
                caps,
                metrics: Arc::new(Metrics::new()),
            }),
            report,
        ))
    }

    /// `config` with a policy that allows everything from anywhere to
    /// anywhere, whatever `config.policy` says: for tests of the protocol.
    pub fn allow_all(config: Config) -> Arc<Shared> {
        let caps = ConnectionCaps::new(
            config.limits.max_connections,
            config.limits.max_connections_per_ip,
        );
        let snapshot = Snapshot {
            cache: cache_for(&config, None),
            routes: Arc::new(Routes::compile(&config.routing).unwrap_or_default()),
            config: Arc::new(config),
            policy: Arc::new(Policy::allow_all()),
            sources: Arc::new(Sources::new()),
        };
        Arc::new(Shared {
            current: RwLock::new(Arc::new(snapshot)),
            generation: AtomicU64::new(0),
            caps,
            metrics: Arc::new(Metrics::new()),
        })
    }

    /// What is in force now. Connections take one per request, so a
    /// reload applies from each connection's next request on.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Which snapshot is in force: a number that changes with every
    /// [`reload`](Shared::reload). Read it before taking the
    /// [`snapshot`](Shared::snapshot); while it stays the same, the
    /// snapshot taken is still the one in force.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Compiles and puts a new configuration in force. On error the
    /// running one stays, and the error says why.
    pub fn reload(&self, config: Config, sources: Sources) -> Result<Report, PolicyError> {
        let (policy, report) = Policy::compile(&config.policy, &sources)?;
        let cache = cache_for(&config, Some(&self.snapshot()));
        let routes = Routes::compile(&config.routing).map_err(PolicyError)?;
        let next = Arc::new(Snapshot {
            cache,
            routes: Arc::new(routes),
            config: Arc::new(config),
            policy: Arc::new(policy),
            sources: Arc::new(sources),
        });
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next;
        // After the swap: whoever sees the new number finds the new
        // snapshot in place.
        self.generation.fetch_add(1, Ordering::Release);
        Ok(report)
    }

    /// The connection caps.
    pub fn caps(&self) -> &Arc<ConnectionCaps> {
        &self.caps
    }

    /// The counters behind `/_metrics` and `/_status`. Survive reloads.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Says when the proxy started, for the uptime. Without it the uptime
    /// counts from [`Instant::ZERO`], the runtime's clock origin, which
    /// both runtimes take at start-up.
    pub fn set_start(&self, now: Instant) {
        self.metrics.set_start(now);
    }

    /// The Prometheus text exposition at `now`.
    pub fn render_metrics(&self, now: Instant) -> String {
        let snapshot = self.snapshot();
        self.metrics
            .render_prometheus(now, self.caps.active(), snapshot.cache.as_deref())
    }

    /// The status page at `now`; `wall` is the calendar time at `now`.
    pub fn render_status(&self, now: Instant, wall: UnixTime) -> String {
        let snapshot = self.snapshot();
        self.metrics.render_status(
            now,
            wall,
            &snapshot.config.proxy_name,
            self.caps.active(),
            snapshot.cache.as_deref(),
        )
    }
}
