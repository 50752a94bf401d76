//! A flood of wrong passwords must not slow anyone else down.
//!
//! bcrypt is slow on purpose (cost 12: a quarter of a second of CPU per
//! check here). The proxy runs password checks on a few hashing threads of
//! their own, never on the threads that serve connections, and limits the
//! failed logins of each client address. So while 100 clients send wrong
//! passwords as fast as they can, a client whose credential was verified
//! keeps its keep-alive requests as fast as before.

use base64::Engine as _;
use proxy_tests::{cases, Client, Origin, Proxy, Response, TempFile};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Attackers at once.
const ATTACKERS: usize = 100;
/// Requests (at least) the verified client makes while they attack.
const REQUESTS: usize = 200;
/// The bound on the verified client's 99th percentile.
const P99_BOUND: Duration = Duration::from_millis(50);

fn basic(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

fn get(c: &mut Client, url: &str, credential: &str) -> Response {
    c.send(crate::request(
        "GET",
        url,
        &[("Proxy-Authorization", credential)],
        b"",
    ));
    c.read_response("GET")
}

/// What the attackers saw: 407s (a check ran and failed) and 429s
/// (refused unchecked, over the failed-login limit).
#[derive(Debug, Default)]
struct Seen {
    denied: AtomicUsize,
    limited: AtomicUsize,
}

/// Runs the flood against a proxy whose `policy.auth.failures` is
/// `failures` (RON), and returns the verified client's 99th percentile and
/// what the attackers saw. With `expect_checks`, the verified client goes
/// on until wrong passwords are seen being checked.
fn flood(bin: proxy_tests::Binary, failures: &str, expect_checks: bool) -> (Duration, Arc<Seen>) {
    let origin = Origin::echo_target();
    let hash = bcrypt::hash("right", 12).expect("bcrypt");
    let users = TempFile::new("htpasswd", &format!("alice:{hash}\n"));
    let config = format!(
        "(policy: (auth: Some((htpasswd: {:?}, failures: {failures}))))",
        users.path().display().to_string()
    );
    let proxy = Proxy::start_with_config(bin, &config, &[]);

    // The verified client: its first request pays for one bcrypt run.
    let mut client = proxy.connect();
    let right = basic("alice", "right");
    let resp = get(&mut client, &origin.url("/first"), &right);
    assert_eq!(resp.status(), 200, "{resp:#?}");

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());
    let mut sockets = Vec::new();
    let mut attackers = Vec::new();
    for i in 0..ATTACKERS {
        let mut c = Client::connect(proxy.addr());
        sockets.push(c.stream().try_clone().expect("clone"));
        let (stop, seen) = (Arc::clone(&stop), Arc::clone(&seen));
        let url = origin.url(&format!("/guess{i}"));
        attackers.push(std::thread::spawn(move || {
            let wrong = basic("alice", &format!("guess{i}"));
            while !stop.load(Ordering::Relaxed) {
                let request = crate::request("GET", &url, &[("Proxy-Authorization", &wrong)], b"");
                if c.try_send(request).is_err() {
                    return;
                }
                let Some(head) = c.try_read_head() else {
                    return;
                };
                match head.status {
                    407 => seen.denied.fetch_add(1, Ordering::Relaxed),
                    429 => seen.limited.fetch_add(1, Ordering::Relaxed),
                    other => panic!("a wrong password got {other}"),
                };
                let len: usize = head
                    .header("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if c.try_read_exact(len).is_none() {
                    return;
                }
            }
        }));
    }
    // Let the flood build up before measuring.
    std::thread::sleep(Duration::from_millis(300));

    // At least REQUESTS requests, and on until checks have been finishing
    // meanwhile (a busy machine runs bcrypt slower): the measurement
    // covers time when the hashing threads were at work.
    let denied_before = seen.denied.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut took = Vec::with_capacity(REQUESTS);
    while took.len() < REQUESTS
        || (expect_checks && seen.denied.load(Ordering::Relaxed) < denied_before + 2)
    {
        assert!(
            Instant::now() < deadline,
            "no check finished in 30 s: {seen:?}"
        );
        let url = origin.url(&format!("/ok{}", took.len()));
        let started = Instant::now();
        let resp = get(&mut client, &url, &right);
        took.push(started.elapsed());
        assert_eq!(resp.status(), 200, "{resp:#?}");
    }
    stop.store(true, Ordering::Relaxed);
    for s in &sockets {
        let _ = s.shutdown(Shutdown::Both);
    }
    for a in attackers {
        let _ = a.join();
    }
    took.sort();
    (took[took.len() * 99 / 100], seen)
}

cases! {
    /// With the failed-login limit off, every wrong password costs a
    /// bcrypt run, and the hashing threads are busy throughout: still no
    /// delay for the verified client, because no connection's thread
    /// runs bcrypt.
    fn wrong_passwords_do_not_delay_a_verified_client(bin) {
        let (p99, seen) = flood(bin, "None", true);
        assert!(
            seen.denied.load(Ordering::Relaxed) > 0,
            "no check finished: the flood never got going"
        );
        assert_eq!(seen.limited.load(Ordering::Relaxed), 0);
        assert!(p99 < P99_BOUND, "p99 {p99:?} under a flood of wrong passwords");
    }

    /// With the default limit, the flood from one address is refused
    /// unchecked (429) once it has used up its failed logins: at most 10
    /// checks ever run, however many attempts come. (What is left is a
    /// flood of cheap requests, which this test does not time.)
    fn a_flood_of_wrong_passwords_is_limited(bin) {
        let (_, seen) = flood(bin, "Some((requests: 1, per: \"1m\", burst: Some(10)))", false);
        assert!(seen.denied.load(Ordering::Relaxed) <= 10, "{seen:?}");
        assert!(seen.limited.load(Ordering::Relaxed) > 100, "{seen:?}");
    }
}
