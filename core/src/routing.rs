//! Where a request goes after policy allows it: straight to the origin,
//! or through parent proxies (Squid's `cache_peer`, tinyproxy's
//! `upstream`), tried in order until one answers, with names and ranges
//! that still go direct.
//!
//! Through a parent, plain HTTP is sent in absolute form and CONNECT is
//! sent on as a CONNECT; the parent resolves the destination. So the SSRF
//! guard judges what the client asked for (an IP literal, before any
//! connection) but cannot judge what a name resolves to at the parent:
//! that is the parent's to guard.

use crate::http::target::Host;
use crate::policy::domain::{Action, DomainRules};
use crate::policy::list::parse_list;
use crate::policy::{cidr::CidrRule, cidr::CidrTable};
use crate::time::Instant;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a parent that could not be reached is tried only after the
/// others: long enough to spare requests the wait, short enough that a
/// parent back up is used again soon.
pub const DOWN_FOR: Duration = Duration::from_secs(30);

/// Routing as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Parent proxies, in order of preference: `"host:port"` or
    /// `"user:password@host:port"` (Basic authentication to the parent).
    /// Empty: every request goes direct.
    pub parents: Vec<String>,
    /// Destinations that go direct even when there are parents: names
    /// (`"intranet.example"`, `"*.corp.example"`) and address ranges
    /// (`"10.0.0.0/8"`, for IP literals), as in `policy.allow`.
    pub direct: Vec<String>,
    /// How often each parent is probed (a TCP connection, opened and
    /// closed): one that does not answer is tried last until a probe
    /// finds it back, and one back up is used again at once instead of
    /// after [`DOWN_FOR`]. `"0s"`: requests are the only probes.
    #[serde(with = "crate::units::duration")]
    pub health_check: Duration,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            parents: Vec::new(),
            direct: Vec::new(),
            health_check: Duration::from_secs(10),
        }
    }
}

/// One parent proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parent {
    /// Its place in `routing.parents`.
    pub index: usize,
    /// Where it listens.
    pub host: Host,
    /// Its port.
    pub port: u16,
    /// `Proxy-Authorization` to send it, if it wants credentials.
    pub authorization: Option<String>,
}

