//! The targets of the comparison and how each proxy is started: ours with
//! flags and bench/proxy.ron, tinyproxy and Squid with generated configs
//! that let loopback clients reach loopback origins on any port, HAProxy
//! as a reverse proxy in front of the origin (the ceiling reference for
//! an L7 relay), and the minimal relay (`relay.rs`, the physical limit).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::error::{bail, Context, Result};
use crate::origin::addr;
use crate::service::Service;
use crate::workdir::Workdir;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    /// No proxy: the baseline, straight to the origin.
    Direct,
    /// `proxy-bench relay`: one TCP listener per destination, no parsing.
    Relay,
    /// proxy-std or proxy-smol from this workspace.
    Ours,
    /// The same with the cache on (`NAME+cache`), measured on hits.
    OursCached,
    /// HAProxy in HTTP reverse mode in front of the origin: no CONNECT.
    Haproxy,
    Tinyproxy,
    Squid,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Target {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
}

/// Every target, in the table's order.
pub(crate) const ALL: [Target; 10] = [
    Target {
        name: "direct",
        kind: Kind::Direct,
    },
    Target {
        name: "relay",
        kind: Kind::Relay,
    },
    Target {
        name: "proxy-std",
        kind: Kind::Ours,
    },
    Target {
        name: "proxy-smol",
        kind: Kind::Ours,
    },
    Target {
        name: "proxy-smol-1w",
        kind: Kind::Ours,
    },
    Target {
        name: "proxy-std+cache",
        kind: Kind::OursCached,
    },
    Target {
        name: "proxy-smol+cache",
        kind: Kind::OursCached,
    },
    Target {
        name: "haproxy",
        kind: Kind::Haproxy,
    },
    Target {
        name: "tinyproxy",
        kind: Kind::Tinyproxy,
    },
    Target {
        name: "squid",
        kind: Kind::Squid,
    },
];

/// The suffix of a target that runs our binary with `--workers 1`: the
/// worker-scaling figure (one executor thread against one per core).
const ONE_WORKER: &str = "-1w";

/// What starting a proxy needs.
pub(crate) struct Setup<'a> {
    pub(crate) work: &'a Workdir,
    /// Where proxy-std and proxy-smol are (target/release).
    pub(crate) bin_dir: &'a Path,
    /// bench/proxy.ron.
    pub(crate) proxy_config: &'a Path,
    /// The HTTP origin (nginx), HAProxy's only server.
    pub(crate) origin: SocketAddr,
}

impl Target {
    /// The program a target needs on this machine (none for `direct`).
    pub(crate) fn program(&self, setup: &Setup) -> Option<String> {
        match self.kind {
            Kind::Direct | Kind::Relay => None,
            Kind::Ours | Kind::OursCached => {
                Some(setup.bin_dir.join(self.binary()).display().to_string())
            }
            Kind::Haproxy => Some("haproxy".into()),
            Kind::Tinyproxy => Some("tinyproxy".into()),
            Kind::Squid => Some("squid".into()),
        }
    }

    /// Our binary's name (a cached target, or one with one worker, runs
    /// the binary it is named after).
    fn binary(&self) -> &'static str {
        self.name
            .trim_end_matches("+cache")
            .trim_end_matches(ONE_WORKER)
    }

    /// Starts the proxy on 127.0.0.1:`port` and waits until it accepts.
    pub(crate) fn start(&self, setup: &Setup, port: u16) -> Result<Service> {
        let log = setup.work.file(&format!("{}-{port}.log", self.name));
        let mut service = match self.kind {
            Kind::Direct => bail!("direct has no proxy to start"),
            Kind::Relay => bail!("the relay is started with its routes (start_relay)"),
            Kind::Haproxy => {
                let conf = setup.work.write(
                    &format!("haproxy-{port}.cfg"),
                    &haproxy_conf(port, setup.origin),
                )?;
                Service::spawn(
                    self.name,
                    Command::new("haproxy").arg("-db").arg("-f").arg(conf),
                    &log,
                )?
            }
            Kind::Ours | Kind::OursCached => {
                let mut command = Command::new(setup.bin_dir.join(self.binary()));
                command
                    .arg("--listen")
                    .arg(addr(port).to_string())
                    .arg("--quiet")
                    .arg("--config")
                    .arg(setup.proxy_config);
                if self.name.ends_with(ONE_WORKER) {
                    command.arg("--workers").arg("1");
                }
                if self.kind == Kind::OursCached {
                    // Room for the 10 MiB file too.
                    let layer = setup
                        .work
                        .write("cache.ron", "(cache: (max_object: \"16MiB\"))\n")?;
                    command.arg("--config").arg(layer).arg("--cache");
                }
                Service::spawn(self.name, &mut command, &log)?
            }
            Kind::Tinyproxy => {
                let conf = setup.work.write(
                    &format!("tinyproxy-{port}.conf"),
                    &tinyproxy_conf(setup.work, port),
                )?;
                let mut s = Service::spawn(
                    self.name,
                    Command::new("tinyproxy").arg("-d").arg("-c").arg(conf),
                    &log,
                )?;
                s.add_log(setup.work.file("tinyproxy.log"));
                s
            }
            Kind::Squid => {
                let conf = setup
                    .work
                    .write(&format!("squid-{port}.conf"), &squid_conf(setup.work, port))?;
                let mut s = Service::spawn(
                    self.name,
                    Command::new("squid").arg("-N").arg("-f").arg(conf),
                    &log,
                )?;
                s.add_log(setup.work.file("squid-cache.log"));
                s
            }
        };
        // Squid takes a few seconds to come up.
        service.wait_port(addr(port), Duration::from_secs(30))?;
        Ok(service)
    }
}

