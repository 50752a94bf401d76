//! Listening sockets passed on: a binary upgrade (SIGUSR2) under load
//! fails no request, and systemd's socket activation serves from the
//! socket it was given.

use crate::lifecycle::exit_within;
use crate::request;
use proxy_tests::{cases, free_port, Client, Origin, Proxy};
use rustix::process::{Pid, Signal};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Waits for a stderr line that contains `text`, and returns it. Not
/// `starts_with`: during an upgrade two processes write to the same
/// stderr, and a line of one may land inside a line of the other (a
/// Rust `eprintln!` is several writes).
fn wait_stderr_containing(proxy: &Proxy, text: &str, timeout: Duration) -> String {
    proxy.wait_for_stderr(|l| l.contains(text), timeout)
}

/// Stops the process an upgrade started (not our child, so no `Proxy`
/// owns it) when the test ends, however it ends.
struct Upgraded(Pid);

impl Drop for Upgraded {
    fn drop(&mut self) {
        let _ = rustix::process::kill_process(self.0, Signal::KILL);
    }
}

/// GET `url` on `conn` (a new connection if there is none), as HTTP
/// clients do it: a reused connection that the server closed while it was
/// idle, without a byte of response, is not a failure but a reason to
/// send the request again on a new connection (RFC 9112 §9.3.1; curl,
/// browsers, Go and Python all do). Returns whether it had to; an error
/// for anything else.
fn get_as_clients_do(
    conn: &mut Option<Client>,
    addr: SocketAddr,
    url: &str,
) -> Result<bool, String> {
    for retried in [false, true] {
        let reused = conn.is_some();
        let c = conn.get_or_insert_with(|| Client::connect(addr));
        let head = match c.try_send(request("GET", url, &[], b"")) {
            Ok(()) => c.try_read_head(),
            Err(_) => None,
        };
        let Some(head) = head else {
            *conn = None;
            if reused {
                continue;
            }
            return Err(format!("{url}: a new connection closed without a response"));
        };
        if head.status != 200 {
            return Err(format!("{url}: status {}", head.status));
        }
        let len: usize = head
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .ok_or("no length")?;
        let body = c.read_exact_bytes(len);
        let path = &url[url.find("/up/").ok_or("no path")?..];
        if body != path.as_bytes() {
            return Err(format!("{url}: body {:?}", String::from_utf8_lossy(&body)));
        }
        if head
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            *conn = None;
        }
        return Ok(retried);
    }
    Err(format!("{url}: closed without a response twice"))
}

