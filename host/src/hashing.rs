//! Where password checks run: a small pool of threads of their own.
//!
//! bcrypt costs tens to hundreds of milliseconds of CPU on purpose. Run on
//! a connection's executor thread (proxy-smol) it would stall every other
//! connection on that thread; run on every connection's own worker
//! (proxy-std), a crowd of wrong passwords would take every core. So each
//! check is queued for one of at most [`threads`] hashing threads (half
//! the cores, at least one), and the connection waits for its [`Ticket`]:
//! blocking a proxy-std worker, or awaiting it in a proxy-smol task.
//! Together with the failed-login limit in the policy, a flood of wrong
//! passwords costs a bounded share of the machine and delays nobody else.

use event_listener::{Event, Listener};
use proxy_core::policy::auth::VerifyJob;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, OnceLock};

/// How many hashing threads the process runs.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// A queued check's answer, once it is there.
#[derive(Debug, Default)]
struct Slot {
    answer: Mutex<Option<bool>>,
    ready: Event,
}

/// The answer to one [`verify`] call, to wait for.
#[derive(Debug)]
pub struct Ticket(Arc<Slot>);

type Queue = Mutex<Sender<(VerifyJob, Arc<Slot>)>>;

fn queue() -> &'static Queue {
    static QUEUE: OnceLock<Queue> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<(VerifyJob, Arc<Slot>)>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads() {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("hashing-{i}"))
                .spawn(move || loop {
                    let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok((job, slot)) = next else { return };
                    let ok = job.run();
                    *slot.answer.lock().unwrap_or_else(|e| e.into_inner()) = Some(ok);
                    slot.ready.notify(usize::MAX);
                });
            if let Err(e) = spawned {
                eprintln!("proxy: cannot start a hashing thread: {e}");
            }
        }
        Mutex::new(tx)
    })
}

/// Queues `job` for a hashing thread.
pub fn verify(job: VerifyJob) -> Ticket {
    let slot = Arc::new(Slot::default());
    let sent = queue()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((job, Arc::clone(&slot)));
    if let Err(mpsc::SendError((job, _))) = sent {
        // No hashing thread could be started: check here rather than
        // refuse everyone.
        *slot.answer.lock().unwrap_or_else(|e| e.into_inner()) = Some(job.run());
    }
    Ticket(slot)
}

impl Ticket {
    fn answer(&self) -> Option<bool> {
        *self.0.answer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Blocks this thread until the answer is there.
    pub fn wait(self) -> bool {
        loop {
            // Listen first, then look, so the answer cannot slip between.
            let listener = self.0.ready.listen();
            if let Some(ok) = self.answer() {
                return ok;
            }
            listener.wait();
        }
    }

    /// Waits for the answer without blocking the thread.
    pub async fn get(self) -> bool {
        loop {
            let listener = self.0.ready.listen();
            if let Some(ok) = self.answer() {
                return ok;
            }
            listener.await;
        }
    }
}
