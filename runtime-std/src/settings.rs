//! Everything a runtime needs at start-up, from the command line and the
//! configuration files it names.

use crate::access_log::AccessLog;
use crate::cli::Args;
use crate::resolver::Resolver;
use proxy_core::policy::{AuthConfig, Report, Sources};
use proxy_core::{Config, Shared};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The effective settings of a running proxy.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The configuration and compiled policy in force, shared with every
    /// connection; swapped whole by [`Settings::reload`].
    pub shared: Arc<Shared>,
    /// Where to listen.
    pub listen: Vec<SocketAddr>,
    /// Where to write traces, if recording.
    pub record: Option<PathBuf>,
    /// How names resolve.
    pub resolver: Resolver,
    /// Where access records go.
    pub access_log: AccessLog,
    /// The arguments, to read the same files again on reload.
    args: Args,
}

impl Settings {
    /// Builds settings from parsed arguments: reads and layers the config
    /// files, applies the flags, reads the lists and user files the policy
    /// names, and compiles it. Errors name the file (and line and column
    /// where there is one). What the policy compiler reports (entries
    /// loaded, bad lines skipped, plain-text passwords) goes to stderr.
    pub fn load(args: &Args) -> Result<Settings, String> {
        let (config, sources) = load_all(args)?;
        if let Some(dir) = &args.record {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let (shared, report) = Shared::new(config, sources).map_err(|e| e.to_string())?;
        print_report(&report);
        Ok(Settings {
            shared,
            listen: args.listen.clone(),
            record: args.record.clone(),
            resolver: Resolver::new(args.resolve.iter().cloned()),
            access_log: AccessLog::console(args.quiet),
            args: args.clone(),
        })
    }

    /// The configuration in force now.
    pub fn config(&self) -> Arc<Config> {
        self.shared.snapshot().config.clone()
    }

    /// Reads the configuration files, lists and user files again and puts
    /// the result in force for every connection's next request. On any
    /// error the running configuration stays and the error says why.
    /// Listen addresses and connection caps are fixed at start-up.
    pub fn reload(&self) -> Result<(), String> {
        let (config, sources) = load_all(&self.args)?;
        let report = self
            .shared
            .reload(config, sources)
            .map_err(|e| e.to_string())?;
        print_report(&report);
        Ok(())
    }
}

/// The configuration with the flags applied, and the text of every file
/// its policy names.
fn load_all(args: &Args) -> Result<(Config, Sources), String> {
    let mut config = load_config(&args.config)?;
    config
        .policy
        .deny_lists
        .extend(args.blocklist.iter().map(|p| p.display().to_string()));
    if let Some(file) = &args.auth_file {
        let path = file.display().to_string();
        match &mut config.policy.auth {
            Some(auth) => auth.htpasswd = path,
            None => {
                config.policy.auth = Some(AuthConfig {
                    htpasswd: path,
                    realm: "proxy".to_owned(),
                    allow_plaintext: false,
                })
            }
        }
    }
    let policy = &config.policy;
    let mut named: Vec<&String> = policy
        .allow_lists
        .iter()
        .chain(&policy.deny_lists)
        .collect();
    if let Some(auth) = &policy.auth {
        named.push(&auth.htpasswd);
    }
    let mut sources = Sources::new();
    for name in named {
        let text = std::fs::read_to_string(name).map_err(|e| format!("{name}: {e}"))?;
        sources.insert(name.clone(), text);
    }
    Ok((config, sources))
}

/// Tells the operator what the policy compiler found.
fn print_report(report: &Report) {
    let mut err = std::io::stderr().lock();
    for (file, loaded, rejected) in &report.files {
        let _ = writeln!(
            err,
            "policy: {file}: {loaded} entries loaded, {rejected} lines rejected"
        );
    }
    for e in &report.errors {
        let _ = writeln!(err, "policy: {e}");
    }
    if report.plaintext_users > 0 {
        let _ = writeln!(
            err,
            "WARNING: {} of {} proxy users have plain-text passwords (policy.auth.allow_plaintext); use htpasswd -B",
            report.plaintext_users, report.users
        );
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
