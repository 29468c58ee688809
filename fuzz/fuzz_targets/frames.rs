//! Frame reassembly from a control connection's byte stream, through the reader the agent
//! ships (`overlay_proto::noise::Receiver` over the one `FrameBuffer`), plain and behind
//! Noise records; see `overlay_fuzz::control::frames` for the input and the property.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| overlay_fuzz::control::frames(data));
