//! Shared pieces of the root tests: allocations and TCP echo checks. (The plugin against a
//! real agent is tested end to end in overlay-agent/tests/cni.rs.)
#![allow(dead_code)]

use overlay_proto::api::Allocation;
use overlay_testbed::Netns;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

/// The allocation for host `host` of block 10.32.1.0/24 (gateway 10.32.1.1).
pub fn allocation(host: u8) -> Allocation {
    Allocation {
        address: format!("10.32.1.{host}/24").parse().expect("net"),
        gateway: Ipv4Addr::new(10, 32, 1, 1),
        cluster: "10.32.0.0/12".parse().expect("net"),
        mtu: 1400,
    }
}

/// Starts a one-connection echo server on `addr` inside `ns`.
///
/// Use a fresh port each time: this kernel refuses to bind a specific address while a
/// TIME-WAIT socket of the previous server holds it, SO_REUSEADDR or not.
pub fn echo_server(ns: &Netns, addr: SocketAddr) -> JoinHandle<()> {
    let listener = ns
        .run(move || TcpListener::bind(addr))
        .expect("thread")
        .unwrap_or_else(|e| {
            let ss = ns
                .exec("ss", &["-tanoe"])
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
            panic!("bind {addr} in {}: {e}\n{ss:?}", ns.name())
        });
    std::thread::spawn(move || {
        listener.set_nonblocking(true).expect("nonblocking");
        for _ in 0..500 {
            match listener.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).expect("blocking");
                    s.set_read_timeout(Some(Duration::from_secs(5)))
                        .expect("timeout");
                    let mut buf = [0u8; 64];
                    if let Ok(n) = s.read(&mut buf) {
                        let _ = s.write_all(&buf[..n]);
                    }
                    return;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    })
}

/// Connects from inside `ns` to `to`, sends a line and returns what came back.
pub fn talk(ns: &Netns, to: SocketAddr, what: &'static str) -> Result<String, String> {
    ns.run(move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))
            .map_err(|e| format!("connect {to}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .map_err(|e| e.to_string())?;
        s.write_all(what.as_bytes()).map_err(|e| e.to_string())?;
        let mut back = vec![0u8; what.len()];
        s.read_exact(&mut back)
            .map_err(|e| format!("read from {to}: {e}"))?;
        String::from_utf8(back).map_err(|e| e.to_string())
    })
    .map_err(|e| e.to_string())?
}
