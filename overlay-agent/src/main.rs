fn main() -> std::process::ExitCode {
    overlay_agent::cli::main()
}
