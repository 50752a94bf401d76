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
use crate::time::Instant;

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

/// [`replay`] for connections recorded side by side by one proxy (their
/// traces share its configuration), whose paths crossed in what they
/// share: the cache, above all (a miss another connection waited for).
/// Their inputs go in together, in the order of their times, each
/// connection's driver polled as its own trace says; returns the
/// replayed traces in the same order.
pub fn replay_together(traces: &[Trace]) -> Result<Vec<Trace>, PolicyError> {
    let Some(first) = traces.first() else {
        return Ok(Vec::new());
    };
    let (shared, _) = Shared::new(first.config.clone(), first.sources.clone())?;
    // (when, which trace, 0 for the accept then 1 + the step's index).
    let mut events: Vec<(Instant, usize, usize)> = Vec::new();
    for (i, t) in traces.iter().enumerate() {
        events.push((t.accepted.at, i, 0));
        events.extend(
            t.steps
                .iter()
                .enumerate()
                .map(|(s, step)| (step.at, i, s + 1)),
        );
    }
    events.sort();
    let mut drivers: Vec<Option<Driver>> = traces.iter().map(|_| None).collect();
    for (_, i, event) in events {
        let trace = &traces[i];
        if event == 0 {
            let mut driver: Driver = Driver::new(trace.accepted, shared.clone(), true);
            for _ in &trace.opening {
                let _ = driver.poll();
            }
            drivers[i] = Some(driver);
            continue;
        }
        let step = &trace.steps[event - 1];
        let driver = drivers[i]
            .as_mut()
            .expect("accepted before its first input");
        driver.handle(step.at, step.input.clone());
        for _ in &step.ops {
            let _ = driver.poll();
        }
    }
    Ok(drivers
        .into_iter()
        .zip(traces)
        .map(|(driver, trace)| {
            let mut replayed = driver
                .and_then(Driver::into_trace)
                .expect("every trace was accepted, recording on");
            replayed.note = trace.note.clone();
            replayed
        })
        .collect())
}
