//! The hello (first control frame): decoding never panics; a decoded hello re-encodes into a
//! frame within the hello limit that decodes to the same hello; errors are the documented ones.
#![no_main]
use libfuzzer_sys::fuzz_target;
use overlay_proto::codec::{
    decode_hello, encode_hello, frame_len, CodecError, HELLO_FIXED_LEN, HELLO_MAGIC, LEN_PREFIX,
    MAX_HELLO_LEN,
};

fuzz_target!(|data: &[u8]| {
    match decode_hello(data) {
        Ok(hello) => {
            assert!(data.starts_with(&HELLO_MAGIC));
            let mut out = vec![0xee];
            encode_hello(&hello, &mut out);
            let (prefix, body) = out[1..].split_first_chunk::<LEN_PREFIX>().expect("prefix");
            assert_eq!(frame_len(*prefix, MAX_HELLO_LEN), Ok(body.len()));
            assert!(
                body.len() <= data.len(),
                "re-encoding is no longer than the input"
            );
            assert_eq!(&body[..HELLO_FIXED_LEN], &data[..HELLO_FIXED_LEN]);
            assert_eq!(decode_hello(body), Ok(hello));
        }
        Err(CodecError::FrameTooLarge(n, MAX_HELLO_LEN)) => assert!(n > MAX_HELLO_LEN),
        Err(CodecError::BadMagic(m)) => assert_ne!(m, HELLO_MAGIC),
        Err(CodecError::HelloTruncated(n)) => assert!(n < HELLO_FIXED_LEN),
        Err(CodecError::BadHelloBody {
            proto_min,
            proto_max,
            ..
        }) => {
            assert_eq!(proto_min, u16::from_be_bytes([data[4], data[5]]));
            assert_eq!(proto_max, u16::from_be_bytes([data[6], data[7]]));
        }
        Err(e) => panic!("unexpected hello error {e:?}"),
    }
});
