//! SIGINT, SIGTERM and SIGHUP set a flag instead of killing the process, so that every
//! namespace and agent is removed by the destructors; the run checks the flag between steps
//! and in every wait.

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_signum: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Installs the handler for SIGHUP, SIGINT and SIGTERM.
pub fn catch() {
    for signum in [libc::SIGHUP, libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installs a handler (glibc signal(3): BSD semantics, it stays installed)
        // that only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(signum, on_signal as *const () as libc::sighandler_t);
        }
    }
}

/// True once a signal arrived.
pub fn happened() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Fails once a signal arrived.
pub fn check() -> anyhow::Result<()> {
    if happened() {
        anyhow::bail!("interrupted");
    }
    Ok(())
}

/// Sleeps `total` in short slices; fails as soon as a signal arrives.
pub fn sleep(total: std::time::Duration) -> anyhow::Result<()> {
    let end = std::time::Instant::now() + total;
    loop {
        check()?;
        let now = std::time::Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(std::time::Duration::from_millis(100)));
    }
}
