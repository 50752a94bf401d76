//! The core's configuration: limits and timeouts that shape every
//! connection. Runtimes read files and flags; the core only sees values.

mod explain;
pub mod foreign;
mod tree;
mod validate;

use crate::policy::PolicyConfig;
use crate::units;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;
use tree::In;

pub use tree::{KeyPath, PathSeg};
pub use validate::Invalid;

/// Everything a [`Connection`](crate::Connection) needs to know about policy
/// and limits. Cheap to share behind an `Arc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The pseudonym this proxy uses in `Via` and `Proxy-Status`, and to
    /// detect forwarding loops (a request whose `Via` already names it).
    pub proxy_name: String,
    /// Size limits on what clients and origins send.
    pub limits: Limits,
    /// How long each wait may last.
    pub timeouts: Timeouts,
    /// Who may go where, how often.
    pub policy: PolicyConfig,
    /// Where to listen; `--listen` flags replace this list.
    pub listen: Vec<SocketAddr>,
    /// Access and diagnostic logging.
    pub logging: Logging,
    /// The proxy's own pages: metrics and status.
    pub admin: Admin,
    /// The shared HTTP cache (RFC 9111); off unless enabled.
    pub cache: crate::cache::CacheConfig,
    /// Parent proxies, and what goes direct.
    pub routing: crate::routing::RoutingConfig,
    /// The PROXY protocol header from load balancers.
    pub proxy_protocol: crate::proxy_protocol::ProxyProtocolConfig,
    /// Whom the process runs as once its sockets are bound.
    pub process: Process,
    /// What origins are told about the client (`X-Forwarded-For`,
    /// `Forwarded`).
    pub forwarded_headers: ForwardedHeaders,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            proxy_name: "proxy-rs".to_owned(),
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            policy: PolicyConfig::default(),
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 8888))],
            logging: Logging::default(),
            admin: Admin::default(),
            cache: crate::cache::CacheConfig::default(),
            routing: crate::routing::RoutingConfig::default(),
            proxy_protocol: crate::proxy_protocol::ProxyProtocolConfig::default(),
            process: Process::default(),
            forwarded_headers: ForwardedHeaders::default(),
        }
    }
}

/// What a forwarded request tells the origin about the client it came
/// from. A forward proxy's clients are usually people whose addresses
/// are their own business, so by default nothing is added and what a
/// client sent passes as it was sent. Tunnels carry no fields to change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForwardedHeaders {
    /// `X-Forwarded-For` (Squid's `forwarded_for`).
    pub x_forwarded_for: ClientAddressField,
    /// `Forwarded` (RFC 7239): the element added is
    /// `for=192.0.2.1;proto=http` (`for="[2001:db8::1]"` for IPv6).
    pub forwarded: ClientAddressField,
}

/// What happens to one field that names clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientAddressField {
    /// Forwarded as the client sent it, or not at all (Squid's
    /// `transparent`).
    #[default]
    Pass,
    /// The client's address is added after what the client sent (Squid's
    /// `on`): the chain of hops, the last one ours.
    Append,
    /// Only the client's address, whatever the client sent (Squid's
    /// `truncate`): for origins that trust the field.
    Replace,
    /// Removed (Squid's `delete`).
    Remove,
}

/// Least privilege: a proxy started as root (to bind port 80 or 3128, say)
/// gives root up for this user and group once its listening sockets are
/// bound, before it serves anyone, as Squid's `cache_effective_user` and
/// tinyproxy's `User`/`Group` do. Read at start-up only: a reload cannot
/// take privileges back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Process {
    /// The user to run as (a name or a numeric uid); `None`: stay as
    /// started.
    pub user: Option<String>,
    /// The group; `None`: the user's own group.
    pub group: Option<String>,
    /// Executor threads (proxy-smol), each accepting on its own socket
    /// per address; `None`: one per core. Also `--workers N`.
    pub workers: Option<usize>,
}

/// Access-log and diagnostic-log settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Logging {
    /// How access records are written.
    pub format: LogFormat,
    /// Access-log file; `None` writes to the console (stdout).
    pub file: Option<String>,
    /// Rotate the file when it would grow past this.
    #[serde(with = "units::size")]
    pub max_size: usize,
    /// Rotated files kept (`access.log.1` ... `access.log.N`).
    pub backups: u32,
    /// Least severe diagnostic messages shown (on stderr).
    pub level: LogLevel,
}

impl Default for Logging {
    fn default() -> Self {
        Logging {
            format: LogFormat::Human,
            file: None,
            max_size: 10 << 20,
            backups: 5,
            level: LogLevel::Info,
        }
    }
}

