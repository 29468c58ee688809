//! The state directory: the node's block claim (`claim.json`) and its pod address allocations
//! (`allocations.json`, see [`crate::ipam_store`]).
//!
//! Every file is written atomically (temporary file, fsync, rename, fsync of the directory),
//! so a crash leaves either the old or the new content, never a mix. A file that does not
//! parse is reported with its path; it is never silently replaced.

use ipnet::Ipv4Net;
use overlay_proto::topology::Claim;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// File holding the node's claim.
pub const CLAIM_FILE: &str = "claim.json";
/// File holding the pod address allocations.
pub const ALLOCATIONS_FILE: &str = "allocations.json";

/// Why the state directory or one of its files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// An I/O operation on a path failed.
    #[error("cannot {op} {}: {error}", path.display())]
    Io {
        /// What was being done ("create directory", "read", "write", ...).
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        error: io::Error,
    },
    /// A file's content does not parse.
    #[error("{} is corrupt ({reason}); move it away to start without it", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: Corruption,
    },
}

/// What is wrong with the content of a state file.
#[derive(Debug, thiserror::Error)]
pub enum Corruption {
    /// not the JSON of what the file holds
    #[error("{0}")]
    Json(serde_json::Error),
    /// the identity's private key is not 64 hex digits
    #[error("bad private key")]
    PrivateKey,
    /// the identity's public key is not 64 hex digits
    #[error("bad public key")]
    PublicKey,
    /// a pod allocation outside the block, or an address held twice
    #[error("{key} holds {addr}, outside {block} or twice")]
    Allocation {
        /// The allocation's key (container and interface).
        key: String,
        /// The address it holds.
        addr: Ipv4Addr,
        /// The block of the file.
        block: Ipv4Net,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StateError + 'a {
    move |error| StateError::Io {
        op,
        path: path.to_owned(),
        error,
    }
}

/// The state directory of one agent.
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// Opens the directory, creating it (mode 0700) with its parents when missing.
    pub fn open(path: impl Into<PathBuf>) -> Result<StateDir, StateError> {
        let path = path.into();
        if !path.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&path)
                .map_err(io_err("create directory", &path))?;
        }
        Ok(StateDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of the file `name` in the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The claim persisted by a previous run, if any.
    pub fn load_claim(&self) -> Result<Option<Claim>, StateError> {
        Ok(read_json::<Option<Claim>>(&self.file(CLAIM_FILE))?.flatten())
    }

    /// Persists the node's claim (`None` when it owns no block).
    pub fn save_claim(&self, claim: Option<&Claim>) -> Result<(), StateError> {
        write_json_atomic(&self.file(CLAIM_FILE), &claim)
    }
}

/// Reads a JSON file; `Ok(None)` when it does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", path)(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StateError::Corrupt {
            path: path.to_owned(),
            reason: Corruption::Json(e),
        })
}

/// Writes `value` as JSON to `path` atomically (mode 0600).
pub fn write_json_atomic<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), StateError> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| StateError::Io {
        op: "serialize",
        path: path.to_owned(),
        error: io::Error::other(e),
    })?;
    bytes.push(b'\n');
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        f.write_all(&bytes).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("sync", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("replace", path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("sync directory", dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn claim(block: &str, epoch: u32) -> Claim {
        Claim {
            block: block.parse().expect("cidr"),
            epoch,
        }
    }

    #[test]
    fn directory_is_created_private() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("a/b/state");
        let dir = StateDir::open(&path).expect("created");
        let mode = fs::metadata(dir.path()).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        StateDir::open(&path).expect("opening an existing directory works");
    }

    #[test]
    fn claim_survives_a_restart() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = StateDir::open(tmp.path()).expect("open");
        assert_eq!(dir.load_claim().expect("load"), None);
        dir.save_claim(Some(&claim("10.32.5.0/24", 2)))
            .expect("save");
        let again = StateDir::open(tmp.path()).expect("open");
        assert_eq!(
            again.load_claim().expect("load"),
            Some(claim("10.32.5.0/24", 2))
        );
        again.save_claim(None).expect("save");
        assert_eq!(again.load_claim().expect("load"), None);
        let leftovers: Vec<_> = fs::read_dir(tmp.path())
            .expect("list")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .filter(|n| n != CLAIM_FILE)
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }

    #[test]
    fn corrupt_claim_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = StateDir::open(tmp.path()).expect("open");
        fs::write(dir.file(CLAIM_FILE), b"{\"block\": 12").expect("write");
        let e = dir.load_claim().expect_err("corrupt");
        let msg = e.to_string();
        assert!(
            msg.contains(&dir.file(CLAIM_FILE).display().to_string()),
            "{msg}"
        );
        assert!(msg.contains("corrupt"), "{msg}");
    }

    #[test]
    fn unwritable_directory_is_reported_with_the_path() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("file-not-dir");
        fs::write(&path, b"x").expect("write");
        let e = StateDir::open(&path).expect_err("a file is not a directory");
        assert!(e.to_string().contains("file-not-dir"), "{e}");
    }
}
