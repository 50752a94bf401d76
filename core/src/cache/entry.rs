//! A stored response (RFC 9111 §3): status, header fields, the whole body
//! as shared immutable bytes, and what its freshness is computed from.

use super::directives::Directives;
use crate::http::date::parse_http_date;
use crate::http::head::{Field, Fields};
use crate::time::{Instant, UnixTime};
use std::sync::Arc;
use std::time::Duration;

/// Fields a cache never stores or sends from storage: they describe one
/// connection, one transfer, or are recomputed per response.
const NOT_STORED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authentication-info",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "age",
];

/// One stored response. Immutable once made: a revalidation makes a new
/// one that shares the body.
#[derive(Debug)]
pub struct Entry {
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: Box<str>,
    /// Header fields as the origin sent them, minus the ones in
    /// `NOT_STORED` and those its `Connection` named.
    pub fields: Vec<(Box<str>, Box<[u8]>)>,
    /// The whole body (chunk framing removed).
    pub body: Arc<[u8]>,
    /// When the request that brought it was sent (`request_time`).
    pub request_time: Instant,
    /// When the response arrived (`response_time`).
    pub response_time: Instant,
    /// The calendar time at `response_time`.
    pub response_wall: UnixTime,
    /// The `Age` the response came with, in seconds.
    pub age_value: u64,
    /// The request header values its `Vary` names, normalised (see
    /// [`super::key::vary_value`]); `None` means absent.
    pub vary: super::key::Secondary,
    /// The response's `Cache-Control`.
    pub directives: Directives,
    /// How long it is fresh (RFC 9111 §4.2.1), from its arrival.
    pub lifetime: Duration,
    /// Bytes it is counted as in the budget.
    pub size: usize,
}

impl Entry {
    /// The first value of `name` (case-insensitive).
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| &v[..])
    }

    /// Every value of `name`.
    pub fn fields_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| &v[..])
    }

    /// The `Date` of the response, or its arrival.
    pub fn date(&self) -> UnixTime {
        self.field("date")
            .and_then(parse_http_date)
            .unwrap_or(self.response_wall)
    }

    /// Its current age (RFC 9111 §4.2.3), at `now`.
    pub fn age(&self, now: Instant) -> Duration {
        let apparent = self.response_wall.0.saturating_sub(self.date().0) / 1_000_000;
        let delay = self
            .response_time
            .saturating_since(self.request_time)
            .as_secs();
        let corrected = self.age_value.saturating_add(delay);
        let initial = apparent.max(corrected);
        let resident = now.saturating_since(self.response_time).as_secs();
        Duration::from_secs(initial.saturating_add(resident))
    }

    /// How much fresher than stale it is at `now`: `Ok(left)` while
    /// fresh, `Err(past)` once stale.
    pub fn freshness(&self, now: Instant) -> Result<Duration, Duration> {
        let age = self.age(now);
        if age < self.lifetime {
            Ok(self.lifetime - age)
        } else {
            Err(age - self.lifetime)
        }
    }

    /// Its strong or weak validator, if it has one.
    pub fn etag(&self) -> Option<&[u8]> {
        self.field("etag")
    }

    /// Its `Last-Modified`, if it has one.
    pub fn last_modified(&self) -> Option<&[u8]> {
        self.field("last-modified")
    }
}

/// The response's `Age` in seconds (RFC 9111 §5.1): the first member of
/// its first line, when that is a number; 0 otherwise (an `Age` that is
/// not a number is ignored, as the RFC asks). Too large a number is
/// taken as the largest.
pub fn age_value(fields: &Fields<'_>) -> u64 {
    let Some(first) = fields.get("age") else {
        return 0;
    };
    let member = first.split(|&b| b == b',').next().unwrap_or_default();
    let digits = member.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return 0;
    }
    std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(u64::MAX)
}

/// The fields of a response worth storing, in order.
pub fn stored_fields(fields: &Fields<'_>) -> Vec<(Box<str>, Box<[u8]>)> {
    let named: Vec<&[u8]> = fields.list("connection").collect();
    fields
        .0
        .iter()
        .filter(|f: &&Field<'_>| {
            !NOT_STORED.iter().any(|n| f.name.eq_ignore_ascii_case(n))
                && !named
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(f.name.as_bytes()))
        })
        .map(|f| (Box::from(f.name), Box::from(f.value)))
        .collect()
}

/// Whether a 304's field replaces the stored one (RFC 9111 §3.2: every
/// field it carries, except those never stored, `Content-Length` among
/// them).
pub fn updatable(name: &str) -> bool {
    !NOT_STORED.iter().any(|n| name.eq_ignore_ascii_case(n))
}

/// What an entry of these parts costs in the budget: its bytes plus a
/// fixed allowance for the bookkeeping around them.
pub fn cost(key: &str, fields: &[(Box<str>, Box<[u8]>)], body: usize) -> usize {
    const OVERHEAD: usize = 256;
    key.len()
        + body
        + OVERHEAD
        + fields
            .iter()
            .map(|(n, v)| n.len() + v.len() + 32)
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::parse_response;

    fn age_of(lines: &str) -> u64 {
        let raw = format!("HTTP/1.1 200 OK\r\n{lines}\r\n");
        age_value(&parse_response(raw.as_bytes(), 50).unwrap().fields)
    }

    #[test]
    fn age_is_the_first_member_of_the_first_line() {
        assert_eq!(age_of(""), 0);
        assert_eq!(age_of("Age: 30\r\n"), 30);
        assert_eq!(age_of("Age: 7200, 0\r\n"), 7200);
        assert_eq!(age_of("Age: 0, 7200\r\n"), 0);
        assert_eq!(age_of("Age: 7200\r\nAge: 0\r\n"), 7200);
        for junk in ["abc", "-1", "1.5", "", "0x10", "1 2"] {
            assert_eq!(age_of(&format!("Age: {junk}\r\n")), 0, "{junk:?}");
        }
        assert_eq!(age_of("Age: 99999999999999999999999\r\n"), u64::MAX);
    }
}
