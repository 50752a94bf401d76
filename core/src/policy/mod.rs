//! Who may go where, how often, and with what answer: access rules
//! compiled once from configuration (and the list files it names) and
//! consulted per request.
//!
//! A request is checked in this order, and the first refusal answers:
//!
//! 1. **client**: the client's address must be in `clients` (403);
//! 2. **authentication**: with `auth` configured, `Proxy-Authorization:
//!    Basic` must name a user of the htpasswd file (407);
//! 3. **method** and **port**: `methods` (any when empty), `connect_ports`
//!    for CONNECT (443 by default, like Squid's SSL_ports), `http_ports`
//!    for plain HTTP (any when empty); a user's entry in `users` replaces
//!    these for that user (403);
//! 4. **destination name**: the domain rules (see [`domain`]; most
//!    specific wins, deny wins ties, `default` when none applies) (403);
//! 5. **rate**: per client address, and per user when authenticated (429);
//! 6. **destination address**: an IP-literal target before connecting,
//!    and every address a name resolves to, against the address rules
//!    (see [`cidr`]); the built-in private ranges are denied unless
//!    `allow_private_destinations` (403).

pub mod auth;
pub mod caps;
pub mod cidr;
pub mod domain;
pub mod list;
pub mod pac;
pub mod rate;

use self::auth::Htpasswd;
use self::cidr::{CidrRule, CidrTable};
use self::domain::{Action, DomainRules};
use self::rate::RateConfig;
pub use crate::error::{retry_secs, Denial, DenyKind};
use crate::http::target::Host;
use crate::tls::client_hello::Peek;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Where a rule came from: a list file and line, or the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// A file name, `config`, or `built-in`.
    pub source: Arc<str>,
    /// 1-based line in the file; 0 when not from a file.
    pub line: u32,
}

impl Origin {
    /// A rule written inline in the configuration.
    pub fn config() -> Origin {
        Origin {
            source: Arc::from("config"),
            line: 0,
        }
    }

    fn builtin() -> Origin {
        Origin {
            // The refusal names the key and the flag that lift it: an
            // operator trying the proxy against a local origin meets this
            // first.
            source: Arc::from(
                "built-in private range; policy.allow_private_destinations or --dev-allow-private lifts it",
            ),
            line: 0,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.source)
        } else {
            write!(f, "{}:{}", self.source, self.line)
        }
    }
}

/// A line of a list or configuration that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// Where.
    pub origin: Origin,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.message)
    }
}

/// Access rules as configured. List files are named here and read by
/// the runtime; their text reaches [`Policy::compile`] in [`Sources`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Client ranges allowed to use the proxy at all. Loopback only by
    /// default: a proxy open to the network must be opened on purpose.
    pub clients: Vec<String>,
    /// Entries to allow: domain patterns or address ranges.
    pub allow: Vec<String>,
    /// Entries to deny: domain patterns or address ranges.
    pub deny: Vec<String>,
    /// List files of entries to allow.
    pub allow_lists: Vec<String>,
    /// List files of entries to deny (blocklists).
    pub deny_lists: Vec<String>,
    /// What happens to a name no domain rule covers.
    pub default: Action,
    /// Lift the SSRF guard: let destinations in private, loopback,
    /// link-local and other special ranges through.
    pub allow_private_destinations: bool,
    /// Methods allowed; empty means any.
    pub methods: Vec<String>,
    /// Ports CONNECT may reach.
    pub connect_ports: Vec<u16>,
    /// Ports plain HTTP may reach; empty means any.
    pub http_ports: Vec<u16>,
    /// Per-user replacements of the method and port rules.
    pub users: BTreeMap<String, UserRules>,
    /// Basic proxy authentication, when set.
    pub auth: Option<AuthConfig>,
    /// Request rate limit per client address (and per user), when set.
    pub rate: Option<RateConfig>,
    /// What CONNECT tunnels' TLS ClientHellos may say.
    pub tls: TlsPolicy,
}

/// What to do with a tunnel whose ClientHello is of some kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TlsAction {
    /// Let it through (the access record still says what was seen).
    Allow,
    /// Close the tunnel before anything reaches the origin.
    Refuse,
}

