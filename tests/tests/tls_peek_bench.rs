//! The cost of the ClientHello peek, as tunnel set-up rate: each tunnel
//! is a new TCP connection to the proxy, `CONNECT good.test:PORT`, a
//! full TLS handshake (rustls, no resumption) with a local TLS origin
//! through it, one `GET` and its response, and the close. Measured for
//! both binaries with `policy: (tls: (peek: false))`, the default (peek,
//! origin connected first) and peek with `delay_connect: true`; rounds of
//! the modes alternate so drift hits them alike; the median round is
//! reported, with its ratio to `peek: false`.
//!
//! Not part of the suite (`#[ignore]`); run through `bench/tls_peek.sh`,
//! or:
//!
//! ```text
//! cargo test --release -p proxy-tests --test tls_peek_bench -- --ignored --nocapture
//! ```
//!
//! Environment: `TLS_PEEK_N` tunnels per round (default 300),
//! `TLS_PEEK_ROUNDS` (default 7), `TLS_PEEK_CLIENTS` concurrent clients,
//! a comma-separated list (default `1,8`).

use proxy_tests::tls::{client_config, connect_tunnel, server_name, tls_get, HelloWrite};
use proxy_tests::{Binary, Proxy, TlsOrigin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// One round: `n` tunnels by `clients` threads. Tunnels per second and
/// the per-tunnel latencies, sorted.
fn round(
    proxy: &Proxy,
    target: &str,
    config: &Arc<rustls::ClientConfig>,
    n: usize,
    clients: usize,
) -> (f64, Vec<Duration>) {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut latencies: Vec<Duration> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                let next = Arc::clone(&next);
                s.spawn(move || {
                    let mut mine = Vec::new();
                    while next.fetch_add(1, Ordering::Relaxed) < n {
                        let t = Instant::now();
                        let mut stream = connect_tunnel(proxy.addr(), target);
                        let outcome = tls_get(
                            &mut stream,
                            Arc::clone(config),
                            server_name("good.test"),
                            "good.test",
                            HelloWrite::Whole,
                        );
                        let text = outcome.text();
                        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text:?}");
                        drop(stream);
                        mine.push(t.elapsed());
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("client thread"))
            .collect()
    });
    let secs = start.elapsed().as_secs_f64();
    latencies.sort();
    (n as f64 / secs, latencies)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[test]
#[ignore = "a benchmark: run with --ignored --nocapture, in release"]
fn tls_peek_tunnel_setup_rate() {
    let n: usize = env_or("TLS_PEEK_N", "300").parse().expect("TLS_PEEK_N");
    let rounds: usize = env_or("TLS_PEEK_ROUNDS", "7")
        .parse()
        .expect("TLS_PEEK_ROUNDS");
    let clients: Vec<usize> = env_or("TLS_PEEK_CLIENTS", "1,8")
        .split(',')
        .map(|c| c.trim().parse().expect("TLS_PEEK_CLIENTS"))
        .collect();
    let modes = [
        ("peek: false", "peek: false"),
        ("default (peek, connect first)", ""),
        ("peek, delay_connect: true", "delay_connect: true"),
    ];
    let origin = TlsOrigin::start();
    let target = format!("good.test:{}", origin.port());
    let mut config = (*client_config(true)).clone();
    config.resumption = rustls::client::Resumption::disabled();
    let config = Arc::new(config);
    println!(
        "tunnel set-up: CONNECT + TLS handshake + one GET, {n} tunnels a round, \
         {rounds} rounds, median round; profile: {}",
        if cfg!(debug_assertions) {
            "debug (use --release)"
        } else {
            "release"
        }
    );
    // The other work on the machine shows in the spread of the rounds.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average before: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    for bin in [Binary::Std, Binary::Smol] {
        let proxies: Vec<Proxy> = modes
            .iter()
            .map(|(_, tls)| {
                Proxy::start_with_config(
                    bin,
                    &format!("(policy: (tls: ({tls})))"),
                    &["--resolve", "good.test=127.0.0.1", "--quiet"],
                )
            })
            .collect();
        for &k in &clients {
            // Warm up each proxy (threads, allocator, caches).
            for p in &proxies {
                round(p, &target, &config, 50.min(n), k);
            }
            let mut rates = vec![Vec::new(); modes.len()];
            let mut lats = vec![Vec::new(); modes.len()];
            for r in 0..rounds {
                // Each round starts with another mode.
                for i in 0..modes.len() {
                    let m = (r + i) % modes.len();
                    let (rate, l) = round(&proxies[m], &target, &config, n, k);
                    rates[m].push(rate);
                    lats[m].push(l);
                }
            }
            let mut base = 0.0;
            for (m, (name, _)) in modes.iter().enumerate() {
                // The median round, by rate, and its latencies.
                let mut order: Vec<usize> = (0..rounds).collect();
                order.sort_by(|&a, &b| rates[m][a].total_cmp(&rates[m][b]));
                let mid = order[rounds / 2];
                let rate = rates[m][mid];
                if m == 0 {
                    base = rate;
                }
                let l = &lats[m][mid];
                let all: Vec<String> = rates[m].iter().map(|r| format!("{r:.0}")).collect();
                println!(
                    "{:<10} clients={k:<2} {name:<30} {rate:>7.0} tunnels/s  ratio {:.3}  \
                     p50 {:>6.0}us  p99 {:>6.0}us  (rounds: {})",
                    bin.name(),
                    rate / base,
                    percentile(l, 0.5).as_secs_f64() * 1e6,
                    percentile(l, 0.99).as_secs_f64() * 1e6,
                    all.join(", ")
                );
            }
        }
    }
    assert!(origin.handshakes() > 0);
}
