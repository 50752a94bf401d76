//! Process signals both binaries answer the same way:
//!
//! - **SIGHUP**: read the configuration, lists and user files again and
//!   put them in force without dropping a connection; a reload that fails
//!   keeps the running configuration and says why on stderr.
//!   The access-log file is reopened too.
//! - **SIGUSR1**: reopen the access-log file only (after logrotate moved
//!   it away), as nginx and Squid do; nothing else changes.
//! - **SIGUSR2**: binary upgrade: start the executable again with the
//!   same arguments, handing it the listening sockets; once it listens
//!   it sends this process SIGTERM (see [`crate::handover`]).
//! - **SIGINT, SIGTERM**: the first starts a graceful shutdown
//!   ([`Lifecycle::begin_drain`]; the main thread does the rest, see
//!   [`Lifecycle::run_until_shutdown`]). A second one exits at once with
//!   status 130, after one line on stderr.

use crate::handover::Handover;
use crate::lifecycle::Lifecycle;
use crate::settings::Settings;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

/// Exit status after a second SIGINT/SIGTERM (128 + SIGINT, as shells
/// report an interrupted program).
pub const FORCED_EXIT: i32 = 130;

/// How long a second signal lets the access log write out what it holds.
const SECOND_SIGNAL_FLUSH: Duration = Duration::from_millis(200);

/// Takes over SIGHUP, SIGUSR1, SIGUSR2, SIGINT and SIGTERM and answers
/// them on a thread of its own for the life of the process. `name`
/// prefixes what it prints. Call early: until then the default actions
/// apply.
pub fn watch(
    name: &'static str,
    settings: Settings,
    life: Lifecycle,
    handover: Arc<Handover>,
) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGHUP, SIGUSR1, SIGUSR2, SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || {
            for signal in signals.forever() {
                match signal {
                    SIGUSR1 => settings.access_log.reopen(),
                    SIGHUP => match settings.reload() {
                        Ok(()) => eprintln!("reloaded configuration"),
                        Err(e) => {
                            eprintln!("reload failed, keeping the running configuration: {e}")
                        }
                    },
                    // Whole lines in one write each: the new process writes
                    // to the same stderr meanwhile.
                    SIGUSR2 => match handover.upgrade(name) {
                        Ok(pid) => crate::diag::info(format_args!(
                            "upgrade: started the new process ({pid})"
                        )),
                        Err(e) => {
                            crate::diag::warn(format_args!("upgrade failed, still serving: {e}"))
                        }
                    },
                    _ => {
                        handover.close();
                        if !life.begin_drain() {
                            eprintln!("{name}: second signal, exiting now");
                            // What is already logged, briefly.
                            settings.access_log.flush(SECOND_SIGNAL_FLUSH);
                            let _ = std::io::stdout().flush();
                            std::process::exit(FORCED_EXIT);
                        }
                    }
                }
            }
        })?;
    Ok(())
}
