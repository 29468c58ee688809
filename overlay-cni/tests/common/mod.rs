//! Shared pieces of the root tests: allocations, TCP echo checks, a fake agent API.
#![allow(dead_code)]

use overlay_proto::api::{AllocateRequest, Allocation, ApiError};
use overlay_testbed::Netns;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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

/// A stand-in for the agent's IPAM API (overlay_proto::api), on loopback inside a namespace.
pub struct FakeAgent {
    pub addr: SocketAddr,
    /// How many requests still get 503 before real answers.
    pub busy: Arc<AtomicUsize>,
    /// Allocations held, by `container_id/ifname`.
    pub held: Arc<Mutex<HashMap<String, Allocation>>>,
    /// Request lines seen.
    pub seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeAgent {
    /// Listens on 127.0.0.1:`port` inside `ns`; answers 503 to the first `busy` requests.
    pub fn start(ns: &Netns, port: u16, busy: usize) -> FakeAgent {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let listener = ns
            .run(move || TcpListener::bind(addr))
            .expect("thread")
            .expect("bind fake agent");
        listener.set_nonblocking(true).expect("nonblocking");
        let busy = Arc::new(AtomicUsize::new(busy));
        let held = Arc::new(Mutex::new(HashMap::new()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (busy, held, seen, stop) = (busy.clone(), held.clone(), seen.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut next_host = 2u8;
                while !stop.load(Ordering::Relaxed) {
                    let Ok((s, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    s.set_nonblocking(false).expect("blocking");
                    s.set_read_timeout(Some(Duration::from_secs(5)))
                        .expect("timeout");
                    let Some((line, body)) = read_request(&s) else {
                        continue;
                    };
                    seen.lock().expect("lock").push(line.clone());
                    let answer = if busy
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        (503, error_body("no block claimed yet"))
                    } else {
                        answer(&line, &body, &held, &mut next_host)
                    };
                    respond(s, answer);
                }
            })
        };
        FakeAgent {
            addr,
            busy,
            held,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().expect("lock").clone()
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn error_body(text: &str) -> String {
    serde_json::to_string(&ApiError {
        error: text.to_owned(),
    })
    .expect("json")
}

fn answer(
    line: &str,
    body: &str,
    held: &Mutex<HashMap<String, Allocation>>,
    next_host: &mut u8,
) -> (u16, String) {
    let mut parts = line.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut held = held.lock().expect("lock");
    match (method, path.strip_prefix("/ipam/allocations")) {
        ("POST", Some("")) => match serde_json::from_str::<AllocateRequest>(body) {
            Ok(req) => {
                let key = req.key().expect("valid key");
                let a = held
                    .entry(key)
                    .or_insert_with(|| {
                        *next_host += 1;
                        allocation(*next_host - 1)
                    })
                    .clone();
                (200, serde_json::to_string(&a).expect("json"))
            }
            Err(e) => (400, error_body(&e.to_string())),
        },
        ("GET", Some(key)) => match held.get(key.trim_start_matches('/')) {
            Some(a) => (200, serde_json::to_string(a).expect("json")),
            None => (404, error_body("no such allocation")),
        },
        ("DELETE", Some(key)) => {
            held.remove(key.trim_start_matches('/'));
            (204, String::new())
        }
        _ => (404, error_body("no such route")),
    }
}

fn read_request(stream: &TcpStream) -> Option<(String, String)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        if h.trim().is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; len.min(1 << 16)];
    reader.read_exact(&mut body).ok()?;
    Some((line.trim_end().to_owned(), String::from_utf8(body).ok()?))
}

fn respond(mut s: TcpStream, (status, body): (u16, String)) {
    let _ = write!(
        s,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}
