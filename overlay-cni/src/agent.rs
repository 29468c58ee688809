//! The agent's local IPAM API (see [`overlay_proto::api`]), with bounded waiting.
//!
//! While the agent is unreachable (not started yet, restarting) or answers 503 (no block
//! claimed yet), every call retries with backoff until the configured wait is over, then
//! fails with [`Error::AgentUnavailable`] (CNI code 11, "try again later"). Any other
//! error answer fails at once. Calls are idempotent at the agent, so retrying a request
//! whose answer was lost is safe.

use crate::error::Error;
use ipnet::Ipv4Net;
use overlay_proto::api::{AllocateRequest, Allocation, AllocationList, ApiError};
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Largest answer body read from the agent (a list of every allocation of a block of up to
/// 65 534 pods, about 100 bytes each, fits).
const MAX_BODY: u64 = 8 << 20;
/// First pause between attempts; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Bounds on a single attempt (connect plus answer).
const MIN_ATTEMPT: Duration = Duration::from_millis(500);
const MAX_ATTEMPT: Duration = Duration::from_secs(10);

/// A client for one agent's local API.
#[derive(Debug)]
pub struct AgentClient {
    api: SocketAddr,
    wait: Duration,
    http: ureq::Agent,
}

/// What one attempt produced.
enum Attempt {
    /// A final answer: status and body.
    Answer(u16, Vec<u8>),
    /// Worth retrying: what went wrong.
    Retry(NoAnswer),
    /// Not worth retrying: what went wrong.
    Fail(NoAnswer),
}

/// Why an attempt to ask the agent got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum NoAnswer {
    /// the agent answered 503 (starting, or without a block yet), with its error text
    #[error("HTTP 503: {0}")]
    Unavailable(String),
    /// the request was not sent or not answered (refused, reset, timed out, bad answer)
    #[error("{0}")]
    Transport(Box<ureq::Transport>),
    /// the answer broke off
    #[error("reading the answer: {0}")]
    Read(std::io::Error),
}

impl AgentClient {
    /// A client for the API at `api` that waits up to `wait` for an unavailable agent.
    pub fn new(api: SocketAddr, wait: Duration) -> AgentClient {
        let http = ureq::AgentBuilder::new()
            .try_proxy_from_env(false)
            .redirects(0)
            .max_idle_connections(0)
            .build();
        AgentClient { api, wait, http }
    }

    /// `POST /ipam/allocations`: the pod's address (the same one again for the same key).
    pub fn allocate(&self, container_id: &str, ifname: &str) -> Result<Allocation, Error> {
        let body = serde_json::to_vec(&AllocateRequest {
            container_id: container_id.to_owned(),
            ifname: ifname.to_owned(),
        })
        .map_err(|e| self.bad_answer("POST /ipam/allocations", &e.to_string()))?;
        let request = "POST /ipam/allocations".to_owned();
        match self.call("POST", "/ipam/allocations", Some(&body))? {
            (200, body) => self.decode(&request, &body),
            (status, body) => Err(self.refused(&request, status, &body)),
        }
    }

    /// `GET /ipam/allocations/{id}/{ifname}`: the pod's allocation, `None` when it holds none.
    pub fn get(&self, container_id: &str, ifname: &str) -> Result<Option<Allocation>, Error> {
        let path = allocation_path(container_id, ifname);
        let request = format!("GET {path}");
        match self.call("GET", &path, None)? {
            (200, body) => self.decode(&request, &body).map(Some),
            (404, _) => Ok(None),
            (status, body) => Err(self.refused(&request, status, &body)),
        }
    }

    /// `DELETE /ipam/allocations/{id}/{ifname}`: releases the pod's address (none held is fine).
    pub fn release(&self, container_id: &str, ifname: &str) -> Result<(), Error> {
        let path = allocation_path(container_id, ifname);
        let request = format!("DELETE {path}");
        match self.call("DELETE", &path, None)? {
            (200..=299 | 404, _) => Ok(()),
            (status, body) => Err(self.refused(&request, status, &body)),
        }
    }

