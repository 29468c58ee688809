//! The Noise handshake of `--secret-file` control connections (the sans-IO state machines of
//! `overlay_proto::noise`), both sides fed an attacker's byte stream; see
//! `overlay_fuzz::control::noise` for the property.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| overlay_fuzz::control::noise(data));
