//! Policy evaluation at scale: 100,000 domain rules and 10,000 CIDRs,
//! compiled once, then decisions per second and the memory the compiled
//! policy takes. A benchmark to run by hand, not a test:
//!
//! ```sh
//! cargo run --release -p proxy-core --example policy_bench
//! ```

// A benchmark measures wall time and reads its own memory use: it is a
// program around the core, not the core.
#![allow(clippy::disallowed_methods)]

use proxy_core::http::target::Host;
use proxy_core::policy::{Policy, PolicyConfig, Sources};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

/// Resident memory of this process in KiB (Linux), 0 elsewhere.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A small deterministic generator, so runs are comparable.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn main() {
    let mut rng = Lcg(42);
    let mut list = String::new();
    for i in 0..100_000u64 {
        let n = rng.next();
        match i % 3 {
            0 => list.push_str(&format!("site{n}.example{}.com\n", n % 97)),
            1 => list.push_str(&format!("*.ads{n}.net\n")),
            _ => list.push_str(&format!("=host{n}.tracker{}.org\n", n % 13)),
        }
    }
    for _ in 0..10_000 {
        let n = rng.next() as u32;
        let len = 16 + (n % 17) as u8;
        list.push_str(&format!("{}/{len}\n", Ipv4Addr::from(n | 0x0100_0000)));
    }
    let mut sources = Sources::new();
    sources.insert("big.list".to_owned(), list);
    let config = PolicyConfig {
        deny_lists: vec!["big.list".to_owned()],
        ..PolicyConfig::default()
    };

    let before = rss_kib();
    let started = Instant::now();
    let (policy, report) = Policy::compile(&config, &sources).expect("compiles");
    let compile = started.elapsed();
    let after = rss_kib();
    drop(sources);
    println!(
        "compiled {} domain and {} address rules ({} rejected lines) in {:.0} ms; compiled policy ~{} KiB resident",
        policy.sizes().0,
        policy.sizes().1,
        report.errors.len(),
        compile.as_secs_f64() * 1e3,
        after.saturating_sub(before)
    );

    // Hosts: a third hit a rule, the rest miss after walking every label.
    let hosts: Vec<Host> = (0..100_000u64)
        .map(|i| {
            let n = rng.next();
            let name = match i % 3 {
                0 => format!("www.site{n}.example{}.com", n % 97),
                1 => format!("cdn.ads{n}.net"),
                _ => format!("a.b.c.nothing{n}.io"),
            };
            Host::Name(name)
        })
        .collect();
    let addrs: Vec<IpAddr> = (0..100_000)
        .map(|_| IpAddr::V4(Ipv4Addr::from(rng.next() as u32)))
        .collect();

    let rounds = 10;
    let started = Instant::now();
    let mut denied = 0usize;
    for _ in 0..rounds {
        for h in &hosts {
            denied += usize::from(black_box(policy.check_host(h)).is_err());
        }
    }
    let per_host = started.elapsed() / (rounds * hosts.len() as u32);
    let started = Instant::now();
    for _ in 0..rounds {
        for a in &addrs {
            denied +=
                usize::from(black_box(policy.check_addresses(std::slice::from_ref(a))).is_err());
        }
    }
    let per_addr = started.elapsed() / (rounds * addrs.len() as u32);
    println!(
        "domain decisions: {:.0}/s ({} ns each); address decisions: {:.0}/s ({} ns each); {denied} denials",
        1e9 / per_host.as_nanos().max(1) as f64,
        per_host.as_nanos(),
        1e9 / per_addr.as_nanos().max(1) as f64,
        per_addr.as_nanos(),
    );
}
