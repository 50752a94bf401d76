//! `Cache-Control` (RFC 9111 §5.2) as a cache reads it, from requests and
//! from responses.
//!
//! The field is a comma-separated list of `name[=value]` directives, the
//! value a token or a quoted string; names are case-insensitive. A
//! directive that does not parse (a space around `=`, a value of the wrong
//! kind) is ignored, and of two directives with the same name the first
//! counts: so `extension="max-age=3600", max-age=1` means one second.

use crate::http::head::Fields;
use std::time::Duration;

/// The directives a cache acts on, from one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    /// `max-age`
    pub max_age: Option<Duration>,
    /// `s-maxage` (responses)
    pub s_maxage: Option<Duration>,
    /// `max-stale`, with no value: any staleness (requests)
    pub max_stale: Option<Duration>,
    /// `min-fresh` (requests)
    pub min_fresh: Option<Duration>,
    /// `stale-while-revalidate` (responses, RFC 5861)
    pub stale_while_revalidate: Option<Duration>,
    /// `stale-if-error` (responses and requests, RFC 5861)
    pub stale_if_error: Option<Duration>,
    /// `no-cache`, in any form (the field-name form is treated as the
    /// plain one, which RFC 9111 §5.2.2.4 allows)
    pub no_cache: bool,
    /// `no-store`
    pub no_store: bool,
    /// `private`, in any form (responses)
    pub private: bool,
    /// `public` (responses)
    pub public: bool,
    /// `must-revalidate` (responses)
    pub must_revalidate: bool,
    /// `proxy-revalidate` (responses)
    pub proxy_revalidate: bool,
    /// `must-understand` (responses)
    pub must_understand: bool,
    /// `only-if-cached` (requests)
    pub only_if_cached: bool,
    /// `no-transform`
    pub no_transform: bool,
    /// Any `Cache-Control` field was present.
    pub present: bool,
}

/// "Any staleness" for a `max-stale` without a value.
pub const ANY: Duration = Duration::from_secs(u32::MAX as u64);

impl Directives {
    /// The directives of every `Cache-Control` field in `fields`.
    pub fn of(fields: &Fields<'_>) -> Directives {
        let mut d = Directives::default();
        let mut seen: Vec<String> = Vec::new();
        for value in fields.get_all("cache-control") {
            d.present = true;
            for (name, arg) in split(value) {
                if seen.contains(&name) {
                    continue;
                }
                seen.push(name.clone());
                d.apply(&name, arg.as_deref());
            }
        }
        d
    }

    fn apply(&mut self, name: &str, arg: Option<&str>) {
        let secs = || arg.and_then(delta_seconds);
        match name {
            "max-age" => self.max_age = secs(),
            "s-maxage" => self.s_maxage = secs(),
            "max-stale" => {
                self.max_stale = match arg {
                    None => Some(ANY),
                    Some(_) => secs(),
                }
            }
            "min-fresh" => self.min_fresh = secs(),
            "stale-while-revalidate" => self.stale_while_revalidate = secs(),
            "stale-if-error" => self.stale_if_error = secs(),
            "no-cache" => self.no_cache = true,
            "no-store" => self.no_store = true,
            "private" => self.private = true,
            "public" => self.public = true,
            "must-revalidate" => self.must_revalidate = true,
            "proxy-revalidate" => self.proxy_revalidate = true,
            "must-understand" => self.must_understand = true,
            "only-if-cached" => self.only_if_cached = true,
            "no-transform" => self.no_transform = true,
            _ => {}
        }
    }
}

/// `delta-seconds`: digits only (leading zeros allowed); too large a value
/// is the largest one (RFC 9111 §1.2.2).
fn delta_seconds(s: &str) -> Option<Duration> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = s
        .parse::<u64>()
        .unwrap_or(u64::from(u32::MAX))
        .min(u64::from(u32::MAX));
    Some(Duration::from_secs(n))
}

/// The `name[=value]` directives of one field value, names lower-cased,
/// quoted values unquoted; malformed ones left out.
fn split(value: &[u8]) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut i = 0;
    let v = value;
    while i < v.len() {
        // Skip separators and whitespace before a directive.
        while i < v.len() && matches!(v[i], b',' | b' ' | b'\t') {
            i += 1;
        }
        let start = i;
        while i < v.len() && is_tchar(v[i]) {
            i += 1;
        }
        let name = &v[start..i];
        let mut ok = !name.is_empty();
        let mut arg = None;
        if i < v.len() && v[i] == b'=' {
            i += 1;
            if i < v.len() && v[i] == b'"' {
                // A quoted string, with backslash escapes.
                i += 1;
                let mut s = Vec::new();
                let mut closed = false;
                while i < v.len() {
                    match v[i] {
                        b'\\' if i + 1 < v.len() => {
                            s.push(v[i + 1]);
                            i += 2;
                        }
                        b'"' => {
                            i += 1;
                            closed = true;
                            break;
                        }
                        b => {
                            s.push(b);
                            i += 1;
                        }
                    }
                }
                ok &= closed;
                arg = Some(String::from_utf8_lossy(&s).into_owned());
            } else {
                let vstart = i;
                while i < v.len() && is_tchar(v[i]) {
                    i += 1;
                }
                ok &= i > vstart;
                arg = Some(String::from_utf8_lossy(&v[vstart..i]).into_owned());
            }
        }
        // What follows must be the end of this directive.
        while i < v.len() && matches!(v[i], b' ' | b'\t') {
            i += 1;
        }
        if i < v.len() && v[i] != b',' {
            ok = false;
            // Skip to the next comma outside quotes.
            let mut quoted = false;
            while i < v.len() && (quoted || v[i] != b',') {
                if v[i] == b'"' {
                    quoted = !quoted;
                }
                i += 1;
            }
        }
        if ok {
            let name = String::from_utf8_lossy(name).to_ascii_lowercase();
            out.push((name, arg));
        }
        if i == start {
            i += 1;
        }
    }
    out
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> Directives {
        let mut d = Directives::default();
        let mut seen: Vec<String> = Vec::new();
        for (name, arg) in split(v.as_bytes()) {
            if !seen.contains(&name) {
                seen.push(name.clone());
                d.apply(&name, arg.as_deref());
            }
        }
        d
    }

    #[test]
    fn directives_parse_as_the_grammar_says() {
        let d = parse("max-age=3600, Public, no-cache=\"set-cookie, x\", s-maxage=003600");
        assert_eq!(d.max_age, Some(Duration::from_secs(3600)));
        assert_eq!(d.s_maxage, Some(Duration::from_secs(3600)));
        assert!(d.public && d.no_cache);
        assert_eq!(
            parse("max-age=\"60\"").max_age,
            Some(Duration::from_secs(60))
        );
        // Malformed ones are ignored.
        assert_eq!(parse("max-age =60").max_age, None);
        assert_eq!(parse("max-age= 60").max_age, None);
        assert_eq!(parse("max-age='60'").max_age, None);
        assert_eq!(parse("max-age=-1").max_age, None);
        assert_eq!(parse("max-age=1.5").max_age, None);
        // The first of two counts; quoted text is not a directive.
        assert_eq!(
            parse("max-age=1, max-age=60").max_age,
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            parse("extension=\"max-age=3600\", max-age=1").max_age,
            Some(Duration::from_secs(1))
        );
        assert_eq!(parse("max-stale").max_stale, Some(ANY));
        assert_eq!(
            parse("max-age=99999999999999999999").max_age,
            Some(Duration::from_secs(u64::from(u32::MAX)))
        );
    }
}
