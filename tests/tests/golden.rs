//! Golden replay: every trace in testdata/traces/ was recorded by a real
//! binary (`--record DIR`) serving a real client. Replaying its inputs
//! through proxy-core must give back exactly the recorded outputs.
//!
//! After an intended change of behaviour, re-bless with
//! `BLESS=1 cargo test -p proxy-tests --test golden` and review the diff.

use proxy_core::trace::{replay, Trace};
use std::path::{Path, PathBuf};

fn trace_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/traces");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "ron"))
        .collect();
    files.sort();
    files
}

/// The first step where two traces part, described for a person.
fn first_difference(expected: &Trace, actual: &Trace) -> String {
    if expected.config != actual.config
        || expected.client != actual.client
        || expected.anchor != actual.anchor
    {
        return "the trace header differs".to_owned();
    }
    for (i, (e, a)) in expected.steps.iter().zip(&actual.steps).enumerate() {
        if e != a {
            return format!(
                "step {i} (input {:?} at {:?}):\n expected {e:#?}\n   actual {a:#?}",
                e.input, e.at
            );
        }
    }
    format!(
        "{} steps expected, {} replayed",
        expected.steps.len(),
        actual.steps.len()
    )
}

#[test]
fn every_recorded_trace_replays_identically() {
    let bless = std::env::var_os("BLESS").is_some();
    let files = trace_files();
    assert!(
        files.len() >= 8,
        "expected at least 8 golden traces, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let recorded = Trace::from_ron(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            !recorded.steps.is_empty(),
            "{}: empty trace",
            path.display()
        );
        let replayed = replay(&recorded).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if bless {
            std::fs::write(path, replayed.to_ron()).unwrap();
        } else if replayed != recorded {
            failures.push(format!(
                "{}: {}",
                path.display(),
                first_difference(&recorded, &replayed)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} trace(s) no longer replay; if the change is intended, re-bless with BLESS=1 cargo test -p proxy-tests --test golden\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn a_changed_trace_is_caught() {
    // The comparison must be able to fail: alter one recorded output.
    let path = &trace_files()[0];
    let mut t = Trace::from_ron(&std::fs::read_to_string(path).unwrap()).unwrap();
    let step = t
        .steps
        .iter_mut()
        .find(|s| !s.outputs.is_empty())
        .expect("a step with outputs");
    step.outputs.pop();
    assert_ne!(replay(&t).unwrap(), t);
}
