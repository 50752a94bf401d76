//! Starting a proxy binary and watching what it prints.

use crate::client::Client;
use crate::IO_TIMEOUT;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Which proxy binary to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    /// `proxy-std`: threads and blocking sockets.
    Std,
    /// `proxy-smol`: the async runtime.
    Smol,
}

impl Binary {
    /// The executable's name.
    pub fn name(self) -> &'static str {
        match self {
            Binary::Std => "proxy-std",
            Binary::Smol => "proxy-smol",
        }
    }

    /// The executable, next to the test binary (`target/<profile>/`).
    /// Both binaries are (re)built once per test process, so the suite
    /// never runs a stale build; when they are up to date this costs a
    /// fraction of a second.
    pub fn path(self) -> PathBuf {
        let dir = profile_dir();
        let path = dir.join(format!("{}{}", self.name(), std::env::consts::EXE_SUFFIX));
        build_binaries(&dir);
        assert!(
            path.exists(),
            "{} not found after building; run `cargo build --bins`",
            path.display()
        );
        path
    }
}

/// `target/<profile>`, from the running test executable
/// (`target/<profile>/deps/<test>-<hash>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("exe has a directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

static BUILD: OnceLock<Result<(), String>> = OnceLock::new();

/// Runs `cargo build --bins -p proxy-std -p proxy-smol` for the profile
/// the tests were built with, once per process.
fn build_binaries(profile_dir: &Path) {
    let result = BUILD.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev".to_owned(),
            Some(other) => other.to_owned(),
        };
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("tests/ is inside the workspace");
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--bins",
            "-p",
            "proxy-std",
            "-p",
            "proxy-smol",
            "--profile",
            &profile,
        ])
        .current_dir(workspace);
        if let Some(target_dir) = profile_dir.parent() {
            cmd.env("CARGO_TARGET_DIR", target_dir);
        }
        match cmd.status() {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!("cargo build of the proxy binaries failed: {s}")),
            Err(e) => Err(format!("cannot run cargo: {e}")),
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

static NEXT_FILE: AtomicUsize = AtomicUsize::new(0);

/// The config layer that lets a proxy reach the tests' loopback origins:
/// private destinations allowed, CONNECT to any port.
pub const LOOPBACK_ORIGINS: &str =
    "(policy: (allow_private_destinations: true, connect_ports: []))";

/// A running proxy. Dropping it kills the process and waits for it.
#[derive(Debug)]
pub struct Proxy {
    bin: Binary,
    child: Child,
    addrs: Vec<SocketAddr>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    config_files: Vec<PathBuf>,
}

impl Proxy {
    /// Starts `bin` with `--listen 127.0.0.1:0` and `extra_args`, and
    /// waits until it says it is listening.
    ///
    /// The test origins live on loopback, which the default policy guards
    /// (SSRF) and CONNECT may reach only on 443; so every proxy started
    /// here first gets [`LOOPBACK_ORIGINS`] as a config layer, except
    /// those from [`start_with_policy`](Proxy::start_with_policy).
    pub fn start(bin: Binary, extra_args: &[&str]) -> Proxy {
        Proxy::launch(
            bin,
            &["127.0.0.1:0"],
            Some(LOOPBACK_ORIGINS),
            None,
            extra_args,
        )
    }

    /// Starts `bin` with only `ron` as configuration over the defaults:
    /// the default policy applies where `ron` does not say otherwise.
    pub fn start_with_policy(bin: Binary, ron: &str, extra_args: &[&str]) -> Proxy {
        Proxy::launch(bin, &["127.0.0.1:0"], None, Some(ron), extra_args)
    }

    /// Like [`start`](Proxy::start), with `ron` written to a file passed
    /// as `--config`.
    pub fn start_with_config(bin: Binary, ron: &str, extra_args: &[&str]) -> Proxy {
        Proxy::launch(
            bin,
            &["127.0.0.1:0"],
            Some(LOOPBACK_ORIGINS),
            Some(ron),
            extra_args,
        )
    }

    /// Starts `bin` listening on each of `listen` (one `--listen` each).
    pub fn start_listening(bin: Binary, listen: &[&str], extra_args: &[&str]) -> Proxy {
        Proxy::launch(bin, listen, Some(LOOPBACK_ORIGINS), None, extra_args)
    }

