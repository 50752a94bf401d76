//! The command line both binaries share.
//!
//! Flags override the configuration files (`--config`), which override the
//! built-in defaults; `--print-config` shows the result.

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{ArgAction, Parser};
use proxy_core::config::{LogFormat, LogLevel};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const EXAMPLES: &str = "\
Examples:
  proxy-smol                                   listen on 127.0.0.1:8888, log to the console
  proxy-smol --host 0.0.0.0 --port 3128 --config /etc/proxy/proxy.ron
  proxy-smol --blocklist blocked.txt --auth-file users.htpasswd --log-dir logs --log-format squid
  proxy-smol --config base.ron --config site.ron --print-config

Configuration files are RON; testdata/configs/example.ron documents every
key. Signals: SIGHUP reloads the configuration and lists; SIGINT/SIGTERM
stop gracefully.";

/// An HTTP/1.1 and HTTPS (CONNECT) forward proxy.
///
/// With no arguments it listens on 127.0.0.1:8888, serves clients on
/// loopback, and logs each request to the console. Flags override the
/// configuration files, which override the built-in defaults.
#[derive(Debug, Clone, Parser)]
#[command(name = program_name(), version, after_help = EXAMPLES)]
pub struct Args {
    /// Listen on ADDR:PORT; repeatable [default: 127.0.0.1:8888]
    ///
    /// IPv4 or IPv6 (`[::1]:8888`); port 0 picks a free port. Replaces
    /// `listen` from the configuration files.
    #[arg(
        long = "listen",
        value_name = "ADDR:PORT",
        help_heading = "Listening",
        conflicts_with_all = ["host", "port"]
    )]
    pub listen: Vec<SocketAddr>,

    /// Listen on ADDR (with --port, or the configured port)
    ///
    /// An IP address (`0.0.0.0` for every IPv4 interface, `::` for every
    /// IPv6 one) or `localhost`.
    #[arg(long, value_name = "ADDR", help_heading = "Listening", value_parser = parse_host)]
    pub host: Option<IpAddr>,

    /// Listen on PORT (with --host, or the configured address)
    #[arg(long, value_name = "PORT", help_heading = "Listening")]
    pub port: Option<u16>,

    /// Serve at most N clients at once; more get 503
    ///
    /// Sets `limits.max_connections`.
    #[arg(
        long = "max-connections",
        value_name = "N",
        help_heading = "Listening",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub max_connections: Option<u64>,

    /// Read a RON configuration file; repeatable, later files win
    ///
    /// Each later file changes only the keys it sets. See
    /// testdata/configs/example.ron for every key.
    #[arg(long = "config", value_name = "FILE", help_heading = "Configuration")]
    pub config: Vec<PathBuf>,

    /// Print the effective configuration as RON and exit
    ///
    /// Defaults, files and flags merged; the output is itself a valid
    /// configuration file.
    #[arg(long = "print-config", help_heading = "Configuration", action = ArgAction::SetTrue)]
    pub print_config: bool,

    /// Check the configuration and the files it names, and exit
    ///
    /// Reads the configuration files, lists and user files and compiles
    /// the policy; prints what is wrong, with file, line and column.
    /// Exits 0 if all is well, 1 if not.
    #[arg(
        long = "check-config",
        help_heading = "Configuration",
        action = ArgAction::SetTrue,
        conflicts_with = "print_config"
    )]
    pub check_config: bool,

    /// Deny what FILE lists; repeatable
    ///
    /// One domain (`example.com`, `*.example.com`), IP address or CIDR
    /// range per line; `#` comments.
    #[arg(
        long = "blocklist",
        visible_alias = "blacklist",
        value_name = "FILE",
        help_heading = "Access control"
    )]
    pub blocklist: Vec<PathBuf>,

    /// Require Basic proxy authentication by users in FILE
    ///
    /// An htpasswd file (`htpasswd -B` bcrypt, or {SHA}).
    #[arg(
        long = "auth-file",
        value_name = "FILE",
        help_heading = "Access control"
    )]
    pub auth_file: Option<PathBuf>,

    /// Let clients reach loopback and private addresses: development only
    ///
    /// Lifts the SSRF guard (`policy.allow_private_destinations: true`),
    /// so a proxy and an origin on one machine can be tried together.
    /// Never on a proxy others use: they could reach this host's own
    /// services and the private network behind it. Start-up says so.
    #[arg(
        long = "dev-allow-private",
        help_heading = "Access control",
        action = ArgAction::SetTrue
    )]
    pub dev_allow_private: bool,

    /// Send requests through the parent proxy at HOST:PORT; repeatable
    ///
    /// In order of preference: the next is tried when one cannot be
    /// reached. `user:password@host:port` authenticates to the parent.
    /// Replaces `routing.parents`; `routing.direct` names what still
    /// goes direct.
    #[arg(
        long = "parent",
        value_name = "[USER:PASS@]HOST:PORT",
        help_heading = "Routing"
    )]
    pub parent: Vec<String>,

    /// Require a PROXY protocol header (v1 or v2) on every connection
    ///
    /// For running behind a load balancer (HAProxy `send-proxy-v2`): the
    /// client it names is the one policy, caps, rate limits and the log
    /// see. Only senders in `proxy_protocol.trusted` (loopback unless
    /// configured) may connect.
    #[arg(long = "proxy-protocol", help_heading = "Listening", action = ArgAction::SetTrue)]
    pub proxy_protocol: bool,

    /// Run as USER (and GROUP) once the listening sockets are bound
    ///
    /// For starting as root to bind a port below 1024: root is given up
    /// before anyone is served. A name or a number; the group defaults
    /// to the user's own. Same as `process.user` / `process.group`.
    #[arg(long = "user", value_name = "USER[:GROUP]", help_heading = "Listening")]
    pub user: Option<String>,

    /// Executor threads (proxy-smol): one per core by default
    ///
    /// Each has its own listening socket per address (`SO_REUSEPORT`) and
    /// serves the connections it accepts. proxy-std has no fixed number
    /// (a thread per busy connection) and says so. Same as
    /// `process.workers`.
    #[arg(long, value_name = "N", help_heading = "Listening")]
    pub workers: Option<std::num::NonZeroUsize>,

    /// Cache responses in memory (RFC 9111) [default: off]
    ///
    /// A shared cache of `cache.memory` bytes (256 MiB unless the
    /// configuration says otherwise); see the README's Cache section.
    #[arg(long = "cache", help_heading = "Caching", action = ArgAction::SetTrue)]
    pub cache: bool,

    /// Write the access log to DIR/access.log, not the console
    ///
    /// Rotated by size (`logging.max_size`, `logging.backups`); DIR is
    /// created if missing.
    #[arg(long = "log-dir", value_name = "DIR", help_heading = "Logging")]
    pub log_dir: Option<PathBuf>,

    /// Access-log format [default: human]
    ///
    /// human: one readable line per request; json: one object per line
    /// (ELK, Loki); squid: Squid's native access.log; combined:
    /// Apache/nginx combined (GoAccess).
    #[arg(
        long = "log-format",
        value_name = "FORMAT",
        help_heading = "Logging",
        value_parser = PossibleValuesParser::new(["human", "json", "squid", "combined"])
            .map(|s| parse_format(&s))
    )]
    pub log_format: Option<LogFormat>,

    /// Diagnostics shown on stderr [default: info]
    #[arg(
        long = "log-level",
        value_name = "LEVEL",
        help_heading = "Logging",
        value_parser = PossibleValuesParser::new(["error", "warn", "info", "debug"])
            .map(|s| parse_level(&s))
    )]
    pub log_level: Option<LogLevel>,

    /// No access log at all
    #[arg(long, help_heading = "Logging")]
    pub quiet: bool,

    /// Print this binary's man page (roff), then exit
    ///
    /// `proxy-smol --print-man > /usr/local/share/man/man1/proxy-smol.1`
    #[arg(long = "print-man", help_heading = "Installing", action = ArgAction::SetTrue)]
    pub print_man: bool,

    /// Print completions for SHELL (bash, zsh, fish, elvish, powershell), then exit
    ///
    /// `proxy-smol --print-completions bash > /etc/bash_completion.d/proxy-smol`
    #[arg(
        long = "print-completions",
        value_name = "SHELL",
        help_heading = "Installing",
        value_parser = clap::value_parser!(clap_complete::Shell)
    )]
    pub print_completions: Option<clap_complete::Shell>,

    /// Record each connection as a trace file in DIR
    ///
    /// For golden tests; see testdata/traces/README.md.
    #[arg(long = "record", value_name = "DIR", help_heading = "Testing")]
    pub record: Option<PathBuf>,

    /// Resolve NAME to IPs, not by DNS; repeatable
    ///
    /// Like curl's --resolve; an empty list (`NAME=`) makes NAME
    /// unresolvable.
    #[arg(
        long = "resolve",
        value_name = "NAME=IP[,IP...]",
        value_parser = parse_resolve,
        help_heading = "Testing"
    )]
    pub resolve: Vec<(String, Vec<IpAddr>)>,
}

