//! Two threads moving packets between two TUN fds, one per direction: each read (virtio
//! header included) is written unchanged to the other fd. No parsing, no copies beyond the
//! kernel's, no allocation per packet: the most a TUN-based design can do.
//!
//! The fds are non-blocking, as in the agent's data path: a thread reads until the kernel says
//! `EAGAIN`, and only then waits in `poll(2)` on its fd and a shutdown eventfd (at most
//! [`WAIT_MS`] at a time, so every wait is bounded). Errors are counted, never fatal; the
//! threads are stopped and joined on drop.

use super::device::VNET_HDR_LEN;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The longest single wait in `poll(2)`, ms.
pub const WAIT_MS: i32 = 100;
/// Pause after an unexpected read error before trying again, ms.
const ERROR_PAUSE_MS: i32 = 10;
/// Read buffer: the vnet header plus the largest IP packet.
const BUF_LEN: usize = VNET_HDR_LEN + 65_535;

/// What one direction has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionStats {
    /// Reads forwarded (each one packet or one super-packet).
    pub packets: u64,
    /// Bytes forwarded, virtio headers not counted.
    pub bytes: u64,
    /// Failed reads and writes (other than `EAGAIN`/`EINTR`); the packet is dropped.
    pub errors: u64,
    /// The errno of the last error (0: none).
    pub last_errno: i32,
}

/// One direction's counters, written by its thread only; a cache line of their own, so the
/// two threads never contend for one.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Counters {
    packets: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    last_errno: AtomicI32,
}

impl Counters {
    fn error(&self, e: &io::Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.last_errno
            .store(e.raw_os_error().unwrap_or(-1), Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct Shared {
    /// The two TUN fds: direction `d` reads `fds[d]` and writes `fds[1 - d]`.
    fds: [OwnedFd; 2],
    stop: AtomicBool,
    /// Written once on stop; never read, so it stays readable and wakes every poll.
    event: OwnedFd,
    counters: [Counters; 2],
}

/// The forwarder: two threads, stopped and joined on drop (which closes the fds).
#[derive(Debug)]
pub struct Forwarder {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Forwarder {
    /// Starts forwarding between `a` and `b` (non-blocking TUN fds with the vnet header).
    pub fn start(a: OwnedFd, b: OwnedFd) -> io::Result<Forwarder> {
        // SAFETY: eventfd has no memory preconditions; it returns a new fd or -1.
        let event = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if event < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `event` was just returned by eventfd, is open, and nothing else owns it.
        let event = unsafe { OwnedFd::from_raw_fd(event) };
        let shared = Arc::new(Shared {
            fds: [a, b],
            stop: AtomicBool::new(false),
            event,
            counters: Default::default(),
        });
        let mut forwarder = Forwarder {
            shared,
            threads: Vec::new(),
        };
        for dir in 0..2 {
            let shared = forwarder.shared.clone();
            // On error `forwarder` is dropped, which stops the thread already started.
            let handle = std::thread::Builder::new()
                .name(format!("tunpipe-{dir}to{}", 1 - dir))
                .spawn(move || run(&shared, dir))?;
            forwarder.threads.push(handle);
        }
        Ok(forwarder)
    }

    /// The counters of direction 0 → 1 and 1 → 0.
    pub fn stats(&self) -> [DirectionStats; 2] {
        self.shared.counters.each_ref().map(|c| DirectionStats {
            packets: c.packets.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            last_errno: c.last_errno.load(Ordering::Relaxed),
        })
    }

    /// Stops both threads and waits for them (at most about [`WAIT_MS`]).
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a valid buffer to the eventfd we own. It can only fail
        // if the counter would overflow, and then the eventfd is readable anyway.
        let _ = unsafe {
            libc::write(
                self.shared.event.as_raw_fd(),
                one.as_ptr().cast(),
                one.len(),
            )
        };
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a wait ended with.
#[derive(Debug, PartialEq, Eq)]
enum Wait {
    /// Ready, timed out or interrupted: try again.
    Again,
    /// Shutdown: the thread returns.
    Stop,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Waits until `fd` has `events` (none: only a pause), shutdown, or `timeout_ms`.
    fn wait(&self, fd: Option<RawFd>, events: libc::c_short, timeout_ms: i32) -> Wait {
        let mut fds = [
            libc::pollfd {
                fd: self.event.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                // poll ignores negative fds.
                fd: fd.unwrap_or(-1),
                events,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid, exclusively borrowed array of two pollfd structs that
        // outlives the call; poll only writes their `revents`.
        let _ = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
        if self.stopping() {
            Wait::Stop
        } else {
            Wait::Again
        }
    }
}

/// One direction: read `fds[dir]`, write `fds[1 - dir]`, until shutdown.
fn run(shared: &Shared, dir: usize) {
    let (src, dst) = (shared.fds[dir].as_raw_fd(), shared.fds[1 - dir].as_raw_fd());
    let counters = &shared.counters[dir];
    let mut buf = vec![0u8; BUF_LEN];
    while !shared.stopping() {
        // SAFETY: reads at most `buf.len()` bytes into the exclusively borrowed `buf`; `src`
        // stays open while `shared` lives.
        let n = unsafe { libc::read(src, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            let wait = match e.raw_os_error() {
                Some(libc::EINTR) => Wait::Again,
                Some(libc::EAGAIN) => shared.wait(Some(src), libc::POLLIN, WAIT_MS),
                _ => {
                    counters.error(&e);
                    shared.wait(None, 0, ERROR_PAUSE_MS)
                }
            };
            if wait == Wait::Stop {
                return;
            }
            continue;
        }
        let n = n.unsigned_abs();
        if write(shared, dst, &buf[..n], counters) == Wait::Stop {
            return;
        }
    }
}

/// Writes one packet (virtio header included) to `dst`, waiting while the kernel says
/// `EAGAIN`; counts it, or the error that dropped it.
fn write(shared: &Shared, dst: RawFd, packet: &[u8], counters: &Counters) -> Wait {
    loop {
        // SAFETY: writes `packet.len()` bytes from the borrowed `packet`; `dst` stays open
        // while `shared` lives.
        let n = unsafe { libc::write(dst, packet.as_ptr().cast(), packet.len()) };
        if n >= 0 {
            counters.packets.fetch_add(1, Ordering::Relaxed);
            let payload = packet.len().saturating_sub(VNET_HDR_LEN) as u64;
            counters.bytes.fetch_add(payload, Ordering::Relaxed);
            return Wait::Again;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN) => {
                if shared.wait(Some(dst), libc::POLLOUT, WAIT_MS) == Wait::Stop {
                    return Wait::Stop;
                }
            }
            _ => {
                counters.error(&e);
                return Wait::Again;
            }
        }
        if shared.stopping() {
            return Wait::Stop;
        }
    }
}
