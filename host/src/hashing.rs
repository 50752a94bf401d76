//! Where password checks run: a pool of threads of their own.
//!
//! bcrypt costs tens to hundreds of milliseconds of CPU on purpose. Run on
//! a connection's executor thread (proxy-smol) it would stall every other
//! connection on that thread; run on every connection's own worker
//! (proxy-std), a crowd of wrong passwords would take every core. So each
//! check is queued for one of [`threads`] hashing threads (half the cores,
//! at least one), and the connection waits for its ticket. Together with
//! the failed-login limit in the policy, a flood of wrong passwords costs
//! a bounded share of the machine and delays nobody else.

use crate::offload::{Pool, Ticket};
use proxy_core::policy::auth::VerifyJob;

/// How many hashing threads the process runs.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

static HASHING: Pool = Pool::new("hashing", threads);

/// Queues `job` for a hashing thread.
pub fn verify(job: VerifyJob) -> Ticket<bool> {
    HASHING.run(move || job.run())
}
