//! Request targets (RFC 9112 §3.2): absolute-form for forwarding,
//! authority-form for CONNECT, and the host names and ports inside them.

use crate::error::RequestError;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A destination host, normalised: names are lower case without a trailing
/// dot; IP literals are parsed, so that one address has one spelling.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Host {
    /// A DNS name.
    Name(String),
    /// An IPv4 or IPv6 literal.
    Ip(IpAddr),
}

impl Host {
    /// Parses the host part of an authority (`[v6]` brackets included).
    pub fn parse(text: &str) -> Result<Host, RequestError> {
        if let Some(inner) = text.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or(RequestError::BadTarget("unterminated IPv6 literal"))?;
            return inner
                .parse::<Ipv6Addr>()
                .map(|a| Host::Ip(IpAddr::V6(a)))
                .map_err(|_| RequestError::BadTarget("invalid IPv6 literal"));
        }
        let name = text.strip_suffix('.').unwrap_or(text);
        if name.is_empty() || name.len() > 253 {
            return Err(RequestError::BadTarget("invalid host name"));
        }
        if let Ok(v4) = name.parse::<Ipv4Addr>() {
            return Ok(Host::Ip(IpAddr::V4(v4)));
        }
        let mut labels = 0;
        for label in name.split('.') {
            labels += 1;
            let ok = !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(RequestError::BadTarget("invalid host name"));
            }
        }
        // A numeric final label is never a real TLD; such names are other
        // spellings of IPv4 addresses (`2130706433`, `0x7f.1`, `0177.0.0.1`)
        // that resolvers and browsers disagree on. Refuse them rather than
        // guess which address they mean.
        let last = name.rsplit('.').next().unwrap_or(name);
        let numeric = last.bytes().all(|b| b.is_ascii_digit())
            || (last.len() > 2
                && last[..2].eq_ignore_ascii_case("0x")
                && last[2..].bytes().all(|b| b.is_ascii_hexdigit()));
        if numeric {
            return Err(RequestError::BadTarget("ambiguous numeric host"));
        }
        debug_assert!(labels > 0);
        Ok(Host::Name(name.to_ascii_lowercase()))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V4(a)) => write!(f, "{a}"),
            Host::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
        }
    }
}

/// A host and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Authority {
    /// The host.
    pub host: Host,
    /// The port (explicit, or the scheme's default).
    pub port: u16,
}

impl Authority {
    /// Parses `host[:port]`; `default_port` applies when no port is given,
    /// and `None` means a port is required (CONNECT).
    pub fn parse(text: &str, default_port: Option<u16>) -> Result<Authority, RequestError> {
        if text.contains('@') {
            return Err(RequestError::BadTarget("userinfo in authority"));
        }
        let (host, port) = match text.rfind(':') {
            // A colon inside brackets belongs to an IPv6 literal.
            Some(i) if !text[i..].contains(']') => (&text[..i], Some(&text[i + 1..])),
            _ => (text, None),
        };
        let port = match (port, default_port) {
            (Some(p), _) => {
                if p.is_empty() && default_port.is_some() {
                    default_port.unwrap_or(0)
                } else if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(RequestError::BadTarget("invalid port"));
                } else {
                    p.parse::<u16>()
                        .map_err(|_| RequestError::BadTarget("invalid port"))?
                }
            }
            (None, Some(d)) => d,
            (None, None) => return Err(RequestError::BadTarget("CONNECT target needs a port")),
        };
        if port == 0 {
            return Err(RequestError::BadTarget("invalid port"));
        }
        Ok(Authority {
            host: Host::parse(host)?,
            port,
        })
    }

    /// The authority as it goes in a `Host` field: the port is left out
    /// when it is `default_port`. A name on the default port, the usual
    /// case, is borrowed as it is.
    pub fn host_field(&self, default_port: u16) -> Cow<'_, str> {
        match &self.host {
            Host::Name(name) if self.port == default_port => Cow::Borrowed(name),
            host if self.port == default_port => Cow::Owned(host.to_string()),
            _ => Cow::Owned(self.to_string()),
        }
    }
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// `target.split_once("://")`: the scheme and the rest of an absolute
/// URI. Written out because `split_once` sets up a substring searcher for
/// a `&str` pattern, which costs more than the few bytes of scheme it then
/// looks through.
pub(crate) fn split_scheme(target: &str) -> Option<(&str, &str)> {
    let at = target.as_bytes().windows(3).position(|w| w == b"://")?;
    Some((&target[..at], &target[at + 3..]))
}

