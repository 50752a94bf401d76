//! The worker threads that run connections while they have work.
//!
//! A job (a connection run until it closes or parks, see `crate::server`)
//! runs on one worker; a parked connection comes back as a new job on
//! whichever worker is free. Threads are made as jobs need them, up to
//! [`MAX_WORKERS`]; past that, jobs queue until a worker is free. A
//! worker with nothing to do for [`WORKER_IDLE`] ends, so a burst leaves
//! no crowd of idle threads (and their stacks) behind.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Most worker threads at once. Each holds one connection that is busy
/// (reading a head, waiting for an origin, relaying); idle ones are parked
/// and hold none, and while connections queue for a worker, a connection
/// with nothing to do parks at once (see [`Workers::crowded`]), so the
/// bound costs waiting clients little.
pub(crate) const MAX_WORKERS: usize = 256;

/// How long a worker with no connection waits for one before it ends.
const WORKER_IDLE: Duration = Duration::from_secs(2);

/// Stack size of a worker thread: the loop keeps its buffers on the heap,
/// so a small stack serves many connections cheaply.
pub(crate) const WORKER_STACK: usize = 256 * 1024;

/// Work for a worker thread.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

pub(crate) struct Workers {
    state: Mutex<State>,
    work: Condvar,
    /// Connections are queued and no worker can be added: readable
    /// without the lock.
    saturated: AtomicBool,
}

struct State {
    queue: VecDeque<Job>,
    /// Workers waiting for a connection.
    idle: usize,
    /// Workers alive.
    threads: usize,
}

impl Workers {
    pub(crate) fn new() -> Workers {
        Workers {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                idle: 0,
                threads: 0,
            }),
            work: Condvar::new(),
            saturated: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether connections are waiting for a worker and no more workers
    /// can be made: then a connection with nothing to do should park at
    /// once rather than hold its worker.
    pub(crate) fn crowded(&self) -> bool {
        self.saturated.load(Ordering::Relaxed)
    }

    /// Runs `job` on a free worker, a new one if none is free and there
    /// is room for one, or else as soon as one is free.
    pub(crate) fn run(self: &Arc<Self>, job: Job) {
        let mut state = self.lock();
        state.queue.push_back(job);
        if state.idle >= state.queue.len() {
            self.work.notify_one();
            return;
        }
        if state.threads >= MAX_WORKERS {
            // Queued; the next worker to finish takes it.
            self.saturated.store(true, Ordering::Relaxed);
            return;
        }
        state.threads += 1;
        drop(state);
        let workers = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("worker".to_owned())
            .stack_size(WORKER_STACK)
            .spawn(move || work(&workers));
        if let Err(e) = spawned {
            // The queued connection waits for a worker that exists; if
            // there is none, the next connection tries again.
            self.lock().threads -= 1;
            eprintln!("proxy-std: cannot start a worker thread: {e}");
        }
    }
}

/// A worker's life: run jobs until none comes for a while.
fn work(workers: &Workers) {
    loop {
        let job = {
            let mut state = workers.lock();
            loop {
                if let Some(job) = state.queue.pop_front() {
                    if state.queue.is_empty() {
                        workers.saturated.store(false, Ordering::Relaxed);
                    }
                    break job;
                }
                state.idle += 1;
                let (s, timeout) = workers
                    .work
                    .wait_timeout(state, WORKER_IDLE)
                    .unwrap_or_else(|e| e.into_inner());
                state = s;
                state.idle -= 1;
                if timeout.timed_out() && state.queue.is_empty() {
                    state.threads -= 1;
                    return;
                }
            }
        };
        job();
    }
}
