//! Everything a runtime needs at start-up, from the command line and the
//! configuration files it names.

use crate::access_log::AccessLog;
use crate::cli::Args;
use crate::diag;
use crate::resolver::Resolver;
use proxy_core::config::LogLevel;
use proxy_core::policy::{AuthConfig, Report, Sources};
use proxy_core::{Config, Role, Shared};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
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
    /// names, compiles it, and starts the access log. Errors name the file
    /// (and line and column where there is one). What the policy compiler
    /// reports (entries loaded, bad lines skipped, plain-text passwords)
    /// and where the access log goes are printed on stderr.
    ///
    /// With `--print-config` or `--check-config` this does that job and
    /// ends the process (see [`config_command`]).
    pub fn load(args: &Args) -> Result<Settings, String> {
        if let Some(code) = config_command(args, &mut std::io::stdout(), &mut std::io::stderr()) {
            let _ = std::io::stdout().flush();
            std::process::exit(code);
        }
        let (config, sources) = load_all(args)?;
        diag::set_level(config.logging.level);
        diag::debug(format_args!("configuration: {}", layers_description(args)));
        if let Some(dir) = &args.record {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let listen = config.listen.clone();
        let private = config.policy.allow_private_destinations;
        let logging = config.logging.clone();
        let (shared, report) = Shared::new(config, sources).map_err(|e| e.to_string())?;
        // After the metrics exist: the log counts into theirs, so
        // `/_metrics` shows what it wrote and dropped.
        let access_log =
            AccessLog::from_config(&logging, args.quiet, shared.metrics().access_log())
                .map_err(|e| e.to_string())?;
        print_report(&report);
        warn_if_private(private);
        let settings = Settings {
            shared,
            listen,
            record: args.record.clone(),
            resolver: Resolver::new(args.resolve.iter().cloned()),
            access_log,
            args: args.clone(),
        };
        diag::info(settings.describe());
        Ok(settings)
    }

    /// The configuration in force now.
    pub fn config(&self) -> Arc<Config> {
        self.shared.snapshot().config.clone()
    }

    /// Every address to listen on and what it serves: the proxy
    /// addresses (behind a balancer where `proxy_protocol` says so), then
    /// the admin listener if there is one. Fixed at start-up.
    pub fn listeners(&self) -> Vec<(SocketAddr, Role)> {
        let admin = self.config().admin.listen.map(|a| (a, Role::Admin));
        self.listen
            .iter()
            .map(|a| (*a, self.role_of(*a)))
            .chain(admin)
            .collect()
    }

    /// What a proxy listener on `addr` is: behind a balancer when
    /// `proxy_protocol` says so.
    pub fn role_of(&self, addr: SocketAddr) -> Role {
        match self.config().proxy_protocol.requires(addr) {
            true => Role::Balanced,
            false => Role::Proxy,
        }
    }

    /// What the listener bound at `local` serves, for a person, as
    /// printed at start-up: `listening on 127.0.0.1:8888`, `... (PROXY
    /// protocol required from 10.0.0.0/8)`, `admin pages on ...`.
    pub fn describe_listener(&self, local: SocketAddr, role: Role) -> String {
        match role {
            Role::Proxy => format!("listening on {local}"),
            Role::Balanced => format!(
                "listening on {local} (PROXY protocol required from {})",
                self.config().proxy_protocol.trusted.join(", ")
            ),
            Role::Admin => format!("admin pages on http://{local}/_metrics and /_status"),
        }
    }

    /// Where the proxy logs, for a person: `access log: console (human)`
    /// or `access log: /var/log/proxy/access.log (json, rotate at 10MiB,
    /// keep 5)`. Printed at start-up.
    pub fn describe(&self) -> String {
        format!("access log: {}", self.access_log.describe())
    }

    /// Reads the configuration files, lists and user files again and puts
    /// the result in force for every connection's next request; the
    /// access-log format and the diagnostic level change too, and the
    /// access-log file is reopened (for logrotate). On any error the
    /// running configuration stays and the error says why. Listen
    /// addresses, connection caps and the access-log file, size and
    /// backups are fixed at start-up.
    pub fn reload(&self) -> Result<(), String> {
        let (config, sources) = load_all(&self.args)?;
        let old = self.config();
        let logging = config.logging.clone();
        let listen_changed = config.listen != self.listen;
        let balanced_changed = config.proxy_protocol.required != old.proxy_protocol.required
            || config.proxy_protocol.listeners != old.proxy_protocol.listeners;
        let private = config.policy.allow_private_destinations;
        let report = self
            .shared
            .reload(config, sources)
            .map_err(|e| e.to_string())?;
        print_report(&report);
        if private && !old.policy.allow_private_destinations {
            warn_if_private(private);
        }
        diag::set_level(logging.level);
        self.access_log.set_format(logging.format);
        self.access_log.reopen();
        if logging.file != old.logging.file
            || logging.max_size != old.logging.max_size
            || logging.backups != old.logging.backups
        {
            diag::warn("the access-log file and rotation settings apply from the next start");
        }
        if listen_changed {
            diag::warn("listen addresses apply from the next start");
        }
        if balanced_changed {
            diag::warn("which listeners require a PROXY header applies from the next start");
        }
        Ok(())
    }
}

