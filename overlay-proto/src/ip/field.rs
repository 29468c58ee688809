//! Big-endian fields at byte offsets, without panics: reads past the end give 0 and writes
//! past the end write nothing (callers check lengths first; these keep a missed check from
//! becoming a panic).

/// The big-endian `u16` at `at` (0 past the end).
#[inline]
pub fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(w) => u16::from_be_bytes([w[0], w[1]]),
        None => 0,
    }
}

/// The big-endian `u32` at `at` (0 past the end).
#[inline]
pub fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(w) => u32::from_be_bytes([w[0], w[1], w[2], w[3]]),
        None => 0,
    }
}

/// Writes a big-endian `u16` at `at` (nothing past the end).
#[inline]
pub fn put16(b: &mut [u8], at: usize, v: u16) {
    if let Some(w) = b.get_mut(at..at + 2) {
        w.copy_from_slice(&v.to_be_bytes());
    }
}

/// Writes a big-endian `u32` at `at` (nothing past the end).
#[inline]
pub fn put32(b: &mut [u8], at: usize, v: u32) {
    if let Some(w) = b.get_mut(at..at + 4) {
        w.copy_from_slice(&v.to_be_bytes());
    }
}
