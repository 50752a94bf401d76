//! Access-log records. The core fills them in; whoever writes the log
//! stamps the wall time and picks the format: [`human`](AccessRecord::human)
//! (the console), [`json`](AccessRecord::json) (one object per line, for
//! ELK and Loki), [`squid`](AccessRecord::squid) (Squid's native
//! access.log, for its analysers) or [`combined`](AccessRecord::combined)
//! (Apache/nginx, for GoAccess). Each is a pure function of the record
//! and the wall time it is given, and returns one line without its `\n`.

use crate::config::LogFormat;
use crate::http::date::rfc3339;
use crate::id::ConnId;
use crate::reason::{Decision, ErrorType};
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
    /// The RFC 9209 error type when the exchange failed (`dns_error`,
    /// ...), or how it was cut off (`client_closed`, ...).
    pub error: Option<ErrorType>,
    /// The authenticated user, if any. Never the credential.
    #[serde(default)]
    pub user: Option<String>,
    /// The policy decision: allowed, or the kind of refusal.
    #[serde(default)]
    pub decision: Decision,
    /// The rule that refused, as a person reads it.
    #[serde(default)]
    pub rule: Option<String>,
    /// What a tunnel's TLS ClientHello said (SNI, ALPN, versions, ECH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::client_hello::ClientHelloInfo>,
    /// What the cache did, when caching is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<crate::reason::CacheResult>,
    /// The request's `Referer` and `User-Agent` (for the combined format,
    /// where log analysers read browsers from them, and JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<Box<Agent>>,
    /// `upstream` is a parent proxy (`routing.parents`), not the origin.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub parent: bool,
    /// The load balancer the connection came through, when a PROXY
    /// header named `client`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balancer: Option<Box<Balancer>>,
}

/// The load balancer that passed a connection on with a PROXY header.
/// Boxed in the record: most proxies run without one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balancer {
    /// The balancer's own address: the connection's peer.
    pub peer: SocketAddr,
    /// The id the balancer gave the connection (the v2 `UNIQUE_ID` TLV,
    /// HAProxy's `unique-id-format`), to find it in the balancer's log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_id: Option<String>,
}

/// What a request said about where it came from. Boxed in the record:
/// most records of a proxy's own refusals have none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    /// `Referer`, as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referer: Option<String>,
    /// `User-Agent`, as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

impl Agent {
    /// Longest value kept of either field: enough for any real browser's
    /// User-Agent, and a bound on what one request adds to a log line.
    pub const MAX: usize = 1024;

    /// The fields of a request head, `None` when it has neither.
    pub fn of(fields: &crate::http::head::Fields<'_>) -> Option<Box<Agent>> {
        let take = |name: &str| {
            fields.get(name).map(|v| {
                let v = &v[..v.len().min(Agent::MAX)];
                String::from_utf8_lossy(v).into_owned()
            })
        };
        let agent = Agent {
            referer: take("referer"),
            user_agent: take("user-agent"),
        };
        (agent.referer.is_some() || agent.user_agent.is_some()).then(|| Box::new(agent))
    }
}

impl AccessRecord {
    /// Whether this is a tunnel or upgrade that was set up (bytes then
    /// flowed both ways), as opposed to a refused or failed one.
    pub fn tunnel_established(&self) -> bool {
        matches!(
            (self.kind, self.status),
            (ExchangeKind::Tunnel, 200) | (ExchangeKind::Upgrade, 101)
        )
    }

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
        // An established tunnel's traffic goes both ways; say how much
        // came from the client (its CONNECT or upgrade head included).
        if self.tunnel_established() {
            let _ = write!(s, " client_sent={}B", self.bytes_from_client);
        }
        if let Some(tls) = &self.tls {
            if let Some(sni) = &tls.sni {
                let _ = write!(s, " sni={sni}");
                if tls.sni_malformed {
                    s.push_str(" sni_malformed");
                }
            }
        }
        if let Some(c) = self.cache {
            let _ = write!(s, " cache={c}");
        }
        if let Some(e) = &self.error {
            let _ = write!(s, " error={e}");
        }
        if let Some(u) = &self.user {
            let _ = write!(s, " user={u}");
        }
        if let Some(b) = &self.balancer {
            let _ = write!(s, " balancer={}", b.peer);
            if let Some(id) = &b.unique_id {
                let _ = write!(s, " balancer_id={id}");
            }
        }
        // Last: the only field with spaces.
        if let Some(r) = &self.rule {
            let _ = write!(s, " rule=\"{}\"", r.replace('"', "'"));
        }
        s
    }
}

