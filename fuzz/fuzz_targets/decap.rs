//! The receive path (UDP → TUN or relay): `decap` and the trace steps on any datagram, as
//! any of the fixture cluster's nodes. Never panics, Deliver ranges lie inside the
//! datagram, a relay changes only the hop-limit byte (see `overlay_fuzz::decap`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| overlay_fuzz::decap::property(data));
