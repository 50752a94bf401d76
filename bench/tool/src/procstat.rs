//! CPU time, resident memory and open descriptors of a process tree (a
//! pid and all its descendants), read from /proc. A tree because nginx,
//! and possibly Squid, do their work in child processes.

use std::collections::HashMap;
use std::fs;
use std::process::Command;

use crate::error::{Context, Result};

/// The fields of /proc/PID/stat after the command name (which may hold
/// spaces and parentheses, hence the search for the last ')'). Index 0 is
/// field 3 of proc(5) (`state`).
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    // `state` is a letter: it parses as 0, which keeps the indices aligned.
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// Field N of proc(5)'s numbering (1-based, pid is 1).
fn field(fields: &[u64], n: usize) -> u64 {
    fields.get(n - 3).copied().unwrap_or(0)
}

/// `root` and all its descendants, root first.
pub(crate) fn tree(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            if let Some(fields) = stat_fields(pid) {
                children
                    .entry(field(&fields, 4) as u32)
                    .or_default()
                    .push(pid);
            }
        }
    }
    let mut pids = vec![root];
    let mut i = 0;
    while i < pids.len() {
        if let Some(kids) = children.get(&pids[i]) {
            pids.extend(kids);
        }
        i += 1;
    }
    pids
}

/// User + system CPU of the tree in clock ticks: utime + stime of every
/// live process (each covers all its threads), plus the root's cutime +
/// cstime, which hold the children it has already reaped.
pub(crate) fn cpu_ticks(root: u32) -> Result<u64> {
    let root_fields = stat_fields(root).context(format!("process {root} is gone"))?;
    let mut ticks = field(&root_fields, 16) + field(&root_fields, 17);
    for pid in tree(root) {
        if let Some(f) = stat_fields(pid) {
            ticks += field(&f, 14) + field(&f, 15);
        }
    }
    Ok(ticks)
}

/// Sum of VmRSS over the tree, in KiB.
pub(crate) fn rss_kib(root: u32) -> Result<u64> {
    let mut total = 0;
    for pid in tree(root) {
        let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
            if pid == root {
                crate::error::bail!("process {root} is gone");
            }
            continue;
        };
        let rss = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
        total += rss;
    }
    Ok(total)
}

/// Open file descriptors over the tree.
pub(crate) fn open_fds(root: u32) -> usize {
    tree(root)
        .into_iter()
        .filter_map(|pid| fs::read_dir(format!("/proc/{pid}/fd")).ok())
        .map(|dir| dir.count())
        .sum()
}

/// Threads of the process (its `Threads:` in /proc), 0 if it is gone.
pub(crate) fn threads(pid: u32) -> usize {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Open sockets over the tree (descriptors that are sockets, not files
/// or the pipes a proxy pools for splicing).
pub(crate) fn open_sockets(root: u32) -> usize {
    tree(root)
        .into_iter()
        .filter_map(|pid| fs::read_dir(format!("/proc/{pid}/fd")).ok())
        .flat_map(|dir| dir.filter_map(|e| e.ok()))
        .filter(|e| {
            fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
        })
        .count()
}

/// This process's soft open-files limit (`usize::MAX` if unlimited or
/// unreadable as a number), which every server it starts inherits.
pub(crate) fn open_files_limit() -> Result<usize> {
    let limits = fs::read_to_string("/proc/self/limits").context("reading /proc/self/limits")?;
    Ok(limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(usize::MAX))
}

/// Clock ticks per second (USER_HZ), the unit of /proc's CPU times.
pub(crate) fn ticks_per_second() -> Result<u64> {
    let out = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .context("running getconf CLK_TCK")?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("parsing getconf CLK_TCK")
}
