//! A pod's network namespace, and running work inside it.
//!
//! Work runs on a thread of its own that `setns()`'d into the namespace, so the calling
//! thread (and every socket it owns) stays where it is: a netlink socket belongs to the
//! namespace of the thread that opened it.

use crate::error::Error;
use crate::wiring::WiringError;
use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// An open network namespace (CNI_NETNS).
#[derive(Debug)]
pub struct PodNetns {
    path: PathBuf,
    file: File,
}

impl PodNetns {
    /// Opens the namespace at `path`; a missing one is an error.
    pub fn open(path: &Path) -> Result<PodNetns, Error> {
        PodNetns::open_if_present(path)?.ok_or_else(|| Error::Netns {
            path: path.to_owned(),
            problem: "does not exist".to_owned(),
        })
    }

    /// Opens the namespace at `path` for a pod: it must exist, be a network namespace one
    /// can enter, and not be the calling thread's own (the node's).
    pub fn open_pod(path: &Path) -> Result<PodNetns, Error> {
        let ns = PodNetns::open(path)?;
        if ns.is_current() {
            return Err(Error::Netns {
                path: path.to_owned(),
                problem: "is the node's own namespace".to_owned(),
            });
        }
        ns.run(|| Ok(()))?;
        Ok(ns)
    }

    /// Opens the namespace at `path`, `None` when it no longer exists.
    pub fn open_if_present(path: &Path) -> Result<Option<PodNetns>, Error> {
        match File::open(path) {
            Ok(file) => Ok(Some(PodNetns {
                path: path.to_owned(),
                file,
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Netns {
                path: path.to_owned(),
                problem: format!("cannot be opened: {e}"),
            }),
        }
    }

    /// The namespace's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A descriptor of the namespace, valid while `self` lives.
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// True when this is the namespace the calling thread is in (the node's own).
    pub fn is_current(&self) -> bool {
        let here = std::fs::metadata("/proc/thread-self/ns/net");
        match (self.file.metadata(), here) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }

    /// Runs `f` on a new thread inside the namespace and returns what it returns.
    ///
    /// Fails with [`Error::Netns`] when the path is not a network namespace (e.g. a bind
    /// mount left behind by a deleted one).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> Result<T, Error> + Send) -> Result<T, Error> {
        let fd = self.fd();
        std::thread::scope(|scope| {
            let worker = std::thread::Builder::new()
                .name("overlay-cni-netns".to_owned())
                .spawn_scoped(scope, move || {
                    // SAFETY: `fd` is an open descriptor (self.file outlives this scope);
                    // setns(CLONE_NEWNET) only moves this thread, which ends when `f` is done.
                    let rc = unsafe { libc::setns(fd, libc::CLONE_NEWNET) };
                    if rc != 0 {
                        return Err(Error::Netns {
                            path: self.path.clone(),
                            problem: format!(
                                "is not a network namespace one can enter (setns: {})",
                                std::io::Error::last_os_error()
                            ),
                        });
                    }
                    f()
                })
                .map_err(|e| Error::Io {
                    what: "starting a thread for the pod's namespace".to_owned(),
                    source: e,
                })?;
            worker.join().unwrap_or_else(|_| {
                Err(Error::Wiring(WiringError::NetnsThreadPanicked(
                    self.path.clone(),
                )))
            })
        })
    }
}