impl Parent {
    /// `[user:password@]host:port`.
    pub fn parse(text: &str) -> Result<Parent, String> {
        let text = text.trim();
        let (credentials, address) = match text.rsplit_once('@') {
            Some((c, a)) => (Some(c), a),
            None => (None, text),
        };
        let authority = crate::http::target::Authority::parse(address, None)
            .map_err(|_| format!("{address:?} is not a host:port, like \"parent.example:3128\""))?;
        let authorization = match credentials {
            None => None,
            Some(c) if c.contains(':') => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(c)
            )),
            Some(_) => return Err("credentials are written user:password@host:port".to_owned()),
        };
        Ok(Parent {
            index: 0,
            host: authority.host,
            port: authority.port,
            authorization,
        })
    }

    /// `host:port`, for logs and errors (never the credentials).
    pub fn name(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Routing, compiled, with what is known of each parent's health: a
/// parent that could not be reached is tried after the others for
/// [`DOWN_FOR`] (a passive health check: every request is a probe).
#[derive(Debug, Default)]
pub struct Routes {
    parents: Vec<Parent>,
    /// Per parent: until when (microseconds of [`Instant`]) it counts
    /// as down; 0 when up.
    down_until: Vec<AtomicU64>,
    direct_names: DomainRules,
    direct_nets: CidrTable,
}

impl Routes {
    /// Compiles `config`; errors name the entry.
    pub fn compile(config: &RoutingConfig) -> Result<Routes, String> {
        let parents = config
            .parents
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Parent::parse(p)
                    .map(|parent| Parent { index: i, ..parent })
                    .map_err(|e| format!("routing.parents[{i}]: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let down_until = parents.iter().map(|_| AtomicU64::new(0)).collect();
        let entries = parse_list("routing.direct", &config.direct.join("\n"), Action::Allow);
        if let Some(e) = entries.errors.first() {
            return Err(format!("routing.direct: {}", e.message));
        }
        let mut direct_nets = CidrTable::default();
        for (net, origin) in entries.nets {
            direct_nets.add(CidrRule {
                net,
                action: Action::Allow,
                origin,
            });
        }
        Ok(Routes {
            parents,
            down_until,
            direct_names: DomainRules::new(entries.domains),
            direct_nets,
        })
    }

    /// The parents to try for `host` at `now`: those up in order of
    /// preference, then those down; empty when it goes direct.
    pub fn parents_for(&self, host: &Host, now: Instant) -> Vec<Parent> {
        if self.parents.is_empty() {
            return Vec::new();
        }
        let direct = match host {
            Host::Name(name) => self.direct_names.lookup(name).is_some(),
            Host::Ip(ip) => self.direct_nets.lookup(*ip).is_some(),
        };
        if direct {
            return Vec::new();
        }
        let (up, down): (Vec<&Parent>, Vec<&Parent>) = self
            .parents
            .iter()
            .partition(|p| !self.is_down(p.index, now));
        up.into_iter().chain(down).cloned().collect()
    }

    fn is_down(&self, index: usize, now: Instant) -> bool {
        self.down_until
            .get(index)
            .is_some_and(|d| d.load(Ordering::Relaxed) > now.as_micros())
    }

    /// The parent could not be reached at `now`.
    pub fn mark_down(&self, parent: &Parent, now: Instant) {
        if let Some(d) = self.down_until.get(parent.index) {
            d.store((now + DOWN_FOR).as_micros(), Ordering::Relaxed);
        }
    }

    /// Every parent, in order of preference (for health checks).
    pub fn parents(&self) -> &[Parent] {
        &self.parents
    }

    /// Whether `parent` counts as down at `now`.
    pub fn is_parent_down(&self, parent: &Parent, now: Instant) -> bool {
        self.is_down(parent.index, now)
    }

    /// The parent answered.
    pub fn mark_up(&self, parent: &Parent) {
        if let Some(d) = self.down_until.get(parent.index) {
            d.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_parse_with_and_without_credentials() {
        let p = Parent::parse("parent-a:3128").unwrap();
        assert_eq!(
            (p.name(), p.authorization),
            ("parent-a:3128".to_owned(), None)
        );
        let p = Parent::parse("alice:s3cret@10.0.0.5:8080").unwrap();
        assert_eq!(p.name(), "10.0.0.5:8080");
        assert_eq!(p.authorization.as_deref(), Some("Basic YWxpY2U6czNjcmV0"));
        let p = Parent::parse("[::1]:3128").unwrap();
        assert_eq!(p.name(), "[::1]:3128");
        assert!(Parent::parse("parent-a").is_err(), "a port is needed");
        assert!(Parent::parse("alice@parent:3128").is_err());
    }

    #[test]
    fn a_parent_down_is_tried_last_until_it_has_had_time() {
        let routes = Routes::compile(&RoutingConfig {
            parents: vec!["p1:3128".into(), "p2:3128".into()],
            direct: vec![],
            ..RoutingConfig::default()
        })
        .unwrap();
        let host = Host::parse("example.com").unwrap();
        let order = |now| -> Vec<String> {
            routes
                .parents_for(&host, now)
                .iter()
                .map(Parent::name)
                .collect()
        };
        let t0 = Instant::from_micros(5_000_000);
        assert_eq!(order(t0), ["p1:3128", "p2:3128"]);
        let p1 = routes.parents_for(&host, t0)[0].clone();
        routes.mark_down(&p1, t0);
        assert_eq!(order(t0), ["p2:3128", "p1:3128"], "still tried, last");
        assert_eq!(order(t0 + DOWN_FOR), ["p1:3128", "p2:3128"], "time passed");
        routes.mark_down(&p1, t0);
        routes.mark_up(&p1);
        assert_eq!(order(t0), ["p1:3128", "p2:3128"], "it answered");
    }

    #[test]
    fn direct_exceptions_skip_the_parents() {
        let routes = Routes::compile(&RoutingConfig {
            parents: vec!["p1:3128".into(), "p2:3128".into()],
            direct: vec![
                "*.corp.example".into(),
                "intranet".into(),
                "10.0.0.0/8".into(),
            ],
            ..RoutingConfig::default()
        })
        .unwrap();
        let host = |h: &str| Host::parse(h).unwrap();
        let t = Instant::ZERO;
        assert_eq!(routes.parents_for(&host("example.com"), t).len(), 2);
        assert!(routes.parents_for(&host("a.corp.example"), t).is_empty());
        assert!(routes.parents_for(&host("intranet"), t).is_empty());
        assert!(routes.parents_for(&host("10.1.2.3"), t).is_empty());
        assert_eq!(routes.parents_for(&host("192.0.2.1"), t).len(), 2);
        let none = Routes::compile(&RoutingConfig::default()).unwrap();
        assert!(none.parents_for(&host("example.com"), t).is_empty());
        assert!(Routes::compile(&RoutingConfig {
            parents: vec!["nope".into()],
            direct: vec![],
            ..RoutingConfig::default()
        })
        .unwrap_err()
        .starts_with("routing.parents[0]: "));
    }
}
