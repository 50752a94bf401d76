//! Handles: opaque numbers that name a connection, an upstream connection
//! attempt or a name resolution in actions, inputs, logs and traces.

use serde::{Deserialize, Serialize};

/// Identifies one client connection (for logs and traces).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConnId(pub u64);

/// Identifies one upstream connection attempt within a client connection.
///
/// Results for an id the connection has moved past (a connect that timed
/// out, say) are ignored, so a late report can never be mistaken for the
/// current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UpstreamId(pub u64);

/// Identifies one name resolution within a client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QueryId(pub u64);
