//! `proxy-std`: the blocking runtime. One thread per listener accepts; a
//! worker thread drives each busy client connection's sans-IO core over
//! both sockets with poll(2); idle connections wait in the parking lot,
//! one epoll(7) thread for all of them, and come back to a worker when
//! there is something to do (`server`, `workers`, `parking`).
//!
//! Shutdown (see `proxy_host::lifecycle`): every poll(2) in the process,
//! the accept threads' included, also waits on a lifecycle beacon
//! descriptor, so a signal wakes each thread at once however long it has
//! been blocked. On the first SIGINT/SIGTERM the accept threads return,
//! closing their listeners; each connection's driver hears
//! `Shutdown` and carries on until the core closes it; the main
//! thread waits for the live count to reach zero, or the grace period to
//! end (then the stop beacon ends tunnels and closes the rest).

mod alloc;
mod conn;
mod net;
mod parking;
mod relay;
mod server;
mod sys;
mod workers;

use clap::Parser;
use conn::Conn;
use proxy_core::{ConnId, Role};
use proxy_host::handover::{Handover, Inherited};
use proxy_host::lifecycle::Lifecycle;
use proxy_host::listener::{self, Sharing};
use server::Server;
use std::io::{self, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Connection ids, process-wide, from 1.
static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

fn main() {
    // First: nothing else may open a descriptor before these are owned.
    let mut inherited = match Inherited::from_env() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("proxy-std: {e}");
            std::process::exit(1);
        }
    };
    let args = proxy_host::Args::parse();
    let settings = match proxy_host::Settings::load(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("proxy-std: {e}");
            std::process::exit(2);
        }
    };
    let life = match Lifecycle::new() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("proxy-std: cannot set up shutdown: {e}");
            std::process::exit(1);
        }
    };
    let handover = Arc::new(Handover::new());
    if let Err(e) = proxy_host::signals::watch(
        "proxy-std",
        settings.clone(),
        life.clone(),
        handover.clone(),
    ) {
        eprintln!("proxy-std: cannot watch signals: {e}");
        std::process::exit(1);
    }
    if let Some(n) = settings.config().process.workers {
        proxy_host::diag::warn(format_args!(
            "workers: {n} is for proxy-smol; proxy-std runs a thread per busy connection"
        ));
    }
    let mut listeners = Vec::with_capacity(settings.listen.len() + 1);
    let mut lines = Vec::new();
    let from = inherited.source();
    for (addr, role) in settings.listeners() {
        let given = inherited.take(addr);
        if !given.is_empty() {
            lines.push((given[0].local_addr(), role, Some(from)));
            listeners.extend(given.into_iter().map(|l| (l, role)));
            continue;
        }
        match listener::bind(addr, Sharing::Alone, 1) {
            Ok(l) => {
                lines.push((l.local_addr(), role, None));
                listeners.push((l, role));
            }
            Err(e) => {
                eprintln!("proxy-std: cannot listen on {addr}: {e}");
                std::process::exit(1);
            }
        }
    }
    // Sockets no configured address claims serve as proxy listeners.
    for (l, addr) in inherited.take_rest() {
        let role = settings.role_of(addr);
        lines.push((Ok(addr), role, Some(from)));
        listeners.push((l, role));
    }
    for (l, _) in &listeners {
        if let Err(e) = handover.keep(l) {
            eprintln!("proxy-std: cannot keep a listener for an upgrade: {e}");
        }
    }
    {
        let mut err = std::io::stderr().lock();
        for (local, role, from) in lines {
            match local {
                Ok(a) => {
                    let mut line = settings.describe_listener(a, role);
                    if let Some(from) = from {
                        line.push_str(&format!(", {from}"));
                    }
                    let _ = writeln!(err, "{line}");
                }
                Err(e) => {
                    let _ = writeln!(err, "proxy-std: cannot listen: {e}");
                    std::process::exit(1);
                }
            }
        }
        let _ = err.flush();
    }
    // Bound: root (if we had it) is no longer needed.
    if !proxy_host::privileges::drop_at_start("proxy-std", &settings.config().process) {
        std::process::exit(1);
    }

    let server = match Server::new(settings, life.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("proxy-std: cannot set up the parking lot: {e}");
            std::process::exit(1);
        }
    };
    start_pool_sweeper(&server.conns);
    if let Err(e) = proxy_host::probe::start(server.conns.settings.clone(), server.conns.clock) {
        eprintln!("proxy-std: cannot start the parent checks: {e}");
        std::process::exit(1);
    }
    let lot = Arc::clone(&server);
    let spawned = std::thread::Builder::new()
        .name("parking-lot".to_owned())
        .stack_size(workers::WORKER_STACK)
        .spawn(move || lot.watch_parked());
    if let Err(e) = spawned {
        eprintln!("proxy-std: cannot start the parking lot: {e}");
        std::process::exit(1);
    }
    let mut accepters = Vec::with_capacity(listeners.len());
    for (listener, role) in listeners {
        if let Err(e) = listener.set_nonblocking(true) {
            eprintln!("proxy-std: cannot listen: {e}");
            std::process::exit(1);
        }
        let server = Arc::clone(&server);
        let spawned = std::thread::Builder::new()
            .name("accept".to_owned())
            .spawn(move || accept_loop(listener, role, &server));
        match spawned {
            Ok(h) => accepters.push(h),
            Err(e) => {
                eprintln!("proxy-std: cannot start an accept thread: {e}");
                std::process::exit(1);
            }
        }
    }
    inherited.took_over();
    life.run_until_shutdown(&server.conns.settings, || {
        // Each accept thread drops (closes) its listener as it returns.
        for h in accepters {
            let _ = h.join();
        }
    });
    // Pooled idle upstream connections, and any thread still blocked past
    // the grace period, go with the process.
}

