//! Where connections run: the worker threads while they have work, the
//! parking lot while they wait.

use crate::conn::{self, Conn, Step};
use crate::parking::ParkingLot;
use crate::workers::Workers;
use proxy_host::lifecycle::Lifecycle;
use proxy_host::pool::{Pool, MAX_IDLE_PER_ADDR};
use proxy_host::{Clock, Settings};
use std::io;
use std::sync::Arc;

/// The connections' shared state, their workers and their parking lot.
pub(crate) struct Server {
    pub(crate) conns: Arc<conn::Shared>,
    workers: Arc<Workers>,
    lot: ParkingLot<Box<Conn>>,
}

impl Server {
    pub(crate) fn new(settings: Settings, life: Lifecycle) -> io::Result<Arc<Server>> {
        let pool = Pool::new(settings.config().timeouts.upstream_idle, MAX_IDLE_PER_ADDR);
        let lot = ParkingLot::new(life.drain_fd())?;
        Ok(Arc::new(Server {
            conns: Arc::new(conn::Shared {
                settings: Arc::new(settings),
                clock: Clock::new(),
                pool,
                life,
            }),
            workers: Arc::new(Workers::new()),
            lot,
        }))
    }

    /// Runs `conn` on a worker until it is done or parks.
    pub(crate) fn run(self: &Arc<Self>, conn: Box<Conn>) {
        let server = Arc::clone(self);
        self.workers
            .run(Box::new(move || server.run_until_parked(conn)));
    }

    fn run_until_parked(self: &Arc<Self>, mut conn: Box<Conn>) {
        let crowded = || self.workers.crowded();
        loop {
            match conn.resume(&crowded) {
                Step::Done => return conn.finish(),
                Step::Park(wait) => match self.lot.park(conn, wait) {
                    Ok(()) => return,
                    // Not parkable now (shutdown began): keep it here.
                    Err(back) => {
                        conn = back;
                        conn.no_parking();
                    }
                },
            }
        }
    }

    /// The parking lot's thread: hands connections back to workers as
    /// they have something to do. Never returns.
    pub(crate) fn watch_parked(self: &Arc<Self>) {
        self.lot.watch(|conn| self.run(conn));
    }
}
