//! Chaining to parent proxies: a second instance of the proxy (the same
//! binary) acts as the parent, as a Squid or tinyproxy upstream would;
//! and Debian's Squid itself.

use crate::{assert_log, request};
use proxy_tests::{cases, free_port, refused_addr, EchoServer, Origin, Proxy, TempFile};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's Squid (cache off, any destination, any CONNECT port) in the
/// foreground on a loopback port, with its files in a directory of its
/// own; stopped on drop.
struct Squid {
    child: Child,
    addr: SocketAddr,
    dir: std::path::PathBuf,
}

impl Squid {
    fn start() -> Squid {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("proxy-tests-squid-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Squid gives root up for its own user, which writes here.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let d = dir.display();
        let conf = dir.join("squid.conf");
        std::fs::write(&conf, format!(
            "http_port 127.0.0.1:{port}\nhttp_access allow all\ncache deny all\ncache_mem 0 MB\n\
             access_log stdio:{d}/access.log\ncache_log {d}/cache.log\npid_filename {d}/squid.pid\n\
             coredump_dir {d}\nnetdb_filename none\npinger_enable off\nvisible_hostname squid-parent\n\
             shutdown_lifetime 0 seconds\n"
        )).unwrap();
        let child = Command::new("squid")
            .args(["-N", "-f"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("squid is installed (./test installs Debian's squid)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "squid did not listen on {addr}: {}",
                std::fs::read_to_string(dir.join("cache.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Squid { child, addr, dir }
    }

    /// Squid's own access log so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The child's name, so the parent's loop detection (a `Via` naming
/// itself) does not take the child for itself.
const CHILD: &str = "(proxy_name: \"edge\")";

/// `alice:password`, as `htpasswd -s` writes it.
const ALICE_SHA: &str = "alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=";

/// A 502 from the child (named `edge`) about its parents.
fn assert_edge_error(resp: &proxy_tests::Response, details: &str) {
    assert_eq!(resp.status(), 502, "{resp:#?}");
    let status = resp.header("proxy-status").unwrap_or_default();
    assert!(
        status.starts_with("edge; error=destination_unavailable;"),
        "{status}"
    );
    assert!(status.contains(details), "{status}");
}

cases! {
    /// Plain HTTP goes to the parent in absolute form; the origin sees
    /// both hops in `Via`; each proxy logs its own hop.
    fn http_goes_through_the_parent(bin) {
        let origin = Origin::echo_target();
        let parent = Proxy::start(bin, &[]);
        let child = Proxy::start_with_config(bin, CHILD, &["--parent", &parent.addr().to_string()]);
        let mut c = child.connect();
        let url = origin.url("/through");
        let resp = c.get(&url);
        assert_eq!(resp.status(), 200, "{resp:#?}");
        assert_eq!(resp.text(), "/through");
        let got = origin.wait_requests(1).pop().unwrap();
        let via: Vec<&str> = got.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("via")).map(|(_, v)| v.as_str()).collect();
        assert_eq!(via.join(", "), "1.1 edge, 1.1 proxy-rs", "{:?}", got.headers);
        // The child's hop is the parent; the parent's is the origin.
        assert_log(&child, "GET", &url, 200, Some(&parent.addr().to_string()), None);
        assert_log(&parent, "GET", &url, 200, Some(&origin.addr().to_string()), None);
        // Keep-alive through the chain.
        assert_eq!(c.get(&origin.url("/again")).text(), "/again");

        // Squid's format names the hop as Squid does.
        let squid = Proxy::start_with_config(bin, CHILD, &[
            "--parent", &parent.addr().to_string(), "--log-format", "squid",
        ]);
        let url = origin.url("/squid");
        assert_eq!(squid.connect().get(&url).status(), 200);
        let line = squid.wait_for_log(|l| l.contains(&url), proxy_tests::IO_TIMEOUT);
        assert!(line.ends_with(&format!(" FIRSTUP_PARENT/{} -", parent.addr().ip())), "{line}");
    }

    /// CONNECT is sent on to the parent as a CONNECT; the tunnel works
    /// both ways once the parent says 200.
    fn connect_goes_through_the_parent(bin) {
        let echo = EchoServer::start();
        let parent = Proxy::start(bin, &[]);
        let child = Proxy::start_with_config(bin, CHILD, &["--parent", &parent.addr().to_string()]);
        let target = echo.addr().to_string();
        let mut c = child.connect();
        c.send(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"));
        assert_eq!(c.read_head().status, 200);
        c.send("through two proxies");
        assert_eq!(c.read_exact_bytes(19), b"through two proxies");
        drop(c);
        let line = child.wait_for_record("CONNECT", &target);
        assert_eq!((line.status, line.upstream.as_str()), (200, parent.addr().to_string().as_str()));
        let line = parent.wait_for_record("CONNECT", &target);
        assert_eq!((line.status, line.upstream.as_str()), (200, target.as_str()));
    }

    /// Parents are tried in order: one that refuses is skipped for the
    /// next; when none can be reached the answer is a 502 naming them.
    fn the_next_parent_is_tried_and_none_is_a_502(bin) {
        let origin = Origin::echo_target();
        let parent = Proxy::start(bin, &[]);
        let down = refused_addr();
        let child = Proxy::start_with_config(bin, CHILD, &[
            "--parent", &down.to_string(), "--parent", &parent.addr().to_string(),
        ]);
        let url = origin.url("/failover");
        assert_eq!(child.connect().get(&url).text(), "/failover");
        assert_log(&child, "GET", &url, 200, Some(&parent.addr().to_string()), None);
        drop(child);

        let child = Proxy::start_with_config(bin, CHILD, &["--parent", &down.to_string()]);
        let resp = child.connect().get(&url);
        assert_edge_error(&resp, &format!("no parent proxy could be reached (tried {down})"));
        assert_log(&child, "GET", &url, 502, None, Some("destination_unavailable"));
        assert!(origin.requests().len() == 1, "only the first request reached the origin");
    }

    /// `user:password@host:port` authenticates to the parent, for plain
    /// HTTP and CONNECT; without it the parent's refusal of a CONNECT is
    /// a 502 that says what the parent answered.
    fn credentials_for_the_parent(bin) {
        let origin = Origin::echo_target();
        let echo = EchoServer::start();
        let users = TempFile::new("htpasswd", &format!("{ALICE_SHA}\n"));
        let parent = Proxy::start(bin, &["--auth-file", users.name()]);
        let with = format!("alice:password@{}", parent.addr());
        let child = Proxy::start_with_config(bin, CHILD, &["--parent", &with]);
        let url = origin.url("/authed");
        assert_eq!(child.connect().get(&url).status(), 200);
        let line = parent.wait_for_record("GET", &url);
        assert_eq!(line.user.as_deref(), Some("alice"));
        let got = origin.wait_requests(1).pop().unwrap();
        assert!(!got.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("proxy-authorization")), "{:?}", got.headers);
        let target = echo.addr().to_string();
        let mut c = child.connect();
        c.send(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"));
        assert_eq!(c.read_head().status, 200);
        c.send("hi");
        assert_eq!(c.read_exact_bytes(2), b"hi");
        drop(child);

        let child = Proxy::start_with_config(bin, CHILD, &["--parent", &parent.addr().to_string()]);
        let mut c = child.connect();
        c.send(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"));
        let resp = c.read_response("CONNECT");
        assert_edge_error(&resp, "answered 407 Proxy Authentication Required to CONNECT");
    }

    /// `routing.direct` names destinations that skip the parents.
    fn direct_exceptions_skip_the_parent(bin) {
        let origin = Origin::echo_target();
        let down = refused_addr();
        let config = format!("(proxy_name: \"edge\", routing: (parents: [\"{down}\"], direct: [\"127.0.0.0/8\", \"direct.test\"]))");
        let child = Proxy::start_with_config(bin, &config, &["--resolve", "direct.test=127.0.0.1"]);
        let url = origin.url("/direct");
        assert_eq!(child.connect().get(&url).text(), "/direct");
        assert_log(&child, "GET", &url, 200, Some(&origin.addr().to_string()), None);
        let named = format!("http://direct.test:{}/named", origin.addr().port());
        let mut c = child.connect();
        c.send(request("GET", &named, &[], b""));
        assert_eq!(c.read_response("GET").status(), 200);
    }

    /// Debian's Squid as the parent, as an operator's existing proxy
    /// would be: plain HTTP and a CONNECT tunnel through it, the origin
    /// sees both hops in `Via`, the child's record names Squid as its
    /// hop (`FIRSTUP_PARENT` in Squid's own format), and Squid's log
    /// shows the requests coming from the child.
    fn squid_as_the_parent(bin) {
        let squid = Squid::start();
        let origin = Origin::echo_target();
        let child = Proxy::start_with_config(bin, CHILD, &[
            "--parent", &squid.addr.to_string(), "--log-format", "squid",
        ]);
        let url = origin.url("/via-squid");
        let mut c = child.connect();
        let resp = c.get(&url);
        assert_eq!(resp.status(), 200, "{resp:#?}");
        assert_eq!(resp.text(), "/via-squid");
        let got = origin.wait_requests(1).pop().unwrap();
        let via: Vec<&str> = got.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("via")).map(|(_, v)| v.as_str()).collect();
        let via = via.join(", ");
        assert!(via.starts_with("1.1 edge, 1.1 squid-parent"), "{via}");
        let line = child.wait_for_log(|l| l.contains(&url), proxy_tests::IO_TIMEOUT);
        assert!(line.ends_with(&format!(" FIRSTUP_PARENT/{} -", squid.addr.ip())), "{line}");

        let echo = EchoServer::start();
        let target = echo.addr().to_string();
        let mut t = child.connect();
        t.send(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"));
        assert_eq!(t.read_head().status, 200);
        t.send("through squid");
        assert_eq!(t.read_exact_bytes(13), b"through squid");
        drop(t);
        let deadline = Instant::now() + proxy_tests::IO_TIMEOUT;
        while !(squid.log().contains(&url) && squid.log().contains(&format!("CONNECT {target}"))) {
            assert!(Instant::now() < deadline, "squid's log: {}", squid.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Health checks (`routing.health_check`): a parent that stopped
    /// answering (a blackhole: connecting hangs) and one not listening
    /// are found down by the checks before any client waits on them, and
    /// a parent that comes back is used again at the next check, not 30 s
    /// later. Each change is said once on stderr.
    fn parents_are_health_checked(bin) {
        let Some(hole) = proxy_tests::needs_blackhole() else {
            return;
        };
        let origin = Origin::echo_target();
        let b = Proxy::start(bin, &[]);
        let later = format!("127.0.0.1:{}", free_port());
        let checks = TempFile::new("checks.ron", "(routing: (health_check: \"200ms\"), timeouts: (connect: \"5s\"))");
        let child = Proxy::start_with_config(bin, CHILD, &[
            "--config", checks.name(),
            "--parent", &hole.addr.to_string(), "--parent", &later, "--parent", &b.addr().to_string(),
        ]);
        for down in [hole.addr.to_string(), later.clone()] {
            child.wait_for_stderr(|l| l.starts_with(&format!("WARNING: parent {down} is down (")), Duration::from_secs(5));
        }
        // Straight to the third: no 5 s wait on the blackhole.
        let url = origin.url("/checked");
        let asked = Instant::now();
        assert_eq!(child.connect().get(&url).status(), 200);
        assert!(asked.elapsed() < Duration::from_secs(2), "{:?}", asked.elapsed());
        assert_log(&child, "GET", &url, 200, Some(&b.addr().to_string()), None);

        // The second comes up: preferred again from the next check on.
        let a = Proxy::start_listening(bin, &[&later], &[]);
        child.wait_for_stderr(|l| l == format!("parent {later} is up again"), Duration::from_secs(5));
        let url = origin.url("/back");
        assert_eq!(child.connect().get(&url).status(), 200);
        assert_log(&child, "GET", &url, 200, Some(&later), None);
        assert_log(&a, "GET", &url, 200, Some(&origin.addr().to_string()), None);
        let said = child.stderr_lines().iter().filter(|l| l.contains(&format!("parent {later} is"))).count();
        assert_eq!(said, 2, "{:?}", child.stderr_lines());
    }
}
