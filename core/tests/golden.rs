//! Golden replay: every trace in testdata/traces/ was recorded by a real
//! binary (`--record DIR`) serving a real client. Replaying its inputs
//! through the driver must give back exactly the recorded ops. This runs
//! natively and under `wasm32-wasip1` (`cargo test -p proxy-core --target
//! wasm32-wasip1`, with `wasi/run` as the runner), where it must replay
//! the same traces to the same bytes.
//!
//! After an intended change of behaviour, re-bless with
//! `BLESS=1 cargo test -p proxy-core --test golden` and review the diff.

// The core never touches files; its golden test reads the recorded traces.
#![allow(clippy::disallowed_methods)]

use proxy_core::trace::{replay, replay_together, Output, Trace};
use std::path::{Path, PathBuf};

/// testdata/traces, written without `..` (a WASI sandbox would refuse to
/// climb out of the package's directory that way).
fn traces_dir() -> PathBuf {
    let core = Path::new(env!("CARGO_MANIFEST_DIR"));
    core.parent()
        .expect("core/ is in the workspace")
        .join("testdata/traces")
}

fn trace_files() -> Vec<PathBuf> {
    let dir = traces_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "ron"))
        .collect();
    files.sort();
    files
}

/// The trace files grouped by scenario and runtime: `NAME.RT.ron` alone,
/// or with the other connections of one recording, `NAME-2.RT.ron`, ...
/// (connections that met in the cache), replayed together.
fn scenarios(files: &[PathBuf]) -> Vec<Vec<PathBuf>> {
    let mut groups: std::collections::BTreeMap<(String, String), Vec<PathBuf>> = Default::default();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy();
        let stem = name.strip_suffix(".ron").unwrap();
        let (scenario, runtime) = stem.rsplit_once('.').expect("NAME.RUNTIME.ron");
        let base = match scenario.rsplit_once('-') {
            Some((base, n)) if n.bytes().all(|b| b.is_ascii_digit()) => base,
            _ => scenario,
        };
        groups
            .entry((base.to_owned(), runtime.to_owned()))
            .or_default()
            .push(path.clone());
    }
    groups.into_values().collect()
}

/// The first step where two traces part, described for a person.
fn first_difference(expected: &Trace, actual: &Trace) -> String {
    if expected.config != actual.config || expected.accepted != actual.accepted {
        return "the trace header differs".to_owned();
    }
    if expected.opening != actual.opening {
        return format!(
            "the opening ops:\n expected {:#?}\n   actual {:#?}",
            expected.opening, actual.opening
        );
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
    // Only BLESS=1 re-blesses: BLESS=0 or an empty value must not.
    let bless = std::env::var("BLESS").as_deref() == Ok("1");
    let files = trace_files();
    let named = |name: &str| files.iter().any(|f| f.to_string_lossy().contains(name));
    // Both runtimes recorded every scenario, including a timer, a
    // shutdown, an upgrade, a reset, a spliced body, and the cache: a
    // miss then a hit, a revalidation, and a miss another connection
    // waited for (two traces replayed together).
    for scenario in [
        "curl-get",
        "python-head-timeout",
        "curl-shutdown",
        "python-upgrade",
        "python-upstream-reset",
        "curl-spliced-body",
        "curl-cache-hit",
        "python-cache-revalidate",
        "python-cache-collapsed",
    ] {
        for runtime in ["std", "smol"] {
            let name = format!("{scenario}.{runtime}.ron");
            assert!(named(&name), "no golden trace {name}");
        }
    }
    let mut failures = Vec::new();
    let mut replayed_all = Vec::new();
    for group in scenarios(&files) {
        let recorded: Vec<Trace> = group
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path).unwrap();
                Trace::from_ron(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            })
            .collect();
        for (path, trace) in group.iter().zip(&recorded) {
            assert!(!trace.steps.is_empty(), "{}: empty trace", path.display());
        }
        let replayed =
            replay_together(&recorded).unwrap_or_else(|e| panic!("{}: {e}", group[0].display()));
        for ((path, recorded), replayed) in group.iter().zip(&recorded).zip(replayed) {
            replayed_all.push(replayed.clone());
            if bless {
                std::fs::write(path, replayed.to_ron()).unwrap();
            } else if replayed != *recorded {
                failures.push(format!(
                    "{}: {}",
                    path.display(),
                    first_difference(recorded, &replayed)
                ));
            }
        }
    }
    // What was replayed, as one number: CI compares the native run's with
    // the WASI run's.
    eprintln!(
        "golden digest: {} traces, {:016x}",
        replayed_all.len(),
        fnv1a(replayed_all.iter().map(Trace::to_ron))
    );
    assert!(
        failures.is_empty(),
        "{} trace(s) no longer replay; if the change is intended, re-bless with BLESS=1 cargo test -p proxy-core --test golden\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn a_changed_trace_is_caught() {
    // The comparison must be able to fail: alter one recorded op.
    let path = &trace_files()[0];
    let mut t = Trace::from_ron(&std::fs::read_to_string(path).unwrap()).unwrap();
    let op = t
        .steps
        .iter_mut()
        .flat_map(|s| s.ops.iter_mut())
        .find(|op| matches!(op, Output::Write(..)))
        .expect("a write");
    let Output::Write(_, bytes) = op else {
        unreachable!()
    };
    bytes.0.push(b'!');
    assert_ne!(replay(&t).unwrap(), t);
}

/// FNV-1a over the texts, in order.
fn fnv1a(texts: impl Iterator<Item = String>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for text in texts {
        for b in text.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}
