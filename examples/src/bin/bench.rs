//! The data-path benchmark: our overlay against kernel VXLAN, a TUN→TUN forwarder and the
//! bare underlay, in one run, on identical namespace topologies. Run it with
//! `scripts/bench.sh` (as root; it installs iperf3 and ping and builds the release binaries
//! first).
//!
//! - **overlay**: a two-node [`Cluster`] (real agents, pods attached by the CNI plugin);
//!   iperf3 and ping from the pod on node 0 to the pod on node 1.
//! - **kernel VXLAN**: a [`VxlanNet`] on a second, identical [`Underlay`], pods wired the same
//!   way (pod veth → node bridge → route → vxlan → underlay → vxlan → bridge → pod): the
//!   reference every ratio is taken against.
//! - **TUN→TUN forwarder**: a [`TunPipeNet`]: the same two nodes and pods, but each node routes
//!   the other pod's subnet into a TUN device (vnet header, checksum and TSO offloads, the
//!   VXLAN bed's MTU) and two threads of this process copy every read, unchanged, into the
//!   other node's TUN. No tunnel, no UDP, no processing: a reference for what copying every
//!   byte through TUN devices costs here (what it does and does not bound is discussed in
//!   `docs/measurements.md`).
//! - **underlay**: node 0 to node 1 of the VXLAN bed directly (veth → bridge → veth).
//! - with `--ablation`: one more overlay cluster per offload technique, its agents started
//!   with `OVERLAY_DATAPATH_DISABLE=<technique>`.
//! - with `--baseline DIR`: one more overlay cluster running the `overlay-agent` and
//!   `overlay-cni` found in `DIR` (another build, e.g. of the commit before a change), so a
//!   change is measured against its baseline in the same runs.
//!
//! Each run measures every path once (one TCP stream, four streams, then ping), the paths in a
//! rotating order, so that noise on this shared machine hits all of them alike; the report
//! gives medians over the runs. In the same rotation, each run also measures how long a
//! thread blocked in `recv(2)` takes to run after a write when the machine has been idle for
//! the ping interval, and how long the writer, asleep in its own `recv(2)` right after, takes
//! to run after the answer ([`wakeup`]): the wake-ups a sleeping packet thread pays (how they
//! relate to a userspace tunnel's RTT is discussed in `docs/measurements.md`). While
//! iperf3 runs through an overlay cluster, its agents' resident memory is sampled. The report
//! is Markdown, on stdout; progress goes to stderr. It states what was measured (figures,
//! ratios, which bed); the explanations live in `docs/measurements.md`.
//!
//! Everything lives in namespaces with a unique prefix and is removed on every exit path:
//! errors, panics, and SIGINT/SIGTERM/SIGHUP (caught, so destructors run).

use anyhow::{bail, Context};
use overlay_testbed::iperf::{self, IperfServer, Rtt, Throughput};
use overlay_testbed::tunpipe::forward::DirectionStats;
use overlay_testbed::tunpipe::TunPipeNet;
use overlay_testbed::vxlan::{self, VxlanNet};
use overlay_testbed::wakeup;
use overlay_testbed::{Binaries, Cluster, Netns, Underlay};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The agent's switch for turning data-path techniques off (comma-separated values).
const DISABLE_ENV: &str = "OVERLAY_DATAPATH_DISABLE";
/// The techniques, one ablation row each.
const TECHNIQUES: [&str; 4] = ["tun-offload", "udp-gso", "udp-gro", "coalesce"];
/// Pings per run, and their interval in seconds.
const PINGS: u32 = 20;
const PING_INTERVAL: f64 = 0.05;
/// Wake-up samples per run, each after [`WAKE_IDLE`] of idle (the ping interval).
const WAKE_SAMPLES: usize = 40;
const WAKE_IDLE: Duration = Duration::from_millis(50);
/// How often agent memory is sampled during the iperf3 runs.
const RSS_EVERY: Duration = Duration::from_millis(50);

const USAGE: &str = "\
usage: bench [--runs N] [--secs S] [--ablation] [--baseline DIR]
             (as root; normally via scripts/bench.sh)

  --runs N     measure every path N times, interleaved, and report medians (default 5)
  --secs S     seconds per iperf3 run (default 5)
  --ablation   also measure the overlay with each data-path technique switched off
               (OVERLAY_DATAPATH_DISABLE=tun-offload|udp-gso|udp-gro|coalesce), one row each
  --baseline DIR
               also measure an overlay cluster running the overlay-agent and overlay-cni
               binaries in DIR (e.g. a release build of the previous commit), one row

Prints a Markdown table on stdout (progress on stderr). Every namespace it creates is
removed on exit, Ctrl-C included.";

#[derive(Debug, Clone, PartialEq)]
struct Args {
    runs: usize,
    secs: u32,
    ablation: bool,
    /// A directory with the binaries of another build to measure alongside.
    baseline: Option<PathBuf>,
}

