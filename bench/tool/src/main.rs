//! proxy-bench: the benchmark of proxy-std and proxy-smol against
//! HAProxy, tinyproxy, Squid, a minimal relay and direct-to-origin, in one
//! run (see bench/README.md;
//! run it through bench/run.sh, which installs the tools and raises the
//! open-files limit).

mod cleanup;
mod download;
mod error;
mod fetch;
mod https;
mod idle;
mod origin;
mod pattern;
mod ports;
mod procstat;
mod relay;
mod report;
mod run;
mod service;
mod soak;
mod sysinfo;
mod targets;
mod tunnel;
mod workdir;
mod wrk;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::error::{Context, Result};

#[derive(Parser)]
#[command(
    name = "proxy-bench",
    about = "Benchmark the proxies against direct-to-origin"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Measure every target and print the table (exit 1 if any figure failed).
    Run(RunArgs),
    /// The TCP sink/source/hold servers (started by `run`).
    Origin(OriginArgs),
    /// The minimal relay, the physical-limit column (started by `run`).
    Relay(RelayArgs),
    /// Many keep-alive clients and tunnels through one proxy for minutes:
    /// no failure, flat memory, no descriptor left (bench/soak.sh).
    Soak(SoakArgs),
}

#[derive(Args)]
struct SoakArgs {
    /// The proxy binary (proxy-smol or proxy-std).
    binary: PathBuf,
    /// Keep-alive clients (wrk connections).
    #[arg(long, default_value_t = 8000)]
    conns: u32,
    /// CONNECT tunnels trickling data meanwhile.
    #[arg(long, default_value_t = 200)]
    tunnels: usize,
    /// How long.
    #[arg(long, default_value_t = 600)]
    secs: u32,
    /// The configuration layer given to the proxy.
    #[arg(long, default_value = "bench/proxy.ron")]
    proxy_config: PathBuf,
}

#[derive(Args)]
struct RelayArgs {
    /// LISTEN=TO: forward every connection to LISTEN to TO (repeatable).
    #[arg(long = "route", value_parser = parse_route, required = true)]
    routes: Vec<(SocketAddr, SocketAddr)>,
}

fn parse_route(s: &str) -> std::result::Result<(SocketAddr, SocketAddr), String> {
    let (listen, to) = s.split_once('=').ok_or("expected LISTEN=TO")?;
    let addr = |a: &str| a.parse::<SocketAddr>().map_err(|e| format!("{a}: {e}"));
    Ok((addr(listen)?, addr(to)?))
}

#[derive(Args)]
struct RunArgs {
    /// Seconds each throughput figure runs.
    #[arg(long, default_value_t = 10)]
    secs: u32,
    /// Targets to run besides direct, comma-separated: relay, proxy-std, proxy-smol, proxy-std+cache, proxy-smol+cache, haproxy, tinyproxy, squid.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Idle incomplete requests held for the RSS figure.
    #[arg(long, default_value_t = 10_000)]
    idle_conns: usize,
    /// Idle CONNECT tunnels held for the RSS figure.
    #[arg(long, default_value_t = 9_000)]
    idle_tunnels: usize,
    /// Also write the table (Markdown) to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where proxy-std and proxy-smol are; default: beside this program.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// The configuration layer given to our proxies.
    #[arg(long, default_value = "bench/proxy.ron")]
    proxy_config: PathBuf,
}

#[derive(Args)]
struct OriginArgs {
    /// Reads and discards until EOF.
    #[arg(long)]
    sink: Option<SocketAddr>,
    /// Writes until the peer closes, after the client's first bytes.
    #[arg(long)]
    source: Option<SocketAddr>,
    /// Keeps every connection open without reading.
    #[arg(long)]
    hold: Option<SocketAddr>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Run(args) => run(args),
        Cmd::Origin(args) => origin::serve(args.sink, args.source, args.hold).map(|()| true),
        Cmd::Relay(args) => relay::serve(&args.routes).map(|()| true),
        Cmd::Soak(args) => soak(args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("proxy-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn soak(args: SoakArgs) -> Result<bool> {
    cleanup::watch_signals()?;
    soak::check_limits(args.conns, args.tunnels)?;
    let proxy_config = std::fs::canonicalize(&args.proxy_config)
        .context(format!("the proxy config {}", args.proxy_config.display()))?;
    soak::run(&soak::Options {
        binary: args.binary,
        proxy_config,
        conns: args.conns,
        tunnels: args.tunnels,
        secs: args.secs,
    })
}

fn run(args: RunArgs) -> Result<bool> {
    cleanup::watch_signals()?;
    let bin_dir = match args.bin_dir {
        Some(dir) => dir,
        None => std::env::current_exe()
            .context("finding proxy-bench's own path")?
            .parent()
            .context("proxy-bench's path has no parent")?
            .to_path_buf(),
    };
    let proxy_config = std::fs::canonicalize(&args.proxy_config)
        .context(format!("the proxy config {}", args.proxy_config.display()))?;
    run::run(&run::Options {
        secs: args.secs,
        only: args.only,
        idle_conns: args.idle_conns,
        idle_tunnels: args.idle_tunnels,
        out: args.out,
        bin_dir,
        proxy_config,
    })
}
