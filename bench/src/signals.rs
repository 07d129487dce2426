//! The command-line tools' shared SIGINT/SIGTERM handling.

use std::{
    io,
    sync::{Arc, atomic::AtomicBool},
};

use signal_hook::consts::{SIGINT, SIGTERM};

/// A flag SIGINT and SIGTERM set. The first signal asks the run to end (and print its report);
/// a second one, seeing the flag already set, exits at once with status 130.
pub fn stop_flag() -> io::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&stop))?;
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    Ok(stop)
}
