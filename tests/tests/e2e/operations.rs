//! Operating the proxy: layered configuration and its errors,
//! `--print-config` and `--check-config`, the seed-style flags (`--host`,
//! `--port`, `--log-dir`, `--max-connections`, `--log-level`), and the
//! access-log formats and file sink with rotation, through both binaries.

use crate::request;
use proxy_core::config::LogFormat;
use proxy_core::Config;
use proxy_tests::{
    cases, free_port, Binary, Client, EchoServer, Origin, Proxy, TempFile, IO_TIMEOUT,
};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Runs `bin` with `args` to completion (for the flags that exit).
fn run(bin: Binary, args: &[&str]) -> Output {
    let mut child = Command::new(bin.path())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.name()));
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} {args:?} did not exit within {IO_TIMEOUT:?}", bin.name());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A fresh directory in the temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "proxy-e2e-{}-d{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn name(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A proxy started with exactly `args` (no `--listen` added), waiting
/// for its `listening on` line; killed on drop.
struct Bare {
    child: Child,
    addr: SocketAddr,
}

impl Bare {
    fn start(bin: Binary, args: &[&str]) -> Bare {
        let mut child = Command::new(bin.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.name()));
        let err = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(IO_TIMEOUT) {
                Ok(line) => {
                    if let Some(a) = line.strip_prefix("listening on ") {
                        let addr = a.trim().parse().unwrap();
                        return Bare { child, addr };
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("{} did not start; stderr:\n{}", bin.name(), seen.join("\n"));
                }
            }
        }
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls until `f` gives `Some`, or panics after [`IO_TIMEOUT`].
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every line of `dir/access.log` and its numbered backups, oldest first.
fn log_files_lines(dir: &Path) -> (usize, Vec<String>) {
    let base = dir.join("access.log");
    let mut backups = 0;
    while dir.join(format!("access.log.{}", backups + 1)).exists() {
        backups += 1;
    }
    let mut files: Vec<PathBuf> = (1..=backups)
        .rev()
        .map(|n| dir.join(format!("access.log.{n}")))
        .collect();
    files.push(base);
    let mut lines = Vec::new();
    for f in files {
        let t = std::fs::read_to_string(&f).unwrap_or_default();
        assert!(
            t.is_empty() || t.ends_with('\n'),
            "{} ends mid-line",
            f.display()
        );
        lines.extend(t.lines().map(str::to_owned));
    }
    (backups, lines)
}

/// A real browser's User-Agent, as log analysers recognise it.
const BROWSER: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

cases! {
    /// `--print-config` prints defaults, files (layered) and flags
    /// merged, as RON that is itself a configuration equal to it; exit 0.
    fn print_config_shows_the_merged_configuration(bin) {
        let a = TempFile::new("a.ron", "(proxy_name: \"edge\", timeouts: (connect: \"3s\", response: \"7s\"))");
        let b = TempFile::new("b.ron", "(timeouts: (connect: \"4s\"), logging: (format: Squid))");
        let out = run(bin, &[
            "--config", a.name(), "--config", b.name(),
            "--port", "3128", "--max-connections", "50", "--log-level", "warn",
            "--print-config",
        ]);
        assert!(out.status.success(), "{out:?}");
        let printed = text(&out.stdout);
        let c = Config::from_ron(&printed).unwrap_or_else(|e| panic!("{e}\n{printed}"));
        assert_eq!(c.proxy_name, "edge");
        assert_eq!(c.timeouts.connect, Duration::from_secs(4));
        assert_eq!(c.timeouts.response, Duration::from_secs(7));
        assert_eq!(c.listen, vec!["127.0.0.1:3128".parse::<SocketAddr>().unwrap()]);
        assert_eq!(c.limits.max_connections, Some(50));
        assert_eq!(c.logging.format, LogFormat::Squid);
        // Printed again from itself: the same text.
        let again = TempFile::new("printed.ron", &printed);
        let out2 = run(bin, &["--config", again.name(), "--print-config"]);
        let c2 = Config::from_ron(&text(&out2.stdout)).unwrap();
        assert_eq!(c2, c);
        // Nothing was started.
        assert!(!text(&out.stderr).contains("listening on"), "{out:?}");
    }

    /// `--check-config`: 0 and a summary for a good configuration (its
    /// lists read); 1 and `file:line:col: what` for a bad one.
    fn check_config_exits_0_or_1_with_the_reason(bin) {
        let list = TempFile::new("block.txt", "ads.test\n*.tracker.test\n");
        let good = TempFile::new("good.ron", &format!("(policy: (deny_lists: [{:?}]))", list.name()));
        let out = run(bin, &["--config", good.name(), "--check-config"]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert!(text(&out.stdout).starts_with("configuration OK"), "{out:?}");

        let bad = TempFile::new("bad.ron", "(\n  timeouts: (conect: \"3s\"),\n)");
        let out = run(bin, &["--config", good.name(), "--config", bad.name(), "--check-config"]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert_eq!(
            text(&out.stderr).trim_end(),
            format!("{}:2:14: unknown key `conect` in `timeouts`; did you mean `connect`?", bad.name())
        );

        // Fine alone, wrong after merging: the file that set it is named.
        let a = TempFile::new("caps-a.ron", "(limits: (max_connections: Some(4)))");
        let b = TempFile::new("caps-b.ron", "(\n  limits: (max_connections_per_ip: Some(8)),\n)");
        let out = run(bin, &["--config", a.name(), "--config", b.name(), "--check-config"]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let err = text(&out.stderr);
        assert!(err.starts_with(&format!("{}:2:41: `limits.max_connections_per_ip`: 8 is more than", b.name())), "{err}");
        assert!(err.contains(&format!("is set at {}:1:", a.name())), "{err}");

        // A list the policy names is missing.
        let missing = TempFile::new("gone.ron", "(policy: (deny_lists: [\"/nonexistent/block.txt\"]))");
        let out = run(bin, &["--config", missing.name(), "--check-config"]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(text(&out.stderr).starts_with("/nonexistent/block.txt: "), "{out:?}");
        assert!(text(&out.stderr).contains("(named by policy.deny_lists)"), "{out:?}");
        // Files named by flags say which flag.
        for (flag, what) in [("--blocklist", "--blocklist"), ("--auth-file", "--auth-file"), ("--config", "--config")] {
            let out = run(bin, &[flag, "/nonexistent/file", "--check-config"]);
            assert_eq!(out.status.code(), Some(1), "{out:?}");
            let err = text(&out.stderr);
            assert!(err.starts_with("/nonexistent/file: ") && err.contains(&format!("(named by {what})")), "{err}");
        }

        // Another proxy's YAML: recognised, and translated to RON that
        // itself checks out.
        let yaml = TempFile::new("proxy.yaml", "host: 127.0.0.1\nport: 0\nblocklist:\n  - ads.test\nmax_connections: 50\nworkers: 4\n");
        let out = run(bin, &["--config", yaml.name(), "--check-config"]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let err = text(&out.stderr);
        assert!(err.starts_with(&format!("{}: this looks like YAML; the proxy reads RON", yaml.name())), "{err}");
        assert!(err.trim_end().ends_with("not translated: workers"), "{err}");
        let ron = &err[err.find("\n(").expect("the RON") + 1..err.find("\n)").expect("its end") + 2];
        let translated = TempFile::new("translated.ron", ron);
        let out = run(bin, &["--config", translated.name(), "--check-config"]);
        assert_eq!(out.status.code(), Some(0), "{ron}\n{out:?}");

        // A users file in which nothing loads (plain-text passwords) would
        // answer 407 to everyone: it stops the proxy, saying how to fix it.
        let users = TempFile::new("users.txt", "admin:secret123\n");
        for args in [&["--auth-file", users.name(), "--check-config"][..], &["--auth-file", users.name(), "--listen", "127.0.0.1:0"]] {
            let out = run(bin, args);
            // --check-config says 1 (a bad configuration); a start 2.
            assert!(matches!(out.status.code(), Some(1 | 2)), "{out:?}");
            let err = text(&out.stderr);
            assert!(err.contains("no user could be loaded"), "{err}");
            assert!(err.contains(&format!("`htpasswd -B {} USER`", users.name())), "{err}");
            assert!(err.contains("policy.auth.allow_plaintext: true"), "{err}");
            assert!(!err.contains("listening on"), "{err}");
        }
    }

    /// `--check-config` lists every problem in the files, each with its
    /// file, line and column, then how many; start-up stops at the first,
    /// which is the first listed.
    fn check_config_reports_every_problem(bin) {
        let base = TempFile::new("many-base.ron", "(\n  listen: [\"127.0.0.1:3128\", \"127.0.0.1:3128\"],\n  timeouts: (conect: \"3s\", head_read: true),\n)\n");
        let over = TempFile::new("many-over.ron", "(\n  limits: (max_headers: 0),\n  proxy_name: \"two words\",\n)\n");
        let out = run(bin, &["--config", base.name(), "--config", over.name(), "--check-config"]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let err = text(&out.stderr);
        let lines: Vec<&str> = err.lines().collect();
        let (b, o) = (base.name(), over.name());
        for want in [
            format!("{b}:3:14: unknown key `conect` in `timeouts`"),
            format!("{b}:3:39: `timeouts.head_read`: expected a duration"),
            format!("{b}:2:30: `listen[1]`: 127.0.0.1:3128 is listed twice"),
            format!("{o}:2:25: `limits.max_headers`: must be more than zero"),
            format!("{o}:3:15: `proxy_name`: \"two words\" cannot be sent in `Via`"),
        ] {
            assert_eq!(lines.iter().filter(|l| l.starts_with(&want)).count(), 1, "{want}\n{err}");
        }
        assert_eq!(lines.last(), Some(&"5 problems in the configuration"), "{err}");
        assert_eq!(lines.len(), 6, "{err}");

        let start = run(bin, &["--config", base.name(), "--config", over.name(), "--listen", "127.0.0.1:0"]);
        assert_eq!(start.status.code(), Some(2), "{start:?}");
        assert_eq!(text(&start.stderr).lines().last().map(|l| l.trim_start_matches(&format!("{}: ", bin.name()))), Some(lines[0]), "{start:?}");
    }

    /// A configuration error stops start-up with the file, line, column
    /// and what was expected, before anything listens.
    fn a_bad_configuration_stops_start_up_with_where_and_why(bin) {
        let bad = TempFile::new("bad.ron", "(\n  policy: (clients: [\"10.0.0.0/8\", \"10.0.0.0/33\"]),\n)");
        let out = run(bin, &["--config", bad.name(), "--listen", "127.0.0.1:0"]);
        assert!(!out.status.success(), "{out:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!("{}:2:36: `policy.clients[1]`: \"10.0.0.0/33\" is not an IP address or CIDR range", bad.name())),
            "{err}"
        );
        assert!(!err.contains("listening on"), "{err}");
        // A bad flag value is refused by the command line itself.
        let out = run(bin, &["--log-format", "xml"]);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(text(&out.stderr).contains("possible values: human, json, squid, combined"), "{out:?}");
    }

    /// `--host`/`--port` (seed style) make the listen address; with no
    /// flags at all the default is 127.0.0.1:8888 (not tried: it may be
    /// taken), which `--print-config` shows.
    fn host_and_port_make_the_listen_address(bin) {
        let port = free_port();
        let proxy = Bare::start(bin, &[
            "--host", "127.0.0.1", "--port", &port.to_string(),
            "--config", TempFile::new("o.ron", proxy_tests::proxy::LOOPBACK_ORIGINS).name(),
            "--quiet",
        ]);
        assert_eq!(proxy.addr, SocketAddr::from(([127, 0, 0, 1], port)));
        let origin = Origin::echo_target();
        let mut c = Client::connect(proxy.addr);
        assert_eq!(c.get(&origin.url("/via-host-port")).status(), 200);

        let out = run(bin, &["--print-config"]);
        let c = Config::from_ron(&text(&out.stdout)).unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:8888".parse::<SocketAddr>().unwrap()]);
        assert_eq!(c, Config::default());
    }

    /// `--max-connections N` caps clients like `limits.max_connections`.
    fn max_connections_flag_caps_clients(bin) {
        let origin = Origin::echo_target();
        let proxy = Proxy::start(bin, &["--max-connections", "1"]);
        let mut first = proxy.connect();
        assert_eq!(first.get(&origin.url("/first")).status(), 200);
        let mut second = proxy.connect();
        let resp = second.read_response("GET");
        assert_eq!(resp.status(), 503, "{resp:#?}");
        assert_eq!(first.get(&origin.url("/first-again")).status(), 200);
    }

    /// `--log-dir DIR --log-format json`: records go to DIR/access.log as
    /// JSON lines, rotated at `logging.max_size` into numbered backups,
    /// every record exactly once; nothing on stdout; start-up says where.
    fn log_dir_writes_rotated_json_lines(bin) {
        const REQUESTS: usize = 40;
        let dir = TempDir::new("logs");
        let origin = Origin::echo_target();
        let proxy = Proxy::start_with_config(
            bin,
            "(logging: (max_size: \"2KiB\", backups: 50))",
            &["--log-dir", dir.name(), "--log-format", "json"],
        );
        let described = format!("access log: {}/access.log (json, rotate at 2KiB, keep 50)", dir.name());
        assert!(proxy.stderr_lines().contains(&described), "{:#?}", proxy.stderr_lines());
        let mut c = proxy.connect();
        for i in 0..REQUESTS {
            assert_eq!(c.get(&origin.url(&format!("/r{i:03}"))).status(), 200);
        }
        let (backups, lines) = eventually("every record in the files", || {
            let (b, l) = log_files_lines(dir.path());
            (l.len() >= REQUESTS).then_some((b, l))
        });
        assert!(backups >= 3, "only {backups} rotations for {REQUESTS} records");
        for n in 1..=backups {
            let size = std::fs::metadata(dir.path().join(format!("access.log.{n}"))).unwrap().len();
            assert!(size <= 2048, "access.log.{n} has {size} bytes");
        }
        assert_eq!(lines.len(), REQUESTS, "{lines:#?}");
        for (i, l) in lines.iter().enumerate() {
            let target = format!("\"target\":\"{}\"", origin.url(&format!("/r{i:03}")));
            assert!(l.starts_with("{\"time\":\"") && l.ends_with('}'), "{l}");
            assert!(l.contains(&target), "line {i} is not /r{i:03}: {l}");
            assert!(l.contains("\"status\":200") && l.contains("\"decision\":\"allowed\""), "{l}");
        }
        assert!(proxy.log_lines().is_empty(), "stdout: {:#?}", proxy.log_lines());
    }

    /// As logrotate does it: the file is moved away, SIGUSR1 makes the
    /// proxy write a new one; records before it stay in the moved file,
    /// records after it go to the new one, none lost.
    fn sigusr1_reopens_the_log_file_after_logrotate(bin) {
        let dir = TempDir::new("rotate");
        let origin = Origin::echo_target();
        let proxy = Proxy::start(bin, &["--log-dir", dir.name()]);
        let mut c = proxy.connect();
        assert_eq!(c.get(&origin.url("/before")).status(), 200);
        let log = dir.path().join("access.log");
        eventually("the first record", || {
            std::fs::read_to_string(&log).ok().filter(|t| t.contains("/before"))
        });
        let moved = dir.path().join("access.log-rotated");
        std::fs::rename(&log, &moved).unwrap();
        proxy.signal(rustix::process::Signal::USR1);
        eventually("a new file", || log.exists().then_some(()));
        assert_eq!(c.get(&origin.url("/after")).status(), 200);
        let now = eventually("the second record", || {
            std::fs::read_to_string(&log).ok().filter(|t| t.contains("/after"))
        });
        assert!(!now.contains("/before"), "{now}");
        let old = std::fs::read_to_string(&moved).unwrap();
        assert!(old.contains("/before") && !old.contains("/after"), "{old}");
        proxy.stderr_lines().iter().for_each(|l| assert!(!l.contains("reloaded"), "{l}"));
    }

    /// Squid's native format on the console: a forwarded request, a
    /// denial and a tunnel.
    fn squid_format_lines(bin) {
        let origin = Origin::echo_target();
        let echo = EchoServer::start();
        let proxy = Proxy::start_with_config(
            bin,
            "(policy: (deny: [\"denied.test\"]))",
            &["--log-format", "squid", "--resolve", "denied.test=127.0.0.1"],
        );
        let mut c = proxy.connect();
        // The URL's own escapes are logged as they are (`%20`, not `%2520`).
        let url = origin.url("/squid%20log?q=100%25");
        assert_eq!(c.get(&url).status(), 200);
        let line = proxy.wait_for_log(|l| l.contains(&url), IO_TIMEOUT);
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 10, "{line}");
        let (secs, millis) = f[0].split_once('.').unwrap();
        assert!(secs.len() == 10 && millis.len() == 3, "{line}");
        assert!(f[1].parse::<u64>().is_ok(), "{line}");
        assert_eq!(f[2], "127.0.0.1");
        assert_eq!(f[3], "TCP_MISS/200");
        assert_eq!((f[5], f[6], f[7]), ("GET", url.as_str(), "-"));
        assert_eq!(f[8], format!("HIER_DIRECT/{}", origin.addr().ip()));
        assert_eq!(f[9], "-");

        assert_eq!(c.get("http://denied.test/x").status(), 403);
        let line = proxy.wait_for_log(|l| l.contains("http://denied.test/x"), IO_TIMEOUT);
        assert!(line.contains(" TCP_DENIED/403 ") && line.ends_with(" GET http://denied.test/x - HIER_NONE/- -"), "{line}");

        let mut t = proxy.connect();
        let target = echo.addr().to_string();
        t.send(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"));
        assert_eq!(t.read_head().status, 200);
        t.send("ping");
        assert_eq!(t.read_exact_bytes(4), b"ping");
        drop(t);
        let line = proxy.wait_for_log(|l| l.contains(" CONNECT "), IO_TIMEOUT);
        assert!(line.contains(" TCP_TUNNEL/200 "), "{line}");
        assert!(line.ends_with(&format!(" CONNECT {target} - HIER_DIRECT/127.0.0.1 -")), "{line}");
    }

    /// The combined format, as GoAccess reads it.
    fn combined_format_lines(bin) {
        let origin = Origin::echo_target();
        let proxy = Proxy::start(bin, &["--log-format", "combined"]);
        let mut c = proxy.connect();
        let url = origin.url("/combined");
        c.send(request("GET", &url, &[("Referer", "http://from.test/page"), ("User-Agent", BROWSER)], b""));
        let resp = c.read_response("GET");
        assert_eq!(resp.status(), 200);
        let line = proxy.wait_for_log(|l| l.contains(&url), IO_TIMEOUT);
        assert!(
            line.ends_with(&format!(" 200 {} \"http://from.test/page\" \"{BROWSER}\"", resp.wire_len)),
            "{line}"
        );

        // Without them, both are "-".
        let url = origin.url("/combined-bare");
        let resp = c.get(&url);
        assert_eq!(resp.status(), 200);
        let line = proxy.wait_for_log(|l| l.contains(&url), IO_TIMEOUT);
        let (head, rest) = line.split_once(" [").unwrap();
        assert_eq!(head, "127.0.0.1 - -");
        let (stamp, rest) = rest.split_once("] ").unwrap();
        assert_eq!(stamp.len(), "21/Nov/2026:14:10:03 +0000".len(), "{line}");
        assert!(stamp.ends_with(" +0000"), "{line}");
        assert_eq!(
            rest,
            format!("\"GET {url} HTTP/1.1\" 200 {} \"-\" \"-\"", resp.wire_len)
        );
    }

    /// GoAccess (Debian's, which ./test installs) reads a combined log
    /// file the proxy wrote and recognises the browsers and the referrer
    /// in it. Without goaccess the test fails unless E2E_SKIP_GOACCESS=1.
    fn goaccess_reads_the_combined_log(bin) {
        let Some(goaccess) = proxy_tests::tool("goaccess", "E2E_SKIP_GOACCESS") else {
            return;
        };
        let dir = TempDir::new("goaccess");
        let origin = Origin::echo_target();
        let proxy = Proxy::start(bin, &["--log-format", "combined", "--log-dir", dir.name()]);
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
        let mut c = proxy.connect();
        for (path, agent) in [("/chrome", BROWSER), ("/firefox", firefox)] {
            let url = origin.url(path);
            c.send(request("GET", &url, &[("Referer", "http://from.test/page"), ("User-Agent", agent)], b""));
            assert_eq!(c.read_response("GET").status(), 200);
        }
        eventually("both lines in the file", || (log_files_lines(&dir.0).1.len() >= 2).then_some(()));
        let report = dir.0.join("report.json");
        let out = Command::new(goaccess)
            .arg(dir.0.join("access.log"))
            .args(["--log-format=COMBINED", "--no-global-config", "-o"])
            .arg(&report)
            .output()
            .expect("goaccess runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let json = std::fs::read_to_string(&report).expect("a report");
        // One line of JSON, its panels in a fixed order: a panel is what
        // lies between its key and the next one's.
        let section = |name: &str, next: &str| {
            let from = json.find(&format!("\"{name}\":")).unwrap_or_else(|| panic!("no {name} in {json}"));
            let to = json[from..].find(&format!("\"{next}\":")).map_or(json.len(), |n| from + n);
            json[from..to].to_owned()
        };
        let browsers = section("browsers", "visit_time");
        for name in ["\"Chrome\"", "\"Firefox\""] {
            assert!(browsers.contains(name), "{name} not recognised: {browsers}");
        }
        assert!(!browsers.contains("Unknown"), "{browsers}");
        assert!(section("referring_sites", "keyphrases").contains("from.test"), "{json}");
    }

    /// `--log-level warn` hides informational messages (the policy
    /// report, where the log goes), not the listen lines.
    fn log_level_filters_diagnostics(bin) {
        let list = TempFile::new("block.txt", "ads.test\n");
        let quiet = Proxy::start(bin, &["--blocklist", list.name(), "--log-level", "warn"]);
        let loud = Proxy::start(bin, &["--blocklist", list.name()]);
        let summary = format!("policy: {}: 1 entries loaded, 0 lines rejected", list.name());
        assert!(loud.stderr_lines().contains(&summary), "{:#?}", loud.stderr_lines());
        assert!(loud.stderr_lines().contains(&"access log: console (human)".to_owned()));
        let lines = quiet.stderr_lines();
        assert!(!lines.iter().any(|l| l.starts_with("policy:") || l.starts_with("access log:")), "{lines:#?}");
        assert!(lines.iter().any(|l| l.starts_with("listening on ")), "{lines:#?}");
    }

    /// `--quiet` silences the access log, file or console.
    fn quiet_silences_the_file_log_too(bin) {
        let dir = TempDir::new("quiet");
        let origin = Origin::echo_target();
        let proxy = Proxy::start(bin, &["--quiet", "--log-dir", dir.name()]);
        let mut c = proxy.connect();
        assert_eq!(c.get(&origin.url("/shh")).status(), 200);
        std::thread::sleep(Duration::from_millis(200));
        assert!(proxy.log_lines().is_empty());
        assert!(!dir.path().join("access.log").exists());
        assert!(proxy.stderr_lines().contains(&"access log: off (--quiet)".to_owned()));
    }

    /// Started as root with `--user nobody`, the proxy binds, then gives
    /// root up before serving anyone: every uid and gid in /proc is
    /// nobody's, there are no supplementary groups, start-up says whom it
    /// runs as, and it still serves. Not started as root, asking for
    /// another user is refused at start-up, saying why.
    fn gives_up_root_after_binding(bin) {
        let id = |flag: &str| {
            let out = Command::new("id").args([flag, "nobody"]).output().expect("id");
            text(&out.stdout).trim().to_owned()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        if !rustix::process::geteuid().is_root() {
            let out = run(bin, &["--user", "nobody", "--listen", "127.0.0.1:0"]);
            assert_eq!(out.status.code(), Some(1));
            assert!(text(&out.stderr).contains("not started as root"), "{}", text(&out.stderr));
            return;
        }
        let origin = Origin::echo_target();
        let proxy = Proxy::start(bin, &["--user", "nobody"]);
        // Said after the sockets are bound (and before any is accepted
        // from): the listening line comes first.
        let said = eventually("the running-as line", || {
            proxy.stderr_lines().into_iter().find(|l| l.starts_with("running as "))
        });
        assert_eq!(said, format!("running as nobody:{} (uid {uid}, gid {gid})", id("-gn")));
        let status = std::fs::read_to_string(format!("/proc/{}/status", proxy.pid())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {status}"))
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(field("Uid:"), vec![uid.clone(); 4], "real, effective, saved, fs uid");
        assert_eq!(field("Gid:"), vec![gid.clone(); 4]);
        assert_eq!(field("Groups:"), vec![gid.clone()], "supplementary groups");
        let mut c = proxy.connect();
        assert_eq!(c.get(&origin.url("/as-nobody")).status(), 200);
    }
}

cases! {
    /// `--workers N` runs N executor threads in proxy-smol, each
    /// accepting on its own socket; proxy-std, which has no such number,
    /// says so and serves anyway. Zero is refused.
    fn workers_sets_the_executor_threads(bin) {
        let origin = Origin::echo_target();
        let proxy = Proxy::start(bin, &["--workers", "3"]);
        // Many connections: the kernel spreads them over the sockets.
        for i in 0..30 {
            let mut c = proxy.connect();
            assert_eq!(c.get(&origin.url(&format!("/w/{i}"))).status(), 200);
        }
        let executors = std::fs::read_dir(format!("/proc/{}/task", proxy.pid()))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
            .filter(|name| name.starts_with("proxy-smol-"))
            .count();
        match bin {
            Binary::Smol => {
                assert_eq!(executors, 3);
                assert!(proxy.stderr_lines().contains(&"3 executor threads".to_owned()));
            }
            Binary::Std => {
                assert_eq!(executors, 0);
                assert!(proxy.stderr_lines().iter().any(|l| l.contains("workers: 3 is for proxy-smol")));
            }
        }
        let zero = Command::new(bin.path()).args(["--workers", "0", "--check-config"]).output().unwrap();
        assert!(!zero.status.success());
    }
}
