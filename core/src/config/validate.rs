//! Checks on values that parse but cannot be right: a zero connection
//! cap, a bad CIDR in `policy.clients`, a request-target limit larger
//! than the head limit. Each problem names the key it is about (and any
//! other key it conflicts with), so the caller can point at the file,
//! line and column that set it.

use super::tree::KeyPath;
use super::Config;
use crate::policy::cidr::parse_net;
use crate::policy::domain::Action;
use crate::policy::list::parse_list;
use crate::policy::UserRules;
use crate::units::{format_duration, format_size};
use std::fmt;

/// A value that is well-formed but not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The key it is about.
    pub path: KeyPath,
    /// Other keys it conflicts with, if any.
    pub related: Vec<KeyPath>,
    /// What is wrong, for a person.
    pub message: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.path, self.message)
    }
}

impl std::error::Error for Invalid {}

fn root() -> KeyPath {
    KeyPath::root()
}

fn bad(path: KeyPath, message: impl Into<String>) -> Invalid {
    Invalid {
        path,
        related: Vec::new(),
        message: message.into(),
    }
}

fn conflict(path: KeyPath, related: KeyPath, message: impl Into<String>) -> Invalid {
    Invalid {
        path,
        related: vec![related],
        message: message.into(),
    }
}

/// RFC 9110 `tchar`.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

const STANDARD_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

fn check_methods(methods: &[String], path: &KeyPath) -> Result<(), Invalid> {
    for (i, m) in methods.iter().enumerate() {
        let p = path.index(i);
        if !is_token(m) {
            return Err(bad(
                p,
                format!("{m:?} is not a method name (letters, no spaces)"),
            ));
        }
        let upper = m.to_ascii_uppercase();
        if *m != upper && STANDARD_METHODS.contains(&upper.as_str()) {
            return Err(bad(
                p,
                format!("method names are case-sensitive: did you mean \"{upper}\"?"),
            ));
        }
    }
    Ok(())
}

fn check_ports(ports: &[u16], path: &KeyPath) -> Result<(), Invalid> {
    match ports.iter().position(|&p| p == 0) {
        Some(i) => Err(bad(
            path.index(i),
            "0 is not a port a client can ask for; ports are 1 to 65535",
        )),
        None => Ok(()),
    }
}

fn check_user(name: &str, rules: &UserRules, path: &KeyPath) -> Result<(), Invalid> {
    if name.is_empty() || name.contains(':') {
        return Err(bad(
            path.clone(),
            format!("{name:?} is not a user name (not empty, no `:`)"),
        ));
    }
    if let Some(m) = &rules.methods {
        check_methods(m, &path.key("methods"))?;
    }
    if let Some(p) = &rules.connect_ports {
        check_ports(p, &path.key("connect_ports"))?;
    }
    if let Some(p) = &rules.http_ports {
        check_ports(p, &path.key("http_ports"))?;
    }
    Ok(())
}