/// An `http` URI in absolute form, split for forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbsoluteUri<'a> {
    /// Where to forward.
    pub authority: Authority,
    /// Path and query in origin form, never empty (`/` at least):
    /// borrowed from the target unless a `/` had to be added.
    pub path_and_query: Cow<'a, str>,
}

impl AbsoluteUri<'_> {
    /// Parses an absolute-form request target. Only `http` is forwarded;
    /// any other scheme is [`RequestError::UnsupportedScheme`].
    pub fn parse(target: &str) -> Result<AbsoluteUri<'_>, RequestError> {
        let Some((scheme, rest)) = split_scheme(target) else {
            return Err(RequestError::BadTarget(
                "not an absolute URI; is this client configured to use a proxy?",
            ));
        };
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            return Err(RequestError::BadTarget("invalid scheme"));
        }
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(RequestError::UnsupportedScheme(scheme.to_ascii_lowercase()));
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = Authority::parse(&rest[..end], Some(80))?;
        // A fragment is the client's business; it never goes on the wire.
        let tail = &rest[end..];
        let tail = tail.split('#').next().unwrap_or("");
        let path_and_query = if tail.starts_with('/') {
            Cow::Borrowed(tail)
        } else {
            Cow::Owned(format!("/{tail}"))
        };
        Ok(AbsoluteUri {
            authority,
            path_and_query,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_uri_splits_into_authority_and_origin_form() {
        let u = AbsoluteUri::parse("http://Example.COM./a/b?x=1#frag").unwrap();
        assert_eq!(u.authority.host, Host::Name("example.com".into()));
        assert_eq!(u.authority.port, 80);
        assert_eq!(u.path_and_query, "/a/b?x=1");
        let u = AbsoluteUri::parse("HTTP://127.0.0.1:8080").unwrap();
        assert_eq!(u.authority.to_string(), "127.0.0.1:8080");
        assert_eq!(u.path_and_query, "/");
        let u = AbsoluteUri::parse("http://h?q").unwrap();
        assert_eq!(u.path_and_query, "/?q");
    }

    #[test]
    fn schemes_split_where_split_once_would() {
        for t in [
            "http://a/",
            "a:b://c",
            "://x",
            "http:/x",
            "x",
            "h://",
            "a://b://c",
        ] {
            assert_eq!(split_scheme(t), t.split_once("://"), "{t}");
        }
    }

    #[test]
    fn ipv6_literals_keep_their_brackets() {
        let a = Authority::parse("[::1]:8443", None).unwrap();
        assert_eq!(a.host, Host::Ip("::1".parse().unwrap()));
        assert_eq!(a.to_string(), "[::1]:8443");
        assert_eq!(a.host_field(443), "[::1]:8443");
        assert!(Authority::parse("[::1", None).is_err());
        assert!(Authority::parse("[fe80::1%eth0]:80", None).is_err());
    }

    #[test]
    fn bad_targets_are_refused() {
        assert!(matches!(
            AbsoluteUri::parse("/just/a/path"),
            Err(RequestError::BadTarget(_))
        ));
        assert!(
            matches!(AbsoluteUri::parse("https://x/"), Err(RequestError::UnsupportedScheme(s)) if s == "https")
        );
        assert!(AbsoluteUri::parse("http://user:pw@host/").is_err());
        assert!(AbsoluteUri::parse("http://host:0/").is_err());
        assert!(AbsoluteUri::parse("http://host:65536/").is_err());
        assert!(AbsoluteUri::parse("http://host:8x/").is_err());
        assert!(AbsoluteUri::parse("http:///path").is_err());
        assert!(AbsoluteUri::parse("http://bad host/").is_err());
        assert!(Authority::parse("example.com", None).is_err());
    }

    #[test]
    fn numeric_ipv4_spellings_are_refused() {
        for t in ["2130706433", "0177.0.0.1", "0x7f.1", "127.1", "1.2.3.04"] {
            assert!(Host::parse(t).is_err(), "{t}");
        }
        assert_eq!(
            Host::parse("127.0.0.1").unwrap(),
            Host::Ip("127.0.0.1".parse().unwrap())
        );
        assert!(Host::parse("1password.com").is_ok());
    }
}
