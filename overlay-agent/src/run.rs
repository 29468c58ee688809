//! `overlay-agent run`: starts the pieces in order, runs until SIGTERM/SIGINT, stops them.
//!
//! Start order: pod egress masquerade ([`crate::egress`], removed last on the way out) →
//! state directory (claim, allocations) → seeds resolved → advertised address →
//! overlay MTU → data path (TUN + UDP) → TUN address and cluster route → TCP listener →
//! metrics → API → node → control-plane driver. Any failure before the driver runs is returned as one error
//! (and the data path, if started, is stopped). On a signal the node leaves the cluster
//! (neighbours are told, queued frames get up to a second), metrics and API stop and the data
//! path shuts down; the whole stop is bounded by [`STOP_DEADLINE`]. The TUN device, its address
//! and the cluster route stay (the device is persistent, see `datapath::tun`), so the next
//! start re-attaches to them and pod connections survive a restart; `overlay-agent reset`
//! removes them for good.

use crate::api::{self, ApiState};
use crate::auth::{Auth, Identity, Secret, SecretSet};
use crate::config::{self, Config, PeerAddr};
use crate::control::keys::DataKeys;
use crate::control::{ControlHandle, Driver, DriverConfig, Readiness, SystemHost};
use crate::datapath::{Datapath, DatapathConfig, Disabled, Encryption};
use crate::egress;
use crate::ipam_store::IpamStore;
use crate::kubernetes::{self, Session};
use crate::metrics::{MetricsServer, MetricsState};
use crate::netlink;
use crate::state::StateDir;
use anyhow::{anyhow, Context};
use overlay_proto::forwarding::ForwardingTable;
use overlay_proto::ipam::node_address;
use overlay_proto::node::{Node, NodeConfig, Timing};
use overlay_proto::topology::Claim;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

/// Longest time from the stop signal to the process exit.
pub const STOP_DEADLINE: Duration = Duration::from_millis(4500);
/// Underlay MTU assumed when the advertised address's interface cannot be found.
const FALLBACK_UNDERLAY_MTU: u32 = 1500;

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let stop = async move {
        tokio::select! {
            _ = sigterm.recv() => info!("SIGTERM: stopping"),
            _ = tokio::signal::ctrl_c() => info!("SIGINT: stopping"),
        }
        std::thread::spawn(|| {
            std::thread::sleep(STOP_DEADLINE);
            warn!("stopping took longer than {STOP_DEADLINE:?}: exiting now");
            std::process::exit(0);
        });
    };
    run_until(config, stop).await
}

/// Runs the agent until `stop` completes.
pub async fn run_until(
    config: Config,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Pod egress needs only the cluster range; it goes first and is removed however the
    // rest ends (a crash leaves it, and the next start replaces it).
    let egress = egress::start(config.cluster, config.masquerade).await?;
    let result = run_overlay(config, stop).await;
    egress::stop(egress).await;
    result
}

/// Everything of [`run_until`] but pod egress.
async fn run_overlay(
    config: Config,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    info!(name = %config.name, "starting");
    let state = StateDir::open(&config.state_dir)?;
    let claim = load_claim(&state, &config)?;
    // --kubernetes: the Nodes give seeds, the advertised IP and the block (podCIDR wins).
    let k8s = kubernetes::connect(&config).await?;
    let claim = k8s.as_ref().and_then(Session::claim).or(claim);
    let ipam = Arc::new(IpamStore::open(&state)?);
    let auth = load_auth(&config, &state)?;
    let instance: u64 = rand::random();

    let (mut seeds, unresolved) = resolve_seeds(&config.peers).await;
    seeds.extend(k8s.iter().flat_map(Session::seeds));
    let advertise_ip = match config.advertise.ip.or(k8s.as_ref().and_then(Session::advertise_ip)) {
        Some(ip) => ip,
        None => config::default_advertise_ip(seeds.first().copied()).ok_or_else(|| {
            anyhow!("cannot find an address to advertise (no interface with an IPv4 address is up); set --advertise")
        })?,
    };
    let advertise = SocketAddr::new(advertise_ip, config.advertise.port);
    let mtu = overlay_mtu(advertise_ip, config.encrypt).await;
    info!(%advertise, mtu, seeds = seeds.len(), "addresses");
    // --encrypt: the data keys, published by the control driver to the packet threads.
    let encryption = config.encrypt.then(|| {
        let e = Encryption::new(config.name.id(), overlay_proto::seal::Suite::detect());
        info!(
            suite = e.suite.name(),
            "data path sealed (--encrypt): per-peer-pair keys from the peers' authenticated identity keys"
        );
        e
    });
    warn_if_forwarding_is_off();

    let table = ForwardingTable::empty(config.name.id(), config.cluster, config.subnet_prefix);
    let dp_config = DatapathConfig {
        iface: config.iface.clone(),
        listen: config.listen,
        mtu,
        disabled: Disabled::from_env()?,
    };
    let dp_encryption = encryption.clone();
    let datapath =
        tokio::task::spawn_blocking(move || Datapath::start_with(dp_config, table, dp_encryption))
            .await
            .context("data path start panicked")?
            .with_context(|| {
                format!(
                    "cannot start the data path (TUN {}, UDP {})",
                    config.iface, config.listen
                )
            })?;
    let tracer = datapath.take_trace_port().map(crate::trace::Tracer::start);
    let host = Arc::new(SystemHost::new(
        datapath,
        config.iface.clone(),
        mtu,
        config.cluster,
    ));
    let drop_log = crate::drop_log::spawn(host.clone());
    let result = serve(
        &config,
        &host,
        Started {
            state,
            claim,
            ipam,
            instance,
            seeds,
            unresolved,
            advertise,
            mtu,
            k8s,
            auth,
            tracer,
            encryption,
        },
        stop,
    )
    .await;
    drop_log.abort();
    let stopper = host.clone();
    match tokio::time::timeout(
        Duration::from_secs(2),
        tokio::task::spawn_blocking(move || stopper.shutdown()),
    )
    .await
    {
        Ok(_) => info!("data path stopped"),
        Err(_) => warn!("the data path did not stop within 2 s"),
    }
    result
}

