//! Configuration files in another language. Operators arrive with the
//! YAML, INI or TOML files of the proxies they ran before; handed to
//! `--config`, such a file would only get a RON syntax error. This
//! recognises the language and writes the RON for the keys those proxies
//! used (host, port, blocklist, log_dir, max_connections, cache,
//! timeouts, ...), naming what it could not translate.
//!
//! Only called on text that is not RON, so it may guess: a wrong guess
//! costs a less helpful message, never a wrong configuration (the RON it
//! writes is for a person to read, check and save).

use std::fmt::Write;

/// A language that is not RON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// `key: value`, indentation, `- item`.
    Yaml,
    /// `[section]`, `key = value` with bare values.
    Ini,
    /// `[table]`, `key = "value"`, arrays.
    Toml,
    /// `{"key": ...}`.
    Json,
}

impl Language {
    fn name(self) -> &'static str {
        match self {
            Language::Yaml => "YAML",
            Language::Ini => "INI",
            Language::Toml => "TOML",
            Language::Json => "JSON",
        }
    }
}

/// What a foreign file was, and its RON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Foreign {
    /// The language recognised.
    pub language: Language,
    /// The RON for the keys recognised; `None` when none was.
    pub ron: Option<String>,
    /// Keys seen but not translated, as written (`section.key`).
    pub untranslated: Vec<String>,
}

impl Foreign {
    /// The message for a person: what the file is, what the proxy reads,
    /// and the translation.
    pub fn explain(&self) -> String {
        let mut m = format!(
            "this looks like {}; the proxy reads RON (every key: testdata/configs/example.ron)",
            self.language.name()
        );
        match &self.ron {
            Some(ron) => {
                let _ = write!(m, ". The keys it recognised, in RON:\n\n{ron}\n");
            }
            None => m.push_str("; none of its keys is one it knows how to translate"),
        }
        if !self.untranslated.is_empty() {
            let _ = write!(m, "\nnot translated: {}", self.untranslated.join(", "));
        }
        m
    }
}

/// A value as the foreign file wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Scalar(String),
    List(Vec<String>),
}

/// Recognises `text` as YAML, INI, TOML or JSON; `None` when it looks
/// like none of them (a broken RON file, most likely).
pub fn recognise(text: &str) -> Option<Foreign> {
    let significant: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .collect();
    let first = significant.first()?;
    if first.starts_with('(') || first.starts_with("//") || first.starts_with("#!") {
        return None;
    }
    let language = if first.starts_with('{') {
        Language::Json
    } else if significant
        .iter()
        .any(|l| is_section(l) || key_value(l, '=').is_some())
    {
        let typed = significant
            .iter()
            .filter_map(|l| key_value(l, '='))
            .all(|(_, v)| toml_typed(v));
        if typed {
            Language::Toml
        } else {
            Language::Ini
        }
    } else if *first == "---"
        || significant
            .iter()
            .any(|l| key_value(l, ':').is_some() || l.starts_with("- "))
    {
        Language::Yaml
    } else {
        return None;
    };
    let entries = match language {
        Language::Yaml => yaml(text),
        Language::Ini | Language::Toml => ini(text),
        Language::Json => Vec::new(),
    };
    let (ron, untranslated) = translate(&entries);
    Some(Foreign {
        language,
        ron,
        untranslated,
    })
}

fn is_section(line: &str) -> bool {
    line.starts_with('[') && line.ends_with(']') && !line.contains(',') && line.len() > 2
}

/// `key<sep>value` with a plausible key.
fn key_value(line: &str, sep: char) -> Option<(&str, &str)> {
    let (k, v) = line.split_once(sep)?;
    let k = k.trim().trim_matches('"');
    let plausible = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    plausible.then_some((k, v.trim()))
}