fn main() {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("bench: {e:#}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    interrupt::catch();
    // `run` owns every namespace: they are gone by the time it returns.
    match run(&args) {
        Ok((report, 0)) => print!("{report}"),
        Ok((report, failed)) => {
            print!("{report}");
            eprintln!("bench: {failed} measurement(s) failed (see the report)");
            std::process::exit(1);
        }
        Err(_) if interrupt::happened() => {
            eprintln!("bench: interrupted; everything it created is removed");
            std::process::exit(130);
        }
        Err(e) => {
            eprintln!("bench: {e:#}");
            std::process::exit(1);
        }
    }
}

fn parse_args(args: impl Iterator<Item = String>) -> anyhow::Result<Option<Args>> {
    let mut a = Args {
        runs: 5,
        secs: 5,
        ablation: false,
        baseline: None,
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> anyhow::Result<String> {
            inline
                .clone()
                .or_else(|| args.next())
                .with_context(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--runs" => {
                a.runs = value("--runs")?
                    .parse()
                    .context("--runs takes a whole number")?;
            }
            "--secs" => {
                a.secs = value("--secs")?
                    .parse()
                    .context("--secs takes a whole number of seconds")?;
            }
            "--ablation" => a.ablation = true,
            "--baseline" => a.baseline = Some(PathBuf::from(value("--baseline")?)),
            "-h" | "--help" => return Ok(None),
            other => bail!("unknown argument {other:?}"),
        }
    }
    if a.runs == 0 || a.secs == 0 {
        bail!("--runs and --secs must be at least 1");
    }
    Ok(Some(a))
}

/// SIGINT, SIGTERM and SIGHUP set a flag instead of killing the process, so that every
/// namespace is removed by the destructors; the bench checks the flag between steps.
mod interrupt {
    use std::sync::atomic::{AtomicBool, Ordering};

    static INTERRUPTED: AtomicBool = AtomicBool::new(false);

    extern "C" fn on_signal(_signum: libc::c_int) {
        // Only an atomic store: async-signal-safe.
        INTERRUPTED.store(true, Ordering::SeqCst);
    }

    /// Installs the handler for SIGHUP, SIGINT and SIGTERM.
    pub fn catch() {
        for signum in [libc::SIGHUP, libc::SIGINT, libc::SIGTERM] {
            // SAFETY: installs a handler (glibc signal(3): BSD semantics, it stays installed)
            // that only stores to an atomic, which is async-signal-safe.
            unsafe {
                libc::signal(signum, on_signal as *const () as libc::sighandler_t);
            }
        }
    }

    /// True once a signal arrived.
    pub fn happened() -> bool {
        INTERRUPTED.load(Ordering::SeqCst)
    }

    /// Fails once a signal arrived.
    pub fn check() -> anyhow::Result<()> {
        if happened() {
            anyhow::bail!("interrupted");
        }
        Ok(())
    }
}

/// The row of the TUN→TUN forwarder.
const TUNPIPE_LABEL: &str = "TUN→TUN forwarder (copy only, no tunnel)";

/// Index of the overlay cluster whose agents run with `--secret-file` and `--encrypt`.
const SEALED: usize = 1;
/// Index of the first ablation cluster.
const FIRST_ABLATION: usize = 2;

/// The label of the `--baseline` row.
fn baseline_label(dir: &Path) -> String {
    format!("overlay pod→pod, baseline build ({})", dir.display())
}

/// Which path a series measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Pod to pod through overlay cluster number `.0` of the bed (0: plain, [`SEALED`]:
    /// encrypted, from [`FIRST_ABLATION`] on: one technique off, then the `--baseline`
    /// build's cluster last).
    Overlay(usize),
    /// Pod to pod through kernel VXLAN.
    Vxlan,
    /// Pod to pod through the TUN→TUN forwarder.
    TunPipe,
    /// Node to node on the VXLAN bed's underlay.
    Underlay,
}

/// Everything measured on one path.
#[derive(Debug)]
struct Series {
    label: String,
    kind: Kind,
    /// The technique switched off (ablation rows).
    disabled: Option<&'static str>,
    /// MTU of the sending interface.
    mtu: u32,
    one: Vec<f64>,
    four: Vec<f64>,
    rtt_avg: Vec<f64>,
    rtt_min: Vec<f64>,
    lost_pings: u32,
    /// Why runs of this path failed (a failed run is left out of the medians).
    failures: Vec<String>,
    /// Largest agent VmRSS seen during this path's iperf3 runs, KiB.
    rss_kib: u64,
    /// Largest agent VmHWM (lifetime peak) at the end, KiB.
    hwm_kib: u64,
}

impl Series {
    fn new(label: &str, kind: Kind, disabled: Option<&'static str>, mtu: u32) -> Series {
        Series {
            label: label.to_owned(),
            kind,
            disabled,
            mtu,
            one: Vec::new(),
            four: Vec::new(),
            rtt_avg: Vec::new(),
            rtt_min: Vec::new(),
            lost_pings: 0,
            failures: Vec::new(),
            rss_kib: 0,
            hwm_kib: 0,
        }
    }
}

/// The namespaces under test; removed on drop (the clusters, then the VXLAN bed, then the
/// TUN→TUN forwarder bed, then the log directory).
#[derive(Debug)]
struct Bed {
    clusters: Vec<Cluster>,
    vxlan: VxlanNet,
    tunpipe: TunPipeNet,
    logs: LogDir,
}

/// Where the sending side, receiving side and agents of a path are.
#[derive(Debug)]
struct Ends<'a> {
    client: &'a Netns,
    server: &'a Netns,
    dst: Ipv4Addr,
    agents: Vec<u32>,
}