/// Policy on the TLS ClientHello a client sends first through a CONNECT
/// tunnel. The proxy reads it without decrypting anything and applies
/// the domain rules to its server name (SNI) as well as to the CONNECT
/// target.
///
/// The `200 Connection established` has to be sent before the client
/// sends its hello, so a refusal here cannot be an HTTP error: the tunnel
/// is closed, after a TLS `access_denied` (or `unrecognized_name`) alert
/// when `alert` is on, so the client reports a clear error. The access
/// record says why, with status 403.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsPolicy {
    /// Read ClientHellos at all.
    pub peek: bool,
    /// Connect to the origin only once the hello is allowed, so a refused
    /// name never causes a connection to it. Off (the default): connect
    /// first, so an unreachable origin still gets a real 502/504 answer
    /// and a server that speaks first (SMTP, FTP) is relayed at once; a
    /// refused hello still never reaches the origin.
    pub delay_connect: bool,
    /// Largest ClientHello read; a larger one counts as unreadable.
    #[serde(with = "crate::units::size")]
    pub max_hello_bytes: usize,
    /// How long to wait for the hello; silence counts as not TLS.
    #[serde(with = "crate::units::duration")]
    pub hello_timeout: Duration,
    /// The SNI names another host than the CONNECT target (domain
    /// fronting). `Allow` only logs it.
    pub mismatch: TlsAction,
    /// A ClientHello without SNI.
    pub no_sni: TlsAction,
    /// An SNI that is not a host name: a `host:port` (Go's `hey` sends
    /// one), an IP literal (RFC 6066 forbids them), other junk. `Allow`
    /// judges the tunnel by its CONNECT authority alone and logs the SNI
    /// as malformed; `Refuse` refuses it.
    pub malformed_sni: TlsAction,
    /// First bytes that are not a readable ClientHello (another protocol,
    /// silence, or an oversized or malformed hello).
    pub not_tls: TlsAction,
    /// An encrypted ClientHello (ECH): only the outer, public name can be
    /// checked. Chromium and Firefox send a placeholder (GREASE) ECH
    /// extension on every connection, which cannot be told from the real
    /// thing, so `Refuse` refuses those browsers everywhere.
    pub ech: TlsAction,
    /// Send a TLS alert before closing a refused tunnel.
    pub alert: bool,
}

impl Default for TlsPolicy {
    fn default() -> Self {
        TlsPolicy {
            peek: true,
            delay_connect: false,
            max_hello_bytes: 16 * 1024,
            hello_timeout: Duration::from_secs(10),
            mismatch: TlsAction::Refuse,
            no_sni: TlsAction::Allow,
            malformed_sni: TlsAction::Allow,
            not_tls: TlsAction::Allow,
            ech: TlsAction::Allow,
            alert: true,
        }
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            clients: vec!["127.0.0.0/8".to_owned(), "::1/128".to_owned()],
            allow: Vec::new(),
            deny: Vec::new(),
            allow_lists: Vec::new(),
            deny_lists: Vec::new(),
            default: Action::Allow,
            allow_private_destinations: false,
            methods: Vec::new(),
            connect_ports: vec![443],
            http_ports: Vec::new(),
            users: BTreeMap::new(),
            auth: None,
            rate: None,
            tls: TlsPolicy::default(),
        }
    }
}

/// Rules that replace the general ones for one user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserRules {
    /// Replaces `methods`.
    pub methods: Option<Vec<String>>,
    /// Replaces `connect_ports`.
    pub connect_ports: Option<Vec<u16>>,
    /// Replaces `http_ports`.
    pub http_ports: Option<Vec<u16>>,
}

/// Basic proxy authentication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The htpasswd file.
    pub htpasswd: String,
    /// The realm in `Proxy-Authenticate`.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Accept `user:password` lines in plain text (insecure; warned about).
    #[serde(default)]
    pub allow_plaintext: bool,
    /// Failed logins allowed per client address (a token bucket, as
    /// `rate`); beyond them the client gets 429 without its password being
    /// checked at all, so guessing is slow and a flood of wrong passwords
    /// costs no bcrypt runs. Credentials already verified still pass.
    /// `None`: no limit.
    #[serde(default = "default_failures")]
    pub failures: Option<RateConfig>,
}