/// Writes what `--print-man` or `--print-completions` asks for on `out`;
/// `false` when neither was asked for.
pub fn print_install_files(args: &Args, out: &mut dyn std::io::Write) -> std::io::Result<bool> {
    use clap::CommandFactory;
    let mut command = Args::command();
    if args.print_man {
        clap_mangen::Man::new(command).render(out)?;
        return Ok(true);
    }
    if let Some(shell) = args.print_completions {
        let name = command.get_name().to_owned();
        clap_complete::generate(shell, &mut command, name, out);
        return Ok(true);
    }
    Ok(false)
}

/// The name the binary was run as (`proxy-smol`), for `--version` and
/// usage lines.
fn program_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        std::env::args_os()
            .next()
            .and_then(|a| {
                Path::new(&a)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "proxy".to_owned())
    })
}

fn parse_format(s: &str) -> LogFormat {
    match s {
        "json" => LogFormat::Json,
        "squid" => LogFormat::Squid,
        "combined" => LogFormat::Combined,
        _ => LogFormat::Human,
    }
}

fn parse_level(s: &str) -> LogLevel {
    match s {
        "error" => LogLevel::Error,
        "warn" => LogLevel::Warn,
        "debug" => LogLevel::Debug,
        _ => LogLevel::Info,
    }
}

