//! Measuring a path between two namespaces: TCP throughput with iperf3 and round-trip time
//! with ping (both must be installed; `scripts/bench.sh` installs them).
//!
//! Each throughput measurement starts a one-off iperf3 server (`-s -1`) in the receiving
//! namespace, waits until it listens, runs the client in the sending namespace with JSON
//! output and reads the receiver-side rate from it. Every process is bounded in time and
//! killed when dropped.

use crate::netns::Netns;
use crate::process::Process;
use anyhow::{bail, Context};
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The port the iperf3 servers listen on (each in its own namespace).
pub const PORT: u16 = 5201;

/// A one-off iperf3 server (`iperf3 -s -1`) inside a namespace; killed on drop.
#[derive(Debug)]
pub struct IperfServer {
    process: Process,
}

impl IperfServer {
    /// Starts the server in `ns` on `port`, its output appended to `log`, and waits (at most
    /// 5 s) until it listens.
    pub fn start(ns: &Netns, port: u16, log: &Path) -> anyhow::Result<IperfServer> {
        let mut cmd = ns.command("iperf3");
        cmd.args(["-s", "-1", "-p", &port.to_string()]);
        let mut server = IperfServer {
            process: Process::spawn(&format!("iperf3 server in {}", ns.name()), cmd, log)?,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if listening(ns, port)? {
                return Ok(server);
            }
            if !server.process.is_running() {
                bail!(
                    "iperf3 server in {} exited at once: {}",
                    ns.name(),
                    server.process.log()
                );
            }
            if Instant::now() >= deadline {
                bail!("iperf3 server in {} does not listen on {port}", ns.name());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// True when a TCP socket listens on `port` inside `ns` (asks `ss`).
fn listening(ns: &Netns, port: u16) -> anyhow::Result<bool> {
    let out = ns.exec("ss", &["-Hltn"]).context("running ss (iproute2)")?;
    let suffix = format!(":{port}");
    Ok(String::from_utf8_lossy(&out.stdout).lines().any(|l| {
        l.split_whitespace()
            .nth(3)
            .is_some_and(|local| local.ends_with(&suffix))
    }))
}

/// What one iperf3 client run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Throughput {
    /// Receiver-side rate, bits per second (`end.sum_received`).
    pub received_bps: f64,
    /// Sender-side rate, bits per second (`end.sum_sent`).
    pub sent_bps: f64,
    /// TCP retransmissions the sender saw, when iperf3 reports them.
    pub retransmits: Option<u64>,
}

impl Throughput {
    /// Receiver-side Gbit/s.
    pub fn gbit(&self) -> f64 {
        self.received_bps / 1e9
    }

    /// Reads the result out of `iperf3 -J` client output.
    pub fn from_json(text: &str) -> anyhow::Result<Throughput> {
        let v: serde_json::Value = serde_json::from_str(text)
            .with_context(|| format!("iperf3 printed no JSON: {}", text.trim()))?;
        if let Some(e) = v["error"].as_str() {
            bail!("iperf3: {e}");
        }
        let end = &v["end"];
        let received_bps = end["sum_received"]["bits_per_second"]
            .as_f64()
            .with_context(|| format!("no end.sum_received.bits_per_second in {end}"))?;
        Ok(Throughput {
            received_bps,
            sent_bps: end["sum_sent"]["bits_per_second"].as_f64().unwrap_or(0.0),
            retransmits: end["sum_sent"]["retransmits"].as_u64(),
        })
    }
}

/// Runs an iperf3 client in `client` against `server_ip:port` for `secs` seconds with
/// `streams` parallel TCP streams (the server must be started); fails if iperf3 fails or takes
/// more than `secs` + 20 s.
pub fn throughput(
    client: &Netns,
    server_ip: Ipv4Addr,
    port: u16,
    secs: u32,
    streams: u32,
) -> anyhow::Result<Throughput> {
    let mut cmd = client.command("iperf3");
    cmd.args(["-c", &server_ip.to_string(), "-p", &port.to_string()])
        .args(["-t", &secs.to_string(), "-P", &streams.to_string()])
        .args(["-J", "--connect-timeout", "5000"]);
    let what = format!("iperf3 -c {server_ip} -P {streams} in {}", client.name());
    let out = run_bounded(cmd, Duration::from_secs(u64::from(secs) + 20), &what)?;
    Throughput::from_json(&out).with_context(|| what)
}

/// Round-trip times from one ping run.
#[derive(Debug, Clone, PartialEq)]
pub struct Rtt {
    /// Echo requests sent.
    pub sent: u32,
    /// Echo replies received.
    pub received: u32,
    /// Minimum, µs.
    pub min_us: f64,
    /// Average, µs.
    pub avg_us: f64,
    /// Maximum, µs.
    pub max_us: f64,
}

impl Rtt {
    /// Reads the summary lines of `ping -q` (iputils).
    pub fn from_ping(text: &str) -> anyhow::Result<Rtt> {
        let mut counts = None;
        let mut times = None;
        for line in text.lines() {
            if line.contains("packets transmitted") {
                let nums: Vec<u32> = line
                    .split(',')
                    .filter_map(|part| part.split_whitespace().next()?.parse().ok())
                    .collect();
                if let [sent, received, ..] = nums[..] {
                    counts = Some((sent, received));
                }
            }
            if let Some((_, values)) = line.split_once(" = ") {
                if line.starts_with("rtt") || line.starts_with("round-trip") {
                    let ms: Vec<f64> = values
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .split('/')
                        .filter_map(|x| x.parse().ok())
                        .collect();
                    if let [min, avg, max, ..] = ms[..] {
                        times = Some((min * 1e3, avg * 1e3, max * 1e3));
                    }
                }
            }
        }
        let (sent, received) = counts.with_context(|| format!("no ping summary in {text}"))?;
        let (min_us, avg_us, max_us) =
            times.with_context(|| format!("no replies ({received} of {sent}): {text}"))?;
        Ok(Rtt {
            sent,
            received,
            min_us,
            avg_us,
            max_us,
        })
    }
}

/// Pings `dst` from inside `ns` `count` times, `interval` seconds apart (below 0.2 s needs
/// root), 56-byte payloads; fails if no reply came back.
pub fn rtt(ns: &Netns, dst: Ipv4Addr, count: u32, interval: f64) -> anyhow::Result<Rtt> {
    let mut cmd = ns.command("ping");
    cmd.args(["-q", "-n", "-c", &count.to_string()]).args([
        "-i",
        &format!("{interval}"),
        "-W",
        "2",
        &dst.to_string(),
    ]);
    let budget = Duration::from_secs_f64(f64::from(count) * interval + 10.0);
    let what = format!("ping {dst} in {}", ns.name());
    let out = run_bounded(cmd, budget, &what)?;
    Rtt::from_ping(&out).with_context(|| what)
}

/// Runs `cmd` and returns its stdout; kills it and fails after `limit`. The exit status is
/// not checked (iperf3 and ping report failures in what they print).
fn run_bounded(mut cmd: Command, limit: Duration, what: &str) -> anyhow::Result<String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let mut stdout = child.stdout.take().context("stdout")?;
    let mut stderr = child.stderr.take().context("stderr")?;
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let timed_out = loop {
        if child.try_wait()?.is_some() {
            break false;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break true;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    if timed_out {
        bail!("{what} did not finish within {limit:?}");
    }
    if out.trim().is_empty() {
        bail!("{what} printed nothing: {}", err.trim());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_iperf3_json() {
        let t = Throughput::from_json(
            r#"{"start":{},"end":{"sum_sent":{"bits_per_second":2.5e9,"retransmits":3},
                "sum_received":{"bits_per_second":2.4e9}}}"#,
        )
        .expect("parse");
        assert!((t.gbit() - 2.4).abs() < 1e-9);
        assert_eq!(t.retransmits, Some(3));
        let e = Throughput::from_json(r#"{"start":{},"end":{},"error":"unable to connect"}"#)
            .expect_err("error");
        assert!(e.to_string().contains("unable to connect"), "{e}");
        assert!(Throughput::from_json("iperf3: error").is_err());
    }

    #[test]
    fn reads_ping_summary() {
        let text = "PING 10.32.1.2 (10.32.1.2) 56(84) bytes of data.\n\n\
            --- 10.32.1.2 ping statistics ---\n\
            20 packets transmitted, 19 received, 5% packet loss, time 961ms\n\
            rtt min/avg/max/mdev = 0.041/0.062/0.120/0.015 ms\n";
        let r = Rtt::from_ping(text).expect("parse");
        assert_eq!((r.sent, r.received), (20, 19));
        assert!((r.min_us - 41.0).abs() < 1e-6 && (r.avg_us - 62.0).abs() < 1e-6);
        assert!((r.max_us - 120.0).abs() < 1e-6);
        let lost = "3 packets transmitted, 0 received, 100% packet loss, time 2040ms\n";
        assert!(Rtt::from_ping(lost).is_err());
    }
}
