//! Control message bodies (typed envelope, every message type), in every protocol version:
//! decoding never panics; unknown types are skipped; a decoded message re-encodes in the same
//! version (canonically, so never longer than the input) into a frame that decodes to the
//! same message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use overlay_proto::codec::{
    decode_message_in, encode_message_in, frame_len, CodecError, LEN_PREFIX, MAX_FRAME_LEN,
};
use overlay_proto::message::{PROTOCOL_MAX, PROTOCOL_MIN};

fuzz_target!(|data: &[u8]| {
    for version in PROTOCOL_MIN..=PROTOCOL_MAX {
        check(data, version);
    }
});

fn check(data: &[u8], version: u16) {
    match decode_message_in(data, version) {
        Ok(Some(msg)) => {
            assert!((1..=5).contains(&data[0]));
            let mut out = Vec::new();
            encode_message_in(&msg, version, &mut out).expect("a decoded message re-encodes");
            let (prefix, body) = out.split_first_chunk::<LEN_PREFIX>().expect("prefix");
            assert_eq!(frame_len(*prefix, MAX_FRAME_LEN), Ok(body.len()));
            assert_eq!(body[0], data[0], "same type byte");
            assert!(body.len() <= data.len());
            assert_eq!(decode_message_in(body, version), Ok(Some(msg)));
        }
        Ok(None) => assert!(
            !(1..=5).contains(&data[0]),
            "known type {} skipped",
            data[0]
        ),
        Err(CodecError::EmptyMessage) => assert!(data.is_empty()),
        Err(CodecError::BadPayload { ty, .. }) => assert_eq!(ty, data[0]),
        Err(CodecError::TrailingBytes { ty, extra }) => {
            assert_eq!(ty, data[0]);
            assert!(extra > 0 && extra < data.len());
        }
        Err(CodecError::FrameTooLarge(n, MAX_FRAME_LEN)) => assert!(n > MAX_FRAME_LEN),
        Err(e) => panic!("unexpected message error {e:?}"),
    }
}
