//! Trace probe and report payloads: parsing never panics; what parses re-emits (probe: byte
//! for byte but the reserved bytes; report: within MAX_REPORT_LEN) and parses back equal.
#![no_main]
use libfuzzer_sys::fuzz_target;
use overlay_proto::trace::{
    Probe, Report, TraceError, MAX_REPORT_LEN, PROBE_LEN, REPORT_FIXED_LEN,
};

fuzz_target!(|data: &[u8]| {
    match Probe::parse(data) {
        Ok(p) => {
            let mut out = [0u8; PROBE_LEN];
            assert_eq!(p.emit(&mut out), Ok(PROBE_LEN));
            assert_eq!(&out[..13], &data[..13]);
            assert_eq!(Probe::parse(&out), Ok(p));
        }
        Err(TraceError::Truncated(n)) => assert!(n == data.len() && n < PROBE_LEN),
        Err(TraceError::Invalid(_)) => {}
        Err(e) => panic!("unexpected probe error {e:?}"),
    }
    match Report::parse(data) {
        Ok(r) => {
            let mut out = [0u8; MAX_REPORT_LEN];
            let n = r.emit(&mut out).expect("a parsed report re-emits");
            assert!((REPORT_FIXED_LEN..=MAX_REPORT_LEN).contains(&n));
            assert!(n <= data.len(), "emitted no longer than parsed");
            assert_eq!(&out[..9], &data[..9], "nonce and hop");
            assert_eq!(Report::parse(&out[..n]), Ok(r.clone()));
            // Every shorter buffer is refused without panicking.
            assert_eq!(r.emit(&mut out[..n - 1]), Err(TraceError::BufferTooSmall));
        }
        Err(TraceError::Truncated(n)) => assert_eq!(n, data.len()),
        Err(TraceError::Invalid(_)) => {}
        Err(e) => panic!("unexpected report error {e:?}"),
    }
});
