//! `proxy-std`: the blocking runtime. One thread per listener accepts; one
//! thread per client connection drives the sans-IO core over both sockets
//! with poll(2).

mod driver;
mod relay;
mod sys;

use clap::Parser;
use driver::Shared;
use proxy_core::ConnId;
use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Stack size of a connection thread: the loop keeps its buffers on the
/// heap, so a small stack serves many connections cheaply.
const CONN_STACK: usize = 256 * 1024;

/// Connection ids, process-wide, from 1.
static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

fn main() {
    let args = proxy_std::Args::parse();
    let settings = match proxy_std::Settings::load(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("proxy-std: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = proxy_std::signals::reload_on_sighup(settings.clone()) {
        eprintln!("proxy-std: cannot watch SIGHUP: {e}");
        std::process::exit(1);
    }
    let mut listeners = Vec::with_capacity(settings.listen.len());
    for addr in &settings.listen {
        match TcpListener::bind(addr) {
            Ok(l) => listeners.push(l),
            Err(e) => {
                eprintln!("proxy-std: cannot listen on {addr}: {e}");
                std::process::exit(1);
            }
        }
    }
    {
        let mut err = std::io::stderr().lock();
        for l in &listeners {
            match l.local_addr() {
                Ok(a) => {
                    let _ = writeln!(err, "listening on {a}");
                }
                Err(e) => {
                    let _ = writeln!(err, "proxy-std: cannot listen: {e}");
                    std::process::exit(1);
                }
            }
        }
        let _ = err.flush();
    }

    let shared = Arc::new(Shared::new(settings));
    start_pool_sweeper(&shared);
    let mut accepters = Vec::with_capacity(listeners.len());
    for listener in listeners {
        let shared = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("accept".to_owned())
            .spawn(move || accept_loop(&listener, &shared));
        match spawned {
            Ok(h) => accepters.push(h),
            Err(e) => {
                eprintln!("proxy-std: cannot start an accept thread: {e}");
                std::process::exit(1);
            }
        }
    }
    for h in accepters {
        let _ = h.join();
    }
}

/// Closes idle pooled upstream connections once they pass the idle
/// timeout, rather than only when a later request meets them.
fn start_pool_sweeper(shared: &Arc<Shared>) {
    let idle = shared.settings.config().timeouts.upstream_idle;
    if idle.is_zero() {
        return; // nothing is ever pooled
    }
    let every = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let shared = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name("pool-sweeper".to_owned())
        .stack_size(CONN_STACK)
        .spawn(move || loop {
            std::thread::sleep(every);
            shared.pool.sweep();
        });
    if let Err(e) = spawned {
        eprintln!("proxy-std: cannot start the pool sweeper: {e}");
    }
}

/// Accepts clients forever, one thread each.
fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                let id = ConnId(NEXT_CONN.fetch_add(1, Ordering::Relaxed));
                let shared = Arc::clone(shared);
                let spawned = std::thread::Builder::new()
                    .stack_size(CONN_STACK)
                    .spawn(move || driver::serve(&shared, id, stream, peer));
                if let Err(e) = spawned {
                    // The stream went with the closure and is closed.
                    eprintln!("proxy-std: cannot start a connection thread: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            Err(e) => match e.kind() {
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::ConnectionAborted => {}
                _ => {
                    // Out of descriptors or memory: back off rather than spin.
                    eprintln!("proxy-std: accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            },
        }
    }
}