    fn launch(
        bin: Binary,
        listen: &[&str],
        base: Option<&str>,
        config: Option<&str>,
        extra_args: &[&str],
    ) -> Proxy {
        let path = bin.path();
        let write = |text: &str| {
            let file = std::env::temp_dir().join(format!(
                "proxy-e2e-{}-{}.ron",
                std::process::id(),
                NEXT_FILE.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::write(&file, text).expect("write config file");
            file
        };
        let config_files: Vec<PathBuf> = base.into_iter().chain(config).map(write).collect();
        let mut cmd = Command::new(&path);
        for l in listen {
            cmd.args(["--listen", l]);
        }
        for f in &config_files {
            cmd.arg("--config").arg(f);
        }
        cmd.args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", path.display()));

        let stdout_lines = Arc::new(Mutex::new(Vec::new()));
        let stderr_lines = Arc::new(Mutex::new(Vec::new()));
        {
            let out = child.stdout.take().expect("piped stdout");
            let lines = Arc::clone(&stdout_lines);
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let (tx, rx) = mpsc::channel::<String>();
        {
            let err = child.stderr.take().expect("piped stderr");
            let lines = Arc::clone(&stderr_lines);
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }

        let mut proxy = Proxy {
            bin,
            child,
            addrs: Vec::new(),
            stdout: stdout_lines,
            stderr: stderr_lines,
            config_files,
        };
        let deadline = Instant::now() + IO_TIMEOUT;
        while proxy.addrs.len() < listen.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        let token = rest.split_whitespace().next().unwrap_or("");
                        let addr: SocketAddr = token
                            .parse()
                            .unwrap_or_else(|_| panic!("cannot parse listen line {line:?}"));
                        proxy.addrs.push(addr);
                    }
                }
                Err(_) => {
                    let status = proxy.child.try_wait().ok().flatten();
                    // Not formatted under the lock: the panic would poison
                    // it, and Drop reads it again.
                    let stderr = proxy.stderr_lines().join("\n");
                    panic!(
                        "{} did not report listening on {} address(es) (exit: {status:?}); stderr:\n{stderr}",
                        bin.name(),
                        listen.len(),
                    );
                }
            }
        }
        proxy
    }

    /// Which binary this is.
    pub fn binary(&self) -> Binary {
        self.bin
    }

    /// The first listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every listening address, in the order reported.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (SIGTERM, SIGINT, ...) to the process.
    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = i32::try_from(self.pid())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .expect("a valid pid");
        rustix::process::kill_process(pid, signal)
            .unwrap_or_else(|e| panic!("send {signal:?} to {}: {e}", self.pid()));
    }

    /// Waits up to `timeout` for the process to exit; its exit status, or
    /// `None` if it is still running then.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A new client connection to the proxy.
    pub fn connect(&self) -> Client {
        Client::connect(self.addr())
    }

    /// Every line printed on stdout so far (the access log).
    pub fn log_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Every line printed on stderr so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Polls the access log until a line matches `pred`; panics, showing
    /// the log, if none does within `timeout`.
    pub fn wait_for_log(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.log_lines().into_iter().find(|l| pred(l)) {
                return l;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}: no matching access-log line within {timeout:?}; stdout:\n{}\nstderr:\n{}",
                    self.bin.name(),
                    self.log_lines().join("\n"),
                    self.stderr_lines().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Polls stderr until a line printed at or after index `from` (see
    /// [`stderr_lines`](Proxy::stderr_lines)) matches `pred`; panics,
    /// showing stderr, if none does within `timeout`.
    pub fn wait_for_stderr_from(
        &self,
        from: usize,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.stderr_lines();
            if let Some(l) = lines.iter().skip(from).find(|l| pred(l)) {
                return l.clone();
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}: no matching stderr line within {timeout:?}; stderr:\n{}",
                    self.bin.name(),
                    lines.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Polls stderr until any line matches `pred`.
    pub fn wait_for_stderr(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
        self.wait_for_stderr_from(0, pred, timeout)
    }

    /// Sends SIGHUP (reload the configuration, lists and user files) and
    /// waits for the proxy to say how it went on stderr: returns its
    /// `reloaded configuration` or `reload failed, ...` line.
    pub fn reload(&self) -> String {
        let from = self.stderr_lines().len();
        self.signal(rustix::process::Signal::HUP);
        self.wait_for_stderr_from(
            from,
            |l| l.starts_with("reloaded configuration") || l.starts_with("reload failed"),
            IO_TIMEOUT,
        )
    }

    /// Waits for the access-log line of `method target` and parses it.
    pub fn wait_for_record(&self, method: &str, target: &str) -> LogLine {
        let needle = format!(" {method} {target} -> ");
        let line = self.wait_for_log(|l| l.contains(&needle), IO_TIMEOUT);
        LogLine::parse(&line).unwrap_or_else(|| panic!("malformed access-log line {line:?}"))
    }

    /// Every parsed access-log line with this method and target.
    pub fn records(&self, method: &str, target: &str) -> Vec<LogLine> {
        self.log_lines()
            .iter()
            .filter_map(|l| LogLine::parse(l))
            .filter(|r| r.method == method && r.target == target)
            .collect()
    }

    /// Waits until there are `n` access-log lines of `method target`;
    /// returns them all, parsed, in order.
    pub fn wait_for_records(&self, method: &str, target: &str, n: usize) -> Vec<LogLine> {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let found = self.records(method, target);
            if found.len() >= n {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "{}: {} of {n} access-log lines for {method} {target}; stdout:\n{}",
                self.bin.name(),
                found.len(),
                self.log_lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Panics if the process has exited.
    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited: {status}; stderr:\n{}",
                self.bin.name(),
                self.stderr_lines().join("\n")
            );
        }
    }

    /// The peak resident set size (`VmHWM`) of the process, in bytes.
    pub fn peak_rss(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:") * 1024
    }

    /// The current resident set size (`VmRSS`), in bytes.
    pub fn rss(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:") * 1024
    }
}

fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for f in &self.config_files {
            let _ = std::fs::remove_file(f);
        }
        if std::thread::panicking() {
            // Give the output threads a moment to collect the last lines.
            std::thread::sleep(Duration::from_millis(50));
            eprintln!(
                "--- {} stdout ---\n{}\n--- {} stderr ---\n{}",
                self.bin.name(),
                self.log_lines().join("\n"),
                self.bin.name(),
                self.stderr_lines().join("\n")
            );
        }
    }
}