/// Starts the minimal relay with `routes` (listen, destination) and waits
/// until every listener accepts.
pub(crate) fn start_relay(setup: &Setup, routes: &[(SocketAddr, SocketAddr)]) -> Result<Service> {
    let exe = std::env::current_exe().context("finding proxy-bench's own path")?;
    let mut command = Command::new(exe);
    command.arg("relay");
    for (listen, to) in routes {
        command.arg("--route").arg(format!("{listen}={to}"));
    }
    let mut relay = Service::spawn("relay", &mut command, &setup.work.file("relay.log"))?;
    for (listen, _) in routes {
        relay.wait_port(*listen, Duration::from_secs(10))?;
    }
    Ok(relay)
}

/// HAProxy as Debian ships it, in HTTP mode (it parses and forwards every
/// request, absolute-form included) with one thread per core and the
/// server connections shared between clients (`http-reuse always`), as
/// a forward proxy's upstream pool is. `maxconn` keeps its descriptor
/// needs (two per connection) under the 20,000 the machine allows.
fn haproxy_conf(port: u16, origin: SocketAddr) -> String {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!(
        "# generated by proxy-bench\n\
         global\n\
         \x20 nbthread {threads}\n\
         \x20 maxconn 9500\n\
         defaults\n\
         \x20 mode http\n\
         \x20 timeout connect 5s\n\
         \x20 timeout client 5m\n\
         \x20 timeout server 5m\n\
         \x20 timeout http-request 5m\n\
         \x20 http-reuse always\n\
         frontend bench\n\
         \x20 bind 127.0.0.1:{port}\n\
         \x20 default_backend origin\n\
         backend origin\n\
         \x20 server origin {origin}\n"
    )
}

/// tinyproxy: no ConnectPort lines, so CONNECT may reach any port; logs
/// and pid in the temp dir; it drops to nobody since we run as root.
fn tinyproxy_conf(work: &Workdir, port: u16) -> String {
    let dir = work.path().display();
    format!(
        "# generated by proxy-bench\n\
         User nobody\n\
         Group nogroup\n\
         Port {port}\n\
         Listen 127.0.0.1\n\
         Timeout 600\n\
         MaxClients 20000\n\
         Allow 127.0.0.1\n\
         LogFile \"{dir}/tinyproxy.log\"\n\
         LogLevel Critical\n\
         PidFile \"{dir}/tinyproxy-{port}.pid\"\n"
    )
}

/// Squid with its cache off: no cache_dir, nothing kept in memory, no
/// access log; no ACLs beyond `allow all`, so loopback origins and any
/// CONNECT port are reachable.
fn squid_conf(work: &Workdir, port: u16) -> String {
    let dir = work.path().display();
    format!(
        "# generated by proxy-bench\n\
         http_port 127.0.0.1:{port}\n\
         http_access allow all\n\
         cache deny all\n\
         cache_mem 0 MB\n\
         access_log none\n\
         cache_log {dir}/squid-cache.log\n\
         pid_filename {dir}/squid-{port}.pid\n\
         coredump_dir {dir}\n\
         netdb_filename none\n\
         pinger_enable off\n\
         visible_hostname proxy-bench\n\
         max_filedescriptors 20000\n\
         workers 1\n\
         shutdown_lifetime 0 seconds\n"
    )
}
