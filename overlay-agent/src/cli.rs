//! (being written)

/// Entry point of the `overlay-agent` binary.
pub fn main() -> std::process::ExitCode {
    std::process::ExitCode::FAILURE
}
