//! The `run` subcommand: start the origins, then measure every target in
//! turn with the same load, and print the table.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use crate::download;
use crate::error::{bail, Context, Result};
use crate::fetch;
use crate::https;
use crate::idle::{self, Hold};
use crate::origin::{self, addr};
use crate::ports::Ports;
use crate::procstat;
use crate::report::{self, Cell, Column, Figure};
use crate::service::Service;
use crate::sysinfo;
use crate::targets::{self, start_relay, Kind, Setup, Target};
use crate::tunnel::{self, Direction};
use crate::workdir::{Workdir, FILES};
use crate::wrk::{self, Load, Tolerate};

pub(crate) struct Options {
    pub(crate) secs: u32,
    /// Target names to run besides `direct`; empty: all.
    pub(crate) only: Vec<String>,
    pub(crate) idle_conns: usize,
    pub(crate) idle_tunnels: usize,
    pub(crate) out: Option<PathBuf>,
    pub(crate) bin_dir: PathBuf,
    pub(crate) proxy_config: PathBuf,
}

/// wrk's connections for the request-rate figures; our own client's for
/// the 10 MiB downloads (one thread each).
const CONNS: u32 = 64;
const DOWNLOAD_CONNS: usize = 4;
const TUNNELS: usize = 4;
/// Rest between measurements, for TIME_WAIT and the proxy to settle.
const PAUSE: Duration = Duration::from_secs(1);

/// Runs the whole benchmark; true if every figure was measured.
pub(crate) fn run(opts: &Options) -> Result<bool> {
    let targets = select(&opts.only)?;
    for tool in ["nginx", "wrk"] {
        if !sysinfo::has_program(tool) {
            bail!("{tool} is not installed (bench/run.sh installs it)");
        }
    }
    check_open_files(opts.idle_conns.max(2 * opts.idle_tunnels) + 200)?;
    let ticks = procstat::ticks_per_second()?;

    let work = Workdir::create()?;
    let mut ports = Ports::new();
    let origin_addr = addr(ports.take()?);
    let tls_addr = addr(ports.take()?);
    let nginx = origin::start_nginx(
        &work,
        origin_addr.port(),
        tls_addr.port(),
        origin::Accepts::OnePerTurn,
    )?;
    let sink = addr(ports.take()?);
    let source = addr(ports.take()?);
    let _streams = origin::start_tcp(&work, "tcp-origin", &[("sink", sink), ("source", source)])?;
    eprintln!(
        "proxy-bench: origin http://{origin_addr}/ and https://{tls_addr}/ (nginx), sink {sink}, source {source}, temp dir {}",
        work.path().display()
    );

    let bench = Bench {
        opts,
        setup: Setup {
            work: &work,
            bin_dir: &opts.bin_dir,
            proxy_config: &opts.proxy_config,
            origin: origin_addr,
        },
        dests: Dests {
            http: origin_addr,
            tls: tls_addr,
            sink,
            source,
        },
        nginx_pid: nginx.pid(),
        ticks,
    };
    let mut columns = Vec::new();
    for target in targets {
        eprintln!("== {}", target.name);
        columns.push(bench.target(target, &mut ports));
    }

    let settings = format!(
        "{} s per figure; wrk -t2 -c{CONNS} (10 MiB: our client, {DOWNLOAD_CONNS} connections; HTTPS: our client, {CONNS} TLS connections), every response checked; \
         {TUNNELS} tunnels per direction; {} idle requests and {} idle tunnels, each set on a freshly started proxy",
        opts.secs,
        report::thousands(opts.idle_conns as u64),
        report::thousands(opts.idle_tunnels as u64),
    );
    let failures: Vec<String> = columns.iter().flat_map(Column::failures).collect();
    let mut text = format!(
        "## proxy-bench\n\n{}\n{}\n{}",
        sysinfo::header(&settings),
        report::table(&columns),
        NOTES
    );
    if columns.iter().any(|c| c.name.ends_with("+cache")) {
        text.push_str(&format!("\n{CACHED}\n"));
    }
    for note in columns.iter().filter_map(Column::note) {
        text.push_str(&format!("\n{note}\n"));
    }
    if !failures.is_empty() {
        text.push_str("\n**FAILED**:\n\n");
        for f in &failures {
            text.push_str(&format!("- {f}\n"));
        }
    }
    println!("{text}");
    if let Some(out) = &opts.out {
        std::fs::write(out, &text).context(format!("writing {}", out.display()))?;
    }
    Ok(failures.is_empty())
}

