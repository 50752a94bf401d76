//! Answering a `Range` request from a complete stored response (RFC 9110
//! §14). One range is served as a 206; several, or a `Range` that does not
//! parse, are ignored and the whole response is served, as the RFC allows
//! a server to (a multipart answer saves a client little and costs a
//! cache a body copy per request).

use super::entry::Entry;
use crate::http::date::parse_http_date;
use crate::http::head::Fields;
use std::ops::Range;

/// What of a stored response a request gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranged {
    /// All of it, with its own status.
    Whole,
    /// These bytes of its body, as a 206.
    Part(Range<usize>),
    /// A range that starts past its end: 416.
    Unsatisfiable,
}

/// The part of `entry` a GET with `fields` asks for.
pub fn select(fields: &Fields<'_>, entry: &Entry) -> Ranged {
    let Some(range) = fields.get("range") else {
        return Ranged::Whole;
    };
    // Only a 200 is a whole representation to take a part of.
    if entry.status != 200 || fields.get_all("range").count() > 1 {
        return Ranged::Whole;
    }
    if let Some(condition) = fields.get("if-range") {
        if !if_range_holds(condition, entry) {
            return Ranged::Whole;
        }
    }
    parse(range, entry.body.len())
}

/// `If-Range` (RFC 9110 §13.1.5): the range applies only if the stored
/// response is the one the client has, by strong comparison.
fn if_range_holds(condition: &[u8], entry: &Entry) -> bool {
    let condition = condition.trim_ascii();
    if condition.starts_with(b"\"") {
        return entry.etag().is_some_and(|etag| etag == condition);
    }
    if condition.starts_with(b"W/") {
        return false;
    }
    match (
        parse_http_date(condition),
        entry.last_modified().and_then(parse_http_date),
    ) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// A `bytes=` range of a body of `len` bytes.
fn parse(value: &[u8], len: usize) -> Ranged {
    let Ok(value) = std::str::from_utf8(value) else {
        return Ranged::Whole;
    };
    let Some((unit, set)) = value.trim().split_once('=') else {
        return Ranged::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || set.contains(',') {
        return Ranged::Whole;
    }
    let Some((first, last)) = set.trim().split_once('-') else {
        return Ranged::Whole;
    };
    let number = |s: &str| -> Option<Option<u64>> {
        let s = s.trim();
        if s.is_empty() {
            return Some(None);
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Past u64 is past any body.
        Some(Some(s.parse().unwrap_or(u64::MAX)))
    };
    let (Some(first), Some(last)) = (number(first), number(last)) else {
        return Ranged::Whole;
    };
    let len64 = len as u64;
    match (first, last) {
        (Some(first), last) => {
            if last.is_some_and(|last| last < first) {
                return Ranged::Whole;
            }
            if first >= len64 {
                return Ranged::Unsatisfiable;
            }
            let end = last.map_or(len64, |last| last.saturating_add(1).min(len64));
            Ranged::Part(first as usize..end as usize)
        }
        (None, Some(suffix)) => {
            if suffix == 0 || len == 0 {
                return Ranged::Unsatisfiable;
            }
            Ranged::Part(len - suffix.min(len64) as usize..len)
        }
        (None, None) => Ranged::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges_of_a_ten_byte_body() {
        let cases: &[(&str, Ranged)] = &[
            ("bytes=0-1", Ranged::Part(0..2)),
            ("bytes=2-", Ranged::Part(2..10)),
            ("bytes=-3", Ranged::Part(7..10)),
            ("bytes=-30", Ranged::Part(0..10)),
            ("bytes=5-500", Ranged::Part(5..10)),
            ("BYTES = 9-9", Ranged::Part(9..10)),
            ("bytes=10-", Ranged::Unsatisfiable),
            ("bytes=-0", Ranged::Unsatisfiable),
            ("bytes=99999999999999999999999-", Ranged::Unsatisfiable),
            ("bytes=3-2", Ranged::Whole),
            ("bytes=0-1,4-5", Ranged::Whole),
            ("bytes=a-b", Ranged::Whole),
            ("bytes=-", Ranged::Whole),
            ("items=0-1", Ranged::Whole),
            ("bytes 0-1", Ranged::Whole),
        ];
        for (value, want) in cases {
            assert_eq!(parse(value.as_bytes(), 10), *want, "{value}");
        }
        assert_eq!(parse(b"bytes=0-", 0), Ranged::Unsatisfiable);
    }
}
