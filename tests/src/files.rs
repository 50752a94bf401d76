//! Test data files (lists, htpasswd, configuration) in the temporary
//! directory, removed when dropped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A file with a unique name in the temporary directory; removed on drop.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
}

impl TempFile {
    /// Writes `text` to a new file whose name ends in `suffix`
    /// (`blocklist.txt`).
    pub fn new(suffix: &str, text: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "proxy-e2e-{}-f{}-{suffix}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        TempFile { path }
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path as text, as it goes on a command line and in messages.
    pub fn name(&self) -> &str {
        self.path.to_str().expect("temporary paths are UTF-8")
    }

    /// Replaces the contents.
    pub fn write(&self, text: &str) {
        std::fs::write(&self.path, text)
            .unwrap_or_else(|e| panic!("write {}: {e}", self.path.display()));
    }

    /// Appends `text`.
    pub fn append(&self, text: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .unwrap_or_else(|e| panic!("open {}: {e}", self.path.display()));
        f.write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("append to {}: {e}", self.path.display()));
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