impl AccessRecord {
    /// The line in `format`.
    pub fn format(&self, format: LogFormat, at: UnixTime) -> String {
        match format {
            LogFormat::Human => self.human(at),
            LogFormat::Json => self.json(at),
            LogFormat::Squid => self.squid(at),
            LogFormat::Combined => self.combined(at),
        }
    }

    /// One JSON object, fields always present and in this order (`null`
    /// when absent):
    ///
    /// `{"time":"2026-11-21T14:10:03.123Z","client":"127.0.0.1:51234","user":null,"method":"GET","target":"http://example.com/","upstream":"93.184.216.34:80","status":200,"bytes_to_client":1256,"bytes_from_client":80,"duration_ms":12.4,"kind":"http","decision":"allowed","rule":null,"error":null,"sni":null,"sni_malformed":false,"cache":null,"referer":null,"user_agent":"curl/8.5.0","parent":false,"balancer":null,"balancer_id":null,"conn":1}`
    ///
    /// `duration_ms` has microsecond precision; `kind` is `http`,
    /// `tunnel`, `upgrade` or `local`; `cache` is what the cache did
    /// (`hit`, `miss`, ...: [`CacheResult`](crate::reason::CacheResult)),
    /// `null` when it is off or had no part.
    pub fn json(&self, at: UnixTime) -> String {
        let mut s = String::with_capacity(320);
        s.push_str("{\"time\":\"");
        s.push_str(&rfc3339_millis(at));
        s.push_str("\",\"client\":\"");
        let _ = write!(s, "{}", self.client);
        s.push_str("\",\"user\":");
        json_opt(&mut s, self.user.as_deref());
        s.push_str(",\"method\":");
        json_str(&mut s, &self.method);
        s.push_str(",\"target\":");
        json_str(&mut s, &self.target);
        s.push_str(",\"upstream\":");
        match self.upstream {
            Some(a) => {
                let _ = write!(s, "\"{a}\"");
            }
            None => s.push_str("null"),
        }
        let micros = self.duration.as_micros();
        let _ = write!(
            s,
            ",\"status\":{},\"bytes_to_client\":{},\"bytes_from_client\":{},\"duration_ms\":{}",
            self.status,
            self.bytes_to_client,
            self.bytes_from_client,
            decimal(micros, 3)
        );
        let kind = match self.kind {
            ExchangeKind::Http => "http",
            ExchangeKind::Tunnel => "tunnel",
            ExchangeKind::Upgrade => "upgrade",
            ExchangeKind::Local => "local",
        };
        let _ = write!(s, ",\"kind\":\"{kind}\",\"decision\":");
        json_str(&mut s, self.decision.as_str());
        s.push_str(",\"rule\":");
        json_opt(&mut s, self.rule.as_deref());
        s.push_str(",\"error\":");
        json_opt(&mut s, self.error.map(ErrorType::as_str));
        s.push_str(",\"sni\":");
        json_opt(&mut s, self.tls.as_ref().and_then(|t| t.sni.as_deref()));
        let malformed = self.tls.as_ref().is_some_and(|t| t.sni_malformed);
        let _ = write!(s, ",\"sni_malformed\":{malformed},\"cache\":");
        json_opt(&mut s, self.cache.map(crate::reason::CacheResult::as_str));
        let agent = self.agent.as_deref();
        s.push_str(",\"referer\":");
        json_opt(&mut s, agent.and_then(|a| a.referer.as_deref()));
        s.push_str(",\"user_agent\":");
        json_opt(&mut s, agent.and_then(|a| a.user_agent.as_deref()));
        let _ = write!(s, ",\"parent\":{},\"balancer\":", self.parent);
        match &self.balancer {
            Some(b) => {
                let _ = write!(s, "\"{}\"", b.peer);
            }
            None => s.push_str("null"),
        }
        s.push_str(",\"balancer_id\":");
        json_opt(
            &mut s,
            self.balancer.as_ref().and_then(|b| b.unique_id.as_deref()),
        );
        let _ = write!(s, ",\"conn\":{}}}", self.conn.0);
        s
    }

