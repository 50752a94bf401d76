//! Plain-text lists operators already keep: one entry per line, `#`
//! comments (whole-line or trailing), blank lines ignored; entries are
//! domain patterns (`example.com`, `*.example.com`, `=example.com`), IP
//! addresses or CIDR ranges. Bad lines are reported and skipped; the good
//! ones still load.

use super::cidr::parse_net;
use super::domain::{parse_pattern, Action, DomainRule};
use super::{LineError, Origin};
use ipnet::IpNet;
use std::sync::Arc;

/// What one list file held.
#[derive(Debug, Clone, Default)]
pub struct ListEntries {
    /// Domain rules, with the action the list was loaded for.
    pub domains: Vec<DomainRule>,
    /// Address ranges, with their origins.
    pub nets: Vec<(IpNet, Origin)>,
    /// Lines that could not be read.
    pub errors: Vec<LineError>,
}

/// Parses a list named `source` whose entries mean `action`.
pub fn parse_list(source: &str, text: &str, action: Action) -> ListEntries {
    let source: Arc<str> = Arc::from(source);
    let mut out = ListEntries::default();
    for (i, raw) in text.lines().enumerate() {
        let line = i as u32 + 1;
        let entry = raw.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        let origin = Origin {
            source: source.clone(),
            line,
        };
        // A line holds one entry; anything after it (other than a
        // comment) is a mistake worth reporting, not guessing at.
        if entry.split_whitespace().count() > 1 {
            out.errors.push(LineError {
                origin,
                message: format!("expected one entry per line, got {entry:?}"),
            });
            continue;
        }
        let looks_like_address =
            entry.contains('/') || entry.contains(':') || entry.parse::<std::net::IpAddr>().is_ok();
        if looks_like_address {
            match parse_net(entry) {
                Ok(net) => out.nets.push((net, origin)),
                Err(message) => out.errors.push(LineError { origin, message }),
            }
        } else {
            match parse_pattern(entry, action, origin.clone()) {
                Ok(rule) => out.domains.push(rule),
                Err(message) => out.errors.push(LineError { origin, message }),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_blocklist_format_loads() {
        let text = "# Comments are supported\nexample.com          # Exact match\n*.tracker.com        # Wildcard match\n10.0.0.0/8           # CIDR range\n\n  \n::1\n192.168.1.7\n";
        let l = parse_list("blocked_domains.txt", text, Action::Deny);
        assert!(l.errors.is_empty(), "{:?}", l.errors);
        assert_eq!(l.domains.len(), 2);
        assert_eq!(
            l.domains[1].to_string(),
            "deny *.tracker.com (blocked_domains.txt:3)"
        );
        assert_eq!(l.nets.len(), 3);
        assert_eq!(l.nets[0].1.line, 4);
    }

    #[test]
    fn bad_lines_are_reported_and_skipped() {
        let text = "good.example\nbad domain here\n10.0.0.0/99\nex*ample.com\nalso-good.example\n";
        let l = parse_list("list", text, Action::Allow);
        assert_eq!(l.domains.len(), 2);
        assert_eq!(
            l.errors.iter().map(|e| e.origin.line).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
        assert!(
            l.errors[1].to_string().starts_with("list:3: "),
            "{}",
            l.errors[1]
        );
    }
}
