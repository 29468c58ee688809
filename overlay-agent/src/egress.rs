//! Pod egress: traffic from pods to destinations outside the cluster range leaves the node
//! masqueraded to the node's address (the address of the interface it leaves by), so hosts
//! beyond the node need no route back to the pod range. Traffic between pods (cluster range
//! to cluster range) is never masqueraded: a pod always sees the other pod's own address.
//!
//! The rule is one nftables table, written whole through the `nft` binary:
//!
//! ```text
//! table ip overlay-egress {
//!     chain postrouting {
//!         type nat hook postrouting priority srcnat; policy accept;
//!         ip saddr 10.32.0.0/12 ip daddr != 10.32.0.0/12 masquerade
//!     }
//! }
//! ```
//!
//! The agent installs it when it starts (it needs the cluster range, not its block) and
//! deletes it when it stops on SIGTERM/SIGINT. A crashed agent leaves it in place (pods
//! keep working); the next start replaces it in one `nft -f` transaction (create, delete,
//! define), so there is never a moment with no rule or with two. Nothing else of the
//! node's firewall is touched. `--masquerade false` turns all of this off.

use ipnet::Ipv4Net;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// The nftables table (family `ip`) holding the rule.
pub const TABLE: &str = "overlay-egress";
/// Directories searched for `nft` after `$PATH` (a service's PATH often lacks sbin).
pub const NFT_FALLBACK_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/bin", "/bin"];
/// Longest wait for one `nft` run.
const NFT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the rule could not be installed or removed.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// `nft` is not installed.
    #[error("--masquerade is on but the nft command (package nftables) was not found in $PATH nor in {dirs}; install nftables, or set --masquerade false to run without masquerading pod egress", dirs = NFT_FALLBACK_DIRS.join(", "))]
    NftMissing,
    /// `nft` ran and failed, or could not be run.
    #[error("{action} the nftables table ip {TABLE} with {nft}: {problem}", nft = .nft.display())]
    Nft {
        /// What was being done ("installing", "removing").
        action: &'static str,
        /// The binary.
        nft: PathBuf,
        /// Its error output, or why it could not run.
        problem: NftProblem,
    },
}

/// How a run of `nft` failed (the binary and the action are in [`EgressError::Nft`]).
#[derive(Debug, thiserror::Error)]
pub enum NftProblem {
    /// `spawn` failed
    #[error("cannot run it: {0}")]
    Spawn(std::io::Error),
    /// still running after `NFT_TIMEOUT` (then killed)
    #[error("no answer within {NFT_TIMEOUT:?}")]
    Timeout,
    /// `waitpid(2)` failed
    #[error("waiting for it: {0}")]
    Wait(std::io::Error),
    /// it failed without a word, after the rules could not be written to its stdin
    #[error("{status}; writing the rules: {error}")]
    Write {
        /// Its exit status.
        status: ExitStatus,
        /// The error writing its stdin.
        error: std::io::Error,
    },
    /// it failed
    #[error("{status}: {stderr}")]
    Failed {
        /// Its exit status.
        status: ExitStatus,
        /// Its error output (at most 4 KiB), whitespace collapsed to single spaces.
        stderr: String,
    },
    /// the blocking task that ran it panicked or was cancelled
    #[error("{0}")]
    Task(tokio::task::JoinError),
}

/// The `nft -f` script that installs the rule for `cluster`, replacing any earlier version
/// in the same transaction.
pub fn install_script(cluster: Ipv4Net) -> String {
    format!(
        "table ip {TABLE} {{}}\n\
         delete table ip {TABLE}\n\
         table ip {TABLE} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {cluster} ip daddr != {cluster} masquerade\n\
         \t}}\n\
         }}\n"
    )
}

/// The `nft -f` script that removes the table (whether or not it exists).
pub fn remove_script() -> String {
    format!("table ip {TABLE} {{}}\ndelete table ip {TABLE}\n")
}