/// Does the job of `--print-config` (the effective configuration as RON
/// on `out`) or `--check-config` (validate the configuration and compile
/// the policy from the files it names; problems on `err`), returning the
/// exit status; `None` when neither flag was given.
pub fn config_command(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> Option<i32> {
    match crate::cli::print_install_files(args, out) {
        Ok(false) => {}
        Ok(true) => return Some(0),
        Err(e) => {
            let _ = writeln!(err, "{e}");
            return Some(1);
        }
    }
    if args.print_config {
        return Some(match effective_config(args) {
            Ok(config) => {
                let _ = writeln!(out, "{}{}", print_header(args), config.to_ron());
                0
            }
            Err(e) => {
                let _ = writeln!(err, "{e}");
                1
            }
        });
    }
    if !args.check_config {
        return None;
    }
    let checked = load_all(args).and_then(|(config, sources)| {
        let listen = config.listen.clone();
        Shared::new(config, sources)
            .map(|(_, report)| (listen, report))
            .map_err(|e| e.to_string())
    });
    Some(match checked {
        Ok((listen, report)) => {
            for (level, line) in report_lines(&report) {
                let _ = writeln!(err, "{}", diag::line(level, line));
            }
            if report.errors.is_empty() {
                let listen: Vec<String> = listen.iter().map(ToString::to_string).collect();
                let _ = writeln!(
                    out,
                    "configuration OK ({}): would listen on {}",
                    layers_description(args),
                    listen.join(", ")
                );
                0
            } else {
                let _ = writeln!(
                    err,
                    "{} bad lines in the files the configuration names",
                    report.errors.len()
                );
                1
            }
        }
        Err(e) => {
            // Every problem in the files, not just the first, each where
            // it is; the first is the one start-up would give.
            let all = config_file_problems(&args.config);
            if all.len() > 1 {
                for p in &all {
                    let _ = writeln!(err, "{p}");
                }
                let _ = writeln!(err, "{} problems in the configuration", all.len());
            } else {
                let _ = writeln!(err, "{e}");
            }
            1
        }
    })
}

/// Every problem in the configuration files (see
/// `Config::check_layers`), or the one that stops reading them.
fn config_file_problems(files: &[PathBuf]) -> Vec<String> {
    let mut texts = Vec::with_capacity(files.len());
    for file in files {
        match std::fs::read_to_string(file) {
            Ok(text) => texts.push((file.display().to_string(), text)),
            Err(e) => return vec![format!("{}: {e} (named by --config)", file.display())],
        }
    }
    let layers: Vec<(&str, &str)> = texts
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    Config::check_layers(&layers)
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// What the configuration was made of: `defaults + a.ron + flags`.
fn layers_description(args: &Args) -> String {
    let mut parts = vec!["built-in defaults".to_owned()];
    parts.extend(args.config.iter().map(|p| p.display().to_string()));
    parts.push("command-line flags".to_owned());
    parts.join(" + ")
}

fn print_header(args: &Args) -> String {
    format!(
        "// The effective configuration: {}.\n// It is a valid configuration file itself.\n",
        layers_description(args)
    )
}

/// The configuration files layered, the flags applied, validated.
pub fn effective_config(args: &Args) -> Result<Config, String> {
    let mut config = load_config(&args.config)?;
    apply_flags(args, &mut config);
    config.validate().map_err(|e| {
        if args.config.is_empty() {
            format!("command line: {e}")
        } else {
            format!(
                "command line (over {}): {e}",
                layers_description(args)
                    .trim_start_matches("built-in defaults + ")
                    .trim_end_matches(" + command-line flags")
            )
        }
    })?;
    Ok(config)
}

/// Applies the command-line flags over a configuration.
pub fn apply_flags(args: &Args, config: &mut Config) {
    if !args.listen.is_empty() {
        config.listen = args.listen.clone();
    } else if args.host.is_some() || args.port.is_some() {
        let base = config
            .listen
            .first()
            .copied()
            .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, 8888)));
        config.listen = vec![SocketAddr::new(
            args.host.unwrap_or(base.ip()),
            args.port.unwrap_or(base.port()),
        )];
    }
    if let Some(n) = args.max_connections {
        config.limits.max_connections = Some(usize::try_from(n).unwrap_or(usize::MAX));
    }
    config
        .policy
        .deny_lists
        .extend(args.blocklist.iter().map(|p| p.display().to_string()));
    if let Some(file) = &args.auth_file {
        let path = file.display().to_string();
        match &mut config.policy.auth {
            Some(auth) => auth.htpasswd = path,
            None => {
                config.policy.auth = Some(AuthConfig::new(path));
            }
        }
    }
    if !args.parent.is_empty() {
        config.routing.parents = args.parent.clone();
    }
    if args.proxy_protocol {
        config.proxy_protocol.required = true;
    }
    if let Some(spec) = &args.user {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g.to_owned())),
            None => (spec.as_str(), None),
        };
        config.process.user = Some(user.to_owned());
        config.process.group = group;
    }
    if let Some(n) = args.workers {
        config.process.workers = Some(n.get());
    }
    if args.dev_allow_private {
        config.policy.allow_private_destinations = true;
    }
    if args.cache {
        config.cache.enabled = true;
    }
    if let Some(dir) = &args.log_dir {
        config.logging.file = Some(dir.join("access.log").display().to_string());
    }
    if let Some(f) = args.log_format {
        config.logging.format = f;
    }
    if let Some(l) = args.log_level {
        config.logging.level = l;
    }
}

