//! The host side both proxy binaries share, beside their network loops:
//! the command line, settings and config files, the clock, name
//! resolution, the idle upstream pool, the access-log sink and trace
//! files, the lifecycle (shutdown stages, signals), and the pools of
//! input buffers and splice pipes. Everything here touches the process or
//! the OS; what is pure (config types, record formats) is in `proxy-core`.

pub mod access_log;
pub mod buf;
pub mod cli;
pub mod clock;
pub mod diag;
pub mod dial;
pub mod handover;
pub mod hashing;
pub mod io_error;
pub mod lifecycle;
pub mod listener;
pub mod offload;
pub mod pool;
pub mod privileges;
pub mod probe;
pub mod resolver;
pub mod settings;
pub mod signals;
pub mod sockopt;
pub mod splice;

pub use cli::Args;
pub use clock::Clock;
pub use settings::Settings;
