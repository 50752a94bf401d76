//! Ports for our servers, in 18000-19999: taken in order, each checked
//! free by binding it, and never handed out twice in a run (so a restarted
//! proxy does not meet its predecessor's TIME_WAIT connections).

use std::net::TcpListener;

use crate::error::{bail, Result};

const FIRST: u16 = 18000;
const LAST: u16 = 19999;

pub(crate) struct Ports {
    next: u16,
}

impl Ports {
    pub(crate) fn new() -> Ports {
        Ports { next: FIRST }
    }

    /// The next free port. The check is a bind, released at once: the
    /// server that gets the port binds it a moment later.
    pub(crate) fn take(&mut self) -> Result<u16> {
        while self.next <= LAST {
            let port = self.next;
            self.next += 1;
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
        bail!("no free port left in {FIRST}-{LAST}")
    }
}
