//! Pod address allocations of this node's block, persisted in the state directory.
//!
//! One mutex guards the [`BlockAllocator`]; every change is written to `allocations.json`
//! (atomically) before it is applied and answered, so an address handed out survives a crash
//! and two callers never get the same address. When the node's block changes, allocations of
//! the old block are dropped; while the node has no block, nothing is handed out
//! ([`IpamError::NoBlock`]), but allocations are kept for when the same block comes back.

use crate::state::{
    read_json, write_json_atomic, Corruption, StateDir, StateError, ALLOCATIONS_FILE,
};
use ipnet::Ipv4Net;
use overlay_proto::ipam::{AllocError, BlockAllocator};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

/// Why an allocation call failed.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// The node has not claimed a block yet.
    #[error("this node has no subnet yet; retry shortly")]
    NoBlock,
    /// The block is full.
    #[error(transparent)]
    Exhausted(#[from] AllocError),
    /// The change could not be persisted (and was not applied).
    #[error(transparent)]
    Persist(#[from] StateError),
}

/// An address handed out, with the block it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The pod address.
    pub address: Ipv4Addr,
    /// The node's block.
    pub block: Ipv4Net,
}

#[derive(Debug)]
struct Inner {
    /// Allocations, of the current block or of the last one while there is none.
    alloc: Option<BlockAllocator>,
    /// The node's block now.
    active: Option<Ipv4Net>,
}

/// The persisted pod allocations; see the module docs.
#[derive(Debug)]
pub struct IpamStore {
    path: PathBuf,
    inner: Mutex<Inner>,
}

