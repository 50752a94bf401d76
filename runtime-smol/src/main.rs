//! `proxy-smol`: the forward proxy on an async (smol) runtime.
//!
//! Every decision is `proxy-core`'s; this binary accepts connections,
//! runs one task per client, and moves bytes and events between sockets
//! and the core (see `conn`). Flags, config files, resolution
//! overrides, the pool and the access log come from the shared
//! `proxy_host` library, so it behaves as `proxy-std` does.
//!
//! Threads: one per core, each with its own single-threaded executor and
//! its own listening socket per proxy address (`SO_REUSEPORT`, so the
//! kernel spreads new connections across them); a connection's task stays
//! on the thread that accepted it. Measured against one executor shared
//! by all threads (2 cores, keep-alive 1 KiB requests): a third more
//! requests per second and half the CPU per request for a client alone,
//! as many for 4 to 64 clients with up to a sixth less CPU. A woken task
//! is not handed to another thread through the shared queue (a futex
//! wake-up, often a reactor notification too), and per-thread buffer
//! pools (`proxy_host::buf`) stay balanced instead of filling on the
//! threads tasks drift to. The admin listener, if any, is on the first
//! thread only. Each thread's executor runs on that thread's own reactor
//! (`reactor`: its epoll instance, its sockets, its timers), so an event
//! never crosses threads either.
//!
//! Shutdown (see `proxy_host::lifecycle`): the main thread waits for a
//! signal. On the first SIGINT/SIGTERM each accept loop returns (its
//! listener closes) and the main thread waits for all of them, then for
//! the live-connection count to reach zero or the grace period to end;
//! each connection task races its waits with the lifecycle's event
//! (`begin_shutdown` when draining begins; a tunnel ends and an exchange
//! is cut off when the grace period is over).

mod conn;
mod net;
mod reactor;
mod relay;

use clap::Parser as _;
use conn::Shared;
use futures_lite::future;
use futures_lite::FutureExt as _;
use proxy_core::trace::Trace;
use proxy_core::{ConnId, Role};
use proxy_host::handover::{Handover, Inherited};
use proxy_host::lifecycle::{ConnGuard, Lifecycle};
use proxy_host::listener::{self, Sharing};
use proxy_host::pool::Pool;
use proxy_host::{Clock, Settings};
use reactor::{Io, Timer};
use smol::LocalExecutor;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// How long the kernel holds a silent new connection before handing it
/// over anyway (`proxy_host::sockopt::defer_accept`).
const DEFER_ACCEPT_SECS: u32 = 1;

/// Connection ids, unique for the life of the process.
static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

