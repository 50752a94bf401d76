//! Listening sockets passed from one process to the next, so that no
//! connection is refused or lost while the proxy is restarted or
//! upgraded:
//!
//! - **Socket activation** (systemd's `sd_listen_fds` protocol): with
//!   `LISTEN_PID` equal to our pid, `LISTEN_FDS` sockets start at
//!   descriptor 3. systemd holds the sockets across restarts, so
//!   connections queue while the proxy starts instead of being refused.
//! - **Binary upgrade** (SIGUSR2, as nginx does it): the running process
//!   starts its executable again, from the same path and with the same
//!   arguments, handing it its listening sockets (`PROXY_RS_LISTEN_FDS`,
//!   the descriptor numbers, inherited as they are) and its pid
//!   (`PROXY_RS_UPGRADE_FROM`). The new process serves from the very
//!   same sockets (one accept queue each: nothing waiting in them is
//!   lost), and once it is listening it sends the old one SIGTERM, which
//!   drains as on any shutdown. If the new one fails to start, the old
//!   one carries on and says so.
//!
//! Either way a configured address takes the inherited sockets bound to
//! it (every one: proxy-smol keeps one per executor thread); an inherited
//! socket that no configured address claims is served as a proxy listener
//! too, since systemd's unit is where its address was chosen.

use std::ffi::OsString;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::Mutex;

/// The descriptors of an upgrade's listening sockets, comma-separated.
const FDS_VAR: &str = "PROXY_RS_LISTEN_FDS";
/// The pid of the process an upgrade replaces.
const FROM_VAR: &str = "PROXY_RS_UPGRADE_FROM";
/// systemd's first passed descriptor (`SD_LISTEN_FDS_START`).
const SD_LISTEN_FDS_START: RawFd = 3;

/// Sockets this process was given at start.
#[derive(Debug, Default)]
pub struct Inherited {
    sockets: Vec<(TcpListener, SocketAddr)>,
    /// The process being replaced (an upgrade), told to drain once this
    /// one listens.
    replaces: Option<rustix::process::Pid>,
    /// Where they came from, for the start-up lines.
    from: &'static str,
}

impl Inherited {
    /// The sockets named by the environment (systemd's variables or an
    /// upgrade's), which it then clears so that nothing this process
    /// starts inherits the claim. Each must be a listening TCP socket.
    pub fn from_env() -> Result<Inherited, String> {
        let upgrade = std::env::var(FDS_VAR).ok();
        let from = std::env::var(FROM_VAR).ok();
        let systemd = (
            std::env::var("LISTEN_PID").ok(),
            std::env::var("LISTEN_FDS").ok(),
        );
        for var in [
            FDS_VAR,
            FROM_VAR,
            "LISTEN_PID",
            "LISTEN_FDS",
            "LISTEN_FDNAMES",
        ] {
            std::env::remove_var(var);
        }
        let me = rustix::process::getpid();
        let (fds, replaces, source): (Vec<RawFd>, _, _) = match (upgrade, systemd) {
            (Some(list), _) => {
                let fds = list
                    .split(',')
                    .map(|f| f.trim().parse::<RawFd>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| format!("{FDS_VAR}={list:?}: not a list of descriptors"))?;
                // Only the parent that started us may be told to drain:
                // a variable left in some other environment names nobody.
                let parent = rustix::process::getppid();
                let replaces = from
                    .and_then(|p| p.parse::<i32>().ok())
                    .and_then(rustix::process::Pid::from_raw)
                    .filter(|p| Some(*p) == parent);
                (fds, replaces, "passed by the process it replaces")
            }
            (None, (Some(pid), Some(n)))
                if pid.parse::<i32>().ok() == Some(me.as_raw_nonzero().get()) =>
            {
                let n: RawFd = n
                    .parse()
                    .map_err(|_| format!("LISTEN_FDS={n:?}: not a number"))?;
                let fds = (SD_LISTEN_FDS_START..SD_LISTEN_FDS_START.saturating_add(n)).collect();
                (fds, None, "passed by systemd")
            }
            _ => return Ok(Inherited::default()),
        };
        let mut sockets = Vec::with_capacity(fds.len());
        for fd in fds {
            if fd < SD_LISTEN_FDS_START
                || sockets
                    .iter()
                    .any(|(l, _): &(TcpListener, _)| std::os::fd::AsRawFd::as_raw_fd(l) == fd)
            {
                return Err(format!("descriptor {fd} cannot be a passed socket"));
            }
            // Open, before anything owns it (the kernel's own list: no
            // call on a number that may not be a descriptor).
            if std::fs::symlink_metadata(format!("/proc/self/fd/{fd}")).is_err() {
                return Err(format!("descriptor {fd} {source} is not open"));
            }
            let owned = take_descriptor(fd);
            let listening = rustix::net::sockopt::socket_acceptconn(&owned).unwrap_or(false);
            let listener = TcpListener::from(owned);
            let addr = listener
                .local_addr()
                .ok()
                .filter(|_| listening)
                .ok_or_else(|| format!("descriptor {fd} {source} is not a listening TCP socket"))?;
            sockets.push((listener, addr));
        }
        Ok(Inherited {
            sockets,
            replaces,
            from: source,
        })
    }

