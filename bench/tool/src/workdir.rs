//! The run's temp dir: the origin's files, generated configs and scripts,
//! and the servers' logs. Removed on drop (and on SIGINT, see `cleanup`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::cleanup;
use crate::error::{Context, Result};

/// The files nginx serves: name and size.
pub(crate) const FILES: [(&str, usize); 3] =
    [("1k", 1024), ("64k", 64 * 1024), ("10m", 10 * 1024 * 1024)];

pub(crate) struct Workdir {
    dir: PathBuf,
}

impl Workdir {
    pub(crate) fn create() -> Result<Workdir> {
        let dir = std::env::temp_dir().join(format!("proxy-bench.{}", std::process::id()));
        fs::create_dir(&dir).context(format!("creating {}", dir.display()))?;
        cleanup::register_dir(&dir);
        let work = Workdir { dir };
        // nginx's worker, tinyproxy (nobody) and Squid (proxy) run as other
        // users; they read the files and write their logs and pid files here.
        work.chmod(&work.dir, 0o777)?;
        let www = work.www();
        fs::create_dir(&www).context("creating the origin's root")?;
        work.chmod(&www, 0o755)?;
        for (name, size) in FILES {
            let path = www.join(name);
            fs::write(&path, pseudo_random(size)).context(format!("writing {}", path.display()))?;
            work.chmod(&path, 0o644)?;
        }
        Ok(work)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }

    /// A file in the temp dir.
    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The origin's document root.
    pub(crate) fn www(&self) -> PathBuf {
        self.dir.join("www")
    }

    /// Writes a generated file (config, script) readable by everyone.
    pub(crate) fn write(&self, name: &str, text: &str) -> Result<PathBuf> {
        let path = self.file(name);
        fs::write(&path, text).context(format!("writing {}", path.display()))?;
        self.chmod(&path, 0o644)?;
        Ok(path)
    }

    fn chmod(&self, path: &Path, mode: u32) -> Result<()> {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .context(format!("chmod {mode:o} {}", path.display()))
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        cleanup::unregister_dir(&self.dir);
    }
}

/// Bytes that do not compress (xorshift64), so no layer can cheat.
fn pseudo_random(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15 ^ len as u64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}
