//! Address rules: CIDR ranges that allow or deny, most specific prefix
//! first, deny winning a tie. One hash lookup per distinct prefix length,
//! so tens of thousands of ranges cost a few dozen lookups at most.

use super::domain::Action;
use super::Origin;
use ipnet::IpNet;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

/// One address rule as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrRule {
    /// The range (host bits cleared).
    pub net: IpNet,
    /// What it does.
    pub action: Action,
    /// Where it came from.
    pub origin: Origin,
}

impl fmt::Display for CidrRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.action {
            Action::Allow => "allow",
            Action::Deny => "deny",
        };
        write!(f, "{verb} {} ({})", self.net, self.origin)
    }
}

/// Ranges no destination should reach unless explicitly allowed: the SSRF
/// guard. Loopback, private (RFC 1918), CGNAT, link-local, unique-local,
/// unspecified, multicast, reserved, benchmarking, and NAT64 (which can
/// embed any of the IPv4 ones).
pub const PRIVATE_RANGES: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "64:ff9b::/96",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

/// Parses `10.0.0.0/8`, `::1/128`, or a bare address (a host range).
pub fn parse_net(text: &str) -> Result<IpNet, String> {
    let t = text.trim();
    if let Ok(net) = t.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    t.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{text:?} is not an IP address or CIDR range"))
}

