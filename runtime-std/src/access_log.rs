//! The console access-log sink: one human line per record on stdout.

use crate::clock::wall_now;
use proxy_core::AccessRecord;
use std::io::Write;

/// Where access records go.
#[derive(Debug, Clone, Copy)]
pub struct AccessLog {
    quiet: bool,
}

impl AccessLog {
    /// A console sink; `quiet` drops every record.
    pub fn console(quiet: bool) -> Self {
        AccessLog { quiet }
    }

    /// Writes one record, stamped with the current wall time. A failed
    /// write (closed stdout) is ignored: logging never stops the proxy.
    pub fn write(&self, record: &AccessRecord) {
        if self.quiet {
            return;
        }
        let mut line = record.human(wall_now());
        line.push('\n');
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
}
