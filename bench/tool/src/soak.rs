//! The soak: many keep-alive clients and a few hundred tunnels through one
//! proxy for minutes, checking that nothing fails, that memory levels off
//! after the warm-up, and that no descriptor is left behind; then a
//! SIGTERM under load, checking that the proxy finishes what is in flight
//! and exits in time without losing an access record.
//!
//! wrk drives the clients (every response checked, as in `run`); the
//! tunnels trickle the pattern into the sink, which checks every byte.
//! RSS is sampled every few seconds and printed as a curve.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::thread;
use std::time::{Duration, Instant};

use crate::cleanup;
use crate::error::{bail, Context, Error, Result};
use crate::origin::{self, addr};
use crate::ports::Ports;
use crate::procstat;
use crate::service::Service;
use crate::tunnel;
use crate::workdir::Workdir;
use crate::wrk::{self, Load, Tolerate};

pub(crate) struct Options {
    pub(crate) binary: PathBuf,
    pub(crate) proxy_config: PathBuf,
    pub(crate) conns: u32,
    pub(crate) tunnels: usize,
    pub(crate) secs: u32,
}

/// Seconds between RSS samples.
const SAMPLE: Duration = Duration::from_secs(5);

/// The proxy's `timeouts.shutdown_grace`, set by the soak so that the
/// exit can be held to it.
const GRACE: Duration = Duration::from_secs(30);

/// The shutdown phase's clients, at most: enough to have hundreds of
/// requests in flight when the signal comes, few enough to start at once.
const SHUTDOWN_CLIENTS: u32 = 500;

/// How long the shutdown phase's clients run, and when the SIGTERM goes.
/// What is left after the signal (7 s) is shorter than wrk's 10-second
/// timeout, so a connection that only meets refused connects after the
/// exit never counts as a timeout: a timeout is a request left unanswered.
const SHUTDOWN_SECS: u32 = 10;
const SIGTERM_AFTER: Duration = Duration::from_secs(3);

/// The shutdown phase's requests (nginx ignores the query): its records
/// are told apart from the main load's by their target, however late the
/// writer got to the main load's.
const SHUTDOWN_PATH: &str = "/1k?sigterm";