    /// Squid's native format (`logformat squid %ts.%03tu %6tr %>a
    /// %Ss/%03>Hs %<st %rm %ru %[un %Sh/%<a %mt`):
    ///
    /// `1795270203.123     12 127.0.0.1 TCP_MISS/200 1256 GET http://example.com/ - HIER_DIRECT/93.184.216.34 -`
    ///
    /// The time is when the exchange ended, the elapsed time in
    /// milliseconds. The result code is `TCP_DENIED` for a policy refusal,
    /// `TCP_TUNNEL` for CONNECT (whose URL is `host:port`), `NONE_NONE`
    /// for a request that could not be read, the cache's own code
    /// (`TCP_MEM_HIT`, `TCP_REFRESH_UNMODIFIED`, ...) when it took part,
    /// and `TCP_MISS` otherwise, with `_ABORTED` when the client went away; the
    /// status is `000` when none was sent. The peer is `HIER_DIRECT/ip`
    /// once connected (`FIRSTUP_PARENT/ip` through a parent proxy),
    /// `HIER_NONE/-` before; the content type is not
    /// recorded (`-`).
    pub fn squid(&self, at: UnixTime) -> String {
        let code = if !self.decision.is_allowed() {
            "TCP_DENIED"
        } else if self.method == "-" {
            "NONE_NONE"
        } else if self.kind == ExchangeKind::Tunnel {
            "TCP_TUNNEL"
        } else if let Some(c) = self.cache {
            c.squid()
        } else {
            "TCP_MISS"
        };
        let aborted = self.error.is_some_and(ErrorType::is_client_abort);
        let mut s = String::with_capacity(160);
        let _ = write!(
            s,
            "{}.{:03} {:>6} {} {code}{}/{:03} {} ",
            at.as_secs(),
            at.0 % 1_000_000 / 1_000,
            self.duration.as_millis(),
            self.client.ip(),
            if aborted { "_ABORTED" } else { "" },
            self.status,
            self.bytes_to_client,
        );
        squid_field(&mut s, &self.method);
        s.push(' ');
        squid_field(&mut s, &self.target);
        s.push(' ');
        squid_field(&mut s, self.user.as_deref().unwrap_or("-"));
        let hierarchy = if self.parent {
            "FIRSTUP_PARENT"
        } else {
            "HIER_DIRECT"
        };
        match self.upstream {
            Some(a) => {
                let _ = write!(s, " {hierarchy}/{} -", a.ip());
            }
            None => s.push_str(" HIER_NONE/- -"),
        }
        s
    }

    /// Apache/nginx combined format:
    ///
    /// `127.0.0.1 - - [21/Nov/2026:14:10:03 +0000] "GET http://example.com/ HTTP/1.1" 200 1256 "-" "-"`
    ///
    /// Times are UTC. The byte count is everything sent to the client,
    /// head included; a request that could not be read is `"-"`; an
    /// exchange that ended before any status was sent is logged as 499
    /// (nginx's "client closed request"), since log analysers refuse 0.
    /// Referer and User-Agent are the request's (`"-"` when absent).
    pub fn combined(&self, at: UnixTime) -> String {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        // 2026-11-21T14:10:03Z
        let t = rfc3339(at);
        let month: usize = t[5..7].parse().unwrap_or(1);
        let mut s = String::with_capacity(160);
        let _ = write!(s, "{} - ", self.client.ip());
        match &self.user {
            Some(u) => escape_clf(&mut s, u, true),
            None => s.push('-'),
        }
        let _ = write!(
            s,
            " [{}/{}/{}:{} +0000] \"",
            &t[8..10],
            MONTHS[month.clamp(1, 12) - 1],
            &t[0..4],
            &t[11..19]
        );
        if self.method == "-" {
            s.push('-');
        } else {
            escape_clf(&mut s, &self.method, false);
            s.push(' ');
            escape_clf(&mut s, &self.target, false);
            s.push_str(" HTTP/1.1");
        }
        let status = if self.status == 0 { 499 } else { self.status };
        let _ = write!(s, "\" {status} {} \"", self.bytes_to_client);
        let agent = self.agent.as_deref();
        escape_clf(
            &mut s,
            agent.and_then(|a| a.referer.as_deref()).unwrap_or(""),
            false,
        );
        s.push_str("\" \"");
        escape_clf(
            &mut s,
            agent.and_then(|a| a.user_agent.as_deref()).unwrap_or(""),
            false,
        );
        s.push('"');
        s
    }
}

