//! The `overlay-agent` command line: `run` (the daemon), `status` (for a person) and
//! `trace` (life of a packet, see [`crate::trace`]).

use crate::config::{Config, RunArgs};
use crate::status::{self, Status};
use clap::{Args, Parser, Subcommand};
use overlay_proto::api::ApiError;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

/// Exit code for an invalid configuration.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code for a failure to start or run, or an unreachable agent.
pub const EXIT_FAILURE: u8 = 1;

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
    /// Print the state of the local agent
    Status(StatusArgs),
    /// Send a probe through the overlay and print every hop it takes (life of a packet)
    Trace(crate::trace::TraceArgs),
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// The agent's API address
    #[arg(
        long,
        env = "OVERLAY_API",
        default_value = "127.0.0.1:6784",
        value_name = "IP:PORT"
    )]
    api: String,
    /// Print the JSON the API answers instead of the text view
    #[arg(long)]
    json: bool,
}

/// Entry point of the `overlay-agent` binary.
pub fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::Run(args) => run(args),
        Cmd::Status(args) => match fetch_status(&args) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("overlay-agent: {e}");
                ExitCode::from(EXIT_FAILURE)
            }
        },
        Cmd::Trace(args) => crate::trace::cli::command(&args),
    }
}

fn run(args: Box<RunArgs>) -> ExitCode {
    let config = match Config::load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("overlay-agent: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_tracing();
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

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// The status text (or JSON) of the agent at `args.api`, or a one-line error.
fn fetch_status(args: &StatusArgs) -> Result<String, String> {
    let url = format!("http://{}/status", args.api);
    let unreachable = |e: &dyn std::error::Error| {
        let mut cause = e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        format!(
            "cannot reach the agent at {} (is it running? see --api): {cause}",
            args.api
        )
    };
    let response = match ureq::get(&url).timeout(Duration::from_secs(5)).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(code, r)) => {
            let detail = r
                .into_json::<ApiError>()
                .map_or_else(|_| String::new(), |e| format!(": {}", e.error));
            return Err(format!("the agent at {} answered {code}{detail}", args.api));
        }
        Err(ureq::Error::Transport(t)) => return Err(unreachable(&t)),
    };
    let body = response.into_string().map_err(|e| unreachable(&e))?;
    if args.json {
        return Ok(format!("{}\n", body.trim_end()));
    }
    let status: Status = serde_json::from_str(&body).map_err(|e| {
        format!(
            "the agent at {} answered an unexpected status: {e}",
            args.api
        )
    })?;
    Ok(status::render(&status))
}
