//! The node-cache binary: parse the command line, then hand over to the supervisor.
use node_cache::{flags, info, readiness, supervisor};

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
    if config.check_ready {
        if let Some(path) = &config.ready_file {
            return readiness::check(path);
        }
    }
    if config.show_version {
        return info::print_versions(&config);
    }
    if config.list_plugins {
        return info::list_plugins(&config);
    }
    init_logging();
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
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
    let from_env = std::env::var("RUST_LOG").unwrap_or_default();
    let mut filter = tracing_subscriber::EnvFilter::try_new(&from_env)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if from_env.is_empty() {
        filter = tracing_subscriber::EnvFilter::new("info");
    }
    // netlink-proto warns, with the whole message dumped, about every event that arrives after
    // our subscription ended (our own teardown's deletions): noise, not news. RUST_LOG naming
    // netlink_proto still decides.
    if !from_env.contains("netlink_proto") {
        if let Ok(quiet) = "netlink_proto=error".parse() {
            filter = filter.add_directive(quiet);
        }
    }
    // kube-rs logs every failed list or watch, retry after retry (a cluster without our RBAC:
    // a 403 each time); node-cache says once what the API's state means. RUST_LOG naming kube
    // still decides.
    if !from_env.contains("kube") {
        for quiet in ["kube_client=off", "kube_runtime=off"] {
            if let Ok(quiet) = quiet.parse() {
                filter = filter.add_directive(quiet);
            }
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
