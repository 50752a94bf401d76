//! Turning `ron`'s errors into messages a person can act on: which key,
//! what was expected, and the closest valid key or value when a name was
//! misspelt.

use super::tree::{self, Anchor, Hit, In, KeyPath, Node};
use ron::error::Error as RonError;

/// Where `ron` puts its position for this kind of error, or `None` for a
/// plain syntax error (its position is then used as it is).
pub(super) fn anchor(code: &RonError) -> Option<Anchor> {
    use RonError::*;
    Some(match code {
        NoSuchStructField { .. }
        | NoSuchEnumVariant { .. }
        | DuplicateStructField { .. }
        | Message(_)
        | InvalidValueForType { .. }
        | ExpectedDifferentLength { .. }
        | IntegerOutOfBounds => Anchor::End,
        MissingStructField { .. } => Anchor::Close,
        ExpectedBoolean
        | ExpectedChar
        | ExpectedFloat
        | ExpectedInteger
        | ExpectedOption
        | ExpectedArray
        | ExpectedMap
        | ExpectedStructLike
        | ExpectedNamedStructLike(_)
        | ExpectedDifferentStructName { .. }
        | ExpectedUnit
        | ExpectedString => Anchor::Start,
        _ => return None,
    })
}

/// Levenshtein distance, case-insensitive, `-` taken as `_`.
fn distance(a: &str, b: &str) -> usize {
    let norm = |s: &str| -> Vec<char> {
        s.chars()
            .map(|c| {
                if c == '-' {
                    '_'
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    };
    let (a, b) = (norm(a), norm(b));
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The candidate closest to `found`, if it is close enough to be what
/// was meant: a few edits away, or one a prefix of the other.
pub(super) fn closest<'a>(found: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let f = found.to_ascii_lowercase().replace('-', "_");
    candidates
        .iter()
        .map(|c| {
            let d = distance(found, c);
            let lc = c.to_ascii_lowercase();
            let prefix = f.len() >= 3 && (lc.starts_with(&f) || f.starts_with(&lc));
            (if prefix { d.min(1) } else { d }, *c)
        })
        .filter(|(d, c)| *d <= (c.len().max(found.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Keys people bring from other proxies' configurations, and where the
/// same setting lives here.
const ALIASES: &[(&str, &str)] = &[
    ("host", "listen"),
    ("port", "listen"),
    ("bind", "listen"),
    ("blacklist", "policy.deny_lists"),
    ("blocklist", "policy.deny_lists"),
    ("whitelist", "policy.allow_lists"),
    ("allowlist", "policy.allow_lists"),
    ("auth_file", "policy.auth.htpasswd"),
    ("htpasswd", "policy.auth.htpasswd"),
    ("log_dir", "logging.file"),
    ("log_file", "logging.file"),
    ("access_log", "logging.file"),
    ("log_format", "logging.format"),
    ("log_level", "logging.level"),
    ("max_connections", "limits.max_connections"),
    ("timeout", "timeouts"),
    ("metrics", "admin"),
];

/// `found` is not a key where it was written; says what was probably
/// meant. `here` is the struct it was written in; `expected` its keys;
/// `all` every key path of a full configuration.
pub(super) fn unknown_key(
    found: &str,
    here: &KeyPath,
    expected: &[&str],
    all: &[KeyPath],
) -> String {
    let place = if here.is_root() {
        "at the top level".to_owned()
    } else {
        format!("in `{here}`")
    };
    let mut msg = format!("unknown key `{found}` {place}");
    if let Some(k) = closest(found, expected) {
        msg.push_str(&format!("; did you mean `{k}`?"));
        return msg;
    }
    // The right key in the wrong section?
    let elsewhere: Vec<String> = all
        .iter()
        .filter(|p| p.last_key() == Some(found) && p.parent() != *here)
        .map(|p| p.to_string())
        .collect();
    if let Some(p) = elsewhere.first() {
        msg.push_str(&format!("; `{found}` belongs at `{p}`"));
        return msg;
    }
    let norm = found.to_ascii_lowercase().replace('-', "_");
    if let Some((_, to)) = ALIASES.iter().find(|(from, _)| *from == norm) {
        msg.push_str(&format!("; the setting is `{to}` here"));
        return msg;
    }
    msg.push_str(&format!("; valid keys: {}", expected.join(", ")));
    msg
}

/// A person's words for what a type error expected.
fn wanted(code: &RonError) -> String {
    use RonError::*;
    match code {
        ExpectedBoolean => "`true` or `false`".into(),
        ExpectedChar => "a character in single quotes".into(),
        ExpectedFloat => "a number".into(),
        ExpectedInteger => "a whole number".into(),
        ExpectedOption => "`Some(...)` or `None`".into(),
        ExpectedArray => "a list `[...]`".into(),
        ExpectedMap => "a map `{...}`".into(),
        ExpectedStructLike | ExpectedNamedStructLike(_) => "a section `(key: value, ...)`".into(),
        ExpectedDifferentStructName { expected, .. } => format!("`{expected}(...)`"),
        ExpectedUnit => "`()`".into(),
        ExpectedString => "a string in double quotes".into(),
        other => other.to_string(),
    }
}

/// The text of the value at `hit`, shortened for a message.
fn snippet(text: &str, start: usize, end: usize) -> String {
    let s: String = text
        .get(start..end)
        .unwrap_or("")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace("[ ", "[")
        .replace(", ]", "]")
        .replace("( ", "(")
        .replace(", )", ")");
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(37).collect::<String>())
    } else {
        s
    }
}

/// The default's text for `path`, as a hint (`the default is "10s"`).
pub(super) fn default_hint(defaults: &(String, Node), path: &KeyPath) -> String {
    let texts = [defaults.0.as_str()];
    match tree::locate(&defaults.1, &texts, path) {
        Some((true, hit)) => {
            let s = snippet(&defaults.0, hit.at, hit.end);
            if s.is_empty() || s.len() > 40 {
                String::new()
            } else {
                format!(" (the default is {s})")
            }
        }
        _ => String::new(),
    }
}

/// The message for `code`, about the value or key at `hit` (whose text
/// is in `text`).
pub(super) fn message(
    code: &RonError,
    hit: Option<&Hit>,
    text: &str,
    defaults: &(String, Node),
    all: &[KeyPath],
) -> String {
    use RonError::*;
    let Some(hit) = hit else {
        return syntax(code);
    };
    let path = &hit.path;
    let what = snippet(text, hit.at, hit.end);
    let at = if path.is_root() {
        "the configuration".to_owned()
    } else {
        format!("`{path}`")
    };
    match code {
        NoSuchStructField {
            expected, found, ..
        } => unknown_key(found, &path.parent(), expected, all),
        NoSuchEnumVariant {
            expected, found, ..
        } => {
            let mut m = format!("{at}: unknown value `{found}`");
            if let Some(v) = closest(found, expected) {
                m.push_str(&format!("; did you mean `{v}`?"));
            }
            m.push_str(&format!(" (one of: {})", expected.join(", ")));
            m
        }
        DuplicateStructField { field, .. } => {
            let parent = path.parent();
            if parent.is_root() {
                format!("`{field}` is set twice at the top level")
            } else {
                format!("`{field}` is set twice in `{parent}`")
            }
        }
        MissingStructField { field, .. } => {
            format!("{at} needs `{field}` (it has no default)")
        }
        IntegerOutOfBounds => {
            let key = path.last_key().unwrap_or("");
            if key.contains("port") {
                format!("{at}: {what} is not a port; ports are 1 to 65535")
            } else {
                format!("{at}: {what} is out of range{}", default_hint(defaults, path))
            }
        }
        Message(m) if m.contains("socket address") => format!(
            "{at}: expected an address and port like \"127.0.0.1:8888\" or \"[::1]:8888\", found {what}"
        ),
        Message(m) => format!("{at}: {m}"),
        InvalidValueForType { expected, found } => {
            format!("{at}: expected {expected}, found {found}")
        }
        ExpectedDifferentLength { expected, found } => {
            format!("{at}: expected {expected}, found {found} elements")
        }
        ExpectedOption => format!("{at}: expected `Some({what})` or `None`, found {what}"),
        _ if anchor(code) == Some(Anchor::Start) => format!(
            "{at}: expected {}, found {what}{}",
            wanted(code),
            default_hint(defaults, path)
        ),
        other => format!("{at}: {}", lower_first(&other.to_string())),
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A syntax error, in words.
pub(super) fn syntax(code: &RonError) -> String {
    use RonError::*;
    match code {
        Eof => "unexpected end of file: is a bracket or quote not closed?".into(),
        ExpectedComma => "expected `,` between entries".into(),
        ExpectedArrayEnd => "expected `,` or `]`".into(),
        ExpectedMapEnd => "expected `,` or `}`".into(),
        ExpectedMapColon => "expected `:` after the key".into(),
        ExpectedStructLikeEnd | ExpectedOptionEnd => "expected `,` or `)`".into(),
        ExpectedStringEnd => "the string is not closed with `\"`".into(),
        TrailingCharacters => {
            "unexpected text after the configuration (a file holds one `( ... )`)".into()
        }
        UnexpectedByte(c) => format!("unexpected `{c}`"),
        UnclosedBlockComment => "a `/*` comment is not closed".into(),
        ExpectedIdentifier => "expected a key name".into(),
        other => lower_first(&other.to_string()),
    }
}

/// Finds what an error is about and says it.
pub(super) struct Explained {
    /// The layer and byte offset to report.
    pub file: usize,
    /// Byte offset in that layer's text, if the error is about one place.
    pub at: Option<usize>,
    /// The message.
    pub message: String,
}

/// Explains `err`, found parsing text whose tree is `root` (`which` says
/// whether positions are in the layers' own texts or the merged text;
/// `parsed` is that text); `fallback_file` is the layer to blame when
/// the error cannot be tied to a value.
#[allow(clippy::too_many_arguments)]
pub(super) fn explain(
    err: &ron::error::SpannedError,
    parsed: &str,
    root: Option<&Node>,
    which: In,
    texts: &[&str],
    fallback_file: usize,
    defaults: &(String, Node),
    all: &[KeyPath],
) -> Explained {
    let offset = tree::ron_offset(parsed, err.position.line, err.position.col);
    let hit = match (anchor(&err.code), root) {
        (Some(a), Some(root)) => tree::culprit(root, texts, which, offset, a),
        _ => None,
    };
    match hit {
        Some(hit) => Explained {
            file: hit.file,
            at: Some(hit.at),
            message: message(&err.code, Some(&hit), texts[hit.file], defaults, all),
        },
        // A position in the merged text means nothing in any one file.
        None if which == In::Merged => Explained {
            file: fallback_file,
            at: None,
            message: format!("after merging the files: {}", syntax(&err.code)),
        },
        None => Explained {
            file: fallback_file,
            at: Some(offset),
            message: syntax(&err.code),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let keys = ["connect", "response", "resolve", "head_read"];
        assert_eq!(closest("conect", &keys), Some("connect"));
        assert_eq!(closest("Connect", &keys), Some("connect"));
        assert_eq!(closest("head-read", &keys), Some("head_read"));
        assert_eq!(closest("head", &keys), Some("head_read"));
        assert_eq!(closest("zzz", &keys), None);
        assert_eq!(closest("json", &["Human", "Json"]), Some("Json"));
    }
}