impl AuthConfig {
    /// Authentication against the htpasswd file `htpasswd`, everything
    /// else as by default.
    pub fn new(htpasswd: String) -> Self {
        AuthConfig {
            htpasswd,
            realm: default_realm(),
            allow_plaintext: false,
            failures: default_failures(),
        }
    }
}

fn default_realm() -> String {
    "proxy".to_owned()
}

/// 10 failed logins per client address, then one more a minute.
fn default_failures() -> Option<RateConfig> {
    Some(RateConfig {
        requests: 1,
        per: Duration::from_secs(60),
        burst: Some(10),
    })
}

/// The text of every file the configuration names, by the name it uses.
pub type Sources = BTreeMap<String, String>;

/// What compiling a policy found worth telling the operator.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Per file: entries loaded and lines rejected.
    pub files: Vec<(String, usize, usize)>,
    /// Every rejected line, with where.
    pub errors: Vec<LineError>,
    /// Users in the htpasswd file.
    pub users: usize,
    /// Of them, with plain-text passwords.
    pub plaintext_users: usize,
}

/// A configuration that cannot be compiled at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// Why an htpasswd file in which no line loaded stops the proxy (every
/// request would get 407), and what to do: a plain-text users file is the
/// usual cause.
fn no_users_loaded(file: &str, errors: &[auth::LineError]) -> String {
    let first = &errors[0];
    let mut message = format!(
        "{file}: no user could be loaded ({} line(s) refused, the first: line {}: {}), \
         so every request would be refused with 407",
        errors.len(),
        first.line,
        first.message
    );
    if errors.iter().any(|e| e.plaintext) {
        message.push_str(&format!(
            "; this looks like a plain-text users file: hash each password with \
             `htpasswd -B {file} USER` (bcrypt), or set policy.auth.allow_plaintext: true (insecure)"
        ));
    } else if let Some(user) = errors.iter().find_map(|e| e.rehash.as_deref()) {
        message.push_str(&format!(
            "; hash the passwords again: `htpasswd -B {file} {user}`"
        ));
    }
    message
}

/// The SNI as domain rules see it, or `None` when it is not a host name:
/// a `host:port`, an IP literal (RFC 6066 §3 forbids them), other junk.
pub fn sni_host_name(sni: &str) -> Option<String> {
    let name = domain::normalize(sni)?;
    // No top-level domain is all digits: this is an IPv4 literal or a
    // numeric spelling of one.
    let last = name.rsplit('.').next().unwrap_or_default();
    (!last.bytes().all(|b| b.is_ascii_digit())).then_some(name)
}

fn describe_peek(peek: &Peek) -> &'static str {
    match peek {
        Peek::NeedMore => "nothing readable before the timeout",
        Peek::NotTls => "another protocol",
        Peek::Malformed(why) => why,
        Peek::TooLarge => "too large",
        Peek::Hello(_) => "a ClientHello",
    }
}

/// Compiled access rules. Immutable; a reload compiles a new one.
#[derive(Debug)]
pub struct Policy {
    clients: CidrTable,
    domains: DomainRules,
    addresses: CidrTable,
    default: Action,
    methods: Vec<String>,
    connect_ports: Vec<u16>,
    http_ports: Vec<u16>,
    users: BTreeMap<String, UserRules>,
    auth: Option<Auth>,
    rate: Option<rate::RateLimiter>,
    tls: TlsPolicy,
}

/// Most distinct keys a rate limiter tracks.
const RATE_MAX_KEYS: usize = 100_000;

/// Authentication as compiled: the users, the realm, and the failed
/// logins per client.
#[derive(Debug)]
struct Auth {
    users: Htpasswd,
    realm: String,
    failures: Option<rate::RateLimiter>,
}

impl Auth {
    fn deny(&self, rule: &str) -> Denial {
        Denial {
            kind: DenyKind::Auth {
                realm: self.realm.clone(),
            },
            rule: rule.to_owned(),
        }
    }

    /// Takes one of `client`'s failed logins for an attempt about to be
    /// checked (so that checks in flight count too); `Err` (429) when none
    /// is left. A success gives it back ([`succeeded`](Auth::succeeded)).
    fn attempt(&self, client: IpAddr, now: crate::Instant) -> Result<(), Denial> {
        match &self.failures {
            Some(f) => f
                .check(&rate::RateKey::Ip(client), now)
                .map_err(|after| self.too_many(client, after)),
            None => Ok(()),
        }
    }

