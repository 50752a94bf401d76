//! Calendar formatting without a clock: HTTP-date (RFC 9110 §5.6.7) and
//! RFC 3339 timestamps from a [`UnixTime`] the caller supplies.

use crate::time::UnixTime;
use std::fmt::Write;

/// Year, month (1-12), day (1-31) of days since 1970-01-01 (Howard
/// Hinnant's civil-from-days).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

struct Parts {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    min: u64,
    sec: u64,
    weekday: usize,
}

fn parts(t: UnixTime) -> Parts {
    let secs = t.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    Parts {
        year,
        month,
        day,
        hour: rem / 3600,
        min: rem % 3600 / 60,
        sec: rem % 60,
        // 1970-01-01 was a Thursday.
        weekday: ((days + 4) % 7) as usize,
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`
pub fn http_date(t: UnixTime) -> String {
    let mut s = String::with_capacity(29);
    write_http_date(t, &mut s);
    s
}

fn write_http_date(t: UnixTime, s: &mut String) {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let p = parts(t);
    let _ = write!(
        s,
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[p.weekday],
        p.day,
        MONTHS[p.month as usize - 1],
        p.year,
        p.hour,
        p.min,
        p.sec
    );
}

/// The HTTP-date of the last second asked for. A connection adds a `Date`
/// to responses that lack one and to the answers it makes itself; on a
/// busy keep-alive connection those all fall in the same few seconds,
/// so each second is formatted once.
#[derive(Debug, Default)]
pub(crate) struct DateCache {
    /// The second `text` spells, if any yet.
    secs: Option<u64>,
    text: String,
}

impl DateCache {
    /// [`http_date`] of `t`.
    pub(crate) fn get(&mut self, t: UnixTime) -> &str {
        if self.secs != Some(t.as_secs()) {
            self.text.clear();
            write_http_date(t, &mut self.text);
            self.secs = Some(t.as_secs());
        }
        &self.text
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's
/// days-from-civil).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses an HTTP-date (RFC 9110 §5.6.7) in any of its three forms:
/// `Sun, 06 Nov 1994 08:49:37 GMT` (IMF-fixdate), `Sunday, 06-Nov-94
/// 08:49:37 GMT` (obsolete RFC 850; two-digit years within 50 years) and
/// `Sun Nov  6 08:49:37 1994` (asctime). `None` for anything else, and
/// for dates before 1970.
pub fn parse_http_date(value: &[u8]) -> Option<UnixTime> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let text = std::str::from_utf8(value).ok()?.trim();
    // Names are matched without regard to case, as most recipients do
    // (RFC 9110 §5.6.7 spells them one way; senders do not all listen).
    let month = |m: &str| {
        MONTHS
            .iter()
            .position(|n| n.eq_ignore_ascii_case(m))
            .map(|i| i as u32 + 1)
    };
    let gmt = |z: &str| z.eq_ignore_ascii_case("GMT");
    let clock = |t: &str| -> Option<(u64, u64, u64)> {
        let mut it = t.split(':');
        let (h, m, s) = (it.next()?, it.next()?, it.next()?);
        if it.next().is_some() || [h, m, s].iter().any(|p| p.len() != 2) {
            return None;
        }
        let (h, m, s) = (h.parse().ok()?, m.parse().ok()?, s.parse().ok()?);
        (h < 24 && m < 60 && s < 61).then_some((h, m, s))
    };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let (year, mon, day, hms) = if let Some((wday, rest)) = text.split_once(", ") {
        let parts: Vec<&str> = rest.split(' ').collect();
        if wday.len() == 3 {
            // IMF-fixdate: day-name "," SP date1 SP time-of-day SP GMT
            let [d, m, y, t, z] = parts[..] else {
                return None;
            };
            if !digits(d, 2) || !digits(y, 4) || !gmt(z) {
                return None;
            }
            (
                y.parse::<i64>().ok()?,
                month(m)?,
                d.parse().ok()?,
                clock(t)?,
            )
        } else {
            // RFC 850: day-name-l "," SP date2 SP time-of-day SP GMT
            let [date, t, z] = parts[..] else {
                return None;
            };
            if !gmt(z) {
                return None;
            }
            let mut dm = date.split('-');
            let (d, m, y) = (dm.next()?, dm.next()?, dm.next()?);
            if !digits(d, 2) || !digits(y, 2) || dm.next().is_some() {
                return None;
            }
            let y: i64 = y.parse().ok()?;
            // RFC 9110 §5.6.7: a two-digit year more than 50 years in the
            // future is in the past century; 1970 is as far back as we go.
            let year = if y >= 70 { 1900 + y } else { 2000 + y };
            (year, month(m)?, d.parse().ok()?, clock(t)?)
        }
    } else {
        // asctime: day-name SP month SP ( 2DIGIT / ( SP DIGIT )) SP time SP year
        let parts: Vec<&str> = text.split(' ').filter(|p| !p.is_empty()).collect();
        let [_, m, d, t, y] = parts[..] else {
            return None;
        };
        if !(1..=2).contains(&d.len()) || !digits(y, 4) {
            return None;
        }
        (y.parse().ok()?, month(m)?, d.parse().ok()?, clock(t)?)
    };
    if !(1..=31).contains(&day) || year < 1970 {
        return None;
    }
    let days = days_from_civil(year, mon, day);
    let secs = u64::try_from(days).ok()? * 86_400 + hms.0 * 3600 + hms.1 * 60 + hms.2;
    Some(UnixTime(secs.checked_mul(1_000_000)?))
}

/// `2026-11-21T14:10:03Z`
pub fn rfc3339(t: UnixTime) -> String {
    let p = parts(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        p.year, p.month, p.day, p.hour, p.min, p.sec
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(
            http_date(UnixTime(784_111_777_000_000)),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(rfc3339(UnixTime(0)), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UnixTime(951_782_400_000_000)),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            http_date(UnixTime(1_795_270_203_000_000)),
            "Sat, 21 Nov 2026 14:10:03 GMT"
        );
    }

    #[test]
    fn http_dates_parse_in_all_three_forms() {
        let t = Some(UnixTime(784_111_777_000_000));
        assert_eq!(parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"), t);
        assert_eq!(parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"), t);
        assert_eq!(parse_http_date(b"Sun Nov  6 08:49:37 1994"), t);
        // Names in another case are read as meant.
        assert_eq!(parse_http_date(b"Sun, 06 NOV 1994 08:49:37 gmt"), t);
        for t in [0u64, 951_782_400, 1_795_270_203, 4_102_444_800] {
            let formatted = http_date(UnixTime(t * 1_000_000));
            assert_eq!(
                parse_http_date(formatted.as_bytes()),
                Some(UnixTime(t * 1_000_000)),
                "{formatted}"
            );
        }
        for bad in [
            "",
            "0",
            "-1",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 94 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:49:37 GMT",
            "Sun, 06 Nov 1969 08:49:37 GMT",
            "Thu, 01 Jan 1970 00:00:00 GMT extra",
        ] {
            assert_eq!(parse_http_date(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn cached_dates_follow_the_second() {
        let mut cache = DateCache::default();
        let t = 1_795_270_203_000_000;
        assert_eq!(cache.get(UnixTime(t)), "Sat, 21 Nov 2026 14:10:03 GMT");
        assert_eq!(
            cache.get(UnixTime(t + 999_999)),
            "Sat, 21 Nov 2026 14:10:03 GMT"
        );
        assert_eq!(
            cache.get(UnixTime(t + 1_000_000)),
            "Sat, 21 Nov 2026 14:10:04 GMT"
        );
        // Any other second is formatted afresh.
        assert_eq!(
            cache.get(UnixTime(t - 3_000_000)),
            "Sat, 21 Nov 2026 14:10:00 GMT"
        );
    }
}