/// The figures measured with wrk. (The 10 MiB downloader reconnects after
/// a close between responses for every target, see `download`.)
const WRK_FIGURES: [Figure; 5] = [
    Figure::KeepAlive1k,
    Figure::Latency1k,
    Figure::Cpu1k,
    Figure::NewConnection,
    Figure::KeepAlive64k,
];

const SILENT_CLOSES: &str = "closes the client connection after every response without sending \
`Connection: close` (no client keep-alive), which wrk counts as socket read/write errors. For this \
target only, those errors are tolerated up to one per response (connect errors, timeouts and any bad \
response still fail the figure; only complete, checked responses are counted), so its keep-alive \
figures are in fact one connection per request.";

const CACHED: &str = "`+cache`: the same binary with `--cache` (and `max_object: \"16MiB\"`); \
the origin's files say `Cache-Control: max-age=3600` and are fetched once before the figures, so \
every request measured is a hit answered from memory (each checked to say `Cache-Status: ...; hit`).";

const NOTES: &str = "Ratios are the target's figure ÷ direct's in this run (higher is better). \
CPU is user+sys of the proxy's processes ÷ checked responses; direct's is nginx's own. \
RSS per connection is the growth of the proxy's resident memory ÷ connections held.\n";

/// `direct` always, then the targets named by `--only` (all by default).
fn select(only: &[String]) -> Result<Vec<Target>> {
    for name in only {
        if !targets::ALL.iter().any(|t| t.name == name) {
            let names: Vec<&str> = targets::ALL.iter().map(|t| t.name).collect();
            bail!(
                "unknown target {name:?} in --only; known: {}",
                names.join(", ")
            );
        }
    }
    Ok(targets::ALL
        .into_iter()
        .filter(|t| t.kind == Kind::Direct || only.is_empty() || only.iter().any(|n| n == t.name))
        .collect())
}

/// Our process and every server it starts inherit this limit: we hold the
/// idle connections, a proxy holds two descriptors per idle tunnel.
fn check_open_files(needed: usize) -> Result<()> {
    let soft = procstat::open_files_limit()?;
    if soft < needed {
        bail!(
            "the open-files limit is {soft}, the idle figures need {needed}: run through bench/run.sh \
             (which raises it with ulimit -n), or lower --idle-conns/--idle-tunnels"
        );
    }
    Ok(())
}

/// The destinations: the HTTP origin, the TLS origin (both nginx), and
/// the TCP sink and source.
#[derive(Clone, Copy, Debug)]
struct Dests {
    http: SocketAddr,
    tls: SocketAddr,
    sink: SocketAddr,
    source: SocketAddr,
}

/// How a target's clients reach each destination.
#[derive(Clone, Copy, Debug)]
enum Route {
    /// Straight to it (`direct`).
    Direct,
    /// Through a proxy: requests in absolute form, CONNECT for tunnels
    /// and HTTPS.
    Proxy(SocketAddr),
    /// Through the minimal relay: a listener of its own stands for each
    /// destination and is spoken to as if it were the destination.
    Relay(Dests),
}

impl Route {
    /// Where HTTP clients connect, and whether requests go in absolute
    /// form (to a proxy).
    fn http(self, d: &Dests) -> (SocketAddr, bool) {
        match self {
            Route::Direct => (d.http, false),
            Route::Proxy(p) => (p, true),
            Route::Relay(r) => (r.http, false),
        }
    }