/// The form an address is judged in: IPv4-mapped IPv6 (`::ffff:10.0.0.1`)
/// is the IPv4 address it carries, so it meets the IPv4 rules.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// Hashes the integer form of a masked address cheaply: a lookup may
/// probe every prefix length, and SipHash made that several times
/// slower. Masked keys have zero low bits, so the high bits of the
/// product are folded down for the table's bucket index.
#[derive(Debug, Clone, Copy, Default)]
struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u128(&mut self, n: u128) {
        let folded = (n as u64) ^ ((n >> 64) as u64).rotate_left(32);
        self.0 = (folded ^ self.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IntMap<V> = HashMap<u128, V, BuildHasherDefault<IntHasher>>;

/// Compiled address rules.
#[derive(Debug, Clone, Default)]
pub struct CidrTable {
    rules: Vec<CidrRule>,
    /// Per family, per prefix length (longest first): masked network →
    /// rule index.
    v4: Vec<(u8, IntMap<usize>)>,
    v6: Vec<(u8, IntMap<usize>)>,
}

/// The address as a number, IPv4 in the low 32 bits.
fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// `bits` with everything past `len` cleared, for a family of `width` bits.
fn masked(bits: u128, len: u8, width: u8) -> u128 {
    let host = u32::from(width - len);
    if host >= 128 {
        0
    } else {
        bits >> host << host
    }
}

impl CidrTable {
    /// Compiles rules.
    pub fn new(rules: impl IntoIterator<Item = CidrRule>) -> Self {
        let mut t = CidrTable::default();
        for r in rules {
            t.add(r);
        }
        t
    }

    /// Adds one rule.
    pub fn add(&mut self, rule: CidrRule) {
        let index = self.rules.len();
        let net = rule.net.trunc();
        let (levels, width) = match net {
            IpNet::V4(_) => (&mut self.v4, 32),
            IpNet::V6(_) => (&mut self.v6, 128),
        };
        let len = net.prefix_len();
        let pos = match levels.iter().position(|(l, _)| *l <= len) {
            Some(p) if levels[p].0 == len => p,
            Some(p) => {
                levels.insert(p, (len, IntMap::default()));
                p
            }
            None => {
                levels.push((len, IntMap::default()));
                levels.len() - 1
            }
        };
        let key = masked(bits(net.network()), len, width);
        let slot = &mut levels[pos].1;
        let replace = match slot.get(&key) {
            None => true,
            Some(&i) => self.rules[i].action == Action::Allow && rule.action == Action::Deny,
        };
        if replace {
            slot.insert(key, index);
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

    /// The most specific rule covering `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<&CidrRule> {
        let ip = canonical(ip);
        let (levels, width) = match ip {
            IpAddr::V4(_) => (&self.v4, 32),
            IpAddr::V6(_) => (&self.v6, 128),
        };
        let b = bits(ip);
        levels
            .iter()
            .find_map(|(len, map)| map.get(&masked(b, *len, width)))
            .map(|&i| &self.rules[i])
    }

    /// Distinct networks, for a quick size report.
    pub fn distinct(&self) -> usize {
        let mut s = HashSet::new();
        for r in &self.rules {
            s.insert(r.net);
        }
        s.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(net: &str, action: Action) -> CidrRule {
        CidrRule {
            net: parse_net(net).unwrap(),
            action,
            origin: Origin::config(),
        }
    }

    fn private() -> CidrTable {
        CidrTable::new(PRIVATE_RANGES.iter().map(|n| rule(n, Action::Deny)))
    }

    fn decide(t: &CidrTable, ip: &str) -> Option<Action> {
        t.lookup(ip.parse().unwrap()).map(|r| r.action)
    }

    #[test]
    fn private_ranges_cover_the_usual_suspects() {
        let t = private();
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.31.255.255",
            "192.168.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "64:ff9b::a00:1",
        ] {
            assert_eq!(decide(&t, ip), Some(Action::Deny), "{ip}");
        }
        for ip in ["93.184.216.34", "172.32.0.1", "2606:4700::1", "8.8.8.8"] {
            assert_eq!(decide(&t, ip), None, "{ip}");
        }
    }

    #[test]
    fn ipv4_mapped_ipv6_meets_the_ipv4_rules() {
        let t = private();
        assert_eq!(decide(&t, "::ffff:10.0.0.1"), Some(Action::Deny));
        assert_eq!(decide(&t, "::ffff:127.0.0.1"), Some(Action::Deny));
        assert_eq!(decide(&t, "::ffff:8.8.8.8"), None);
    }

    #[test]
    fn most_specific_prefix_wins_and_deny_wins_ties() {
        let mut t = private();
        t.add(rule("127.0.0.1/32", Action::Allow));
        t.add(rule("10.9.0.0/16", Action::Allow));
        t.add(rule("10.9.9.9", Action::Deny));
        assert_eq!(decide(&t, "127.0.0.1"), Some(Action::Allow));
        assert_eq!(decide(&t, "127.0.0.2"), Some(Action::Deny));
        assert_eq!(decide(&t, "10.9.1.1"), Some(Action::Allow));
        assert_eq!(decide(&t, "10.9.9.9"), Some(Action::Deny));
        t.add(rule("10.9.1.0/24", Action::Allow));
        t.add(rule("10.9.1.0/24", Action::Deny));
        assert_eq!(decide(&t, "10.9.1.1"), Some(Action::Deny));
    }

    #[test]
    fn parse_accepts_ranges_and_bare_addresses() {
        assert_eq!(parse_net("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_net("::1").unwrap().to_string(), "::1/128");
        assert_eq!(parse_net(" 1.2.3.4 ").unwrap().to_string(), "1.2.3.4/32");
        assert!(parse_net("10.0.0.0/33").is_err());
        assert!(parse_net("example.com").is_err());
    }

    /// The table against a reference that checks every rule in turn.
    mod against_a_reference {
        use super::*;
        use proptest::prelude::*;
        use std::net::{Ipv4Addr, Ipv6Addr};

        /// The most specific covering rule's action, deny winning a tie,
        /// by looking at every rule.
        fn reference(rules: &[CidrRule], ip: IpAddr) -> Option<(Action, IpNet)> {
            let ip = ip.to_canonical();
            let covering = rules.iter().filter(|r| r.net.contains(&ip));
            let longest = covering.clone().map(|r| r.net.prefix_len()).max()?;
            let at_longest = covering.filter(|r| r.net.prefix_len() == longest);
            let net = at_longest.clone().next()?.net;
            let deny = at_longest.clone().any(|r| r.action == Action::Deny);
            Some((if deny { Action::Deny } else { Action::Allow }, net))
        }

        /// Addresses near each other, so that ranges overlap and nest:
        /// IPv4 under 10.0.0.0/8 and elsewhere, IPv6, and IPv4-mapped
        /// IPv6.
        fn address() -> impl Strategy<Value = IpAddr> {
            let v4 = prop_oneof![
                any::<u8>().prop_map(|b| 0x0a00_0000 | u32::from(b) << 4),
                any::<u32>(),
            ];
            prop_oneof![
                3 => v4.clone().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
                1 => v4.prop_map(|a| IpAddr::V6(Ipv4Addr::from(a).to_ipv6_mapped())),
                1 => any::<u16>().prop_map(|b| IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, b))),
            ]
        }

        fn rule_on() -> impl Strategy<Value = CidrRule> {
            (address(), any::<u8>(), any::<bool>()).prop_map(|(ip, len, deny)| {
                let ip = ip.to_canonical();
                let width = if ip.is_ipv4() { 33 } else { 129 };
                CidrRule {
                    net: IpNet::new(ip, len % width)
                        .expect("a prefix length")
                        .trunc(),
                    action: if deny { Action::Deny } else { Action::Allow },
                    origin: Origin::config(),
                }
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]
            #[test]
            fn lookup_agrees_with_every_rule_checked(
                rules in proptest::collection::vec(rule_on(), 0..24),
                ips in proptest::collection::vec(address(), 1..24),
            ) {
                let table = CidrTable::new(rules.clone());
                for ip in ips {
                    let got = table.lookup(ip).map(|r| (r.action, r.net));
                    prop_assert_eq!(got, reference(&rules, ip), "{}", ip);
                }
            }

            /// Whatever the standard library calls loopback, private,
            /// link-local, multicast, unspecified, broadcast, shared
            /// (CGNAT) or documentation-adjacent benchmarking space is
            /// denied by the SSRF guard, in IPv4 and in IPv4-mapped IPv6.
            #[test]
            fn the_guard_covers_what_std_calls_special_v4(a in any::<u32>()) {
                let v4 = Ipv4Addr::from(a);
                let [o1, o2, ..] = v4.octets();
                let special = v4.is_loopback()
                    || v4.is_private()
                    || v4.is_link_local()
                    || v4.is_multicast()
                    || v4.is_unspecified()
                    || v4.is_broadcast()
                    || o1 == 0
                    || o1 >= 240
                    || (o1 == 100 && (64..128).contains(&o2))
                    || (o1 == 198 && (18..20).contains(&o2));
                let t = private();
                for ip in [IpAddr::V4(v4), IpAddr::V6(v4.to_ipv6_mapped())] {
                    let denied = t.lookup(ip).is_some_and(|r| r.action == Action::Deny);
                    prop_assert!(!special || denied, "{} is special but not denied", ip);
                }
            }

            /// The same for IPv6: loopback, unspecified, multicast,
            /// unique-local, link-local, and NAT64 of anything.
            #[test]
            fn the_guard_covers_what_is_special_v6(a in any::<u128>()) {
                let v6 = Ipv6Addr::from(a);
                let first = v6.segments()[0];
                let special = v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || first & 0xfe00 == 0xfc00
                    || first & 0xffc0 == 0xfe80
                    || a >> 32 == 0x0064_ff9b_0000_0000_0000_0000;
                let denied = private().lookup(IpAddr::V6(v6)).is_some_and(|r| r.action == Action::Deny);
                prop_assert!(!special || denied, "{} is special but not denied", v6);
            }
        }
    }
}
