//! Waiting for an fd to become ready, or for shutdown: `poll(2)` over the fd and an eventfd.
//!
//! The packet threads use non-blocking fds and only wait when there is nothing to do, so a
//! busy thread makes no extra syscalls; it checks [`Shutdown::requested`] (one relaxed load)
//! once per packet. An idle thread sleeps in [`Shutdown::wait`], which returns as soon as
//! [`Shutdown::trigger`] writes the eventfd.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// Readable (`POLLIN`).
pub(crate) const READABLE: libc::c_short = libc::POLLIN;
/// Writable (`POLLOUT`).
pub(crate) const WRITABLE: libc::c_short = libc::POLLOUT;

/// What [`Shutdown::wait`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// The fd is ready (or the wait was interrupted): try the operation again.
    Ready,
    /// Shutdown was requested: the thread returns.
    Stop,
    /// The timeout passed.
    Timeout,
}

/// The shutdown signal shared by the packet threads and [`super::Datapath`].
#[derive(Debug)]
pub(crate) struct Shutdown {
    flag: AtomicBool,
    event: File,
}

impl Shutdown {
    /// A new, untriggered signal.
    pub(crate) fn new() -> io::Result<Shutdown> {
        // SAFETY: eventfd has no memory preconditions; it returns a new fd or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd, is open, and nothing else owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Shutdown {
            flag: AtomicBool::new(false),
            event: File::from(owned),
        })
    }

    /// Asks every thread to stop and wakes the ones waiting.
    pub(crate) fn trigger(&self) {
        self.flag.store(true, Ordering::Release);
        // An eventfd write of 1 can only fail if the counter would overflow, and then it is
        // already readable: either way the waiters wake.
        let _ = (&self.event).write(&1u64.to_ne_bytes());
    }

    /// True once [`Shutdown::trigger`] was called.
    #[inline]
    pub(crate) fn requested(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Waits until `fd` has one of `events`, shutdown is requested, or `timeout_ms` passes
    /// (-1: no timeout).
    pub(crate) fn wait(&self, fd: BorrowedFd<'_>, events: libc::c_short, timeout_ms: i32) -> Wait {
        let mut fds = [
            libc::pollfd {
                fd: fd.as_raw_fd(),
                events,
                revents: 0,
            },
            libc::pollfd {
                fd: self.event.as_raw_fd(),
                events: READABLE,
                revents: 0,
            },
        ];
        self.poll(&mut fds, timeout_ms)
    }

    /// Waits until either of two fds is readable, shutdown is requested, or `timeout_ms`
    /// passes (-1: no timeout).
    pub(crate) fn wait_readable(
        &self,
        a: BorrowedFd<'_>,
        b: BorrowedFd<'_>,
        timeout_ms: i32,
    ) -> Wait {
        let pollfd = |fd: i32| libc::pollfd {
            fd,
            events: READABLE,
            revents: 0,
        };
        let mut fds = [
            pollfd(a.as_raw_fd()),
            pollfd(b.as_raw_fd()),
            pollfd(self.event.as_raw_fd()),
        ];
        self.poll(&mut fds, timeout_ms)
    }

    /// Sleeps up to `timeout_ms` unless shutdown is requested first.
    pub(crate) fn sleep(&self, timeout_ms: i32) -> Wait {
        let mut fds = [libc::pollfd {
            fd: self.event.as_raw_fd(),
            events: READABLE,
            revents: 0,
        }];
        self.poll(&mut fds, timeout_ms)
    }

    fn poll(&self, fds: &mut [libc::pollfd], timeout_ms: i32) -> Wait {
        if self.requested() {
            return Wait::Stop;
        }
        // SAFETY: `fds` is a valid, exclusively borrowed array of `fds.len()` pollfd structs
        // that outlives the call; poll only writes their `revents`.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if self.requested() {
            Wait::Stop
        } else if rc == 0 {
            Wait::Timeout
        } else {
            // Ready, or EINTR / a poll error: the caller retries its operation, which reports
            // any real error itself.
            Wait::Ready
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::time::{Duration, Instant};

    #[test]
    fn trigger_wakes_a_waiter() {
        let shutdown = std::sync::Arc::new(Shutdown::new().expect("eventfd"));
        let (a, _b) = std::os::unix::net::UnixDatagram::pair().expect("pair");
        let s = shutdown.clone();
        let start = Instant::now();
        let waiter = std::thread::spawn(move || s.wait(a.as_fd(), READABLE, 10_000));
        std::thread::sleep(Duration::from_millis(50));
        shutdown.trigger();
        assert_eq!(waiter.join().expect("waiter"), Wait::Stop);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "woken, not timed out"
        );
        assert!(shutdown.requested());
        assert_eq!(shutdown.sleep(10_000), Wait::Stop);
    }

    #[test]
    fn ready_and_timeout_are_told_apart() {
        let shutdown = Shutdown::new().expect("eventfd");
        let (a, b) = std::os::unix::net::UnixDatagram::pair().expect("pair");
        assert_eq!(shutdown.wait(a.as_fd(), READABLE, 10), Wait::Timeout);
        b.send(b"x").expect("send");
        assert_eq!(shutdown.wait(a.as_fd(), READABLE, 10_000), Wait::Ready);
        assert_eq!(shutdown.wait(a.as_fd(), WRITABLE, 10_000), Wait::Ready);

        let (c, d) = std::os::unix::net::UnixDatagram::pair().expect("pair");
        assert_eq!(
            shutdown.wait_readable(c.as_fd(), d.as_fd(), 10),
            Wait::Timeout
        );
        c.send(b"x").expect("send");
        assert_eq!(
            shutdown.wait_readable(c.as_fd(), d.as_fd(), 10_000),
            Wait::Ready,
            "the second fd"
        );
        shutdown.trigger();
        assert_eq!(
            shutdown.wait_readable(c.as_fd(), c.as_fd(), 10_000),
            Wait::Stop
        );
    }
}
