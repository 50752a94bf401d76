//! The reasons an access record gives: the policy [`Decision`] and, when
//! an exchange did not end normally, its [`ErrorType`]. Both are enums
//! from the place that decides to the log line, the JSON field, the
//! `Proxy-Status` header and the metric label, so nothing downstream
//! matches on text, and each spells itself one way ([`Decision::as_str`],
//! [`ErrorType::as_str`]).

use serde::{Deserialize, Serialize};
use std::fmt;

/// What policy decided about a request or tunnel: allowed, or which
/// check refused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Every check passed.
    #[default]
    Allowed,
    /// The client address may not use the proxy.
    DeniedClient,
    /// No credentials, or wrong ones (407).
    AuthRequired,
    /// The method is not allowed.
    DeniedMethod,
    /// The port is not allowed.
    DeniedPort,
    /// The destination name is denied.
    DeniedDomain,
    /// A destination address is denied (the SSRF guard, CIDR rules).
    DeniedAddress,
    /// Over a rate limit (429).
    RateLimited,
    /// Over a connection cap (503).
    ConnectionLimit,
    /// The tunnel's TLS ClientHello was refused.
    DeniedTls,
}

impl Decision {
    /// Every decision, in the order of [`Decision::index`].
    pub const ALL: [Decision; 10] = [
        Decision::Allowed,
        Decision::DeniedClient,
        Decision::AuthRequired,
        Decision::DeniedMethod,
        Decision::DeniedPort,
        Decision::DeniedDomain,
        Decision::DeniedAddress,
        Decision::RateLimited,
        Decision::ConnectionLimit,
        Decision::DeniedTls,
    ];

    /// How logs, JSON and metric labels spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::DeniedClient => "denied_client",
            Decision::AuthRequired => "auth_required",
            Decision::DeniedMethod => "denied_method",
            Decision::DeniedPort => "denied_port",
            Decision::DeniedDomain => "denied_domain",
            Decision::DeniedAddress => "denied_address",
            Decision::RateLimited => "rate_limited",
            Decision::ConnectionLimit => "connection_limit",
            Decision::DeniedTls => "denied_tls",
        }
    }

    /// Its place in [`Decision::ALL`], for tables of counters.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the request was allowed.
    pub fn is_allowed(self) -> bool {
        self == Decision::Allowed
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an exchange did not end normally. The first group are RFC 9209
/// error types, which also go into the `Proxy-Status` of the answers the
/// proxy makes; the rest say how an exchange already under way was cut
/// off, where no answer could be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    /// The name did not resolve.
    DnsError,
    /// The resolver did not answer in time.
    DnsTimeout,
    /// Policy refused the destination address.
    DestinationIpProhibited,
    /// No address of the destination was reachable.
    DestinationUnavailable,
    /// The destination refused the connection.
    ConnectionRefused,
    /// The upstream connection closed before a complete response head.
    ConnectionTerminated,
    /// Connecting took too long.
    ConnectionTimeout,
    /// Over a connection cap.
    ConnectionLimitReached,
    /// The request could not be forwarded as sent.
    HttpRequestError,
    /// Policy refused the request.
    HttpRequestDenied,
    /// The response ended before its framing said it would.
    HttpResponseIncomplete,
    /// The response head was larger than the limit.
    HttpResponseHeaderSectionSize,
    /// No response head in time.
    HttpResponseTimeout,
    /// The response was not valid HTTP or its framing was ambiguous.
    HttpProtocolError,
    /// The request had already passed through this proxy.
    ProxyLoopDetected,
    /// The client closed its connection before the exchange ended.
    ClientClosed,
    /// The client connection failed (reset, or a write to it failed).
    ClientError,
    /// The client closed in the middle of a request head.
    IncompleteRequest,
    /// The upstream ended a close-delimited response while the request
    /// body was still coming, which then had nowhere to go.
    UpstreamClosed,
    /// Nothing moved for the transfer idle timeout in mid-exchange.
    TransferTimeout,
    /// A tunnel carried nothing either way for its idle timeout.
    TunnelIdleTimeout,
    /// A tunnel's socket failed.
    TunnelError,
    /// The proxy's shutdown grace period ended first.
    Shutdown,
}

impl ErrorType {
    /// Every error type, in declaration order.
    pub const ALL: [ErrorType; 23] = [
        ErrorType::DnsError,
        ErrorType::DnsTimeout,
        ErrorType::DestinationIpProhibited,
        ErrorType::DestinationUnavailable,
        ErrorType::ConnectionRefused,
        ErrorType::ConnectionTerminated,
        ErrorType::ConnectionTimeout,
        ErrorType::ConnectionLimitReached,
        ErrorType::HttpRequestError,
        ErrorType::HttpRequestDenied,
        ErrorType::HttpResponseIncomplete,
        ErrorType::HttpResponseHeaderSectionSize,
        ErrorType::HttpResponseTimeout,
        ErrorType::HttpProtocolError,
        ErrorType::ProxyLoopDetected,
        ErrorType::ClientClosed,
        ErrorType::ClientError,
        ErrorType::IncompleteRequest,
        ErrorType::UpstreamClosed,
        ErrorType::TransferTimeout,
        ErrorType::TunnelIdleTimeout,
        ErrorType::TunnelError,
        ErrorType::Shutdown,
    ];