/// A TOML value: quoted, an array, a number or a boolean.
fn toml_typed(v: &str) -> bool {
    let v = strip_comment(v);
    v.starts_with('"')
        || v.starts_with('\'')
        || v.starts_with('[')
        || v == "true"
        || v == "false"
        || v.parse::<f64>().is_ok()
}

/// A value without a trailing ` # comment` (outside quotes).
fn strip_comment(v: &str) -> &str {
    let mut quote = None;
    for (i, c) in v.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#' | ';') if i == 0 || v[..i].ends_with(' ') => return v[..i].trim(),
            _ => {}
        }
    }
    v.trim()
}

/// A scalar without its quotes.
fn unquote(v: &str) -> String {
    let v = strip_comment(v);
    let inner = v
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .or_else(|| v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')));
    inner.unwrap_or(v).to_owned()
}

/// `[a, "b", c]` as items; `None` when not a flow list.
fn flow_list(v: &str) -> Option<Vec<String>> {
    let v = strip_comment(v);
    let inner = v.strip_prefix('[')?.strip_suffix(']')?;
    Some(
        inner
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(unquote)
            .collect(),
    )
}

fn value_of(v: &str) -> Value {
    match flow_list(v) {
        Some(items) => Value::List(items),
        None => Value::Scalar(unquote(v)),
    }
}

/// YAML's block mappings and sequences, as dotted keys: enough for the
/// flat and two-level files proxies ship.
fn yaml(text: &str) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = Vec::new();
    // (indentation, key) of the mappings the current line is inside.
    let mut open: Vec<(usize, String)> = Vec::new();
    for raw in text.lines() {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed == "---" {
            continue;
        }
        let indent = raw.len() - raw.trim_start().len();
        if let Some(item) = trimmed.strip_prefix("- ") {
            // An item of the list under the innermost open key.
            if let Some((_, key)) = open.last() {
                let key = key.clone();
                match out.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, Value::List(items))) => items.push(unquote(item)),
                    _ => out.push((key, Value::List(vec![unquote(item)]))),
                }
            }
            continue;
        }
        while open.last().is_some_and(|(i, _)| *i >= indent) {
            open.pop();
        }
        let Some((key, value)) = key_value(trimmed, ':') else {
            continue;
        };
        let path = match open.last() {
            Some((_, parent)) => format!("{parent}.{key}"),
            None => key.to_owned(),
        };
        if strip_comment(value).is_empty() {
            open.push((indent, path));
        } else {
            out.push((path, value_of(value)));
        }
    }
    out
}

/// INI and TOML: `[section]` then `key = value`.
fn ini(text: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if is_section(line) {
            section = line[1..line.len() - 1].trim().to_owned();
            continue;
        }
        let Some((key, value)) = key_value(line, '=').or_else(|| key_value(line, ':')) else {
            continue;
        };
        let path = if section.is_empty() {
            key.to_owned()
        } else {
            format!("{section}.{key}")
        };
        out.push((path, value_of(value)));
    }
    out
}

/// What a key means, by its last segment (and its section, for
/// timeouts), in the earlier proxies' vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meaning {
    Host,
    Port,
    Listen,
    Deny,
    Allow,
    AuthFile,
    LogDir,
    LogFile,
    LogLevel,
    LogFormat,
    MaxConnections,
    Cache,
    Timeout(&'static str),
}