fn main() -> ExitCode {
    // First: nothing else may open a descriptor before these are owned.
    let mut inherited = match Inherited::from_env() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("proxy-smol: {e}");
            return ExitCode::from(1);
        }
    };
    let args = proxy_host::Args::parse();
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
    let handover = Arc::new(Handover::new());
    if let Err(e) = proxy_host::signals::watch(
        "proxy-smol",
        (*settings).clone(),
        life.clone(),
        handover.clone(),
    ) {
        eprintln!("proxy-smol: cannot watch signals: {e}");
        return ExitCode::from(1);
    }

    let threads = settings
        .config()
        .process
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    proxy_host::diag::info(format_args!(
        "{threads} executor thread{}",
        if threads == 1 { "" } else { "s" }
    ));
    // Each thread's listening sockets.
    let mut listeners: Vec<Vec<(TcpListener, Role)>> = (0..threads).map(|_| Vec::new()).collect();
    let mut wanted: Vec<(SocketAddr, Role)> = settings.listeners();
    let mut passed: Vec<Vec<TcpListener>> = wanted
        .iter()
        .map(|(addr, _)| inherited.take(*addr))
        .collect();
    // Sockets no configured address claims serve as proxy listeners.
    for (listener, addr) in inherited.take_rest() {
        wanted.push((addr, settings.role_of(addr)));
        passed.push(vec![listener]);
    }
    for ((addr, role), given) in wanted.into_iter().zip(passed) {
        // The admin pages get one socket; a proxy address one per thread,
        // all on the port the first one got (the address may say port 0).
        let copies = match role {
            Role::Admin => 1,
            Role::Proxy | Role::Balanced => threads,
        };
        let from = (!given.is_empty()).then(|| inherited.source());
        let bound = if given.is_empty() {
            bind(addr).and_then(|first| {
                let local = first.local_addr()?;
                let mut all = vec![vec![first]];
                for _ in 1..copies {
                    all.push(vec![bind(local)?]);
                }
                Ok((all, local))
            })
        } else {
            given[0]
                .local_addr()
                .and_then(|local| Ok((spread(given, copies)?, local)))
        };
        match bound {
            Ok((all, local)) => {
                // Kept before the line is printed: whoever reads it may
                // send SIGUSR2 at once, and the upgrade needs the socket.
                for (i, mine) in all.into_iter().enumerate() {
                    for listener in mine {
                        if let Err(e) = handover.keep(&listener) {
                            eprintln!("proxy-smol: cannot keep {local} for an upgrade: {e}");
                        }
                        listeners[i].push((listener, role));
                    }
                }
                let mut line = settings.describe_listener(local, role);
                if let Some(from) = from {
                    line.push_str(&format!(", {from}"));
                }
                eprintln!("{line}");
            }
            Err(e) => {
                eprintln!("proxy-smol: cannot listen on {addr}: {e}");
                return ExitCode::from(1);
            }
        }
    }

    // Bound: root (if we had it) is no longer needed.
    if !proxy_host::privileges::drop_at_start("proxy-smol", &settings.config().process) {
        return ExitCode::from(1);
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
        // One per executor thread: see `Shared::pools`.
        pools: (0..threads)
            .map(|_| Pool::new(idle, proxy_host::pool::MAX_IDLE_PER_ADDR))
            .collect(),
        traces,
        life: life.clone(),
    });

    if let Err(e) = proxy_host::probe::start(shared.settings.clone(), shared.clock) {
        eprintln!("proxy-smol: cannot start the parent checks: {e}");
        return ExitCode::from(1);
    }

    // One executor per thread; the main thread waits for the end. Each
    // accept loop says when it is over (its listener closed), even if it
    // panicked.
    let (over, accept_loops_over) = mpsc::channel::<()>();
    let mut accept_loops = 0;
    for (i, mine) in listeners.into_iter().enumerate() {
        accept_loops += mine.len();
        let shared = shared.clone();
        let over = over.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("proxy-smol-{i}"))
            .spawn(move || {
                // Lives as long as the process, like the thread.
                let ex: &'static LocalExecutor<'static> = Box::leak(Box::new(LocalExecutor::new()));
                ex.spawn(sweep_pool(shared.clone(), i, idle)).detach();
                for (listener, role) in mine {
                    let done = Signal(over.clone());
                    let local = Local { ex, worker: i };
                    ex.spawn(accept_loop(local, listener, role, shared.clone(), done))
                        .detach();
                }
                reactor::block_on(ex.run(future::pending::<()>()))
            });
        if let Err(e) = spawned {
            // Its listeners would queue connections nobody accepts.
            eprintln!("proxy-smol: cannot start an executor thread: {e}");
            return ExitCode::from(1);
        }
    }
    drop(over);
    inherited.took_over();
    life.run_until_shutdown(&shared.settings, || {
        // Each accept loop drops (closes) its listener as it returns.
        for _ in 0..accept_loops {
            if accept_loops_over.recv().is_err() {
                break;
            }
        }
    });
    // Pooled idle upstream connections, and any task still busy past the
    // grace period, go with the process.
    ExitCode::SUCCESS
}

/// Passed sockets of one address over `copies` threads: each socket to
/// one thread, in turn, and a thread left without one shares one (a
/// duplicate descriptor: the same accept queue), so every socket is
/// served and every thread accepts.
fn spread(given: Vec<TcpListener>, copies: usize) -> io::Result<Vec<Vec<TcpListener>>> {
    let passed = given.len();
    let mut per: Vec<Vec<TcpListener>> = (0..copies).map(|_| Vec::new()).collect();
    for (j, listener) in given.into_iter().enumerate() {
        per[j % copies].push(listener);
    }
    for i in passed..copies {
        let shared = per[i % passed][0].try_clone()?;
        per[i].push(shared);
    }
    Ok(per)
}