/// What the first start steps produced.
struct Started {
    state: StateDir,
    claim: Option<Claim>,
    ipam: Arc<IpamStore>,
    instance: u64,
    seeds: Vec<SocketAddr>,
    unresolved: Vec<PeerAddr>,
    advertise: SocketAddr,
    mtu: u32,
    k8s: Option<Session>,
    auth: Option<Auth>,
    tracer: Option<crate::trace::Tracer>,
    encryption: Option<Encryption>,
}

/// The steps after the data path started: TUN address, listener, API, node, driver.
async fn serve(
    config: &Config,
    host: &Arc<SystemHost>,
    s: Started,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    netlink::configure_tun(
        &config.iface,
        s.mtu,
        s.claim.map(|c| node_address(c.block)),
        config.cluster,
    )
    .await
    .with_context(|| format!("cannot configure the TUN device {}", config.iface))?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (TCP)", config.listen))?;
    let api_listener = TcpListener::bind(config.api)
        .await
        .with_context(|| format!("cannot serve the API on {}", config.api))?;

    let ready = Readiness::default();
    let (commands_tx, commands) = mpsc::channel(64);
    let control = ControlHandle::new(commands_tx);
    let metrics_state = MetricsState {
        control: control.clone(),
        ipam: s.ipam.clone(),
    };
    let metrics = MetricsServer::start(config.metrics, metrics_state).await?;
    info!(metrics = %config.metrics, "metrics listening");
    let (api_stop, api_stopped) = oneshot::channel::<()>();
    let api_state = ApiState {
        control: control.clone(),
        ipam: s.ipam.clone(),
        ready: ready.clone(),
        cluster: config.cluster,
        mtu: s.mtu,
        trace: s.tracer,
    };
    let api_task = tokio::spawn(api::serve(api_listener, api_state, async {
        let _ = api_stopped.await;
    }));
    info!(api = %config.api, "API listening");
    // Helper tasks that run as long as the control plane; stopped with it.
    let mut helpers = Vec::new();
    if let Some(k8s) = s.k8s {
        helpers.push(k8s.spawn(control.clone(), ready.clone()));
    }

    let node = Node::new(
        NodeConfig {
            name: config.name.clone(),
            instance: s.instance,
            advertise: s.advertise,
            cluster: config.cluster,
            subnet_prefix: config.subnet_prefix,
            seeds: s.seeds,
            claim: s.claim,
            initial_version: unix_millis(),
            timing: Timing {
                reclaim_after: config.reclaim_after,
                ..Timing::default()
            },
            rng_seed: rand::random(),
            view: config.view,
            // Gossiped, so that every peer can derive its data key with this one.
            identity: s.auth.as_ref().map(|a| *a.identity.public()),
        },
        Instant::now(),
    );
    // --encrypt needs --secret-file (checked with the configuration): the keys come from
    // the identity keys of the peers.
    let data_keys = s
        .encryption
        .zip(s.auth.as_ref())
        .map(|(e, auth)| DataKeys::new(e, auth.identity.clone(), s.instance));
    let driver = Driver::new(DriverConfig {
        node,
        host: host.clone(),
        state: s.state,
        ipam: s.ipam,
        ready,
        mtu: s.mtu,
        listener,
        commands,
        auth: s.auth,
        data_keys,
    });
    helpers.extend(retry_unresolved(s.unresolved, control));
    info!(listen = %config.listen, "control plane running");
    let driver_result = tokio::spawn(driver.run(stop)).await;

    for task in &helpers {
        task.abort();
    }

    let _ = api_stop.send(());
    metrics.stop(Duration::from_millis(500)).await;
    if tokio::time::timeout(Duration::from_millis(500), api_task)
        .await
        .is_err()
    {
        warn!("the API did not stop within 500 ms");
    }
    driver_result.map_err(|e| anyhow!("the control plane failed: {e}"))
}