/// Access-log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogFormat {
    /// One readable line per request (the console default).
    Human,
    /// One JSON object per line, stable field names (ELK, Loki).
    Json,
    /// Squid's native access.log format.
    Squid,
    /// Apache/nginx combined format (GoAccess).
    Combined,
}

/// Diagnostic message severities, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LogLevel {
    /// Something failed.
    Error,
    /// Something is wrong but the proxy carries on.
    Warn,
    /// What the proxy is doing (start-up, reloads, shutdown).
    Info,
    /// Detail for finding bugs.
    Debug,
}

/// The proxy's own pages, answered for origin-form requests (`GET
/// /_metrics`) on the proxy port, and on `listen` if set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Admin {
    /// Answer `/_metrics` (Prometheus text) and `/_status` (HTML).
    pub enabled: bool,
    /// A separate listener for them only, if set.
    pub listen: Option<SocketAddr>,
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            enabled: true,
            listen: None,
        }
    }
}

/// Size limits. Requests over a limit get 414 or 431; responses over one
/// get 502.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request or response head, start line and fields together.
    #[serde(with = "units::size")]
    pub max_head_bytes: usize,
    /// Most header fields in one head.
    pub max_headers: usize,
    /// Longest request target.
    #[serde(with = "units::size")]
    pub max_uri_bytes: usize,
    /// Longest chunk-size line (size plus extensions) in a chunked body.
    #[serde(with = "units::size")]
    pub max_chunk_line_bytes: usize,
    /// Largest trailer section of a chunked body.
    #[serde(with = "units::size")]
    pub max_trailer_bytes: usize,
    /// Largest request body (413 beyond); `None` means no limit.
    #[serde(with = "units::opt_size")]
    pub max_body_bytes: Option<u64>,
    /// Most client connections at once (503 beyond); `None`: no limit.
    pub max_connections: Option<usize>,
    /// Most client connections at once from one address; `None`: no limit.
    pub max_connections_per_ip: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 64 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            max_chunk_line_bytes: 4 * 1024,
            max_trailer_bytes: 16 * 1024,
            max_body_bytes: None,
            max_connections: None,
            max_connections_per_ip: None,
        }
    }
}

/// Timeouts. Each guards one wait; see [`Timer`](crate::time::Timer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    /// From the first byte of a request head to its end (slowloris): 408.
    #[serde(with = "units::duration")]
    pub head_read: Duration,
    /// An idle keep-alive client connection is closed after this.
    #[serde(with = "units::duration")]
    pub client_idle: Duration,
    /// Name resolution: 504.
    #[serde(with = "units::duration")]
    pub resolve: Duration,
    /// Establishing an upstream connection: 504.
    #[serde(with = "units::duration")]
    pub connect: Duration,
    /// From the end of the request to the upstream's response head: 504.
    #[serde(with = "units::duration")]
    pub response: Duration,
    /// A body transfer with no progress either way is aborted after this.
    #[serde(with = "units::duration")]
    pub transfer_idle: Duration,
    /// A client that stops sending its request body for this long gets
    /// 408 (at most `transfer_idle`): a stalled upload holds an upstream
    /// connection too.
    #[serde(with = "units::duration")]
    pub body_read: Duration,
    /// A tunnel with no bytes either way is closed after this.
    #[serde(with = "units::duration")]
    pub tunnel_idle: Duration,
    /// Idle pooled upstream connections are closed after this.
    #[serde(with = "units::duration")]
    pub upstream_idle: Duration,
    /// On SIGINT/SIGTERM, in-flight requests and tunnels get this long to
    /// finish before the rest are closed.
    #[serde(with = "units::duration")]
    pub shutdown_grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            head_read: Duration::from_secs(15),
            client_idle: Duration::from_secs(60),
            resolve: Duration::from_secs(10),
            connect: Duration::from_secs(10),
            response: Duration::from_secs(60),
            transfer_idle: Duration::from_secs(60),
            body_read: Duration::from_secs(20),
            tunnel_idle: Duration::from_secs(300),
            upstream_idle: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

impl Config {
    /// Parses and validates a configuration from RON text. Keys left out
    /// keep their defaults; unknown keys are errors, with the closest
    /// valid key suggested.
    pub fn from_ron(text: &str) -> Result<Config, ConfigError> {
        load(&[(None, text)])
    }

    /// Layers configuration files over the defaults, in order: each
    /// `(name, text)` needs only the keys it changes (structs and maps are
    /// merged key by key, `Some(..)` into `Some(..)`; lists and other
    /// values are replaced). Errors name the file, line and column that
    /// set the value, even when it was only wrong after merging.
    pub fn from_layers(layers: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let layers: Vec<(Option<&str>, &str)> =
            layers.iter().map(|(n, t)| (Some(*n), *t)).collect();
        load(&layers)
    }