/// The configuration with the flags applied, and the text of every file
/// its policy names.
fn load_all(args: &Args) -> Result<(Config, Sources), String> {
    let config = effective_config(args)?;
    let policy = &config.policy;
    // Each file with what named it, so a missing one says where to look.
    let from_blocklist = |name: &String| {
        args.blocklist
            .iter()
            .any(|p| p.display().to_string() == *name)
    };
    let mut named: Vec<(&String, &str)> = policy
        .allow_lists
        .iter()
        .map(|n| (n, "policy.allow_lists"))
        .chain(policy.deny_lists.iter().map(|n| {
            let by = if from_blocklist(n) {
                "--blocklist"
            } else {
                "policy.deny_lists"
            };
            (n, by)
        }))
        .collect();
    if let Some(auth) = &policy.auth {
        let by = if args.auth_file.is_some() {
            "--auth-file"
        } else {
            "policy.auth.htpasswd"
        };
        named.push((&auth.htpasswd, by));
    }
    let mut sources = Sources::new();
    for (name, by) in named {
        let text =
            std::fs::read_to_string(name).map_err(|e| format!("{name}: {e} (named by {by})"))?;
        sources.insert(name.clone(), text);
    }
    Ok((config, sources))
}

/// What the policy compiler found worth telling the operator, with the
/// level to tell it at.
fn report_lines(report: &Report) -> Vec<(LogLevel, String)> {
    let mut lines = Vec::new();
    for (file, loaded, rejected) in &report.files {
        lines.push((
            LogLevel::Info,
            format!("policy: {file}: {loaded} entries loaded, {rejected} lines rejected"),
        ));
    }
    for e in &report.errors {
        lines.push((LogLevel::Info, format!("policy: {e}")));
    }
    if report.plaintext_users > 0 {
        lines.push((
            LogLevel::Warn,
            format!(
                "{} of {} proxy users have plain-text passwords (policy.auth.allow_plaintext); use htpasswd -B",
                report.plaintext_users, report.users
            ),
        ));
    }
    lines
}