/// One access-log line in the human format:
/// `2026-11-21T14:10:03Z 127.0.0.1:51234 GET http://example.com/ -> 93.184.216.34:80 200 1256B 12ms [client_sent=NB] [sni=NAME [sni_malformed]] [cache=R] [error=x] [user=NAME] [balancer=ADDR [balancer_id=ID]] [rule="..."]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// RFC 3339 UTC time stamp.
    pub time: String,
    /// The client's address.
    pub client: String,
    /// The method, or `-`.
    pub method: String,
    /// The target as sent, or `-`.
    pub target: String,
    /// The upstream address, or `-`.
    pub upstream: String,
    /// The status sent to the client.
    pub status: u16,
    /// Bytes sent to the client.
    pub bytes: u64,
    /// Duration in milliseconds.
    pub millis: u64,
    /// Bytes the client sent through a tunnel (`client_sent=`), heads
    /// included; only on tunnel and upgrade lines.
    pub client_sent: Option<u64>,
    /// The TLS server name a tunnel's ClientHello carried (`sni=`).
    pub sni: Option<String>,
    /// That name is not a host name (`sni_malformed`).
    pub sni_malformed: bool,
    /// What the cache did (`cache=`: hit, miss, ...), when it is on.
    pub cache: Option<String>,
    /// The `error=` value, if any.
    pub error: Option<String>,
    /// The authenticated user (`user=`), if any.
    pub user: Option<String>,
    /// The load balancer a PROXY header came from (`balancer=`), if any.
    pub balancer: Option<String>,
    /// The id that balancer gave the connection (`balancer_id=`).
    pub balancer_id: Option<String>,
    /// The policy rule that refused (`rule="..."`), if any.
    pub rule: Option<String>,
}