    /// Whether any socket was passed.
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// Where the sockets came from, for the start-up lines: `passed by
    /// systemd`, `passed by the process it replaces`.
    pub fn source(&self) -> &'static str {
        self.from
    }

    /// Takes out every socket bound to `addr`, or, when its port is 0 (any
    /// port), bound to its IP address.
    pub fn take(&mut self, addr: SocketAddr) -> Vec<TcpListener> {
        let wanted = |a: &SocketAddr| *a == addr || (addr.port() == 0 && a.ip() == addr.ip());
        let (taken, kept) = std::mem::take(&mut self.sockets)
            .into_iter()
            .partition(|(_, a)| wanted(a));
        self.sockets = kept;
        taken.into_iter().map(|(l, _)| l).collect()
    }

    /// Takes out the sockets no configured address claimed, with their
    /// addresses.
    pub fn take_rest(&mut self) -> Vec<(TcpListener, SocketAddr)> {
        std::mem::take(&mut self.sockets)
    }

    /// Tells the process this one replaces to drain (SIGTERM): call once
    /// every listener is being served. Nothing for socket activation.
    pub fn took_over(&self) {
        if let Some(old) = self.replaces {
            match rustix::process::kill_process(old, rustix::process::Signal::TERM) {
                Ok(()) => crate::diag::info(format_args!(
                    "upgrade: serving; asked the old process ({}) to drain",
                    old.as_raw_nonzero()
                )),
                Err(e) => crate::diag::warn(format_args!(
                    "upgrade: cannot signal the old process ({}): {e}",
                    old.as_raw_nonzero()
                )),
            }
        }
    }
}