impl Bed {
    fn ends(&self, kind: Kind) -> Ends<'_> {
        match kind {
            Kind::Overlay(k) => {
                let c = &self.clusters[k];
                Ends {
                    client: &c.pods[0].netns,
                    server: &c.pods[1].netns,
                    dst: c.pods[1].ip,
                    agents: agent_pids(c),
                }
            }
            Kind::Vxlan => Ends {
                client: &self.vxlan.pods[0].netns,
                server: &self.vxlan.pods[1].netns,
                dst: self.vxlan.pods[1].ip,
                agents: Vec::new(),
            },
            Kind::TunPipe => Ends {
                client: &self.tunpipe.pods[0].netns,
                server: &self.tunpipe.pods[1].netns,
                dst: self.tunpipe.pods[1].ip,
                agents: Vec::new(),
            },
            Kind::Underlay => Ends {
                client: &self.vxlan.underlay.nodes[0],
                server: &self.vxlan.underlay.nodes[1],
                dst: Underlay::node_addr(1),
                agents: Vec::new(),
            },
        }
    }
}

/// A directory for the iperf3 server logs, removed on drop.
#[derive(Debug)]
struct LogDir(PathBuf);

impl Drop for LogDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the benchmark; the report and how many measurements failed.
fn run(args: &Args) -> anyhow::Result<(String, usize)> {
    if !overlay_testbed::is_root() {
        bail!("the benchmark creates network namespaces: run it as root (sudo scripts/bench.sh)");
    }
    overlay_testbed::ensure_tun_device();
    let exe = std::env::current_exe()?;
    let bins = Binaries::in_dir(exe.parent().context("binary directory")?)?;
    let baseline = match &args.baseline {
        Some(dir) => Some(
            Binaries::in_dir(dir)
                .with_context(|| format!("--baseline {}: the binaries", dir.display()))?,
        ),
        None => None,
    };
    let started = Instant::now();

    let bed = build(&bins, baseline.as_ref(), args)?;
    let mut series = vec![
        Series::new(
            "overlay pod→pod",
            Kind::Overlay(0),
            None,
            vxlan::link_mtu(&bed.clusters[0].pods[0].netns, "eth0")?,
        ),
        Series::new(
            &format!(
                "overlay pod→pod, `--encrypt` ({})",
                overlay_proto::seal::Suite::detect().name()
            ),
            Kind::Overlay(SEALED),
            None,
            vxlan::link_mtu(&bed.clusters[SEALED].pods[0].netns, "eth0")?,
        ),
        Series::new("kernel VXLAN pod→pod", Kind::Vxlan, None, bed.vxlan.mtu()),
        Series::new(
            TUNPIPE_LABEL,
            Kind::TunPipe,
            None,
            vxlan::link_mtu(&bed.tunpipe.pods[0].netns, "eth0")?,
        ),
        Series::new(
            "underlay node→node (veth, bridge, veth)",
            Kind::Underlay,
            None,
            vxlan::link_mtu(&bed.vxlan.underlay.nodes[0], "eth0")?,
        ),
    ];
    if args.ablation {
        for (k, t) in TECHNIQUES.iter().enumerate() {
            let mtu = vxlan::link_mtu(&bed.clusters[k + FIRST_ABLATION].pods[0].netns, "eth0")?;
            series.push(Series::new(
                &format!("overlay, {t} off"),
                Kind::Overlay(k + FIRST_ABLATION),
                Some(t),
                mtu,
            ));
        }
    }
    if let Some(dir) = &args.baseline {
        let k = bed.clusters.len() - 1;
        series.push(Series::new(
            &baseline_label(dir),
            Kind::Overlay(k),
            None,
            vxlan::link_mtu(&bed.clusters[k].pods[0].netns, "eth0")?,
        ));
    }

    step("checking every path (ping)");
    for s in &series {
        interrupt::check()?;
        let e = bed.ends(s.kind);
        if let Err(e) = iperf::rtt(e.client, e.dst, 3, 0.2) {
            interrupt::check()?;
            let mut probe = Series::new(&s.label, s.kind, s.disabled, s.mtu);
            failed(&bed, &mut probe, anyhow::anyhow!("ping: {e:#}"));
            bail!("{} does not work", s.label);
        }
    }

    let mut wake = Wake::default();
    for run in 0..args.runs {
        step(&format!("run {}/{}", run + 1, args.runs));
        // Slot `n` is the wake-up measurement, rotated along with the paths.
        let n = series.len();
        for i in (0..=n).map(|i| (i + run) % (n + 1)) {
            if i == n {
                wake.measure(&bed.tunpipe.nodes[0]);
                interrupt::check()?;
            } else if let Err(e) = measure(&bed, &mut series[i], args.secs) {
                interrupt::check()?;
                failed(&bed, &mut series[i], e);
            }
        }
    }
    for s in &mut series {
        if let Kind::Overlay(_) = s.kind {
            s.hwm_kib = bed
                .ends(s.kind)
                .agents
                .iter()
                .filter_map(|&p| status_kib(p, "VmHWM"))
                .max()
                .unwrap_or(0);
        }
    }
    let forwarded = bed.tunpipe.stats();
    let elapsed = started.elapsed();
    drop(bed);
    step(&format!(
        "done in {:.0} s; everything removed",
        elapsed.as_secs_f64()
    ));
    let failures = series.iter().map(|s| s.failures.len()).sum::<usize>() + wake.failures.len();
    Ok((report(args, &series, &wake, &forwarded), failures))
}

