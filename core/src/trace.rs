//! Recording and replaying a connection's life: every input its runtime
//! gave the [`Driver`] and every op the driver gave back.
//!
//! A driver made with `record: true` keeps a [`Trace`]. It is plain data
//! (RON), so a real exchange recorded by a binary (`--record DIR`) can be
//! replayed through the core alone with [`replay`], on any target, and the
//! ops compared: the golden tests in `tests/` do exactly that. Replay runs
//! the production drive loop, bookkeeping included, so a trace also
//! catches a change in how the driver feeds the connection (when it
//! offers bytes, which timer it arms, what it waits for).

pub use crate::driver::record::{Output, Step, Trace};

use crate::driver::Driver;
use crate::policy::PolicyError;
use crate::shared::Shared;

/// Runs a trace's inputs through a fresh [`Driver`], polling as many ops
/// after each as were recorded, and returns what it records: equal to
/// the input trace when the core behaves as it did when the trace was
/// made. Fails only if the trace's policy no longer compiles.
pub fn replay(trace: &Trace) -> Result<Trace, PolicyError> {
    replay_with(trace, |_| {})
}

/// [`replay`], with `prepare` applied to the driver before the first
/// poll: tests use it to break the driver on purpose and see the replay
/// tell.
#[doc(hidden)]
pub fn replay_with(trace: &Trace, prepare: impl FnOnce(&mut Driver)) -> Result<Trace, PolicyError> {
    let (shared, _) = Shared::new(trace.config.clone(), trace.sources.clone())?;
    let mut driver: Driver = Driver::new(trace.accepted, shared, true);
    prepare(&mut driver);
    for _ in &trace.opening {
        let _ = driver.poll();
    }
    for step in &trace.steps {
        driver.handle(step.at, step.input.clone());
        for _ in &step.ops {
            let _ = driver.poll();
        }
    }
    let mut replayed = driver.into_trace().expect("recording was on");
    replayed.note = trace.note.clone();
    Ok(replayed)
}