pub(crate) fn run(opts: &Options) -> Result<bool> {
    let work = Workdir::create()?;
    let mut ports = Ports::new();
    let origin_addr = addr(ports.take()?);
    let tls = addr(ports.take()?);
    let _nginx = origin::start_nginx(
        &work,
        origin_addr.port(),
        tls.port(),
        origin::Accepts::AllQueued,
    )?;
    let sink = addr(ports.take()?);
    let _tcp = origin::start_tcp(&work, "tcp-origin", &[("sink", sink)])?;
    let proxy_addr = addr(ports.take()?);
    // Every record kept: the log would otherwise rotate the first ones
    // away under this load. Human lines, whatever the configuration says,
    // since the records are read back; the grace the exit is held to.
    let big_log = work.write(
        "soak.ron",
        &format!(
            "(logging: (max_size: \"4GiB\", format: Human), timeouts: (shutdown_grace: \"{}s\"))\n",
            GRACE.as_secs()
        ),
    )?;
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
        tolerate: Tolerate::Nothing,
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
                let threads = procstat::threads(pid);
                curve.push((
                    start.elapsed().as_secs(),
                    procstat::rss_kib(pid)?,
                    fds,
                    threads,
                ));
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

    let shutdown_clients = opts.conns.min(SHUTDOWN_CLIENTS);
    eprintln!(
        "soak: shutdown under load: {shutdown_clients} clients, SIGTERM after {} s",
        SIGTERM_AFTER.as_secs()
    );
    let shutdown =
        shutdown_under_load(&work, &mut proxy, proxy_addr, origin_addr, shutdown_clients)?;
    let phase_target = format!("http://{origin_addr}{SHUTDOWN_PATH}");
    // The writer is done: the proxy flushed the log before it exited.
    let log = read_log(&work.file("log"), &phase_target).context("reading the access log")?;

    println!("## soak: {name}\n");
    println!(
        "{} keep-alive clients (wrk -t2, every response checked) and {} CONNECT tunnels \
         (16 KiB every 100 ms each, checked by the sink) for {} s.\n",
        opts.conns, opts.tunnels, opts.secs
    );
    println!("| second | RSS (MiB) | descriptors | threads |\n|---:|---:|---:|---:|");
    for (s, rss, fds, threads) in &curve {
        println!("| {s} | {:.1} | {fds} | {threads} |", *rss as f64 / 1024.0);
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
        .filter(|(s, _, _, _)| *s > 0 && *s < u64::from(opts.secs))
        .map(|(_, r, _, _)| *r)
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
    if log.not_200 > 0 {
        println!("\n{} records other than 200, the first:", log.not_200);
        for l in &log.first_not_200 {
            println!("    {l}");
        }
    }

    if log.slow > 0 {
        println!(
            "\n{} GET records slower than {} ms, the first:",
            log.slow, SLOW_MS
        );
        for l in &log.first_slow {
            println!("    {l}");
        }
        if let Some(l) = &log.last_slow {
            println!("  the last:\n    {l}");
        }
    }

    shutdown.report(&log, &mut failures);
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

/// What the shutdown phase saw.
struct Shutdown {
    clients: u32,
    /// wrk's verdict: the responses it checked, or why the run failed.
    outcome: Result<wrk::Outcome>,
    /// The exit status and how long after the SIGTERM it came; `None` if
    /// the proxy had not exited well after the grace period.
    exit: Option<(ExitStatus, Duration)>,
    /// The proxy's `shutting down: waiting up to ... for N connections`.
    draining: Option<String>,
    /// The proxy's last word on its access log: records written and
    /// dropped since it started.
    log_counts: Option<(u64, u64)>,
}

/// The last phase: keep-alive clients again, and a SIGTERM while they
/// run. The proxy must stop accepting, finish what is in flight, close
/// the keep-alive connections, flush its log and exit 0 within the grace.
fn shutdown_under_load(
    work: &Workdir,
    proxy: &mut Service,
    proxy_addr: SocketAddr,
    origin: SocketAddr,
    clients: u32,
) -> Result<Shutdown> {
    let load = Load {
        connect_to: proxy_addr,
        origin,
        proxied: true,
        path: SHUTDOWN_PATH,
        size: 1024,
        close: false,
        connections: clients,
        secs: SHUTDOWN_SECS,
        tolerate: Tolerate::Shutdown,
    };
    let pid = proxy.pid();
    let (outcome, exit) = thread::scope(|scope| -> Result<_> {
        let wrk = scope.spawn(|| wrk::run(work, &load));
        thread::sleep(SIGTERM_AFTER);
        let sent = Instant::now();
        if !cleanup::send_signal(pid, "TERM") {
            bail!("could not send SIGTERM to the proxy ({pid})");
        }
        // Past the grace the proxy cuts what is left and takes a second
        // more to exit (`STOP_WAIT`); later still, it is stuck.
        let status = proxy.wait_exit(GRACE + Duration::from_secs(5))?;
        let exit = status.map(|s| (s, sent.elapsed()));
        let outcome = wrk
            .join()
            .map_err(|_| Error::new("the wrk thread panicked"))?;
        Ok((outcome, exit))
    })?;
    let said = std::fs::read_to_string(work.file("proxy.log")).unwrap_or_default();
    let draining = said
        .lines()
        .find(|l| l.starts_with("shutting down:"))
        .map(str::to_owned);
    let log_counts = said.lines().rev().find_map(log_counts);
    Ok(Shutdown {
        clients,
        outcome,
        exit,
        draining,
        log_counts,
    })
}

/// `access log: 1234 records written, 0 dropped`, the proxy's last line
/// about its log, as (written, dropped).
fn log_counts(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("access log: ")?;
    let (written, dropped) = rest.split_once(" records written, ")?;
    Some((
        written.parse().ok()?,
        dropped.strip_suffix(" dropped")?.parse().ok()?,
    ))
}

impl Shutdown {
    /// Prints what the phase saw and adds what went wrong to `failures`.
    fn report(&self, log: &LogSummary, failures: &mut Vec<String>) {
        println!("\n### shutdown under load\n");
        println!(
            "{} keep-alive clients (wrk, every response checked) for {} s, \
             SIGTERM to the proxy after {} s (grace {} s).\n",
            self.clients,
            SHUTDOWN_SECS,
            SIGTERM_AFTER.as_secs(),
            GRACE.as_secs()
        );
        if let Some(line) = &self.draining {
            println!("proxy: {line}");
        }
        match self.exit {
            Some((status, after)) => {
                println!("exit: {status}, {:.2} s after SIGTERM", after.as_secs_f64());
                if !status.success() {
                    failures.push(format!("the proxy exited with {status} after SIGTERM"));
                }
                if after > GRACE {
                    failures.push(format!(
                        "the proxy took {:.1} s to exit, past the {} s grace: it cut what was in flight",
                        after.as_secs_f64(),
                        GRACE.as_secs()
                    ));
                }
            }
            None => failures.push(format!(
                "the proxy had not exited {} s after SIGTERM",
                (GRACE + Duration::from_secs(5)).as_secs()
            )),
        }
        match &self.outcome {
            Ok(o) => {
                println!(
                    "responses: {} checked; {} socket errors once the proxy closed (expected)",
                    o.ok, o.tolerated_errors
                );
                println!(
                    "records: {} of these requests with status 200, {} other",
                    log.phase_200, log.phase_other
                );
                if log.phase_200 != o.ok {
                    failures.push(format!(
                        "{} responses were checked by the clients but the log has {} records with status 200 for them",
                        o.ok, log.phase_200
                    ));
                }
            }
            Err(e) => failures.push(format!("the shutdown phase's clients: {e}")),
        }
        match self.log_counts {
            Some((written, dropped)) => {
                println!(
                    "access log: {written} records written, {dropped} dropped (the proxy's count); {} lines in the file",
                    log.lines
                );
                if dropped > 0 {
                    failures.push(format!("the access log dropped {dropped} records"));
                }
                if written != log.lines {
                    failures.push(format!(
                        "the proxy says it wrote {written} records, the log has {} lines",
                        log.lines
                    ));
                }
            }
            None => failures.push(
                "the proxy did not say at exit how many records it wrote and dropped".to_owned(),
            ),
        }
    }
}

/// What the access log holds, read once at the end.
#[derive(Debug, Default)]
struct LogSummary {
    lines: u64,
    /// Records with a status other than 200, and the first few.
    not_200: u64,
    first_not_200: Vec<String>,
    /// Records of the shutdown phase's requests: with status 200, and not.
    phase_200: u64,
    phase_other: u64,
    /// HTTP records that took longer than [`SLOW`] (wrk gives up on a
    /// request at 10 s and counts a timeout), and the first few.
    slow: u64,
    first_slow: Vec<String>,
    last_slow: Option<String>,
}

/// A request slower than this under the soak's load is worth a look.
const SLOW_MS: u64 = 5_000;

/// Reads every file in the log directory, a line at a time (a long soak
/// writes gigabytes). `phase_target` is the shutdown phase's request
/// target.
fn read_log(dir: &Path, phase_target: &str) -> io::Result<LogSummary> {
    let mut summary = LogSummary::default();
    for entry in std::fs::read_dir(dir)? {
        for line in BufReader::new(File::open(entry?.path())?).lines() {
            summary.count(&line?, phase_target);
        }
    }
    Ok(summary)
}

impl LogSummary {
    /// Counts one human-format line: `TIME CLIENT METHOD TARGET -> UPSTREAM
    /// STATUS BYTES DURATION ...`.
    fn count(&mut self, line: &str, phase_target: &str) {
        self.lines += 1;
        let fields: Vec<&str> = line.splitn(10, ' ').collect();
        let status = fields.get(6).copied().unwrap_or("");
        let millis = fields
            .get(8)
            .and_then(|d| d.strip_suffix("ms"))
            .and_then(|d| d.parse::<u64>().ok());
        if fields.get(2) == Some(&"GET") && millis.is_some_and(|ms| ms > SLOW_MS) {
            self.slow += 1;
            if self.first_slow.len() < 5 {
                self.first_slow.push(line.to_owned());
            }
            self.last_slow = Some(line.to_owned());
        }
        if status != "200" {
            self.not_200 += 1;
            if self.first_not_200.len() < 5 {
                self.first_not_200.push(line.to_owned());
            }
        }
        if fields.get(2) == Some(&"GET") && fields.get(3) == Some(&phase_target) {
            if status == "200" {
                self.phase_200 += 1;
            } else {
                self.phase_other += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_phase_records_apart() {
        let target = "http://127.0.0.1:18001/1k?sigterm";
        let mut s = LogSummary::default();
        for line in [
            "2026-01-01T00:00:00.000Z 127.0.0.1:4000 GET http://127.0.0.1:18001/1k -> 127.0.0.1:18001 200 1300B 0ms",
            "2026-01-01T00:00:00.000Z 127.0.0.1:4000 CONNECT 127.0.0.1:18003 -> 127.0.0.1:18003 200 39B 30000ms client_sent=4800000B",
            "2026-01-01T00:00:01.000Z 127.0.0.1:4001 GET http://127.0.0.1:18001/1k?sigterm -> 127.0.0.1:18001 200 1300B 1ms",
            "2026-01-01T00:00:01.000Z 127.0.0.1:4002 GET http://127.0.0.1:18001/1k?sigterm -> 127.0.0.1:18001 200 1300B 1ms",
            "2026-01-01T00:00:01.000Z 127.0.0.1:4003 GET http://127.0.0.1:18001/1k?sigterm -> 127.0.0.1:18001 502 200B 1ms error=connection_refused",
            "2026-01-01T00:00:02.000Z 127.0.0.1:4004 GET http://127.0.0.1:18001/1k -> 127.0.0.1:18001 200 1300B 10500ms",
        ] {
            s.count(line, target);
        }
        assert_eq!(
            (s.lines, s.phase_200, s.phase_other, s.not_200, s.slow),
            (6, 2, 1, 1, 1)
        );
        assert!(s.first_not_200[0].ends_with("error=connection_refused"));
        assert!(
            s.first_slow[0].ends_with(" 10500ms"),
            "the slow GET, not the long tunnel"
        );
    }

    #[test]
    fn reads_the_proxys_last_word_on_its_log() {
        assert_eq!(
            log_counts("access log: 1234567 records written, 3 dropped"),
            Some((1_234_567, 3))
        );
        // The start-up line says where the log goes, not what it did.
        assert_eq!(
            log_counts("access log: /tmp/x/log/access.log (human, rotate at 4GiB, keep 5)"),
            None
        );
    }
}