/// The wake-up latencies of all runs.
#[derive(Debug, Default)]
struct Wake {
    /// Every wake-up after idle of every run, µs.
    samples_us: Vec<f64>,
    /// The matching wake-ups of the writer right after (see [`wakeup::Wakeup::back`]), µs.
    back_us: Vec<f64>,
    /// Runs measured.
    runs: usize,
    /// Why runs failed (left out).
    failures: Vec<String>,
}

impl Wake {
    /// One run: [`WAKE_SAMPLES`] wake-ups after [`WAKE_IDLE`] each, of a thread blocked in
    /// `recv(2)` on a UDP socket on the loopback of `ns`, and of the writer right after.
    fn measure(&mut self, ns: &Netns) {
        match wakeup::latencies(ns, WAKE_SAMPLES, WAKE_IDLE) {
            Ok(v) => {
                let micros = |d: Duration| d.as_secs_f64() * 1e6;
                let us: Vec<f64> = v.iter().map(|w| micros(w.after_idle)).collect();
                let back: Vec<f64> = v.iter().map(|w| micros(w.back)).collect();
                eprintln!(
                    "    {:<40} median {:.0} min {:.0} max {:.0} µs ({} samples); \
                     the writer right after: median {:.0} µs",
                    format!("wake-up after {} ms idle", WAKE_IDLE.as_millis()),
                    median(&us),
                    us.iter().copied().fold(f64::INFINITY, f64::min),
                    us.iter().copied().fold(0.0, f64::max),
                    us.len(),
                    median(&back),
                );
                self.samples_us.extend(us);
                self.back_us.extend(back);
                self.runs += 1;
            }
            Err(e) => {
                eprintln!("    wake-up measurement: FAILED: {e:#}");
                self.failures.push(format!("{e:#}"));
            }
        }
    }
}

/// Builds the overlay cluster(s) (the last one from the `baseline` binaries, if any), the
/// VXLAN bed and the TUN→TUN forwarder bed.
fn build(bins: &Binaries, baseline: Option<&Binaries>, args: &Args) -> anyhow::Result<Bed> {
    let logs = LogDir(std::env::temp_dir().join(format!(
        "overlay-bench-{}",
        overlay_testbed::unique_prefix("b")
    )));
    std::fs::create_dir_all(&logs.0)?;
    if let Ok(v) = std::env::var(DISABLE_ENV) {
        eprintln!("    note: {DISABLE_ENV}={v:?} in the environment is ignored; use --ablation");
    }
    step("kernel VXLAN bed: 2 nodes on an underlay bridge, vx0 + bridge + a pod per node");
    let vxlan = VxlanNet::new(&overlay_testbed::unique_prefix("bvx"), 2)?;
    step(&format!(
        "TUN→TUN forwarder bed: 2 nodes, tp0 (vnet header, TSO) + bridge + a pod per node, \
         MTU {}, forwarder threads in this process",
        vxlan.mtu()
    ));
    let tunpipe = TunPipeNet::new(&overlay_testbed::unique_prefix("btp"), vxlan.mtu())?;
    let mut bed = Bed {
        clusters: Vec::new(),
        vxlan,
        tunpipe,
        logs,
    };
    // Plain, sealed (index SEALED), then the ablation clusters (from FIRST_ABLATION).
    let mut variants: Vec<(Option<&'static str>, bool)> = vec![(None, false), (None, true)];
    if args.ablation {
        variants.extend(TECHNIQUES.iter().map(|t| (Some(*t), false)));
    }
    for (disabled, encrypt) in variants {
        interrupt::check()?;
        step(&match (disabled, encrypt) {
            (None, false) => {
                "overlay cluster: 2 nodes, an agent each, a pod per node (CNI)".to_owned()
            }
            (None, true) => {
                "overlay cluster with --secret-file and --encrypt (sealed data path)".to_owned()
            }
            (Some(t), _) => format!("overlay cluster with {DISABLE_ENV}={t}"),
        });
        bed.clusters.push(overlay(bins, disabled, encrypt)?);
    }
    if let (Some(b), Some(dir)) = (baseline, &args.baseline) {
        interrupt::check()?;
        step(&format!(
            "overlay cluster running the baseline build in {}",
            dir.display()
        ));
        bed.clusters.push(overlay(b, None, false)?);
    }
    Ok(bed)
}

/// A two-node overlay cluster with a pod per node, its agents started with
/// `OVERLAY_DATAPATH_DISABLE=<disabled>` (or without the variable), and with a cluster
/// secret and `--encrypt` when `encrypt`.
fn overlay(
    bins: &Binaries,
    disabled: Option<&'static str>,
    encrypt: bool,
) -> anyhow::Result<Cluster> {
    let mut c = Cluster::new(&overlay_testbed::unique_prefix("bov"), 2, bins.clone())?;
    if encrypt {
        use std::os::unix::fs::PermissionsExt;
        let path = c.workdir.join("cluster.secret");
        std::fs::write(&path, "benchmark-cluster-secret-0123456789\n")?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        c.agent_args.extend([
            "--secret-file".to_owned(),
            path.to_string_lossy().into_owned(),
            "--encrypt".to_owned(),
        ]);
    }
    c.agent_env
        .push((DISABLE_ENV.to_owned(), disabled.map(str::to_owned)));
    // Tunnel against tunnel: the VXLAN bed has no NAT table either, so the agents do not
    // install their pod-egress masquerade (it turns on connection tracking for every packet).
    c.agent_args
        .extend(["--masquerade".to_owned(), "false".to_owned()]);
    c.start_all()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        interrupt::check()?;
        match c.wait_converged(Duration::from_millis(500)) {
            Ok(_) => break,
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("agent logs:\n{}", tail(&c.all_logs(), 40))));
            }
            Err(_) => {}
        }
    }
    for pid in agent_pids(&c) {
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let has = |needle: &[u8]| env.split(|&b| b == 0).any(|var| var == needle);
        let ok = match disabled {
            Some(t) => has(format!("{DISABLE_ENV}={t}").as_bytes()),
            None => !env
                .split(|&b| b == 0)
                .any(|var| var.starts_with(format!("{DISABLE_ENV}=").as_bytes())),
        };
        if !ok {
            bail!("agent {pid} did not get the intended {DISABLE_ENV} ({disabled:?})");
        }
    }
    for node in 0..2 {
        c.add_pod(node)?;
    }
    Ok(c)
}