    /// `GET /ipam/allocations`: every address the agent holds, with its key.
    pub fn list(&self) -> Result<AllocationList, Error> {
        let request = "GET /ipam/allocations";
        match self.call("GET", "/ipam/allocations", None)? {
            (200, body) => serde_json::from_slice(&body).map_err(|e| {
                self.bad_answer(request, &format!("an undecodable allocation list: {e}"))
            }),
            (status, body) => Err(self.refused(request, status, &body)),
        }
    }

    /// `GET /readyz`: Ok once the agent holds a block and its data path is up.
    pub fn ready(&self) -> Result<(), Error> {
        match self.call("GET", "/readyz", None)? {
            (200, _) => Ok(()),
            (status, body) => Err(self.refused("GET /readyz", status, &body)),
        }
    }

    /// Sends one request, retrying while the agent is unavailable, until the wait is over.
    fn call(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<(u16, Vec<u8>), Error> {
        let start = Instant::now();
        let deadline = start + self.wait;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let limit = remaining.clamp(MIN_ATTEMPT, MAX_ATTEMPT);
            let last = match self.attempt(method, path, body, limit) {
                Attempt::Answer(503, body) => NoAnswer::Unavailable(error_text(&body)),
                Attempt::Answer(status, body) => return Ok((status, body)),
                Attempt::Retry(why) => why,
                Attempt::Fail(why) => {
                    return Err(Error::AgentRequest {
                        api: self.api.to_string(),
                        request: format!("{method} {path}"),
                        problem: why,
                    })
                }
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::AgentUnavailable {
                    api: self.api.to_string(),
                    request: format!("{method} {path}"),
                    waited: now.duration_since(start),
                    last: last.to_string(),
                });
            }
            // The last pause ends at the deadline, for one last attempt there.
            std::thread::sleep(backoff.min(deadline - now));
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn attempt(&self, method: &str, path: &str, body: Option<&[u8]>, limit: Duration) -> Attempt {
        let url = format!("http://{}{}", self.api, path);
        let request = self
            .http
            .request(method, &url)
            .timeout(limit)
            .set("Accept", "application/json");
        let sent = match body {
            Some(b) => request
                .set("Content-Type", "application/json")
                .send_bytes(b),
            None => request.call(),
        };
        let response = match sent {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => {
                return match t.kind() {
                    // Not listening, reset, timed out, cut off mid-answer: agent (re)starting.
                    ureq::ErrorKind::ConnectionFailed
                    | ureq::ErrorKind::Io
                    | ureq::ErrorKind::BadStatus
                    | ureq::ErrorKind::BadHeader => {
                        Attempt::Retry(NoAnswer::Transport(Box::new(t)))
                    }
                    _ => Attempt::Fail(NoAnswer::Transport(Box::new(t))),
                };
            }
        };
        let status = response.status();
        let mut bytes = Vec::new();
        match response
            .into_reader()
            .take(MAX_BODY)
            .read_to_end(&mut bytes)
        {
            Ok(_) => Attempt::Answer(status, bytes),
            Err(e) => Attempt::Retry(NoAnswer::Read(e)),
        }
    }

    fn decode(&self, request: &str, body: &[u8]) -> Result<Allocation, Error> {
        let allocation: Allocation = serde_json::from_slice(body)
            .map_err(|e| self.bad_answer(request, &format!("an undecodable allocation: {e}")))?;
        check_allocation(&allocation).map_err(|p| self.bad_answer(request, &p.to_string()))?;
        Ok(allocation)
    }

    fn refused(&self, request: &str, status: u16, body: &[u8]) -> Error {
        Error::AgentRefused {
            api: self.api.to_string(),
            request: request.to_owned(),
            status,
            message: error_text(body),
        }
    }

    fn bad_answer(&self, request: &str, problem: &str) -> Error {
        Error::AgentAnswer {
            api: self.api.to_string(),
            request: request.to_owned(),
            problem: problem.to_owned(),
        }
    }
}

/// An allocation the plugin cannot wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnusableAllocation {
    /// The address is not a host of its subnet, or the gateway is not another host of it.
    #[error("an unusable allocation: address {address} with gateway {gateway}")]
    Addresses {
        /// The pod address with its prefix.
        address: Ipv4Net,
        /// The gateway.
        gateway: Ipv4Addr,
    },
    /// The MTU is outside what the plugin accepts.
    #[error("an allocation with mtu {0}")]
    Mtu(u32),
}

