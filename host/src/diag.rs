//! Diagnostic messages (start-up, reloads, trouble), on stderr and apart
//! from the access log, filtered by a process-wide level
//! (`logging.level`, `--log-level`).
//!
//! Lines are `ERROR: message`, `WARNING: message`, `message` (info) and
//! `DEBUG: message`: informational lines carry no prefix, so what the
//! proxy has always printed (`policy: FILE: N entries loaded, ...`) reads
//! the same, and anything with a prefix deserves attention.

use proxy_core::config::LogLevel;
use std::fmt::Display;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static LEVEL: AtomicU8 = AtomicU8::new(level_to_u8(LogLevel::Info));

const fn level_to_u8(l: LogLevel) -> u8 {
    match l {
        LogLevel::Error => 0,
        LogLevel::Warn => 1,
        LogLevel::Info => 2,
        LogLevel::Debug => 3,
    }
}

/// Shows messages at `level` and more severe from now on.
pub fn set_level(level: LogLevel) {
    LEVEL.store(level_to_u8(level), Ordering::Relaxed);
}

/// The least severe level shown.
pub fn level() -> LogLevel {
    match LEVEL.load(Ordering::Relaxed) {
        0 => LogLevel::Error,
        1 => LogLevel::Warn,
        2 => LogLevel::Info,
        _ => LogLevel::Debug,
    }
}

/// Whether a message at `level` would be shown (to skip building it).
pub fn enabled(level: LogLevel) -> bool {
    level_to_u8(level) <= LEVEL.load(Ordering::Relaxed)
}

/// The line for `message` at `level`, without its newline.
pub fn line(level: LogLevel, message: impl Display) -> String {
    match level {
        LogLevel::Error => format!("ERROR: {message}"),
        LogLevel::Warn => format!("WARNING: {message}"),
        LogLevel::Info => message.to_string(),
        LogLevel::Debug => format!("DEBUG: {message}"),
    }
}

/// Writes `message` at `level` to stderr if the level is shown. A failed
/// write is ignored: diagnostics never stop the proxy.
pub fn log(level: LogLevel, message: impl Display) {
    if enabled(level) {
        let mut l = line(level, message);
        l.push('\n');
        let _ = std::io::stderr().lock().write_all(l.as_bytes());
    }
}

/// Something failed.
pub fn error(message: impl Display) {
    log(LogLevel::Error, message);
}

/// Something is wrong, but the proxy carries on.
pub fn warn(message: impl Display) {
    log(LogLevel::Warn, message);
}

/// What the proxy is doing.
pub fn info(message: impl Display) {
    log(LogLevel::Info, message);
}

/// Detail for finding bugs.
pub fn debug(message: impl Display) {
    log(LogLevel::Debug, message);
}

/// `error|warn|info|debug` (as on the command line).
pub fn parse_level(text: &str) -> Option<LogLevel> {
    match text.to_ascii_lowercase().as_str() {
        "error" => Some(LogLevel::Error),
        "warn" | "warning" => Some(LogLevel::Warn),
        "info" => Some(LogLevel::Info),
        "debug" => Some(LogLevel::Debug),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_levels() {
        assert_eq!(line(LogLevel::Error, "x"), "ERROR: x");
        assert_eq!(line(LogLevel::Warn, "x"), "WARNING: x");
        assert_eq!(line(LogLevel::Info, "x"), "x");
        assert_eq!(line(LogLevel::Debug, 3), "DEBUG: 3");
        assert_eq!(parse_level("WARN"), Some(LogLevel::Warn));
        assert_eq!(parse_level("loud"), None);
        // The level is process-wide: one test touches it.
        set_level(LogLevel::Warn);
        assert_eq!(level(), LogLevel::Warn);
        assert!(enabled(LogLevel::Error) && enabled(LogLevel::Warn));
        assert!(!enabled(LogLevel::Info) && !enabled(LogLevel::Debug));
        set_level(LogLevel::Debug);
        assert!(enabled(LogLevel::Debug));
        set_level(LogLevel::Info);
    }

    #[test]
    fn accept_failures_are_reported_once_a_minute_with_a_count() {
        let errors = AcceptErrors::new();
        let e = std::io::Error::from_raw_os_error(24);
        let t0 = Instant::now();
        let first = errors.report_at(t0, &e).expect("the first is reported");
        assert!(
            first.contains("Too many open files") && first.contains("once a minute"),
            "{first}"
        );
        for i in 1..100 {
            assert_eq!(
                errors.report_at(t0 + Duration::from_millis(50 * i), &e),
                None
            );
        }
        let next = errors
            .report_at(t0 + AcceptErrors::EVERY, &e)
            .expect("a minute later");
        assert!(
            next.contains("(100 failed accepts in the last minute)"),
            "{next}"
        );
    }
}

/// How long an accept loop waits after a failed accept (out of
/// descriptors, say) before trying again: long enough not to spin, short
/// enough that a freed descriptor is used at once.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Failed accepts (EMFILE and the like), reported as an error the first
/// time and then at most once per [`AcceptErrors::EVERY`] with how many
/// there were meanwhile, so that a proxy at its descriptor limit says so
/// without writing 20 lines a second.
#[derive(Debug)]
pub struct AcceptErrors {
    /// When the last line was written, and failures since.
    state: Mutex<(Option<Instant>, u64)>,
}

/// Every accept loop's failures, together.
pub static ACCEPT_ERRORS: AcceptErrors = AcceptErrors::new();

impl AcceptErrors {
    pub const EVERY: Duration = Duration::from_secs(60);

    pub const fn new() -> Self {
        AcceptErrors {
            state: Mutex::new((None, 0)),
        }
    }

    /// Counts a failed accept; returns the line to write, if one is due.
    pub fn report_at(&self, now: Instant, e: &std::io::Error) -> Option<String> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (last, since) = &mut *state;
        *since += 1;
        if last.is_some_and(|l| now.duration_since(l) < Self::EVERY) {
            return None;
        }
        let line = match last {
            None => format!(
                "cannot accept connections: {e}; retrying every {} ms, \
                 reported once a minute while it lasts",
                ACCEPT_BACKOFF.as_millis()
            ),
            Some(_) => format!(
                "cannot accept connections: {e} ({} failed accepts in the last minute)",
                *since
            ),
        };
        *last = Some(now);
        *since = 0;
        Some(line)
    }

    /// [`report_at`](Self::report_at) now, writing the line as an error.
    pub fn report(&self, e: &std::io::Error) {
        if let Some(line) = self.report_at(Instant::now(), e) {
            error(line);
        }
    }
}

impl Default for AcceptErrors {
    fn default() -> Self {
        Self::new()
    }
}
