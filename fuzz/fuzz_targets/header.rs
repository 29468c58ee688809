//! The overlay data header: parse never panics, and what parses is re-emitted byte for byte.
#![no_main]
use libfuzzer_sys::fuzz_target;
use overlay_proto::header::{Header, HeaderError, HEADER_LEN, VERSION};

fuzz_target!(|data: &[u8]| {
    match Header::parse(data) {
        Ok(h) => {
            let mut out = [0u8; HEADER_LEN];
            assert_eq!(h.emit(&mut out), Some(()));
            assert_eq!(&out[..], &data[..HEADER_LEN], "emit(parse(b)) == b");
            let mut relayed = data.to_vec();
            let hops = h.hop_limit.wrapping_sub(1);
            assert_eq!(Header::set_hop_limit(&mut relayed, hops), Some(()));
            assert_eq!(
                Header::parse(&relayed),
                Ok(Header {
                    hop_limit: hops,
                    ..h
                })
            );
            assert_eq!(
                &relayed[HEADER_LEN..],
                &data[HEADER_LEN..],
                "payload untouched"
            );
        }
        Err(HeaderError::Truncated(n)) => assert!(n == data.len() && n < HEADER_LEN),
        Err(HeaderError::UnknownVersion(v)) => assert!(v == data[0] && v != VERSION),
        Err(HeaderError::UnknownKind(k)) => assert_eq!(k, data[1]),
    }
});
