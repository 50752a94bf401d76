//! Small pools of threads for work that must not run on a connection's
//! thread: password hashing (slow on purpose) and the system resolver
//! (getaddrinfo blocks for as long as DNS takes).
//!
//! A [`Pool`] starts its threads on first use and queues work for them;
//! each piece of work gives a [`Ticket`] for its answer, which a
//! proxy-smol task awaits ([`Ticket::get`]), a thread waits for
//! ([`Ticket::wait`]), or a proxy-std connection polls, parked or not,
//! through a descriptor that becomes readable when the answer is there
//! ([`Ticket::signal`]).

use event_listener::{Event, Listener};
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

type Job = Box<dyn FnOnce() + Send>;

/// A named pool of threads, made on first use.
pub struct Pool {
    name: &'static str,
    /// How many threads, asked when the pool starts.
    threads: fn() -> usize,
    queue: OnceLock<Mutex<Sender<Job>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pool {
    /// A pool of `threads()` threads named `name-N`.
    pub const fn new(name: &'static str, threads: fn() -> usize) -> Pool {
        Pool {
            name,
            threads,
            queue: OnceLock::new(),
        }
    }

    fn queue(&self) -> &Mutex<Sender<Job>> {
        self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            let rx = Arc::new(Mutex::new(rx));
            for i in 0..(self.threads)().max(1) {
                let rx = Arc::clone(&rx);
                let spawned = std::thread::Builder::new()
                    .name(format!("{}-{i}", self.name))
                    .spawn(move || loop {
                        let next = lock(&rx).recv();
                        let Ok(job) = next else { return };
                        job();
                    });
                if let Err(e) = spawned {
                    eprintln!("proxy: cannot start a {} thread: {e}", self.name);
                }
            }
            Mutex::new(tx)
        })
    }

    /// Queues `work`; its answer comes with the ticket.
    pub fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Ticket<T> {
        let slot = Arc::new(Slot {
            answer: Mutex::new(None),
            ready: Event::new(),
            signal: Mutex::new(None),
        });
        let done = Arc::clone(&slot);
        let job: Job = Box::new(move || done.answer(work()));
        if let Err(mpsc::SendError(job)) = lock(self.queue()).send(job) {
            // No thread could be started: do it here rather than never.
            job();
        }
        Ticket(slot)
    }
}

struct Slot<T> {
    answer: Mutex<Option<T>>,
    ready: Event,
    /// The writing end of a [`Ticket::signal`], if one was asked for.
    signal: Mutex<Option<UnixStream>>,
}

impl<T> Slot<T> {
    fn answer(&self, value: T) {
        *lock(&self.answer) = Some(value);
        self.ready.notify(usize::MAX);
        if let Some(mut w) = lock(&self.signal).take() {
            // The reader only needs readability; a full socket has it.
            let _ = w.write(&[1]);
        }
    }
}

/// The answer to one piece of work, to wait for.
pub struct Ticket<T>(Arc<Slot<T>>);

impl<T> std::fmt::Debug for Ticket<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ticket")
    }
}

impl<T> Ticket<T> {
    /// The answer, if it is there.
    pub fn try_take(&self) -> Option<T> {
        lock(&self.0.answer).take()
    }

    /// Blocks this thread until the answer is there.
    pub fn wait(self) -> T {
        loop {
            // Listen first, then look, so the answer cannot slip between.
            let listener = self.0.ready.listen();
            if let Some(v) = self.try_take() {
                return v;
            }
            listener.wait();
        }
    }

    /// Waits for the answer without blocking the thread.
    pub async fn get(self) -> T {
        loop {
            let listener = self.0.ready.listen();
            if let Some(v) = self.try_take() {
                return v;
            }
            listener.await;
        }
    }

    /// A socket that becomes readable once the answer is there, for a
    /// poll(2) or epoll(7) beside other descriptors.
    pub fn signal(&self) -> io::Result<UnixStream> {
        let (reader, mut writer) = UnixStream::pair()?;
        let mut signal = lock(&self.0.signal);
        if lock(&self.0.answer).is_some() {
            let _ = writer.write(&[1]);
        } else {
            *signal = Some(writer);
        }
        Ok(reader)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    static POOL: Pool = Pool::new("test-offload", || 2);

    #[test]
    fn answers_come_back_to_waiters_of_every_kind() {
        assert_eq!(POOL.run(|| 6 * 7).wait(), 42);
        let slow = POOL.run(|| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            "late"
        });
        let mut signal = slow.signal().unwrap();
        let mut byte = [0u8];
        assert_eq!(signal.read(&mut byte).unwrap(), 1, "readable once answered");
        assert_eq!(slow.try_take(), Some("late"));

        // A signal asked for after the answer is readable at once.
        let done = POOL.run(|| 1);
        while lock(&done.0.answer).is_none() {
            std::thread::yield_now();
        }
        let mut signal = done.signal().unwrap();
        assert_eq!(signal.read(&mut byte).unwrap(), 1);

        let waited = futures_block_on(POOL.run(|| "async").get());
        assert_eq!(waited, "async");
    }

    fn futures_block_on<F: std::future::Future>(fut: F) -> F::Output {
        use std::task::{Context, Poll, Wake, Waker};
        struct Thread(std::thread::Thread);
        impl Wake for Thread {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Thread(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut fut = std::pin::pin!(fut);
        loop {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park();
        }
    }
}
