//! node-cache: NodeLocal DNSCache's agent as a supervisor around an unmodified CoreDNS.
//!
//! Read in this order: `flags` (the command line), `corefile_sync` (rendering the Corefile)
//! and `config_watch` (its inputs changing), `node_network` (interface and rules),
//! `supervisor` (start and teardown), `serving` (the event loop that keeps CoreDNS answering),
//! `metrics` (the agent's Prometheus endpoint).
#![forbid(unsafe_code)]

mod config_watch;
mod corefile_sync;
mod flags;
mod info;
mod metrics;
mod node_network;
mod peers;
mod reaper;
mod serving;
mod supervisor;

use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    let config = match flags::parse(std::env::args_os().skip(1)) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            if e.exit_code() != 0 {
                eprintln!("{}", flags::usage());
            }
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    if config.show_version {
        return info::print_versions(&config);
    }
    if config.list_plugins {
        return info::list_plugins(&config);
    }
    init_logging();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(supervisor::run(config))
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