    /// The proxy (if any) and the address for a stream to `pick`'s
    /// destination.
    fn stream(self, d: &Dests, pick: fn(&Dests) -> SocketAddr) -> (Option<SocketAddr>, SocketAddr) {
        match self {
            Route::Direct => (None, pick(d)),
            Route::Proxy(p) => (Some(p), pick(d)),
            Route::Relay(r) => (None, pick(&r)),
        }
    }
}

/// The run's fixed parts, shared by every target.
struct Bench<'a> {
    opts: &'a Options,
    setup: Setup<'a>,
    dests: Dests,
    nginx_pid: u32,
    ticks: u64,
}

impl Bench<'_> {
    fn target(&self, target: Target, ports: &mut Ports) -> Column {
        let mut column = Column::new(target.name);
        let no_idle = |column: &mut Column| {
            column.set(Figure::IdleRequest, Cell::NotApplicable);
            column.set(Figure::IdleTunnel, Cell::NotApplicable);
        };
        match target.kind {
            Kind::Direct => {
                if let Err(e) = self.check_files(Route::Direct) {
                    column.fail(format!("failed the checks: {e}"));
                    return column;
                }
                self.throughput(
                    &mut column,
                    Route::Direct,
                    self.nginx_pid,
                    None,
                    false,
                    true,
                );
                no_idle(&mut column);
                return column;
            }
            Kind::Relay => {
                let mut relay = match self.start_relay(ports) {
                    Ok(started) => started,
                    Err(e) => {
                        column.fail(format!("did not start: {e}"));
                        return column;
                    }
                };
                let route = relay.1;
                if let Err(e) = self.check_files(route) {
                    column.fail(format!("failed the checks: {e}"));
                    return column;
                }
                let pid = relay.0.pid();
                self.throughput(&mut column, route, pid, Some(&mut relay.0), false, true);
                no_idle(&mut column);
                return column;
            }
            _ => {}
        }
        if let Some(program) = target.program(&self.setup) {
            if !sysinfo::has_program(&program) {
                column.fail(format!("{program} is not installed"));
                return column;
            }
        }
        let (mut proxy, at) = match self.start(target, ports) {
            Ok(started) => started,
            Err(e) => {
                column.fail(format!("did not start: {e}"));
                return column;
            }
        };
        let route = Route::Proxy(at);
        if let Err(e) = self.check_files(route) {
            column.fail(format!("failed the checks: {e}"));
            return column;
        }
        let cached = target.kind == Kind::OursCached;
        if cached {
            // The checks stored every file: from here on each request
            // is a hit, and must say so.
            if let Err(e) = self.check_hits(at) {
                column.fail(format!("the cache did not answer: {e}"));
                return column;
            }
        }
        let silent_closes = match fetch::closes_silently(at, self.dests.http) {
            Ok(silent) => silent,
            Err(e) => {
                column.fail(format!("failed the keep-alive probe: {e}"));
                return column;
            }
        };
        if silent_closes {
            column.mark(&WRK_FIGURES, SILENT_CLOSES.to_string());
            eprintln!("  closes client connections after each response without Connection: close");
        }
        // Tunnels do not meet the cache, and HAProxy (a reverse proxy)
        // has none.
        let streams = !cached && target.kind != Kind::Haproxy;
        let pid = proxy.pid();
        self.throughput(
            &mut column,
            route,
            pid,
            Some(&mut proxy),
            silent_closes,
            streams,
        );
        drop(proxy);
        if cached {
            no_idle(&mut column);
            return column;
        }
        // Each idle figure gets a fresh proxy, so that neither inherits
        // memory freed but kept by the allocator from the figures before.
        let requests = self.idle(target, ports, false);
        column.set(Figure::IdleRequest, requests);
        let tunnels = if streams {
            self.idle(target, ports, true)
        } else {
            Cell::NotApplicable
        };
        column.set(Figure::IdleTunnel, tunnels);
        column
    }

    fn start(&self, target: Target, ports: &mut Ports) -> Result<(Service, SocketAddr)> {
        let port = ports.take()?;
        let service = target.start(&self.setup, port)?;
        Ok((service, addr(port)))
    }

    /// The minimal relay, with a listener for each destination.
    fn start_relay(&self, ports: &mut Ports) -> Result<(Service, Route)> {
        let d = &self.dests;
        let listen = Dests {
            http: addr(ports.take()?),
            tls: addr(ports.take()?),
            sink: addr(ports.take()?),
            source: addr(ports.take()?),
        };
        let routes = [
            (listen.http, d.http),
            (listen.tls, d.tls),
            (listen.sink, d.sink),
            (listen.source, d.source),
        ];
        Ok((start_relay(&self.setup, &routes)?, Route::Relay(listen)))
    }

    /// A second GET of each file through `proxy`: answered by its cache.
    fn check_hits(&self, proxy: SocketAddr) -> Result<()> {
        for (name, size) in FILES {
            let path = format!("/{name}");
            let head = fetch::check_head(Some(proxy), self.dests.http, &path, size)?;
            let status = head
                .lines()
                .find_map(|l| l.strip_prefix("cache-status:"))
                .unwrap_or("none");
            if !status.contains("; hit") {
                bail!("GET {path}: Cache-Status {}", status.trim());
            }
        }
        Ok(())
    }

    /// One GET of each file, checked, by `route`.
    fn check_files(&self, route: Route) -> Result<()> {
        let (to, proxied) = route.http(&self.dests);
        let (proxy, origin) = if proxied {
            (Some(to), self.dests.http)
        } else {
            (None, to)
        };
        for (name, size) in FILES {
            fetch::check(proxy, origin, &format!("/{name}"), size)?;
        }
        Ok(())
    }

    /// The request-rate and throughput figures. `cpu_pid` is the process
    /// tree whose CPU is counted; `service`, when given, is asked whether it
    /// is still alive after a failure; `streams`: whether the target
    /// carries tunnels (CONNECT, and HTTPS through it).
    fn throughput(
        &self,
        column: &mut Column,
        route: Route,
        cpu_pid: u32,
        mut service: Option<&mut Service>,
        silent_closes: bool,
        streams: bool,
    ) {
        let mut record = |column: &mut Column, figure: Figure, result: Result<Cell>| {
            let cell = result.unwrap_or_else(|e| {
                let dead = service
                    .as_deref_mut()
                    .and_then(|s| s.check_alive().err())
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default();
                Cell::Failed(format!("{e}{dead}"))
            });
            eprintln!("  {}: {}", figure.label(), brief(&cell));
            column.set(figure, cell);
            thread::sleep(PAUSE);
        };
        let origin_cpu = matches!(route, Route::Direct);
        let micros = |us| Cell::Micros {
            us,
            origin: origin_cpu,
        };

        let keep_alive = self.with_cpu(cpu_pid, || {
            let o = self.wrk(route, "/1k", 1024, false, silent_closes)?;
            Ok((o.ok, o))
        });
        match keep_alive {
            Ok((o, us)) => {
                record(
                    column,
                    Figure::KeepAlive1k,
                    Ok(Cell::Rate(o.requests_per_sec)),
                );
                let latency = Cell::Latency {
                    p50_ms: o.p50_ms,
                    p99_ms: o.p99_ms,
                };
                record(column, Figure::Latency1k, Ok(latency));
                record(column, Figure::Cpu1k, Ok(micros(us)));
            }
            Err(e) => {
                let reason = e.to_string();
                record(column, Figure::KeepAlive1k, Err(e));
                column.set(Figure::Latency1k, Cell::Failed(reason.clone()));
                column.set(Figure::Cpu1k, Cell::Failed(reason));
            }
        }
        let new_conn = self.with_cpu(cpu_pid, || {
            let o = self.wrk(route, "/1k", 1024, true, silent_closes)?;
            Ok((o.ok, o))
        });
        match new_conn {
            Ok((o, us)) => {
                record(
                    column,
                    Figure::NewConnection,
                    Ok(Cell::Rate(o.requests_per_sec)),
                );
                record(column, Figure::CpuNewConnection, Ok(micros(us)));
            }
            Err(e) => {
                column.set(Figure::CpuNewConnection, Cell::Failed(e.to_string()));
                record(column, Figure::NewConnection, Err(e));
            }
        }
        let medium = self
            .wrk(route, "/64k", 64 * 1024, false, silent_closes)
            .map(|o| Cell::Rate(o.requests_per_sec));
        record(column, Figure::KeepAlive64k, medium);
        let download = self.download(route).map(Cell::Rate);
        record(column, Figure::Download10m, download);
        if !streams {
            for figure in [
                Figure::ConnectUpload,
                Figure::ConnectDownload,
                Figure::Https1k,
                Figure::HttpsCpu,
            ] {
                column.set(figure, Cell::NotApplicable);
            }
            return;
        }
        let secs = self.opts.secs;
        let (proxy, sink) = route.stream(&self.dests, |d| d.sink);
        let up = tunnel::throughput(proxy, sink, Direction::Upload, TUNNELS, secs);
        record(column, Figure::ConnectUpload, up.map(Cell::Rate));
        let (proxy, source) = route.stream(&self.dests, |d| d.source);
        let down = tunnel::throughput(proxy, source, Direction::Download, TUNNELS, secs);
        record(column, Figure::ConnectDownload, down.map(Cell::Rate));
        let (proxy, tls) = route.stream(&self.dests, |d| d.tls);
        let https = self.with_cpu(cpu_pid, || {
            let body = std::fs::read(self.setup.work.www().join("1k")).context("reading 1k")?;
            let o = https::run(&https::Load {
                proxy,
                dest: tls,
                cert: &self.setup.work.file(origin::CERT_FILE),
                path: "/1k",
                body: &body,
                connections: CONNS as usize,
                secs,
            })?;
            eprintln!("    (p99 {:.1} ms)", o.p99_ms);
            Ok((o.ok, o))
        });
        match https {
            Ok((o, us)) => {
                record(column, Figure::Https1k, Ok(Cell::Rate(o.requests_per_sec)));
                record(column, Figure::HttpsCpu, Ok(micros(us)));
            }
            Err(e) => {
                column.set(Figure::HttpsCpu, Cell::Failed(e.to_string()));
                record(column, Figure::Https1k, Err(e));
            }
        }
    }

    /// Runs `f`, which says how many responses it checked, and adds the
    /// CPU time `pid`'s process tree spent meanwhile per response, in µs.
    fn with_cpu<T>(&self, pid: u32, f: impl FnOnce() -> Result<(u64, T)>) -> Result<(T, f64)> {
        let before = procstat::cpu_ticks(pid)?;
        let (responses, out) = f()?;
        let after = procstat::cpu_ticks(pid)?;
        let us = after.saturating_sub(before) as f64 * 1e6 / self.ticks as f64 / responses as f64;
        Ok((out, us))
    }

    fn wrk(
        &self,
        route: Route,
        path: &str,
        size: usize,
        close: bool,
        silent_closes: bool,
    ) -> Result<wrk::Outcome> {
        let (connect_to, proxied) = route.http(&self.dests);
        let outcome = wrk::run(
            self.setup.work,
            &Load {
                connect_to,
                origin: self.dests.http,
                proxied,
                path,
                size,
                close,
                connections: CONNS,
                secs: self.opts.secs,
                tolerate: if silent_closes {
                    Tolerate::SilentCloses
                } else {
                    Tolerate::Nothing
                },
            },
        )?;
        if outcome.tolerated_errors > 0 {
            eprintln!(
                "    ({} socket errors from silent closes, {} checked responses)",
                outcome.tolerated_errors, outcome.ok
            );
        }
        Ok(outcome)
    }

    /// The 10 MiB download, with our own client: MB/s of checked bodies.
    fn download(&self, route: Route) -> Result<f64> {
        let path = self.setup.work.www().join("10m");
        let body = std::fs::read(&path).context(format!("reading {}", path.display()))?;
        let (connect_to, proxied) = route.http(&self.dests);
        let outcome = download::run(&download::Load {
            connect_to,
            origin: self.dests.http,
            proxied,
            path: "/10m",
            body: &body,
            connections: DOWNLOAD_CONNS,
            duration: Duration::from_secs(self.opts.secs.into()),
        })?;
        eprintln!(
            "    ({} checked responses on {} connections)",
            outcome.responses, outcome.connections
        );
        Ok(outcome.mb_per_sec)
    }

    /// RSS per idle connection on a freshly started proxy: incomplete
    /// requests, or (`tunnels`) CONNECT tunnels to a hold server.
    fn idle(&self, target: Target, ports: &mut Ports, tunnels: bool) -> Cell {
        let figure = if tunnels {
            Figure::IdleTunnel
        } else {
            Figure::IdleRequest
        };
        let cell = match self.idle_once(target, ports, tunnels) {
            Ok(kib) => Cell::Kib(kib),
            Err(e) => Cell::Failed(e.to_string()),
        };
        eprintln!("  {}: {}", figure.label(), brief(&cell));
        // Let the closed connections drain before the next proxy starts.
        thread::sleep(PAUSE * 2);
        cell
    }

    fn idle_once(&self, target: Target, ports: &mut Ports, tunnels: bool) -> Result<f64> {
        let (mut proxy, at) = self.start(target, ports)?;
        // The hold server runs only for this figure: stopping it closes
        // every held socket at once.
        let (_holder, hold, n) = if tunnels {
            let hold_addr = addr(ports.take()?);
            let holder = origin::start_tcp(self.setup.work, "hold", &[("hold", hold_addr)])?;
            (
                Some(holder),
                Hold::Tunnel { hold: hold_addr },
                self.opts.idle_tunnels,
            )
        } else {
            (
                None,
                Hold::IncompleteRequest {
                    origin: self.dests.http,
                },
                self.opts.idle_conns,
            )
        };
        // HAProxy's maxconn (see targets.rs) is under 10,000.
        let n = if target.kind == Kind::Haproxy {
            n.min(HAPROXY_IDLE)
        } else {
            n
        };
        let held =
            idle::measure(at, proxy.pid(), &hold, n).map_err(|e| match proxy.check_alive() {
                Err(dead) => crate::error::Error::new(format!("{e} ({dead})")),
                Ok(()) => e,
            })?;
        eprintln!(
            "    RSS {} KiB -> {} KiB for {n} connections ({} closed by the proxy); opened in {:.1} s, settled in {:.1} s",
            held.before_kib,
            held.after_kib,
            held.closed,
            held.open_time.as_secs_f64(),
            held.settle_time.as_secs_f64()
        );
        Ok(held.kib_per_conn)
    }
}

/// Idle connections held on HAProxy, within its `maxconn`.
const HAPROXY_IDLE: usize = 9_000;

/// A cell for the progress lines on stderr.
fn brief(cell: &Cell) -> String {
    match cell {
        Cell::Rate(v) => format!("{v:.1}"),
        Cell::Latency { p50_ms, p99_ms } => format!("{p50_ms:.3} / {p99_ms:.3} ms"),
        Cell::Micros { us, .. } => format!("{us:.2} µs"),
        Cell::Kib(k) => format!("{k:.2} KiB"),
        Cell::NotApplicable => "-".into(),
        Cell::Failed(reason) => format!("FAILED: {reason}"),
    }
}
