//! One network namespace, created on [`Netns::create`] and deleted (with every process still
//! in it) on drop.

use anyhow::{bail, Context};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Output};

/// A named network namespace (`ip netns`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name` with its loopback up.
    pub fn create(name: &str) -> anyhow::Result<Netns> {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        run("ip", &["netns", "add", name])?;
        let ns = Netns {
            name: name.to_owned(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's bind-mount path (what CNI_NETNS takes).
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/var/run/netns/{}", self.name))
    }

    /// Runs `ip -n <ns> args...`; returns stdout, or an error with stderr.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `program args...` inside the namespace and waits for it.
    pub fn exec(&self, program: &str, args: &[&str]) -> anyhow::Result<Output> {
        let out = self
            .command(program)
            .args(args)
            .output()
            .with_context(|| format!("running {program} in {}", self.name))?;
        Ok(out)
    }

    /// Sets a sysctl inside the namespace (never in the root namespace).
    pub fn sysctl(&self, key: &str, value: &str) -> anyhow::Result<()> {
        let out = self.exec("sysctl", &["-qw", &format!("{key}={value}")])?;
        if !out.status.success() {
            bail!(
                "sysctl {key}={value} in {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Moves the calling thread into this namespace (only this thread).
    pub fn enter_current_thread(&self) -> anyhow::Result<()> {
        let f = File::open(self.path()).with_context(|| format!("opening {:?}", self.path()))?;
        // SAFETY: setns on a valid namespace fd only changes the calling thread's namespace.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            bail!(
                "setns into {}: {}",
                self.name,
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// Runs `f` on a new thread inside this namespace and returns its result.
    ///
    /// Sockets, devices and netlink connections that `f` creates belong to this namespace,
    /// and threads `f` spawns start in it too.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        self.spawn(f)?
            .join()
            .map_err(|_| anyhow::anyhow!("thread in {} panicked", self.name))
    }

    /// Starts `f` on a new thread inside this namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<std::thread::JoinHandle<T>> {
        let path = self.path();
        let name = self.name.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::Builder::new()
            .name(format!("in-{name}"))
            .spawn(move || {
                let entered = File::open(&path)
                    .map_err(|e| format!("opening {path:?}: {e}"))
                    .and_then(|fd| {
                        // SAFETY: as in enter_current_thread.
                        let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
                        if rc == 0 {
                            Ok(())
                        } else {
                            Err(format!(
                                "setns into {name}: {}",
                                std::io::Error::last_os_error()
                            ))
                        }
                    });
                let ok = entered.is_ok();
                let _ = tx.send(entered);
                if !ok {
                    // Never run `f` outside the namespace.
                    std::process::abort();
                }
                f()
            })?;
        match rx.recv() {
            Ok(Ok(())) => Ok(handle),
            Ok(Err(e)) => bail!(e),
            Err(_) => bail!("thread for {} died before entering it", self.name),
        }
    }

    /// Process ids running in the namespace.
    pub fn pids(&self) -> Vec<i32> {
        Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for pid in self.pids() {
            // SAFETY: kill() has no memory effects; the pids are processes inside our namespace.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        for _ in 0..50 {
            let ok = Command::new("ip")
                .args(["netns", "del", &self.name])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ok || !self.path().exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Runs a command; returns stdout, or an error with the command line and stderr.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program} {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
