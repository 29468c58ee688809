//! `overlay-agent reset`: removes what an agent leaves on a node on purpose, for good.
//!
//! The agent keeps its TUN device (with the node address and the cluster route) and its state
//! directory (claim, pod allocations) across restarts, so that a restart is hitless. When the
//! node leaves the overlay for good, `reset` (like `weave reset`) removes:
//! 1. the persistent TUN device `--iface` (its address and routes go with it); it refuses a
//!    device an agent still holds, and any interface that is not a TUN;
//! 2. the pod egress masquerade table (`ip overlay-egress`) if `nft` is installed (a stopped
//!    agent removes it already; a killed one leaves it);
//! 3. unless `--keep-state`, the files the agent wrote in `--state-dir` (the directory itself
//!    too when that leaves it empty). The block returns to the cluster only after
//!    `--reclaim-after` on the other agents.
//!
//! Every step says what it did; the first failure stops it with a non-zero exit.

use crate::auth::identity::IDENTITY_FILE;
use crate::datapath::{self, DatapathError};
use crate::egress::{self, Egress, EgressError};
use crate::state::{ALLOCATIONS_FILE, CLAIM_FILE};
use clap::Args;
use std::io;
use std::path::{Path, PathBuf};

/// Arguments of `overlay-agent reset`.
#[derive(Debug, Args)]
pub struct ResetArgs {
    /// The TUN device to delete
    #[arg(
        long,
        env = "OVERLAY_IFACE",
        default_value = "ovl0",
        value_name = "NAME"
    )]
    pub iface: String,
    /// The state directory whose files to delete
    #[arg(
        long,
        env = "OVERLAY_STATE_DIR",
        default_value = "/var/lib/overlay",
        value_name = "DIR"
    )]
    pub state_dir: PathBuf,
    /// Keep the state directory (claim and pod allocations): only remove the device
    #[arg(long)]
    pub keep_state: bool,
}

/// Why `reset` stopped.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// the TUN device cannot be removed (the first step: nothing else was touched)
    #[error("{0}; nothing was removed")]
    Device(DatapathError),
    /// the pod egress masquerade cannot be removed
    #[error("{0}")]
    Egress(EgressError),
    /// a state file cannot be deleted
    #[error("cannot remove {}: {error}", path.display())]
    RemoveFile {
        /// The file.
        path: PathBuf,
        /// The OS error of `unlink(2)`.
        error: io::Error,
    },
}

/// Runs `reset`; returns the lines saying what was done, or the first error.
pub fn reset(args: &ResetArgs, say: &mut dyn FnMut(&str)) -> Result<(), ResetError> {
    match datapath::remove_device(&args.iface) {
        Ok(true) => say(&format!(
            "removed TUN device {} (with its address and the cluster route)",
            args.iface
        )),
        Ok(false) => say(&format!("no device {}: nothing to remove", args.iface)),
        Err(e) => return Err(ResetError::Device(e)),
    }
    match Egress::new(
        ipnet::Ipv4Net::default(),
        std::env::var_os("PATH").as_deref(),
    ) {
        Ok(e) => match e.remove() {
            Ok(()) => say(&format!(
                "removed the pod egress masquerade (nftables table ip {}) if there was one",
                egress::TABLE
            )),
            Err(e) => return Err(ResetError::Egress(e)),
        },
        Err(_) => say("nft not found: no pod egress masquerade to remove"),
    }
    if args.keep_state {
        say(&format!("kept {}", args.state_dir.display()));
        return Ok(());
    }
    remove_state(&args.state_dir, say)
}

/// Deletes the agent's files in `dir`, then `dir` if that leaves it empty.
fn remove_state(dir: &Path, say: &mut dyn FnMut(&str)) -> Result<(), ResetError> {
    let mut removed = 0;
    for name in [CLAIM_FILE, ALLOCATIONS_FILE, IDENTITY_FILE] {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {
                removed += 1;
                say(&format!("removed {}", path.display()));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(ResetError::RemoveFile { path, error }),
        }
    }
    if removed == 0 {
        say(&format!("no agent state in {}", dir.display()));
    }
    // Only an empty directory goes; anything else in it is not ours to delete.
    match std::fs::remove_dir(dir) {
        Ok(()) => say(&format!("removed {}", dir.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_files_go_and_foreign_files_stay() {
        let dir = std::env::temp_dir().join(format!("overlay-reset-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join(CLAIM_FILE), "{}").expect("claim");
        std::fs::write(dir.join("notes.txt"), "mine").expect("foreign");
        let mut lines = Vec::new();
        remove_state(&dir, &mut |l| lines.push(l.to_owned())).expect("removed");
        assert!(!dir.join(CLAIM_FILE).exists());
        assert!(dir.join("notes.txt").exists(), "{lines:?}");
        std::fs::remove_file(dir.join("notes.txt")).expect("cleanup");
        remove_state(&dir, &mut |l| lines.push(l.to_owned())).expect("again");
        assert!(!dir.exists(), "{lines:?}");
        assert!(
            lines.iter().any(|l| l.starts_with("no agent state")),
            "{lines:?}"
        );
    }
}