/// The agents' process ids (`ip netns exec` execs the agent, so the child's pid is the
/// agent's; checked by its name, with the namespace's process list as the fallback).
fn agent_pids(c: &Cluster) -> Vec<u32> {
    let is_agent = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| comm.trim() == "overlay-agent")
    };
    let mut pids = Vec::new();
    for (i, agent) in c.agents.iter().enumerate() {
        match agent.as_ref().map(|p| p.pid()) {
            Some(pid) if is_agent(pid) => pids.push(pid),
            _ => pids.extend(
                c.node(i)
                    .pids()
                    .into_iter()
                    .filter_map(|p| u32::try_from(p).ok())
                    .filter(|&p| is_agent(p)),
            ),
        }
    }
    pids
}

/// One measurement of one path: iperf3 with one stream, with four, then ping.
fn measure(bed: &Bed, s: &mut Series, secs: u32) -> anyhow::Result<()> {
    let e = bed.ends(s.kind);
    let log = bed.logs.0.join(format!("iperf3-{}.log", s.kind_tag()));
    let sampler = RssSampler::start(e.agents.clone());
    let one = iperf_once(&e, secs, 1, &log);
    let four = one.is_ok().then(|| iperf_once(&e, secs, 4, &log));
    let rss = sampler.stop();
    let one = one.context("one stream")?;
    let four = four.context("skipped")?.context("four streams")?;
    interrupt::check()?;
    let rtt = iperf::rtt(e.client, e.dst, PINGS, PING_INTERVAL).context("ping")?;
    s.one.push(one.gbit());
    s.four.push(four.gbit());
    s.rtt_avg.push(rtt.avg_us);
    s.rtt_min.push(rtt.min_us);
    s.lost_pings += rtt.sent - rtt.received;
    s.rss_kib = s.rss_kib.max(rss);
    progress(s, &one, &four, &rtt, rss);
    Ok(())
}

impl Series {
    /// A file-name-safe tag for this series.
    fn kind_tag(&self) -> String {
        match (self.kind, self.disabled) {
            (Kind::Overlay(SEALED), None) => "overlay-encrypt".to_owned(),
            (Kind::Overlay(_), None) => "overlay".to_owned(),
            (Kind::Overlay(_), Some(t)) => format!("overlay-no-{t}"),
            (Kind::Vxlan, _) => "vxlan".to_owned(),
            (Kind::TunPipe, _) => "tunpipe".to_owned(),
            (Kind::Underlay, _) => "underlay".to_owned(),
        }
    }
}

/// Records a failed measurement and says why on stderr (with the agents' last log lines for
/// an overlay path); the other runs and paths go on.
fn failed(bed: &Bed, s: &mut Series, e: anyhow::Error) {
    eprintln!("    {}: FAILED: {e:#}", s.label);
    if let Kind::Overlay(k) = s.kind {
        let c = &bed.clusters[k];
        for i in 0..c.agents.len() {
            eprintln!(
                "    --- node{i} agent log, last lines ---\n{}",
                tail(&c.log(i), 15)
            );
        }
    }
    s.failures.push(format!("{e:#}"));
}

fn iperf_once(e: &Ends<'_>, secs: u32, streams: u32, log: &Path) -> anyhow::Result<Throughput> {
    interrupt::check()?;
    let server = IperfServer::start(e.server, iperf::PORT, log)?;
    let result = iperf::throughput(e.client, e.dst, iperf::PORT, secs, streams);
    drop(server);
    result
}

