//! Process signals both binaries answer the same way.

use crate::settings::Settings;
use signal_hook::consts::SIGHUP;
use signal_hook::iterator::Signals;

/// On SIGHUP, reads the configuration, lists and user files again and puts
/// them in force without dropping a connection; a reload that fails keeps
/// the running configuration and says why on stderr. Runs on its own
/// thread for the life of the process.
pub fn reload_on_sighup(settings: Settings) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGHUP])?;
    std::thread::Builder::new()
        .name("sighup".to_owned())
        .spawn(move || {
            for _ in signals.forever() {
                match settings.reload() {
                    Ok(()) => eprintln!("reloaded configuration"),
                    Err(e) => eprintln!("reload failed, keeping the running configuration: {e}"),
                }
            }
        })?;
    Ok(())
}