    /// The attempt was a good login: it does not count as a failure.
    fn succeeded(&self, client: IpAddr, now: crate::Instant) {
        if let Some(f) = &self.failures {
            f.refund(&rate::RateKey::Ip(client), now);
        }
    }

    fn too_many(&self, client: IpAddr, after: Duration) -> Denial {
        Denial {
            kind: DenyKind::Rate(after),
            rule: format!(
                "too many failed logins from {} (policy.auth.failures)",
                cidr::canonical(client)
            ),
        }
    }
}

/// What [`Policy::authenticate`] concluded.
#[derive(Debug)]
pub enum Authn {
    /// The request may go on, as this user (`None`: no authentication is
    /// configured).
    Done(Option<String>),
    /// The credential takes a bcrypt run to check: run the job away from
    /// other connections, then give its answer to [`Policy::verified`].
    Verify(auth::VerifyJob),
}

impl Policy {
    /// A policy that allows everything from anywhere to anywhere, and so
    /// has no reason to read ClientHellos either (protocol tests).
    pub fn allow_all() -> Policy {
        let config = PolicyConfig {
            clients: vec!["0.0.0.0/0".into(), "::/0".into()],
            allow_private_destinations: true,
            connect_ports: Vec::new(),
            tls: TlsPolicy {
                peek: false,
                ..TlsPolicy::default()
            },
            ..PolicyConfig::default()
        };
        let (p, _) =
            Policy::compile(&config, &Sources::new()).expect("the allow-all policy compiles");
        p
    }

    /// Compiles `config`, reading named files from `sources`. Bad entries
    /// in lists are reported and skipped; a missing file, a bad client
    /// range or a bad inline entry is an error.
    pub fn compile(
        config: &PolicyConfig,
        sources: &Sources,
    ) -> Result<(Policy, Report), PolicyError> {
        let mut report = Report::default();
        let mut clients = CidrTable::default();
        for c in &config.clients {
            let net =
                cidr::parse_net(c).map_err(|e| PolicyError(format!("policy.clients: {e}")))?;
            clients.add(CidrRule {
                net,
                action: Action::Allow,
                origin: Origin::config(),
            });
        }
        let mut domains = DomainRules::default();
        let mut addresses = CidrTable::default();
        if !config.allow_private_destinations {
            for r in cidr::PRIVATE_RANGES {
                let net = cidr::parse_net(r).expect("built-in ranges parse");
                addresses.add(CidrRule {
                    net,
                    action: Action::Deny,
                    origin: Origin::builtin(),
                });
            }
        }
        for (entries, action, what) in [
            (&config.allow, Action::Allow, "allow"),
            (&config.deny, Action::Deny, "deny"),
        ] {
            let text = entries.join("\n");
            let parsed = list::parse_list("config", &text, action);
            if let Some(e) = parsed.errors.first() {
                return Err(PolicyError(format!("policy.{what}: {}", e.message)));
            }
            let origin_fix = |o: Origin| Origin { line: 0, ..o };
            for mut d in parsed.domains {
                d.origin = origin_fix(d.origin);
                domains.add(d);
            }
            for (net, o) in parsed.nets {
                addresses.add(CidrRule {
                    net,
                    action,
                    origin: origin_fix(o),
                });
            }
        }
        for (files, action) in [
            (&config.allow_lists, Action::Allow),
            (&config.deny_lists, Action::Deny),
        ] {
            for file in files {
                let text = sources
                    .get(file)
                    .ok_or_else(|| PolicyError(format!("{file}: not loaded")))?;
                let parsed = list::parse_list(file, text, action);
                report.files.push((
                    file.clone(),
                    parsed.domains.len() + parsed.nets.len(),
                    parsed.errors.len(),
                ));
                report.errors.extend(parsed.errors);
                for d in parsed.domains {
                    domains.add(d);
                }
                for (net, origin) in parsed.nets {
                    addresses.add(CidrRule {
                        net,
                        action,
                        origin,
                    });
                }
            }
        }
        let auth = match &config.auth {
            None => None,
            Some(a) => {
                let text = sources
                    .get(&a.htpasswd)
                    .ok_or_else(|| PolicyError(format!("{}: not loaded", a.htpasswd)))?;
                let (users, errors) = Htpasswd::parse(text, a.allow_plaintext);
                let file = &a.htpasswd;
                if users.is_empty() && !errors.is_empty() {
                    return Err(PolicyError(no_users_loaded(file, &errors)));
                }
                let source: Arc<str> = Arc::from(file.as_str());
                report.errors.extend(errors.into_iter().map(|e| LineError {
                    origin: Origin {
                        source: source.clone(),
                        line: e.line as u32,
                    },
                    message: match &e.rehash {
                        Some(user) => format!("{}: `htpasswd -B {file} {user}`", e.message),
                        None => e.message,
                    },
                }));
                report.users = users.len();
                report.plaintext_users = users.plaintext_users();
                Some(Auth {
                    users,
                    realm: a.realm.clone(),
                    failures: a
                        .failures
                        .clone()
                        .map(|r| rate::RateLimiter::new(r, RATE_MAX_KEYS)),
                })
            }
        };
        let rate = config
            .rate
            .clone()
            .map(|r| rate::RateLimiter::new(r, RATE_MAX_KEYS));
        Ok((
            Policy {
                clients,
                domains,
                addresses,
                default: config.default,
                methods: config.methods.clone(),
                connect_ports: config.connect_ports.clone(),
                http_ports: config.http_ports.clone(),
                users: config.users.clone(),
                auth,
                rate,
                tls: config.tls.clone(),
            },
            report,
        ))
    }