/// Checks everything; the first problem found is returned.
/// [`validate`], and what only the whole configuration can say, flags
/// applied: `--listen` replaces `listen`, so a file's
/// `proxy_protocol.listeners` is checked against the addresses really
/// listened on.
pub(super) fn validate_effective(c: &Config) -> Result<(), Invalid> {
    validate(c)?;
    let listeners = root().key("proxy_protocol").key("listeners");
    for (i, l) in c.proxy_protocol.listeners.iter().enumerate() {
        if !c.listen.contains(l) {
            let listen: Vec<String> = c.listen.iter().map(ToString::to_string).collect();
            return Err(bad(
                listeners.index(i),
                format!(
                    "{l} is not one of the addresses listened on ({}; `listen` or `--listen`)",
                    listen.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

pub(super) fn validate(c: &Config) -> Result<(), Invalid> {
    if !is_token(&c.proxy_name) {
        return Err(bad(
            root().key("proxy_name"),
            format!(
                "{:?} cannot be sent in `Via`: use one word of letters, digits and `-._~`",
                c.proxy_name
            ),
        ));
    }

    // Where to listen.
    if c.listen.is_empty() {
        return Err(bad(
            root().key("listen"),
            "at least one address to listen on is needed, like [\"127.0.0.1:8888\"]",
        ));
    }
    for (i, a) in c.listen.iter().enumerate() {
        if a.port() != 0 && c.listen[..i].contains(a) {
            return Err(bad(
                root().key("listen").index(i),
                format!("{a} is listed twice"),
            ));
        }
    }
    if let Some(admin) = c.admin.listen {
        if admin.port() != 0 && c.listen.contains(&admin) {
            return Err(conflict(
                root().key("admin").key("listen"),
                root().key("listen"),
                format!("{admin} is also a proxy address in `listen`; the admin listener needs its own port"),
            ));
        }
    }

    // Limits.
    let limits = root().key("limits");
    let l = &c.limits;
    if l.max_head_bytes < 256 {
        return Err(bad(
            limits.key("max_head_bytes"),
            format!(
                "{} is too small for any request head; use at least 256B (the default is 64KiB)",
                format_size(l.max_head_bytes as u64)
            ),
        ));
    }
    for (key, v) in [
        ("max_headers", l.max_headers),
        ("max_uri_bytes", l.max_uri_bytes),
        ("max_chunk_line_bytes", l.max_chunk_line_bytes),
    ] {
        if v == 0 {
            return Err(bad(
                limits.key(key),
                "must be more than zero (0 would refuse every request)",
            ));
        }
    }
    for (key, v) in [
        ("max_connections", l.max_connections),
        ("max_connections_per_ip", l.max_connections_per_ip),
    ] {
        if v == Some(0) {
            return Err(bad(
                limits.key(key),
                "Some(0) would refuse every client; use None for no limit",
            ));
        }
    }
    if let (Some(all), Some(per_ip)) = (l.max_connections, l.max_connections_per_ip) {
        if per_ip > all {
            return Err(conflict(
                limits.key("max_connections_per_ip"),
                limits.key("max_connections"),
                format!(
                    "{per_ip} is more than `limits.max_connections` ({all}), so it could never apply"
                ),
            ));
        }
    }

    // Timeouts.
    let t = &c.timeouts;
    for (key, d) in [
        ("head_read", t.head_read),
        ("resolve", t.resolve),
        ("connect", t.connect),
        ("response", t.response),
    ] {
        if d.is_zero() {
            return Err(bad(
                root().key("timeouts").key(key),
                format!(
                    "{} would fail every request; use a duration like \"10s\"",
                    format_duration(d)
                ),
            ));
        }
    }

    // Logging.
    let logging = root().key("logging");
    if c.logging
        .file
        .as_deref()
        .is_some_and(|f| f.trim().is_empty())
    {
        return Err(bad(
            logging.key("file"),
            "an empty file name; use None to log to the console",
        ));
    }
    if c.logging.max_size == 0 {
        return Err(bad(
            logging.key("max_size"),
            "must be more than zero, like \"10MiB\"",
        ));
    }
    if c.logging.backups > 1000 {
        return Err(bad(
            logging.key("backups"),
            format!(
                "{} rotated files is too many; at most 1000",
                c.logging.backups
            ),
        ));
    }

    validate_cache(c)?;
    validate_routing(c)?;
    let pp = root().key("proxy_protocol");
    for (i, t) in c.proxy_protocol.trusted.iter().enumerate() {
        parse_net(t).map_err(|e| bad(pp.key("trusted").index(i), e))?;
    }
    if c.process.workers == Some(0) {
        return Err(bad(
            root().key("process").key("workers"),
            "must be more than zero, or None for one per core",
        ));
    }
    let listeners = &c.proxy_protocol.listeners;
    if c.proxy_protocol.required && !listeners.is_empty() {
        return Err(bad(
            pp.key("listeners"),
            "`required: true` already covers every listener; name listeners here with `required: false`",
        ));
    }
    if c.proxy_protocol.timeout.is_zero() {
        return Err(bad(pp.key("timeout"), "more than \"0s\", like \"3s\""));
    }
    validate_policy(c)
}

fn validate_routing(c: &Config) -> Result<(), Invalid> {
    let routing = root().key("routing");
    for (i, p) in c.routing.parents.iter().enumerate() {
        crate::routing::Parent::parse(p).map_err(|e| bad(routing.key("parents").index(i), e))?;
    }
    let direct = parse_list(
        "routing.direct",
        &c.routing.direct.join("\n"),
        Action::Allow,
    );
    if let Some(e) = direct.errors.first() {
        let i = (e.origin.line as usize).saturating_sub(1);
        return Err(bad(routing.key("direct").index(i), e.message.clone()));
    }
    Ok(())
}

fn validate_cache(c: &Config) -> Result<(), Invalid> {
    let cache = root().key("cache");
    let k = &c.cache;
    // Checked whether or not the cache is on: `--cache` may turn it on.
    if k.memory < 64 << 10 {
        return Err(bad(
            cache.key("memory"),
            "at least \"64KiB\", like \"256MiB\"",
        ));
    }
    if k.max_object == 0 {
        return Err(bad(
            cache.key("max_object"),
            "must be more than zero, like \"8MiB\"",
        ));
    }
    for (i, entry) in k.purge_from.iter().enumerate() {
        parse_net(entry).map_err(|e| {
            bad(
                cache.key("purge_from").index(i),
                format!("{e}; expected an address or range like \"127.0.0.0/8\""),
            )
        })?;
    }
    Ok(())
}

fn validate_policy(c: &Config) -> Result<(), Invalid> {
    let policy = root().key("policy");
    let p = &c.policy;
    for (i, entry) in p.clients.iter().enumerate() {
        parse_net(entry).map_err(|e| {
            bad(
                policy.key("clients").index(i),
                format!("{e}; expected an address or range like \"10.0.0.0/8\" or \"::1\""),
            )
        })?;
    }
    for (key, entries, action) in [
        ("allow", &p.allow, Action::Allow),
        ("deny", &p.deny, Action::Deny),
    ] {
        for (i, entry) in entries.iter().enumerate() {
            let path = policy.key(key).index(i);
            let parsed = parse_list("config", entry, action);
            if let Some(e) = parsed.errors.first() {
                return Err(bad(path, e.message.clone()));
            }
            if parsed.domains.is_empty() && parsed.nets.is_empty() {
                return Err(bad(
                    path,
                    "an empty entry; expected a name like \"example.com\", \"*.example.com\" or a range like \"10.0.0.0/8\"",
                ));
            }
        }
    }
    for key in ["allow_lists", "deny_lists"] {
        let files = if key == "allow_lists" {
            &p.allow_lists
        } else {
            &p.deny_lists
        };
        if let Some(i) = files.iter().position(|f| f.trim().is_empty()) {
            return Err(bad(policy.key(key).index(i), "an empty file name"));
        }
    }
    check_methods(&p.methods, &policy.key("methods"))?;
    check_ports(&p.connect_ports, &policy.key("connect_ports"))?;
    check_ports(&p.http_ports, &policy.key("http_ports"))?;
    for (name, rules) in &p.users {
        check_user(name, rules, &policy.key("users").map_key(name))?;
    }
    if let Some(auth) = &p.auth {
        let path = policy.key("auth");
        if auth.htpasswd.trim().is_empty() {
            return Err(bad(
                path.key("htpasswd"),
                "an empty file name; name an htpasswd file",
            ));
        }
        if auth
            .realm
            .chars()
            .any(|ch| ch == '"' || ch == '\\' || ch.is_control())
        {
            return Err(bad(
                path.key("realm"),
                "the realm goes in a quoted header value: no `\"`, `\\` or control characters",
            ));
        }
    }
    let auth_failures = p.auth.as_ref().and_then(|a| a.failures.as_ref());
    let rates = [
        (p.rate.as_ref(), policy.key("rate")),
        (auth_failures, policy.key("auth").key("failures")),
    ];
    for (rate, path) in rates {
        let Some(rate) = rate else { continue };
        if let Err(e) = rate.validate() {
            let key = if rate.requests == 0 {
                "requests"
            } else if rate.per.is_zero() {
                "per"
            } else {
                "burst"
            };
            return Err(bad(path.key(key), e));
        }
    }
    Ok(())
}
