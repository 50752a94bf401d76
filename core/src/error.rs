//! Typed errors that carry their HTTP answer and their blame.
//!
//! [`RequestError`] is the client's fault, [`UpstreamError`] the origin's or
//! the network's, [`Denial`] policy's. Each knows the status to answer
//! with, the RFC 9209 `Proxy-Status` error type that names it, and a
//! sentence for the error page and the log.

use crate::reason::{Decision, ErrorType};
use std::fmt;
use std::time::Duration;

/// A request the proxy will not forward as sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The head is not valid HTTP/1.1 syntax.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// The request line names an HTTP version other than 1.0 or 1.1.
    #[error("unsupported HTTP version")]
    Version,
    /// The request target is longer than the limit.
    #[error("request target longer than {0} bytes")]
    UriTooLong(usize),
    /// The head is larger than the limit.
    #[error("request head larger than {0} bytes")]
    HeadTooLarge(usize),
    /// The head has more fields than the limit.
    #[error("more than {0} header fields")]
    TooManyHeaders(usize),
    /// A field line starts with whitespace (obsolete line folding).
    #[error("obsolete line folding in header field")]
    ObsFold,
    /// Whitespace between a field name and its colon.
    #[error("whitespace between header field name and colon")]
    SpaceBeforeColon,
    /// Both Content-Length and Transfer-Encoding.
    #[error("both Content-Length and Transfer-Encoding present")]
    ConflictingFraming,
    /// A Content-Length that is not a decimal number, or several that differ.
    #[error("invalid or conflicting Content-Length")]
    BadContentLength,
    /// Transfer-Encoding whose final coding is not chunked, chunked applied
    /// twice, or any Transfer-Encoding in an HTTP/1.0 request.
    #[error("unsupported Transfer-Encoding")]
    BadTransferEncoding,
    /// The chunked body is malformed.
    #[error("malformed chunked body: {0}")]
    BadChunk(&'static str),
    /// An HTTP/1.1 request without exactly one valid Host field.
    #[error("missing or duplicate Host header")]
    BadHost,
    /// The target is not a URI the proxy can forward.
    #[error("invalid request target: {0}")]
    BadTarget(&'static str),
    /// The target's scheme is not `http`.
    #[error("scheme {0:?} is not supported; use CONNECT for https")]
    UnsupportedScheme(String),
    /// A Max-Forwards value that is not a number.
    #[error("invalid Max-Forwards")]
    BadMaxForwards,
    /// The request already passed through this proxy.
    #[error("forwarding loop detected")]
    Loop,
    /// The head did not arrive in time.
    #[error("timed out reading the request head")]
    HeadTimeout,
    /// The body is larger than the limit.
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(u64),
    /// Not one of the pages the admin listener serves.
    #[error("only /_metrics and /_status are served here")]
    NotAdminPage,
    /// `Cache-Control: only-if-cached` and nothing usable is stored
    /// (RFC 9111 §5.2.1.7).
    #[error("only-if-cached and no stored response can be used")]
    NotCached,
}

impl RequestError {
    /// The status the proxy answers with.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::UriTooLong(_) => 414,
            RequestError::HeadTooLarge(_) | RequestError::TooManyHeaders(_) => 431,
            RequestError::Version => 505,
            RequestError::UnsupportedScheme(_) => 501,
            RequestError::Loop => 508,
            RequestError::HeadTimeout => 408,
            RequestError::BodyTooLarge(_) => 413,
            RequestError::NotAdminPage => 404,
            RequestError::NotCached => 504,
            _ => 400,
        }
    }

    /// The RFC 9209 error type for `Proxy-Status`.
    pub fn proxy_status(&self) -> ErrorType {
        match self {
            RequestError::Loop => ErrorType::ProxyLoopDetected,
            _ => ErrorType::HttpRequestError,
        }
    }
}