    /// Step 1: may this client use the proxy?
    pub fn check_client(&self, ip: IpAddr) -> Result<(), Denial> {
        match self.clients.lookup(ip) {
            Some(r) if r.action == Action::Allow => Ok(()),
            Some(r) => Err(Denial {
                kind: DenyKind::Client,
                rule: r.to_string(),
            }),
            None => Err(Denial {
                kind: DenyKind::Client,
                rule: "not in policy.clients".to_owned(),
            }),
        }
    }

    /// Step 2: who the client is. `None` when no authentication is
    /// configured; a [`VerifyJob`](auth::VerifyJob) when telling takes a
    /// bcrypt run. `verified`: this very credential was verified moments
    /// ago (the request is being taken up again after its job).
    ///
    /// A client over its failed-login limit gets 429 before its credential
    /// is looked at, unless that credential is one already verified.
    pub fn authenticate(
        &self,
        proxy_authorization: Option<&[u8]>,
        client: IpAddr,
        now: crate::Instant,
        verified: bool,
    ) -> Result<Authn, Denial> {
        let Some(auth) = &self.auth else {
            return Ok(Authn::Done(None));
        };
        let value = proxy_authorization.ok_or_else(|| auth.deny("no credentials"))?;
        let Some((user, password)) = auth::parse_basic(value) else {
            auth.attempt(client, now)?;
            return Err(auth.deny("unreadable credentials"));
        };
        if verified {
            return Ok(Authn::Done(Some(user)));
        }
        match auth.users.check(&user, &password, now) {
            auth::Check::Known(true) => Ok(Authn::Done(Some(user))),
            check => {
                // Not one already verified: the failed-login limit applies
                // before any work is spent on it.
                auth.attempt(client, now)?;
                match check {
                    auth::Check::Slow(job) => Ok(Authn::Verify(job)),
                    _ => Err(auth.deny("wrong user name or password")),
                }
            }
        }
    }

    /// The answer of a [`VerifyJob`](auth::VerifyJob) from
    /// [`authenticate`](Policy::authenticate): the user, or a refusal
    /// (which counts against the client's failed logins).
    pub fn verified(
        &self,
        job: &auth::VerifyJob,
        ok: bool,
        client: IpAddr,
        now: crate::Instant,
    ) -> Result<String, Denial> {
        let Some(auth) = &self.auth else {
            return Ok(job.user().to_owned());
        };
        if auth.users.verified(job, ok, now) {
            auth.succeeded(client, now);
            return Ok(job.user().to_owned());
        }
        Err(auth.deny("wrong user name or password"))
    }