/// Says, at every start, that the SSRF guard is off: a development
/// setting nobody should leave on unknowingly.
fn warn_if_private(allowed: bool) {
    if allowed {
        diag::warn(
            "private destinations allowed (--dev-allow-private or policy.allow_private_destinations): \
             clients can reach loopback, private and link-local addresses through this proxy; \
             for development only",
        );
    }
}

/// Tells the operator what the policy compiler found.
fn print_report(report: &Report) {
    for (level, line) in report_lines(report) {
        diag::log(level, line);
    }
}

/// Reads and layers configuration files: defaults, then each file's keys
/// over the previous result (sections and maps merge key by key; other
/// values replace). Errors name the file, line and column.
pub fn load_config(files: &[PathBuf]) -> Result<Config, String> {
    let mut texts = Vec::with_capacity(files.len());
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("{}: {e} (named by --config)", file.display()))?;
        texts.push((file.display().to_string(), text));
    }
    let layers: Vec<(&str, &str)> = texts
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    Config::from_layers(&layers).map_err(|e| e.to_string())
}

/// Writes a recorded trace into `dir`, named by process and connection.
pub fn save_trace(dir: &Path, trace: &proxy_core::trace::Trace) -> std::io::Result<PathBuf> {
    let path = dir.join(format!(
        "trace-{}-{:06}.ron",
        std::process::id(),
        trace.accepted.conn.0
    ));
    std::fs::write(&path, trace.to_ron())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use proxy_core::config::LogFormat;
    use std::time::Duration;

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let dir =
                std::env::temp_dir().join(format!("proxy-settings-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Dir(dir)
        }

        fn file(&self, name: &str, text: &str) -> String {
            let p = self.0.join(name);
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn args(a: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("proxy").chain(a.iter().copied())).unwrap()
    }

    /// `(status, stdout, stderr)` of `--print-config`/`--check-config`.
    fn run(a: &[&str]) -> (Option<i32>, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = config_command(&args(a), &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn later_files_override_only_their_keys() {
        let dir = Dir::new("layers");
        let a = dir.file(
            "a.ron",
            "(proxy_name: \"a\", timeouts: (connect: \"3s\", response: \"7s\"))",
        );
        let b = dir.file("b.ron", "(timeouts: (connect: \"4s\"))");
        let c = load_config(&[a.clone().into(), b.into()]).unwrap();
        assert_eq!(c.proxy_name, "a");
        assert_eq!(c.timeouts.connect, Duration::from_secs(4));
        assert_eq!(c.timeouts.response, Duration::from_secs(7));
        let a = dir.file("a.ron", "(\n timeouts: (conect: \"3s\"))");
        let e = load_config(&[a.clone().into()]).unwrap_err();
        assert!(e.starts_with(&format!("{a}:2:")), "{e}");
        let e = load_config(&[dir.0.join("missing.ron")]).unwrap_err();
        assert!(e.contains("missing.ron: No such file"), "{e}");
    }

    #[test]
    fn flags_override_the_files() {
        let dir = Dir::new("flags");
        let conf = dir.file(
            "a.ron",
            "(listen: [\"127.0.0.1:1000\", \"127.0.0.1:1001\"], limits: (max_connections: Some(9)), \
             logging: (format: Json, level: Warn, file: Some(\"/var/log/x.log\")))",
        );
        let c = effective_config(&args(&["--config", &conf])).unwrap();
        assert_eq!(c.listen.len(), 2);
        assert_eq!(c.logging.format, LogFormat::Json);
        let c = effective_config(&args(&[
            "--config",
            &conf,
            "--listen",
            "[::1]:2000",
            "--max-connections",
            "5",
            "--log-format",
            "squid",
            "--log-level",
            "debug",
            "--log-dir",
            "/tmp/logs",
            "--blocklist",
            "b.txt",
            "--auth-file",
            "users",
        ]))
        .unwrap();
        assert_eq!(c.listen, vec!["[::1]:2000".parse::<SocketAddr>().unwrap()]);
        assert_eq!(c.limits.max_connections, Some(5));
        assert_eq!(c.logging.format, LogFormat::Squid);
        assert_eq!(c.logging.level, LogLevel::Debug);
        assert_eq!(c.logging.file.as_deref(), Some("/tmp/logs/access.log"));
        assert_eq!(c.policy.deny_lists, vec!["b.txt"]);
        assert_eq!(c.policy.auth.unwrap().htpasswd, "users");
    }

    #[test]
    fn the_cache_flag_turns_on_the_configured_cache() {
        let dir = Dir::new("cache-flag");
        let conf = dir.file("a.ron", "(cache: (memory: \"1MiB\"))");
        let c = effective_config(&args(&["--config", &conf])).unwrap();
        assert!(!c.cache.enabled);
        let c = effective_config(&args(&["--config", &conf, "--cache"])).unwrap();
        assert!(c.cache.enabled);
        assert_eq!(c.cache.memory, 1 << 20);
        assert!(c.to_ron().contains("enabled: true"), "{}", c.to_ron());
    }

    #[test]
    fn host_and_port_change_the_listen_address() {
        let listen = |a: &[&str]| effective_config(&args(a)).unwrap().listen;
        let one = |s: &str| vec![s.parse::<SocketAddr>().unwrap()];
        assert_eq!(listen(&[]), one("127.0.0.1:8888"));
        assert_eq!(
            listen(&["--host", "0.0.0.0", "--port", "8080"]),
            one("0.0.0.0:8080")
        );
        assert_eq!(listen(&["--port", "8080"]), one("127.0.0.1:8080"));
        assert_eq!(listen(&["--host", "::1"]), one("[::1]:8888"));
        let dir = Dir::new("host-port");
        let conf = dir.file("a.ron", "(listen: [\"10.0.0.1:3128\"])");
        assert_eq!(
            listen(&["--config", &conf, "--host", "0.0.0.0"]),
            one("0.0.0.0:3128")
        );
        assert_eq!(listen(&["--config", &conf]), one("10.0.0.1:3128"));
    }

    #[test]
    fn a_flag_that_contradicts_a_file_is_an_error_naming_both() {
        let dir = Dir::new("flag-conflict");
        let conf = dir.file("a.ron", "(limits: (max_connections_per_ip: Some(50)))");
        let e =
            effective_config(&args(&["--config", &conf, "--max-connections", "10"])).unwrap_err();
        assert!(
            e.starts_with(&format!(
                "command line (over {conf}): `limits.max_connections_per_ip`: 50 is more than"
            )),
            "{e}"
        );
    }

    #[test]
    fn print_config_prints_a_config_that_parses_back_equal() {
        let dir = Dir::new("print");
        let a = dir.file(
            "a.ron",
            "(proxy_name: \"edge\", policy: (deny: [\"*.ads.test\"], rate: Some((requests: 5, per: \"1s\"))))",
        );
        let b = dir.file(
            "b.ron",
            "(policy: (rate: Some((burst: Some(9)))), logging: (format: Combined))",
        );
        let (code, out, err) = run(&[
            "--config",
            &a,
            "--config",
            &b,
            "--port",
            "3128",
            "--blocklist",
            "x.txt",
            "--print-config",
        ]);
        assert_eq!(code, Some(0), "{err}");
        assert!(
            out.starts_with("// The effective configuration: built-in defaults + "),
            "{out}"
        );
        let printed = Config::from_ron(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
        let expected = effective_config(&args(&[
            "--config",
            &a,
            "--config",
            &b,
            "--port",
            "3128",
            "--blocklist",
            "x.txt",
        ]))
        .unwrap();
        assert_eq!(printed, expected);
        assert_eq!(printed.proxy_name, "edge");
        assert_eq!(
            printed.listen,
            vec!["127.0.0.1:3128".parse::<SocketAddr>().unwrap()]
        );
        let rate = printed.policy.rate.unwrap();
        assert_eq!((rate.requests, rate.burst), (5, Some(9)));
        assert_eq!(printed.policy.deny_lists, vec!["x.txt"]);
        assert_eq!(printed.logging.format, LogFormat::Combined);
        // Without flags or files: the defaults.
        let (code, out, _) = run(&["--print-config"]);
        assert_eq!(code, Some(0));
        assert_eq!(Config::from_ron(&out).unwrap(), Config::default());
        // A bad file: the error, status 1.
        let bad = dir.file("bad.ron", "(\n  logging: (format: Xml),\n)");
        let (code, out, err) = run(&["--config", &bad, "--print-config"]);
        assert_eq!((code, out.as_str()), (Some(1), ""));
        assert!(
            err.starts_with(&format!(
                "{bad}:2:21: `logging.format`: unknown value `Xml`"
            )),
            "{err}"
        );
    }

    #[test]
    fn check_config_validates_the_files_the_policy_names() {
        let dir = Dir::new("check");
        let list = dir.file("block.txt", "ads.test\n*.tracker.test\n");
        let conf = dir.file("a.ron", &format!("(policy: (deny_lists: [{list:?}]))"));
        let (code, out, err) = run(&["--config", &conf, "--check-config"]);
        assert_eq!(code, Some(0), "{err}");
        assert!(out.starts_with("configuration OK ("), "{out}");
        assert!(out.ends_with("would listen on 127.0.0.1:8888\n"), "{out}");
        assert!(
            err.contains(&format!(
                "policy: {list}: 2 entries loaded, 0 lines rejected"
            )),
            "{err}"
        );
        // A bad line in a list: reported, status 1.
        dir.file("block.txt", "ads.test\nnot a domain\n");
        let (code, _, err) = run(&["--config", &conf, "--check-config"]);
        assert_eq!(code, Some(1));
        assert!(err.contains(&format!("policy: {list}:2: ")), "{err}");
        // A missing list.
        std::fs::remove_file(&list).unwrap();
        let (code, _, err) = run(&["--config", &conf, "--check-config"]);
        assert_eq!(code, Some(1));
        assert!(err.starts_with(&format!("{list}: No such file")), "{err}");
        // A bad configuration.
        let bad = dir.file("bad.ron", "(policy: (clients: [\"10.1.2.3/99\"]))");
        let (code, _, err) = run(&["--config", &bad, "--check-config"]);
        assert_eq!(code, Some(1));
        assert!(
            err.starts_with(&format!("{bad}:1:21: `policy.clients[0]`")),
            "{err}"
        );
        // Neither flag: nothing to do here.
        assert_eq!(run(&[]).0, None);
    }

    #[test]
    fn describe_says_where_it_logs() {
        let dir = Dir::new("describe");
        let s = Settings::load(&args(&[
            "--log-dir",
            &dir.0.display().to_string(),
            "--log-format",
            "json",
        ]))
        .unwrap();
        assert_eq!(
            s.describe(),
            format!(
                "access log: {}/access.log (json, rotate at 10MiB, keep 5)",
                dir.0.display()
            )
        );
        let s = Settings::load(&args(&[])).unwrap();
        assert_eq!(s.describe(), "access log: console (human)");
        let s = Settings::load(&args(&["--quiet"])).unwrap();
        assert_eq!(s.describe(), "access log: off (--quiet)");
    }
}
