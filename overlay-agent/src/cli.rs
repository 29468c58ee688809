//! The `overlay-agent` command line: `run` (the daemon), `status` (for a person),
//! `connect`/`forget` (dial targets of a running agent), `reset` (remove what the agent
//! keeps across restarts, see [`crate::reset`]) and `trace` (life of a packet, see
//! [`crate::trace`]).

use crate::config::{Config, LogFormat, RunArgs};
use clap::{Args, Parser, Subcommand, ValueEnum};
use overlay_proto::api::{ApiError, TargetRequest, TargetResponse};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

/// Exit code for an invalid configuration.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code for a failure to start or run, or an unreachable agent.
pub const EXIT_FAILURE: u8 = 1;
/// Longest wait for the local agent's API.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Parser)]
#[command(
    name = "overlay-agent",
    version,
    about = "A Weave-style overlay network agent: run it on every node, ask it for status"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the agent (control plane, data path, local API)
    Run(Box<RunArgs>),
    /// Print the state of the local agent, or one view of it
    Status(StatusArgs),
    /// Make the local agent dial a peer too (until forgotten or restarted)
    Connect(TargetArgs),
    /// Make the local agent stop dialing an address it was given (a peer that gossip says is
    /// there is still dialed; established connections stay)
    Forget(TargetArgs),
    /// Remove the TUN device and state an agent keeps across restarts (run it with the agent stopped)
    Reset(crate::reset::ResetArgs),
    /// Send a probe through the overlay and print every hop it takes (life of a packet)
    Trace(crate::trace::TraceArgs),
}

/// Where the local agent's API is.
#[derive(Debug, Args)]
pub(crate) struct ApiArgs {
    /// The agent's API address
    #[arg(
        long,
        env = "OVERLAY_API",
        default_value = "127.0.0.1:6784",
        value_name = "IP:PORT"
    )]
    pub(crate) api: String,
}

/// A part of the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum View {
    /// Every other peer: state, next hop, hops, traffic
    Peers,
    /// Control connections and dial targets: state, path, MTU, RTT, last error, next retry
    Connections,
    /// Where packets for each block go: next hop and its underlay address
    Routes,
    /// The cluster range, block owners, this node's pod addresses
    Ipam,
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// Show only this part (default: the summary and the peers)
    #[arg(value_enum)]
    view: Option<View>,
    #[command(flatten)]
    api: ApiArgs,
    /// Print the JSON the API answers instead of the text view
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct TargetArgs {
    /// The peer's address, HOST[:PORT] (port default 6783)
    #[arg(value_name = "HOST[:PORT]")]
    address: String,
    #[command(flatten)]
    api: ApiArgs,
}

/// Entry point of the `overlay-agent` binary.
pub fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::Run(args) => run(args),
        Cmd::Status(args) => print_outcome(fetch_status(&args)),
        Cmd::Connect(args) => {
            print_outcome(post_target(&args, "connect").map(|a| format!("dialing {a}\n")))
        }
        Cmd::Forget(args) => {
            print_outcome(post_target(&args, "forget").map(|a| format!("no longer dialing {a}\n")))
        }
        Cmd::Reset(args) => reset(&args),
        Cmd::Trace(args) => crate::trace::cli::command(&args),
    }
}

