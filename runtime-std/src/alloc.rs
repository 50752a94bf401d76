//! proxy-std's memory allocator: jemalloc, one arena per CPU, no
//! per-thread caches.
//!
//! glibc's malloc gives each thread an arena (up to eight per core) and
//! keeps a freed chunk in the arena it came from. Here a connection's
//! state is allocated on whichever worker runs it, freed on whichever
//! runs it last, and 256 workers share 16 arenas: every arena slowly
//! grows to its own high-water mark, none gives it back. Under the
//! 8,000-client soak RSS climbed 1-2 MiB a minute for as long as it ran
//! (49 -> 59 MiB in 10 minutes) while the live heap stayed at 27-30 MB.
//! proxy-smol's few threads do not fragment glibc, so it keeps it.
//!
//! jemalloc with `percpu_arena` picks the arena by the CPU a thread runs
//! on, not by the thread, so two arenas serve all workers; its
//! per-thread caches are off because 256 threads each holding a cache
//! cost more (8,000 clients through proxy-std: RSS 60 MiB with them, 37
//! without; bench/RESULTS.md) than the arena's lock, rarely contended
//! with one arena per CPU.

use tikv_jemallocator::Jemalloc;

#[global_allocator]
static GLOBAL: Jemalloc = Jemalloc;

/// jemalloc's options, read once at its first allocation (before
/// `main`). The environment can still add to them at run time:
/// `_RJEM_MALLOC_CONF=stats_print:true proxy-std`.
///
/// jemalloc declares `const char *malloc_conf` (prefixed, as the crate
/// builds it): a reference to the first byte of a NUL-terminated static
/// string is that pointer.
// Defining a symbol another library reads is `unsafe_code` to the lint:
// nothing else in the process defines it, and it is never written.
#[allow(unsafe_code)]
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: &u8 = &b"percpu_arena:percpu,tcache:false\0"[0];
