//! Destination host rules: `example.com` (that name and every name under
//! it), `*.example.com` (only names under it) and `=example.com` (exactly
//! that name), each allowing or denying.
//!
//! **Precedence: most specific wins.** A host is looked up from its full
//! name towards the root (`a.b.example.com`, `b.example.com`,
//! `example.com`, `com`); the first level with a rule that applies
//! decides, and at one level a deny beats an allow. So `deny
//! example.com` with `allow api.example.com` lets `api.example.com` (and
//! `v1.api.example.com`) through and stops every other name under
//! `example.com`.
//!
//! Names are normalised before they are stored or looked up: lower case,
//! no trailing dot, and internationalised names in their ASCII (`xn--`)
//! form, so that no spelling of a name slips past its rule.

use super::Origin;
use std::collections::HashMap;
use std::fmt;

/// What a rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Action {
    /// Let it through.
    Allow,
    /// Refuse it.
    Deny,
}

/// Which names a domain rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The name and every name under it (`example.com`).
    Tree,
    /// Only names under it (`*.example.com`).
    Below,
    /// Exactly the name (`=example.com`).
    Exact,
}

/// One domain rule as written, kept to name it in logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainRule {
    /// The normalised name.
    pub name: String,
    /// Which names it covers.
    pub scope: Scope,
    /// What it does.
    pub action: Action,
    /// Where it came from.
    pub origin: Origin,
}

impl fmt::Display for DomainRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.action {
            Action::Allow => "allow",
            Action::Deny => "deny",
        };
        let prefix = match self.scope {
            Scope::Tree => "",
            Scope::Below => "*.",
            Scope::Exact => "=",
        };
        write!(f, "{verb} {prefix}{} ({})", self.name, self.origin)
    }
}

/// Normalises a host name for matching: lower case, no trailing dot,
/// Unicode labels to punycode. `None` if it is not a valid name.
pub fn normalize(name: &str) -> Option<String> {
    let name = name.trim();
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return None;
    }
    let ascii = if name.is_ascii() {
        name.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii(name).ok()?
    };
    let valid = ascii.len() <= 253
        && ascii.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    valid.then_some(ascii)
}

/// Parses a rule pattern: `example.com`, `*.example.com`, `=example.com`,
/// or `.example.com` (Squid's spelling of the whole tree).
pub fn parse_pattern(pattern: &str, action: Action, origin: Origin) -> Result<DomainRule, String> {
    let p = pattern.trim();
    let (scope, name) = if let Some(rest) = p.strip_prefix("*.") {
        (Scope::Below, rest)
    } else if let Some(rest) = p.strip_prefix('=') {
        (Scope::Exact, rest)
    } else if let Some(rest) = p.strip_prefix('.') {
        (Scope::Tree, rest)
    } else {
        (Scope::Tree, p)
    };
    if name.contains('*') {
        return Err(format!(
            "{pattern:?}: a wildcard may only be a leading \"*.\""
        ));
    }
    let name = normalize(name).ok_or_else(|| format!("{pattern:?} is not a valid domain name"))?;
    Ok(DomainRule {
        name,
        scope,
        action,
        origin,
    })
}

/// The rules that sit at one name.
#[derive(Debug, Clone, Default)]
struct Level {
    /// Indexed by scope: Tree, Below, Exact; the rule index that decides
    /// for each, deny preferred.
    tree: Option<usize>,
    below: Option<usize>,
    exact: Option<usize>,
}

/// Compiled domain rules: one hash lookup per label of the host.
#[derive(Debug, Clone, Default)]
pub struct DomainRules {
    rules: Vec<DomainRule>,
    levels: HashMap<String, Level>,
}

impl DomainRules {
    /// Compiles rules.
    pub fn new(rules: impl IntoIterator<Item = DomainRule>) -> Self {
        let mut this = DomainRules::default();
        for rule in rules {
            this.add(rule);
        }
        this
    }

    /// Adds one rule.
    pub fn add(&mut self, rule: DomainRule) {
        let index = self.rules.len();
        let level = self.levels.entry(rule.name.clone()).or_default();
        let slot = match rule.scope {
            Scope::Tree => &mut level.tree,
            Scope::Below => &mut level.below,
            Scope::Exact => &mut level.exact,
        };
        // Deny beats allow at one level; between equals, the first stays.
        let replace = match *slot {
            None => true,
            Some(i) => self.rules[i].action == Action::Allow && rule.action == Action::Deny,
        };
        if replace {
            *slot = Some(index);
        }
        self.rules.push(rule);
    }