/// Owns `fd`, a descriptor this process was handed.
#[allow(unsafe_code)]
fn take_descriptor(fd: RawFd) -> OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: `fd` was named by systemd (LISTEN_FDS, checked to be meant
    // for this pid) or by the process that started this one for an
    // upgrade, and is open (checked in /proc above); nothing else in this
    // process owns it: the environment is read once, first thing in
    // main, before any file is opened, and each number is taken once
    // (duplicates and 0-2 are refused above).
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// What this process passes on when it is upgraded: its executable and
/// arguments, and a copy of each listening socket while it accepts.
#[derive(Debug)]
pub struct Handover {
    exe: io::Result<PathBuf>,
    args: Vec<OsString>,
    sockets: Mutex<Vec<OwnedFd>>,
}

impl Handover {
    /// The executable path and arguments as started: an upgrade starts
    /// whatever is at that path then (the new binary installed over the
    /// old one).
    pub fn new() -> Handover {
        Handover {
            exe: std::env::current_exe(),
            args: std::env::args_os().skip(1).collect(),
            sockets: Mutex::new(Vec::new()),
        }
    }

    /// Keeps a copy of `listener` to pass on.
    pub fn keep(&self, listener: &TcpListener) -> io::Result<()> {
        let copy = listener.as_fd().try_clone_to_owned()?;
        self.lock().push(copy);
        Ok(())
    }

    /// Lets the copies go: draining has begun, and a listening socket
    /// left open would queue connections nobody accepts instead of
    /// refusing them (so a balancer tries another instance).
    pub fn close(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<OwnedFd>> {
        self.sockets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the new process with the listening sockets, and watches it
    /// on a thread of its own: if it ends before it has taken over (before
    /// it sent SIGTERM here), this process carries on and says why.
    pub fn upgrade(&self, name: &str) -> Result<u32, String> {
        let exe = self
            .exe
            .as_ref()
            .map_err(|e| format!("cannot tell the executable's path: {e}"))?;
        let sockets = self.lock();
        if sockets.is_empty() {
            return Err("no listening socket to pass on (shutting down?)".to_owned());
        }
        let set_inherit = |inherit: bool| -> io::Result<()> {
            for fd in sockets.iter() {
                let flags = match inherit {
                    true => rustix::io::FdFlags::empty(),
                    false => rustix::io::FdFlags::CLOEXEC,
                };
                rustix::io::fcntl_setfd(fd, flags)?;
            }
            Ok(())
        };
        let list: Vec<String> = sockets
            .iter()
            .map(|fd| std::os::fd::AsRawFd::as_raw_fd(fd).to_string())
            .collect();
        set_inherit(true).map_err(|e| format!("cannot pass the sockets on: {e}"))?;
        let spawned = std::process::Command::new(exe)
            .args(&self.args)
            .env(FDS_VAR, list.join(","))
            .env(FROM_VAR, std::process::id().to_string())
            .spawn();
        // Nothing else this process starts may inherit them.
        let _ = set_inherit(false);
        drop(sockets);
        let mut child = spawned.map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let pid = child.id();
        let name = name.to_owned();
        let _ = std::thread::Builder::new()
            .name("upgrade".to_owned())
            .spawn(move || {
                if let Ok(status) = child.wait() {
                    // One write for the whole line (see `signals`).
                    crate::diag::warn(format_args!(
                        "{name}: upgrade: the new process ({pid}) ended ({status}); still serving"
                    ));
                }
            });
        Ok(pid)
    }
}

impl Default for Handover {
    fn default() -> Self {
        Handover::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound() -> (TcpListener, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        (l, a)
    }

    /// A configured address takes the passed sockets bound to it (every
    /// one), an address with port 0 those on its IP; what is left is the
    /// rest, served as proxy listeners.
    #[test]
    fn addresses_take_their_sockets_and_the_rest_is_left() {
        let (a1, a) = bound();
        let a2 = TcpListener::from(a1.as_fd().try_clone_to_owned().unwrap());
        let (b1, b) = bound();
        let (c1, c) = bound();
        let mut passed = Inherited {
            sockets: vec![(a1, a), (b1, b), (a2, a), (c1, c)],
            replaces: None,
            from: "passed by systemd",
        };
        assert_eq!(passed.take(a).len(), 2);
        assert!(passed.take(a).is_empty(), "taken once");
        let any_port = SocketAddr::new(b.ip(), 0);
        let taken = passed.take(any_port);
        assert_eq!(taken.len(), 2, "b and c are both on 127.0.0.1");
        assert!(passed.take_rest().is_empty());

        let (d1, d) = bound();
        let mut passed = Inherited {
            sockets: vec![(d1, d)],
            ..Inherited::default()
        };
        assert!(passed.take("127.0.0.1:1".parse().unwrap()).is_empty());
        let rest = passed.take_rest();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].1, d);
    }

    /// The copies kept for an upgrade go when draining starts, and an
    /// upgrade without them says why instead of starting anything.
    #[test]
    fn no_upgrade_once_the_copies_are_gone() {
        let handover = Handover::new();
        let (l, _) = bound();
        handover.keep(&l).unwrap();
        assert_eq!(handover.lock().len(), 1);
        handover.close();
        let e = handover.upgrade("test").unwrap_err();
        assert!(e.contains("no listening socket"), "{e}");
    }
}