    /// Every problem in the layers, in the order found, each with the
    /// file, line and column of the value it is about; empty when they
    /// load. For `--check-config`: after each problem the entry it is
    /// about (`key: value`, a list element) is blanked out of its text,
    /// spaces for characters, so the next problem's line and column are
    /// still the file's own, and the layers are loaded again. A syntax
    /// error ends the list: nothing after it in that file means anything.
    pub fn check_layers(layers: &[(&str, &str)]) -> Vec<ConfigError> {
        /// Enough for any file a person wrote; a bound on the loop.
        const MAX: usize = 50;
        let mut texts: Vec<String> = layers.iter().map(|l| l.1.to_owned()).collect();
        let mut errors: Vec<ConfigError> = Vec::new();
        while errors.len() < MAX {
            let current: Vec<(&str, &str)> = layers
                .iter()
                .zip(&texts)
                .map(|(l, t)| (l.0, t.as_str()))
                .collect();
            let Err(e) = Config::from_layers(&current) else {
                break;
            };
            let layer = layers
                .iter()
                .rposition(|l| e.file.as_deref() == Some(l.0) && e.line > 0);
            let blank = layer.and_then(|i| {
                let text = &texts[i];
                let doc = tree::parse(text, i).ok()?;
                let at = tree::char_offset(text, e.line, e.column);
                tree::entry_at(&doc.root, text, at).map(|span| (i, span))
            });
            if errors.contains(&e) {
                break;
            }
            errors.push(e);
            let Some((i, span)) = blank else {
                break;
            };
            let blanked: String = texts[i][span.clone()]
                .chars()
                .map(|c| if c == '\n' { c } else { ' ' })
                .collect();
            // Same length in bytes is not needed, same lines and columns
            // are: one space per character.
            texts[i].replace_range(span, &blanked);
        }
        errors
    }

    /// Checks values that parse but cannot be right (a zero connection
    /// cap, a bad CIDR, limits that contradict each other), in the
    /// configuration in force: the layers merged and the flags applied.
    /// (Loading layers checks each value, except against what a flag may
    /// still replace.)
    pub fn validate(&self) -> Result<(), Invalid> {
        validate::validate_effective(self)
    }

    /// Serialises to pretty RON, itself a valid configuration.
    pub fn to_ron(&self) -> String {
        ron::ser::to_string_pretty(self, ron::ser::PrettyConfig::default())
            .expect("configuration always serialises")
    }
}

/// The defaults as RON text and tree: hints (`the default is "10s"`).
fn defaults_tree() -> (String, tree::Node) {
    let text = Config::default().to_ron();
    let root = tree::parse(&text, 0)
        .expect("the defaults' RON parses")
        .root;
    (text, root)
}

/// Every key a configuration can have, for "did you mean" across
/// sections: the defaults with every optional section filled in.
fn all_key_paths() -> Vec<KeyPath> {
    use crate::policy::rate::RateConfig;
    use crate::policy::{AuthConfig, UserRules};
    let mut c = Config::default();
    c.policy.auth = Some(AuthConfig {
        htpasswd: "users".into(),
        realm: "proxy".into(),
        allow_plaintext: false,
        failures: Some(RateConfig {
            requests: 1,
            per: Duration::from_secs(1),
            burst: Some(1),
        }),
    });
    c.policy.rate = Some(RateConfig {
        requests: 1,
        per: Duration::from_secs(1),
        burst: Some(1),
    });
    c.policy.users.insert(
        "<user>".into(),
        UserRules {
            methods: Some(Vec::new()),
            connect_ports: Some(Vec::new()),
            http_ports: Some(Vec::new()),
        },
    );
    let text = c.to_ron();
    let root = tree::parse(&text, 0).expect("RON we wrote parses").root;
    let mut out = Vec::new();
    tree::key_paths(&root, &KeyPath::root(), &mut out);
    out
}

