//! `overlay-cni`: reads CNI_* from the environment and the configuration from stdin,
//! prints the result or a CNI error object on stdout.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    // A panic must still leave the runtime a CNI error object, not a backtrace.
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(|| {
        let env = |name: &str| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
        let stdin = std::io::stdin();
        // VERSION reads an optional `{"cniVersion":...}`; typed at a terminal, it must not
        // wait for one.
        let mut input: Box<dyn Read> =
            if env("CNI_COMMAND").as_deref() == Some("VERSION") && stdin.is_terminal() {
                Box::new(std::io::empty())
            } else {
                Box::new(stdin.lock())
            };
        overlay_cni::run(env, &mut input)
    });
    let (text, code) = match outcome {
        Ok(Ok(Some(text))) => (Some(text), ExitCode::SUCCESS),
        Ok(Ok(None)) => (None, ExitCode::SUCCESS),
        Ok(Err(reply)) => (Some(reply.to_json()), ExitCode::FAILURE),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let reply = overlay_cni::Error::Panic(what).reply();
            (Some(reply.to_json()), ExitCode::FAILURE)
        }
    };
    if let Some(text) = text {
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
            return ExitCode::FAILURE;
        }
    }
    code
}
