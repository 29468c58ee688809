//! Digest messages (type 5) specifically: the input is the payload. Decoding never panics and
//! round-trips; the digest's entries can be compared against a topology without panicking.
#![no_main]
use libfuzzer_sys::fuzz_target;
use overlay_proto::codec::{decode_message, encode_message, LEN_PREFIX};
use overlay_proto::message::Message;

fuzz_target!(|data: &[u8]| {
    let mut body = Vec::with_capacity(data.len() + 1);
    body.push(5);
    body.extend_from_slice(data);
    let Ok(Some(msg)) = decode_message(&body) else {
        return;
    };
    let Message::Digest(digest) = &msg else {
        panic!("type 5 decoded as {msg:?}");
    };
    for e in &digest.entries {
        assert!(!e.name.as_str().is_empty() && e.name.as_str().len() <= 63);
    }
    let mut out = Vec::new();
    encode_message(&msg, &mut out).expect("re-encodes");
    assert!(out.len() - LEN_PREFIX <= body.len());
    assert_eq!(decode_message(&out[LEN_PREFIX..]), Ok(Some(msg)));
});