/// An IP address, or `localhost`.
fn parse_host(text: &str) -> Result<IpAddr, String> {
    let t = text.trim().trim_start_matches('[').trim_end_matches(']');
    if t.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    t.parse().map_err(|_| {
        format!(
            "expected an IP address such as 0.0.0.0, 127.0.0.1 or ::1 (or localhost), got {text:?}"
        )
    })
}

fn parse_resolve(text: &str) -> Result<(String, Vec<IpAddr>), String> {
    let (name, addrs) = text
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=IP[,IP...], got {text:?}"))?;
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() {
        return Err("empty name in --resolve".to_owned());
    }
    let addrs = addrs
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| {
            a.parse::<IpAddr>()
                .map_err(|_| format!("invalid address {a:?} in --resolve"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((name, addrs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn man_page_and_completions_come_from_the_flags() {
        let mut out = Vec::new();
        let a = Args::try_parse_from(["proxy", "--print-man"]).unwrap();
        assert!(print_install_files(&a, &mut out).unwrap());
        let man = String::from_utf8(out).unwrap();
        assert!(man.starts_with(".ie \\n(.g .ds Aq"), "{}", &man[..80]);
        assert!(
            man.contains("\\-\\-dev\\-allow\\-private"),
            "every flag is there"
        );
        for shell in ["bash", "zsh", "fish"] {
            let mut out = Vec::new();
            let a = Args::try_parse_from(["proxy", "--print-completions", shell]).unwrap();
            assert!(print_install_files(&a, &mut out).unwrap());
            let text = String::from_utf8(out).unwrap();
            assert!(
                text.contains("blocklist") && text.contains("log-format"),
                "{shell}"
            );
        }
        let a = Args::try_parse_from(["proxy"]).unwrap();
        assert!(!print_install_files(&a, &mut Vec::new()).unwrap());
    }

    #[test]
    fn no_flags_leave_the_configuration_alone() {
        let a = Args::try_parse_from(["proxy"]).unwrap();
        assert!(a.listen.is_empty());
        assert!(a.host.is_none() && a.port.is_none());
        assert!(a.record.is_none());
        assert!(a.log_format.is_none() && a.log_level.is_none() && a.log_dir.is_none());
        assert!(a.max_connections.is_none());
        assert!(!a.print_config && !a.check_config && !a.quiet && !a.cache);
    }

    #[test]
    fn listen_repeats_and_takes_ipv6() {
        let a = Args::try_parse_from(["proxy", "--listen", "127.0.0.1:1", "--listen", "[::1]:2"])
            .unwrap();
        assert_eq!(a.listen.len(), 2);
        assert!(a.listen[1].is_ipv6());
    }

    #[test]
    fn seed_style_flags() {
        let a = Args::try_parse_from([
            "proxy",
            "--host",
            "0.0.0.0",
            "--port",
            "8080",
            "--blacklist",
            "config/blocked_domains.txt",
            "--auth-file",
            "config/users.txt",
            "--cache",
            "--log-dir",
            "logs",
            "--max-connections",
            "5000",
            "--log-level",
            "debug",
            "--log-format",
            "squid",
        ])
        .unwrap();
        assert_eq!(a.host, Some("0.0.0.0".parse().unwrap()));
        assert_eq!(a.port, Some(8080));
        assert_eq!(
            a.blocklist,
            vec![PathBuf::from("config/blocked_domains.txt")]
        );
        assert_eq!(a.auth_file, Some(PathBuf::from("config/users.txt")));
        assert!(a.cache);
        assert_eq!(a.log_dir, Some(PathBuf::from("logs")));
        assert_eq!(a.max_connections, Some(5000));
        assert_eq!(a.log_level, Some(LogLevel::Debug));
        assert_eq!(a.log_format, Some(LogFormat::Squid));
        let a = Args::try_parse_from(["proxy", "--host", "localhost"]).unwrap();
        assert_eq!(a.host, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }

    #[test]
    fn bad_flags_are_refused_with_a_reason() {
        let err = |args: &[&str]| {
            let mut v = vec!["proxy"];
            v.extend_from_slice(args);
            Args::try_parse_from(v).unwrap_err().to_string()
        };
        assert!(err(&["--listen", "1.2.3.4:80", "--port", "1"]).contains("cannot be used with"));
        assert!(err(&["--port", "70000"]).contains("70000"));
        assert!(err(&["--max-connections", "0"]).contains("0"));
        assert!(
            err(&["--log-format", "xml"]).contains("possible values: human, json, squid, combined")
        );
        assert!(err(&["--log-level", "loud"]).contains("error, warn, info, debug"));
        assert!(err(&["--host", "example.com"]).contains("expected an IP address"));
        assert!(err(&["--print-config", "--check-config"]).contains("cannot be used with"));
    }

    #[test]
    fn resolve_overrides_parse() {
        let a = Args::try_parse_from([
            "proxy",
            "--resolve",
            "Origin.Test.=127.0.0.1,::1",
            "--resolve",
            "gone.test=",
        ])
        .unwrap();
        assert_eq!(a.resolve[0].0, "origin.test");
        assert_eq!(a.resolve[0].1.len(), 2);
        assert!(a.resolve[1].1.is_empty());
        assert!(Args::try_parse_from(["proxy", "--resolve", "x=notanip"]).is_err());
    }

    #[test]
    fn help_groups_the_flags() {
        Args::command().debug_assert();
        let help = Args::command().render_help().to_string();
        let headings = [
            "Listening:",
            "Configuration:",
            "Access control:",
            "Logging:",
            "Testing:",
        ];
        let mut at = 0;
        for h in headings {
            let i = help[at..]
                .find(h)
                .unwrap_or_else(|| panic!("no {h} in\n{help}"))
                + at;
            at = i;
        }
        for flag in [
            "--listen <ADDR:PORT>",
            "--host <ADDR>",
            "--port <PORT>",
            "--max-connections <N>",
            "--config <FILE>",
            "--print-config",
            "--check-config",
            "--blocklist <FILE>",
            "[alias: --blacklist]",
            "--auth-file <FILE>",
            "--log-dir <DIR>",
            "--log-format <FORMAT>",
            "--log-level <LEVEL>",
            "--quiet",
            "--version",
        ] {
            assert!(help.contains(flag), "no {flag} in\n{help}");
        }
    }
}