    /// How many rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The most specific rule covering `host` (already normalised).
    pub fn lookup(&self, host: &str) -> Option<&DomainRule> {
        let mut name = host;
        let mut at_host = true;
        loop {
            if let Some(level) = self.levels.get(name) {
                let candidates = if at_host {
                    [level.exact, level.tree]
                } else {
                    [level.below, level.tree]
                };
                let mut found: Option<usize> = None;
                for i in candidates.into_iter().flatten() {
                    found = match found {
                        Some(f) if self.rules[f].action == Action::Deny => Some(f),
                        _ if self.rules[i].action == Action::Deny => Some(i),
                        None => Some(i),
                        keep => keep,
                    };
                }
                if let Some(i) = found {
                    return Some(&self.rules[i]);
                }
            }
            let (_, parent) = name.split_once('.')?;
            name = parent;
            at_host = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(specs: &[(&str, Action)]) -> DomainRules {
        DomainRules::new(
            specs
                .iter()
                .map(|(p, a)| parse_pattern(p, *a, Origin::config()).unwrap()),
        )
    }

    fn decide(r: &DomainRules, host: &str) -> Option<Action> {
        r.lookup(&normalize(host).unwrap()).map(|rule| rule.action)
    }

    #[test]
    fn a_name_covers_its_subdomains_but_not_lookalikes() {
        let r = rules(&[("example.com", Action::Deny)]);
        assert_eq!(decide(&r, "example.com"), Some(Action::Deny));
        assert_eq!(decide(&r, "www.example.com"), Some(Action::Deny));
        assert_eq!(decide(&r, "a.b.c.example.com"), Some(Action::Deny));
        assert_eq!(decide(&r, "notexample.com"), None);
        assert_eq!(decide(&r, "example.com.evil.net"), None);
        assert_eq!(decide(&r, "example.co"), None);
    }

    #[test]
    fn spellings_do_not_slip_past() {
        let r = rules(&[
            ("example.com", Action::Deny),
            ("bücher.example", Action::Deny),
        ]);
        for host in ["EXAMPLE.com.", "Www.Example.COM", "example.com."] {
            assert_eq!(decide(&r, host), Some(Action::Deny), "{host}");
        }
        // A rule written in Unicode catches the punycode a client sends.
        assert_eq!(decide(&r, "xn--bcher-kva.example"), Some(Action::Deny));
        assert_eq!(decide(&r, "XN--BCHER-KVA.example."), Some(Action::Deny));
        assert_eq!(decide(&r, "shop.xn--bcher-kva.example"), Some(Action::Deny));
    }

    #[test]
    fn wildcard_covers_only_names_below() {
        let r = rules(&[("*.tracker.com", Action::Deny)]);
        assert_eq!(decide(&r, "tracker.com"), None);
        assert_eq!(decide(&r, "a.tracker.com"), Some(Action::Deny));
        assert_eq!(decide(&r, "a.b.tracker.com"), Some(Action::Deny));
    }

    #[test]
    fn exact_covers_only_the_name() {
        let r = rules(&[("=example.com", Action::Deny)]);
        assert_eq!(decide(&r, "example.com"), Some(Action::Deny));
        assert_eq!(decide(&r, "www.example.com"), None);
    }

    #[test]
    fn most_specific_wins_and_deny_wins_ties() {
        let r = rules(&[
            ("example.com", Action::Deny),
            ("api.example.com", Action::Allow),
        ]);
        assert_eq!(decide(&r, "api.example.com"), Some(Action::Allow));
        assert_eq!(decide(&r, "v1.api.example.com"), Some(Action::Allow));
        assert_eq!(decide(&r, "www.example.com"), Some(Action::Deny));
        let r = rules(&[
            ("example.com", Action::Allow),
            ("example.com", Action::Deny),
        ]);
        assert_eq!(decide(&r, "example.com"), Some(Action::Deny));
        let r = rules(&[
            ("*.example.com", Action::Allow),
            ("example.com", Action::Deny),
        ]);
        assert_eq!(
            decide(&r, "a.example.com"),
            Some(Action::Deny),
            "same level: deny wins"
        );
        assert_eq!(
            r.lookup("a.example.com").unwrap().to_string(),
            "deny example.com (config)"
        );
    }

    #[test]
    fn bad_patterns_are_errors() {
        for p in ["", "*", "a.*.com", "exa mple.com", "*.", "ex*ample.com"] {
            assert!(
                parse_pattern(p, Action::Deny, Origin::config()).is_err(),
                "{p:?}"
            );
        }
        assert_eq!(
            parse_pattern(".example.com", Action::Deny, Origin::config())
                .unwrap()
                .scope,
            Scope::Tree
        );
    }

    /// The compiled matcher agrees with the obvious definition: of all
    /// rules that cover the host, the one with the most labels decides,
    /// deny winning a tie.
    mod against_a_naive_reference {
        use super::*;
        use proptest::prelude::*;

        fn naive(rules: &[DomainRule], host: &str) -> Option<Action> {
            let mut best: Option<(usize, Action)> = None;
            for r in rules {
                let below = host.ends_with(&format!(".{}", r.name));
                let applies = match r.scope {
                    Scope::Exact => host == r.name,
                    Scope::Tree => host == r.name || below,
                    Scope::Below => below,
                };
                if !applies {
                    continue;
                }
                let depth = r.name.split('.').count();
                best = match best {
                    Some((d, a)) if d > depth || (d == depth && a == Action::Deny) => Some((d, a)),
                    _ => Some((depth, r.action)),
                };
            }
            best.map(|(_, a)| a)
        }

        fn name() -> impl Strategy<Value = String> {
            proptest::collection::vec(prop_oneof!["a", "b", "ab", "x-y"], 1..5)
                .prop_map(|labels| labels.join("."))
        }

        fn rule() -> impl Strategy<Value = DomainRule> {
            (name(), 0..3u8, any::<bool>()).prop_map(|(name, scope, deny)| DomainRule {
                name,
                scope: [Scope::Tree, Scope::Below, Scope::Exact][scope as usize],
                action: if deny { Action::Deny } else { Action::Allow },
                origin: Origin::config(),
            })
        }

        proptest! {
            #[test]
            fn compiled_matches_naive(rules in proptest::collection::vec(rule(), 0..30), hosts in proptest::collection::vec(name(), 1..30)) {
                let compiled = DomainRules::new(rules.clone());
                for h in &hosts {
                    prop_assert_eq!(compiled.lookup(h).map(|r| r.action), naive(&rules, h), "host {}", h);
                }
            }
        }
    }
}
