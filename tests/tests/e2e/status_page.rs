//! `/_status` as a person sees it: loaded in headless Chromium (Debian's
//! `chromium`, which `.ci/run` installs), whose rendered DOM must show the
//! uptime, counters this test caused, the destination it used and the
//! refusal it provoked.
//!
//! Without Chromium on PATH these tests fail, saying so, unless
//! `E2E_SKIP_CHROMIUM=1` is set. Chromium is kept off the network: no
//! proxy, every name resolves to nothing, and the only address it is given
//! is the proxy's on 127.0.0.1.

use crate::request;
use proxy_tests::{cases, Origin, Proxy, Reply, IO_TIMEOUT};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A fresh directory for Chromium's profile; removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "proxy-e2e-{}-chromium-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The Chromium executable on PATH, if any.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|n| dir.join(n)))
        .find(|p| p.is_file())
}

/// Chromium, or `None` when it is absent and `E2E_SKIP_CHROMIUM=1`
/// allows that; absent otherwise, the test fails saying why.
fn chromium_or_skip() -> Option<PathBuf> {
    if let Some(exe) = chromium() {
        return Some(exe);
    }
    if std::env::var("E2E_SKIP_CHROMIUM").as_deref() == Ok("1") {
        eprintln!("skipped: chromium is not installed (E2E_SKIP_CHROMIUM=1)");
        return None;
    }
    panic!(
        "chromium (or chromium-browser) is not on PATH: install it \
         (`apt-get install -y chromium`, as .ci/run does) or set \
         E2E_SKIP_CHROMIUM=1 to skip the status-page test"
    );
}

/// Loads `url` in headless Chromium `exe` and returns the DOM it rendered.
fn rendered_dom(exe: &Path, url: &str) -> String {
    let profile = TempDir::new();
    let out_file = profile.path().join("dom.html");
    let out = std::fs::File::create(&out_file).expect("create dom file");
    let mut child = Command::new(exe)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
            // Loopback only: no proxy, and no name resolves.
            "--no-proxy-server",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--dump-dom", url])
        .env("HOME", profile.path())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", exe.display()));
    let deadline = Instant::now() + 6 * IO_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish loading {url} within {:?}",
                6 * IO_TIMEOUT
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let dom = std::fs::read_to_string(&out_file).expect("read the dumped DOM");
    assert!(
        status.success(),
        "chromium exited with {status}; DOM: {dom}"
    );
    dom
}

/// The text of the element with `id`, in a serialised DOM.
fn text_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let open = format!("id=\"{id}\">");
    let start = dom
        .find(&open)
        .unwrap_or_else(|| panic!("no element #{id} in the DOM:\n{dom}"))
        + open.len();
    let end = start + dom[start..].find('<').expect("element closes");
    &dom[start..end]
}

cases! {
    /// Two forwarded GETs and one denied name, then the page in Chromium.
    fn status_page_renders_in_chromium(bin) {
        let Some(chromium) = chromium_or_skip() else { return };
        let origin = Origin::start(|_| Reply::ok("hello"));
        let proxy = Proxy::start_with_config(
            bin,
            "(policy: (deny: [\"blocked.test\"]))",
            &["--resolve", "blocked.test=127.0.0.1"],
        );
        let mut c = proxy.connect();
        for path in ["/one", "/two"] {
            c.send(request("GET", &origin.url(path), &[], b""));
            assert_eq!(c.read_response("GET").status(), 200);
        }
        c.send(request("GET", "http://blocked.test/secret", &[], b""));
        assert_eq!(c.read_response("GET").status(), 403);
        drop(c);

        let url = format!("http://{}/_status", proxy.addr());
        let dom = rendered_dom(&chromium, &url);

        assert!(dom.contains("<title>proxy-rs status</title>"), "{dom}");
        // The uptime: `Ns`, `Nm Ns`, ...
        let uptime = text_of(&dom, "uptime");
        assert!(
            uptime.ends_with('s') && uptime.chars().any(|c| c.is_ascii_digit()),
            "uptime {uptime:?}"
        );
        // Counters this test caused.
        assert_eq!(text_of(&dom, "requests"), "3");
        assert_eq!(text_of(&dom, "allowed"), "2");
        assert_eq!(text_of(&dom, "refused"), "1");
        assert_eq!(text_of(&dom, "responses-2xx"), "2");
        assert_eq!(text_of(&dom, "responses-4xx"), "1");
        // The destination, counted twice.
        let destination = format!("<tr><td>{}</td><td class=\"n\">2</td></tr>", origin.authority());
        assert!(dom.contains(&destination), "no {destination} in:\n{dom}");
        // The refusal: target, decision and rule.
        let refusals = &dom[dom.find("id=\"refusals\"").expect("a refusals table")..];
        assert!(refusals.contains("GET http://blocked.test/secret"), "{refusals}");
        assert!(refusals.contains("<td>403</td><td>denied_domain</td>"), "{refusals}");
        assert!(refusals.contains("deny blocked.test"), "{refusals}");
        // Chromium's own request was answered by the proxy and logged.
        let line = proxy.wait_for_record("GET", "/_status");
        assert_eq!(line.status, 200);
    }
}