impl LogLine {
    /// Parses a line, checking its shape; `None` if it does not fit.
    pub fn parse(line: &str) -> Option<LogLine> {
        // The rule is last and the only field with spaces: quoted, with
        // any `"` inside written as `'`.
        let (line, rule) = match line.find(" rule=\"") {
            Some(i) => {
                let quoted = line[i + " rule=\"".len()..].strip_suffix('"')?;
                if quoted.contains('"') {
                    return None;
                }
                (&line[..i], Some(quoted.to_owned()))
            }
            None => (line, None),
        };
        let t: Vec<&str> = line.split(' ').collect();
        if t.len() < 9 || t.len() > 17 || t[4] != "->" {
            return None;
        }
        let time = t[0];
        let ok_time = time.len() == 20
            && time.ends_with('Z')
            && time.as_bytes()[10] == b'T'
            && time
                .bytes()
                .enumerate()
                .all(|(i, b)| matches!(i, 4 | 7 | 10 | 13 | 16 | 19) || b.is_ascii_digit());
        if !ok_time {
            return None;
        }
        let mut rest = &t[9..];
        let mut field = |prefix: &str| match rest.first().and_then(|f| f.strip_prefix(prefix)) {
            Some(v) => {
                rest = &rest[1..];
                Some(v)
            }
            None => None,
        };
        let client_sent = match field("client_sent=") {
            Some(n) => Some(n.strip_suffix('B')?.parse().ok()?),
            None => None,
        };
        let sni = field("sni=").map(str::to_owned);
        let sni_malformed = field("sni_malformed") == Some("");
        let cache = field("cache=").map(str::to_owned);
        let error = field("error=").map(str::to_owned);
        let user = field("user=").map(str::to_owned);
        let balancer = field("balancer=").map(str::to_owned);
        let balancer_id = field("balancer_id=").map(str::to_owned);
        if !rest.is_empty() {
            return None;
        }
        Some(LogLine {
            time: time.to_owned(),
            client: t[1].to_owned(),
            method: t[2].to_owned(),
            target: t[3].to_owned(),
            upstream: t[5].to_owned(),
            status: t[6].parse().ok()?,
            bytes: t[7].strip_suffix('B')?.parse().ok()?,
            millis: t[8].strip_suffix("ms")?.parse().ok()?,
            client_sent,
            sni,
            sni_malformed,
            cache,
            error,
            user,
            balancer,
            balancer_id,
            rule,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_log_line() {
        let l = LogLine::parse(
            "2026-11-21T14:10:03Z 127.0.0.1:51234 GET http://example.com/ -> 93.184.216.34:80 200 1256B 12ms",
        )
        .unwrap();
        assert_eq!(l.status, 200);
        assert_eq!(l.bytes, 1256);
        assert_eq!(l.millis, 12);
        assert_eq!(l.upstream, "93.184.216.34:80");
        assert_eq!(l.error, None);
        let e = LogLine::parse(
            "2026-11-21T14:10:03Z [::1]:5 - - -> - 408 300B 1000ms error=http_request_error",
        )
        .unwrap();
        assert_eq!(e.error.as_deref(), Some("http_request_error"));
        assert!(LogLine::parse("listening on 127.0.0.1:1").is_none());
    }

    #[test]
    fn parses_user_and_rule() {
        let l = LogLine::parse(
            "2026-11-21T14:10:03Z 127.0.0.1:5 GET http://a.test/ -> - 403 475B 0ms error=http_request_denied user=bob rule=\"deny a.test (list.txt:2)\"",
        )
        .unwrap();
        assert_eq!(l.error.as_deref(), Some("http_request_denied"));
        assert_eq!(l.user.as_deref(), Some("bob"));
        assert_eq!(l.rule.as_deref(), Some("deny a.test (list.txt:2)"));
        let u = LogLine::parse(
            "2026-11-21T14:10:03Z 127.0.0.1:5 CONNECT a.test:443 -> 127.0.0.1:443 200 39B 3ms client_sent=50B user=alice",
        )
        .unwrap();
        assert_eq!(u.client_sent, Some(50));
        assert_eq!(u.error, None);
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.rule, None);
        let r = LogLine::parse(
            "2026-11-21T14:10:03Z 127.0.0.1:5 - - -> - 503 300B 0ms error=connection_limit_reached rule=\"max_connections (2)\"",
        )
        .unwrap();
        assert_eq!(r.rule.as_deref(), Some("max_connections (2)"));
        // Unknown trailing fields and an unterminated rule do not fit.
        assert!(
            LogLine::parse("2026-11-21T14:10:03Z 127.0.0.1:5 GET / -> - 200 1B 0ms what=ever")
                .is_none()
        );
        assert!(LogLine::parse(
            "2026-11-21T14:10:03Z 127.0.0.1:5 GET / -> - 403 1B 0ms rule=\"open"
        )
        .is_none());
    }
}