fn progress(s: &Series, one: &Throughput, four: &Throughput, rtt: &Rtt, rss_kib: u64) {
    let retr = |t: &Throughput| t.retransmits.map_or("-".to_owned(), |r| r.to_string());
    let mut line = format!(
        "    {:<40} 1 stream {:>6.2} Gbit/s (retr {}), 4 streams {:>6.2} Gbit/s (retr {}), \
         ping avg {:.0} min {:.0} µs",
        s.label,
        one.gbit(),
        retr(one),
        four.gbit(),
        retr(four),
        rtt.avg_us,
        rtt.min_us
    );
    if rtt.received < rtt.sent {
        line.push_str(&format!(
            " ({} of {} lost)",
            rtt.sent - rtt.received,
            rtt.sent
        ));
    }
    if rss_kib > 0 {
        line.push_str(&format!(", agent RSS ≤ {:.1} MiB", mib(rss_kib)));
    }
    eprintln!("{line}");
}

/// Samples the largest VmRSS among some processes on a thread until stopped.
#[derive(Debug)]
struct RssSampler {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<u64>>,
}

impl RssSampler {
    fn start(pids: Vec<u32>) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        if pids.is_empty() {
            return RssSampler { stop, handle: None };
        }
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut max = 0;
            loop {
                for &pid in &pids {
                    max = max.max(status_kib(pid, "VmRSS").unwrap_or(0));
                }
                if flag.load(Ordering::Relaxed) {
                    return max;
                }
                std::thread::sleep(RSS_EVERY);
            }
        });
        RssSampler {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops sampling; the largest VmRSS seen, KiB (0 without processes).
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().and_then(|h| h.join().ok()).unwrap_or(0)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A `kB` field of `/proc/<pid>/status` (VmRSS, VmHWM).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn step(what: &str) {
    eprintln!("==> {what}");
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Median of some values (the mean of the middle two for an even count).
fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn spread(values: &[f64]) -> String {
    if values.is_empty() {
        return "failed".to_owned();
    }
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{:.2} ({min:.2}–{max:.2})", median(values))
}

/// Microseconds, or a dash when there is no value.
fn us(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.0}")
    } else {
        "–".to_owned()
    }
}

fn ratio(a: f64, b: f64) -> String {
    if !(a / b).is_finite() {
        return "–".to_owned();
    }
    format!("{:.2}×", a / b)
}

fn signed_us(v: f64) -> String {
    if !v.is_finite() {
        return "–".to_owned();
    }
    let r = v.round();
    if r > 0.0 {
        format!("+{r:.0}")
    } else if r < 0.0 {
        format!("−{:.0}", -r)
    } else {
        "0".to_owned()
    }
}