cases! {
    /// A binary upgrade under 200 requests a second on keep-alive
    /// connections: SIGUSR2 starts the executable again with the
    /// listening sockets, the new process serves from them and tells the
    /// old one to drain, which exits 0; not one request fails, none is
    /// refused a connection, and the new process serves all that follows.
    fn a_binary_upgrade_under_load_fails_no_request(bin) {
        let origin = Origin::echo_target();
        let listen = format!("127.0.0.1:{}", free_port());
        let mut old = Proxy::start_listening(bin, &[&listen], &[]);
        let addr = old.addr();
        let stop = Arc::new(AtomicBool::new(false));
        let (done, retries) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        // Four clients, 50 requests a second each.
        let clients: Vec<_> = (0..4)
            .map(|t| {
                let (stop, done, retries) = (stop.clone(), done.clone(), retries.clone());
                let base = origin.url(&format!("/up/{t}/"));
                std::thread::spawn(move || -> Result<(), String> {
                    let mut conn = None;
                    let mut i = 0;
                    while !stop.load(Ordering::SeqCst) {
                        if get_as_clients_do(&mut conn, addr, &format!("{base}{i}"))? {
                            retries.fetch_add(1, Ordering::SeqCst);
                        }
                        done.fetch_add(1, Ordering::SeqCst);
                        i += 1;
                        std::thread::sleep(Duration::from_millis(18));
                    }
                    Ok(())
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(1));
        let before = done.load(Ordering::SeqCst);
        assert!(before > 100, "{before} requests in the first second");

        old.signal(Signal::USR2);
        let started = wait_stderr_containing(&old, "upgrade: started the new process", Duration::from_secs(30));
        let pid: i32 = started
            .trim_end_matches(')')
            .rsplit('(')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{started}"));
        let _new = Upgraded(Pid::from_raw(pid).unwrap());
        wait_stderr_containing(&old, "upgrade: serving; asked the old process", Duration::from_secs(30));
        let status = exit_within(&mut old, Duration::from_secs(30));
        assert!(status.success(), "the old process: {status:?}");
        let switched = done.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::SeqCst);
        for c in clients {
            c.join().expect("a client panicked (a refused connection?)").expect("a request failed");
        }
        let total = done.load(Ordering::SeqCst);
        eprintln!(
            "upgrade: {total} requests ({switched} before the old process exited), {} sent again on a new connection after an idle close, 0 failed",
            retries.load(Ordering::SeqCst)
        );
        assert!(total - switched > 100, "{} requests after the old process exited", total - switched);
        // Every request the clients made reached the origin once, but for
        // the ones sent again (each of those reached it at most twice).
        let requests = origin.requests().len();
        assert!(requests >= total && requests <= total + retries.load(Ordering::SeqCst));
        // The new process is still serving, on the same address.
        let mut c = Client::connect(addr);
        assert_eq!(c.get(&origin.url("/up/after")).status(), 200);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(String::from_utf8_lossy(&cmdline).contains(bin.name()));
    }

    /// Started by systemd's `systemd-socket-activate` (the socket bound by
    /// it, passed as LISTEN_FDS), the proxy serves from that socket
    /// instead of binding its own, and says so.
    fn serves_the_socket_systemd_passes(bin) {
        let Some(activate) = proxy_tests::tool("systemd-socket-activate", "PROXY_TESTS_NO_SYSTEMD") else {
            return;
        };
        let origin = Origin::echo_target();
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let layer = proxy_tests::TempFile::new("activated.ron", proxy_tests::proxy::LOOPBACK_ORIGINS);
        // The proxy's own `listen` is elsewhere: the passed socket is
        // served too, as systemd's unit chose its address.
        let other = format!("127.0.0.1:{}", free_port());
        let mut child = Command::new(activate)
            .arg("-l")
            .arg(addr.to_string())
            .arg(bin.path())
            .args(["--listen", &other, "--config", layer.name()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        struct Kill(std::process::Child);
        impl Drop for Kill {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let stderr = child.stderr.take().unwrap();
        let child = Kill(child);
        let lines = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for l in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(l);
                }
            });
        }
        // systemd-socket-activate binds, then starts the proxy at the
        // first connection: this request is what wakes it.
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "systemd-socket-activate did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut c = Client::connect(addr);
        assert_eq!(c.get(&origin.url("/activated")).status(), 200);
        let want = format!("listening on {addr}, passed by systemd");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !lines.lock().unwrap().contains(&want) {
            assert!(Instant::now() < deadline, "{:?}", lines.lock().unwrap());
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(lines.lock().unwrap().contains(&format!("listening on {other}")));
        drop(child);
    }

    /// An upgrade whose new process cannot start (its configuration was
    /// broken meanwhile) leaves the old one serving, and it says why.
    fn a_failed_upgrade_keeps_the_old_process_serving(bin) {
        let origin = Origin::echo_target();
        let config = proxy_tests::TempFile::new("upgrade.ron", "(proxy_name: \"old\")");
        let proxy = Proxy::start(bin, &["--config", config.name()]);
        config.write("(proxy_name: \"two words\")");
        proxy.signal(Signal::USR2);
        wait_stderr_containing(&proxy, "upgrade: started the new process", Duration::from_secs(30));
        let ended = wait_stderr_containing(&proxy, &format!("{}: upgrade: the new process", bin.name()), Duration::from_secs(30));
        assert!(ended.ends_with("still serving"), "{ended}");
        assert!(ended.contains("exit status: 2"), "{ended}");
        let mut c = proxy.connect();
        let resp = c.get(&origin.url("/still"));
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.header("via"), Some("1.1 old"));
    }
}