/// A listening socket on `addr` that the other executors' sockets share.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    listener::bind(addr, Sharing::ReusePort, DEFER_ACCEPT_SECS)
}

/// Sends once when dropped: tells the main thread an accept loop is over,
/// however it ended.
struct Signal(mpsc::Sender<()>);

impl Drop for Signal {
    fn drop(&mut self) {
        // Only fails if the main thread stopped listening; nothing to do.
        let _ = self.0.send(());
    }
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
                if let Err(e) = proxy_host::settings::save_trace(&dir, &trace) {
                    eprintln!("proxy-smol: cannot save trace in {}: {e}", dir.display());
                }
            }
        })?;
    Ok(sender)
}

/// An executor thread: its executor and its index.
#[derive(Clone, Copy)]
struct Local {
    ex: &'static LocalExecutor<'static>,
    worker: usize,
}

/// Accepts clients, one task each on this thread's executor, until
/// shutdown begins; then returns, dropping (closing) the listener and
/// `done`.
async fn accept_loop(
    local: Local,
    listener: TcpListener,
    role: Role,
    shared: Arc<Shared>,
    _done: Signal,
) {
    // Whether accepted sockets come with Nagle off.
    let nodelay = listener::pass_nodelay(&listener).unwrap_or(false);
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| Io::new(listener))
    {
        Ok(l) => l,
        Err(e) => {
            eprintln!("proxy-smol: cannot accept connections: {e}");
            return;
        }
    };
    let life = &shared.life;
    loop {
        // The shutdown first, so a flood of clients cannot hold it off.
        let accepted = future::or(
            async {
                life.draining().await;
                None
            },
            async {
                Some(
                    listener
                        .read_with(|l| listener::accept(l.get_ref(), nodelay))
                        .await,
                )
            },
        )
        .await;
        match accepted {
            None => return,
            Some(Ok((stream, peer))) => {
                let id = ConnId(NEXT_CONN.fetch_add(1, Ordering::Relaxed));
                let stream: net::Stream = match Io::new(stream) {
                    Ok(s) => Arc::new(s),
                    // Out of reactor room: like a failed accept.
                    Err(_) => continue,
                };
                // Live until the task ends, however it ends.
                let guard = life.track();
                let task = conn::serve(shared.clone(), local.worker, stream, peer, id, role, guard);
                // A bug in one connection must not take a worker thread
                // (and the connections on it) down with it. The future is
                // spawned as it is, not inside an `async` block: a block
                // would hold it twice (captured, then moved into the
                // awaited future), doubling every connection's task.
                local
                    .ex
                    .spawn(AssertUnwindSafe(task).catch_unwind())
                    .detach();
            }
            // Out of descriptors or the like: give connections time to
            // finish rather than spinning.
            Some(Err(e)) => {
                proxy_host::diag::ACCEPT_ERRORS.report(&e);
                future::or(
                    async {
                        Timer::after(proxy_host::diag::ACCEPT_BACKOFF).await;
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
/// (Each thread sweeps its own pool.)
async fn sweep_pool(shared: Arc<Shared>, worker: usize, idle: Duration) {
    let period = (idle / 2).clamp(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        Timer::after(period).await;
        shared.pools[worker].sweep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener() -> TcpListener {
        TcpListener::bind("127.0.0.1:0").unwrap()
    }

    /// Every passed socket is served by a thread, and every thread gets
    /// one: fewer sockets than threads are shared, more are dealt out.
    #[test]
    fn passed_sockets_are_spread_over_every_thread() {
        let one = listener();
        let addr = one.local_addr().unwrap();
        let per = spread(vec![one], 3).unwrap();
        assert_eq!(per.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1]);
        assert!(per
            .iter()
            .flatten()
            .all(|l| l.local_addr().unwrap() == addr));
        let per = spread(vec![listener(), listener(), listener()], 2).unwrap();
        assert_eq!(per.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
        let per = spread(vec![listener(), listener()], 1).unwrap();
        assert_eq!(per.iter().map(Vec::len).collect::<Vec<_>>(), [2]);
    }
}