/// The first executable `nft` in the directories of `path_var` (a `$PATH` value), then in
/// [`NFT_FALLBACK_DIRS`].
pub fn find_nft(path_var: Option<&OsStr>) -> Option<PathBuf> {
    let listed = path_var.map(std::env::split_paths).into_iter().flatten();
    listed
        .chain(NFT_FALLBACK_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join("nft"))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The installed masquerade of one agent.
#[derive(Debug, Clone)]
pub struct Egress {
    nft: PathBuf,
    cluster: Ipv4Net,
}

impl Egress {
    /// The masquerade for `cluster` through the `nft` found by [`find_nft`] in `path_var`.
    pub fn new(cluster: Ipv4Net, path_var: Option<&OsStr>) -> Result<Egress, EgressError> {
        let nft = find_nft(path_var).ok_or(EgressError::NftMissing)?;
        Ok(Egress { nft, cluster })
    }

    /// Installs (or replaces) the table in the calling thread's namespace. Blocks on `nft`.
    pub fn install(&self) -> Result<(), EgressError> {
        self.nft("installing", &install_script(self.cluster))
    }

    /// Removes the table. Blocks on `nft`.
    pub fn remove(&self) -> Result<(), EgressError> {
        self.nft("removing", &remove_script())
    }

    /// Runs `nft -f -` with `script`, bounded by [`NFT_TIMEOUT`].
    fn nft(&self, action: &'static str, script: &str) -> Result<(), EgressError> {
        let fail = |problem: NftProblem| EgressError::Nft {
            action,
            nft: self.nft.clone(),
            problem,
        };
        let mut child = Command::new(&self.nft)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(NftProblem::Spawn(e)))?;
        let written = child
            .stdin
            .take()
            .map(|mut stdin| stdin.write_all(script.as_bytes()));
        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if start.elapsed() < NFT_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(fail(NftProblem::Timeout));
                }
                Err(e) => return Err(fail(NftProblem::Wait(e))),
            }
        };
        if status.success() {
            return Ok(());
        }
        let mut stderr = String::new();
        if let Some(mut err) = child.stderr.take() {
            let _ = err.by_ref().take(4096).read_to_string(&mut stderr);
        }
        let stderr = stderr.split_whitespace().collect::<Vec<_>>().join(" ");
        Err(fail(match written {
            Some(Err(error)) if stderr.is_empty() => NftProblem::Write { status, error },
            _ => NftProblem::Failed { status, stderr },
        }))
    }
}

/// At start: installs the masquerade for `cluster` when `on`; `None` when off.
pub async fn start(cluster: Ipv4Net, on: bool) -> Result<Option<Egress>, EgressError> {
    if !on {
        info!("--masquerade false: pod egress is not masqueraded");
        return Ok(None);
    }
    let egress = Egress::new(cluster, std::env::var_os("PATH").as_deref())?;
    let installer = egress.clone();
    tokio::task::spawn_blocking(move || installer.install())
        .await
        .map_err(|e| EgressError::Nft {
            action: "installing",
            nft: egress.nft.clone(),
            problem: NftProblem::Task(e),
        })??;
    info!(
        table = TABLE,
        "pod egress masqueraded: ip saddr {cluster} ip daddr != {cluster}"
    );
    Ok(Some(egress))
}

/// At stop: removes the masquerade (a failure is logged; the next start replaces it).
pub async fn stop(egress: Option<Egress>) {
    let Some(egress) = egress else { return };
    match tokio::task::spawn_blocking(move || egress.remove()).await {
        Ok(Ok(())) => info!(table = TABLE, "pod egress masquerade removed"),
        Ok(Err(e)) => warn!("{e}"),
        Err(e) => warn!("removing the pod egress masquerade: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_replaces_the_whole_table_in_one_transaction() {
        let s = install_script("10.32.0.0/12".parse().expect("cidr"));
        assert_eq!(
            s,
            "table ip overlay-egress {}\n\
             delete table ip overlay-egress\n\
             table ip overlay-egress {\n\
             \tchain postrouting {\n\
             \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
             \t\tip saddr 10.32.0.0/12 ip daddr != 10.32.0.0/12 masquerade\n\
             \t}\n\
             }\n"
        );
        assert_eq!(
            remove_script(),
            "table ip overlay-egress {}\ndelete table ip overlay-egress\n"
        );
    }

    #[test]
    fn nft_is_found_in_path_first_then_in_sbin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = dir.path().join("nft");
        std::fs::write(&fake, "#!/bin/sh\n").expect("write");
        let path = std::env::join_paths([Path::new("/nonexistent"), dir.path()]).expect("path");
        // Not executable yet: skipped.
        assert_ne!(find_nft(Some(&path)), Some(fake.clone()));
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(find_nft(Some(&path)), Some(fake));
        let fallback = find_nft(Some(OsStr::new("/nonexistent")));
        assert_eq!(
            fallback.is_some(),
            NFT_FALLBACK_DIRS
                .iter()
                .any(|d| is_executable(&Path::new(d).join("nft")))
        );
    }

    #[test]
    fn a_missing_nft_is_a_clear_startup_error() {
        let msg = EgressError::NftMissing.to_string();
        assert!(msg.contains("nft command (package nftables)"), "{msg}");
        assert!(msg.contains("--masquerade false"), "{msg}");
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn a_failing_nft_is_reported() {
        // A stand-in that fails (no real nft runs in a unit test: it would change this
        // namespace's firewall). A link to an existing binary, not a script written here:
        // executing a file another test thread may still hold open fails with ETXTBSY.
        let dir = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink("/bin/false", dir.path().join("nft")).expect("link");
        let path = dir.path().as_os_str().to_owned();
        let e = Egress::new("10.32.0.0/12".parse().expect("cidr"), Some(&path))
            .expect("found")
            .install()
            .expect_err("fails");
        let msg = e.to_string();
        assert!(
            msg.starts_with("installing the nftables table ip overlay-egress with "),
            "{msg}"
        );
        assert!(msg.contains("exit status: 1"), "{msg}");
    }
}
