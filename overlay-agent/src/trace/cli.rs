//! `overlay-agent trace <overlay-ip>`: asks the local agent (`POST /trace`) and prints the
//! hops.
//!
//! Exit codes: 0 delivered, 1 the agent cannot be reached or refused, [`EXIT_DROPPED`] the
//! probe was dropped, [`EXIT_NO_ANSWER`] some hop did not answer.

use super::model::{Outcome, TraceRequest, TraceResult, DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS};
use super::render::render;
use crate::cli::{answered, unreachable, ApiArgs, RequestError};
use clap::Args;
use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::Duration;

/// Exit code when a hop dropped the probe.
pub const EXIT_DROPPED: u8 = 3;
/// Exit code when a hop did not answer.
pub const EXIT_NO_ANSWER: u8 = 4;
/// Exit code when the agent cannot be asked.
const EXIT_FAILURE: u8 = 1;

/// `overlay-agent trace` arguments.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// The overlay address to trace (a pod, or a node address)
    #[arg(value_name = "OVERLAY_IP")]
    destination: Ipv4Addr,
    #[command(flatten)]
    api: ApiArgs,
    /// How long to wait for the hops' reports
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_MS, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_MS))]
    timeout_ms: u64,
    /// Print the JSON the API answers instead of the text view
    #[arg(long)]
    json: bool,
}

/// Runs the subcommand.
pub fn command(args: &TraceArgs) -> ExitCode {
    match fetch(args) {
        Ok((result, body)) => {
            if args.json {
                println!("{}", body.trim_end());
            } else {
                print!("{}", render(&result));
            }
            match result.outcome {
                Outcome::Delivered => ExitCode::SUCCESS,
                Outcome::Dropped => ExitCode::from(EXIT_DROPPED),
                Outcome::NoAnswer => ExitCode::from(EXIT_NO_ANSWER),
            }
        }
        Err(e) => {
            eprintln!("overlay-agent: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn fetch(args: &TraceArgs) -> Result<(TraceResult, String), RequestError> {
    let url = format!("http://{}/trace", args.api.api);
    let request = TraceRequest {
        destination: args.destination,
        timeout_ms: Some(args.timeout_ms),
    };
    let response = answered(
        &args.api,
        ureq::post(&url)
            .timeout(Duration::from_millis(args.timeout_ms) + Duration::from_secs(5))
            .send_json(request),
    )?;
    let body = response
        .into_string()
        .map_err(|e| unreachable(&args.api, &e))?;
    let result = serde_json::from_str(&body).map_err(|error| RequestError::UnexpectedTrace {
        api: args.api.api.clone(),
        error,
    })?;
    Ok((result, body))
}
