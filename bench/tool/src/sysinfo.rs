//! The table's header: when, on what machine, with which versions of the
//! tools and of the proxy's source.

use std::process::Command;

/// Whether `program` (a path, or a name looked up in PATH) is executable.
pub(crate) fn has_program(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &std::path::Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.contains('/') {
        return executable(std::path::Path::new(program));
    }
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| executable(&dir.join(program))))
        .unwrap_or(false)
}

/// The header lines (Markdown list items).
pub(crate) fn header(settings: &str) -> String {
    let date = first_line(&["date", "-u", "+%Y-%m-%d %H:%M UTC"]);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let versions = [
        first_line(&["nginx", "-v"]).replace("nginx version: ", ""),
        first_line(&["wrk", "-v"]),
        first_line(&["tinyproxy", "-v"]),
        first_line(&["squid", "-v"]).replace("Squid Cache: Version ", "squid "),
        first_line(&["haproxy", "-v"])
            .split(" - ")
            .next()
            .unwrap_or("")
            .replace("HAProxy version ", "haproxy "),
    ];
    format!(
        "- date: {date}\n\
         - machine: Linux {kernel}, {} x {cpus} CPUs; everything on loopback, load generator on the same CPUs\n\
         - tools: {}\n\
         - proxy source: {}\n\
         - load: {settings}\n",
        cpu_model(),
        versions.join(", "),
        commit(),
    )
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn commit() -> String {
    let head = first_line(&["git", "rev-parse", "--short", "HEAD"]);
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    if dirty {
        format!("commit {head} with uncommitted changes")
    } else {
        format!("commit {head}")
    }
}

/// The first non-empty line a command prints (stdout, else stderr), cut
/// before any copyright notice; "?" if it cannot run.
fn first_line(argv: &[&str]) -> String {
    let Ok(out) = Command::new(argv[0]).args(&argv[1..]).output() else {
        return "?".into();
    };
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("?");
    line.split(" Copyright").next().unwrap_or(line).to_string()
}