/// Refuses allocations the plugin cannot wire: the gateway must be another host of the
/// pod's subnet, and the MTU sane.
pub fn check_allocation(a: &Allocation) -> Result<(), UnusableAllocation> {
    let subnet = a.address.trunc();
    let usable = a.address.prefix_len() <= 30
        && a.address.addr() != a.address.network()
        && a.address.addr() != a.address.broadcast()
        && subnet.contains(&a.gateway)
        && a.gateway != a.address.addr()
        && a.gateway != a.address.network()
        && a.gateway != a.address.broadcast();
    if !usable {
        return Err(UnusableAllocation::Addresses {
            address: a.address,
            gateway: a.gateway,
        });
    }
    if !crate::netconf::MTU_RANGE.contains(&a.mtu) {
        return Err(UnusableAllocation::Mtu(a.mtu));
    }
    Ok(())
}

/// `/ipam/allocations/{container_id}/{ifname}` with both parts percent-encoded.
pub fn allocation_path(container_id: &str, ifname: &str) -> String {
    format!(
        "/ipam/allocations/{}/{}",
        percent_encode(container_id),
        percent_encode(ifname)
    )
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The agent's error text from an [`ApiError`] body, or the body itself (shortened).
fn error_text(body: &[u8]) -> String {
    match serde_json::from_slice::<ApiError>(body) {
        Ok(e) => e.error,
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                "(no body)".to_owned()
            } else {
                text.chars().take(200).collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::mpsc;

    fn allocation() -> Allocation {
        Allocation {
            address: "10.32.1.2/24".parse().expect("net"),
            gateway: "10.32.1.1".parse().expect("ip"),
            cluster: "10.32.0.0/12".parse().expect("net"),
            mtu: 1410,
        }
    }

    /// Reads one request: (request line, body).
    fn read_request(stream: &TcpStream) -> (String, String) {
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut line = String::new();
        reader.read_line(&mut line).expect("request line");
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).expect("header");
            if h.trim().is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().expect("length");
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).expect("body");
        (
            line.trim().to_owned(),
            String::from_utf8(body).expect("utf8"),
        )
    }

    /// Serves `answers` (status, body) in order on a loopback port; reports each request.
    fn serve(answers: Vec<(u16, String)>) -> (SocketAddr, mpsc::Receiver<(String, String)>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for (status, body) in answers {
                let Ok((mut s, _)) = listener.accept() else {
                    return;
                };
                let req = read_request(&s);
                let _ = tx.send(req);
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (addr, rx)
    }

    fn closed_port() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    }

    #[test]
    fn allocate_posts_the_key_and_decodes_the_answer() {
        let body = serde_json::to_string(&allocation()).expect("json");
        let (addr, rx) = serve(vec![(200, body)]);
        let client = AgentClient::new(addr, Duration::from_secs(5));
        assert_eq!(
            client.allocate("abc", "eth0").expect("allocated"),
            allocation()
        );
        let (line, body) = rx.recv().expect("request");
        assert_eq!(line, "POST /ipam/allocations HTTP/1.1");
        let req: AllocateRequest = serde_json::from_str(&body).expect("request body");
        assert_eq!(req.container_id, "abc");
        assert_eq!(req.ifname, "eth0");
    }

    #[test]
    fn not_ready_answers_are_retried() {
        let busy = r#"{"error":"no block yet"}"#.to_owned();
        let body = serde_json::to_string(&allocation()).expect("json");
        let (addr, rx) = serve(vec![(503, busy.clone()), (503, busy), (200, body)]);
        let client = AgentClient::new(addr, Duration::from_secs(10));
        assert_eq!(
            client.allocate("abc", "eth0").expect("allocated"),
            allocation()
        );
        assert_eq!(rx.try_iter().count(), 3);
    }

    #[test]
    fn an_absent_agent_is_awaited_then_code_11() {
        let addr = closed_port();
        let client = AgentClient::new(addr, Duration::from_millis(700));
        let start = Instant::now();
        let e = client.allocate("abc", "eth0").expect_err("nobody listens");
        assert!(start.elapsed() >= Duration::from_millis(300), "it waited");
        assert_eq!(e.code(), 11);
        assert!(e.to_string().contains(&addr.to_string()), "{e}");
        assert!(e.details().contains("last attempt"), "{}", e.details());
    }

    #[test]
    fn a_busy_agent_is_code_11_with_its_reason() {
        let busy = r#"{"error":"no block yet"}"#.to_owned();
        let (addr, _rx) = serve(vec![(503, busy)]);
        let client = AgentClient::new(addr, Duration::ZERO);
        let e = client.release("abc", "eth0").expect_err("busy");
        assert_eq!(e.code(), 11);
        assert!(e.details().contains("no block yet"), "{}", e.details());
    }

    #[test]
    fn get_maps_404_to_none_and_errors_carry_the_agent_text() {
        let (addr, rx) = serve(vec![
            (404, r#"{"error":"none"}"#.into()),
            (400, r#"{"error":"bad key"}"#.into()),
            (204, String::new()),
        ]);
        let client = AgentClient::new(addr, Duration::from_secs(5));
        assert_eq!(client.get("abc", "eth0").expect("answer"), None);
        let e = client.get("abc", "eth0").expect_err("refused");
        assert!(e.to_string().contains("bad key"), "{e}");
        assert_eq!(e.code(), 999);
        client.release("abc", "eth0").expect("released");
        let lines: Vec<String> = rx.try_iter().map(|(l, _)| l).collect();
        assert_eq!(lines[0], "GET /ipam/allocations/abc/eth0 HTTP/1.1");
        assert_eq!(lines[2], "DELETE /ipam/allocations/abc/eth0 HTTP/1.1");
    }

    #[test]
    fn list_and_ready() {
        let list = r#"{"block":"10.32.1.0/24","allocations":[
            {"container_id":"abc","ifname":"eth0","address":"10.32.1.2"}]}"#;
        let (addr, rx) = serve(vec![
            (200, list.into()),
            (200, "ready\n".into()),
            (503, "not ready: no subnet claimed\n".into()),
            (200, "[]".into()),
        ]);
        let client = AgentClient::new(addr, Duration::ZERO);
        let l = client.list().expect("list");
        assert_eq!(l.allocations.len(), 1);
        assert_eq!(l.allocations[0].container_id, "abc");
        client.ready().expect("ready");
        let e = client.ready().expect_err("not ready");
        assert_eq!(e.code(), 11);
        assert!(e.details().contains("no subnet claimed"), "{}", e.details());
        let e = client.list().expect_err("not a list");
        assert!(e.to_string().contains("undecodable allocation list"), "{e}");
        let lines: Vec<String> = rx.try_iter().map(|(l, _)| l).collect();
        assert_eq!(lines[0], "GET /ipam/allocations HTTP/1.1");
        assert_eq!(lines[1], "GET /readyz HTTP/1.1");
    }

    #[test]
    fn unusable_allocations_are_refused() {
        let mut bad = allocation();
        bad.gateway = "10.33.0.1".parse().expect("ip");
        let (addr, _rx) = serve(vec![(200, serde_json::to_string(&bad).expect("json"))]);
        let e = AgentClient::new(addr, Duration::from_secs(5))
            .allocate("abc", "eth0")
            .expect_err("unusable");
        assert!(e.to_string().contains("unusable"), "{e}");
        let mut same = allocation();
        same.gateway = same.address.addr();
        assert_eq!(
            check_allocation(&same),
            Err(UnusableAllocation::Addresses {
                address: same.address,
                gateway: same.gateway
            })
        );
        let mut tiny = allocation();
        tiny.mtu = 0;
        assert_eq!(check_allocation(&tiny), Err(UnusableAllocation::Mtu(0)));
        assert!(check_allocation(&allocation()).is_ok());
    }

    #[test]
    fn path_parts_are_percent_encoded() {
        assert_eq!(
            allocation_path("abc-1.x_y", "eth0"),
            "/ipam/allocations/abc-1.x_y/eth0"
        );
        assert_eq!(
            allocation_path("a", "e%0?#"),
            "/ipam/allocations/a/e%250%3F%23"
        );
    }
}
