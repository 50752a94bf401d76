//! The command line both binaries share.

use clap::Parser;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// An HTTP/1.1 and HTTPS (CONNECT) forward proxy.
///
/// With no arguments it listens on 127.0.0.1:8888, allows everything, and
/// logs each request to the console.
#[derive(Debug, Clone, Parser)]
#[command(version, about, long_about = None)]
pub struct Args {
    /// Address to listen on, IPv4 or IPv6 (`[::1]:8888`); repeat for
    /// several.
    #[arg(
        long = "listen",
        value_name = "ADDR:PORT",
        default_value = "127.0.0.1:8888"
    )]
    pub listen: Vec<SocketAddr>,

    /// Configuration file (RON); repeat to layer several, later files
    /// overriding earlier ones.
    #[arg(long = "config", value_name = "FILE")]
    pub config: Vec<PathBuf>,

    /// Record every connection's events as a trace file in DIR (for golden
    /// tests; see testdata/traces/README.md).
    #[arg(long = "record", value_name = "DIR")]
    pub record: Option<PathBuf>,

    /// Resolve NAME to the given addresses instead of asking the system
    /// resolver (like curl's --resolve); an empty list makes NAME
    /// unresolvable. Repeatable.
    #[arg(long = "resolve", value_name = "NAME=IP[,IP...]", value_parser = parse_resolve)]
    pub resolve: Vec<(String, Vec<IpAddr>)>,

    /// A blocklist file (one domain, wildcard, IP or CIDR per line, `#`
    /// comments) to deny; repeatable.
    #[arg(long = "blocklist", visible_alias = "blacklist", value_name = "FILE")]
    pub blocklist: Vec<PathBuf>,

    /// An htpasswd file of proxy users (bcrypt or {SHA}); turns on Basic
    /// proxy authentication.
    #[arg(long = "auth-file", value_name = "FILE")]
    pub auth_file: Option<PathBuf>,

    /// Do not print access-log lines.
    #[arg(long)]
    pub quiet: bool,
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

    #[test]
    fn defaults_listen_on_loopback_8888() {
        let a = Args::try_parse_from(["proxy"]).unwrap();
        assert_eq!(
            a.listen,
            vec!["127.0.0.1:8888".parse::<SocketAddr>().unwrap()]
        );
        assert!(a.record.is_none());
    }

    #[test]
    fn listen_repeats_and_takes_ipv6() {
        let a = Args::try_parse_from(["proxy", "--listen", "127.0.0.1:1", "--listen", "[::1]:2"])
            .unwrap();
        assert_eq!(a.listen.len(), 2);
        assert!(a.listen[1].is_ipv6());
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
}
