//! The soak: many keep-alive clients and a few hundred tunnels through one
//! proxy for minutes, checking that nothing fails, that memory levels off
//! after the warm-up, and that no descriptor is left behind.
//!
//! wrk drives the clients (every response checked, as in `run`); the
//! tunnels trickle the pattern into the sink, which checks every byte.
//! RSS is sampled every few seconds and printed as a curve.

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{bail, Result};
use crate::origin::{self, addr};
use crate::ports::Ports;
use crate::procstat;
use crate::service::Service;
use crate::tunnel;
use crate::workdir::Workdir;
use crate::wrk::{self, Load};

pub(crate) struct Options {
    pub(crate) binary: PathBuf,
    pub(crate) proxy_config: PathBuf,
    pub(crate) conns: u32,
    pub(crate) tunnels: usize,
    pub(crate) secs: u32,
}

/// Seconds between RSS samples.
const SAMPLE: Duration = Duration::from_secs(5);

pub(crate) fn run(opts: &Options) -> Result<bool> {
    let work = Workdir::create()?;
    let mut ports = Ports::new();
    let origin_addr = addr(ports.take()?);
    let tls = addr(ports.take()?);
    let _nginx = origin::start_nginx(&work, origin_addr.port(), tls.port())?;
    let sink = addr(ports.take()?);
    let _tcp = origin::start_tcp(&work, "tcp-origin", &[("sink", sink)])?;
    let proxy_addr = addr(ports.take()?);
    // Every record kept: the log would otherwise rotate the first ones
    // away under this load.
    let big_log = work.write("soak.ron", "(logging: (max_size: \"4GiB\"))\n")?;
    let mut proxy = Service::spawn(
        "proxy",
        std::process::Command::new(&opts.binary)
            .arg("--listen")
            .arg(proxy_addr.to_string())
            .arg("--log-dir")
            .arg(work.file("log"))
            .arg("--config")
            .arg(&opts.proxy_config)
            .arg("--config")
            .arg(&big_log),
        &work.file("proxy.log"),
    )?;
    proxy.wait_port(proxy_addr, Duration::from_secs(10))?;
    let pid = proxy.pid();
    let name = opts
        .binary
        .file_name()
        .map_or("proxy".into(), |n| n.to_string_lossy().into_owned());
    thread::sleep(Duration::from_millis(500));
    // Sockets, not all descriptors: the pipes a proxy keeps pooled for
    // splicing (64 at most) are not a leak.
    let fds_before = procstat::open_sockets(pid);
    let rss_before = procstat::rss_kib(pid)?;
    eprintln!(
        "soak: {name}, {} keep-alive clients and {} tunnels for {} s",
        opts.conns, opts.tunnels, opts.secs
    );

    let (conns, secs, tunnels) = (opts.conns, opts.secs, opts.tunnels);
    let load = Load {
        connect_to: proxy_addr,
        origin: origin_addr,
        proxied: true,
        path: "/1k",
        size: 1024,
        close: false,
        connections: conns,
        secs,
        silent_closes: false,
    };
    let mut curve = Vec::new();
    let (outcome, tunnel_bytes) = thread::scope(|scope| -> Result<_> {
        let clients = scope.spawn(|| wrk::run(&work, &load));
        // 16 KiB every 100 ms each: a steady 160 KB/s per tunnel.
        let streams = scope.spawn(move || {
            tunnel::trickle(
                proxy_addr,
                sink,
                tunnels,
                secs,
                16 * 1024,
                Duration::from_millis(100),
            )
        });
        let start = Instant::now();
        while !clients.is_finished() || !streams.is_finished() {
            thread::sleep(Duration::from_millis(200));
            if start.elapsed() >= SAMPLE * curve.len() as u32 {
                let fds = procstat::open_fds(pid);
                curve.push((start.elapsed().as_secs(), procstat::rss_kib(pid)?, fds));
            }
        }
        let outcome = clients
            .join()
            .map_err(|_| crate::error::Error::new("the wrk thread panicked"))?;
        let bytes = streams
            .join()
            .map_err(|_| crate::error::Error::new("the tunnel thread panicked"))?;
        Ok((outcome, bytes))
    })?;
    // Let the closed connections go, and the idle pooled upstream ones
    // expire (`timeouts.upstream_idle`, 15 s by default).
    let settle = Instant::now();
    let mut fds_after = procstat::open_sockets(pid);
    while fds_after > fds_before && settle.elapsed() < Duration::from_secs(30) {
        thread::sleep(Duration::from_millis(500));
        fds_after = procstat::open_sockets(pid);
    }
    let rss_after = procstat::rss_kib(pid)?;
    proxy.check_alive()?;

    println!("## soak: {name}\n");
    println!(
        "{} keep-alive clients (wrk -t2, every response checked) and {} CONNECT tunnels \
         (16 KiB every 100 ms each, checked by the sink) for {} s.\n",
        opts.conns, opts.tunnels, opts.secs
    );
    println!("| second | RSS (MiB) | descriptors |\n|---:|---:|---:|");
    for (s, rss, fds) in &curve {
        println!("| {s} | {:.1} | {fds} |", *rss as f64 / 1024.0);
    }
    let mut failures = Vec::new();
    match &outcome {
        Ok(o) => println!(
            "\nrequests: {} checked, {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms",
            o.ok, o.requests_per_sec, o.p50_ms, o.p99_ms
        ),
        Err(e) => failures.push(format!("the clients: {e}")),
    }
    match &tunnel_bytes {
        Ok(n) => println!("tunnels: {:.1} MB carried intact", *n as f64 / 1e6),
        Err(e) => failures.push(format!("the tunnels: {e}")),
    }
    println!(
        "RSS: {:.1} MiB before, {:.1} MiB after; sockets: {fds_before} before, {fds_after} after",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
    // Flat after the warm-up: the last sample within 10 % (and 2 MiB) of
    // the one a quarter of the way in.
    let loaded: Vec<u64> = curve
        .iter()
        .filter(|(s, _, _)| *s > 0 && *s < u64::from(opts.secs))
        .map(|(_, r, _)| *r)
        .collect();
    if loaded.len() >= 4 {
        let warm = loaded[loaded.len() / 4];
        let last = loaded[loaded.len() - 1];
        println!(
            "RSS after warm-up: {:.1} MiB, at the end of the load {:.1} MiB",
            warm as f64 / 1024.0,
            last as f64 / 1024.0
        );
        if last as f64 > warm as f64 * 1.1 + 2048.0 {
            failures.push(format!(
                "RSS grew from {warm} KiB after warm-up to {last} KiB under the same load"
            ));
        }
    }
    if fds_after > fds_before {
        failures.push(format!(
            "sockets: {fds_before} before, {fds_after} after the clients left"
        ));
    }
    // The records of whatever did not end in a 200 (the tunnels' end in
    // their 200 too): what went wrong, from the proxy's side.
    // The log rotates under this load: every file of it.
    let mut log = String::new();
    if let Ok(dir) = std::fs::read_dir(work.file("log")) {
        for entry in dir.flatten() {
            log.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    let bad: Vec<&str> = log.lines().filter(|l| !l.contains(" 200 ")).collect();
    if !bad.is_empty() {
        println!("\n{} records other than 200, the first:", bad.len());
        for l in bad.iter().take(5) {
            println!("    {l}");
        }
    }
    for f in &failures {
        println!("FAILED: {f}");
    }
    Ok(failures.is_empty())
}

/// Whether the open-files limit (inherited by the proxy and wrk) fits
/// `conns` clients and `tunnels` tunnels.
pub(crate) fn check_limits(conns: u32, tunnels: usize) -> Result<()> {
    // The proxy holds two descriptors per client (client and pooled
    // upstream at worst) and two per tunnel; wrk one per client.
    let needed = 2 * conns as usize + 2 * tunnels + 200;
    let soft = procstat::open_files_limit()?;
    if soft < needed {
        bail!("the open-files limit is {soft}, {needed} are needed: run through bench/soak.sh");
    }
    Ok(())
}