fn meaning(path: &str) -> Option<Meaning> {
    let path = path.to_ascii_lowercase().replace('-', "_");
    let mut segments = path.rsplit('.');
    let last = segments.next()?;
    let parent = segments.next().unwrap_or("");
    let timeout = |field: &'static str| Some(Meaning::Timeout(field));
    match (parent, last) {
        ("timeouts" | "timeout", "connect") | (_, "connect_timeout") => timeout("connect"),
        ("timeouts" | "timeout", "header_read" | "headers" | "head_read" | "read" | "request")
        | (_, "header_timeout" | "read_timeout" | "header_read_timeout") => timeout("head_read"),
        ("timeouts" | "timeout", "idle" | "client_idle" | "keepalive" | "keep_alive")
        | (_, "idle_timeout" | "keepalive_timeout") => timeout("client_idle"),
        ("timeouts" | "timeout", "response" | "upstream" | "origin")
        | (_, "response_timeout" | "upstream_timeout") => timeout("response"),
        ("timeouts" | "timeout", "tunnel" | "tunnel_idle") | (_, "tunnel_timeout") => {
            timeout("tunnel_idle")
        }
        ("timeouts" | "timeout", "dns" | "resolve") | (_, "dns_timeout") => timeout("resolve"),
        (_, "host" | "bind" | "listen_host" | "address" | "listen_address") => Some(Meaning::Host),
        (_, "port" | "listen_port") => Some(Meaning::Port),
        (_, "listen") => Some(Meaning::Listen),
        (
            _,
            "blocklist" | "blacklist" | "blocked" | "blocked_domains" | "block" | "deny"
            | "denylist" | "blocklist_file" | "blacklist_file",
        ) => Some(Meaning::Deny),
        (
            _,
            "allowlist" | "whitelist" | "allowed" | "allowed_domains" | "allow" | "allowlist_file",
        ) => Some(Meaning::Allow),
        (_, "auth_file" | "htpasswd" | "users_file" | "passwd_file") => Some(Meaning::AuthFile),
        (_, "log_dir" | "logdir" | "log_directory") => Some(Meaning::LogDir),
        (_, "log_file" | "access_log" | "logfile") => Some(Meaning::LogFile),
        (_, "log_level" | "loglevel") | ("logging" | "log", "level") => Some(Meaning::LogLevel),
        (_, "log_format") | ("logging" | "log", "format") => Some(Meaning::LogFormat),
        (_, "max_connections" | "max_conns" | "maxclients" | "max_clients") => {
            Some(Meaning::MaxConnections)
        }
        (_, "cache" | "cache_enabled") | ("cache", "enabled") => Some(Meaning::Cache),
        _ => None,
    }
}

/// A RON string literal.
fn ron_str(s: &str) -> String {
    format!("{s:?}")
}

/// A duration as RON wants it: a bare number is seconds.
fn ron_duration(v: &str) -> String {
    let v = v.trim();
    if v.parse::<f64>().is_ok() {
        ron_str(&format!("{v}s"))
    } else {
        ron_str(v)
    }
}

fn truthy(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "true" | "yes" | "on" | "1" | "enabled"
    )
}

/// A file name rather than a domain: lists name files by path.
fn looks_like_path(v: &str) -> bool {
    v.contains('/') || v.ends_with(".txt") || v.ends_with(".list") || v.ends_with(".conf")
}

