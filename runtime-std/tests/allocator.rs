//! The options proxy-std's allocator runs with (see `src/alloc.rs`): they
//! reach jemalloc through a symbol it looks up by name, so a renamed
//! symbol (another prefix in a new release of the crate) would leave
//! them silently unset. jemalloc's own statistics say what it runs with.

use std::process::Command;

#[test]
fn jemalloc_runs_with_one_arena_per_cpu_and_no_thread_caches() {
    let out = Command::new(env!("CARGO_BIN_EXE_proxy-std"))
        .arg("--version")
        // Printed at exit, on stderr, with every option in effect.
        .env("_RJEM_MALLOC_CONF", "stats_print:true")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stats = String::from_utf8_lossy(&out.stderr);
    for want in ["opt.percpu_arena: \"percpu\"", "opt.tcache: false"] {
        assert!(
            stats.lines().any(|l| l.trim() == want),
            "`{want}` not among jemalloc's options:\n{stats}"
        );
    }
}
