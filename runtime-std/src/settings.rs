//! Everything a runtime needs at start-up, from the command line and the
//! configuration files it names.

use crate::access_log::AccessLog;
use crate::cli::Args;
use crate::resolver::Resolver;
use proxy_core::Config;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The effective settings of a running proxy.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The core's configuration.
    pub config: Arc<Config>,
    /// Where to listen.
    pub listen: Vec<SocketAddr>,
    /// Where to write traces, if recording.
    pub record: Option<PathBuf>,
    /// How names resolve.
    pub resolver: Resolver,
    /// Where access records go.
    pub access_log: AccessLog,
}

impl Settings {
    /// Builds settings from parsed arguments, reading the config files.
    /// Errors name the file, line and column.
    pub fn load(args: &Args) -> Result<Settings, String> {
        let config = load_config(&args.config)?;
        if let Some(dir) = &args.record {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        Ok(Settings {
            config: Arc::new(config),
            listen: args.listen.clone(),
            record: args.record.clone(),
            resolver: Resolver::new(args.resolve.iter().cloned()),
            access_log: AccessLog::console(args.quiet),
        })
    }
}

/// Reads and layers configuration files: defaults, then each file's keys
/// over the previous result (maps merge key by key; other values replace).
pub fn load_config(files: &[PathBuf]) -> Result<Config, String> {
    let mut merged: Option<ron::Value> = None;
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        // Parse alone first, so errors carry this file's line and column.
        Config::from_ron(&text).map_err(|e| format!("{}:{e}", file.display()))?;
        let value: ron::Value =
            ron::from_str(&text).map_err(|e| format!("{}:{e}", file.display()))?;
        merged = Some(match merged {
            None => value,
            Some(base) => merge(base, value),
        });
    }
    match merged {
        None => Ok(Config::default()),
        Some(v) => v
            .into_rust::<Config>()
            .map_err(|e| format!("{}: {e}", describe(files))),
    }
}

fn describe(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" + ")
}

fn merge(base: ron::Value, over: ron::Value) -> ron::Value {
    match (base, over) {
        (ron::Value::Map(mut b), ron::Value::Map(o)) => {
            for (k, v) in o.into_iter() {
                let merged = match b.remove(&k) {
                    Some(old) => merge(old, v),
                    None => v,
                };
                b.insert(k, merged);
            }
            ron::Value::Map(b)
        }
        (_, over) => over,
    }
}

/// Writes a recorded trace into `dir`, named by process and connection.
pub fn save_trace(dir: &Path, trace: &proxy_core::trace::Trace) -> std::io::Result<PathBuf> {
    let path = dir.join(format!(
        "trace-{}-{:06}.ron",
        std::process::id(),
        trace.conn.0
    ));
    std::fs::write(&path, trace.to_ron())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn later_files_override_only_their_keys() {
        let dir = std::env::temp_dir().join(format!("proxy-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("a.ron");
        let b = dir.join("b.ron");
        std::fs::write(
            &a,
            "(proxy_name: \"a\", timeouts: (connect: \"3s\", response: \"7s\"))",
        )
        .unwrap();
        std::fs::write(&b, "(timeouts: (connect: \"4s\"))").unwrap();
        let c = load_config(&[a.clone(), b]).unwrap();
        assert_eq!(c.proxy_name, "a");
        assert_eq!(c.timeouts.connect, Duration::from_secs(4));
        assert_eq!(c.timeouts.response, Duration::from_secs(7));
        std::fs::write(&a, "(\n timeouts: (conect: \"3s\"))").unwrap();
        let e = load_config(std::slice::from_ref(&a)).unwrap_err();
        assert!(e.contains("a.ron:2:"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
