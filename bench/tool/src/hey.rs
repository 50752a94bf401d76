//! HTTPS through CONNECT with hey: many requests for the 1 KiB file over
//! keep-alive connections inside TLS, so the tunnels carry small TLS
//! records both ways, as most of a forward proxy's traffic does. hey
//! (Go's client) sends `CONNECT` for an `https://` URL when given a proxy,
//! and its SNI with the port in it.
//!
//! A run with any response other than 200, any error, or a total body
//! size other than 1 KiB per response is an error, not a figure.

use std::net::SocketAddr;
use std::process::Command;

use crate::error::{bail, Context, Result};

pub(crate) struct Load {
    /// The TLS origin (or what stands for it, the minimal relay).
    pub(crate) origin: SocketAddr,
    pub(crate) proxy: Option<SocketAddr>,
    pub(crate) path: &'static str,
    pub(crate) size: u64,
    pub(crate) connections: u32,
    pub(crate) secs: u32,
}

#[derive(Debug, PartialEq)]
pub(crate) struct Outcome {
    pub(crate) requests_per_sec: f64,
    pub(crate) ok: u64,
    pub(crate) p99_ms: f64,
}

pub(crate) fn run(load: &Load) -> Result<Outcome> {
    let mut command = Command::new("hey");
    command
        .arg("-z")
        .arg(format!("{}s", load.secs))
        .arg("-c")
        .arg(load.connections.to_string())
        .arg("-t")
        .arg("10");
    if let Some(proxy) = load.proxy {
        command.arg("-x").arg(format!("http://{proxy}"));
    }
    command.arg(format!("https://{}{}", load.origin, load.path));
    let out = command.output().context("running hey")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "hey failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    judge(&text, load.size)
}

/// Reads hey's summary and checks every response.
fn judge(text: &str, size: u64) -> Result<Outcome> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let requests_per_sec = field("Requests/sec:")
        .and_then(|v| v.parse::<f64>().ok())
        .context("hey printed no Requests/sec")?;
    let total_data = field("Total data:")
        .and_then(|v| v.trim_end_matches(" bytes").parse::<u64>().ok())
        .unwrap_or(0);
    let mut ok = 0;
    let mut other = Vec::new();
    let mut section = "";
    for line in text.lines() {
        let t = line.trim();
        if t.ends_with("distribution:") {
            section = t;
            continue;
        }
        match section {
            "Status code distribution:" if t.starts_with('[') => {
                if let Some(n) = t.strip_prefix("[200]") {
                    ok = n.trim().trim_end_matches(" responses").parse().unwrap_or(0);
                } else {
                    other.push(t.to_string());
                }
            }
            "Error distribution:" if !t.is_empty() => other.push(t.to_string()),
            _ => {}
        }
    }
    if !other.is_empty() {
        bail!("bad responses or errors: {}", other.join("; "));
    }
    if ok == 0 {
        bail!("no response completed");
    }
    if total_data != ok * size {
        bail!("{ok} responses carried {total_data} body bytes, not {size} each");
    }
    let p99_ms = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99% in "))
        .and_then(|v| v.trim_end_matches(" secs").parse::<f64>().ok())
        .map_or(0.0, |s| s * 1000.0);
    Ok(Outcome {
        requests_per_sec,
        ok,
        p99_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "
Summary:
  Total:\t2.0031 secs
  Requests/sec:\t5722.5886
  
  Total data:\t2048 bytes
  Size/request:\t1024 bytes

Latency distribution:
  99% in 0.0064 secs

Status code distribution:
  [200]\t2 responses
";

    #[test]
    fn a_clean_run_is_a_figure() {
        let o = judge(GOOD, 1024).unwrap();
        assert_eq!(o.ok, 2);
        assert!((o.requests_per_sec - 5722.5886).abs() < 1e-6);
        assert!((o.p99_ms - 6.4).abs() < 1e-9);
    }

    #[test]
    fn errors_other_statuses_and_short_bodies_fail() {
        let errors = format!("{GOOD}\nError distribution:\n  [3]\tGet \"https://x\": EOF\n");
        assert!(judge(&errors, 1024).is_err());
        let forbidden = GOOD.replace(
            "[200]\t2 responses",
            "[200]\t1 responses\n  [403]\t1 responses",
        );
        assert!(judge(&forbidden, 1024).is_err());
        assert!(judge(GOOD, 2048).is_err(), "bodies of the wrong size");
    }
}
