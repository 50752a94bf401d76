//! Human units in configuration: durations like `"30s"` and sizes like
//! `"64KiB"`, with serde adapters so config files read naturally.

use std::fmt;
use std::time::Duration;

/// Splits `"1.5 MiB"` into the number (`"1.5"`) and the unit (`"MiB"`).
fn split_number(t: &str) -> (&str, &str) {
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(t.len());
    let (n, u) = t.split_at(split);
    (n, u.trim())
}

/// Digits with at most one `.`.
fn is_plain_number(n: &str) -> bool {
    n.bytes().any(|b| b.is_ascii_digit()) && n.matches('.').count() <= 1
}

/// `whole.frac` times `unit`, exactly where it can be (truncating below
/// one unit of the result); `None` if it is not a number or overflows.
fn scale(number: &str, unit: u64) -> Option<u64> {
    let number = number.replace('_', "");
    let (whole, frac) = number.split_once('.').unwrap_or((&number, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let w: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let frac = &frac[..frac.len().min(18)];
    let f: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    let part = f * u128::from(unit) / 10u128.pow(frac.len() as u32);
    w.checked_mul(unit)?.checked_add(u64::try_from(part).ok()?)
}

/// Parses `"250ms"`, `"30s"`, `"1.5s"`, `"5m"`, `"2h"`, `"1d"` (also
/// `sec`, `min`, `hours`, ...); a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.starts_with('-') {
        return Err(format!("invalid duration {text:?}: it cannot be negative"));
    }
    let (number, unit) = split_number(t);
    let unit_micros: u64 = match unit.to_ascii_lowercase().as_str() {
        "us" | "µs" | "micros" => 1,
        "ms" | "msec" | "millis" => 1_000,
        "" | "s" | "sec" | "secs" | "second" | "seconds" => 1_000_000,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000_000,
        "h" | "hr" | "hour" | "hours" => 3_600_000_000,
        "d" | "day" | "days" => 86_400_000_000,
        _ if number.is_empty() => {
            return Err(format!(
                "invalid duration {text:?}: expected a number with a unit, like \"30s\", \"250ms\" or \"5m\""
            ))
        }
        other => {
            return Err(format!(
                "invalid duration unit {other:?} in {text:?}: use ms, s, m, h or d (like \"30s\")"
            ))
        }
    };
    match scale(number, unit_micros) {
        Some(micros) => Ok(Duration::from_micros(micros)),
        None if !is_plain_number(number) => Err(format!(
            "invalid duration {text:?}: expected a number with a unit, like \"30s\""
        )),
        None => Err(format!("duration {text:?} is too large")),
    }
}

/// Formats a duration in the largest unit that divides it exactly.
pub fn format_duration(d: Duration) -> String {
    let micros = d.as_micros();
    for (unit, size) in [
        ("d", 86_400_000_000u128),
        ("h", 3_600_000_000),
        ("m", 60_000_000),
        ("s", 1_000_000),
        ("ms", 1_000),
    ] {
        if micros >= size && micros % size == 0 {
            return format!("{}{unit}", micros / size);
        }
    }
    if micros == 0 {
        "0s".to_owned()
    } else {
        format!("{micros}us")
    }
}

/// Parses `"512"`, `"64KiB"`, `"1.5MiB"`, `"2GiB"` (`K`/`M`/`G` are
/// binary too; `KB`/`MB`/`GB` decimal); units are case-insensitive.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.starts_with('-') {
        return Err(format!("invalid size {text:?}: it cannot be negative"));
    }
    let (number, unit) = split_number(t);
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" | "bytes" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "tib" | "t" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ if number.is_empty() => {
            return Err(format!(
                "invalid size {text:?}: expected a number with a unit, like \"64KiB\" or \"10MiB\""
            ))
        }
        other => {
            return Err(format!(
                "invalid size unit {other:?} in {text:?}: use B, KiB, MiB or GiB (like \"64KiB\")"
            ))
        }
    };
    match scale(number, mult) {
        Some(n) => Ok(n),
        None if !is_plain_number(number) => Err(format!(
            "invalid size {text:?}: expected a number with a unit, like \"64KiB\""
        )),
        None => Err(format!("size {text:?} is too large")),
    }
}

