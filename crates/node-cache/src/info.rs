//! The informational modes: `-version` and `-plugins` answer and exit without touching anything.

use std::process::{Command, ExitCode};

use crate::flags::Config;

pub const VERSION: &str = match option_env!("NODE_CACHE_VERSION") {
    Some(v) => v,
    None => concat!("v", env!("CARGO_PKG_VERSION")),
};

pub fn print_versions(config: &Config) -> ExitCode {
    println!("node-cache {VERSION}");
    match coredns_child::coredns_version(&config.coredns_binary) {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot read CoreDNS's version: {e}");
            ExitCode::FAILURE
        }
    }
}

pub fn list_plugins(config: &Config) -> ExitCode {
    match Command::new(&config.coredns_binary)
        .arg("-plugins")
        .status()
    {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("{} -plugins: {status}", config.coredns_binary.display());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{}: {e}", config.coredns_binary.display());
            ExitCode::FAILURE
        }
    }
}