/// RON for the entries whose meaning is known, and the keys that were
/// not translated.
fn translate(entries: &[(String, Value)]) -> (Option<String>, Vec<String>) {
    let mut top: Vec<String> = Vec::new();
    let mut sections: Vec<(&'static str, Vec<String>)> = Vec::new();
    let mut put = |section: Option<&'static str>, line: String| match section {
        None => top.push(line),
        Some(name) => match sections.iter_mut().find(|(n, _)| *n == name) {
            Some((_, lines)) => lines.push(line),
            None => sections.push((name, vec![line])),
        },
    };
    let mut untranslated = Vec::new();
    let (mut host, mut port, mut listen) = (None, None, None);
    for (path, value) in entries {
        let scalar = match value {
            Value::Scalar(s) => Some(s.as_str()),
            Value::List(_) => None,
        };
        let items = || match value {
            Value::Scalar(s) => vec![s.clone()],
            Value::List(items) => items.clone(),
        };
        let quoted = |items: Vec<String>| {
            items
                .iter()
                .map(|i| ron_str(i))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match meaning(path) {
            Some(Meaning::Host) if scalar.is_some() => host = scalar.map(str::to_owned),
            Some(Meaning::Port) if scalar.is_some_and(|p| p.parse::<u16>().is_ok()) => {
                port = scalar.map(str::to_owned)
            }
            Some(Meaning::Listen) => listen = Some(items()),
            Some(m @ (Meaning::Deny | Meaning::Allow)) => {
                let (names, files): (Vec<String>, Vec<String>) =
                    items().into_iter().partition(|i| !looks_like_path(i));
                let (key, lists) = if m == Meaning::Deny {
                    ("deny", "deny_lists")
                } else {
                    ("allow", "allow_lists")
                };
                if !names.is_empty() {
                    put(Some("policy"), format!("{key}: [{}],", quoted(names)));
                }
                if !files.is_empty() {
                    put(Some("policy"), format!("{lists}: [{}],", quoted(files)));
                }
            }
            Some(Meaning::AuthFile) if scalar.is_some() => put(
                Some("policy"),
                format!("auth: Some((htpasswd: {})),", ron_str(scalar.unwrap_or(""))),
            ),
            Some(Meaning::LogDir) if scalar.is_some() => put(
                Some("logging"),
                format!(
                    "file: Some({}),",
                    ron_str(&format!(
                        "{}/access.log",
                        scalar.unwrap_or("").trim_end_matches('/')
                    ))
                ),
            ),
            Some(Meaning::LogFile) if scalar.is_some() => put(
                Some("logging"),
                format!("file: Some({}),", ron_str(scalar.unwrap_or(""))),
            ),
            Some(Meaning::LogLevel) => {
                let level = match scalar.unwrap_or("").to_ascii_lowercase().as_str() {
                    "error" | "critical" | "fatal" => "Error",
                    "warn" | "warning" => "Warn",
                    "debug" | "trace" => "Debug",
                    _ => "Info",
                };
                put(Some("logging"), format!("level: {level},"));
            }
            Some(Meaning::LogFormat) => match scalar.unwrap_or("").to_ascii_lowercase().as_str() {
                "json" => put(Some("logging"), "format: Json,".to_owned()),
                "squid" => put(Some("logging"), "format: Squid,".to_owned()),
                "combined" | "clf" | "common" => {
                    put(Some("logging"), "format: Combined,".to_owned())
                }
                "text" | "human" | "plain" => put(Some("logging"), "format: Human,".to_owned()),
                _ => untranslated.push(path.clone()),
            },
            Some(Meaning::MaxConnections)
                if scalar.is_some_and(|n| n.parse::<u64>().is_ok_and(|n| n > 0)) =>
            {
                put(
                    Some("limits"),
                    format!("max_connections: Some({}),", scalar.unwrap_or("")),
                )
            }
            Some(Meaning::Cache) if scalar.is_some() => put(
                Some("cache"),
                format!("enabled: {},", truthy(scalar.unwrap_or(""))),
            ),
            Some(Meaning::Timeout(field)) if scalar.is_some() => put(
                Some("timeouts"),
                format!("{field}: {},", ron_duration(scalar.unwrap_or(""))),
            ),
            _ => untranslated.push(path.clone()),
        }
    }
    let listen = match (listen, host, port) {
        (Some(items), _, _) => Some(items),
        (None, None, None) => None,
        (None, host, port) => {
            let host = host.unwrap_or_else(|| "127.0.0.1".to_owned());
            let host = match host.as_str() {
                "localhost" => "127.0.0.1".to_owned(),
                h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
                h => h.to_owned(),
            };
            Some(vec![format!(
                "{host}:{}",
                port.as_deref().unwrap_or("8888")
            )])
        }
    };
    if let Some(items) = listen {
        let list: Vec<String> = items.iter().map(|i| ron_str(i)).collect();
        top.insert(0, format!("listen: [{}],", list.join(", ")));
    }
    if top.is_empty() && sections.is_empty() {
        return (None, untranslated);
    }
    let mut ron = String::from("(\n");
    for line in &top {
        let _ = writeln!(ron, "    {line}");
    }
    for (name, lines) in &sections {
        let _ = writeln!(ron, "    {name}: (");
        for line in lines {
            let _ = writeln!(ron, "        {line}");
        }
        ron.push_str("    ),\n");
    }
    ron.push(')');
    (Some(ron), untranslated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// The RON it writes is a configuration that loads.
    fn translated(text: &str, language: Language) -> (Config, Vec<String>) {
        let f = recognise(text).expect("recognised");
        assert_eq!(f.language, language, "{text}");
        let ron = f.ron.expect("some keys translated");
        let config = Config::from_ron(&ron).unwrap_or_else(|e| panic!("{e}\n{ron}"));
        (config, f.untranslated)
    }

    #[test]
    fn yaml_of_the_earlier_proxy_becomes_ron() {
        let text = "\
# proxy settings
host: 0.0.0.0
port: 8888
blocklist:
  - ads.example
  - \"*.tracker.test\"
log_dir: /var/log/proxy
max_connections: 5000
cache: true
timeouts:
  connect: 5
  header_read: 10s   # slowloris
workers: 4
";
        let (c, untranslated) = translated(text, Language::Yaml);
        assert_eq!(c.listen, vec!["0.0.0.0:8888".parse().unwrap()]);
        assert_eq!(c.policy.deny, vec!["ads.example", "*.tracker.test"]);
        assert_eq!(c.logging.file.as_deref(), Some("/var/log/proxy/access.log"));
        assert_eq!(c.limits.max_connections, Some(5000));
        assert!(c.cache.enabled);
        assert_eq!(c.timeouts.connect, std::time::Duration::from_secs(5));
        assert_eq!(c.timeouts.head_read, std::time::Duration::from_secs(10));
        assert_eq!(untranslated, vec!["workers"]);
    }

    #[test]
    fn ini_and_toml_become_ron() {
        let ini = "\
; tinyproxy-like
[server]
port = 3128
listen = 127.0.0.1:3128
[filter]
blacklist = /etc/proxy/blocked.txt
";
        let (c, _) = translated(ini, Language::Ini);
        assert_eq!(c.listen, vec!["127.0.0.1:3128".parse().unwrap()]);
        assert_eq!(c.policy.deny_lists, vec!["/etc/proxy/blocked.txt"]);

        let toml = "\
[proxy]
host = \"::1\"
port = 8080
blocked_domains = [\"a.test\", \"b.test\"]
[logging]
level = \"debug\"
format = \"json\"
";
        let (c, _) = translated(toml, Language::Toml);
        assert_eq!(c.listen, vec!["[::1]:8080".parse().unwrap()]);
        assert_eq!(c.policy.deny, vec!["a.test", "b.test"]);
        assert_eq!(c.logging.level, crate::config::LogLevel::Debug);
        assert_eq!(c.logging.format, crate::config::LogFormat::Json);
    }

    #[test]
    fn ron_and_json_are_told_apart() {
        assert_eq!(
            recognise("(\n  listen: [\"127.0.0.1:1\"],\n  oops\n)"),
            None
        );
        assert_eq!(recognise("// a comment\n(proxy_name: 3)"), None);
        let json = recognise("{\"port\": 8888}").unwrap();
        assert_eq!(json.language, Language::Json);
        assert!(json
            .explain()
            .starts_with("this looks like JSON; the proxy reads RON"));
    }

    #[test]
    fn the_message_says_what_was_left_out() {
        let f = recognise("upstream_proxy: http://parent:3128\nport: 9000\n").unwrap();
        let m = f.explain();
        assert!(
            m.starts_with("this looks like YAML; the proxy reads RON"),
            "{m}"
        );
        assert!(m.contains("listen: [\"127.0.0.1:9000\"],"), "{m}");
        assert!(m.ends_with("not translated: upstream_proxy"), "{m}");
    }
}
