//! `proxy-smol`: the forward proxy on an async (smol) runtime.
//!
//! Every decision is `proxy-core`'s; this binary accepts connections,
//! runs one task per client on a multi-threaded executor, and moves bytes
//! and events between sockets and the core (see `driver`). Flags, config
//! files, resolution overrides, the pool and the access log come from the
//! shared `proxy_std` library, so it behaves as `proxy-std` does.
//!
//! Shutdown (see `proxy_std::lifecycle`): the executor runs on worker
//! threads while the main thread waits for a signal. On the first
//! SIGINT/SIGTERM each accept loop returns (its listener closes) and the
//! main thread waits for those tasks, then for the live-connection count
//! to reach zero or the grace period to end; each connection task races
//! its waits with the lifecycle's event (`begin_shutdown` when draining
//! begins; a tunnel ends and an exchange is cut off when the grace period
//! is over).

mod driver;
mod net;
mod relay;

use clap::Parser as _;
use driver::Shared;
use futures_lite::future;
use futures_lite::FutureExt as _;
use proxy_core::trace::Trace;
use proxy_core::{ConnId, Role};
use proxy_std::lifecycle::{ConnGuard, Lifecycle};
use proxy_std::pool::Pool;
use proxy_std::{Clock, Settings};
use smol::{Executor, Task, Timer};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// Most idle pooled connections kept per upstream address.
const POOL_PER_ADDR: usize = 8;

/// Connection ids, unique for the life of the process.
static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

fn main() -> ExitCode {
    let args = proxy_std::Args::parse();
    let settings = match Settings::load(&args) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("proxy-smol: {e}");
            return ExitCode::from(2);
        }
    };
    let life = match Lifecycle::new() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("proxy-smol: cannot set up shutdown: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = proxy_std::signals::watch("proxy-smol", (*settings).clone(), life.clone()) {
        eprintln!("proxy-smol: cannot watch signals: {e}");
        return ExitCode::from(1);
    }

    let mut listeners = Vec::new();
    let admin = settings.config().admin.listen.map(|a| (a, Role::Admin));
    for (addr, role) in settings
        .listen
        .iter()
        .map(|a| (*a, Role::Proxy))
        .chain(admin)
    {
        match bind(addr) {
            Ok((l, local)) => listeners.push((l, local, role)),
            Err(e) => {
                eprintln!("proxy-smol: cannot listen on {addr}: {e}");
                return ExitCode::from(1);
            }
        }
    }
    for (_, addr, role) in &listeners {
        match role {
            Role::Admin => eprintln!("admin pages on http://{addr}/_metrics and /_status"),
            Role::Proxy => eprintln!("listening on {addr}"),
        }
    }

    let traces = match &settings.record {
        Some(dir) => match trace_writer(dir.clone()) {
            Ok(sender) => Some(sender),
            Err(e) => {
                eprintln!("proxy-smol: cannot start the trace writer: {e}");
                return ExitCode::from(1);
            }
        },
        None => None,
    };
    let idle = settings.config().timeouts.upstream_idle;
    let shared = Arc::new(Shared {
        settings,
        clock: Clock::new(),
        pool: Pool::new(idle, POOL_PER_ADDR),
        traces,
        life: life.clone(),
    });

    // One executor, run by one thread per core; the main thread waits for
    // the end.
    let ex: &'static Executor<'static> = Box::leak(Box::new(Executor::new()));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    for i in 0..threads {
        let spawned = std::thread::Builder::new()
            .name(format!("proxy-smol-{i}"))
            .spawn(move || smol::block_on(ex.run(futures_lite::future::pending::<()>())));
        if let Err(e) = spawned {
            if i == 0 {
                eprintln!("proxy-smol: cannot start an executor thread: {e}");
                return ExitCode::from(1);
            }
            break;
        }
    }

    ex.spawn(sweep_pool(shared.clone(), idle)).detach();
    let accepters: Vec<Task<()>> = listeners
        .into_iter()
        .map(|(listener, _, role)| ex.spawn(accept_loop(ex, listener, role, shared.clone())))
        .collect();
    life.run_until_shutdown(&shared.settings, || {
        // Each accept loop drops (closes) its listener as it returns.
        for task in accepters {
            smol::block_on(task);
        }
    });
    // Pooled idle upstream connections, and any task still busy past the
    // grace period, go with the process.
    ExitCode::SUCCESS
}

fn bind(addr: SocketAddr) -> io::Result<(async_net::TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    Ok((async_net::TcpListener::try_from(listener)?, local))
}

/// Starts the thread that writes finished traces into `dir`.
///
/// One thread, not the blocking pool: serialising a trace holding large
/// bodies takes real CPU, and many at once would starve the executor.
fn trace_writer(dir: PathBuf) -> io::Result<mpsc::Sender<(Trace, ConnGuard)>> {
    let (sender, receiver) = mpsc::channel::<(Trace, ConnGuard)>();
    std::thread::Builder::new()
        .name("proxy-smol-traces".to_owned())
        .spawn(move || {
            // The guard goes once the trace is saved.
            for (trace, _guard) in receiver {
                if let Err(e) = proxy_std::settings::save_trace(&dir, &trace) {
                    eprintln!("proxy-smol: cannot save trace in {}: {e}", dir.display());
                }
            }
        })?;
    Ok(sender)
}

/// Accepts clients, one task each, until shutdown begins; then returns,
/// dropping (closing) the listener.
async fn accept_loop(
    ex: &'static Executor<'static>,
    listener: async_net::TcpListener,
    role: Role,
    shared: Arc<Shared>,
) {
    let life = &shared.life;
    loop {
        // The shutdown first, so a flood of clients cannot hold it off.
        let accepted = future::or(
            async {
                life.draining().await;
                None
            },
            async { Some(listener.accept().await) },
        )
        .await;
        match accepted {
            None => return,
            Some(Ok((stream, peer))) => {
                let id = ConnId(NEXT_CONN.fetch_add(1, Ordering::Relaxed));
                let stream: net::Stream = stream.into();
                let task = driver::serve(shared.clone(), stream, peer, id, role);
                // Live until the task ends, however it ends.
                let guard = life.track();
                // A bug in one connection must not take a worker thread
                // (and the connections on it) down with it.
                ex.spawn(async move {
                    let _ = AssertUnwindSafe(task).catch_unwind().await;
                    drop(guard);
                })
                .detach();
            }
            // Out of descriptors or the like: give connections time to
            // finish rather than spinning.
            Some(Err(_)) => {
                future::or(
                    async {
                        Timer::after(Duration::from_millis(50)).await;
                    },
                    life.draining(),
                )
                .await;
            }
        }
    }
}

/// Closes idle pooled connections once they expire, rather than when next
/// met, so origins are not kept waiting on sockets nobody will use.
async fn sweep_pool(shared: Arc<Shared>, idle: Duration) {
    let period = (idle / 2).clamp(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        Timer::after(period).await;
        shared.pool.sweep();
    }
}