fn load(layers: &[(Option<&str>, &str)]) -> Result<Config, ConfigError> {
    let texts: Vec<&str> = layers.iter().map(|l| l.1).collect();
    let error_at = |file: usize, at: usize, message: String| {
        let (line, column) = tree::line_col(texts[file], at);
        ConfigError {
            file: layers[file].0.map(str::to_owned),
            line,
            column,
            message,
        }
    };
    let explained = |e: &ron::error::SpannedError,
                     parsed: &str,
                     root: Option<&tree::Node>,
                     which: In,
                     fallback: usize| {
        let ex = explain::explain(
            e,
            parsed,
            root,
            which,
            &texts,
            fallback,
            &defaults_tree(),
            &all_key_paths(),
        );
        match ex.at {
            Some(at) => error_at(ex.file, at, ex.message),
            None => ConfigError {
                file: Some(
                    layers
                        .iter()
                        .filter_map(|l| l.0)
                        .collect::<Vec<_>>()
                        .join(" + "),
                )
                .filter(|n| !n.is_empty()),
                line: 0,
                column: 0,
                message: ex.message,
            },
        }
    };

    let mut docs = Vec::with_capacity(layers.len());
    for (i, text) in texts.iter().enumerate() {
        let doc = tree::parse(text, i);
        if let Err(e) = ron::from_str::<Config>(text) {
            // Another proxy's YAML, INI or TOML file: say so, with the
            // RON for what it says, rather than a RON syntax error.
            if let Some(foreign) = foreign::recognise(text) {
                return Err(ConfigError {
                    file: layers[i].0.map(str::to_owned),
                    line: 0,
                    column: 0,
                    message: foreign.explain(),
                });
            }
            // A required key (`policy.auth.htpasswd`) may come from
            // another layer: that is checked after merging.
            let missing = matches!(e.code, ron::Error::MissingStructField { .. });
            if !missing || layers.len() == 1 {
                return Err(explained(
                    &e,
                    text,
                    doc.as_ref().ok().map(|d| &d.root),
                    In::Source,
                    i,
                ));
            }
        }
        match doc {
            Ok(d) => docs.push(d),
            Err((at, msg)) => {
                return Err(error_at(i, at, format!("cannot layer this file: {msg}")))
            }
        }
    }
    let mut attributes: Vec<String> = Vec::new();
    for a in docs.iter().flat_map(|d| &d.attributes) {
        if !attributes.contains(a) {
            attributes.push(a.clone());
        }
    }
    let separate = docs.clone();
    let Some(mut root) = docs
        .into_iter()
        .map(|d| d.root)
        .reduce(|a, b| tree::merge(a, b, &texts))
    else {
        return Ok(Config::default());
    };
    let merged = tree::emit(&attributes, &mut root, &texts);
    let config: Config = ron::from_str(&merged)
        .map_err(|e| explained(&e, &merged, Some(&root), In::Merged, layers.len() - 1))?;
    validate::validate(&config)
        .map_err(|invalid| locate_invalid(&invalid, &separate, &texts, layers))?;
    Ok(config)
}

/// Points a validation error at the file, line and column that set the
/// value: the last layer that sets the key (or a key it conflicts with).
fn locate_invalid(
    invalid: &Invalid,
    docs: &[tree::Doc],
    texts: &[&str],
    layers: &[(Option<&str>, &str)],
) -> ConfigError {
    let set_at = |path: &KeyPath| {
        docs.iter()
            .enumerate()
            .rev()
            .find_map(|(i, d)| match tree::locate(&d.root, texts, path) {
                Some((true, hit)) => Some((i, hit)),
                _ => None,
            })
    };
    let place = |(i, hit): &(usize, tree::Hit)| {
        let (line, column) = tree::line_col(texts[*i], hit.at);
        (layers[*i].0.map(str::to_owned), line, column)
    };
    let primary = set_at(&invalid.path);
    let related: Vec<(KeyPath, Option<(usize, tree::Hit)>)> = invalid
        .related
        .iter()
        .map(|p| (p.clone(), set_at(p)))
        .collect();
    // Blame the latest layer involved; the primary key on a tie.
    let mut chosen = primary.clone();
    for (_, r) in &related {
        if let Some(r) = r {
            if chosen.as_ref().map_or(true, |c| r.0 > c.0) {
                chosen = Some(r.clone());
            }
        }
    }
    let mut message = invalid.to_string();
    let involved = std::iter::once((invalid.path.clone(), primary)).chain(related);
    for (i, (path, r)) in involved.enumerate() {
        match r {
            Some(r)
                if chosen
                    .as_ref()
                    .is_some_and(|c| c.0 != r.0 || c.1.at != r.1.at) =>
            {
                let (file, line, column) = place(&r);
                let file = file.map_or(String::new(), |f| format!("{f}:"));
                message.push_str(&format!(" (`{path}` is set at {file}{line}:{column})"));
            }
            Some(_) => {}
            None if i > 0 => message.push_str(&format!(" (`{path}` is the default)")),
            None => {}
        }
    }
    match chosen {
        Some(c) => {
            let (file, line, column) = place(&c);
            ConfigError {
                file,
                line,
                column,
                message,
            }
        }
        None => {
            let names: Vec<&str> = layers.iter().filter_map(|l| l.0).collect();
            ConfigError {
                file: (!names.is_empty()).then(|| names.join(" + ")),
                line: 0,
                column: 0,
                message,
            }
        }
    }
}