/// Why the proxy could not get a usable response from the origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The name does not exist.
    #[error("cannot resolve {0}: no such host")]
    DnsNotFound(String),
    /// The resolver failed.
    #[error("cannot resolve {0}: {1}")]
    DnsFailed(String, String),
    /// The resolver did not answer in time.
    #[error("timed out resolving {0}")]
    DnsTimeout(String),
    /// Every address refused the connection.
    #[error("connection to {0} refused")]
    Refused(String),
    /// No address was reachable.
    #[error("{0} is unreachable")]
    Unreachable(String),
    /// Connecting took too long.
    #[error("timed out connecting to {0}")]
    ConnectTimeout(String),
    /// The connection closed or reset before a complete response head.
    #[error("{0} closed the connection without a response")]
    Closed(String),
    /// No response head in time.
    #[error("timed out waiting for a response from {0}")]
    ResponseTimeout(String),
    /// The response head is not valid HTTP.
    #[error("invalid response from {0}: {1}")]
    BadResponse(String, &'static str),
    /// The response's framing is ambiguous or invalid.
    #[error("response from {0} has ambiguous framing: {1}")]
    BadFraming(String, &'static str),
    /// The response head is larger than the limit.
    #[error("response head from {0} larger than {1} bytes")]
    HeadTooLarge(String, usize),
    /// No parent proxy could be reached.
    #[error("no parent proxy could be reached (tried {0})")]
    ParentsDown(String),
    /// A parent proxy answered a CONNECT with something other than 2xx.
    #[error("parent proxy {0} answered {1} to CONNECT")]
    ParentRefused(String, String),
}

impl UpstreamError {
    /// The status the proxy answers with.
    pub fn status(&self) -> u16 {
        match self {
            UpstreamError::DnsTimeout(_)
            | UpstreamError::ConnectTimeout(_)
            | UpstreamError::ResponseTimeout(_) => 504,
            _ => 502,
        }
    }

    /// The RFC 9209 error type for `Proxy-Status`.
    pub fn proxy_status(&self) -> ErrorType {
        match self {
            UpstreamError::DnsNotFound(_) | UpstreamError::DnsFailed(..) => ErrorType::DnsError,
            UpstreamError::DnsTimeout(_) => ErrorType::DnsTimeout,
            UpstreamError::Refused(_) => ErrorType::ConnectionRefused,
            UpstreamError::Unreachable(_) => ErrorType::DestinationUnavailable,
            UpstreamError::ConnectTimeout(_) => ErrorType::ConnectionTimeout,
            UpstreamError::Closed(_) => ErrorType::ConnectionTerminated,
            UpstreamError::ResponseTimeout(_) => ErrorType::HttpResponseTimeout,
            UpstreamError::BadResponse(..) | UpstreamError::BadFraming(..) => {
                ErrorType::HttpProtocolError
            }
            UpstreamError::HeadTooLarge(..) => ErrorType::HttpResponseHeaderSectionSize,
            UpstreamError::ParentsDown(_) | UpstreamError::ParentRefused(..) => {
                ErrorType::DestinationUnavailable
            }
        }
    }
}

/// Any error the proxy answers for itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The client's fault.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The origin's or the network's.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// Policy refused it.
    #[error(transparent)]
    Denied(#[from] Denial),
}

impl ProxyError {
    /// The status the proxy answers with.
    pub fn status(&self) -> u16 {
        match self {
            ProxyError::Request(e) => e.status(),
            ProxyError::Upstream(e) => e.status(),
            ProxyError::Denied(d) => d.status(),
        }
    }

    /// The RFC 9209 error type for `Proxy-Status`.
    pub fn proxy_status(&self) -> ErrorType {
        match self {
            ProxyError::Request(e) => e.proxy_status(),
            ProxyError::Upstream(e) => e.proxy_status(),
            ProxyError::Denied(d) => d.proxy_status(),
        }
    }

    /// Header fields the answer needs beyond the usual ones:
    /// `Proxy-Authenticate` on 407, `Retry-After` on 429.
    pub fn extra_fields(&self) -> Vec<(&'static str, String)> {
        match self {
            ProxyError::Denied(d) => match &d.kind {
                DenyKind::Auth { realm } => {
                    let realm = realm.replace(['"', '\\'], "");
                    vec![(
                        "Proxy-Authenticate",
                        format!("Basic realm=\"{realm}\", charset=\"UTF-8\""),
                    )]
                }
                DenyKind::Rate(after) => {
                    vec![("Retry-After", retry_secs(*after).to_string())]
                }
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }
}

/// Why a request was refused, and by which rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Which check refused.
    pub kind: DenyKind,
    /// The rule, spelled for a person (`deny example.com (blocklist.txt:3)`).
    pub rule: String,
}

/// The checks that can refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyKind {
    /// The client address is not allowed.
    Client,
    /// No credentials, or wrong ones; carries the realm.
    Auth {
        /// For `Proxy-Authenticate`.
        realm: String,
    },
    /// The method is not allowed.
    Method,
    /// The port is not allowed.
    Port,
    /// The destination name is denied.
    Domain,
    /// A destination address is denied.
    Address,
    /// Over the rate limit; retry after this long.
    Rate(Duration),
    /// Over a connection cap.
    Connections,
    /// The tunnel's TLS ClientHello was refused (after the 200).
    Tls,
}

impl Denial {
    /// The status to answer with.
    pub fn status(&self) -> u16 {
        match self.kind {
            DenyKind::Auth { .. } => 407,
            DenyKind::Rate(_) => 429,
            DenyKind::Connections => 503,
            _ => 403,
        }
    }

    /// The RFC 9209 error type.
    pub fn proxy_status(&self) -> ErrorType {
        match self.kind {
            DenyKind::Address => ErrorType::DestinationIpProhibited,
            DenyKind::Connections => ErrorType::ConnectionLimitReached,
            _ => ErrorType::HttpRequestDenied,
        }
    }

    /// The decision the access record gives: which check refused.
    pub fn decision(&self) -> Decision {
        match self.kind {
            DenyKind::Client => Decision::DeniedClient,
            DenyKind::Auth { .. } => Decision::AuthRequired,
            DenyKind::Method => Decision::DeniedMethod,
            DenyKind::Port => Decision::DeniedPort,
            DenyKind::Domain => Decision::DeniedDomain,
            DenyKind::Address => Decision::DeniedAddress,
            DenyKind::Rate(_) => Decision::RateLimited,
            DenyKind::Connections => Decision::ConnectionLimit,
            DenyKind::Tls => Decision::DeniedTls,
        }
    }
}

impl std::error::Error for Denial {}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            DenyKind::Client => write!(
                f,
                "clients from this address may not use this proxy ({})",
                self.rule
            ),
            DenyKind::Auth { .. } => write!(f, "proxy authentication required ({})", self.rule),
            DenyKind::Method => write!(f, "method not allowed ({})", self.rule),
            DenyKind::Port => write!(f, "port not allowed ({})", self.rule),
            DenyKind::Domain => write!(f, "destination denied by policy ({})", self.rule),
            DenyKind::Address => write!(f, "destination address denied by policy ({})", self.rule),
            DenyKind::Rate(d) => write!(
                f,
                "too many requests; retry after {}s ({})",
                retry_secs(*d),
                self.rule
            ),
            DenyKind::Connections => write!(f, "too many connections ({})", self.rule),
            DenyKind::Tls => write!(f, "TLS connection refused by policy ({})", self.rule),
        }
    }
}

/// Whole seconds for `Retry-After`, rounded up and at least 1.
pub fn retry_secs(d: Duration) -> u64 {
    (d.as_micros().div_ceil(1_000_000) as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_rfcs() {
        assert_eq!(RequestError::UriTooLong(8).status(), 414);
        assert_eq!(RequestError::TooManyHeaders(8).status(), 431);
        assert_eq!(RequestError::HeadTimeout.status(), 408);
        assert_eq!(RequestError::ConflictingFraming.status(), 400);
        assert_eq!(UpstreamError::ConnectTimeout("h".into()).status(), 504);
        assert_eq!(
            UpstreamError::Refused("h".into()).proxy_status(),
            ErrorType::ConnectionRefused
        );
        assert_eq!(
            ProxyError::from(RequestError::Loop).proxy_status(),
            ErrorType::ProxyLoopDetected
        );
    }
}