/// Formats a size in the largest binary unit that divides it exactly.
pub fn format_size(n: u64) -> String {
    for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if n >= size && n % size == 0 {
            return format!("{}{unit}", n / size);
        }
    }
    format!("{n}B")
}

/// Serde adapter for [`Duration`] as a human string.
pub mod duration {
    use super::*;
    use serde::{de, Deserializer, Serializer};

    /// Serialises as e.g. `"30s"`.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    /// Accepts a string like `"30s"` or a number of seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\", \"250ms\" or \"5m\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                parse_duration(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration::from_secs(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                u64::try_from(v)
                    .map(Duration::from_secs)
                    .map_err(|_| E::custom(format!("invalid duration {v}: it cannot be negative")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
                Duration::try_from_secs_f64(v).map_err(|_| {
                    E::custom(format!(
                        "invalid duration {v}: expected a number of seconds, or a string like \"30s\""
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Serde adapter for byte sizes as a human string.
pub mod size {
    use super::*;
    use serde::{de, Deserializer, Serializer};

    /// Serialises as e.g. `"64KiB"`.
    pub fn serialize<S: Serializer>(n: &usize, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_size(*n as u64))
    }

    /// Accepts a string like `"64KiB"` or a number of bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = usize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"64KiB\" or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<usize, E> {
                let n = parse_size(v).map_err(E::custom)?;
                usize::try_from(n).map_err(|_| E::custom("size does not fit this platform"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<usize, E> {
                usize::try_from(v).map_err(|_| E::custom("size does not fit this platform"))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<usize, E> {
                usize::try_from(v)
                    .map_err(|_| E::custom(format!("invalid size {v}: it cannot be negative")))
            }
        }
        d.deserialize_any(V)
    }
}

/// Serde adapter for an optional byte size (`None` is written as `None`).
pub mod opt_size {
    use super::*;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Number(u64),
        Text(String),
    }

    /// Serialises as e.g. `Some("1MiB")`.
    pub fn serialize<S: Serializer>(n: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        n.map(|n| Repr::Text(format_size(n))).serialize(s)
    }

    /// Accepts `None`, `Some("1MiB")` or `Some(1048576)`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<Repr>::deserialize(d)? {
            None => Ok(None),
            Some(Repr::Number(n)) => Ok(Some(n)),
            Some(Repr::Text(t)) => parse_size(&t).map(Some).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip() {
        for text in ["250ms", "30s", "5m", "2h", "1d", "0s", "1500us"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(format_duration(d), text);
        }
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
    }

    #[test]
    fn bad_durations_say_what_is_expected() {
        assert!(parse_duration("soon")
            .unwrap_err()
            .contains("expected a number"));
        assert!(parse_duration("3 weeks").unwrap_err().contains("unit"));
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn durations_take_fractions_and_words() {
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(
            parse_duration("0.25 s").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            parse_duration("2 minutes").unwrap(),
            Duration::from_secs(120)
        );
        assert_eq!(parse_duration("1_000ms").unwrap(), Duration::from_secs(1));
        assert!(parse_duration("-5s").unwrap_err().contains("negative"));
        assert!(parse_duration("1.2.3s").is_err());
        assert!(parse_duration("")
            .unwrap_err()
            .contains("expected a number"));
    }

    #[test]
    fn sizes_take_fractions_and_any_case() {
        assert_eq!(parse_size("1.5MiB").unwrap(), 3 << 19);
        assert_eq!(parse_size("64kib").unwrap(), 65536);
        assert_eq!(parse_size("64 K").unwrap(), 65536);
        assert_eq!(parse_size("2kb").unwrap(), 2000);
        assert!(parse_size("-1KiB").unwrap_err().contains("negative"));
        assert!(parse_size("KiB").unwrap_err().contains("expected a number"));
        assert!(parse_size("64 KB/s").unwrap_err().contains("unit"));
        assert!(parse_size("99999999999GiB")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn sizes_round_trip() {
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("1MB").unwrap(), 1_000_000);
        assert_eq!(format_size(65536), "64KiB");
        assert_eq!(format_size(1000), "1000B");
        assert!(parse_size("12 parsecs").is_err());
    }
}
