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
