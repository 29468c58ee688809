//! The Noise handshake of `--secret-file` control connections, both sides, fed an attacker's
//! byte stream: the responder reads the fuzzer's first and third messages, the initiator its
//! answer. Without the secret, neither side may ever complete a session, and no input may
//! panic, hang (the stream ends) or make a side buffer more than a handshake message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use overlay_agent::auth::{Identity, SecretSet};
use overlay_agent::control::noise::{initiate, respond};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Reads the fuzzer's bytes (then end of stream); swallows what the side under test writes.
struct Attacker<'a> {
    data: &'a [u8],
}

impl AsyncRead for Attacker<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.data.len().min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Attacker<'_> {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// One identity and a current + next secret, made once (key generation is slow).
fn keys() -> &'static (Identity, SecretSet) {
    static KEYS: OnceLock<(Identity, SecretSet)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let secrets = SecretSet::parse("current-secret-of-the-cluster\nnext-secret-of-the-cluster\n")
            .expect("valid secrets");
        (Identity::generate(), secrets)
    })
}

fuzz_target!(|data: &[u8]| {
    let (identity, secrets) = keys();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut stream = Attacker { data };
        assert!(
            respond(&mut stream, identity, secrets).await.is_err(),
            "a responder completed a handshake with someone who does not hold the secret"
        );
        let current = secrets.accepted().next().expect("a current secret");
        let mut stream = Attacker { data };
        assert!(
            initiate(&mut stream, identity, current).await.is_err(),
            "an initiator completed a handshake with someone who does not hold the secret"
        );
    });
});
