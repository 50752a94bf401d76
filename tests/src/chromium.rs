//! Headless Chromium, for the tests that need a real browser (Debian's
//! `chromium`, which `.ci/run` installs). It is kept off the network: no
//! name resolves except through the addresses a test gives it.
//!
//! Without Chromium on PATH those tests fail, saying so, unless
//! `E2E_SKIP_CHROMIUM=1` is set.

use crate::IO_TIMEOUT;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Chromium on PATH, or `None` (the test skips) when it is absent and
/// `E2E_SKIP_CHROMIUM=1`; absent otherwise, the test fails saying why.
pub fn executable() -> Option<PathBuf> {
    crate::tool_named(&["chromium", "chromium-browser"], "E2E_SKIP_CHROMIUM")
}

/// A fresh directory for Chromium's profile; removed on drop.
struct Profile(PathBuf);

impl Profile {
    fn new() -> Profile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "proxy-e2e-{}-chromium-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        Profile(path)
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Loads `url` in headless Chromium `exe` with `extra` flags (a proxy,
/// say) and returns the DOM it rendered; fails if it does not finish in
/// time or exits unsuccessfully.
pub fn dump_dom(exe: &Path, url: &str, extra: &[String]) -> String {
    let profile = Profile::new();
    let out_file = profile.0.join("dom.html");
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
            // Loopback only: no name resolves.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        ])
        .args(extra)
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .args(["--dump-dom", url])
        .env("HOME", &profile.0)
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
