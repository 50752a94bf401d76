//! Active health checks of parent proxies (`routing.health_check`): a
//! thread of its own connects to each parent in turn (a TCP connection,
//! opened and closed, as HAProxy's `check` does by default) and tells the
//! routes what it found, so a parent that went away is skipped before a
//! client waits on it, and one that came back is used again at once
//! instead of after `routing::DOWN_FOR`. Each change is said once on
//! stderr.

use crate::clock::Clock;
use crate::diag;
use crate::settings::Settings;
use proxy_core::http::target::Host;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// How often the thread looks again when checks are off, or there is no
/// parent: a reload may turn them on.
const IDLE_LOOK: Duration = Duration::from_secs(1);

/// Starts the checking thread for the life of the process.
pub fn start(settings: Arc<Settings>, clock: Clock) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("parent-checks".to_owned())
        .spawn(move || {
            // What the last check said of each parent, by name: only
            // changes are reported.
            let mut was_down: Vec<(String, bool)> = Vec::new();
            loop {
                let snapshot = settings.shared.snapshot();
                let every = snapshot.config.routing.health_check;
                let parents = snapshot.routes.parents();
                if every.is_zero() || parents.is_empty() {
                    std::thread::sleep(IDLE_LOOK);
                    continue;
                }
                // Within the interval, so a blackholed parent cannot hold
                // the checks of the others back for long.
                let timeout = every.min(snapshot.config.timeouts.connect);
                for parent in parents {
                    let name = format!("{}:{}", parent.host, parent.port);
                    let found = reach(&settings, &parent.host, parent.port, timeout);
                    match &found {
                        Ok(()) => snapshot.routes.mark_up(parent),
                        Err(_) => snapshot.routes.mark_down(parent, clock.now()),
                    }
                    let down = found.is_err();
                    let before = was_down.iter_mut().find(|(n, _)| *n == name);
                    let changed = match before {
                        Some((_, d)) => std::mem::replace(d, down) != down,
                        None => {
                            was_down.push((name.clone(), down));
                            down
                        }
                    };
                    if changed {
                        match found {
                            Err(e) => diag::warn(format_args!(
                                "parent {name} is down ({e}): the others are tried first"
                            )),
                            Ok(()) => diag::info(format_args!("parent {name} is up again")),
                        }
                    }
                }
                drop(snapshot);
                std::thread::sleep(every);
            }
        })
        .map(|_| ())
}

/// Opens (and closes) a connection to the parent, its name resolved as
/// requests' are (`--resolve` overrides first).
fn reach(settings: &Settings, host: &Host, port: u16, timeout: Duration) -> Result<(), String> {
    let ips = match host {
        Host::Ip(ip) => vec![*ip],
        Host::Name(name) => settings
            .resolver
            .resolve_blocking(name)
            .map_err(|e| format!("cannot resolve it: {e}"))?,
    };
    let mut last = String::from("no address");
    for ip in ips {
        match TcpStream::connect_timeout(&SocketAddr::new(ip, port), timeout) {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}