/// `2026-11-21T14:10:03.123Z`
fn rfc3339_millis(at: UnixTime) -> String {
    let mut t = rfc3339(at);
    t.pop(); // Z
    let _ = write!(t, ".{:03}Z", at.0 % 1_000_000 / 1_000);
    t
}

/// `n / 10^places` in decimal, without trailing zeros: 12400 → `12.4`.
fn decimal(n: u128, places: u32) -> String {
    let div = 10u128.pow(places);
    let (whole, frac) = (n / div, n % div);
    if frac == 0 {
        return whole.to_string();
    }
    let f = format!("{frac:0width$}", width = places as usize);
    format!("{whole}.{}", f.trim_end_matches('0'))
}

/// A JSON string literal.
fn json_str(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_opt(out: &mut String, v: Option<&str>) {
    match v {
        Some(v) => json_str(out, v),
        None => out.push_str("null"),
    }
}

/// A Squid field: `-` if empty, and what would break the space-separated
/// line (spaces, control characters) %-encoded. A `%` stays as it is, as
/// Squid leaves it (`rfc1738_escape_unescaped`): a URL's `%20` is logged
/// as `%20`, not `%2520`.
fn squid_field(out: &mut String, v: &str) {
    if v.is_empty() {
        out.push('-');
        return;
    }
    for c in v.chars() {
        if c.is_whitespace() || c.is_control() {
            let mut buf = [0; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
}

/// Escapes for the combined format as nginx does: `"`, `\` and bytes
/// outside printable ASCII as `\xHH` (and spaces too when `spaces`).
fn escape_clf(out: &mut String, v: &str, spaces: bool) {
    if v.is_empty() {
        out.push('-');
        return;
    }
    for b in v.bytes() {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) || (spaces && b == b' ') {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b as char);
        }
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
            decision: Decision::Allowed,
            rule: None,
            tls: None,
            cache: None,
            agent: None,
            parent: false,
            balancer: None,
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
        let refused = AccessRecord {
            status: 403,
            ..tunnel.clone()
        };
        assert!(
            !refused.human(UnixTime(0)).contains("client_sent"),
            "no tunnel was set up"
        );
        assert!(tunnel
            .human(UnixTime(0))
            .ends_with(" 200 1256B 12ms client_sent=80B"));
        let denied = AccessRecord {
            status: 403,
            error: Some(ErrorType::HttpRequestDenied),
            user: Some("alice".into()),
            decision: Decision::DeniedDomain,
            rule: Some("deny example.com (blocklist.txt:3)".into()),
            ..r.clone()
        };
        assert!(denied.human(UnixTime(0)).ends_with(
            " 403 1256B 12ms error=http_request_denied user=alice rule=\"deny example.com (blocklist.txt:3)\""
        ));
        let failed = AccessRecord {
            upstream: None,
            status: 502,
            error: Some(ErrorType::DnsError),
            ..r
        };
        assert!(failed
            .human(UnixTime(0))
            .ends_with("-> - 502 1256B 12ms error=dns_error"));
        assert!(hit()
            .human(UnixTime(0))
            .ends_with("-> - 200 1256B 0ms cache=hit"));
    }

    /// 2026-11-21T14:10:03.123456Z
    const AT: UnixTime = UnixTime(1_795_270_203_123_456);

    fn get() -> AccessRecord {
        AccessRecord {
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
            decision: Decision::Allowed,
            rule: None,
            tls: None,
            cache: None,
            agent: Some(Box::new(Agent {
                referer: None,
                user_agent: Some("curl/8.5.0".into()),
            })),
            parent: false,
            balancer: None,
        }
    }

    /// A request answered from the cache.
    fn hit() -> AccessRecord {
        AccessRecord {
            upstream: None,
            duration: Duration::from_micros(200),
            cache: Some(crate::reason::CacheResult::Hit),
            ..get()
        }
    }

    fn denied() -> AccessRecord {
        AccessRecord {
            upstream: None,
            status: 403,
            bytes_to_client: 475,
            duration: Duration::from_micros(300),
            error: Some(ErrorType::HttpRequestDenied),
            user: Some("alice".into()),
            decision: Decision::DeniedDomain,
            rule: Some("deny example.com (blocklist.txt:3)".into()),
            ..get()
        }
    }

    fn tunnel() -> AccessRecord {
        AccessRecord {
            conn: ConnId(7),
            method: "CONNECT".into(),
            target: "example.com:443".into(),
            upstream: Some("93.184.216.34:443".parse().unwrap()),
            bytes_to_client: 5000,
            bytes_from_client: 700,
            duration: Duration::from_millis(1500),
            kind: ExchangeKind::Tunnel,
            ..get()
        }
    }

    fn unreadable() -> AccessRecord {
        AccessRecord {
            method: "-".into(),
            target: "-".into(),
            upstream: None,
            status: 400,
            bytes_to_client: 0,
            bytes_from_client: 17,
            duration: Duration::from_millis(3),
            error: Some(ErrorType::HttpRequestError),
            agent: None,
            ..get()
        }
    }

    fn aborted() -> AccessRecord {
        AccessRecord {
            target: "http://example.com/big".into(),
            status: 0,
            bytes_to_client: 0,
            error: Some(ErrorType::ClientClosed),
            ..get()
        }
    }

    #[test]
    fn json_lines() {
        assert_eq!(
            get().json(AT),
            r#"{"time":"2026-11-21T14:10:03.123Z","client":"127.0.0.1:51234","user":null,"method":"GET","target":"http://example.com/","upstream":"93.184.216.34:80","status":200,"bytes_to_client":1256,"bytes_from_client":80,"duration_ms":12.4,"kind":"http","decision":"allowed","rule":null,"error":null,"sni":null,"sni_malformed":false,"cache":null,"referer":null,"user_agent":"curl/8.5.0","parent":false,"balancer":null,"balancer_id":null,"conn":1}"#
        );
        assert_eq!(
            denied().json(AT),
            r#"{"time":"2026-11-21T14:10:03.123Z","client":"127.0.0.1:51234","user":"alice","method":"GET","target":"http://example.com/","upstream":null,"status":403,"bytes_to_client":475,"bytes_from_client":80,"duration_ms":0.3,"kind":"http","decision":"denied_domain","rule":"deny example.com (blocklist.txt:3)","error":"http_request_denied","sni":null,"sni_malformed":false,"cache":null,"referer":null,"user_agent":"curl/8.5.0","parent":false,"balancer":null,"balancer_id":null,"conn":1}"#
        );
        assert_eq!(
            tunnel().json(AT),
            r#"{"time":"2026-11-21T14:10:03.123Z","client":"127.0.0.1:51234","user":null,"method":"CONNECT","target":"example.com:443","upstream":"93.184.216.34:443","status":200,"bytes_to_client":5000,"bytes_from_client":700,"duration_ms":1500,"kind":"tunnel","decision":"allowed","rule":null,"error":null,"sni":null,"sni_malformed":false,"cache":null,"referer":null,"user_agent":"curl/8.5.0","parent":false,"balancer":null,"balancer_id":null,"conn":7}"#
        );
        assert!(hit()
            .json(AT)
            .ends_with(r#""sni_malformed":false,"cache":"hit","referer":null,"user_agent":"curl/8.5.0","parent":false,"balancer":null,"balancer_id":null,"conn":1}"#));
        // Both fields, escaped like every string.
        let browser = AccessRecord {
            agent: Some(Box::new(Agent {
                referer: Some("http://a.test/\"x\"".into()),
                user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
            })),
            ..get()
        };
        assert!(browser.json(AT).ends_with(
            r#""referer":"http://a.test/\"x\"","user_agent":"Mozilla/5.0 (X11; Linux x86_64)","parent":false,"balancer":null,"balancer_id":null,"conn":1}"#
        ));
        assert!(browser
            .combined(AT)
            .ends_with(r#" 200 1256 "http://a.test/\x22x\x22" "Mozilla/5.0 (X11; Linux x86_64)""#));
        // Escaping: quotes, backslashes, control characters.
        let odd = AccessRecord {
            client: "[::1]:5000".parse().unwrap(),
            user: Some("b\u{1}ob\n".into()),
            rule: Some(r#"deny "x" \ y"#.into()),
            ..denied()
        };
        let line = odd.json(UnixTime(0));
        assert!(
            line.starts_with(
                r#"{"time":"1970-01-01T00:00:00.000Z","client":"[::1]:5000","user":"b\u0001ob\n","#
            ),
            "{line}"
        );
        assert!(line.contains(r#""rule":"deny \"x\" \\ y""#), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn agent_fields_are_taken_from_the_head_and_bounded() {
        let long = "x".repeat(5000);
        let raw =
            format!("GET http://a/ HTTP/1.1\r\nUser-Agent: {long}\r\nReferer: http://r/\r\n\r\n");
        let head = crate::http::head::parse_request(raw.as_bytes(), 64, 8192).unwrap();
        let agent = Agent::of(&head.fields).expect("both fields");
        assert_eq!(agent.user_agent.as_deref().map(str::len), Some(Agent::MAX));
        assert_eq!(agent.referer.as_deref(), Some("http://r/"));
        let raw = b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n";
        let head = crate::http::head::parse_request(raw, 64, 8192).unwrap();
        assert_eq!(Agent::of(&head.fields), None);
    }

    #[test]
    fn squid_lines() {
        assert_eq!(
            get().squid(AT),
            "1795270203.123     12 127.0.0.1 TCP_MISS/200 1256 GET http://example.com/ - HIER_DIRECT/93.184.216.34 -"
        );
        assert_eq!(
            denied().squid(AT),
            "1795270203.123      0 127.0.0.1 TCP_DENIED/403 475 GET http://example.com/ alice HIER_NONE/- -"
        );
        assert_eq!(
            tunnel().squid(AT),
            "1795270203.123   1500 127.0.0.1 TCP_TUNNEL/200 5000 CONNECT example.com:443 - HIER_DIRECT/93.184.216.34 -"
        );
        assert_eq!(
            unreadable().squid(AT),
            "1795270203.123      3 127.0.0.1 NONE_NONE/400 0 - - - HIER_NONE/- -"
        );
        assert_eq!(
            aborted().squid(AT),
            "1795270203.123     12 127.0.0.1 TCP_MISS_ABORTED/000 0 GET http://example.com/big - HIER_DIRECT/93.184.216.34 -"
        );
        assert_eq!(
            hit().squid(AT),
            "1795270203.123      0 127.0.0.1 TCP_MEM_HIT/200 1256 GET http://example.com/ - HIER_NONE/- -"
        );
        let revalidated = AccessRecord {
            cache: Some(crate::reason::CacheResult::RefreshUnmodified),
            ..get()
        };
        assert!(revalidated
            .squid(AT)
            .contains(" TCP_REFRESH_UNMODIFIED/200 "));
        // Through a parent proxy, the hierarchy code says so.
        let parented = AccessRecord {
            parent: true,
            ..get()
        };
        assert!(parented
            .squid(AT)
            .ends_with(" FIRSTUP_PARENT/93.184.216.34 -"));
        assert!(parented
            .json(AT)
            .ends_with(r#""parent":true,"balancer":null,"balancer_id":null,"conn":1}"#));
        let odd = AccessRecord {
            client: "[::1]:5000".parse().unwrap(),
            user: Some("j doe".into()),
            ..get()
        };
        assert!(odd
            .squid(AT)
            .contains(" ::1 TCP_MISS/200 1256 GET http://example.com/ j%20doe "));
        // A URL's own %-escapes are logged as they are, not escaped again.
        let escaped = AccessRecord {
            target: "http://example.com/a%20b?q=100%25".into(),
            ..get()
        };
        assert!(escaped
            .squid(AT)
            .contains(" GET http://example.com/a%20b?q=100%25 - "));
        // Every line has the ten space-separated fields analysers expect.
        for r in [get(), denied(), tunnel(), unreadable(), aborted(), odd] {
            assert_eq!(
                r.squid(AT).split_whitespace().count(),
                10,
                "{}",
                r.squid(AT)
            );
        }
    }

    #[test]
    fn combined_lines() {
        assert_eq!(
            get().combined(AT),
            r#"127.0.0.1 - - [21/Nov/2026:14:10:03 +0000] "GET http://example.com/ HTTP/1.1" 200 1256 "-" "curl/8.5.0""#
        );
        assert_eq!(
            denied().combined(AT),
            r#"127.0.0.1 - alice [21/Nov/2026:14:10:03 +0000] "GET http://example.com/ HTTP/1.1" 403 475 "-" "curl/8.5.0""#
        );
        assert_eq!(
            tunnel().combined(AT),
            r#"127.0.0.1 - - [21/Nov/2026:14:10:03 +0000] "CONNECT example.com:443 HTTP/1.1" 200 5000 "-" "curl/8.5.0""#
        );
        assert_eq!(
            unreadable().combined(AT),
            r#"127.0.0.1 - - [21/Nov/2026:14:10:03 +0000] "-" 400 0 "-" "-""#
        );
        assert_eq!(
            aborted().combined(UnixTime(951_782_400_000_000)),
            r#"127.0.0.1 - - [29/Feb/2000:00:00:00 +0000] "GET http://example.com/big HTTP/1.1" 499 0 "-" "curl/8.5.0""#
        );
        let odd = AccessRecord {
            user: Some("j \"doe\"".into()),
            target: "http://example.com/a\"b".into(),
            ..get()
        };
        assert_eq!(
            odd.combined(AT),
            r#"127.0.0.1 - j\x20\x22doe\x22 [21/Nov/2026:14:10:03 +0000] "GET http://example.com/a\x22b HTTP/1.1" 200 1256 "-" "curl/8.5.0""#
        );
    }

    #[test]
    fn human_lines_for_each_kind() {
        assert_eq!(
            get().human(AT),
            "2026-11-21T14:10:03Z 127.0.0.1:51234 GET http://example.com/ -> 93.184.216.34:80 200 1256B 12ms"
        );
        assert_eq!(
            denied().human(AT),
            "2026-11-21T14:10:03Z 127.0.0.1:51234 GET http://example.com/ -> - 403 475B 0ms error=http_request_denied user=alice rule=\"deny example.com (blocklist.txt:3)\""
        );
        assert_eq!(
            tunnel().human(AT),
            "2026-11-21T14:10:03Z 127.0.0.1:51234 CONNECT example.com:443 -> 93.184.216.34:443 200 5000B 1500ms client_sent=700B"
        );
        assert_eq!(
            unreadable().human(AT),
            "2026-11-21T14:10:03Z 127.0.0.1:51234 - - -> - 400 0B 3ms error=http_request_error"
        );
        for f in [
            LogFormat::Human,
            LogFormat::Json,
            LogFormat::Squid,
            LogFormat::Combined,
        ] {
            let line = tunnel().format(f, AT);
            assert!(!line.is_empty() && !line.contains('\n'), "{f:?}: {line}");
        }
        assert_eq!(get().format(LogFormat::Squid, AT), get().squid(AT));
    }
}