    /// Step 3: method and port, with the user's own rules if any.
    pub fn check_method_and_port(
        &self,
        method: &str,
        port: u16,
        connect: bool,
        user: Option<&str>,
    ) -> Result<(), Denial> {
        let own = user.and_then(|u| self.users.get(u));
        let methods = own
            .and_then(|o| o.methods.as_ref())
            .unwrap_or(&self.methods);
        // Refusals name the key that decided, so the operator knows what
        // to change.
        let key = |list: &str, own_list: bool| match user {
            Some(u) if own_list => format!("policy.users[{u:?}].{list}"),
            _ => format!("policy.{list}"),
        };
        if !methods.is_empty() && !methods.iter().any(|m| m == method) {
            let whose = key("methods", own.and_then(|o| o.methods.as_ref()).is_some());
            return Err(Denial {
                kind: DenyKind::Method,
                rule: format!("{method} not in {whose}"),
            });
        }
        let (own_ports, ports, list) = if connect {
            let own_ports = own.and_then(|o| o.connect_ports.as_ref());
            (
                own_ports,
                own_ports.unwrap_or(&self.connect_ports),
                "connect_ports",
            )
        } else {
            let own_ports = own.and_then(|o| o.http_ports.as_ref());
            (
                own_ports,
                own_ports.unwrap_or(&self.http_ports),
                "http_ports",
            )
        };
        // An empty connect list means any port, as for plain HTTP.
        if !ports.is_empty() && !ports.contains(&port) {
            return Err(Denial {
                kind: DenyKind::Port,
                rule: format!("port {port} not in {}", key(list, own_ports.is_some())),
            });
        }
        Ok(())
    }

    /// Step 4: the destination host. IP literals meet the address rules
    /// here, before any connection is made.
    pub fn check_host(&self, host: &Host) -> Result<(), Denial> {
        match host {
            Host::Name(name) => match self.domains.lookup(name) {
                Some(r) if r.action == Action::Allow => Ok(()),
                Some(r) => Err(Denial {
                    kind: DenyKind::Domain,
                    rule: r.to_string(),
                }),
                None if self.default == Action::Allow => Ok(()),
                None => Err(Denial {
                    kind: DenyKind::Domain,
                    rule: "no allow rule (policy.default is Deny)".to_owned(),
                }),
            },
            Host::Ip(ip) => match self.addresses.lookup(*ip) {
                Some(r) if r.action == Action::Allow => Ok(()),
                Some(r) => Err(Denial {
                    kind: DenyKind::Address,
                    rule: format!("{ip}: {r}"),
                }),
                None if self.default == Action::Allow => Ok(()),
                None => Err(Denial {
                    kind: DenyKind::Address,
                    rule: format!("{ip}: no allow rule (policy.default is Deny)"),
                }),
            },
        }
    }

    /// Step 5: the rate limit, per client address and per user.
    pub fn check_rate(
        &self,
        client: IpAddr,
        user: Option<&str>,
        now: crate::Instant,
    ) -> Result<(), Denial> {
        let Some(limiter) = &self.rate else {
            return Ok(());
        };
        let deny = |d: Duration, who: String| Denial {
            kind: DenyKind::Rate(d),
            rule: format!("policy.rate for {who}"),
        };
        limiter
            .check(&rate::RateKey::Ip(client), now)
            .map_err(|d| deny(d, cidr::canonical(client).to_string()))?;
        if let Some(u) = user {
            limiter
                .check(&rate::RateKey::User(u.to_owned()), now)
                .map_err(|d| deny(d, format!("user {u}")))?;
        }
        Ok(())
    }

    /// Step 6: every address a name resolved to (and so the one connected
    /// to). One denied address refuses the request: a name that mixes
    /// public and private addresses is how DNS rebinding looks.
    pub fn check_addresses(&self, addrs: &[IpAddr]) -> Result<(), Denial> {
        for ip in addrs {
            if let Some(r) = self.addresses.lookup(*ip) {
                if r.action == Action::Deny {
                    return Err(Denial {
                        kind: DenyKind::Address,
                        rule: format!("{ip}: {r}"),
                    });
                }
            }
        }
        Ok(())
    }

