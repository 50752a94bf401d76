//! The core's configuration: limits and timeouts that shape every
//! connection. Runtimes read files and flags; the core only sees values.

use crate::policy::PolicyConfig;
use crate::units;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

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
        }
    }
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
            tunnel_idle: Duration::from_secs(300),
            upstream_idle: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

impl Config {
    /// Parses a configuration from RON text. Keys left out keep their
    /// defaults; unknown keys are errors.
    pub fn from_ron(text: &str) -> Result<Config, ConfigError> {
        ron::from_str(text).map_err(|e| ConfigError {
            line: e.position.line,
            column: e.position.col,
            message: e.code.to_string(),
        })
    }

    /// Serialises to pretty RON, itself a valid configuration.
    pub fn to_ron(&self) -> String {
        ron::ser::to_string_pretty(self, ron::ser::PrettyConfig::default())
            .expect("configuration always serialises")
    }
}

/// A configuration that did not parse, with where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct ConfigError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What was wrong.
    pub message: String,
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

    #[test]
    fn unknown_key_is_an_error_with_position() {
        let e = Config::from_ron("(\n  timeouts: (conect: \"3s\"),\n)").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("conect"), "{e}");
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
