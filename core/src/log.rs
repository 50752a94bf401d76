//! Access-log records. The core fills them in; whoever writes the log
//! stamps the wall time and picks the format.

use crate::http::date::rfc3339;
use crate::io::ConnId;
use crate::time::UnixTime;
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::net::SocketAddr;
use std::time::Duration;

/// What kind of exchange a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExchangeKind {
    /// A forwarded HTTP request.
    Http,
    /// A CONNECT tunnel.
    Tunnel,
    /// A request upgraded to another protocol (101), then relayed.
    Upgrade,
    /// Answered by the proxy itself, nothing forwarded.
    Local,
}

/// One request or tunnel, as the access log tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRecord {
    /// The client connection.
    pub conn: ConnId,
    /// The client's address.
    pub client: SocketAddr,
    /// The request method (`-` when the request line was unreadable).
    pub method: String,
    /// The target as the client sent it (absolute URI or authority).
    pub target: String,
    /// The upstream address connected to, if any.
    pub upstream: Option<SocketAddr>,
    /// The status sent to the client; 0 if none was.
    pub status: u16,
    /// Bytes written to the client, heads included.
    pub bytes_to_client: u64,
    /// Bytes read from the client, heads included.
    pub bytes_from_client: u64,
    /// From the first byte of the request to the end of the exchange.
    #[serde(with = "crate::units::duration")]
    pub duration: Duration,
    /// What kind of exchange.
    pub kind: ExchangeKind,
    /// RFC 9209 error type when the exchange failed (`dns_error`, ...), or a
    /// short note when it was cut off (`client_aborted`, ...).
    pub error: Option<String>,
    /// The authenticated user, if any. Never the credential.
    #[serde(default)]
    pub user: Option<String>,
    /// The policy decision: `allowed`, or the kind of refusal
    /// (`denied_domain`, `auth_required`, `rate_limited`, ...).
    #[serde(default = "allowed")]
    pub decision: String,
    /// The rule that refused, as a person reads it.
    #[serde(default)]
    pub rule: Option<String>,
}

fn allowed() -> String {
    "allowed".to_owned()
}

impl AccessRecord {
    /// The human one-line form:
    /// `2026-11-21T14:10:03Z 127.0.0.1:51234 GET http://example.com/ -> 93.184.216.34:80 200 1256B 12ms`
    pub fn human(&self, at: UnixTime) -> String {
        let mut s = String::with_capacity(128);
        let _ = write!(
            s,
            "{} {} {} {} -> ",
            rfc3339(at),
            self.client,
            self.method,
            self.target
        );
        match self.upstream {
            Some(a) => {
                let _ = write!(s, "{a}");
            }
            None => s.push('-'),
        }
        let _ = write!(
            s,
            " {} {}B {}ms",
            self.status,
            self.bytes_to_client,
            self.duration.as_millis()
        );
        // A tunnel's traffic goes both ways; say how much came from the
        // client (its CONNECT or upgrade head included).
        if matches!(self.kind, ExchangeKind::Tunnel | ExchangeKind::Upgrade) {
            let _ = write!(s, " client_sent={}B", self.bytes_from_client);
        }
        if let Some(e) = &self.error {
            let _ = write!(s, " error={e}");
        }
        if let Some(u) = &self.user {
            let _ = write!(s, " user={u}");
        }
        if let Some(r) = &self.rule {
            let _ = write!(s, " rule=\"{}\"", r.replace('"', "'"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_line_matches_the_documented_shape() {
        let r = AccessRecord {
            conn: ConnId(1),
            client: "127.0.0.1:51234".parse().unwrap(),
            method: "GET".into(),
            target: "http://example.com/".into(),
            upstream: Some("93.184.216.34:80".parse().unwrap()),
            status: 200,
            bytes_to_client: 1256,
            bytes_from_client: 80,
            duration: Duration::from_micros(12_400),
            kind: ExchangeKind::Http,
            error: None,
            user: None,
            decision: "allowed".into(),
            rule: None,
        };
        assert_eq!(
            r.human(UnixTime(1_795_270_203_000_000)),
            "2026-11-21T14:10:03Z 127.0.0.1:51234 GET http://example.com/ -> 93.184.216.34:80 200 1256B 12ms"
        );
        let tunnel = AccessRecord {
            method: "CONNECT".into(),
            target: "example.com:443".into(),
            kind: ExchangeKind::Tunnel,
            ..r.clone()
        };
        assert!(tunnel
            .human(UnixTime(0))
            .ends_with(" 200 1256B 12ms client_sent=80B"));
        let denied = AccessRecord {
            status: 403,
            error: Some("http_request_denied".into()),
            user: Some("alice".into()),
            decision: "denied_domain".into(),
            rule: Some("deny example.com (blocklist.txt:3)".into()),
            ..r.clone()
        };
        assert!(denied.human(UnixTime(0)).ends_with(
            " 403 1256B 12ms error=http_request_denied user=alice rule=\"deny example.com (blocklist.txt:3)\""
        ));
        let failed = AccessRecord {
            upstream: None,
            status: 502,
            error: Some("dns_error".into()),
            ..r
        };
        assert!(failed
            .human(UnixTime(0))
            .ends_with("-> - 502 1256B 12ms error=dns_error"));
    }
}