    /// The ClientHello policy.
    pub fn tls(&self) -> &TlsPolicy {
        &self.tls
    }

    /// Judges what a tunnel's first bytes turned out to be, for a CONNECT
    /// to `target`. The SNI meets the same domain rules as the CONNECT
    /// target; a CONNECT to an IP literal is judged by its SNI alone.
    pub fn check_hello(&self, target: &Host, peek: &Peek) -> Result<(), Denial> {
        let refuse = |rule: String| {
            Err(Denial {
                kind: DenyKind::Tls,
                rule,
            })
        };
        let info = match peek {
            Peek::Hello(info) => info,
            Peek::NeedMore | Peek::NotTls | Peek::Malformed(_) | Peek::TooLarge => {
                return match self.tls.not_tls {
                    TlsAction::Allow => Ok(()),
                    TlsAction::Refuse => refuse(format!(
                        "not a readable TLS ClientHello ({})",
                        describe_peek(peek)
                    )),
                };
            }
        };
        if info.ech && self.tls.ech == TlsAction::Refuse {
            return refuse("encrypted ClientHello (policy.tls.ech)".to_owned());
        }
        let Some(sni) = &info.sni else {
            return match self.tls.no_sni {
                TlsAction::Allow => Ok(()),
                TlsAction::Refuse => refuse("no SNI (policy.tls.no_sni)".to_owned()),
            };
        };
        let Some(name) = sni_host_name(sni) else {
            // Real clients send these (Go's net/http puts `host:port`
            // there): the CONNECT authority was judged already, so by
            // default that judgement stands.
            return match self.tls.malformed_sni {
                TlsAction::Allow => Ok(()),
                TlsAction::Refuse => refuse(format!(
                    "SNI {sni:?} is not a host name (policy.tls.malformed_sni)"
                )),
            };
        };
        if let Err(d) = self.check_host(&Host::Name(name.clone())) {
            return refuse(format!("SNI {name}: {}", d.rule));
        }
        if let Host::Name(connect) = target {
            if *connect != name && self.tls.mismatch == TlsAction::Refuse {
                return refuse(format!(
                    "SNI {name} does not match CONNECT {connect} (policy.tls.mismatch)"
                ));
            }
        }
        Ok(())
    }

    /// Whether authentication is configured.
    pub fn requires_auth(&self) -> bool {
        self.auth.is_some()
    }

    /// Rule counts: (domain rules, address rules).
    pub fn sizes(&self) -> (usize, usize) {
        (self.domains.len(), self.addresses.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile_users(text: &str) -> Result<Report, PolicyError> {
        let config = PolicyConfig {
            auth: Some(AuthConfig::new("users.txt".to_owned())),
            ..PolicyConfig::default()
        };
        let sources = Sources::from([("users.txt".to_owned(), text.to_owned())]);
        Policy::compile(&config, &sources).map(|(_, report)| report)
    }

    #[test]
    fn a_plain_text_users_file_stops_the_start_and_says_how_to_convert_it() {
        let e = compile_users("admin:secret123\nbob:hunter2\n").unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("users.txt: no user could be loaded (2 line(s) refused"),
            "{text}"
        );
        assert!(
            text.contains("every request would be refused with 407"),
            "{text}"
        );
        assert!(text.contains("`htpasswd -B users.txt USER`"), "{text}");
        assert!(text.contains("policy.auth.allow_plaintext: true"), "{text}");
    }

    #[test]
    fn weak_hashes_name_the_command_that_replaces_them() {
        let e = compile_users("alice:$apr1$abcdefgh$0123456789abcdef012345\n").unwrap_err();
        assert!(
            e.to_string().contains("`htpasswd -B users.txt alice`"),
            "{e}"
        );
        // Beside a good line the file loads, and the bad line says what to run.
        let good = "carol:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n";
        let report = compile_users(&format!(
            "{good}alice:$apr1$abcdefgh$0123456789abcdef012345\n"
        ))
        .unwrap();
        assert_eq!(report.users, 1);
        let line = report.errors[0].to_string();
        assert!(
            line.starts_with("users.txt:2: user \"alice\": Apache MD5"),
            "{line}"
        );
        assert!(line.ends_with(": `htpasswd -B users.txt alice`"), "{line}");
    }
}
