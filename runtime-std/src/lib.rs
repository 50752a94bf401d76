//! What both proxy binaries share beside their network loop: the command
//! line, settings and config files, the clock, name resolution, the idle
//! upstream pool, the access-log sink and trace files. `proxy-smol`
//! depends on this library; `proxy-std`'s own loop is in its binary.

pub mod access_log;
pub mod buf;
pub mod cli;
pub mod clock;
pub mod diag;
pub mod io_error;
pub mod lifecycle;
pub mod pool;
pub mod resolver;
pub mod settings;
pub mod signals;
pub mod splice;

pub use cli::Args;
pub use clock::Clock;
pub use settings::Settings;