impl IpamStore {
    /// Loads the allocations kept in `dir` (none when the file does not exist).
    pub fn open(dir: &StateDir) -> Result<IpamStore, StateError> {
        let path = dir.file(ALLOCATIONS_FILE);
        let alloc: Option<BlockAllocator> = read_json(&path)?;
        if let Some(a) = &alloc {
            check(a).map_err(|reason| StateError::Corrupt {
                path: path.clone(),
                reason,
            })?;
        }
        Ok(IpamStore {
            path,
            inner: Mutex::new(Inner {
                alloc,
                active: None,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied change: changes are made
        // on a copy that replaces the allocator only once persisted.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The node's block now.
    pub fn block(&self) -> Option<Ipv4Net> {
        self.lock().active
    }

    /// Number of addresses handed out in the current block.
    pub fn len(&self) -> usize {
        let inner = self.lock();
        match (&inner.alloc, inner.active) {
            (Some(a), Some(b)) if a.block() == b => a.len(),
            _ => 0,
        }
    }

    /// Addresses handed out in the current block and how many it can hand out
    /// ([`BlockAllocator::capacity`]); `(0, 0)` while the node holds no block.
    pub fn usage(&self) -> (usize, usize) {
        let inner = self.lock();
        match (&inner.alloc, inner.active) {
            (Some(a), Some(b)) if a.block() == b => (a.len(), a.capacity()),
            (_, Some(b)) => (0, BlockAllocator::new(b).capacity()),
            (_, None) => (0, 0),
        }
    }

    /// True when no address of the current block is handed out.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets the node's block. A block other than the one allocations were made in drops them
    /// (and persists that). Returns how many allocations were dropped.
    pub fn set_block(&self, block: Option<Ipv4Net>) -> Result<usize, StateError> {
        let mut inner = self.lock();
        inner.active = block;
        let Some(block) = block else { return Ok(0) };
        if inner.alloc.as_ref().is_some_and(|a| a.block() == block) {
            return Ok(0);
        }
        let dropped = inner.alloc.as_ref().map_or(0, BlockAllocator::len);
        let fresh = BlockAllocator::new(block);
        inner.alloc = Some(fresh.clone());
        write_json_atomic(&self.path, &fresh)?;
        Ok(dropped)
    }

    /// Applies `change` to a copy of the current block's allocator, persists the copy if the
    /// change says so, then keeps it.
    fn change<T>(
        &self,
        change: impl FnOnce(&mut BlockAllocator) -> Result<(T, bool), IpamError>,
    ) -> Result<(T, Ipv4Net), IpamError> {
        let mut inner = self.lock();
        let block = inner.active.ok_or(IpamError::NoBlock)?;
        let current = match &inner.alloc {
            Some(a) if a.block() == block => a,
            _ => return Err(IpamError::NoBlock),
        };
        let mut next = current.clone();
        let (out, changed) = change(&mut next)?;
        if changed {
            write_json_atomic(&self.path, &next)?;
            inner.alloc = Some(next);
        }
        Ok((out, block))
    }

    /// Hands `key` an address (the one it holds already, if any), persisted before returning.
    pub fn allocate(&self, key: &str) -> Result<Held, IpamError> {
        let (address, block) = self.change(|a| match a.get(key) {
            Some(addr) => Ok((addr, false)),
            None => Ok((a.allocate(key)?, true)),
        })?;
        Ok(Held { address, block })
    }

    /// The address `key` holds, if any.
    pub fn get(&self, key: &str) -> Result<Option<Held>, IpamError> {
        let (address, block) = self.change(|a| Ok((a.get(key), false)))?;
        Ok(address.map(|address| Held { address, block }))
    }

    /// The current block and every allocation in it (key, address), ordered by key.
    pub fn list(&self) -> Result<(Ipv4Net, Vec<(String, Ipv4Addr)>), IpamError> {
        let (held, block) = self.change(|a| {
            let held = a.iter().map(|(k, addr)| (k.to_owned(), addr)).collect();
            Ok((held, false))
        })?;
        Ok((block, held))
    }

    /// Releases what `key` holds (persisted); `Ok(None)` when it held nothing.
    pub fn release(&self, key: &str) -> Result<Option<Ipv4Addr>, IpamError> {
        let (released, _) = self.change(|a| {
            let released = a.release(key);
            Ok((released, released.is_some()))
        })?;
        Ok(released)
    }
}

/// Checks what a file could have got wrong: addresses outside the block or given twice.
fn check(a: &BlockAllocator) -> Result<(), Corruption> {
    let mut seen = BTreeSet::new();
    for (key, addr) in a.iter() {
        if !a.block().contains(&addr) || !seen.insert(addr) {
            return Err(Corruption::Allocation {
                key: key.to_owned(),
                addr,
                block: a.block(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Arc;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("cidr")
    }

    fn store() -> (tempfile::TempDir, StateDir, IpamStore) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = StateDir::open(tmp.path()).expect("open");
        let store = IpamStore::open(&dir).expect("open store");
        (tmp, dir, store)
    }

    #[test]
    fn nothing_is_handed_out_without_a_block() {
        let (_t, _d, s) = store();
        assert!(matches!(s.allocate("c/eth0"), Err(IpamError::NoBlock)));
        assert!(matches!(s.get("c/eth0"), Err(IpamError::NoBlock)));
        assert!(matches!(s.release("c/eth0"), Err(IpamError::NoBlock)));
    }

    #[test]
    fn allocations_survive_a_restart_and_a_lost_claim() {
        let (_t, dir, s) = store();
        s.set_block(Some(net("10.32.3.0/24"))).expect("set");
        let a = s.allocate("c1/eth0").expect("allocate");
        assert_eq!(a.address, Ipv4Addr::new(10, 32, 3, 2));
        assert_eq!(a.block, net("10.32.3.0/24"));
        assert_eq!(s.allocate("c1/eth0").expect("again").address, a.address);

        let s = IpamStore::open(&dir).expect("reopen");
        assert!(matches!(s.get("c1/eth0"), Err(IpamError::NoBlock)));
        s.set_block(Some(net("10.32.3.0/24"))).expect("set");
        assert_eq!(
            s.get("c1/eth0").expect("get").map(|h| h.address),
            Some(a.address)
        );

        s.set_block(None).expect("lose the claim");
        assert!(matches!(s.allocate("c2/eth0"), Err(IpamError::NoBlock)));
        assert_eq!(
            s.set_block(Some(net("10.32.3.0/24")))
                .expect("same block back"),
            0
        );
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn a_new_block_drops_old_allocations() {
        let (_t, dir, s) = store();
        s.set_block(Some(net("10.32.3.0/24"))).expect("set");
        s.allocate("c1/eth0").expect("allocate");
        s.allocate("c2/eth0").expect("allocate");
        assert_eq!(s.set_block(Some(net("10.32.9.0/24"))).expect("move"), 2);
        assert_eq!(s.get("c1/eth0").expect("get"), None);
        let a = s.allocate("c3/eth0").expect("allocate");
        assert_eq!(a.address, Ipv4Addr::new(10, 32, 9, 2));
        let s = IpamStore::open(&dir).expect("reopen");
        s.set_block(Some(net("10.32.9.0/24"))).expect("set");
        assert_eq!(s.len(), 1, "the move was persisted");
    }

    #[test]
    fn release_is_idempotent_and_persisted() {
        let (_t, dir, s) = store();
        s.set_block(Some(net("10.32.3.0/24"))).expect("set");
        let a = s.allocate("c1/eth0").expect("allocate").address;
        assert_eq!(s.release("c1/eth0").expect("release"), Some(a));
        assert_eq!(s.release("c1/eth0").expect("release"), None);
        let s = IpamStore::open(&dir).expect("reopen");
        s.set_block(Some(net("10.32.3.0/24"))).expect("set");
        assert!(s.is_empty());
    }

    #[test]
    fn list_shows_the_current_block_only() {
        let (_t, _d, s) = store();
        assert!(matches!(s.list(), Err(IpamError::NoBlock)));
        s.set_block(Some(net("10.32.3.0/24"))).expect("set");
        s.allocate("c2/eth0").expect("allocate");
        s.allocate("c1/eth0").expect("allocate");
        let (block, held) = s.list().expect("list");
        assert_eq!(block, net("10.32.3.0/24"));
        assert_eq!(
            held,
            vec![
                ("c1/eth0".to_owned(), Ipv4Addr::new(10, 32, 3, 3)),
                ("c2/eth0".to_owned(), Ipv4Addr::new(10, 32, 3, 2)),
            ]
        );
        s.set_block(None).expect("lose the claim");
        assert!(matches!(s.list(), Err(IpamError::NoBlock)));
    }

    #[test]
    fn usage_counts_the_current_block_only() {
        let (_tmp, _dir, s) = store();
        assert_eq!(s.usage(), (0, 0), "no block, nothing to hand out");
        s.set_block(Some(net("10.32.1.0/24"))).expect("block");
        assert_eq!(s.usage(), (0, 253), "a /24 less network, broadcast, node");
        s.allocate("a/eth0").expect("a");
        s.allocate("b/eth0").expect("b");
        assert_eq!(s.usage(), (2, 253));
        s.set_block(None).expect("lost");
        assert_eq!(s.usage(), (0, 0));
        s.set_block(Some(net("10.32.2.0/26"))).expect("other block");
        assert_eq!(s.usage(), (0, 61));
    }

    #[test]
    fn full_block_is_an_error() {
        let (_t, _d, s) = store();
        s.set_block(Some(net("10.32.3.0/30"))).expect("set");
        s.allocate("c1/eth0").expect("one pod address in a /30");
        assert!(matches!(
            s.allocate("c2/eth0"),
            Err(IpamError::Exhausted(_))
        ));
    }

    #[test]
    fn concurrent_allocations_never_share_an_address() {
        let (_t, dir, s) = store();
        s.set_block(Some(net("10.32.3.0/24"))).expect("set");
        let s = Arc::new(s);
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let s = Arc::clone(&s);
                std::thread::spawn(move || {
                    (0..12)
                        .map(|i| {
                            s.allocate(&format!("c{t}-{i}/eth0"))
                                .expect("allocate")
                                .address
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let all: Vec<Ipv4Addr> = threads
            .into_iter()
            .flat_map(|t| t.join().expect("thread"))
            .collect();
        let unique: HashSet<_> = all.iter().collect();
        assert_eq!(all.len(), 16 * 12);
        assert_eq!(unique.len(), all.len(), "an address was handed out twice");
        let reopened = IpamStore::open(&dir).expect("reopen");
        reopened.set_block(Some(net("10.32.3.0/24"))).expect("set");
        assert_eq!(reopened.len(), 16 * 12, "every allocation was persisted");
    }

    #[test]
    fn corrupt_files_are_errors_naming_the_file() {
        let (_t, dir, _s) = store();
        let path = dir.file(ALLOCATIONS_FILE);
        for bad in [
            &b"not json"[..],
            br#"{"block":"10.32.3.0/24","held":{"a/eth0":"10.32.4.2"}}"#,
            br#"{"block":"10.32.3.0/24","held":{"a/eth0":"10.32.3.2","b/eth0":"10.32.3.2"}}"#,
        ] {
            std::fs::write(&path, bad).expect("write");
            let e = IpamStore::open(&dir).expect_err("corrupt");
            assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        }
    }
}
