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
}
