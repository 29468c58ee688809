//! Receive-side coalescing (GRO in userspace): consecutive segments of one TCP (or UDP) flow
//! are merged into one super-packet with a virtio header, so the TUN is written once per
//! super-packet instead of once per segment. (Being written: the API is fixed.)

/// Which protocols may be coalesced (UDP only when the TUN accepted USO offloads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoalesceConfig {
    /// Coalesce TCP segments (needs TUN TSO offloads).
    pub tcp: bool,
    /// Coalesce UDP datagrams (needs TUN USO offloads).
    pub udp: bool,
}

/// Pending super-packets, in buffers allocated once at creation.
#[derive(Debug)]
pub struct Coalescer {
    config: CoalesceConfig,
}

impl Coalescer {
    /// A coalescer with its buffers allocated.
    pub fn new(config: CoalesceConfig) -> Self {
        Coalescer { config }
    }

    /// The configuration.
    pub fn config(&self) -> CoalesceConfig {
        self.config
    }

    /// Adds one received inner IP packet. `csum_partial` is its overlay header's
    /// [`FLAG_CSUM_PARTIAL`](crate::header::FLAG_CSUM_PARTIAL). Pending super-packets that can
    /// no longer grow are handed to `write` as TUN frames (virtio header + IP packet).
    pub fn push(&mut self, packet: &[u8], csum_partial: bool, write: &mut impl FnMut(&[u8])) {
        let _ = (packet, csum_partial, write);
    }

    /// Hands every pending super-packet to `write`; call at the end of each receive batch.
    pub fn flush(&mut self, write: &mut impl FnMut(&[u8])) {
        let _ = write;
    }
}