    /// How `Proxy-Status`, logs, JSON and metric labels spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::DnsError => "dns_error",
            ErrorType::DnsTimeout => "dns_timeout",
            ErrorType::DestinationIpProhibited => "destination_ip_prohibited",
            ErrorType::DestinationUnavailable => "destination_unavailable",
            ErrorType::ConnectionRefused => "connection_refused",
            ErrorType::ConnectionTerminated => "connection_terminated",
            ErrorType::ConnectionTimeout => "connection_timeout",
            ErrorType::ConnectionLimitReached => "connection_limit_reached",
            ErrorType::HttpRequestError => "http_request_error",
            ErrorType::HttpRequestDenied => "http_request_denied",
            ErrorType::HttpResponseIncomplete => "http_response_incomplete",
            ErrorType::HttpResponseHeaderSectionSize => "http_response_header_section_size",
            ErrorType::HttpResponseTimeout => "http_response_timeout",
            ErrorType::HttpProtocolError => "http_protocol_error",
            ErrorType::ProxyLoopDetected => "proxy_loop_detected",
            ErrorType::ClientClosed => "client_closed",
            ErrorType::ClientError => "client_error",
            ErrorType::IncompleteRequest => "incomplete_request",
            ErrorType::UpstreamClosed => "upstream_closed",
            ErrorType::TransferTimeout => "transfer_timeout",
            ErrorType::TunnelIdleTimeout => "tunnel_idle_timeout",
            ErrorType::TunnelError => "tunnel_error",
            ErrorType::Shutdown => "shutdown",
        }
    }

    /// Its place in [`ErrorType::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// A failure to reach the upstream at all (counted apart in the
    /// metrics).
    pub fn is_connect_failure(self) -> bool {
        matches!(
            self,
            ErrorType::DnsError
                | ErrorType::DnsTimeout
                | ErrorType::ConnectionRefused
                | ErrorType::ConnectionTimeout
                | ErrorType::DestinationUnavailable
        )
    }

    /// The client went away before the exchange ended (Squid's
    /// `_ABORTED`).
    pub fn is_client_abort(self) -> bool {
        matches!(self, ErrorType::ClientClosed | ErrorType::ClientError)
    }
}

impl fmt::Display for ErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the cache did for a request (`cache` in the access record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheResult {
    /// Answered from a fresh stored response.
    Hit,
    /// Answered from a stale stored response the request or the response
    /// allowed (`max-stale`, `stale-if-error`, `stale-while-revalidate`).
    StaleHit,
    /// The client's conditional request answered 304 from a stored
    /// response.
    NotModifiedHit,
    /// A stored response was revalidated and the origin said it is
    /// unchanged (304): answered from it.
    RefreshUnmodified,
    /// A stored response was revalidated and the origin sent a new one.
    RefreshModified,
    /// Nothing usable stored: forwarded (and stored if it may be).
    Miss,
    /// The client asked not to be answered from storage (`no-cache`).
    ClientRefresh,
    /// Not a request the cache answers (a method other than GET/HEAD, a
    /// range, an upgrade): forwarded untouched.
    Bypass,
}

impl CacheResult {
    /// Every result, in declaration order.
    pub const ALL: [CacheResult; 8] = [
        CacheResult::Hit,
        CacheResult::StaleHit,
        CacheResult::NotModifiedHit,
        CacheResult::RefreshUnmodified,
        CacheResult::RefreshModified,
        CacheResult::Miss,
        CacheResult::ClientRefresh,
        CacheResult::Bypass,
    ];

    /// How logs, JSON and metric labels spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::StaleHit => "stale_hit",
            CacheResult::NotModifiedHit => "not_modified_hit",
            CacheResult::RefreshUnmodified => "refresh_unmodified",
            CacheResult::RefreshModified => "refresh_modified",
            CacheResult::Miss => "miss",
            CacheResult::ClientRefresh => "client_refresh",
            CacheResult::Bypass => "bypass",
        }
    }

    /// Squid's result code for it (`%Ss`): a memory cache's hits are
    /// `TCP_MEM_HIT`.
    pub fn squid(self) -> &'static str {
        match self {
            CacheResult::Hit => "TCP_MEM_HIT",
            CacheResult::StaleHit => "TCP_STALE_HIT",
            CacheResult::NotModifiedHit => "TCP_INM_HIT",
            CacheResult::RefreshUnmodified => "TCP_REFRESH_UNMODIFIED",
            CacheResult::RefreshModified => "TCP_REFRESH_MODIFIED",
            CacheResult::Miss | CacheResult::Bypass => "TCP_MISS",
            CacheResult::ClientRefresh => "TCP_CLIENT_REFRESH_MISS",
        }
    }

    /// Its place in [`CacheResult::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The response came from storage.
    pub fn is_hit(self) -> bool {
        matches!(
            self,
            CacheResult::Hit
                | CacheResult::StaleHit
                | CacheResult::NotModifiedHit
                | CacheResult::RefreshUnmodified
        )
    }
}

impl fmt::Display for CacheResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_list_every_variant_in_order() {
        for (i, d) in Decision::ALL.iter().enumerate() {
            assert_eq!(d.index(), i);
        }
        for (i, e) in ErrorType::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
        }
    }

    #[test]
    fn serde_spells_them_as_the_log_does() {
        for d in Decision::ALL {
            let ron = ron::to_string(&d).unwrap();
            assert_eq!(ron, d.as_str());
            assert_eq!(ron::from_str::<Decision>(&ron).unwrap(), d);
        }
        for e in ErrorType::ALL {
            let ron = ron::to_string(&e).unwrap();
            assert_eq!(ron, e.as_str());
            assert_eq!(ron::from_str::<ErrorType>(&ron).unwrap(), e);
        }
    }
}
