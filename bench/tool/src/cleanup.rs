//! Best-effort cleanup when the run is interrupted. The servers we start
//! and the temp dir register here; on SIGINT or SIGTERM a watcher thread
//! stops those servers and removes the dir before exiting, since the
//! owners' `Drop`s will not run then. A normal exit (success or error)
//! goes through the `Drop`s instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::error::{Context, Result};

static PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Starts the thread that cleans up and exits on SIGINT/SIGTERM.
pub(crate) fn watch_signals() -> Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM]).context("installing signal handlers")?;
    thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            eprintln!("proxy-bench: interrupted; stopping the servers it started");
            let pids = PIDS.lock().map(|p| p.clone()).unwrap_or_default();
            for &pid in &pids {
                send_signal(pid, "TERM");
            }
            thread::sleep(Duration::from_millis(500));
            for &pid in &pids {
                send_signal(pid, "KILL");
            }
            for dir in DIRS.lock().map(|d| d.clone()).unwrap_or_default() {
                let _ = std::fs::remove_dir_all(dir);
            }
            std::process::exit(128 + signal);
        }
    });
    Ok(())
}

pub(crate) fn register_pid(pid: u32) {
    if let Ok(mut pids) = PIDS.lock() {
        pids.push(pid);
    }
}

pub(crate) fn unregister_pid(pid: u32) {
    if let Ok(mut pids) = PIDS.lock() {
        pids.retain(|&p| p != pid);
    }
}

pub(crate) fn register_dir(dir: &Path) {
    if let Ok(mut dirs) = DIRS.lock() {
        dirs.push(dir.to_path_buf());
    }
}

pub(crate) fn unregister_dir(dir: &Path) {
    if let Ok(mut dirs) = DIRS.lock() {
        dirs.retain(|d| d != dir);
    }
}

/// Sends SIGname to one process through kill(1) (the workspace forbids
/// unsafe code, and this is not on any measured path). False if it failed,
/// e.g. because the process is gone.
pub(crate) fn send_signal(pid: u32, name: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