/// The Markdown report.
fn report(args: &Args, series: &[Series], wake: &Wake, forwarded: &[DirectionStats; 2]) -> String {
    use std::fmt::Write;
    let find = |k: Kind| series.iter().find(|s| s.kind == k);
    let (Some(vx), Some(ours)) = (find(Kind::Vxlan), find(Kind::Overlay(0))) else {
        return "no results\n".to_owned();
    };
    let (vx1, vx4, vx_rtt) = (median(&vx.one), median(&vx.four), median(&vx.rtt_avg));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nTwo nodes (network namespaces, veth → bridge → veth underlay), one pod per node. \
         iperf3 from the pod on node 0 to the pod on node 1, receiver-side Gbit/s, {} s per run; \
         ping {PINGS} × {PING_INTERVAL} s (56-byte payload). Median (min–max) of {} runs, \
         the paths interleaved in each run. The agents run with `--masquerade false` (no NAT \
         table, like the VXLAN bed). The TUN→TUN forwarder row is the VXLAN bed's topology with \
         each node's `vx0` replaced by a TUN device (IFF_VNET_HDR, checksum/TSO4/TSO6/ECN \
         offloads, txqueuelen {}, the VXLAN MTU) and one thread per direction in the bench \
         process copying each read, virtio header and all, into the other node's TUN \
         (non-blocking fds, poll(2) when idle, as in the agent; no UDP).\n",
        args.secs,
        args.runs,
        overlay_testbed::tunpipe::TXQUEUELEN
    );
    let _ = writeln!(
        out,
        "| path | MTU | 1 stream, Gbit/s | 4 streams, Gbit/s | vs kernel VXLAN (1 / 4 streams) | ping avg / min, µs | RTT − VXLAN RTT, µs |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    for s in series.iter().filter(|s| s.disabled.is_none()) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} / {} | {} / {} | {} |",
            s.label,
            s.mtu,
            spread(&s.one),
            spread(&s.four),
            ratio(median(&s.one), vx1),
            ratio(median(&s.four), vx4),
            us(median(&s.rtt_avg)),
            us(median(&s.rtt_min)),
            signed_us(median(&s.rtt_avg) - vx_rtt),
        );
    }
    if let Some(base) = args
        .baseline
        .as_deref()
        .and_then(|dir| series.iter().find(|s| s.label == baseline_label(dir)))
    {
        let _ = writeln!(
            out,
            "\nThis build against the baseline build, same runs: 1 stream {}, 4 streams {}, \
             ping avg {} µs.",
            ratio(median(&ours.one), median(&base.one)),
            ratio(median(&ours.four), median(&base.four)),
            signed_us(median(&ours.rtt_avg) - median(&base.rtt_avg)),
        );
    }
    let ablation: Vec<&Series> = series.iter().filter(|s| s.disabled.is_some()).collect();
    if !ablation.is_empty() {
        let (o1, o4) = (median(&ours.one), median(&ours.four));
        let _ = writeln!(
            out,
            "\nAblation: the overlay with one technique switched off ({DISABLE_ENV}=<technique> \
             for both agents), same runs.\n"
        );
        let _ = writeln!(
            out,
            "| switched off | 1 stream, Gbit/s | 4 streams, Gbit/s | vs all on (1 / 4) | vs kernel VXLAN (1 / 4) | ping avg / min, µs | RTT − VXLAN RTT, µs | agent max RSS, MiB |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for s in std::iter::once(ours).chain(ablation.iter().copied()) {
            let (m1, m4) = (median(&s.one), median(&s.four));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} / {} | {} / {} | {} / {} | {} | {:.1} |",
                s.disabled.unwrap_or("nothing (all on)"),
                spread(&s.one),
                spread(&s.four),
                ratio(m1, o1),
                ratio(m4, o4),
                ratio(m1, vx1),
                ratio(m4, vx4),
                us(median(&s.rtt_avg)),
                us(median(&s.rtt_min)),
                signed_us(median(&s.rtt_avg) - vx_rtt),
                mib(s.rss_kib),
            );
        }
    }
    if let Some(sentence) = wake_sentence(wake) {
        let _ = writeln!(out, "\n{sentence}");
    }
    let _ = write!(out, "\n{}", forwarder_note(forwarded));
    let _ = writeln!(
        out,
        "\nAgent memory under load: max VmRSS {:.1} MiB (both agents, sampled every {} ms \
         during the iperf3 runs, all runs); lifetime peak VmHWM {:.1} MiB.",
        mib(ours.rss_kib),
        RSS_EVERY.as_millis(),
        mib(ours.hwm_kib)
    );
    let lost: Vec<String> = series
        .iter()
        .filter(|s| s.lost_pings > 0)
        .map(|s| format!("{} lost {} pings", s.label, s.lost_pings))
        .collect();
    if !lost.is_empty() {
        let _ = writeln!(out, "\nPing loss: {}.", lost.join("; "));
    }
    if !wake.failures.is_empty() {
        let _ = writeln!(
            out,
            "\n**The wake-up measurement failed in {} of {} runs** (left out); first: {}",
            wake.failures.len(),
            args.runs,
            wake.failures[0].replace('\n', " ")
        );
    }
    for s in series.iter().filter(|s| !s.failures.is_empty()) {
        let _ = writeln!(
            out,
            "\n**{}: {} of {} runs failed** (left out of the medians); first: {}",
            s.label,
            s.failures.len(),
            args.runs,
            s.failures[0].replace('\n', " ")
        );
    }
    let command = std::env::var("BENCH_INVOKED_AS")
        .unwrap_or_else(|_| std::env::args().collect::<Vec<_>>().join(" "));
    let _ = writeln!(out, "\nCommand: `{command}`  ");
    let _ = writeln!(out, "Machine: {}", machine());
    out
}

/// What the TUN→TUN forwarder did over the whole run (reads, their mean size, errors).
fn forwarder_note(s: &[DirectionStats; 2]) -> String {
    let reads = s[0].packets + s[1].packets;
    let mean_kib = (s[0].bytes + s[1].bytes) as f64 / reads.max(1) as f64 / 1024.0;
    let big = s[0].bytes as f64 / s[0].packets.max(1) as f64 / 1024.0;
    let mut note = format!(
        "TUN→TUN forwarder over the whole run: {reads} reads forwarded, {mean_kib:.1} KiB each \
         on average (node 0 → node 1, the data direction: {big:.1} KiB), {} errors",
        s[0].errors + s[1].errors
    );
    if let Some(e) = s.iter().find(|d| d.errors > 0) {
        note.push_str(&format!(
            " (last: {})",
            std::io::Error::from_raw_os_error(e.last_errno)
        ));
    }
    note.push_str(".\n");
    note
}

/// The wake-up result as a sentence (none without samples).
fn wake_sentence(wake: &Wake) -> Option<String> {
    if wake.samples_us.is_empty() {
        return None;
    }
    let med = median(&wake.samples_us).round();
    let back = median(&wake.back_us).round();
    let min = wake
        .samples_us
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min);
    Some(format!(
        "Wake-up after {} ms of idle (the ping interval): a thread blocked in recv(2) runs {} µs \
         (median; min {}) after the write; the writer, blocked in its own recv(2) right after \
         writing (as ping is), runs {} µs (median) after the woken thread answers ({} samples \
         over {} run(s): UDP sockets over the loopback of a namespace, timed from just before \
         each send to the return of the recv).",
        WAKE_IDLE.as_millis(),
        us(med),
        us(min),
        us(back),
        wake.samples_us.len(),
        wake.runs,
    ))
}