/// A configuration that did not parse or validate, with where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file, when it has a name.
    pub file: Option<String>,
    /// 1-based line; 0 when the error is not about one place.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What was wrong, and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}:")?;
            if self.line == 0 {
                f.write_str(" ")?;
            }
        }
        if self.line > 0 {
            write!(f, "{}:{}: ", self.line, self.column)?;
        }
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_ron() {
        let c = Config::default();
        assert_eq!(Config::from_ron(&c.to_ron()).unwrap(), c);
    }

    #[test]
    fn partial_config_keeps_other_defaults() {
        let c =
            Config::from_ron("(timeouts: (connect: \"3s\"), limits: (max_head_bytes: \"16KiB\"))")
                .unwrap();
        assert_eq!(c.timeouts.connect, Duration::from_secs(3));
        assert_eq!(c.limits.max_head_bytes, 16384);
        assert_eq!(c.timeouts.response, Timeouts::default().response);
    }

    /// `(line, column, message)` of the error `text` gives.
    fn err(text: &str) -> (usize, usize, String) {
        let e = Config::from_ron(text).unwrap_err();
        assert_eq!(e.file, None);
        assert_eq!(
            e.to_string(),
            format!("{}:{}: {}", e.line, e.column, e.message)
        );
        (e.line, e.column, e.message)
    }

    #[track_caller]
    fn assert_err(text: &str, line: usize, column: usize, says: &[&str]) {
        let (l, c, m) = err(text);
        assert_eq!((l, c), (line, column), "position of {m:?} in\n{text}");
        for s in says {
            assert!(m.contains(s), "{m:?} does not say {s:?}");
        }
    }

    #[test]
    fn proxy_protocol_listeners_are_listeners_and_not_beside_required() {
        let c = Config::from_ron(
            "(listen: [\"127.0.0.1:3128\", \"127.0.0.1:3129\"], proxy_protocol: (listeners: [\"127.0.0.1:3129\"]))",
        )
        .unwrap();
        assert!(c.proxy_protocol.requires("127.0.0.1:3129".parse().unwrap()));
        assert!(!c.proxy_protocol.requires("127.0.0.1:3128".parse().unwrap()));
        // Checked once the flags are applied: `--listen` replaces `listen`.
        let mut other = Config::from_ron(
            "(listen: [\"127.0.0.1:3128\"], proxy_protocol: (listeners: [\"127.0.0.1:3128\", \"127.0.0.1:4000\"]))",
        )
        .unwrap();
        let e = other.validate().unwrap_err().to_string();
        assert!(e.contains("proxy_protocol.listeners[1]"), "{e}");
        assert!(
            e.contains("127.0.0.1:4000 is not one of the addresses listened on (127.0.0.1:3128;"),
            "{e}"
        );
        other.listen.push("127.0.0.1:4000".parse().unwrap());
        assert_eq!(other.validate(), Ok(()));
        assert_err(
            "(listen: [\"127.0.0.1:3128\"],\n proxy_protocol: (required: true, listeners: [\"127.0.0.1:3128\"]))",
            2,
            46,
            &["already covers every listener"],
        );
    }

    /// `--check-config` sees every problem in a file, each where it is:
    /// an unknown key, a value of the wrong type, values that parse but
    /// are not acceptable (in a list, in another section), across two
    /// layers; a syntax error ends the list.
    #[test]
    fn check_layers_reports_every_problem_where_it_is() {
        let base = "(\n  listen: [\"127.0.0.1:3128\", \"127.0.0.1:3128\"],\n  timeouts: (conect: \"3s\", head_read: true),\n)\n";
        let over = "(\n  limits: (max_headers: 0),\n  proxy_name: \"two words\",\n  admin: (enabled: true),\n)\n";
        let errors = Config::check_layers(&[("base.ron", base), ("over.ron", over)]);
        let found: Vec<(String, usize, usize)> = errors
            .iter()
            .map(|e| (e.file.clone().unwrap(), e.line, e.column))
            .collect();
        let mut want = vec![
            ("base.ron".to_owned(), 3, 14),
            ("base.ron".to_owned(), 3, 39),
            ("base.ron".to_owned(), 2, 30),
            ("over.ron".to_owned(), 2, 25),
            ("over.ron".to_owned(), 3, 15),
        ];
        // The order is the loader's; the set is what matters.
        let mut got = found.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{errors:#?}");
        assert!(errors[0].message.contains("conect"), "{}", errors[0]);
        assert!(errors.iter().any(|e| e.message.contains("listed twice")));
        assert!(errors.iter().any(|e| e.message.contains("max_headers")));
        // Each is also what loading alone would say first, once the
        // problems before it are fixed: the first is exactly that.
        assert_eq!(
            errors[0],
            Config::from_layers(&[("base.ron", base), ("over.ron", over)]).unwrap_err()
        );

        assert!(Config::check_layers(&[("ok.ron", "(proxy_name: \"edge\")")]).is_empty());
        let broken = "(\n  proxy_name: \"a\",\n  limits: (max_headers: 0\n  listen: [],\n";
        let errors = Config::check_layers(&[("broken.ron", broken)]);
        assert_eq!(errors.len(), 1, "a syntax error ends the list: {errors:#?}");
    }

    #[test]
    fn unknown_key_is_an_error_with_position() {
        let e = Config::from_ron("(\n  timeouts: (conect: \"3s\"),\n)").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("conect"), "{e}");
    }

    #[test]
    fn unknown_keys_point_at_the_key_and_suggest_one() {
        assert_err(
            "(\n  timeouts: (conect: \"3s\"),\n)",
            2,
            14,
            &[
                "unknown key `conect` in `timeouts`",
                "did you mean `connect`?",
            ],
        );
        assert_err(
            "(\n  loging: (format: Json),\n)",
            2,
            3,
            &[
                "unknown key `loging` at the top level",
                "did you mean `logging`?",
            ],
        );
        // The right key in the wrong section.
        assert_err(
            "(\n  max_connections: Some(3),\n)",
            2,
            3,
            &["belongs at `limits.max_connections`"],
        );
        // A key from other proxies' configurations.
        assert_err(
            "(blacklist: [\"x\"])",
            1,
            2,
            &["`blacklist`", "the setting is `policy.deny_lists`"],
        );
        // Nothing close: the valid keys are listed.
        assert_err(
            "(admin: (zzz: 1))",
            1,
            10,
            &[
                "unknown key `zzz` in `admin`",
                "valid keys: enabled, listen",
            ],
        );
    }

    #[test]
    fn unknown_values_suggest_the_closest() {
        assert_err(
            "(logging: (format: Jsn))",
            1,
            20,
            &[
                "`logging.format`: unknown value `Jsn`",
                "did you mean `Json`?",
                "Human, Json, Squid, Combined",
            ],
        );
        assert_err(
            "(logging: (level: debug))",
            1,
            19,
            &["did you mean `Debug`?"],
        );
    }

    #[test]
    fn bad_values_say_what_was_expected() {
        // Ports.
        assert_err(
            "(policy: (connect_ports: [443, 70000]))",
            1,
            32,
            &["`policy.connect_ports[1]`: 70000 is not a port; ports are 1 to 65535"],
        );
        assert_err(
            "(policy: (http_ports: [0]))",
            1,
            24,
            &["`policy.http_ports[0]`", "ports are 1 to 65535"],
        );
        // Durations and sizes.
        assert_err(
            "(\n  timeouts: (connect: \"soon\"),\n)",
            2,
            23,
            &[
                "`timeouts.connect`",
                "invalid duration \"soon\"",
                "like \"30s\"",
            ],
        );
        assert_err(
            "(timeouts: (connect: \"3 fortnights\"))",
            1,
            22,
            &[
                "invalid duration unit \"fortnights\"",
                "use ms, s, m, h or d",
            ],
        );
        assert_err(
            "(limits: (max_head_bytes: \"64 parsecs\"))",
            1,
            27,
            &[
                "`limits.max_head_bytes`",
                "invalid size unit \"parsecs\"",
                "KiB",
            ],
        );
        // Addresses and ranges.
        assert_err(
            "(listen: [\"127.0.0.1:8888\", \"1.2.3.4\"])",
            1,
            29,
            &[
                "`listen[1]`",
                "expected an address and port like \"127.0.0.1:8888\"",
                "found \"1.2.3.4\"",
            ],
        );
        assert_err(
            "(cache: (memory: \"1KiB\"))",
            1,
            18,
            &["`cache.memory`", "at least \"64KiB\""],
        );
        assert_err(
            "(cache: (purge_from: [\"localhost\"]))",
            1,
            23,
            &["`cache.purge_from[0]`", "like \"127.0.0.0/8\""],
        );
        assert_err(
            "(policy: (clients: [\"10.0.0.0/8\", \"10.0.0.0/33\"]))",
            1,
            35,
            &[
                "`policy.clients[1]`",
                "\"10.0.0.0/33\" is not an IP address or CIDR range",
            ],
        );
        assert_err(
            "(policy: (deny: [\"ok.example\", \"*.*.bad\"]))",
            1,
            32,
            &["`policy.deny[1]`"],
        );
        // Wrong types, with the default as a hint.
        assert_err(
            "(limits: (max_headers: \"many\"))",
            1,
            24,
            &[
                "`limits.max_headers`: expected a whole number, found \"many\"",
                "the default is 100",
            ],
        );
        assert_err(
            "(listen: \"127.0.0.1:80\")",
            1,
            10,
            &[
                "`listen`: expected a list `[...]`",
                "the default is [\"127.0.0.1:8888\"]",
            ],
        );
        assert_err(
            "(limits: (max_connections: 5))",
            1,
            28,
            &["expected `Some(5)` or `None`"],
        );
        assert_err(
            "(admin: (enabled: yes))",
            1,
            19,
            &["expected `true` or `false`"],
        );
        // Values that parse but cannot be right.
        assert_err(
            "(limits: (max_connections: Some(0)))",
            1,
            33,
            &["`limits.max_connections`", "use None for no limit"],
        );
        assert_err(
            "(policy: (methods: [\"GET\", \"post\"]))",
            1,
            28,
            &["case-sensitive: did you mean \"POST\"?"],
        );
        assert_err(
            "(policy: (rate: Some((requests: 0, per: \"1s\"))))",
            1,
            33,
            &["`policy.rate.requests`", "at least 1"],
        );
        assert_err(
            "(policy: (users: {\"bob\": (connect_ports: Some([0]))}))",
            1,
            48,
            &["`policy.users[\"bob\"].connect_ports[0]`"],
        );
        assert_err("(listen: [])", 1, 10, &["at least one address"]);
        assert_err(
            "(timeouts: (head_read: \"0s\"))",
            1,
            24,
            &["would fail every request"],
        );
        assert_err(
            "(logging: (max_size: 0))",
            1,
            22,
            &["`logging.max_size`: must be more than zero"],
        );
    }

    #[test]
    fn structure_errors() {
        assert_err(
            "(\n  timeouts: (connect: \"3s\", connect: \"4s\"),\n)",
            2,
            29,
            &["`connect` is set twice in `timeouts`"],
        );
        assert_err(
            "(\n  policy: (auth: Some((realm: \"corp\"))),\n)",
            2,
            23,
            &["`policy.auth` needs `htpasswd`"],
        );
        // Syntax: ron's own position, in words.
        assert_err(
            "(\n  timeouts: (connect: \"3s\"\n  response: \"4s\"),\n)",
            3,
            3,
            &["expected `,`"],
        );
        assert_err(
            "(\n  timeouts: (connect: \"3s\"),\n",
            3,
            1,
            &["unexpected end of file"],
        );
        assert_err("() ()", 1, 4, &["unexpected text after the configuration"]);
    }

    #[test]
    fn layers_merge_key_by_key() {
        let a = "(proxy_name: \"a\", timeouts: (connect: \"3s\", response: \"7s\"), \
                 policy: (users: {\"x\": (methods: Some([\"GET\"]))}, connect_ports: [443, 8443]))";
        let b = "(timeouts: (connect: \"4s\"), policy: (users: {\"y\": (methods: None)}, connect_ports: [22]))";
        let c = Config::from_layers(&[("a.ron", a), ("b.ron", b)]).unwrap();
        assert_eq!(c.proxy_name, "a");
        assert_eq!(c.timeouts.connect, Duration::from_secs(4));
        assert_eq!(c.timeouts.response, Duration::from_secs(7));
        assert_eq!(c.timeouts.head_read, Timeouts::default().head_read);
        // Maps merge; lists are replaced.
        assert_eq!(c.policy.users.keys().collect::<Vec<_>>(), vec!["x", "y"]);
        assert_eq!(c.policy.connect_ports, vec![22]);
        // No layers: the defaults.
        assert_eq!(Config::from_layers(&[]).unwrap(), Config::default());
    }

    #[test]
    fn a_required_key_may_come_from_an_earlier_layer() {
        let a = "(policy: (auth: Some((htpasswd: \"/etc/users\"))))";
        let b = "(policy: (auth: Some((realm: \"corp\"))))";
        let c = Config::from_layers(&[("a.ron", a), ("b.ron", b)]).unwrap();
        let auth = c.policy.auth.unwrap();
        assert_eq!(
            (auth.htpasswd.as_str(), auth.realm.as_str()),
            ("/etc/users", "corp")
        );
        // ... but not when no layer has it: the last one to set the
        // section is named.
        let e = Config::from_layers(&[("a.ron", "(proxy_name: \"a\")"), ("b.ron", b)]).unwrap_err();
        assert_eq!(e.file.as_deref(), Some("b.ron"));
        assert_eq!((e.line, e.column), (1, 22));
        assert!(e.message.contains("`policy.auth` needs `htpasswd`"), "{e}");
    }

    #[test]
    fn errors_in_a_layer_name_the_file() {
        let e = Config::from_layers(&[
            ("a.ron", "(proxy_name: \"a\")"),
            ("b.ron", "(\n  limits: (max_conections: Some(3)),\n)"),
        ])
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "b.ron:2:12: unknown key `max_conections` in `limits`; did you mean `max_connections`?"
        );
    }

    #[test]
    fn merged_errors_name_the_file_that_set_the_value() {
        // Each file is fine alone; together the per-address cap is over
        // the global one. The later file is blamed, the earlier named.
        let a = "(\n  limits: (max_connections: Some(4)),\n)";
        let b = "(\n  limits: (max_connections_per_ip: Some(8)),\n)";
        let e = Config::from_layers(&[("a.ron", a), ("b.ron", b)]).unwrap_err();
        assert_eq!(
            (e.file.as_deref(), e.line, e.column),
            (Some("b.ron"), 2, 41)
        );
        assert!(
            e.message.contains(
                "`limits.max_connections_per_ip`: 8 is more than `limits.max_connections` (4)"
            ),
            "{e}"
        );
        assert!(
            e.message
                .contains("(`limits.max_connections` is set at a.ron:2:34)"),
            "{e}"
        );
        // The other way round, the later file (setting the global cap) is
        // blamed.
        let e = Config::from_layers(&[("b.ron", b), ("a.ron", a)]).unwrap_err();
        assert_eq!((e.file.as_deref(), e.line), (Some("a.ron"), 2));
        assert!(e.message.contains("is set at b.ron:2:41"), "{e}");
        // A value set by a layer and then left alone by later ones is
        // blamed on the layer that set it.
        let e = Config::from_layers(&[
            ("a.ron", "(\n\n  policy: (clients: [\"10.0.0.0/40\"]),\n)"),
            ("b.ron", "(proxy_name: \"b\")"),
        ])
        .unwrap_err();
        assert_eq!(
            (e.file.as_deref(), e.line, e.column),
            (Some("a.ron"), 3, 22)
        );
    }

    #[test]
    fn a_full_config_round_trips_through_ron() {
        let text = r#"(
            proxy_name: "edge-1",
            listen: ["0.0.0.0:3128", "[::1]:3129"],
            limits: (max_body_bytes: Some("100MiB"), max_connections: Some(100), max_connections_per_ip: Some(10)),
            timeouts: (connect: "1500ms", shutdown_grace: "2m"),
            policy: (
                clients: ["10.0.0.0/8"],
                deny: ["*.ads.example", "203.0.113.0/24"],
                allow: ["ok.ads.example"],
                deny_lists: ["/etc/proxy/block.txt"],
                default: Deny,
                methods: ["GET", "CONNECT"],
                connect_ports: [443, 8443],
                users: {"admin": (connect_ports: Some([22]))},
                auth: Some((htpasswd: "/etc/proxy/users", realm: "corp", allow_plaintext: true)),
                rate: Some((requests: 10, per: "1s", burst: Some(20))),
            ),
            logging: (format: Squid, file: Some("/var/log/proxy/access.log"), max_size: "1MiB", backups: 3, level: Debug),
            admin: (enabled: false, listen: Some("127.0.0.1:9090")),
        )"#;
        let c = Config::from_ron(text).unwrap();
        assert_ne!(c, Config::default());
        assert_eq!(Config::from_ron(&c.to_ron()).unwrap(), c);
    }

    /// testdata/configs/example.ron sets every key to its default, with
    /// comments: it must parse to exactly the defaults, and mention every
    /// key a configuration can have.
    #[test]
    fn the_annotated_example_is_the_defaults_and_names_every_key() {
        let text = include_str!("../../testdata/configs/example.ron");
        let c = Config::from_ron(text).unwrap_or_else(|e| panic!("example.ron:{e}"));
        assert_eq!(c, Config::default());
        let root = tree::parse(text, 0).unwrap().root;
        let texts = [text];
        for path in all_key_paths() {
            let set = matches!(tree::locate(&root, &texts, &path), Some((true, _)));
            let key = path.last_key().unwrap();
            let in_a_comment = text
                .lines()
                .filter(|l| l.trim_start().starts_with("//"))
                .any(|l| l.contains(&format!("{key}:")));
            assert!(
                set || in_a_comment,
                "example.ron does not document `{path}`"
            );
        }
    }

    #[test]
    fn the_readme_examples_parse() {
        let readme = include_str!("../../README.md");
        let blocks: Vec<&str> = readme
            .split("```ron\n")
            .skip(1)
            .map(|b| b.split("```").next().unwrap())
            .collect();
        assert!(blocks.len() >= 2, "README has RON examples");
        for block in blocks {
            Config::from_ron(block)
                .unwrap_or_else(|e| panic!("README example does not parse: {e}\n{block}"));
        }
    }
}