/// `overlay-agent reset`: what it did on stdout, the error on stderr.
fn reset(args: &crate::reset::ResetArgs) -> ExitCode {
    match crate::reset::reset(args, &mut |line| println!("{line}")) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("overlay-agent: reset: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn print_outcome(outcome: Result<String, RequestError>) -> ExitCode {
    match outcome {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("overlay-agent: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn run(args: Box<RunArgs>) -> ExitCode {
    if args.check_config {
        return match Config::check(&args) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("overlay-agent: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        };
    }
    let config = match Config::load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("overlay-agent: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_tracing(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("overlay-agent: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let result = runtime.block_on(crate::run::run(config));
    runtime.shutdown_timeout(Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("overlay-agent: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), as text or JSON lines.
fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_current_span(false).init(),
    }
}

/// Why a request to the local agent's API gave nothing to print; each message is one line.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    /// the agent answered an error status, with the API's error message when it sent one
    #[error("the agent at {api} answered {code}{}", colon_then(detail.as_deref()))]
    Refused {
        /// The API address asked.
        api: String,
        /// The HTTP status.
        code: u16,
        /// The `error` of the API's JSON body.
        detail: Option<String>,
    },
    /// no connection, or the answer broke off
    #[error("cannot reach the agent at {api} (is it running? see --api): {cause}")]
    Unreachable {
        /// The API address asked.
        api: String,
        /// The innermost cause's message (e.g. "Connection refused (os error 111)").
        cause: String,
    },
    /// an answer that is not the JSON the request expects
    #[error("the agent at {api} answered unexpectedly: {error}")]
    Unexpected {
        /// The API address asked.
        api: String,
        /// The decoding error.
        error: std::io::Error,
    },
    /// a `/trace` answer that is not a trace
    #[error("the agent at {api} answered an unexpected trace: {error}")]
    UnexpectedTrace {
        /// The API address asked.
        api: String,
        /// The decoding error.
        error: serde_json::Error,
    },
}

/// `: detail`, or nothing.
fn colon_then(detail: Option<&str>) -> String {
    detail.map(|d| format!(": {d}")).unwrap_or_default()
}

/// The status text (or JSON) of the agent at `args.api`, or a one-line error.
fn fetch_status(args: &StatusArgs) -> Result<String, RequestError> {
    let path = match args.view {
        None => "status",
        Some(View::Peers) => "status/peers",
        Some(View::Connections) => "status/connections",
        Some(View::Routes) => "status/routes",
        Some(View::Ipam) => "status/ipam",
    };
    let format = if args.json { "json" } else { "text" };
    let url = format!("http://{}/{path}?format={format}", args.api.api);
    let body = answered(&args.api, ureq::get(&url).timeout(REQUEST_TIMEOUT).call())?
        .into_string()
        .map_err(|e| unreachable(&args.api, &e))?;
    Ok(format!("{}\n", body.trim_end()))
}

/// Posts `address` to `/{action}`; the address the agent resolved it to.
fn post_target(args: &TargetArgs, action: &str) -> Result<std::net::SocketAddr, RequestError> {
    let url = format!("http://{}/{action}", args.api.api);
    let response = answered(&args.api, {
        ureq::post(&url)
            .timeout(REQUEST_TIMEOUT)
            .send_json(TargetRequest {
                address: args.address.clone(),
            })
    })?;
    response
        .into_json::<TargetResponse>()
        .map(|r| r.address)
        .map_err(|error| RequestError::Unexpected {
            api: args.api.api.clone(),
            error,
        })
}

/// The answer of a request, or its error answer or transport failure.
pub(crate) fn answered(
    api: &ApiArgs,
    sent: Result<ureq::Response, ureq::Error>,
) -> Result<ureq::Response, RequestError> {
    match sent {
        Ok(r) => Ok(r),
        Err(ureq::Error::Status(code, r)) => Err(RequestError::Refused {
            api: api.api.clone(),
            code,
            detail: r.into_json::<ApiError>().ok().map(|e| e.error),
        }),
        Err(ureq::Error::Transport(t)) => Err(unreachable(api, &t)),
    }
}

/// "cannot reach the agent" with the innermost cause of `e`.
pub(crate) fn unreachable(api: &ApiArgs, e: &dyn std::error::Error) -> RequestError {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    RequestError::Unreachable {
        api: api.api.clone(),
        cause: cause.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_errors_are_one_line_naming_the_agent() {
        let api = ApiArgs {
            api: "127.0.0.1:6784".to_owned(),
        };
        let refused = |detail: Option<&str>| RequestError::Refused {
            api: api.api.clone(),
            code: 400,
            detail: detail.map(str::to_owned),
        };
        assert_eq!(
            refused(None).to_string(),
            "the agent at 127.0.0.1:6784 answered 400"
        );
        assert_eq!(
            refused(Some("bad address")).to_string(),
            "the agent at 127.0.0.1:6784 answered 400: bad address"
        );
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let outer = std::io::Error::other(inner);
        assert_eq!(
            unreachable(&api, &outer).to_string(),
            "cannot reach the agent at 127.0.0.1:6784 (is it running? see --api): refused"
        );
    }
}
