//! Replay catches driver bugs, not only protocol changes: a driver given a
//! bug on purpose (feature `faults`) fails to replay traces the sound one
//! replays. The golden replay itself is `core/tests/golden.rs`, which also
//! runs under WASI.

use proxy_core::driver::Fault;
use proxy_core::trace::{replay, replay_with, Trace};
use std::path::Path;

fn trace_named(name: &str) -> Trace {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/traces")
        .join(name);
    Trace::from_ron(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Replay runs the production drive loop, bookkeeping included: a bug
/// in the driver (not the protocol) shows up as a difference.
#[test]
fn a_driver_bug_is_caught_by_replay() {
    for runtime in ["std", "smol"] {
        // A runtime that loses a fired timer never answers the 408.
        let t = trace_named(&format!("python-head-timeout.{runtime}.ron"));
        assert_eq!(replay(&t).unwrap(), t, "the sound driver replays it");
        let broken = replay_with(&t, |d| d.break_on_purpose(Fault::DropFiredTimer)).unwrap();
        assert_ne!(broken, t, "{runtime}: a dropped timer went unnoticed");

        // A driver that never drops consumed bytes offers the first of
        // two pipelined requests again.
        let t = trace_named(&format!("python-pipelined.{runtime}.ron"));
        let broken = replay_with(&t, |d| d.break_on_purpose(Fault::KeepConsumed)).unwrap();
        assert_ne!(
            broken, t,
            "{runtime}: consumed bytes offered twice went unnoticed"
        );
    }
}