/// Closes idle pooled upstream connections once they pass the idle
/// timeout, rather than only when a later request meets them.
fn start_pool_sweeper(shared: &Arc<conn::Shared>) {
    let idle = shared.settings.config().timeouts.upstream_idle;
    if idle.is_zero() {
        return; // nothing is ever pooled
    }
    let every = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let shared = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name("pool-sweeper".to_owned())
        .stack_size(workers::WORKER_STACK)
        .spawn(move || loop {
            std::thread::sleep(every);
            shared.pool.sweep();
        });
    if let Err(e) = spawned {
        eprintln!("proxy-std: cannot start the pool sweeper: {e}");
    }
}

/// Accepts clients, one thread each, until shutdown begins; then returns,
/// dropping (closing) the listener. The listener is non-blocking and
/// polled together with the lifecycle's drain beacon.
fn accept_loop(listener: TcpListener, role: Role, server: &Arc<Server>) {
    let life = &server.conns.life;
    // Whether accepted sockets come with Nagle off.
    let nodelay = listener::pass_nodelay(&listener).unwrap_or(false);
    loop {
        if life.is_draining() {
            return;
        }
        let mut fds = [
            sys::pollfd(Some(listener.as_raw_fd()), sys::POLLIN),
            sys::pollfd(Some(life.drain_fd()), sys::POLLIN),
        ];
        match sys::poll(&mut fds, -1) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("proxy-std: poll failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        }
        if fds[0].revents == 0 {
            continue;
        }
        // Take everything queued, then wait again.
        while !life.is_draining() {
            match listener::accept(&listener, nodelay) {
                Ok((stream, peer)) => spawn_connection(server, stream, peer, role),
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => break,
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted => {}
                    _ => {
                        // Out of descriptors or memory: back off rather than spin.
                        proxy_host::diag::ACCEPT_ERRORS.report(&e);
                        std::thread::sleep(proxy_host::diag::ACCEPT_BACKOFF);
                        break;
                    }
                },
            }
        }
    }
}

/// Hands one accepted client to a worker, counted as live until its
/// connection is dropped.
fn spawn_connection(
    server: &Arc<Server>,
    stream: std::net::TcpStream,
    peer: std::net::SocketAddr,
    role: Role,
) {
    let id = ConnId(NEXT_CONN.fetch_add(1, Ordering::Relaxed));
    let shared = &server.conns;
    let conn = Conn::new(shared, id, stream, peer, role, shared.life.track());
    server.run(conn);
}