/// The identity and secrets, with `--secret-file`; the file is then re-read every
/// [`crate::auth::RELOAD_INTERVAL`].
fn load_auth(config: &Config, state: &StateDir) -> anyhow::Result<Option<Auth>> {
    let Some(path) = &config.secret_file else {
        return Ok(None);
    };
    let (secrets, warning) = SecretSet::load(path)
        .map_err(|reason| anyhow!("--secret-file {}: {reason}", path.display()))?;
    if let Some(w) = warning {
        warn!("--secret-file: {w}");
    }
    let identity = Identity::load_or_create(state)?;
    info!(
        identity = %identity.public_hex(),
        current = secrets.current.fingerprint(),
        next = secrets.next.as_ref().map(Secret::fingerprint),
        "control connections authenticated with the cluster secret (Noise {})",
        crate::auth::NOISE_PATTERN
    );
    let auth = Auth::new(identity, secrets);
    auth.spawn_reload(path.clone());
    Ok(Some(auth))
}

/// The claim of a previous run, if it fits the configured cluster range and block size.
fn load_claim(state: &StateDir, config: &Config) -> anyhow::Result<Option<Claim>> {
    let Some(claim) = state.load_claim()? else {
        return Ok(None);
    };
    let b = claim.block;
    if b.prefix_len() != config.subnet_prefix || b.trunc() != b || !config.cluster.contains(&b) {
        warn!(
            "ignoring the persisted claim on {b}: not a /{} block of {} (was the cluster range changed?)",
            config.subnet_prefix, config.cluster
        );
        return Ok(None);
    }
    info!(subnet = %b, "asserting the block of the previous run");
    Ok(Some(claim))
}

/// Resolves the seeds; those that do not resolve now are returned apart.
async fn resolve_seeds(peers: &[PeerAddr]) -> (Vec<SocketAddr>, Vec<PeerAddr>) {
    let results = futures::future::join_all(peers.iter().map(config::resolve_peer)).await;
    let mut seeds = Vec::new();
    let mut unresolved = Vec::new();
    for (peer, result) in peers.iter().zip(results) {
        match result {
            Ok(addr) => seeds.push(addr),
            Err(e) => {
                warn!("{e}; will keep trying");
                unresolved.push(peer.clone());
            }
        }
    }
    (seeds, unresolved)
}

/// Keeps resolving seeds that did not resolve at start, and dials them once they do; the
/// task, if any was needed.
fn retry_unresolved(
    mut pending: Vec<PeerAddr>,
    control: ControlHandle,
) -> Option<tokio::task::JoinHandle<()>> {
    if pending.is_empty() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut delay = Duration::from_secs(2);
        while !pending.is_empty() {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(60));
            let mut still = Vec::new();
            for peer in pending {
                match config::resolve_peer(&peer).await {
                    Ok(addr) => {
                        info!(%peer, %addr, "seed resolved");
                        if !control.add_target(addr).await {
                            return;
                        }
                    }
                    Err(_) => still.push(peer),
                }
            }
            pending = still;
        }
    }))
}

/// The overlay MTU from the MTU of the interface holding `ip`; with `encrypt`
/// [`overlay_proto::seal::OVERHEAD`] smaller, so sealed datagrams never need fragmenting.
async fn overlay_mtu(ip: IpAddr, encrypt: bool) -> u32 {
    let underlay = match netlink::underlay_mtu(ip).await {
        Ok(mtu) => mtu,
        Err(e) => {
            warn!("cannot read the MTU of the interface holding {ip} ({e}); assuming {FALLBACK_UNDERLAY_MTU}");
            FALLBACK_UNDERLAY_MTU
        }
    };
    let mtu = netlink::overlay_mtu(underlay);
    if encrypt {
        mtu.saturating_sub(overlay_proto::seal::OVERHEAD as u32)
    } else {
        mtu
    }
}

fn warn_if_forwarding_is_off() {
    if let Ok(v) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward") {
        if v.trim() == "0" {
            warn!("net.ipv4.ip_forward is 0: pod traffic through this node needs it on (the agent does not change sysctls)");
        }
    }
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
