//! Name resolution: static overrides first, then the system resolver.

use crate::offload::{Pool, Ticket};
use proxy_core::ResolveError;
use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};

/// Resolves names, consulting `--resolve` overrides before the system.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    overrides: HashMap<String, Vec<IpAddr>>,
}

impl Resolver {
    /// A resolver with these overrides (names already normalised).
    pub fn new(overrides: impl IntoIterator<Item = (String, Vec<IpAddr>)>) -> Self {
        Resolver {
            overrides: overrides.into_iter().collect(),
        }
    }

    /// The override for `host`, if there is one: answered without I/O.
    pub fn lookup_static(&self, host: &str) -> Option<Result<Vec<IpAddr>, ResolveError>> {
        self.overrides.get(host).map(|addrs| {
            if addrs.is_empty() {
                Err(ResolveError::NotFound)
            } else {
                Ok(addrs.clone())
            }
        })
    }

    /// Resolves `host`, blocking on the system resolver if needed.
    pub fn resolve_blocking(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        if let Some(answer) = self.lookup_static(host) {
            return answer;
        }
        system_resolve(host)
    }
}

/// Threads for system lookups: getaddrinfo blocks for as long as DNS
/// takes, so a few dozen slow names at once must not hold as many
/// connection threads.
static LOOKUPS: Pool = Pool::new("resolver", || 16);

/// Asks the system resolver on a lookup thread.
pub fn system_lookup(host: String) -> Ticket<Result<Vec<IpAddr>, ResolveError>> {
    LOOKUPS.run(move || system_resolve(&host))
}

/// Asks the system resolver (getaddrinfo); blocks.
pub fn system_resolve(host: &str) -> Result<Vec<IpAddr>, ResolveError> {
    match (host, 0u16).to_socket_addrs() {
        Ok(addrs) => {
            let mut out: Vec<IpAddr> = Vec::new();
            for a in addrs {
                if !out.contains(&a.ip()) {
                    out.push(a.ip());
                }
            }
            if out.is_empty() {
                Err(ResolveError::NotFound)
            } else {
                Ok(out)
            }
        }
        Err(e) => {
            let text = e.to_string();
            if text.contains("not known")
                || text.contains("No address")
                || text.contains("nodename")
            {
                Err(ResolveError::NotFound)
            } else {
                Err(ResolveError::Failed(text))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_answer_first_and_empty_means_not_found() {
        let r = Resolver::new([
            ("a.test".to_owned(), vec!["127.0.0.2".parse().unwrap()]),
            ("gone.test".to_owned(), vec![]),
        ]);
        assert_eq!(
            r.resolve_blocking("a.test").unwrap(),
            vec!["127.0.0.2".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(r.resolve_blocking("gone.test"), Err(ResolveError::NotFound));
        assert!(r.lookup_static("other.test").is_none());
        assert!(r.resolve_blocking("localhost").unwrap()[0].is_loopback());
    }
}