/// Revision, kernel, CPUs and iperf3 version, for the record.
fn machine() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let iperf = std::process::Command::new("iperf3")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(1)
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let rev = std::env::var("BENCH_REV").unwrap_or_else(|_| "unknown".to_owned());
    format!("rev {rev}, Linux {kernel}, {cpus} × {cpu}, iperf3 {iperf}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> anyhow::Result<Option<Args>> {
        parse_args(s.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn arguments() {
        let d = parse("").expect("ok").expect("args");
        assert_eq!((d.runs, d.secs, d.ablation), (5, 5, false));
        let a = parse("--runs 1 --secs=2 --ablation")
            .expect("ok")
            .expect("args");
        assert_eq!((a.runs, a.secs, a.ablation), (1, 2, true));
        let b = parse("--baseline /tmp/old").expect("ok").expect("args");
        assert_eq!(b.baseline.as_deref(), Some(Path::new("/tmp/old")));
        assert!(parse("--baseline").is_err());
        assert!(parse("--help").expect("ok").is_none());
        assert!(parse("--runs").is_err());
        assert!(parse("--runs 0").is_err());
        assert!(parse("--bogus").is_err());
    }

    #[test]
    fn medians_and_formatting() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(spread(&[1.0, 3.0, 2.0]), "2.00 (1.00–3.00)");
        assert_eq!(signed_us(12.4), "+12");
        assert_eq!(signed_us(-3.6), "−4");
        assert_eq!(ratio(1.0, 4.0), "0.25×");
    }

    fn series(kind: Kind, label: &str, one: f64, four: f64, rtt: f64) -> Series {
        let mut s = Series::new(label, kind, None, 1450);
        s.one = vec![one];
        s.four = vec![four];
        s.rtt_avg = vec![rtt];
        s.rtt_min = vec![rtt - 10.0];
        s
    }

    #[test]
    fn report_has_the_forwarder_row_and_the_wake_up_figures() {
        let args = Args {
            runs: 1,
            secs: 3,
            ablation: false,
            baseline: None,
        };
        let all = [
            series(Kind::Overlay(0), "overlay pod→pod", 8.0, 9.0, 300.0),
            series(Kind::Vxlan, "kernel VXLAN pod→pod", 20.0, 24.0, 100.0),
            series(Kind::TunPipe, TUNPIPE_LABEL, 16.0, 12.0, 180.0),
        ];
        let wake = Wake {
            samples_us: vec![30.0, 42.0, 40.0],
            back_us: vec![7.0, 9.0, 8.0],
            runs: 1,
            failures: Vec::new(),
        };
        let forwarded = [
            DirectionStats {
                packets: 10,
                bytes: 640 << 10,
                errors: 0,
                last_errno: 0,
            },
            DirectionStats {
                packets: 30,
                bytes: 0,
                errors: 2,
                last_errno: libc::EINVAL,
            },
        ];
        let r = report(&args, &all, &wake, &forwarded);
        assert!(
            r.contains(&format!(
                "| {TUNPIPE_LABEL} | 1450 | 16.00 (16.00–16.00) | 12.00 (12.00–12.00) | \
                 0.80× / 0.50× | 180 / 170 | +80 |"
            )),
            "{r}"
        );
        assert!(
            r.contains(
                "Wake-up after 50 ms of idle (the ping interval): a thread blocked in recv(2) \
                 runs 40 µs (median; min 30) after the write"
            ),
            "{r}"
        );
        assert!(r.contains("answers (3 samples over 1 run(s)"), "{r}");
        assert!(
            r.contains("runs 8 µs (median) after the woken thread"),
            "{r}"
        );
        for claim in ["ceiling", "floor", "the most any", "any TUN", "can do"] {
            assert!(
                !r.contains(claim),
                "the report states what it measured: {claim:?} in {r}"
            );
        }
        assert!(
            r.contains(
                "40 reads forwarded, 16.0 KiB each on average (node 0 → node 1, the data \
                 direction: 64.0 KiB), 2 errors (last: Invalid argument"
            ),
            "{r}"
        );
        let none = report(&args, &all, &Wake::default(), &Default::default());
        assert!(!none.contains("Wake-up after"), "{none}");
    }

    #[test]
    fn report_compares_with_the_baseline_build() {
        let dir = Path::new("/tmp/base");
        let args = Args {
            runs: 1,
            secs: 3,
            ablation: false,
            baseline: Some(dir.to_owned()),
        };
        let all = [
            series(Kind::Overlay(0), "overlay pod→pod", 9.0, 10.0, 300.0),
            series(Kind::Vxlan, "kernel VXLAN pod→pod", 20.0, 24.0, 100.0),
            series(Kind::Overlay(2), &baseline_label(dir), 10.0, 10.0, 290.0),
        ];
        let r = report(&args, &all, &Wake::default(), &Default::default());
        assert!(
            r.contains("| overlay pod→pod, baseline build (/tmp/base) | 1450 | 10.00"),
            "{r}"
        );
        assert!(
            r.contains(
                "This build against the baseline build, same runs: 1 stream 0.90×, \
                 4 streams 1.00×, ping avg +10 µs."
            ),
            "{r}"
        );
        let without = Args {
            baseline: None,
            ..args
        };
        assert!(
            !report(&without, &all, &Wake::default(), &Default::default())
                .contains("baseline build, same runs")
        );
    }

    #[test]
    fn reads_status_fields() {
        let me = std::process::id();
        assert!(status_kib(me, "VmRSS").is_some_and(|k| k > 0));
        assert!(status_kib(me, "NoSuchField").is_none());
    }
}
