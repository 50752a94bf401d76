//! A server process we started (nginx, the TCP origin, a proxy): its log
//! file, waiting for its port, and stopping it (also on drop).

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::cleanup;
use crate::error::{bail, Context, Result};
use crate::procstat;

pub(crate) struct Service {
    name: String,
    child: Child,
    /// Where its stdout and stderr go, and other logs worth quoting when
    /// it fails (Squid's cache_log).
    logs: Vec<PathBuf>,
}

impl Service {
    /// Spawns `command` with stdout and stderr appended to `log`.
    pub(crate) fn spawn(name: &str, command: &mut Command, log: &Path) -> Result<Service> {
        let out = File::create(log).context(format!("creating {}", log.display()))?;
        let err = out.try_clone().context("duplicating a log file handle")?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context(format!("starting {name} ({command:?})"))?;
        cleanup::register_pid(child.id());
        Ok(Service {
            name: name.to_string(),
            child,
            logs: vec![log.to_path_buf()],
        })
    }

    /// Another log to quote when the service fails.
    pub(crate) fn add_log(&mut self, log: PathBuf) {
        self.logs.push(log);
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `addr` accepts a connection, failing early (with the
    /// end of its logs) if the process exits first.
    pub(crate) fn wait_port(&mut self, addr: SocketAddr, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!(
                    "{} exited ({status}) before listening on {addr}{}",
                    self.name,
                    self.log_tail()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} is not listening on {addr} after {timeout:?}{}",
                    self.name,
                    self.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fails (with the end of its logs) if the process has exited.
    pub(crate) fn check_alive(&mut self) -> Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            bail!("{} exited ({status}){}", self.name, self.log_tail());
        }
        Ok(())
    }

    /// The last lines of each log, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        let mut tail = String::new();
        for log in &self.logs {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            if lines.is_empty() {
                continue;
            }
            tail.push_str(&format!("; {}: ", log.display()));
            tail.push_str(&lines[lines.len().saturating_sub(5)..].join(" | "));
        }
        tail
    }

    /// SIGTERM, then a second SIGTERM (our proxies exit at once on the
    /// second), then SIGKILL to the process and every descendant so that
    /// no worker is left behind.
    pub(crate) fn stop(&mut self) {
        let pid = self.child.id();
        if matches!(self.child.try_wait(), Ok(None)) {
            cleanup::send_signal(pid, "TERM");
            if !self.exited_within(Duration::from_secs(3)) {
                cleanup::send_signal(pid, "TERM");
                if !self.exited_within(Duration::from_secs(2)) {
                    for p in procstat::tree(pid).into_iter().rev() {
                        cleanup::send_signal(p, "KILL");
                    }
                    let _ = self.child.wait();
                }
            }
        }
        cleanup::unregister_pid(pid);
    }

    fn exited_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits up to `timeout` for the process to exit by itself (after a
    /// signal we sent); its status, or `None` if it is still running.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self
                .child
                .try_wait()
                .context(format!("waiting for {}", self.name))?;
            if status.is_some() || Instant::now() >= deadline {
                return Ok(status);
            }
            // Fine enough for an exit time read in tenths of a second.
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}
