//! The `sluice` binary: parse the configuration, set up logging and signal
//! handling, and run the broker. Everything else lives in the library.

use std::process::ExitCode;

use sluice::config::BrokerConfig;

fn main() -> ExitCode {
    if let Some(code) = sluice::cli::run_if_subcommand(std::env::args().collect()) {
        return code;
    }
    let config = BrokerConfig::from_args(std::env::args()).unwrap_or_else(|error| error.exit());
    sluice::alloc::tune_malloc();
    init_logging(&config.log_level);
    if let Err(error) = watch_signals(config.shutdown_timeout_ms) {
        eprintln!("sluice: cannot install signal handling: {error}");
        return ExitCode::FAILURE;
    }
    match sluice::server::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("sluice: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `RUST_LOG` wins over `log.level`, as operators expect.
fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Blocks SIGTERM and SIGINT in every thread (the shards inherit the mask)
/// and waits for them on one thread, which asks the shards to stop and
/// bounds the stop to `shutdown_timeout_ms` (a container runtime's grace
/// period ends in SIGKILL; better to log and exit first).
fn watch_signals(shutdown_timeout_ms: u64) -> std::io::Result<()> {
    // SAFETY: plain libc signal-mask calls on a set we own.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        set
    };
    std::thread::Builder::new()
        .name("sluice-signals".into())
        .spawn(move || loop {
            let mut signal = 0;
            // SAFETY: sigwait reads the set and writes the signal number.
            if unsafe { libc::sigwait(&set, &mut signal) } == 0 {
                if sluice::server::shutdown_requested() {
                    tracing::info!(signal, "shutdown already under way");
                    continue;
                }
                tracing::info!(signal, shutdown_timeout_ms, "shutdown requested");
                sluice::server::request_shutdown();
                sluice::server::bound_shutdown(shutdown_timeout_ms);
            }
        })?;
    Ok(())
}
